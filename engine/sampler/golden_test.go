package sampler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"testing"
)

const goldenPath = "../../testdata/golden/samplers.json"

// Tolerance of the golden comparison: |got-want| <= tol*max(1, |want|), so
// it is absolute for small values and relative for large ones (timesteps,
// initial latents scaled by sigma_max).
const tol = 1e-5

type goldenStep struct {
	T          float64   `json:"t"`
	ModelInput []float64 `json:"model_input"`
	Eps        []float64 `json:"eps"`
	Noise      []float64 `json:"noise"`
	After      []float64 `json:"latent_after"`
}

type goldenDiffusers struct {
	Timesteps      []float64    `json:"timesteps"`
	Sigmas         []float64    `json:"sigmas"`
	InitNoiseSigma float64      `json:"init_noise_sigma"`
	InitialLatent  []float64    `json:"initial_latent"`
	PerStep        []goldenStep `json:"per_step"`
	FinalLatent    []float64    `json:"final_latent"`
	ACAtTimesteps  []float64    `json:"alphas_cumprod_at_timesteps"`
	FinalAC        float64      `json:"final_alpha_cumprod"`
}

type goldenCall struct {
	T          []float64 `json:"t"`
	ModelInput []float64 `json:"model_input"`
	Eps        []float64 `json:"eps"`
}

type goldenKDiff struct {
	Schedule      string       `json:"schedule"`
	SigmaMin      float64      `json:"sigma_min"`
	SigmaMax      float64      `json:"sigma_max"`
	Sigmas        []float64    `json:"sigmas"`
	InitialLatent []float64    `json:"initial_latent"`
	ModelCalls    []goldenCall `json:"model_calls"`
	StepNoises    [][]float64  `json:"step_noises"`
	FinalLatent   []float64    `json:"final_latent"`
}

type golden struct {
	Noise0    []float64                             `json:"noise0"`
	NoisePool [][]float64                           `json:"noise_pool"`
	Diffusers map[string]map[string]goldenDiffusers `json:"diffusers"`
	KDiff     map[string]map[string]goldenKDiff     `json:"a1111_kdiffusion"`
}

var (
	goldenOnce sync.Once
	goldenData *golden
	goldenErr  error
)

// readPythonJSON reads a JSON file written by Python's json module, which
// writes the DPM config's lambda_min_clipped as the bare token -Infinity
// (not JSON). That field is never read, so it becomes null.
func readPythonJSON(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return bytes.ReplaceAll(b, []byte(": -Infinity"), []byte(": null")), nil
}

func loadGolden(t testing.TB) *golden {
	t.Helper()
	goldenOnce.Do(func() {
		b, err := readPythonJSON(goldenPath)
		if err != nil {
			goldenErr = err
			return
		}
		var g golden
		if err := json.Unmarshal(b, &g); err != nil {
			goldenErr = fmt.Errorf("parse %s: %w", goldenPath, err)
			return
		}
		goldenData = &g
	})
	if goldenErr != nil {
		t.Fatalf("load golden: %v", goldenErr)
	}
	return goldenData
}

// goldenNames maps the golden file's sampler names to Specs.
var goldenNames = map[string]Spec{
	"euler":           {Euler, ScheduleUniform},
	"euler_ancestral": {EulerAncestral, ScheduleUniform},
	"dpmpp_2m":        {DPMPP2M, ScheduleUniform},
	"dpmpp_2m_karras": {DPMPP2M, ScheduleKarras},
	"ddim":            {DDIM, ScheduleUniform},
	"euler_karras":    {Euler, ScheduleKarras},
}

// errTracker records the largest scaled error of one kind of value.
type errTracker struct {
	name string
	max  float64
	at   string
}

func (e *errTracker) add(got, want float64, where string) {
	d := math.Abs(got-want) / math.Max(1, math.Abs(want))
	if math.IsNaN(got) {
		d = math.Inf(1)
	}
	if d > e.max {
		e.max, e.at = d, where
	}
}

func (e *errTracker) vec(got []float32, want []float64, where string) {
	if len(got) != len(want) {
		e.max, e.at = math.Inf(1), fmt.Sprintf("%s: %d values, want %d", where, len(got), len(want))
		return
	}
	for i := range got {
		e.add(float64(got[i]), want[i], where)
	}
}

func (e *errTracker) check(t *testing.T) {
	t.Helper()
	t.Logf("%-14s max scaled error %.3g (at %s)", e.name, e.max, e.at)
	if e.max > tol {
		t.Errorf("%s: max scaled error %.3g at %s exceeds %g", e.name, e.max, e.at, tol)
	}
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// fakeModel is the golden file's denoiser, eps(x_in, t) = 0.1*x_in + 0.01*t/1000,
// evaluated in float32 like the reference. It records every call.
type fakeModel struct {
	inputs [][]float32
	ts     []float64
}

func (f *fakeModel) run(_ context.Context, x []float32, t float64) ([]float32, error) {
	f.inputs = append(f.inputs, append([]float32(nil), x...))
	f.ts = append(f.ts, t)
	out := make([]float32, len(x))
	c := float32(0.01) * float32(t) / 1000
	for i, v := range x {
		out[i] = float32(0.1)*v + c
	}
	return out, nil
}

// poolNoise hands out the golden noise pool, one entry per call, in order,
// and records the step index of each call.
type poolNoise struct {
	pool  [][]float64
	next  int
	steps []int
}

func (p *poolNoise) Noise(step int, dst []float32) error {
	if p.next >= len(p.pool) {
		return fmt.Errorf("noise pool exhausted at step %d", step)
	}
	copy(dst, to32(p.pool[p.next]))
	p.next++
	p.steps = append(p.steps, step)
	return nil
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestGoldenDiffusers(t *testing.T) {
	g := loadGolden(t)
	if len(g.Diffusers) != 2 {
		t.Fatalf("golden has %d step counts, want 2", len(g.Diffusers))
	}
	for _, stepsKey := range sortedKeys(g.Diffusers) {
		for _, name := range sortedKeys(g.Diffusers[stepsKey]) {
			want := g.Diffusers[stepsKey][name]
			t.Run(stepsKey+"/"+name, func(t *testing.T) {
				spec, ok := goldenNames[name]
				if !ok {
					t.Fatalf("golden sampler %q has no Spec", name)
				}
				var steps int
				fmt.Sscan(stepsKey, &steps)
				s, err := New(spec, steps, Options{Variant: Diffusers})
				if err != nil {
					t.Fatal(err)
				}
				sched := errTracker{name: "schedule"}
				if got := s.Timesteps(); len(got) != len(want.Timesteps) {
					t.Fatalf("%d timesteps, want %d", len(got), len(want.Timesteps))
				} else {
					for i := range got {
						sched.add(got[i], want.Timesteps[i], fmt.Sprintf("timesteps[%d]", i))
					}
				}
				gotSig := s.Sigmas()
				if len(gotSig) != len(want.Sigmas) {
					t.Fatalf("%d sigmas, want %d", len(gotSig), len(want.Sigmas))
				}
				for i := range gotSig {
					sched.add(gotSig[i], want.Sigmas[i], fmt.Sprintf("sigmas[%d]", i))
				}
				sched.add(s.InitNoiseSigma(), want.InitNoiseSigma, "init_noise_sigma")
				if spec.Algorithm == DDIM {
					// The sigma form must carry the golden alphas_cumprod.
					for i, ac := range want.ACAtTimesteps {
						sg := s.plan.sigmas[i]
						sched.add(1/(sg*sg+1), ac, fmt.Sprintf("alphas_cumprod[%d]", i))
					}
					sg := s.plan.sigmas[len(s.plan.sigmas)-1]
					sched.add(1/(sg*sg+1), want.FinalAC, "final_alpha_cumprod")
				}
				sched.check(t)

				// The initial latent as the pipeline makes it.
				init := make([]float32, len(g.Noise0))
				for i, v := range g.Noise0 {
					init[i] = float32(v) * float32(s.InitNoiseSigma())
				}
				lat := errTracker{name: "latents"}
				in := errTracker{name: "model input"}
				lat.vec(init, want.InitialLatent, "initial_latent")

				var m fakeModel
				noise := &poolNoise{pool: g.NoisePool}
				var afters [][]float32
				final, err := s.Sample(context.Background(), m.run, init, noise, func(st Step) error {
					if st.Index != len(afters) || st.Total != len(want.PerStep) {
						return fmt.Errorf("callback step %d/%d, want %d/%d", st.Index, st.Total, len(afters), len(want.PerStep))
					}
					afters = append(afters, append([]float32(nil), st.Latent...))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(m.inputs) != len(want.PerStep) {
					t.Fatalf("%d model calls, want %d", len(m.inputs), len(want.PerStep))
				}
				for i, ps := range want.PerStep {
					in.add(m.ts[i], ps.T, fmt.Sprintf("step %d t", i))
					in.vec(m.inputs[i], ps.ModelInput, fmt.Sprintf("step %d model_input", i))
					lat.vec(afters[i], ps.After, fmt.Sprintf("step %d latent_after", i))
				}
				lat.vec(final, want.FinalLatent, "final_latent")
				if spec.Ancestral() {
					// Noise k at step k; the last step adds none.
					if len(noise.steps) != steps-1 {
						t.Errorf("noise drawn %d times, want %d", len(noise.steps), steps-1)
					}
					for k, st := range noise.steps {
						if st != k {
							t.Errorf("noise draw %d for step %d", k, st)
						}
						if ps := want.PerStep[k]; ps.Noise == nil || ps.Noise[0] != g.NoisePool[k][0] {
							t.Errorf("golden step %d does not use noise_pool[%d]", k, k)
						}
					}
				}
				in.check(t)
				lat.check(t)
			})
		}
	}
}

func TestGoldenA1111(t *testing.T) {
	g := loadGolden(t)
	if len(g.KDiff) != 2 {
		t.Fatalf("golden has %d step counts, want 2", len(g.KDiff))
	}
	for _, stepsKey := range sortedKeys(g.KDiff) {
		for _, name := range sortedKeys(g.KDiff[stepsKey]) {
			want := g.KDiff[stepsKey][name]
			t.Run(stepsKey+"/"+name, func(t *testing.T) {
				spec, ok := goldenNames[name]
				if !ok {
					t.Fatalf("golden sampler %q has no Spec", name)
				}
				if (spec.Schedule == ScheduleKarras) != (want.Schedule == "karras") {
					t.Fatalf("golden schedule %q for %s", want.Schedule, name)
				}
				var steps int
				fmt.Sscan(stepsKey, &steps)
				s, err := New(spec, steps, Options{Variant: A1111})
				if err != nil {
					t.Fatal(err)
				}
				tb := getTable(true, false)
				sched := errTracker{name: "schedule"}
				sched.add(float64(tb.sigmas[0]), want.SigmaMin, "sigma_min")
				sched.add(float64(tb.sigmas[trainSteps-1]), want.SigmaMax, "sigma_max")
				gotSig := s.Sigmas()
				if len(gotSig) != len(want.Sigmas) {
					t.Fatalf("%d sigmas, want %d", len(gotSig), len(want.Sigmas))
				}
				for i := range gotSig {
					sched.add(gotSig[i], want.Sigmas[i], fmt.Sprintf("sigmas[%d]", i))
				}
				sched.add(s.InitNoiseSigma(), want.Sigmas[0], "init sigma")
				sched.check(t)

				init := make([]float32, len(g.Noise0))
				for i, v := range g.Noise0 {
					init[i] = float32(v) * float32(s.InitNoiseSigma())
				}
				lat := errTracker{name: "latents"}
				in := errTracker{name: "model input"}
				lat.vec(init, want.InitialLatent, "initial_latent")
				var m fakeModel
				noise := &poolNoise{pool: want.StepNoises}
				final, err := s.Sample(context.Background(), m.run, init, noise, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(m.inputs) != len(want.ModelCalls) {
					t.Fatalf("%d model calls, want %d", len(m.inputs), len(want.ModelCalls))
				}
				for i, c := range want.ModelCalls {
					in.add(m.ts[i], c.T[0], fmt.Sprintf("call %d t", i))
					in.vec(m.inputs[i], c.ModelInput, fmt.Sprintf("call %d model_input", i))
				}
				if noise.next != len(want.StepNoises) {
					t.Errorf("used %d step noises, golden has %d", noise.next, len(want.StepNoises))
				}
				lat.vec(final, want.FinalLatent, "final_latent")
				in.check(t)
				lat.check(t)
			})
		}
	}
}
