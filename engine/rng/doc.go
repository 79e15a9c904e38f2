// Package rng makes the seeded Gaussian noise a diffusion job starts from,
// and the per-step noise of ancestral samplers, exactly as the tools users
// compare pixery with: a seed copied from an A1111 or ComfyUI image gives
// the same starting latent here.
//
// Two generators are reproduced value for value:
//
//   - TorchCPU is PyTorch's CPU generator: torch.manual_seed (MT19937 seeded
//     with seed mod 2^32) and torch.randn on float32 tensors, including the
//     vectorised Box-Muller path for tensors of 16 or more elements (blocks
//     of 16, the last block redrawn when the size is not a multiple of 16)
//     with PyTorch's AVX2 float32 log and sincos and their fused
//     multiply-adds, and the scalar float64 path for smaller tensors.
//     ComfyUI draws its initial noise this way, and so does A1111 with the
//     RNG source set to CPU.
//   - Philox is A1111's "NV" source (modules/rng_philox.py), its emulation
//     of torch.randn on an NVIDIA GPU: Philox-4x32-10 at counter
//     (offset, 0, index, 0) with the 64-bit seed as key, float64 Box-Muller
//     (sine branch), one offset per call. A1111's default "GPU" source on an
//     NVIDIA card gives the same values to a few float32 ulps (the emulation
//     is float64 where CUDA is float32).
//
// Noise combines them as each tool does (Kind): "a1111" (the default GPU
// source through Philox, one generator per image seeded seed+i, ancestral
// step noise from the same generators or from seed+i+ENSD ones when "Eta
// noise seed delta" is set), "a1111-cpu", and "comfy" (one CPU generator for
// the whole batch). Noise implements the sampler package's NoiseSource.
//
// Why these generators: they are what the two tools use by default, so they
// are what makes "same seed, same image" true. Both are checked against
// testdata/golden/rng: every stored value bit for bit, and the sha256 of
// every 98,304-value draw, for seeds 0 to 2^64-1.
//
// Same latents on every platform: the generators are integer arithmetic
// (MT19937, Philox) followed by floating-point Box-Muller written so that
// no platform can change a bit. Go's math.Log, Sin and Cos are not used:
// math.Log is assembly on amd64 and pure Go elsewhere, and Go may fuse
// x*y+z into one rounding on arm64, ppc64le, s390x and riscv64. This package
// has its own float64 log and sincos (fdlibm's algorithms, under one ulp),
// rounds every product explicitly (a conversion the Go spec forbids fusing),
// does PyTorch's intended fused multiply-adds with an exactly rounded
// float32 FMA built on float64 arithmetic, and uses only math.Sqrt, Floor
// and bit conversions, which IEEE 754 makes exact. Compiled for arm64,
// ppc64le, s390x, riscv64 and loong64 the package contains no fused
// multiply-add instruction.
package rng
