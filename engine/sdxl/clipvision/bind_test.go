package clipvision

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
)

// row is one tensor of a header-only file.
type row = nntest.Row

// hfVisionRows lists the tensors of a transformers
// CLIPVisionModelWithProjection file of these sizes, written from the
// transformers naming (golden README §1), independently of the module tree.
func hfVisionRows(c Config) []row {
	w, m, p := c.Width, c.MLPWidth, c.ProjectionDim
	v := "vision_model."
	rows := []row{
		{Name: v + "embeddings.patch_embedding.weight", Shape: []int64{w, c.Channels, c.PatchSize, c.PatchSize}},
		{Name: v + "embeddings.class_embedding", Shape: []int64{w}},
		{Name: v + "embeddings.position_embedding.weight", Shape: []int64{c.Tokens(), w}},
		{Name: v + "pre_layrnorm.weight", Shape: []int64{w}}, {Name: v + "pre_layrnorm.bias", Shape: []int64{w}},
		{Name: v + "post_layernorm.weight", Shape: []int64{w}}, {Name: v + "post_layernorm.bias", Shape: []int64{w}},
		{Name: "visual_projection.weight", Shape: []int64{p, w}},
	}
	for i := range c.Layers {
		l := fmt.Sprintf("%sencoder.layers.%d.", v, i)
		for _, n := range []string{"layer_norm1", "layer_norm2"} {
			rows = append(rows, row{Name: l + n + ".weight", Shape: []int64{w}}, row{Name: l + n + ".bias", Shape: []int64{w}})
		}
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			rows = append(rows, row{Name: l + "self_attn." + n + ".weight", Shape: []int64{w, w}}, row{Name: l + "self_attn." + n + ".bias", Shape: []int64{w}})
		}
		rows = append(rows,
			row{Name: l + "mlp.fc1.weight", Shape: []int64{m, w}}, row{Name: l + "mlp.fc1.bias", Shape: []int64{m}},
			row{Name: l + "mlp.fc2.weight", Shape: []int64{w, m}}, row{Name: l + "mlp.fc2.bias", Shape: []int64{w}})
	}
	return rows
}

// TestStructureFullSize binds header-only ViT-H/14 and ViT-bigG/14
// encoders (with the position_ids buffer older transformers saved), checks
// that every tensor is bound exactly once with its shape, and builds the
// full graphs (no session).
func TestStructureFullSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"ViT-H-14", ViTH14()}, {"ViT-bigG-14", ViTBigG14()}} {
		t.Run(tc.name, func(t *testing.T) {
			rows := hfVisionRows(tc.cfg)
			rows = append(rows, row{Name: "vision_model.embeddings.position_ids", Shape: []int64{1, tc.cfg.Tokens()}, DType: "I64"})
			path := filepath.Join(t.TempDir(), "model.safetensors")
			nntest.WriteHeaderOnly(t, path, rows, nil)
			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			c, err := ConfigFor(path, f)
			if err != nil {
				t.Fatal(err)
			}
			if c != tc.cfg {
				t.Fatalf("sizes inferred from the shapes: %+v, want %+v", c, tc.cfg)
			}
			m, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			w, err := nn.NewWeights(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Bind(w); err != nil {
				t.Fatal(err)
			}
			want := map[string][]int64{}
			for _, r := range rows {
				want[r.Name] = r.Shape
			}
			var params int64
			bound := map[string]int{}
			if err := nn.Walk("", m, func(key string, p *nn.Param) {
				bound[key]++
				params += p.NumElements()
				if !slices.Equal(p.Shape, want[key]) || p.Tensor == nil || !slices.Equal(p.Tensor.Shape, want[key]) {
					t.Errorf("%s: expected %v by the model, row %v", key, p.Shape, want[key])
				}
			}); err != nil {
				t.Fatal(err)
			}
			for _, r := range rows[:len(rows)-1] {
				if bound[r.Name] != 1 || !w.Used(r.Name) {
					t.Errorf("%s bound %d times", r.Name, bound[r.Name])
				}
			}
			if un := w.Unused(""); !slices.Equal(un, []string{"vision_model.embeddings.position_ids"}) {
				t.Errorf("unused tensors %v, want only the position_ids buffer", un)
			}
			start := time.Now()
			g, err := m.Build(nn.BuildOptions{Float16: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d tensors, %d parameters; fp16 graph of %d nodes built in %v", c.Name(), len(rows)-1, params, len(g.Model.Graph.Nodes), time.Since(start))
		})
	}
}

// copyTiny writes a copy of the tiny encoder with tensors changed by edit
// (return false to drop one), plus extra tensors.
func copyTiny(t *testing.T, edit func(name string, shape []int64) ([]int64, bool), extra ...safetensors.Named) string {
	t.Helper()
	src, err := safetensors.Open(nntest.Golden(t, encoderFile))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Named
	for _, n := range src.Names() {
		tt, _ := src.Tensor(n)
		shape, keep := edit(n, slices.Clone(tt.Shape))
		if !keep {
			continue
		}
		data, err := src.ReadRaw(n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, tt.Shape) {
			size := int64(4)
			for _, d := range shape {
				size *= d
			}
			data = make([]byte, size)
		}
		ts = append(ts, safetensors.Named{Name: n, DType: tt.DType, Shape: shape, Data: data})
	}
	ts = append(ts, extra...)
	path := filepath.Join(t.TempDir(), "encoder.safetensors")
	if err := safetensors.WriteFile(path, ts, src.Metadata); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBindErrors(t *testing.T) {
	const (
		missing = "vision_model.encoder.layers.1.mlp.fc2.bias"
		resized = "vision_model.encoder.layers.0.self_attn.k_proj.weight"
	)
	posIDs, _ := safetensors.EncodeInt64(safetensors.I64, make([]int64, 257))
	for _, tc := range []struct {
		name  string
		edit  func(string, []int64) ([]int64, bool)
		extra []safetensors.Named
		want  []string // in the error; none: Open must succeed
	}{
		{"as is, with position_ids", func(_ string, s []int64) ([]int64, bool) { return s, true },
			[]safetensors.Named{{Name: "vision_model.embeddings.position_ids", DType: safetensors.I64, Shape: []int64{1, 257}, Data: posIDs}}, nil},
		{"missing and wrong shape", func(n string, s []int64) ([]int64, bool) {
			if n == resized {
				return []int64{32, 16}, true
			}
			return s, n != missing
		}, nil, []string{"missing " + missing + " [32]", resized + ": shape [32 16], expected [32 32]"}},
		{"extra layer", func(_ string, s []int64) ([]int64, bool) { return s, true },
			[]safetensors.Named{{Name: "vision_model.encoder.layers.3.mlp.fc1.bias", DType: safetensors.F32, Shape: []int64{128}, Data: make([]byte, 512)}},
			[]string{"vision_model.encoder.layers.3.mlp.fc1.bias [128]: unexpected tensor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(copyTiny(t, tc.edit, tc.extra...))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var be *nn.BindError
			if !errors.As(err, &be) {
				t.Fatalf("error %v is not a *nn.BindError", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tiny, err := os.ReadFile(nntest.Golden(t, "ipadapter/image-encoder-tiny-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(nntest.Golden(t, encoderFile))
	if err != nil {
		t.Fatal(err)
	}
	fromMeta, err := ConfigFor(f.Path, f)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(tiny, &fields); err != nil {
		t.Fatal(err)
	}
	with := func(edit func(map[string]any)) []byte {
		m := map[string]any{}
		for k, v := range fields {
			m[k] = v
		}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	nested, _ := json.Marshal(map[string]any{"vision_config": fields, "text_config": map[string]any{"hidden_size": 512}})
	for _, tc := range []struct {
		name string
		data []byte
		want string // error substring; empty: parses to the tiny config
	}{
		{"tiny config.json", tiny, ""},
		{"CLIPConfig with vision_config", nested, ""},
		{"missing hidden_size", with(func(m map[string]any) { delete(m, "hidden_size") }), "missing hidden_size"},
		{"missing heads and act", with(func(m map[string]any) { delete(m, "num_attention_heads"); delete(m, "hidden_act") }), "missing num_attention_heads, hidden_act"},
		{"heads do not divide", with(func(m map[string]any) { m["num_attention_heads"] = 5 }), "not a multiple of num_attention_heads"},
		{"patch does not divide", with(func(m map[string]any) { m["patch_size"] = 15 }), "not a multiple of patch_size"},
		{"unknown activation", with(func(m map[string]any) { m["hidden_act"] = "relu" }), `hidden_act "relu"`},
		{"ambiguous", with(func(m map[string]any) { m["vision_config"] = fields }), "ambiguous"},
		{"not JSON", []byte("{"), "parse CLIP vision config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.data)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c != fromMeta {
					t.Errorf("parsed %+v, the file's metadata gives %+v", c, fromMeta)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestConfigFor checks where sizes come from: config.json beside a
// model.safetensors first, then the metadata, then the shapes (which
// cannot give the tiny model's head count), and that files of other
// layouts are named.
func TestConfigFor(t *testing.T) {
	tiny, _ := ParseConfig(mustRead(t, nntest.Golden(t, "ipadapter/image-encoder-tiny-config.json")))
	noMeta := filepath.Join(t.TempDir(), "model.safetensors")
	nntest.WriteHeaderOnly(t, noMeta, hfVisionRows(tiny), nil)
	f, err := safetensors.Open(noMeta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ConfigFor(noMeta, f); err == nil || !strings.Contains(err.Error(), "head count") {
		t.Errorf("a 32-wide encoder without config: error %v, want one about the head count", err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(noMeta), "config.json"), mustRead(t, nntest.Golden(t, "ipadapter/image-encoder-tiny-config.json")), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := ConfigFor(noMeta, f); err != nil || c != tiny {
		t.Errorf("with config.json: %+v, %v; want %+v", c, err, tiny)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(noMeta), "config.json"), []byte(`{"hidden_size": 32}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ConfigFor(noMeta, f); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("invalid config.json: error %v, want one naming the file", err)
	}

	dir := t.TempDir()
	openclip := filepath.Join(dir, "openclip.safetensors")
	nntest.WriteHeaderOnly(t, openclip, []row{{Name: "visual.transformer.resblocks.0.ln_1.weight", Shape: []int64{32}}}, nil)
	if _, err := Open(openclip); err == nil || !strings.Contains(err.Error(), "OpenCLIP's naming") {
		t.Errorf("OpenCLIP-named file: error %v", err)
	}
	if _, err := Open(nntest.Golden(t, "unet-tiny.safetensors")); err == nil || !strings.Contains(err.Error(), "not a CLIP image encoder") {
		t.Errorf("UNet file: error %v", err)
	}
	if _, err := Open(filepath.Join(dir, "absent.safetensors")); err == nil {
		t.Error("a missing file opened")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
