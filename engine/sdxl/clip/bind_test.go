package clip

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
)

// keyRow is one row of testdata/sdxl/checkpoint-keys.tsv.
type keyRow struct {
	name      string
	shape     []int64
	component string
}

func readKeyRows(t testing.TB, components ...string) []keyRow {
	t.Helper()
	f, err := os.Open(filepath.Join(nntest.Root(t), "testdata", "sdxl", "checkpoint-keys.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []keyRow
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		cols := strings.Split(sc.Text(), "\t")
		if line == 1 || len(cols) < 3 || !slices.Contains(components, cols[2]) {
			continue
		}
		r := keyRow{name: cols[0], component: cols[2], shape: []int64{}}
		if cols[1] != "scalar" {
			for _, d := range strings.Split(cols[1], "x") {
				n, err := strconv.ParseInt(d, 10, 64)
				if err != nil {
					t.Fatalf("checkpoint-keys.tsv:%d: shape %q: %v", line, cols[1], err)
				}
				r.shape = append(r.shape, n)
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// writeHeaderOnly writes a safetensors file whose header lists the rows as
// F16 tensors and whose data section is a hole (a sparse file): the shape
// of a full-size checkpoint without its 7 GB.
func writeHeaderOnly(t testing.TB, path string, rows []keyRow) {
	t.Helper()
	type entry struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]entry{}
	var off int64
	for _, r := range rows {
		n := int64(2)
		for _, d := range r.shape {
			n *= d
		}
		hdr[r.name] = entry{"F16", r.shape, []int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	buf := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	if err := os.WriteFile(path, append(buf, js...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(8+len(js))+off); err != nil {
		t.Fatal(err)
	}
}

// fullSizeEncoders binds both SDXL-size encoders to a header-only file made
// of the clip_l and clip_g rows, plus any extra rows.
func fullSizeEncoders(t testing.TB, extra ...keyRow) (map[Kind]Encoder, *nn.Weights, []keyRow) {
	t.Helper()
	rows := readKeyRows(t, string(L), string(G))
	path := filepath.Join(t.TempDir(), "sdxl-header-only.safetensors")
	writeHeaderOnly(t, path, append(slices.Clone(rows), extra...))
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
	bogus := []keyRow{
		{name: PrefixL + "text_projection.weight", shape: []int64{768, 768}},
		{name: PrefixG + "transformer.resblocks.32.ln_1.weight", shape: []int64{1280}},
	}
	encs, w, rows := fullSizeEncoders(t, bogus...)
	count := map[string]int{}
	for _, r := range rows {
		count[r.component]++
		tt, _, ok := w.Lookup(r.name)
		if !ok || !slices.Equal(tt.Shape, r.shape) {
			t.Fatalf("header-only file lost %s %v", r.name, r.shape)
		}
		if slices.Contains(KnownExtras, r.name) {
			if w.Used(r.name) {
				t.Errorf("known extra %s was bound", r.name)
			}
			continue
		}
		if !w.Used(r.name) {
			t.Errorf("%s %v (%s) not bound", r.name, r.shape, r.component)
		}
	}
	if count[string(L)] != 197 || count[string(G)] != 390 {
		t.Errorf("rows: %v, want clip_l 197 and clip_g 390 (architecture.md §0)", count)
	}
	if got, want := w.NumUsed(), len(rows)-len(KnownExtras); got != want {
		t.Errorf("%d keys bound, want %d", got, want)
	}
	for i, k := range []Kind{L, G} {
		if u := k.Unknown(w); !slices.Equal(u, []string{bogus[i].name}) {
			t.Errorf("%s.Unknown = %v, want [%s]", k, u, bogus[i].name)
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
