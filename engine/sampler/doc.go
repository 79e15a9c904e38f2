// Package sampler implements the diffusion samplers of SDXL: Euler, Euler
// ancestral, DPM++ 2M and DDIM, on SDXL's noise schedule (scaled_linear
// betas 0.00085-0.012, 1000 training steps), with uniform or Karras
// spacing, for epsilon and v-prediction models, optionally with the
// zero-terminal-SNR rescale. It knows nothing of ONNX: a sampler drives a
// Model function, which the pipeline implements by running the UNet with
// classifier-free guidance.
//
// Each sampler reproduces one of two references (Variant):
//
//   - Diffusers: diffusers v0.30.3's schedulers with SDXL's config
//     ("leading" timesteps, steps_offset 1). DPM-Solver's leading grid
//     divides by steps+1 (953 first at 28 steps, where Euler starts at 946),
//     its timesteps are integers, and Euler with Karras sigmas passes the
//     model fractional timesteps.
//   - A1111: AUTOMATIC1111's k-diffusion samplers. The model gets the
//     continuous t = sigma_to_t(sigma), the walk starts from noise*sigmas[0],
//     Karras sigmas span the float32 sigma_min/sigma_max of A1111's schedule
//     (float64 cumprod cast to float32), and "Uniform" is k-diffusion's
//     get_sigmas. DDIM is A1111's own CompVis DDIM.
//
// Both are checked against testdata/golden/samplers.json: every timestep and
// sigma, every model input and every latent of the golden trajectories agree
// within 1e-5 (measured: about 3e-6 at worst, on Euler ancestral). The
// diffusers sigmas are bit-identical, because the float32 training table is
// built as PyTorch 1.13 builds it (see torchLinspace32).
//
// How a walk works: a Sampler holds a plan fixed at construction (what the
// model receives at each step and the noise levels in sigma form). Sample
// runs the steps in float64 in sigma form, x = x0 + sigma*eps, applies the
// model-input scaling x/sqrt(sigma^2+1) itself before calling the Model
// (k-diffusion's c_in; diffusers' scale_model_input), converts the model's
// eps or v into the denoised estimate, and takes the algorithm's step.
// Latents going in and out (and to the Callback) are in the reference's own
// convention, so the pipeline multiplies unit noise by InitNoiseSigma and
// decodes whatever Sample returns.
//
// Sampler names: Lookup accepts pixery's names (euler, euler_a, dpmpp_2m,
// dpmpp_2m_karras, ddim, euler_karras, euler_a_karras) and A1111's names and
// schedule types ("DPM++ 2M" + "Karras"). euler_a_karras exists for A1111's
// "Euler a" + "Karras"; diffusers v0.30.3's EulerAncestralDiscreteScheduler
// has no Karras option, so its Diffusers variant takes EulerDiscreteScheduler's
// Karras timesteps and sigmas (no golden covers it, nor A1111's DDIM, nor
// v-prediction and zero terminal SNR, which are checked for internal
// consistency instead).
//
// Determinism: the arithmetic uses Go's math package (Log, Exp, Pow, Expm1)
// and explicit float64 conversions that stop the compiler from fusing
// multiply-adds; results may still differ in the last bit between
// architectures where math's assembly and pure-Go paths differ. That is far
// below what the UNet on a GPU reproduces; the seeded noise, which must be
// identical everywhere, lives in package rng.
package sampler
