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
// lora_down:<key> [R, in·k·k] and lora_up:<key> [out, R], R free per layer,
// and uses W + up·down as the layer's weight (nn.Param.Delta). Several
// LoRAs stack by concatenating their factors along R, each one's
// scale·alpha/rank folded into its rows of up; layers no LoRA of the set
// changes get empty (R = 0) factors, whose product ONNX Runtime's CPU and
// CUDA MatMul kernels define as zeros, so strength 0 is the base model bit
// for bit (tested). A change of LoRA set or strength is therefore a change
// of inputs (Slots.Inputs): no session is created, no weight is read again.
//
// Why not merge into copies at load: every change of set would need new
// sessions, and creating the full SDXL UNet's CPU session takes 110–230 s
// and peaks at 11–20 GB (BENCHMARKS.md, engine/pipeline), plus merged
// copies of up to 2.2 G linear weights that would have to be written out as
// external data (a ModelProto cannot exceed 2 GB). Set.Merge exists for
// tools and checks only.
//
// Why the weight-space product up·down rather than the activation-space
// y = W·x + up·(down·x): both were measured (BenchmarkDesign, a chain of
// Linear layers of UNet widths and token counts, CPU, one thread). The
// product costs out·in·R per layer and run, independent of batch and image
// size, where the activation form costs N·R·(in+out) plus an N·out add.
// On CPU the weight form's real cost is elsewhere: a weight that is not a
// constant loses ONNX Runtime's prepacked GEMM (a plain graph whose weight
// is an input is as slow), 9–21 % on those isolated GEMMs against 1–13 %
// for the activation form. On whole UNets that difference disappears into
// the rest of the step (attention, convolutions, norms): the tiny UNet pays
// about 3 ms per step for its 374 slots, and the mid-size and full-size
// UNets measured no cost above the run-to-run noise (BENCHMARKS.md). The
// weight form needs no change to the layers (it is the Param.Delta hook),
// covers convolutions (LoCon) and CLIP-G's packed q/k/v rows the same way,
// and on GPUs moves less memory per layer (C² instead of N·C).
//
// Slots cost inputs too: each Run wraps every slot input in an ONNX Runtime
// tensor (about 1.3 ms for the full UNet's 1,588), and the first Run after
// the ranks change re-plans memory once. A graph may have slots for all
// layers (Arch.AllSlots: any set applies, nothing is ever rebuilt) or only
// for the layers some sets change (Arch.SlotsFor; Slots.Covers says when a
// new set needs more, i.e. a rebuild); a model loaded without slots runs
// exactly the plain graph.
package lora
