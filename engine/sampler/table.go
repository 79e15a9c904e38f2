package sampler

import "math"

// SDXL's training noise schedule (scheduler_config.json of SDXL base, and
// sgm's LegacyDDPMDiscretization): scaled_linear betas, 1000 steps.
const (
	trainSteps = 1000
	betaStart  = 0.00085
	betaEnd    = 0.012
)

// Values the references put in the last alphas_cumprod entry after the
// zero-terminal-SNR rescale, so that the first sigma stays finite.
const (
	// diffusers: "FP16 smallest positive subnormal" (EulerDiscreteScheduler,
	// DPMSolverMultistepScheduler).
	ztsnrLastDiffusers = 0x1p-24
	// A1111 (rescale_zero_terminal_snr_abar) and ComfyUI.
	ztsnrLastA1111 = 4.8973451890853435e-08
)

// table is the per-training-timestep schedule as one reference computes it.
// Every value is a float32 because both references hold them in float32
// tensors; keeping their rounding makes the sigmas match to the last bit
// most of the time.
type table struct {
	alphasCumprod []float32
	sigmas        []float32 // sqrt((1-ac)/ac), ascending with t
	logSigmas     []float32
}

// diffusersTable is the schedule of diffusers' schedulers: betas from a
// float32 torch.linspace squared in float32, then torch.cumprod (which on CPU
// accumulates in double and stores float32).
func diffusersTable(ztsnr bool) *table {
	lin := torchLinspace32(math.Sqrt(betaStart), math.Sqrt(betaEnd), trainSteps)
	betas := make([]float64, trainSteps)
	for i, v := range lin {
		betas[i] = float64(v * v)
	}
	var ac []float32
	if ztsnr {
		ac = rescaleZeroTerminalSNR(betas)
		ac[trainSteps-1] = ztsnrLastDiffusers
	} else {
		ac = make([]float32, trainSteps)
		acc := 1.0
		for i, b := range betas {
			acc *= float64(1 - float32(b))
			ac[i] = float32(acc)
		}
	}
	return newTable(ac)
}

// a1111Table is the schedule A1111 uses for SDXL: sgm's float64 betas
// (torch.linspace in float64, squared) and numpy's float64 cumprod, cast to
// float32 when stored on the model.
func a1111Table(ztsnr bool) *table {
	lin := torchLinspace64(math.Sqrt(betaStart), math.Sqrt(betaEnd), trainSteps)
	betas := make([]float64, trainSteps)
	ac := make([]float32, trainSteps)
	acc := 1.0
	for i, v := range lin {
		betas[i] = float64(v * v)
		acc *= 1 - betas[i] // numpy's float64 cumprod
		ac[i] = float32(acc)
	}
	if ztsnr {
		b := make([]float64, trainSteps)
		// Rescale the float32 alphas_cumprod A1111 holds, via their betas.
		prev := 1.0
		for i, a := range ac {
			b[i] = 1 - float64(a)/prev
			prev = float64(a)
		}
		ac = rescaleZeroTerminalSNR(b)
		ac[trainSteps-1] = ztsnrLastA1111
	}
	return newTable(ac)
}

func newTable(ac []float32) *table {
	t := &table{
		alphasCumprod: ac,
		sigmas:        make([]float32, len(ac)),
		logSigmas:     make([]float32, len(ac)),
	}
	for i, a := range ac {
		// ((1 - ac) / ac) ** 0.5 in float32, as both references compute it.
		q := (1 - a) / a
		s := float32(math.Sqrt(float64(q)))
		t.sigmas[i] = s
		t.logSigmas[i] = float32(math.Log(float64(s)))
	}
	return t
}

// rescaleZeroTerminalSNR is diffusers' rescale_zero_terminal_snr (Lin et al.,
// "Common Diffusion Noise Schedules and Sample Steps are Flawed", alg. 1),
// returning the new alphas_cumprod. It is computed in float64: there is no
// golden for it, and the references' float32 rounding here is far below
// what a v-prediction model can tell apart.
func rescaleZeroTerminalSNR(betas []float64) []float32 {
	n := len(betas)
	sqrtAC := make([]float64, n)
	acc := 1.0
	for i, b := range betas {
		acc *= 1 - b
		sqrtAC[i] = math.Sqrt(acc)
	}
	first, last := sqrtAC[0], sqrtAC[n-1]
	scale := first / (first - last)
	ac := make([]float32, n)
	for i, s := range sqrtAC {
		v := (s - last) * scale
		ac[i] = float32(v * v)
	}
	return ac
}

// torchLinspace32 reproduces torch.linspace(start, end, n, dtype=float32) of
// PyTorch 1.13's CPU kernel as built for x86-64 with AVX2: the step is
// computed in float32, the first half counts up from start and the second
// half down from end, and the compiler contracted start + step*idx into a
// fused multiply-add. The vectorised loop fills blocks of 8 as base + k*step
// from the block's first value, two blocks per iteration; the tail is
// scalar. This layout reproduces every sigma diffusers' schedulers hold in
// the golden file bit for bit, where a plain float32 formula misses half of
// them by an ulp or two.
func torchLinspace32(start, end float64, n int) []float32 {
	out := make([]float32, n)
	if n == 0 {
		return out
	}
	s, e := float32(start), float32(end)
	if n == 1 {
		out[0] = s
		return out
	}
	step := (e - s) / float32(n-1)
	half := n / 2
	scalar := func(idx int) float32 {
		if idx < half {
			return fma32(step, float32(idx), s)
		}
		return fma32(-step, float32(n-idx-1), e)
	}
	const w = 8
	i := 0
	for ; i+2*w <= n; i += 2 * w {
		for v := 0; v < 2; v++ {
			base := scalar(i + v*w)
			for k := 0; k < w; k++ {
				out[i+v*w+k] = base + float32(float32(k)*step)
			}
		}
	}
	for ; i < n; i++ {
		out[i] = scalar(i)
	}
	return out
}

// torchLinspace64 is torchLinspace32 for float64 (vector width 4).
func torchLinspace64(start, end float64, n int) []float64 {
	out := make([]float64, n)
	if n == 0 {
		return out
	}
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float64(n-1)
	half := n / 2
	at := func(idx int) float64 {
		if idx < half {
			return math.FMA(step, float64(idx), start)
		}
		return math.FMA(-step, float64(n-idx-1), end)
	}
	const w = 4
	i := 0
	for ; i+2*w <= n; i += 2 * w {
		for v := 0; v < 2; v++ {
			base := at(i + v*w)
			for k := 0; k < w; k++ {
				out[i+v*w+k] = base + float64(float64(k)*step)
			}
		}
	}
	for ; i < n; i++ {
		out[i] = at(i)
	}
	return out
}

// fma32 is a float32 fused multiply-add, a*b+c rounded once. The product of
// two float32 values is exact in float64; the sum is rounded to float64 and
// then to float32, and that double rounding is repaired when the float64 sum
// lands exactly halfway between two float32 values.
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact: 48 significant bits at most
	s := p + float64(c)
	r := float32(s)
	if float64(r) == s {
		return r
	}
	// The rounding error of the float64 sum (Knuth's TwoSum).
	bv := s - p
	e := (p - (s - bv)) + (float64(c) - bv)
	if e == 0 {
		return r
	}
	// other is r's neighbour on the far side of s; s is a tie only if it
	// lies exactly midway (both differences are exact by Sterbenz).
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if s-float64(r) != float64(other)-s {
		return r
	}
	if (e > 0) == (other > r) {
		return other
	}
	return r
}
