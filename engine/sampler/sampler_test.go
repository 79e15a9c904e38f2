package sampler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// oracle answers with the exact eps or v of a fixed clean latent x0: the
// model input is x_in = alpha*x0 + sigmaVP*eps with alpha = 1/sqrt(sigma^2+1)
// and sigmaVP = sigma*alpha, so eps = (x_in - alpha*x0)/sigmaVP and
// v = alpha*eps - sigmaVP*x0 = (alpha*x_in - x0)/sigmaVP.
type oracle struct {
	x0    []float64
	sigma map[float64]float64 // timestep -> sigma of the sampler under test
	pred  Prediction
}

func newOracle(s *Sampler, x0 []float64, pred Prediction) *oracle {
	o := &oracle{x0: x0, sigma: map[float64]float64{}, pred: pred}
	for i, t := range s.plan.timesteps {
		o.sigma[t] = s.plan.sigmas[i]
	}
	return o
}

func (o *oracle) run(_ context.Context, x []float32, t float64) ([]float32, error) {
	sigma, ok := o.sigma[t]
	if !ok {
		return nil, fmt.Errorf("oracle: unknown timestep %v", t)
	}
	alpha := 1 / math.Sqrt(sigma*sigma+1)
	svp := sigma * alpha
	out := make([]float32, len(x))
	for i, xi := range x {
		if o.pred == VPrediction {
			out[i] = float32((alpha*float64(xi) - o.x0[i]) / svp)
		} else {
			out[i] = float32((float64(xi) - alpha*o.x0[i]) / svp)
		}
	}
	return out, nil
}

// TestPredictionOracle checks the eps and v conversions against each other
// and against a known answer: given the exact eps or v of a known x0 at every
// step, every deterministic sampler must walk the same trajectory either
// way and end on x0 (DDIM ends at timestep 0's noise level, so on
// alpha_f*x0 + sigmaVP_f*eps instead).
func TestPredictionOracle(t *testing.T) {
	const n = 16
	x0 := make([]float64, n)
	noise := make([]float32, n)
	for i := range x0 {
		x0[i] = math.Sin(float64(i)+0.3) * 1.7
		noise[i] = float32(math.Cos(float64(3*i) + 1.1))
	}
	for _, spec := range All() {
		if spec.Ancestral() {
			continue
		}
		for _, variant := range []Variant{Diffusers, A1111} {
			for _, ztsnr := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/ztsnr=%v", spec.Name(), variant, ztsnr)
				t.Run(name, func(t *testing.T) {
					var finals [2][]float32
					var traj [2][][]float32
					for k, pred := range []Prediction{Epsilon, VPrediction} {
						s, err := New(spec, 12, Options{Variant: variant, Prediction: pred, ZeroTerminalSNR: ztsnr})
						if err != nil {
							t.Fatal(err)
						}
						// Start on the exact noisy latent of x0 and noise.
						sigma0 := s.plan.sigmas[0]
						lat := make([]float32, n)
						for i := range lat {
							ve := x0[i] + sigma0*float64(noise[i])
							if s.plan.vp {
								ve /= math.Sqrt(sigma0*sigma0 + 1)
							}
							lat[i] = float32(ve)
						}
						o := newOracle(s, x0, pred)
						final, err := s.Sample(context.Background(), o.run, lat, nil, func(st Step) error {
							traj[k] = append(traj[k], append([]float32(nil), st.Denoised...))
							return nil
						})
						if err != nil {
							t.Fatal(err)
						}
						finals[k] = final
						// Every denoised estimate must be x0.
						var maxDen float64
						for _, d := range traj[k] {
							for i := range d {
								maxDen = math.Max(maxDen, math.Abs(float64(d[i])-x0[i]))
							}
						}
						t.Logf("%v: max |denoised - x0| over all steps %.3g", pred, maxDen)
						if maxDen > 1e-4*(1+sigma0*1e-3) {
							t.Errorf("%v: denoised differs from x0 by %.3g", pred, maxDen)
						}
						want := x0
						if spec.Algorithm == DDIM {
							sf := s.plan.sigmas[len(s.plan.sigmas)-1]
							a := 1 / math.Sqrt(sf*sf+1)
							want = make([]float64, n)
							for i := range want {
								want[i] = a * (x0[i] + sf*float64(noise[i]))
							}
						}
						var maxErr float64
						for i := range final {
							maxErr = math.Max(maxErr, math.Abs(float64(final[i])-want[i]))
						}
						t.Logf("%v: max |final - expected| %.3g", pred, maxErr)
						if maxErr > 1e-4 {
							t.Errorf("%v: final latent off by %.3g", pred, maxErr)
						}
					}
					var d float64
					for i := range finals[0] {
						d = math.Max(d, math.Abs(float64(finals[0][i]-finals[1][i])))
					}
					if d > 1e-4 {
						t.Errorf("eps and v trajectories end %.3g apart", d)
					}
				})
			}
		}
	}
}

// TestVPredictionOneStep checks x0 = c_skip*x + c_out*v by hand for a single
// Euler step onto sigma 0, where the result is the denoised value itself.
func TestVPredictionOneStep(t *testing.T) {
	s, err := New(Spec{Euler, ScheduleUniform}, 1, Options{Prediction: VPrediction})
	if err != nil {
		t.Fatal(err)
	}
	sigma := s.Sigmas()[0]
	x := []float32{1.5, -0.25}
	v := []float32{0.5, 2}
	got, err := s.Sample(context.Background(), func(context.Context, []float32, float64) ([]float32, error) {
		return v, nil
	}, x, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		want := float64(x[i])/(sigma*sigma+1) - sigma/math.Sqrt(sigma*sigma+1)*float64(v[i])
		if math.Abs(float64(got[i])-want) > 1e-6 {
			t.Errorf("x[%d]: got %v, want %v", i, got[i], want)
		}
	}
}

// TestZeroTerminalSNR checks the rescaled tables against hand-derived values:
// the first alphas_cumprod is kept, the last is the reference's stand-in for
// zero, so sigma_max is sqrt((1-a)/a) of that value.
func TestZeroTerminalSNR(t *testing.T) {
	cases := []struct {
		a1111    bool
		last     float64
		sigmaMax float64
	}{
		{false, 0x1p-24, math.Sqrt(1<<24 - 1)}, // 4095.99988
		{true, 4.8973451890853435e-08, math.Sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08)}, // 4518.8
	}
	for _, c := range cases {
		plain, z := getTable(c.a1111, false), getTable(c.a1111, true)
		if d := math.Abs(float64(z.alphasCumprod[0]-plain.alphasCumprod[0])) / float64(plain.alphasCumprod[0]); d > 1e-6 {
			t.Errorf("a1111=%v: alphas_cumprod[0] moved by %.3g", c.a1111, d)
		}
		if got := float64(z.alphasCumprod[trainSteps-1]); got != float64(float32(c.last)) {
			t.Errorf("a1111=%v: last alphas_cumprod %v, want %v", c.a1111, got, c.last)
		}
		if got := float64(z.sigmas[trainSteps-1]); math.Abs(got-c.sigmaMax)/c.sigmaMax > 1e-6 {
			t.Errorf("a1111=%v: sigma_max %v, want %v", c.a1111, got, c.sigmaMax)
		}
		// Zero terminal SNR: sqrt(ac) is an affine map of the original
		// that sends its last value to 0; check it at the midpoint.
		s0, sT, sm := math.Sqrt(float64(plain.alphasCumprod[0])), math.Sqrt(float64(plain.alphasCumprod[trainSteps-1])), math.Sqrt(float64(plain.alphasCumprod[500]))
		want := (sm - sT) * s0 / (s0 - sT)
		if got := math.Sqrt(float64(z.alphasCumprod[500])); math.Abs(got-want)/want > 1e-5 {
			t.Errorf("a1111=%v: sqrt(ac[500]) %v, want %v", c.a1111, got, want)
		}
		for i := 1; i < trainSteps; i++ {
			if z.sigmas[i] <= z.sigmas[i-1] {
				t.Fatalf("a1111=%v: sigmas not increasing at %d", c.a1111, i)
			}
		}
	}
	// Karras with ztsnr starts at the rescaled sigma_max.
	s, err := New(Spec{DPMPP2M, ScheduleKarras}, 10, Options{Variant: A1111, ZeroTerminalSNR: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sigmas()[0]; math.Abs(got-cases[1].sigmaMax)/cases[1].sigmaMax > 1e-5 {
		t.Errorf("A1111 ztsnr Karras sigma_max %v, want %v", got, cases[1].sigmaMax)
	}
}

// TestSchedulesAllSteps builds every sampler at many step counts and checks
// the schedule is well formed.
func TestSchedulesAllSteps(t *testing.T) {
	stepsList := []int{1, 2, 3, 7, 20, 28, 50, 150, 333, 500, 999, 1000}
	for _, spec := range All() {
		for _, variant := range []Variant{Diffusers, A1111} {
			for _, ztsnr := range []bool{false, true} {
				for _, steps := range stepsList {
					s, err := New(spec, steps, Options{Variant: variant, ZeroTerminalSNR: ztsnr})
					if steps == 1000 && variant == Diffusers && (spec.Algorithm == DPMPP2M || spec.Algorithm == DDIM) {
						if err == nil {
							t.Errorf("%s/%s: 1000 steps accepted", spec.Name(), variant)
						}
						continue
					}
					if err != nil {
						t.Errorf("%s/%s/%d: %v", spec.Name(), variant, steps, err)
						continue
					}
					p := s.plan
					if len(p.sigmas) != len(p.timesteps)+1 {
						t.Fatalf("%s: %d sigmas for %d steps", spec.Name(), len(p.sigmas), len(p.timesteps))
					}
					want := steps
					if variant == A1111 && spec.Algorithm == DDIM {
						// len(range(0, 1000, 1000 // steps)): 167 for 150.
						stride := trainSteps / steps
						want = (trainSteps + stride - 1) / stride
					}
					if n := s.Steps(); n != want {
						t.Errorf("%s/%s: %d steps for %d, want %d", spec.Name(), variant, n, steps, want)
					}
					for i, sg := range p.sigmas {
						if math.IsNaN(sg) || math.IsInf(sg, 0) || sg < 0 {
							t.Fatalf("%s/%s/%d: sigma[%d] = %v", spec.Name(), variant, steps, i, sg)
						}
						if i > 0 && sg > p.sigmas[i-1] {
							t.Fatalf("%s/%s/%d: sigmas increase at %d", spec.Name(), variant, steps, i)
						}
					}
					for i, ts := range p.timesteps {
						if math.IsNaN(ts) || ts < 0 || ts > trainSteps {
							t.Fatalf("%s/%s/%d: timestep[%d] = %v", spec.Name(), variant, steps, i, ts)
						}
					}
					if v := s.InitNoiseSigma(); !(v >= 1 || v == p.sigmas[0]) || math.IsInf(v, 0) {
						t.Errorf("%s/%s/%d: init noise sigma %v", spec.Name(), variant, steps, v)
					}
				}
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, steps := range []int{0, -1, 1001, math.MaxInt} {
		if _, err := New(Spec{Euler, ScheduleUniform}, steps, Options{}); err == nil {
			t.Errorf("steps %d accepted", steps)
		}
	}
	if _, err := New(Spec{DDIM, ScheduleKarras}, 10, Options{}); err == nil {
		t.Error("ddim with Karras accepted")
	}
	if _, err := New(Spec{Euler, ScheduleUniform}, 10, Options{Prediction: 7}); err == nil {
		t.Error("unknown prediction accepted")
	}
	if _, err := New(Spec{Euler, ScheduleUniform}, 10, Options{Variant: 9}); err == nil {
		t.Error("unknown variant accepted")
	}
}

func constModel(v float32) Model {
	return func(_ context.Context, x []float32, _ float64) ([]float32, error) {
		out := make([]float32, len(x))
		for i := range out {
			out[i] = v
		}
		return out, nil
	}
}

func TestSampleStopsAndErrors(t *testing.T) {
	s, err := New(Spec{Euler, ScheduleUniform}, 10, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lat := []float32{1, 2, 3}
	orig := append([]float32(nil), lat...)

	t.Run("cancel between steps", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		model := func(ctx context.Context, x []float32, t float64) ([]float32, error) {
			calls++
			return constModel(0.1)(ctx, x, t)
		}
		_, err := s.Sample(ctx, model, lat, nil, func(st Step) error {
			if st.Index == 2 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if calls != 3 {
			t.Errorf("model ran %d times after cancel at step 2, want 3", calls)
		}
	})
	t.Run("callback error", func(t *testing.T) {
		stop := errors.New("stop")
		_, err := s.Sample(context.Background(), constModel(0), lat, nil, func(Step) error { return stop })
		if !errors.Is(err, stop) {
			t.Fatalf("err = %v, want the callback's", err)
		}
	})
	t.Run("model error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := s.Sample(context.Background(), func(context.Context, []float32, float64) ([]float32, error) {
			return nil, boom
		}, lat, nil, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the model's", err)
		}
	})
	t.Run("model output length", func(t *testing.T) {
		_, err := s.Sample(context.Background(), func(context.Context, []float32, float64) ([]float32, error) {
			return []float32{1}, nil
		}, lat, nil, nil)
		if err == nil {
			t.Fatal("short model output accepted")
		}
	})
	t.Run("model NaN", func(t *testing.T) {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
			_, err := s.Sample(context.Background(), func(_ context.Context, x []float32, _ float64) ([]float32, error) {
				return []float32{0, bad, 0}, nil
			}, lat, nil, nil)
			if err == nil || !strings.Contains(err.Error(), "output[1]") {
				t.Errorf("model output %v: err = %v", bad, err)
			}
		}
	})
	t.Run("empty latent", func(t *testing.T) {
		if _, err := s.Sample(context.Background(), constModel(0), nil, nil, nil); err == nil {
			t.Fatal("empty latent accepted")
		}
	})
	t.Run("nil model", func(t *testing.T) {
		if _, err := s.Sample(context.Background(), nil, lat, nil, nil); err == nil {
			t.Fatal("nil model accepted")
		}
	})
	t.Run("ancestral without noise", func(t *testing.T) {
		a, err := New(Spec{EulerAncestral, ScheduleUniform}, 5, Options{Variant: A1111})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Sample(context.Background(), constModel(0), lat, nil, nil); !errors.Is(err, ErrNoNoise) {
			t.Fatalf("err = %v, want ErrNoNoise", err)
		}
	})
	t.Run("noise error", func(t *testing.T) {
		a, err := New(Spec{EulerAncestral, ScheduleUniform}, 5, Options{})
		if err != nil {
			t.Fatal(err)
		}
		p := &poolNoise{pool: [][]float64{{0, 0, 0}}}
		if _, err := a.Sample(context.Background(), constModel(0), lat, p, nil); err == nil {
			t.Fatal("exhausted noise source not reported")
		}
	})
	for i := range lat {
		if lat[i] != orig[i] {
			t.Fatal("Sample modified its input latent")
		}
	}
}

// TestSampleFinite runs every sampler at its extremes with a plausible model
// and checks the result stays finite.
func TestSampleFinite(t *testing.T) {
	model := func(_ context.Context, x []float32, t float64) ([]float32, error) {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = 0.9*v + float32(t)/1e4
		}
		return out, nil
	}
	for _, spec := range All() {
		for _, variant := range []Variant{Diffusers, A1111} {
			for _, steps := range []int{1, 2, 999} {
				for _, pred := range []Prediction{Epsilon, VPrediction} {
					s, err := New(spec, steps, Options{Variant: variant, Prediction: pred, ZeroTerminalSNR: pred == VPrediction})
					if err != nil {
						t.Fatal(err)
					}
					lat := []float32{1, -1, 0.5, 0}
					for i := range lat {
						lat[i] *= float32(s.InitNoiseSigma())
					}
					p := &poolNoise{pool: make([][]float64, steps)}
					for i := range p.pool {
						p.pool[i] = []float64{0.1, -0.2, 0.3, 1}
					}
					out, err := s.Sample(context.Background(), model, lat, p, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, v := range out {
						if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
							t.Fatalf("%s/%s/%d/%v: non-finite result %v", spec.Name(), variant, steps, pred, out)
						}
					}
				}
			}
		}
	}
}
