// Package ipadapter runs IP-Adapters (tencent-ailab, files as h94 ships
// them) on pixery's SDXL UNet: a reference image steers generation through
// extra image tokens that every cross-attention layer attends to
// (ip-adapter.md).
//
// Supported files: the plain adapters ip-adapter_sdxl (with the CLIP
// ViT-bigG/14 image encoder) and ip-adapter_sdxl_vit-h (ViT-H/14), 4 image
// tokens projected from the encoder's image_embeds; and the plus adapters
// ip-adapter-plus_sdxl_vit-h and -plus-face (ViT-H/14), 16 tokens resampled
// from the encoder's penultimate hidden states. Encoders are transformers
// CLIPVisionModelWithProjection files (package clipvision).
//
// # Design: the UNet holds no adapter weight
//
// Three graphs: the image encoder (clipvision), the projection graph
// (Adapter.Build: image features → tokens → to_k_ip and to_v_ip of all 70
// cross-attention layers), and the UNet, which HookUNet extends with two
// inputs per cross-attention layer N, KeyInput(N) and ValueInput(N)
// ([rows, tokens, channels]), and computes in every attn2
//
//	h = attention(q, k_text, v_text) + attention(q, K_ip, V_ip)
//
// before to_out. The scale is folded into the values (scale·softmax(qKᵀ)V
// = softmax(qKᵀ)(scale·V)), so there is no scale input and scale 0 adds
// exact zeros. The encoder and projection run once per reference image;
// each step passes the same keys and values. So switching the adapter, the
// image or the scale never rebuilds the UNet session (minutes at full
// size), and the UNet graph does not grow by the adapter's 350–420 M
// parameters.
//
// One hooked UNet graph serves jobs with and without an adapter: without
// one, Hook.Off gives one zero token per row, for which the output equals
// the plain graph's exactly (tested). Measured on the tiny golden UNet
// (BENCHMARKS.md; one thread, median CPU time per step): the hooked graph
// costs +6–7 % with Off, +6 % with 4 image tokens and +8 % with 16, an
// upper bound because that UNet's step is dominated by per-node overhead;
// at SDXL size the extra attention over 1–16 keys is, by arithmetic, well
// under 1 % of a step. A zero-token input (K and V of shape [rows, 0, C])
// also gives exact zeros on the CPU provider and is 1–3 % cheaper on the
// tiny UNet; Off uses one token so that no execution provider has to
// handle empty tensors (CUDA was not available to check).
//
// # Use
//
//	hook := ipadapter.HookUNet(checkpoint.UNet) // before building the UNet graph
//	...
//	enc, err := ipadapter.FindEncoderIn(modelsDir, adapterPath)
//	m, err := ipadapter.Load(env, adapterPath, enc, ipadapter.Options{UNet: cfg.UNet, Float16: half})
//	cond, err := m.EncodeImage(ctx, imageFileBytes) // cond.ImageSHA256 for the metadata
//	ip, err := cond.Inputs(batch, cfgOn, scale)       // or hook.Off(rows) without an adapter
//	// add ip's tensors to the UNet's inputs at every step
//
// The negative for classifier-free guidance is made as the reference makes
// it (ip-adapter.md §5): for plain adapters the projection of a zero
// image_embeds; for plus adapters the encoder's penultimate states of an
// all-zero normalised pixel tensor (cached per loaded Model).
package ipadapter
