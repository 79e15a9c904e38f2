// Package lora applies LoRA files, as users download them, to SDXL's UNet and
// text encoders: kohya-ss files (lora_unet_*, lora_te1_*, lora_te2_* with
// .lora_down/.lora_up/.alpha, LoCon convolutions included, UNet paths in sgm
// or diffusers naming) and diffusers files (PEFT lora_A/lora_B, the older
// attention-processor, lora.down/up and lora_linear_layer names), told
// apart by their tensor names. The facts are in the project's reference,
// lora.md; lora-targets.tsv is checked row by row in the tests.
//
// # Reading files
//
// An Arch lists every layer a LoRA can change in one model configuration
// (NewArch; full-size SDXL has 1,058: kohya's 1,052 plus conv_in, conv_out,
// time_embed and label_emb, which other trainers adapt), with every name
// the formats give it, generated from the same module trees the networks
// are built from. Arch.Open reads a file, maps each module onto its layer
// and checks the shapes. Missing alpha means alpha = rank (kohya and
// diffusers both do so; PEFT files may carry alpha in their
// lora_adapter_metadata, which is read). A damaged file gives the
// safetensors error; a rank mismatch between down and up, a LoRA for SD1.x
// or SD2.x (recognised by name or by the cross-attention width) or for other
// sizes gives an error naming the modules (ErrArchitecture), and LyCORIS
// LoHa/LoKr/Tucker, DoRA and full diffs are refused (ErrUnsupported), since
// applying part of such a file would silently give other images. Names that
// match no layer do not fail the file: A1111 and ComfyUI skip them
// silently, pixery lists them in File.Unmatched for the caller to show
// (refusing a whole LoRA over one stray tensor, e.g. a norm that a "full"
// LyCORIS preset trained, would be worse for users than applying the rest
// and saying so). A file where nothing matches is an error.
//
// # Applying them: LoRA slots
//
// The base weights are never changed, on disk or in memory. A graph built
// after Slots.Attach takes, for every slotted layer, two float32 inputs,
// lora_down:<key> ([R, in] or [R, in, k, k]) and lora_up:<key> ([out, R]
// or [out, R, 1, 1]), R free per layer, and adds up·(down·x) to the
// layer's output W·x (nn.Param.Adapter; for convolutions down is a
// convolution with the layer's kernel, stride and padding, up a 1×1 one).
// Several LoRAs stack by concatenating their factors along R, each one's
// scale·alpha/rank folded into its rows of up; layers no LoRA of the set
// changes get a zero rank-1 pair, whose term is exactly zero, so strength 0
// is the base model bit for bit (tested). A change of LoRA set or strength
// is therefore a change of inputs (Slots.Inputs): no session is created, no
// weight is read again.
//
// Why not merge into copies at load: every change of set would need new
// sessions, and creating the full SDXL UNet's CPU session takes 80–230 s
// and peaks at 11–15 GB (BENCHMARKS.md), plus merged copies of up to 2.2 G
// linear weights that would have to be written out as external data (a
// ModelProto cannot exceed 2 GB). Set.Merge exists for tools and checks.
//
// Why up·(down·x) on activations rather than W + up·down on weights (the
// nn.Param.Delta hook); both were measured (BenchmarkDesign, BENCHMARKS.md).
// The weight form looks cheaper on paper (out·in·R per layer, independent
// of image size, against N·R·(in+out)), and on UNet-sized Linear layers the
// two cost about the same on CPU (0–10 % over no LoRA each; a weight that
// is not a constant loses ONNX Runtime's prepacked GEMM, which eats the
// weight form's advantage), while at text-encoder token counts the weight
// form costs 19–46 %. Decisive is memory: ONNX Runtime runs nodes that do
// not depend on the image early, so every W + up·down of the UNet was
// computed before the first layer and held at once, a second float32 copy
// of the weights (a chain of 24 4096² layers: +1.7 GB; the full UNet was
// killed for memory on a 23 GB machine, its first step twice as slow). The
// activation form keeps every weight a constant consumed in place
// (TestWeightsUntouched) and covers convolutions (LoCon) and CLIP-G's
// packed q/k/v rows (three terms concatenated) the same way.
//
// Slots cost something per step even when empty: two skinny products and an
// add per layer, and each Run wraps every slot input in an ONNX Runtime
// tensor (about 1.3 ms for the full UNet's 1,588). BENCHMARKS.md has the
// figures for the tiny, a mid-size and the full-size UNet. A graph may have
// slots for all layers (Arch.AllSlots: any set applies, nothing is ever
// rebuilt) or only for the layers some sets change (Arch.SlotsFor;
// Slots.Covers says when a new set needs more, i.e. a rebuild); a model
// loaded without slots runs exactly the plain graph.
package lora
