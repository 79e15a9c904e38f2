package lora

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// scaleSuffix names the golden tensors of a strength.
var scaleSuffix = map[float64]string{0.8: "_s0_8", 1.0: "_s1_0"}

// maxDiff is max|a−b| and whether a and b are bit-identical.
func maxDiff(a, b runtime.Tensor) (float64, bool) {
	var m float64
	same := len(a.F32) == len(b.F32)
	for i := range a.F32 {
		m = math.Max(m, math.Abs(float64(a.F32[i])-float64(b.F32[i])))
		same = same && math.Float32bits(a.F32[i]) == math.Float32bits(b.F32[i])
	}
	return m, same
}

// TestGoldenUNet applies the kohya LoRA and its PEFT twin to the tiny UNet
// through one slotted session (the strength and the file are only inputs)
// and matches diffusers' fused outputs at both strengths and both
// timestep inputs.
func TestGoldenUNet(t *testing.T) {
	cfg := tinyConfigs(t)
	a := tinyArch(t)
	kohya, peft := openGolden(t, a, kohyaTiny), openGolden(t, a, peftTiny)
	slots := a.AllSlots()
	s := session(t, tinyUNet(t, cfg, slots, nn.BuildOptions{}))
	plain := session(t, tinyUNet(t, cfg, nil, nn.BuildOptions{}))

	runSet := func(set Set, timestep string) runtime.Tensor {
		t.Helper()
		feeds, err := slots.Inputs(set)
		if err != nil {
			t.Fatal(err)
		}
		return run(t, s, unetInputs(t, timestep), feeds[sdxl.UNet])[unet.Output]
	}
	for _, f := range []*File{kohya, peft} {
		for _, scale := range []float64{0.8, 1.0} {
			for _, ts := range []struct{ input, want string }{{"timestep", "unet_out"}, {"timestep_mixed", "unet_out_mixed"}} {
				name := fmt.Sprintf("%s/%g/%s", f.Format, scale, ts.input)
				got := runSet(Set{{File: f, Scale: scale}}, ts.input)
				nntest.ExpectClose(t, name, got, ioTensor(t, ts.want+scaleSuffix[scale]), goldenTol)
			}
		}
	}

	// Strength 0 and the empty set leave the UNet exactly as it is.
	base := run(t, plain, unetInputs(t, "timestep"), nil)[unet.Output]
	nntest.ExpectClose(t, "plain graph vs golden unet-tiny out", base, nntest.IOTensor(t, nntest.Golden(t, "unet-tiny-io.safetensors"), "out"), goldenTol)
	for name, set := range map[string]Set{"empty set": nil, "scale 0": {{File: kohya, Scale: 0}}} {
		got := runSet(set, "timestep")
		d, same := maxDiff(got, base)
		t.Logf("%s vs graph without slots: max|Δ| = %.3g, bit-identical %v", name, d, same)
		if d > 1e-6 {
			t.Errorf("%s: max|Δ| %.3g from the base UNet, want ≤ 1e-6", name, d)
		}
	}

	// Two LoRAs stack: their changes add. The kohya file at 0.3 and 0.5
	// is the file at 0.8; so is kohya at 0.4 plus its PEFT twin at 0.4.
	// The graph multiplies rank-8 concatenated factors instead of rank-4
	// ones, so weights differ by float rounding, which the UNet amplifies
	// to about 1e-5 (diffusers' own fused and unfused paths differ by
	// 2e-5, golden README); the tolerance is 3e-5, while leaving out either
	// LoRA changes the output by O(0.1).
	once := Set{{File: kohya, Scale: 0.8}}
	onceOut := runSet(once, "timestep")
	for name, set := range map[string]Set{
		"kohya 0.3 + kohya 0.5": {{File: kohya, Scale: 0.3}, {File: kohya, Scale: 0.5}},
		"kohya 0.4 + peft 0.4":  {{File: kohya, Scale: 0.4}, {File: peft, Scale: 0.4}},
	} {
		got := runSet(set, "timestep")
		nntest.ExpectClose(t, name+" vs kohya 0.8", got, onceOut, 3e-5)
		nntest.ExpectClose(t, name+" vs golden", got, ioTensor(t, "unet_out_s0_8"), goldenTol)
		// Weight by weight, the stacked ΔW is the single one to float
		// precision.
		var worst float64
		for _, l := range kohya.Targets() {
			a, b := set.Delta(l), once.Delta(l)
			for i := range a {
				worst = math.Max(worst, math.Abs(float64(a[i])-float64(b[i]))/(1e-3+math.Abs(float64(b[i]))))
			}
		}
		t.Logf("%s: max relative ΔW difference %.3g", name, worst)
		if worst > 1e-5 {
			t.Errorf("%s: ΔW differs by %.3g relative", name, worst)
		}
	}
	if d, _ := maxDiff(onceOut, runSet(Set{{File: kohya, Scale: 0.5}}, "timestep")); d < 1e-2 {
		t.Fatalf("strength 0.5 vs 0.8 differ by only %.3g: the stacking check would prove nothing", d)
	}

	// A kohya file without alpha tensors means alpha = rank (factor 1):
	// with every up halved (exact in float32) it is the golden LoRA again.
	noAlpha := writeVariant(t, nntest.Golden(t, kohyaTiny), filepath.Join(t.TempDir(), "no-alpha.safetensors"), func(n safetensors.Named) []safetensors.Named {
		switch {
		case hasSuffix(n.Name, ".alpha"):
			return nil
		case hasSuffix(n.Name, ".lora_up.weight"):
			return []safetensors.Named{scaled(n, 0.5)}
		}
		return []safetensors.Named{n}
	})
	f, err := a.Open(noAlpha)
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Modules[0]; m.Alpha != float64(m.Rank) {
		t.Errorf("missing alpha: alpha %g, want the rank %d", m.Alpha, m.Rank)
	}
	nntest.ExpectClose(t, "kohya without alpha (up ×0.5) at 0.8", runSet(Set{{File: f, Scale: 0.8}}, "timestep"), ioTensor(t, "unet_out_s0_8"), goldenTol)
}

// TestGoldenTextEncoders applies both files to the tiny text encoders and
// matches diffusers' encoder outputs (te2's q/k/v LoRAs go into row blocks
// of the packed in_proj_weight).
func TestGoldenTextEncoders(t *testing.T) {
	cfg := tinyConfigs(t)
	a := tinyArch(t)
	files := []*File{openGolden(t, a, kohyaTiny), openGolden(t, a, peftTiny)}
	slots := a.AllSlots()
	for _, enc := range []struct {
		comp    sdxl.Component
		ids     string
		outputs map[string]string // our output → golden name
	}{
		{sdxl.CLIPL, "input_ids_1", map[string]string{clip.OutputPenultimate: "enc1_penultimate", clip.OutputHidden: "enc1_last_hidden_state", clip.OutputPooled: "enc1_pooled_output"}},
		{sdxl.CLIPG, "input_ids_2", map[string]string{clip.OutputPenultimate: "enc2_penultimate", clip.OutputHidden: "enc2_last_hidden_state", clip.OutputPooled: "enc2_text_embeds"}},
	} {
		s := session(t, tinyText(t, cfg, enc.comp, slots, nn.BuildOptions{}))
		base := map[string]runtime.Tensor{clip.InputIDs: ioTensor(t, enc.ids)}
		for _, f := range files {
			for _, scale := range []float64{0.8, 1.0} {
				feeds, err := slots.Inputs(Set{{File: f, Scale: scale}})
				if err != nil {
					t.Fatal(err)
				}
				out := run(t, s, base, feeds[enc.comp])
				for ours, golden := range enc.outputs {
					nntest.ExpectClose(t, fmt.Sprintf("%s %s %g %s", enc.comp, f.Format, scale, ours), out[ours], ioTensor(t, golden+scaleSuffix[scale]), goldenTol)
				}
			}
		}
		// Strength 0 is the plain encoder (golden text-encoders-tiny-io).
		feeds, err := slots.Inputs(Set{{File: files[0], Scale: 0}})
		if err != nil {
			t.Fatal(err)
		}
		out := run(t, s, base, feeds[enc.comp])
		plain := nntest.IOTensor(t, nntest.Golden(t, "text-encoders-tiny-io.safetensors"), enc.outputs[clip.OutputPenultimate])
		nntest.ExpectClose(t, fmt.Sprintf("%s scale 0 vs plain golden", enc.comp), out[clip.OutputPenultimate], plain, goldenTol)
	}
}

// TestGoldenMerge checks Set.Merge against the weights diffusers fused at
// strength 0.8: a cross-attention key, a 3×3 and a 1×1 conv, and te2's
// packed in_proj_weight with q, k and v merged into their row blocks.
func TestGoldenMerge(t *testing.T) {
	a := tinyArch(t)
	w := nntest.OpenWeights(t, nntest.Golden(t, "unet-tiny.safetensors"), nntest.Golden(t, "text-encoders-tiny.safetensors"))
	keys := []string{
		"model.diffusion_model.middle_block.1.transformer_blocks.2.attn2.to_k.weight",
		"model.diffusion_model.output_blocks.3.0.in_layers.2.weight",
		"model.diffusion_model.output_blocks.3.0.skip_connection.weight",
		"conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight",
	}
	for _, name := range []string{kohyaTiny, peftTiny} {
		f := openGolden(t, a, name)
		for _, key := range keys {
			tt, file, ok := w.Lookup(key)
			if !ok {
				t.Fatalf("%s not in the tiny checkpoints", key)
			}
			base, err := file.ReadFloat32(key)
			if err != nil {
				t.Fatal(err)
			}
			merged, err := Set{{File: f, Scale: 0.8}}.Merge(a, key, base)
			if err != nil {
				t.Fatal(err)
			}
			want := ioTensor(t, "merged_s0_8."+key)
			nntest.ExpectClose(t, string(f.Format)+" merged "+key, runtime.F32(merged, tt.Shape...), want, mergeTol)
			if d, _ := maxDiff(runtime.F32(base, tt.Shape...), want); d < 100*mergeTol {
				t.Fatalf("%s: the golden merged tensor is within %.3g of the base; the check would prove nothing", key, d)
			}
		}
	}
}

// TestFloat16 builds the slotted UNet and CLIP-G in float16 and runs them on
// CPU (ONNX Runtime inserts casts): the fp16 graph with its float32 slot
// inputs is well-typed, as CUDA needs it. Tolerance: 5e-2 relative to
// max|ref|.
func TestFloat16(t *testing.T) {
	cfg := tinyConfigs(t)
	a := tinyArch(t)
	f := openGolden(t, a, kohyaTiny)
	slots := a.AllSlots()
	feeds, err := slots.Inputs(Set{{File: f, Scale: 0.8}})
	if err != nil {
		t.Fatal(err)
	}
	half := nn.BuildOptions{Float16: true}
	check := func(what string, got, want runtime.Tensor) {
		t.Helper()
		var maxRef float64
		for _, v := range want.F32 {
			maxRef = math.Max(maxRef, math.Abs(float64(v)))
		}
		nntest.ExpectClose(t, what, got, want, 5e-2*maxRef)
	}
	out := run(t, session(t, tinyUNet(t, cfg, slots, half)), unetInputs(t, "timestep"), feeds[sdxl.UNet])
	check("fp16 unet 0.8", out[unet.Output], ioTensor(t, "unet_out_s0_8"))
	out = run(t, session(t, tinyText(t, cfg, sdxl.CLIPG, slots, half)), map[string]runtime.Tensor{clip.InputIDs: ioTensor(t, "input_ids_2")}, feeds[sdxl.CLIPG])
	check("fp16 clip_g 0.8 penultimate", out[clip.OutputPenultimate], ioTensor(t, "enc2_penultimate_s0_8"))
}

// TestWeightsUntouched: in a slotted graph every slotted weight still feeds
// its layer's product directly, so ONNX Runtime keeps it a constant (and
// prepacks it on CPU): LoRA terms are added to outputs, never to weights.
// A changed copy of every weight is what made the weight-space variant
// hold twice the UNet's memory (BENCHMARKS.md).
func TestWeightsUntouched(t *testing.T) {
	cfg := tinyConfigs(t)
	a := tinyArch(t)
	slots := a.AllSlots()
	consumers := map[string][]string{}
	inputs := 0
	for _, g := range []*nn.Graph{
		tinyUNet(t, cfg, slots, nn.BuildOptions{}),
		tinyText(t, cfg, sdxl.CLIPL, slots, nn.BuildOptions{}),
		tinyText(t, cfg, sdxl.CLIPG, slots, nn.BuildOptions{}),
	} {
		inputs += len(g.Inputs)
		for _, n := range g.Model.Graph.Nodes {
			for _, in := range n.Inputs {
				consumers[in] = append(consumers[in], n.OpType)
			}
		}
	}
	keys := map[string]bool{}
	for _, l := range slots.Layers() {
		keys[l.Key] = true
	}
	for key := range keys {
		ops := consumers[key]
		want := map[bool]string{true: "FusedMatMul", false: "Conv"}[a.ByKey(key)[0].Kernel == 0]
		if strings.Contains(key, "in_proj_weight") {
			want = "Transpose" // OpenCLIP's packed projection: x·Wᵀ
		}
		if len(ops) != 1 || ops[0] != want {
			t.Errorf("%s is consumed by %v, want [%s]", key, ops, want)
		}
	}
	if want := 5 + 2 + 2*len(slots.Layers()); inputs != want {
		t.Errorf("%d graph inputs, want %d (5 UNet, 2 input_ids, 2 per slot)", inputs, want)
	}
}
