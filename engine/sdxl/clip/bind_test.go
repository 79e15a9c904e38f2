package clip

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
)

// fullSizeEncoders binds both SDXL-size encoders to a header-only file made
// of the clip_l and clip_g rows, plus any extra rows.
func fullSizeEncoders(t testing.TB, extra ...nntest.Row) (map[Kind]Encoder, *nn.Weights, []nntest.Row) {
	t.Helper()
	rows := nntest.SDXLKeys(t, string(L), string(G))
	path := filepath.Join(t.TempDir(), "sdxl-header-only.safetensors")
	nntest.WriteHeaderOnly(t, path, append(slices.Clone(rows), extra...), nil)
	w := nntest.OpenWeights(t, path)
	encs := map[Kind]Encoder{}
	for _, k := range []Kind{L, G} {
		enc, err := New(k, k.SDXL())
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Bind(w); err != nil {
			t.Fatalf("bind full-size %s: %v", k, err)
		}
		encs[k] = enc
	}
	return encs, w, rows
}

// TestFullSizeStructure checks the SDXL-size module trees against every
// clip_l and clip_g row of checkpoint-keys.tsv: each row is bound exactly
// once (Bind refuses a second binding) with its shape, except the known
// extras, which stay unbound and are not reported as unknown; a key nobody
// knows is reported. Then both graphs are built (no session).
func TestFullSizeStructure(t *testing.T) {
	bogus := []nntest.Row{
		{Name: PrefixL + "text_projection.weight", Shape: []int64{768, 768}},
		{Name: PrefixG + "transformer.resblocks.32.ln_1.weight", Shape: []int64{1280}},
	}
	encs, w, rows := fullSizeEncoders(t, bogus...)
	count := map[string]int{}
	for _, r := range rows {
		count[r.Component]++
		tt, _, ok := w.Lookup(r.Name)
		if !ok || !slices.Equal(tt.Shape, r.Shape) {
			t.Fatalf("header-only file lost %s %v", r.Name, r.Shape)
		}
		if slices.Contains(KnownExtras, r.Name) {
			if w.Used(r.Name) {
				t.Errorf("known extra %s was bound", r.Name)
			}
			continue
		}
		if !w.Used(r.Name) {
			t.Errorf("%s %v (%s) not bound", r.Name, r.Shape, r.Component)
		}
	}
	if count[string(L)] != 197 || count[string(G)] != 390 {
		t.Errorf("rows: %v, want clip_l 197 and clip_g 390 (architecture.md §0)", count)
	}
	if got, want := w.NumUsed(), len(rows)-len(KnownExtras); got != want {
		t.Errorf("%d keys bound, want %d", got, want)
	}
	for i, k := range []Kind{L, G} {
		if u := k.Unknown(w); !slices.Equal(u, []string{bogus[i].Name}) {
			t.Errorf("%s.Unknown = %v, want [%s]", k, u, bogus[i].Name)
		}
	}
	for _, k := range []Kind{L, G} {
		for _, o := range []nn.BuildOptions{{}, {Float16: true}} {
			start := time.Now()
			g, err := encs[k].Build(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s full size, float16 %v: %d nodes, %d initializers, built in %v",
				k, o.Float16, len(g.Model.Graph.Nodes), len(g.Model.Graph.Initializers), time.Since(start))
		}
	}
}

// tinyTensors reads every tensor of the golden checkpoint.
func tinyTensors(t testing.TB) []safetensors.Named {
	t.Helper()
	f, err := safetensors.Open(nntest.Golden(t, "text-encoders-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var out []safetensors.Named
	for _, tt := range f.Tensors() {
		raw, err := f.ReadRaw(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.Named{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: raw})
	}
	return out
}

// TestBindErrors damages the golden checkpoint (one tensor missing, one of
// the wrong shape, one of an integer dtype) and expects one *nn.BindError
// naming each tensor with the shape the network expects.
func TestBindErrors(t *testing.T) {
	base := tinyTensors(t)
	for _, tc := range []struct {
		kind     Kind
		missing  string
		reshape  string
		newShape []int64
		want     []string
	}{
		{
			kind:     L,
			missing:  PrefixL + "encoder.layers.1.self_attn.k_proj.weight",
			reshape:  PrefixL + "encoder.layers.2.mlp.fc1.weight",
			newShape: []int64{16, 64}, // transposed
			want: []string{
				"missing " + PrefixL + "encoder.layers.1.self_attn.k_proj.weight [16 16]",
				"wrong shape " + PrefixL + "encoder.layers.2.mlp.fc1.weight: shape [16 64], expected [64 16]",
			},
		},
		{
			kind:     G,
			missing:  PrefixG + "text_projection",
			reshape:  PrefixG + "transformer.resblocks.0.attn.in_proj_weight",
			newShape: []int64{24, 24}, // q only
			want: []string{
				"missing " + PrefixG + "text_projection [24 24]",
				"wrong shape " + PrefixG + "transformer.resblocks.0.attn.in_proj_weight: shape [24 24], expected [72 24]",
			},
		},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			var damaged []safetensors.Named
			for _, n := range base {
				switch n.Name {
				case tc.missing:
					continue
				case tc.reshape:
					n.Shape = tc.newShape
					n.Data = make([]byte, 4*tc.newShape[0]*tc.newShape[1])
				}
				damaged = append(damaged, n)
			}
			path := filepath.Join(t.TempDir(), "damaged.safetensors")
			if err := safetensors.WriteFile(path, damaged, nil); err != nil {
				t.Fatal(err)
			}
			enc, err := New(tc.kind, tinyConfig(t, tc.kind))
			if err != nil {
				t.Fatal(err)
			}
			err = enc.Bind(nntest.OpenWeights(t, path))
			var be *nn.BindError
			if !errors.As(err, &be) {
				t.Fatalf("Bind = %v, want a *nn.BindError", err)
			}
			if len(be.Missing) != 1 || len(be.Mismatch) != 1 || len(be.Other) != 0 {
				t.Errorf("problems: missing %v, mismatch %v, other %v; want one missing and one mismatch", be.Missing, be.Mismatch, be.Other)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not say %q", err, w)
				}
			}
			t.Logf("%v", err)
			if _, err := enc.Build(nn.BuildOptions{}); err == nil {
				t.Error("Build after a failed Bind gave no error")
			}
		})
	}
}

// TestOtherArchitecture binds SDXL's encoders to a checkpoint whose text
// encoder sits elsewhere, as in SD 1.5 (cond_stage_model.) or the SDXL
// refiner (OpenCLIP as conditioner.embedders.0.model.): every tensor is
// reported missing with its expected shape.
func TestOtherArchitecture(t *testing.T) {
	var moved []safetensors.Named
	perPrefix := map[Kind]int{}
	for _, n := range tinyTensors(t) {
		for _, k := range []Kind{L, G} {
			if strings.HasPrefix(n.Name, k.Prefix()) {
				perPrefix[k]++
			}
		}
		n.Name = strings.Replace(strings.Replace(n.Name, PrefixL, "cond_stage_model.transformer.text_model.", 1),
			PrefixG, "conditioner.embedders.0.model.", 1)
		moved = append(moved, n)
	}
	path := filepath.Join(t.TempDir(), "other.safetensors")
	if err := safetensors.WriteFile(path, moved, nil); err != nil {
		t.Fatal(err)
	}
	w := nntest.OpenWeights(t, path)
	for _, k := range []Kind{L, G} {
		enc, err := New(k, tinyConfig(t, k))
		if err != nil {
			t.Fatal(err)
		}
		err = enc.Bind(w)
		var be *nn.BindError
		if !errors.As(err, &be) {
			t.Fatalf("%s: Bind = %v, want a *nn.BindError", k, err)
		}
		// The golden file holds exactly the encoders' parameters.
		if want := perPrefix[k]; len(be.Missing) != want {
			t.Errorf("%s: %d missing, want %d", k, len(be.Missing), perPrefix[k])
		}
		first := fmt.Sprintf("missing %s", k.Prefix())
		if !strings.Contains(err.Error(), first) {
			t.Errorf("%s: error %q does not list missing keys under %s", k, err, k.Prefix())
		}
	}
}

func TestBuildBeforeBind(t *testing.T) {
	for _, k := range []Kind{L, G} {
		enc, err := New(k, tinyConfig(t, k))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enc.Build(nn.BuildOptions{}); err == nil || !strings.Contains(err.Error(), "not bound") {
			t.Errorf("%s: Build before Bind = %v, want a 'not bound' error", k, err)
		}
	}
}
