package sampler

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Model runs the denoising network once. x is the model input, already
// scaled by the sampler (x_VE / sqrt(sigma^2 + 1)), and t the timestep as the
// UNet receives it. It returns the raw network output, eps or v according to
// Options.Prediction, with len(x) elements. The pipeline's Model runs the
// UNet with classifier-free guidance; it must not keep x after returning.
type Model func(ctx context.Context, x []float32, t float64) ([]float32, error)

// NoiseSource provides the fresh noise ancestral samplers add at each step.
type NoiseSource interface {
	// Noise fills dst with standard normal noise for step (0-based). A
	// sampler calls it at most once per step, in step order, and only for
	// steps that add noise (every step but the last for Euler ancestral).
	Noise(step int, dst []float32) error
}

// Step is what a Callback sees after each step.
type Step struct {
	Index, Total int
	// Timestep is what the model received; Sigma the noise level it was
	// evaluated at.
	Timestep, Sigma float64
	// Latent is the latent after the step, in the sampler's latent
	// convention (see Sampler); Denoised is the model's estimate of the
	// clean latent at this step. Both are reused: valid only during the call.
	Latent, Denoised []float32
}

// Callback is called after every step, for progress and previews. A non-nil
// error stops the walk and is returned by Sample.
type Callback func(Step) error

// Prediction is what the model predicts.
type Prediction int

// The prediction types of SDXL checkpoints.
const (
	Epsilon     Prediction = iota // the added noise (SDXL base and most fine-tunes)
	VPrediction                   // v = alpha*eps - sigma_VP*x0 (NoobAI v-pred, checkpoints with a v_pred key)
)

// String names the prediction type as diffusers' prediction_type does.
func (p Prediction) String() string {
	if p == VPrediction {
		return "v_prediction"
	}
	return "epsilon"
}

// Options configure a Sampler beyond its Spec and step count.
type Options struct {
	Variant    Variant
	Prediction Prediction
	// ZeroTerminalSNR rescales the betas to zero terminal SNR (Lin et al.),
	// for checkpoints marked ztsnr. The last alphas_cumprod entry is then
	// set to the reference's tiny positive value so the first sigma stays
	// finite (2^-24 for diffusers, 4.8973451890853435e-08 for A1111).
	ZeroTerminalSNR bool
}

// Sampler walks a latent from noise to a clean latent with one algorithm,
// schedule and step count. It is immutable and safe for concurrent use.
//
// Latent convention: Sample takes and returns latents the way the reference
// scheduler holds them, so per-step latents compare directly with it. The
// pipeline starts from unit noise times InitNoiseSigma and decodes what
// Sample returns. Internally every algorithm runs in sigma form
// (k-diffusion's x = x0 + sigma*eps) in float64; DPM-Solver and DDIM in the
// Diffusers variant, and DDIM in the A1111 variant, hold the
// variance-preserving latent x/sqrt(sigma^2+1) instead, and the sampler
// converts at the edges.
//
// Model input: the sampler applies the reference's scale_model_input itself
// (k-diffusion's c_in = 1/sqrt(sigma^2+1)); the Model receives exactly the
// UNet's latent input.
type Sampler struct {
	spec    Spec
	variant Variant
	pred    Prediction
	plan    *plan
}

// New builds a sampler for steps steps (1..MaxSteps).
func New(spec Spec, steps int, opts Options) (*Sampler, error) {
	if opts.Prediction != Epsilon && opts.Prediction != VPrediction {
		return nil, fmt.Errorf("unknown prediction type %d", opts.Prediction)
	}
	p, err := buildPlan(spec, opts.Variant, steps, opts.ZeroTerminalSNR)
	if err != nil {
		return nil, fmt.Errorf("sampler %s: %w", spec.Name(), err)
	}
	return &Sampler{spec: spec, variant: opts.Variant, pred: opts.Prediction, plan: p}, nil
}

// Spec returns the sampler's Spec.
func (s *Sampler) Spec() Spec { return s.spec }

// Name is the Spec's canonical name.
func (s *Sampler) Name() string { return s.spec.Name() }

// Variant returns the reference the sampler reproduces.
func (s *Sampler) Variant() Variant { return s.variant }

// Steps is the number of model evaluations. It equals the requested steps,
// except for A1111's DDIM, which takes len(range(0, 1000, 1000//steps)):
// 29 for 28, 167 for 150.
func (s *Sampler) Steps() int { return len(s.plan.timesteps) }

// Timesteps returns what the model receives at each step (a copy).
func (s *Sampler) Timesteps() []float64 { return append([]float64(nil), s.plan.timesteps...) }

// Sigmas returns the reference scheduler's sigmas, one per step plus the
// final 0 (a copy). DDIM schedulers have no sigmas and return nil.
func (s *Sampler) Sigmas() []float64 {
	if s.plan.refSigmas == nil {
		return nil
	}
	return append([]float64(nil), s.plan.refSigmas...)
}

// InitNoiseSigma is the factor that turns unit Gaussian noise into the first
// latent: diffusers' init_noise_sigma (sqrt(sigma_max^2+1) for Euler with
// leading spacing, 1 for DPM-Solver and DDIM), or k-diffusion's sigmas[0].
func (s *Sampler) InitNoiseSigma() float64 { return s.plan.initNoiseSigma }

// ErrNoNoise is returned when an ancestral sampler is given no NoiseSource.
var ErrNoNoise = errors.New("ancestral sampler needs a noise source")

// Sample runs the walk from latent (unit noise times InitNoiseSigma, or any
// partially denoised latent in the same convention) and returns the final
// latent. ctx is checked before every step. latent is not modified. noise may
// be nil for samplers that are not ancestral.
func (s *Sampler) Sample(ctx context.Context, model Model, latent []float32, noise NoiseSource, cb Callback) ([]float32, error) {
	if len(latent) == 0 {
		return nil, errors.New("sample: empty latent")
	}
	if model == nil {
		return nil, errors.New("sample: nil model")
	}
	if s.spec.Ancestral() && noise == nil {
		return nil, fmt.Errorf("sample %s: %w", s.Name(), ErrNoNoise)
	}
	p := s.plan
	n := len(latent)
	x := make([]float64, n)
	scale := 1.0
	if p.vp {
		scale = math.Sqrt(sq(p.sigmas[0]) + 1)
	}
	for j, v := range latent {
		x[j] = float64(v) * scale
	}
	xin := make([]float32, n)
	den := make([]float64, n)
	var oldDen []float64
	if s.spec.Algorithm == DPMPP2M {
		oldDen = make([]float64, n)
	}
	var noiseBuf, cbLatent, cbDen []float32
	if s.spec.Ancestral() {
		noiseBuf = make([]float32, n)
	}
	if cb != nil {
		cbLatent = make([]float32, n)
		cbDen = make([]float32, n)
	}
	total := len(p.timesteps)
	for i := range total {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sample %s step %d/%d: %w", s.Name(), i+1, total, err)
		}
		sigma, next := p.sigmas[i], p.sigmas[i+1]
		cin := 1 / math.Sqrt(sq(sigma)+1)
		for j, v := range x {
			xin[j] = float32(v * cin)
		}
		out, err := model(ctx, xin, p.timesteps[i])
		if err != nil {
			return nil, fmt.Errorf("sample %s step %d/%d: %w", s.Name(), i+1, total, err)
		}
		if len(out) != n {
			return nil, fmt.Errorf("sample %s step %d/%d: model returned %d values for a latent of %d", s.Name(), i+1, total, len(out), n)
		}
		if j := nonFinite(out); j >= 0 {
			// A1111 stops the same way ("A tensor with all NaNs was produced
			// in Unet"): a broken checkpoint or an fp16 overflow, not
			// something more steps can fix.
			return nil, fmt.Errorf("sample %s step %d/%d: model output[%d] is %v", s.Name(), i+1, total, j, out[j])
		}
		s.denoise(x, out, sigma, den)

		switch s.spec.Algorithm {
		case Euler, DDIM:
			// DDIM with eta 0 is Euler's step in sigma form:
			// x' = x0 + sigma' * eps.
			eulerStep(x, den, sigma, next)
		case EulerAncestral:
			down, up := ancestralStep(sigma, next)
			eulerStep(x, den, sigma, down)
			// k-diffusion draws only when next > 0; drawing by that rule
			// keeps a shared generator in step with A1111.
			if next > 0 {
				if err := noise.Noise(i, noiseBuf); err != nil {
					return nil, fmt.Errorf("sample %s step %d/%d: noise: %w", s.Name(), i+1, total, err)
				}
				for j, z := range noiseBuf {
					x[j] += float64(float64(z) * up)
				}
			}
		case DPMPP2M:
			dpmStep(x, den, oldDen, p.sigmas, i)
			copy(oldDen, den)
		}

		if cb != nil {
			outScale := 1.0
			if p.vp {
				outScale = 1 / math.Sqrt(sq(next)+1)
			}
			for j, v := range x {
				cbLatent[j] = float32(v * outScale)
				cbDen[j] = float32(den[j])
			}
			st := Step{Index: i, Total: total, Timestep: p.timesteps[i], Sigma: sigma, Latent: cbLatent, Denoised: cbDen}
			if err := cb(st); err != nil {
				return nil, fmt.Errorf("sample %s step %d/%d: callback: %w", s.Name(), i+1, total, err)
			}
		}
	}
	outScale := 1.0
	if last := p.sigmas[total]; p.vp {
		outScale = 1 / math.Sqrt(sq(last)+1)
	}
	res := make([]float32, n)
	for j, v := range x {
		res[j] = float32(v * outScale)
	}
	return res, nil
}

// denoise turns the model output into the denoised estimate x0 in sigma
// form. For eps, x0 = x - sigma*eps. For v, with sigma_data = 1 (k-diffusion's
// CompVisVDenoiser, diffusers' v_prediction): x0 = c_skip*x + c_out*v,
// c_skip = 1/(sigma^2+1), c_out = -sigma/sqrt(sigma^2+1).
func (s *Sampler) denoise(x []float64, out []float32, sigma float64, den []float64) {
	if s.pred == VPrediction {
		cskip := 1 / (sq(sigma) + 1)
		cout := -sigma / math.Sqrt(sq(sigma)+1)
		for j, v := range x {
			den[j] = float64(v*cskip) + float64(float64(out[j])*cout)
		}
		return
	}
	for j, v := range x {
		den[j] = v - float64(float64(out[j])*sigma)
	}
}

// eulerStep advances x from sigma to next along d = (x - x0)/sigma.
// The explicit float64 conversions keep the compiler from fusing multiply-adds,
// so that every platform computes the same bits.
func eulerStep(x, den []float64, sigma, next float64) {
	dt := next - sigma
	for j, v := range x {
		d := (v - den[j]) / sigma
		x[j] = v + float64(d*dt)
	}
}

// ancestralStep splits the move to next into a deterministic part down and
// fresh noise of size up (eta 1): up = sqrt(next^2 (sigma^2 - next^2) / sigma^2).
func ancestralStep(sigma, next float64) (down, up float64) {
	if next == 0 {
		return 0, 0
	}
	up = math.Sqrt(sq(next) * (sq(sigma) - sq(next)) / sq(sigma))
	up = min(up, next)
	down = math.Sqrt(sq(next) - sq(up))
	return down, up
}

// dpmStep is DPM-Solver++(2M) in sigma form (k-diffusion's sample_dpmpp_2m,
// which diffusers' dpmsolver++ midpoint solver equals algebraically). The
// first step and the step onto sigma 0 are first order, as in both
// references (diffusers: lower_order_final with final_sigmas_type "zero").
func dpmStep(x, den, oldDen, sigmas []float64, i int) {
	sigma, next := sigmas[i], sigmas[i+1]
	if next == 0 {
		copy(x, den)
		return
	}
	h := math.Log(sigma) - math.Log(next) // t = -log(sigma); h = t_next - t
	ratio := next / sigma
	coef := -math.Expm1(-h)
	if i == 0 || h == 0 {
		for j, v := range x {
			x[j] = float64(ratio*v) + float64(coef*den[j])
		}
		return
	}
	hLast := math.Log(sigmas[i-1]) - math.Log(sigma)
	if hLast == 0 {
		for j, v := range x {
			x[j] = float64(ratio*v) + float64(coef*den[j])
		}
		return
	}
	r := hLast / h
	a := 1 + 1/(2*r)
	b := 1 / (2 * r)
	for j, v := range x {
		d := float64(a*den[j]) - float64(b*oldDen[j])
		x[j] = float64(ratio*v) + float64(coef*d)
	}
}

// sq is x*x rounded on its own, so that no platform fuses it into an
// addition.
func sq(x float64) float64 { return float64(x * x) }

// nonFinite returns the index of the first NaN or infinite value, or -1.
func nonFinite(v []float32) int {
	for j, x := range v {
		if x-x != 0 { // NaN or ±Inf
			return j
		}
	}
	return -1
}
