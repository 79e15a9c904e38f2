package lora

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
)

// module makes the down/up(/alpha) tensors of one module with small values.
func module(name, downSfx, upSfx string, down, up []int64, alpha bool) []safetensors.Named {
	small := func(i int) float32 { return float32(i%7-3) * 0.01 }
	out := []safetensors.Named{f32(name+downSfx, small, down...), f32(name+upSfx, small, up...)}
	if alpha {
		out = append(out, f32(name+".alpha", func(int) float32 { return 2 }))
	}
	return out
}

func kohyaModule(name string, down, up []int64) []safetensors.Named {
	return module(name, ".lora_down.weight", ".lora_up.weight", down, up, true)
}

func writeFile(tb testing.TB, tensors []safetensors.Named, md map[string]string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "lora.safetensors")
	if err := safetensors.WriteFile(p, tensors, md); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestOpenErrors: damaged files and LoRAs that do not fit give errors that
// say what is wrong.
func TestOpenErrors(t *testing.T) {
	tiny := tinyArch(t)
	full, err := NewArch(sdxl.Default())
	if err != nil {
		t.Fatal(err)
	}
	golden := nntest.Golden(t, kohyaTiny)
	truncated := filepath.Join(t.TempDir(), "truncated.safetensors")
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)*6/10], 0o644); err != nil {
		t.Fatal(err)
	}
	withGolden := func(extra ...safetensors.Named) string {
		return writeVariant(t, golden, filepath.Join(t.TempDir(), "x.safetensors"), func(n safetensors.Named) []safetensors.Named {
			if n.Name == "lora_unet_middle_block_1_proj_in.alpha" { // any one tensor: add the extras once
				return append([]safetensors.Named{n}, extra...)
			}
			return []safetensors.Named{n}
		})
	}
	for _, c := range []struct {
		name   string
		arch   *Arch
		path   string
		is     error
		format bool // a *safetensors.FormatError
		want   []string
	}{
		{name: "truncated file", arch: tiny, path: truncated, format: true, want: []string{"open LoRA", "invalid safetensors header"}},
		{name: "missing file", arch: tiny, path: filepath.Join(t.TempDir(), "none.safetensors"), is: os.ErrNotExist},
		{name: "rank mismatch", arch: tiny, path: writeFile(t, kohyaModule("lora_unet_middle_block_1_proj_in", []int64{4, 64}, []int64{64, 3}), nil),
			want: []string{"rank mismatch", "lora_unet_middle_block_1_proj_in.lora_down.weight has rank 4", "rank 3"}},
		{name: "SD1.5 text encoder prefix", arch: full, path: writeFile(t, append(
			kohyaModule("lora_te_text_model_encoder_layers_0_self_attn_q_proj", []int64{4, 768}, []int64{768, 4}),
			kohyaModule("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", []int64{4, 640}, []int64{640, 4})...), nil),
			is: ErrArchitecture, want: []string{"Stable Diffusion 1.x/2.x", "lora_te_"}},
		{name: "SD1.5 UNet layout", arch: full, path: writeFile(t,
			kohyaModule("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", []int64{4, 320}, []int64{320, 4}), nil),
			is: ErrArchitecture, want: []string{"Stable Diffusion 1.x/2.x", "down_blocks_0_attentions_0"}},
		{name: "SD1.5 cross-attention width", arch: full, path: writeFile(t, append(
			kohyaModule("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k", []int64{4, 768}, []int64{640, 4}),
			kohyaModule("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_q", []int64{4, 640}, []int64{640, 4})...), nil),
			is: ErrArchitecture, want: []string{"context 768", "Stable Diffusion 1.x", "attn2.to_k.weight", "[4 2048]"}},
		{name: "conv kernel", arch: tiny, path: writeFile(t, kohyaModule("lora_unet_input_blocks_1_0_in_layers_2", []int64{4, 16, 1, 1}, []int64{16, 4, 1, 1}), nil),
			is: ErrArchitecture, want: []string{"3×3 conv", "[4 16 3 3]"}},
		{name: "LoHa", arch: tiny, path: writeFile(t, []safetensors.Named{
			f32("lora_unet_middle_block_1_proj_in.hada_w1_a", func(int) float32 { return 0 }, 64, 4),
			f32("lora_unet_middle_block_1_proj_in.hada_w1_b", func(int) float32 { return 0 }, 4, 64),
			f32("lora_unet_middle_block_1_proj_in.alpha", func(int) float32 { return 1 })}, nil),
			is: ErrUnsupported, want: []string{"LoHa"}},
		{name: "DoRA", arch: tiny, path: withGolden(f32("lora_unet_middle_block_1_proj_in.dora_scale", func(int) float32 { return 1 }, 64, 1)),
			is: ErrUnsupported, want: []string{"DoRA"}},
		{name: "nothing matches", arch: tiny, path: writeFile(t, kohyaModule("lora_unet_no_such_layer", []int64{4, 8}, []int64{8, 4}), nil),
			is: ErrArchitecture, want: []string{"none of its 3 tensors", "lora_unet_no_such_layer"}},
		{name: "same layer twice", arch: tiny, path: withGolden(kohyaModule("lora_unet_mid_block_attentions_0_proj_in", []int64{4, 64}, []int64{64, 4})...),
			want: []string{"lora_unet_middle_block_1_proj_in", "lora_unet_mid_block_attentions_0_proj_in", "both change"}},
		{name: "alpha not a scalar", arch: tiny, path: writeFile(t, []safetensors.Named{
			f32("lora_unet_middle_block_1_proj_in.lora_down.weight", func(int) float32 { return 0 }, 4, 64),
			f32("lora_unet_middle_block_1_proj_in.lora_up.weight", func(int) float32 { return 0 }, 64, 4),
			f32("lora_unet_middle_block_1_proj_in.alpha", func(int) float32 { return 1 }, 2)}, nil),
			want: []string{"alpha has shape [2]"}},
		{name: "NaN factor", arch: tiny, path: writeFile(t, []safetensors.Named{
			f32("lora_unet_middle_block_1_proj_in.lora_down.weight", func(i int) float32 { return float32(math.NaN()) }, 4, 64),
			f32("lora_unet_middle_block_1_proj_in.lora_up.weight", func(int) float32 { return 0 }, 64, 4)}, nil),
			want: []string{"lora_down.weight", "NaN"}},
		{name: "mixed suffixes", arch: tiny, path: writeFile(t, module("lora_unet_middle_block_1_proj_in", ".lora_down.weight", ".lora_B.weight", []int64{4, 64}, []int64{64, 4}, false), nil),
			want: []string{"mixes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.arch.Open(c.path)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error does not wrap %v", c.is)
			}
			var fe *safetensors.FormatError
			if c.format && !errors.As(err, &fe) {
				t.Errorf("error is not the safetensors format error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
		})
	}
}

// TestUnmatched: names that match no layer do not stop the file; they are
// listed (the other modules apply).
func TestUnmatched(t *testing.T) {
	a := tinyArch(t)
	extra := append(kohyaModule("lora_unet_input_blocks_1_0_in_layers_0", []int64{4, 16}, []int64{16, 4}), // a GroupNorm: not a LoRA target
		f32("lora_unet_middle_block_1_proj_out.lora_down.weight_ema", func(int) float32 { return 0 }, 4, 64))
	half := f32("lora_unet_nowhere.lora_up.weight", func(int) float32 { return 0 }, 8, 4)
	p := writeVariant(t, nntest.Golden(t, kohyaTiny), filepath.Join(t.TempDir(), "x.safetensors"), func(n safetensors.Named) []safetensors.Named {
		if n.Name == "lora_unet_middle_block_1_proj_in.alpha" {
			return append([]safetensors.Named{n, half}, extra...)
		}
		return []safetensors.Named{n}
	})
	f, err := a.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"lora_unet_input_blocks_1_0_in_layers_0.alpha", "lora_unet_input_blocks_1_0_in_layers_0.lora_down.weight",
		"lora_unet_input_blocks_1_0_in_layers_0.lora_up.weight", "lora_unet_middle_block_1_proj_out.lora_down.weight_ema",
		"lora_unet_nowhere.lora_up.weight",
	}
	if !slices.Equal(f.Unmatched, want) {
		t.Errorf("unmatched %q, want %q", f.Unmatched, want)
	}
	if len(f.Modules) != 345 || f.Format != Kohya || f.UNetNaming != "sgm" {
		t.Errorf("%d modules, format %s, UNet naming %s; want 345, kohya, sgm", len(f.Modules), f.Format, f.UNetNaming)
	}
}

// TestGoldenFiles: what Open reports about the two golden files.
func TestGoldenFiles(t *testing.T) {
	a := tinyArch(t)
	k, p := openGolden(t, a, kohyaTiny), openGolden(t, a, peftTiny)
	count := func(f *File) map[sdxl.Component]int {
		n := map[sdxl.Component]int{}
		for _, m := range f.Modules {
			n[m.Layer.Component]++
		}
		return n
	}
	for _, c := range []struct {
		f      *File
		format Format
		naming string
		alpha  float64
	}{{k, Kohya, "sgm", 2}, {p, PEFT, "diffusers", 4}} {
		if c.f.Format != c.format || c.f.UNetNaming != c.naming || len(c.f.Unmatched) != 0 {
			t.Errorf("%s: format %s naming %s unmatched %v", c.f.Path, c.f.Format, c.f.UNetNaming, c.f.Unmatched)
		}
		// README: 309 UNet modules, 18 + 18 text-encoder modules, rank 4;
		// alpha 2 in the kohya file, none (= rank) in the PEFT file.
		if n := count(c.f); n[sdxl.UNet] != 309 || n[sdxl.CLIPL] != 18 || n[sdxl.CLIPG] != 18 {
			t.Errorf("%s: modules per component %v, want 309/18/18", c.f.Path, n)
		}
		for _, m := range c.f.Modules {
			if m.Rank != 4 || m.Alpha != c.alpha {
				t.Fatalf("%s: rank %d alpha %g, want 4 and %g", m.Name, m.Rank, m.Alpha, c.alpha)
			}
		}
	}
	if !slices.Equal(k.Targets(), p.Targets()) {
		t.Error("the kohya file and its PEFT twin change different layers")
	}
	if len(Set{{File: k, Scale: 1}}.Components()) != 3 {
		t.Error("the golden LoRA should change all three networks")
	}
	// A1111's Lora hash: SHA-256 of the data section, 12 hex digits.
	raw, err := os.ReadFile(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw[8+binary.LittleEndian.Uint64(raw):])
	if h, err := k.Hash(); err != nil || h != hex.EncodeToString(sum[:])[:12] {
		t.Errorf("hash %q (%v), want %s", h, err, hex.EncodeToString(sum[:])[:12])
	}
}

// TestOldDiffusersNames renames the PEFT file into the older diffusers
// namings (attention processors, LoRACompatibleLinear's lora.down/up, the
// text encoders' lora_linear_layer) and checks the same layers and deltas.
func TestOldDiffusersNames(t *testing.T) {
	a := tinyArch(t)
	p := openGolden(t, a, peftTiny)
	old := writeVariant(t, nntest.Golden(t, peftTiny), filepath.Join(t.TempDir(), "old.safetensors"), func(n safetensors.Named) []safetensors.Named {
		name := n.Name
		ab := map[string]string{".lora_A.weight": "down", ".lora_B.weight": "up"}
		for sfx, du := range ab {
			if !strings.HasSuffix(name, sfx) {
				continue
			}
			module := strings.TrimSuffix(name, sfx)
			switch {
			case strings.HasPrefix(module, "text_encoder"):
				name = module + ".lora_linear_layer." + du + ".weight"
			case strings.Contains(module, ".attn1.to_") || strings.Contains(module, ".attn2.to_"):
				module = strings.TrimSuffix(module, ".0") // to_out.0 → to_out
				i := strings.LastIndex(module, ".")
				name = module[:i] + ".processor" + module[i:] + "_lora." + du + ".weight"
			default:
				name = module + ".lora." + du + ".weight"
			}
		}
		n.Name = name
		return []safetensors.Named{n}
	})
	f, err := a.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	if f.Format != Diffusers || len(f.Unmatched) != 0 || !slices.Equal(f.Targets(), p.Targets()) {
		t.Fatalf("format %s, unmatched %v, %d targets (PEFT file: %d)", f.Format, f.Unmatched, len(f.Targets()), len(p.Targets()))
	}
	for _, l := range p.Targets() {
		if !slices.Equal(Set{{File: f, Scale: 1}}.Delta(l), Set{{File: p, Scale: 1}}.Delta(l)) {
			t.Fatalf("%s: delta differs", l.ID())
		}
	}
}

// TestPEFTAlphaMetadata: diffusers' lora_adapter_metadata gives PEFT files
// their alpha (per component, with alpha_pattern); without it alpha = r.
func TestPEFTAlphaMetadata(t *testing.T) {
	a := tinyArch(t)
	meta, _ := json.Marshal(map[string]any{
		"unet.r": 4, "unet.lora_alpha": 8, "unet.alpha_pattern": map[string]float64{"proj_in": 2},
		"text_encoder_2.r": 4, "text_encoder_2.lora_alpha": 16, "text_encoder_2.use_rslora": true,
	})
	p := writeVariant(t, nntest.Golden(t, peftTiny), filepath.Join(t.TempDir(), "meta.safetensors"), func(n safetensors.Named) []safetensors.Named {
		return []safetensors.Named{n}
	})
	tensors, _ := readAll(t, p)
	p2 := filepath.Join(t.TempDir(), "meta2.safetensors")
	if err := safetensors.WriteFile(p2, tensors, map[string]string{"format": "pt", "lora_adapter_metadata": string(meta)}); err != nil {
		t.Fatal(err)
	}
	f, err := a.Open(p2)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range f.Modules {
		want := 4.0 // text_encoder: no config, alpha = r
		switch {
		case m.Layer.Component == sdxl.UNet && strings.HasSuffix(m.Layer.Diffusers, ".proj_in"):
			want = 2
		case m.Layer.Component == sdxl.UNet:
			want = 8
		case m.Layer.Component == sdxl.CLIPG:
			want = 16 * 4 / 2 // rsLoRA: alpha/√r, expressed as an alpha over r
		}
		if m.Alpha != want {
			t.Fatalf("%s: alpha %g, want %g", m.Name, m.Alpha, want)
		}
	}
}

// TestSetErrors: sets that cannot be applied.
func TestSetErrors(t *testing.T) {
	a := tinyArch(t)
	k := openGolden(t, a, kohyaTiny)
	full, err := NewArch(sdxl.Default())
	if err != nil {
		t.Fatal(err)
	}
	// Another Arch of the same configuration is fine.
	if _, err := tinyArch(t).AllSlots().Inputs(Set{{File: k, Scale: 1}}); err != nil {
		t.Errorf("same configuration, other Arch: %v", err)
	}
	sub := a.SlotsFor(Set{{File: openGolden(t, a, kohyaTiny), Scale: 1}})
	if sub.Len() != a.AllSlots().Len()-(len(a.Layers())-len(k.Modules)) {
		t.Errorf("SlotsFor: %d slots for %d modules", sub.Len(), len(k.Modules))
	}
	noTE := a.NewSlots(nil)
	for _, c := range []struct {
		name  string
		slots *Slots
		set   Set
		want  string
	}{
		{"NaN scale", a.AllSlots(), Set{{File: k, Scale: math.NaN(), Name: "x"}}, "not a finite number"},
		{"other model", full.AllSlots(), Set{{File: k, Scale: 1, Name: "tiny"}}, "another model configuration"},
		{"no slot", noTE, Set{{File: k, Scale: 1}}, "no LoRA slot for 345 layer(s)"},
		{"no file", a.AllSlots(), Set{{Name: "x"}}, "has no file"},
	} {
		_, err := c.slots.Inputs(c.set)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
