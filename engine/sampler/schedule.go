package sampler

import (
	"fmt"
	"math"
	"sync"
)

// Variant picks which reference implementation a sampler reproduces.
type Variant int

const (
	// Diffusers reproduces diffusers v0.30.3's schedulers
	// (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
	// DPMSolverMultistepScheduler, DDIMScheduler) with SDXL's config:
	// "leading" timesteps with steps_offset 1, integer timesteps (fractional
	// only for Euler with Karras sigmas), and DPM-Solver's leading grid that
	// divides by steps+1.
	Diffusers Variant = iota
	// A1111 reproduces AUTOMATIC1111's samplers: k-diffusion's samplers
	// around DiscreteEpsDDPMDenoiser/CompVisVDenoiser (continuous timestep
	// t = sigma_to_t(sigma), sigmas[0] as the initial noise scale, Karras
	// sigmas between the schedule's float32 sigma_min and sigma_max), and
	// A1111's own DDIM (timesteps range(0, 1000, 1000//steps) + 1, which
	// can be more steps than asked: 29 for 28).
	A1111
)

// String names the variant as the command line spells it.
func (v Variant) String() string {
	switch v {
	case Diffusers:
		return "diffusers"
	case A1111:
		return "a1111"
	}
	return fmt.Sprintf("Variant(%d)", int(v))
}

// ParseVariant accepts "diffusers" and "a1111" (also "kdiffusion").
func ParseVariant(s string) (Variant, error) {
	switch s {
	case "diffusers", "":
		return Diffusers, nil
	case "a1111", "kdiffusion", "k-diffusion":
		return A1111, nil
	}
	return 0, fmt.Errorf("unknown sampler variant %q (valid: diffusers, a1111)", s)
}

// MaxSteps is the largest number of steps a sampler accepts: the number of
// training timesteps.
const MaxSteps = trainSteps

// plan is everything a walk needs, fixed at construction.
type plan struct {
	// timesteps[i] is what the model receives at step i.
	timesteps []float64
	// sigmas has len(timesteps)+1 noise levels in sigma (variance
	// exploding) form; the last is 0, or for DDIM the level of timestep 0.
	sigmas []float64
	// vp is set when the reference's latent is in variance-preserving form,
	// x_VE / sqrt(sigma^2 + 1) (DPM-Solver and DDIM), not x_VE (Euler).
	vp bool
	// initNoiseSigma scales unit noise into the first latent.
	initNoiseSigma float64
	// refSigmas are the reference scheduler's own sigmas (nil for DDIM).
	refSigmas []float64
}

var (
	tablesOnce sync.Once
	tables     map[tableKey]*table
)

type tableKey struct {
	a1111, ztsnr bool
}

func getTable(a1111, ztsnr bool) *table {
	tablesOnce.Do(func() {
		tables = map[tableKey]*table{}
		for _, z := range []bool{false, true} {
			tables[tableKey{false, z}] = diffusersTable(z)
			tables[tableKey{true, z}] = a1111Table(z)
		}
	})
	return tables[tableKey{a1111, ztsnr}]
}

func buildPlan(spec Spec, v Variant, steps int, ztsnr bool) (*plan, error) {
	if steps <= 0 || steps > MaxSteps {
		return nil, fmt.Errorf("steps %d out of range (1..%d)", steps, MaxSteps)
	}
	if !spec.valid() {
		return nil, fmt.Errorf("unsupported sampler %v", spec)
	}
	switch v {
	case Diffusers:
		tb := getTable(false, ztsnr)
		switch spec.Algorithm {
		case Euler, EulerAncestral:
			return diffusersEuler(tb, steps, spec.Schedule == ScheduleKarras), nil
		case DPMPP2M:
			if steps >= trainSteps {
				return nil, fmt.Errorf("steps %d out of range for %s: DPM-Solver's leading spacing needs steps < %d", steps, spec.Name(), trainSteps)
			}
			return diffusersDPM(tb, steps, spec.Schedule == ScheduleKarras), nil
		case DDIM:
			if steps >= trainSteps {
				return nil, fmt.Errorf("steps %d out of range for ddim: leading spacing with steps_offset 1 needs steps < %d", steps, trainSteps)
			}
			return diffusersDDIM(tb, steps), nil
		}
	case A1111:
		tb := getTable(true, ztsnr)
		if spec.Algorithm == DDIM {
			return a1111DDIM(tb, steps), nil
		}
		return kdiffusionPlan(tb, steps, spec.Schedule == ScheduleKarras), nil
	}
	return nil, fmt.Errorf("unknown sampler variant %v", v)
}

// sigmaAt is the sigma of an integer timestep, clamped into the table the way
// diffusers' np.interp clamps (a 1000-step leading schedule asks for t=1000).
func (t *table) sigmaAt(ts int) float32 {
	if ts < 0 {
		ts = 0
	}
	if ts >= len(t.sigmas) {
		ts = len(t.sigmas) - 1
	}
	return t.sigmas[ts]
}

// sigmaToT64 is diffusers' _sigma_to_t: float64 arithmetic over the float32
// log-sigma table, the last entry whose log-sigma is <= log(sigma) as the
// lower neighbour.
func (t *table) sigmaToT64(sigma float64) float64 {
	ls := math.Log(math.Max(sigma, 1e-10))
	n := len(t.logSigmas)
	low := 0
	for i, v := range t.logSigmas {
		if ls-float64(v) >= 0 {
			low = i
		}
	}
	if low > n-2 {
		low = n - 2
	}
	lo, hi := float64(t.logSigmas[low]), float64(t.logSigmas[low+1])
	w := (lo - ls) / (lo - hi)
	w = math.Min(math.Max(w, 0), 1)
	return float64((1-w)*float64(low)) + float64(w*float64(low+1))
}

// sigmaToT32 is k-diffusion's DiscreteSchedule.sigma_to_t (quantize=False),
// in float32 as torch computes it.
func (t *table) sigmaToT32(sigma float32) float32 {
	ls := float32(math.Log(float64(sigma)))
	n := len(t.logSigmas)
	low := 0
	for i, v := range t.logSigmas {
		if ls-v >= 0 {
			low = i
		}
	}
	if low > n-2 {
		low = n - 2
	}
	lo, hi := t.logSigmas[low], t.logSigmas[low+1]
	w := (lo - ls) / (lo - hi)
	if w < 0 {
		w = 0
	}
	if w > 1 {
		w = 1
	}
	return float32((1-w)*float32(low)) + float32(w*float32(low+1))
}

// tToSigma32 is k-diffusion's DiscreteSchedule.t_to_sigma in float32.
func (t *table) tToSigma32(ts float32) float32 {
	lowF := float32(math.Floor(float64(ts)))
	low, high := int(lowF), int(math.Ceil(float64(ts)))
	w := ts - lowF
	ls := float32((1-w)*t.logSigmas[low]) + float32(w*t.logSigmas[high])
	return float32(math.Exp(float64(ls)))
}

// karras64 is diffusers' _convert_to_karras (numpy float64).
func karras64(sigmaMin, sigmaMax float64, n int) []float64 {
	const rho = 7.0
	minInv := math.Pow(sigmaMin, 1/rho)
	maxInv := math.Pow(sigmaMax, 1/rho)
	out := make([]float64, n)
	step := 0.0
	if n > 1 {
		step = 1 / float64(n-1)
	}
	for i := range out {
		ramp := float64(i) * step
		if i == n-1 && n > 1 {
			ramp = 1 // np.linspace sets the endpoint exactly
		}
		out[i] = math.Pow(maxInv+float64(ramp*(minInv-maxInv)), rho)
	}
	return out
}

// karras32 is k-diffusion's get_sigmas_karras: torch float32 ramp and
// arithmetic around Python-float (float64) rho-th roots.
func karras32(sigmaMin, sigmaMax float64, n int) []float32 {
	const rho = 7.0
	minInv := math.Pow(sigmaMin, 1/rho)
	maxInv := math.Pow(sigmaMax, 1/rho)
	diff := float32(minInv - maxInv)
	base := float32(maxInv)
	ramp := torchLinspace32(0, 1, n)
	out := make([]float32, n)
	for i, r := range ramp {
		v := base + float32(r*diff)
		out[i] = float32(math.Pow(float64(v), rho))
	}
	return out
}

// initSigma32 is diffusers' init_noise_sigma for "leading" spacing,
// (max_sigma**2 + 1) ** 0.5 in float32.
func initSigma32(maxSigma float32) float64 {
	v := float32(maxSigma*maxSigma) + 1
	return float64(float32(math.Sqrt(float64(v))))
}

func diffusersEuler(tb *table, steps int, karras bool) *plan {
	ratio := trainSteps / steps
	ints := make([]int, steps)
	for i := range ints {
		ints[i] = (steps-1-i)*ratio + 1
	}
	p := &plan{timesteps: make([]float64, steps), sigmas: make([]float64, steps+1)}
	if !karras {
		for i, ts := range ints {
			p.timesteps[i] = float64(ts)
			p.sigmas[i] = float64(tb.sigmaAt(ts))
		}
	} else {
		smax := float64(tb.sigmaAt(ints[0]))
		smin := float64(tb.sigmaAt(ints[steps-1]))
		for i, s := range karras64(smin, smax, steps) {
			p.timesteps[i] = float64(float32(tb.sigmaToT64(s)))
			p.sigmas[i] = float64(float32(s))
		}
	}
	maxSigma := float32(0)
	for _, s := range p.sigmas {
		maxSigma = max(maxSigma, float32(s))
	}
	p.initNoiseSigma = initSigma32(maxSigma)
	p.refSigmas = append([]float64(nil), p.sigmas...)
	return p
}

func diffusersDPM(tb *table, steps int, karras bool) *plan {
	p := &plan{timesteps: make([]float64, steps), sigmas: make([]float64, steps+1), vp: true, initNoiseSigma: 1}
	if !karras {
		ratio := trainSteps / (steps + 1)
		for i := range steps {
			ts := (steps-i)*ratio + 1
			p.timesteps[i] = float64(ts)
			p.sigmas[i] = float64(tb.sigmaAt(ts))
		}
	} else {
		smax := float64(tb.sigmas[trainSteps-1])
		smin := float64(tb.sigmas[0])
		for i, s := range karras64(smin, smax, steps) {
			p.timesteps[i] = math.RoundToEven(tb.sigmaToT64(s))
			p.sigmas[i] = float64(float32(s))
		}
	}
	p.refSigmas = append([]float64(nil), p.sigmas...)
	return p
}

// ddimSigma is the sigma form of an alphas_cumprod entry.
func ddimSigma(ac float32) float64 {
	a := float64(ac)
	return math.Sqrt((1 - a) / a)
}

func diffusersDDIM(tb *table, steps int) *plan {
	ratio := trainSteps / steps
	p := &plan{timesteps: make([]float64, steps), sigmas: make([]float64, steps+1), vp: true, initNoiseSigma: 1}
	for i := range steps {
		ts := (steps-1-i)*ratio + 1
		p.timesteps[i] = float64(ts)
		p.sigmas[i] = ddimSigma(tb.alphasCumprod[ts])
	}
	// set_alpha_to_one=False: the last step lands on alphas_cumprod[0].
	p.sigmas[steps] = ddimSigma(tb.alphasCumprod[0])
	return p
}

func a1111DDIM(tb *table, steps int) *plan {
	var ts []int
	for t := 0; t < trainSteps; t += trainSteps / steps {
		ts = append(ts, min(t+1, trainSteps-1))
	}
	n := len(ts)
	p := &plan{timesteps: make([]float64, n), sigmas: make([]float64, n+1), vp: true, initNoiseSigma: 1}
	for i := range n {
		t := ts[n-1-i]
		p.timesteps[i] = float64(t)
		p.sigmas[i] = ddimSigma(tb.alphasCumprod[t])
	}
	p.sigmas[n] = ddimSigma(tb.alphasCumprod[0])
	return p
}

func kdiffusionPlan(tb *table, steps int, karras bool) *plan {
	sig := make([]float32, 0, steps+1)
	if karras {
		sig = append(sig, karras32(float64(tb.sigmas[0]), float64(tb.sigmas[trainSteps-1]), steps)...)
	} else {
		for _, t := range torchLinspace32(trainSteps-1, 0, steps) {
			sig = append(sig, tb.tToSigma32(t))
		}
	}
	sig = append(sig, 0)
	p := &plan{timesteps: make([]float64, steps), sigmas: make([]float64, steps+1)}
	for i, s := range sig {
		p.sigmas[i] = float64(s)
		if i < steps {
			p.timesteps[i] = float64(tb.sigmaToT32(s))
		}
	}
	p.initNoiseSigma = float64(sig[0])
	p.refSigmas = append([]float64(nil), p.sigmas...)
	return p
}
