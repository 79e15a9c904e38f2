package vae

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

const goldenTol = 1e-4

// tinyModel binds the golden tiny VAE through the real loading path, with
// the config read from vae-tiny.json.
func tinyModel(t testing.TB) (*Model, *nn.Weights) {
	t.Helper()
	raw, err := os.ReadFile(nntest.Golden(t, "vae-tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Config json.RawMessage `json:"config_diffusers"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(doc.Config)
	if err != nil {
		t.Fatal(err)
	}
	w := nntest.OpenWeights(t, nntest.Golden(t, "vae-tiny.safetensors"))
	m := New(cfg)
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	if u := m.Unknown(w); len(u) > 0 {
		t.Fatalf("unused VAE tensors: %v", u)
	}
	return m, w
}

func build(t testing.TB, m *Model, encoder bool, o nn.BuildOptions) *nn.Graph {
	t.Helper()
	var g *nn.Graph
	var err error
	if encoder {
		g, err = m.BuildEncoder(o)
	} else {
		g, err = m.BuildDecoder(o)
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// firstChannels returns x[:, :n] of an NCHW tensor.
func firstChannels(x runtime.Tensor, n int64) runtime.Tensor {
	b, c, plane := x.Shape[0], x.Shape[1], x.Shape[2]*x.Shape[3]
	var out []float32
	for i := int64(0); i < b; i++ {
		out = append(out, x.F32[i*c*plane:(i*c+n)*plane]...)
	}
	return runtime.F32(out, b, n, x.Shape[2], x.Shape[3])
}

func TestGolden(t *testing.T) {
	m, _ := tinyModel(t)
	io := nntest.Golden(t, "vae-tiny-io.safetensors")

	t.Run("decoder", func(t *testing.T) {
		latent := nntest.IOTensor(t, io, "latent")
		if latent.Shape[2] == latent.Shape[3] {
			t.Fatalf("golden latent %v should have H≠W to catch transposed axes", latent.Shape)
		}
		out := nntest.Run(t, build(t, m, false, nn.BuildOptions{}), map[string]runtime.Tensor{LatentInput: latent})
		nntest.ExpectClose(t, "image", out[ImageOutput], nntest.IOTensor(t, io, "image"), goldenTol)
	})
	t.Run("encoder", func(t *testing.T) {
		img := nntest.IOTensor(t, io, "enc_image")
		out := nntest.Run(t, build(t, m, true, nn.BuildOptions{}), map[string]runtime.Tensor{ImageInput: img})
		moments := out[MomentsOutput]
		nntest.ExpectClose(t, "enc_moments", moments, nntest.IOTensor(t, io, "enc_moments"), goldenTol)
		nntest.ExpectClose(t, "enc_mean", firstChannels(moments, m.Config.LatentChannels), nntest.IOTensor(t, io, "enc_mean"), goldenTol)
	})
}

// TestPipelineCheckpoint decodes the end-to-end golden's latents with the
// VAE of the tiny single-file checkpoint, sized by the pipeline's
// diffusers config (4 GroupNorm groups, other widths than vae-tiny).
func TestPipelineCheckpoint(t *testing.T) {
	raw, err := os.ReadFile(nntest.Golden(t, "pipeline/configs/vae/config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NormGroups != 4 {
		t.Fatalf("pipeline VAE config: %d groups, want 4", cfg.NormGroups)
	}
	// The checkpoint holds all four components; binding the VAE must
	// leave nothing under its prefix unused.
	w := nntest.OpenWeights(t, nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	m := New(cfg)
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	if u := m.Unknown(w); len(u) > 0 {
		t.Fatalf("unused VAE tensors: %v", u)
	}
	s, err := build(t, m, false, nn.BuildOptions{}).Session(nntest.Env(t), runtime.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	io := nntest.Golden(t, "pipeline/pipeline-io.safetensors")
	for _, c := range []string{"a_euler", "b_dpmpp2m_karras", "c_euler_nocfg"} {
		out, err := s.Run(t.Context(), map[string]runtime.Tensor{LatentInput: nntest.IOTensor(t, io, c+"/vae_decoder_input")})
		if err != nil {
			t.Fatal(err)
		}
		nntest.ExpectClose(t, c+"/image_float", out[ImageOutput], nntest.IOTensor(t, io, c+"/image_float"), goldenTol)
	}
}

// TestFloat16 runs the half-precision graphs on CPU (ONNX Runtime inserts
// casts around kernels that lack fp16): it proves the fp16 graph is well
// typed. The tolerance is 5e-2·max|ref|; SDXL's real VAE would overflow in
// fp16, which is why the engine decodes in fp32 by default.
func TestFloat16(t *testing.T) {
	m, _ := tinyModel(t)
	io := nntest.Golden(t, "vae-tiny-io.safetensors")
	for _, tc := range []struct {
		name            string
		encoder         bool
		in, out, golden string
	}{
		{"decoder", false, "latent", ImageOutput, "image"},
		{"encoder", true, "enc_image", MomentsOutput, "enc_moments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := build(t, m, tc.encoder, nn.BuildOptions{Float16: true})
			in := g.Inputs[0]
			got := nntest.Run(t, g, map[string]runtime.Tensor{in: nntest.IOTensor(t, io, tc.in)})[tc.out]
			want := nntest.IOTensor(t, io, tc.golden)
			var maxRef float64
			for _, v := range want.F32 {
				maxRef = math.Max(maxRef, math.Abs(float64(v)))
			}
			nntest.ExpectClose(t, tc.golden+" (fp16)", got, want, 5e-2*maxRef)
		})
	}
}

// readAll returns every tensor of a safetensors file, for rewriting it.
func readAll(t *testing.T, path string) []safetensors.Named {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []safetensors.Named
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		raw, err := f.ReadRaw(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.Named{Name: n, DType: tt.DType, Shape: tt.Shape, Data: raw})
	}
	return out
}

func TestBindErrors(t *testing.T) {
	golden := readAll(t, nntest.Golden(t, "vae-tiny.safetensors"))
	cfg := SDXL()
	cfg.BlockOutChannels = []int64{16, 32, 64, 64}
	cfg.NormGroups = 8
	for _, tc := range []struct {
		name   string
		edit   func([]safetensors.Named) []safetensors.Named
		want   []string // substrings of the error
		inList func(*nn.BindError) []string
	}{
		{
			name: "missing tensor",
			edit: func(ts []safetensors.Named) []safetensors.Named {
				var out []safetensors.Named
				for _, x := range ts {
					if x.Name != Prefix+"decoder.up.1.block.0.nin_shortcut.weight" {
						out = append(out, x)
					}
				}
				return out
			},
			want:   []string{Prefix + "decoder.up.1.block.0.nin_shortcut.weight [32 64 1 1]"},
			inList: func(e *nn.BindError) []string { return e.Missing },
		},
		{
			name: "wrong shape",
			edit: func(ts []safetensors.Named) []safetensors.Named {
				for i, x := range ts {
					if x.Name == Prefix+"encoder.conv_in.weight" {
						// Same element count (16·3·3·3 = 16·27·1·1), other layout.
						ts[i].Shape = []int64{16, 27, 1, 1}
					}
				}
				return ts
			},
			want:   []string{Prefix + "encoder.conv_in.weight: shape [16 27 1 1], expected [16 3 3 3]"},
			inList: func(e *nn.BindError) []string { return e.Mismatch },
		},
		{
			name: "wrong attention shape",
			edit: func(ts []safetensors.Named) []safetensors.Named {
				for i, x := range ts {
					if x.Name == Prefix+"decoder.mid.attn_1.q.weight" {
						ts[i].Shape = []int64{64, 64, 1}
					}
				}
				return ts
			},
			want:   []string{Prefix + "decoder.mid.attn_1.q.weight: shape [64 64 1], expected [64 64]"},
			inList: func(e *nn.BindError) []string { return e.Mismatch },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := make([]safetensors.Named, len(golden))
			copy(ts, golden)
			ts = tc.edit(ts)
			path := filepath.Join(t.TempDir(), "vae.safetensors")
			if err := safetensors.WriteFile(path, ts, nil); err != nil {
				t.Fatal(err)
			}
			w := nntest.OpenWeights(t, path)
			m := New(cfg)
			err := m.Bind(w)
			var be *nn.BindError
			if !errors.As(err, &be) {
				t.Fatalf("Bind: %v, want a *nn.BindError", err)
			}
			t.Logf("error: %v", err)
			if n := len(be.Missing) + len(be.Mismatch) + len(be.Other); n != 1 {
				t.Errorf("%d problems reported, want 1", n)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) || !contains(tc.inList(be), s) {
					t.Errorf("error does not report %q", s)
				}
			}
			if _, err := m.BuildDecoder(nn.BuildOptions{}); err == nil {
				t.Error("BuildDecoder after a failed Bind: no error")
			}
		})
	}
}

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestStructureSDXL binds the full-size model against SDXL's 248 VAE keys
// and builds both graphs (no session).
func TestStructureSDXL(t *testing.T) {
	rows := nntest.SDXLKeys(t, "vae")
	if len(rows) != 248 {
		t.Fatalf("checkpoint-keys.tsv has %d VAE rows, want 248", len(rows))
	}
	// Extras: one a real checkpoint may carry (training loss), one unknown.
	extra := []nntest.Row{{Name: Prefix + "loss.logvar", Shape: []int64{1}}, {Name: Prefix + "decoder.up.0.attn.0.q.weight", Shape: []int64{128, 128, 1, 1}}}
	path := filepath.Join(t.TempDir(), "sdxl-vae-header.safetensors")
	nntest.WriteHeaderOnly(t, path, append(rows, extra...), nil)
	w := nntest.OpenWeights(t, path)
	m := New(SDXL())
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		tt, _, ok := w.Lookup(r.Name)
		if !w.Used(r.Name) || !ok {
			t.Errorf("%s %v not bound", r.Name, r.Shape)
			continue
		}
		if !equal(tt.Shape, r.Shape) {
			t.Errorf("%s: bound with shape %v, want %v", r.Name, tt.Shape, r.Shape)
		}
	}
	if w.NumUsed() != len(rows) {
		t.Errorf("%d tensors bound, want %d", w.NumUsed(), len(rows))
	}
	if u := m.Unknown(w); len(u) != 1 || u[0] != extra[1].Name {
		t.Errorf("Unknown = %v, want only %s", u, extra[1].Name)
	}

	for _, enc := range []bool{false, true} {
		start := time.Now()
		g := build(t, m, enc, nn.BuildOptions{})
		el := time.Since(start)
		model := g.Model.Marshal()
		t.Logf("%s: %d nodes, %d initializers, %d-byte model, built in %v",
			g.Name, len(g.Model.Graph.Nodes), len(g.Model.Graph.Initializers), len(model), el)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
