package nn_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/fp16"
	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

type block struct {
	Norm *nn.LayerNorm `sd:"norm"`
	Proj *nn.Linear    `sd:"proj"`
}

type net struct {
	In     *nn.Linear    `sd:"in"`
	Blocks []*block      `sd:"blocks"`
	Gone   *nn.Linear    `sd:"gone"` // nil: not part of this architecture
	Scale  *nn.Param     `sd:"scale"`
	Width  int64         // untagged: not a checkpoint field
	Extra  *nn.LayerNorm `sd:"-"`
}

func newNet() *net {
	n := &net{In: nn.NewLinear(3, 4, true), Scale: nn.NewParam(4), Width: 4}
	for i := 0; i < 2; i++ {
		n.Blocks = append(n.Blocks, &block{Norm: nn.NewLayerNorm(4, 1e-5), Proj: nn.NewLinear(4, 4, false)})
	}
	return n
}

func f32(vals ...float32) []byte {
	b, _ := safetensors.EncodeFloat32(safetensors.F32, vals)
	return b
}

func seq(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * float32(i%7-3)
	}
	return v
}

// writeNet writes a checkpoint for net under prefix "m.", in dtype dt,
// with the given keys left out or reshaped, plus extra keys.
func writeNet(t *testing.T, dt safetensors.DType, skip string, reshape map[string][]int64, extra ...string) string {
	t.Helper()
	shapes := map[string][]int64{
		"m.in.weight": {4, 3}, "m.in.bias": {4}, "m.scale": {4},
		"m.blocks.0.norm.weight": {4}, "m.blocks.0.norm.bias": {4}, "m.blocks.0.proj.weight": {4, 4},
		"m.blocks.1.norm.weight": {4}, "m.blocks.1.norm.bias": {4}, "m.blocks.1.proj.weight": {4, 4},
	}
	for _, e := range extra {
		shapes[e] = []int64{1}
	}
	var ts []safetensors.Named
	for name, shape := range shapes {
		if name == skip {
			continue
		}
		if s, ok := reshape[name]; ok {
			shape = s
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		data, err := safetensors.EncodeFloat32(dt, seq(int(n), 0.25))
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Named{Name: name, DType: dt, Shape: shape, Data: data})
	}
	p := filepath.Join(t.TempDir(), "ck.safetensors")
	if err := safetensors.WriteFile(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func weights(t *testing.T, paths ...string) *nn.Weights {
	t.Helper()
	var fs []*safetensors.File
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	w, err := nn.NewWeights(fs...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestBindEveryKeyOnce(t *testing.T) {
	w := weights(t, writeNet(t, safetensors.F32, "", nil, "m.position_ids", "other.x"))
	n := newNet()
	if err := w.Bind("m.", n); err != nil {
		t.Fatal(err)
	}
	if n.Blocks[1].Proj.Weight.Key != "m.blocks.1.proj.weight" || !n.Scale.Bound() {
		t.Fatalf("keys not bound as expected: %q", n.Blocks[1].Proj.Weight.Key)
	}
	if got := w.NumUsed(); got != 9 {
		t.Fatalf("bound %d keys, want 9", got)
	}
	if u := w.Unused("m."); len(u) != 1 || u[0] != "m.position_ids" {
		t.Fatalf("unused under m. = %v", u)
	}
	// Binding the same tree again would bind every key twice.
	err := w.Bind("m.", newNet())
	var be *nn.BindError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "bound twice") {
		t.Fatalf("second bind: %v", err)
	}
}

func TestBindReportsEveryProblem(t *testing.T) {
	p := writeNet(t, safetensors.F32, "m.blocks.1.norm.bias", map[string][]int64{"m.in.weight": {4, 5}})
	err := weights(t, p).Bind("m.", newNet())
	var be *nn.BindError
	if !errors.As(err, &be) {
		t.Fatalf("got %v", err)
	}
	if len(be.Missing) != 1 || !strings.Contains(be.Missing[0], "m.blocks.1.norm.bias [4]") {
		t.Errorf("missing = %v", be.Missing)
	}
	if len(be.Mismatch) != 1 || !strings.Contains(be.Mismatch[0], "m.in.weight: shape [4 5], expected [4 3]") {
		t.Errorf("mismatch = %v", be.Mismatch)
	}
	t.Log(err)
}

func TestBindRejectsNonFloat(t *testing.T) {
	p := filepath.Join(t.TempDir(), "i.safetensors")
	data, _ := safetensors.EncodeInt64(safetensors.I64, []int64{1, 2, 3, 4})
	if err := safetensors.WriteFile(p, []safetensors.Named{{Name: "m.scale", DType: safetensors.I64, Shape: []int64{4}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	err := weights(t, p).Bind("m.", &struct {
		Scale *nn.Param `sd:"scale"`
	}{nn.NewParam(4)})
	if err == nil || !strings.Contains(err.Error(), "dtype I64") {
		t.Fatalf("got %v", err)
	}
}

func TestDuplicateKeyAcrossFiles(t *testing.T) {
	a := writeNet(t, safetensors.F32, "", nil)
	b := writeNet(t, safetensors.F32, "", nil)
	fa, _ := safetensors.Open(a)
	fb, _ := safetensors.Open(b)
	if _, err := nn.NewWeights(fa, fb); err == nil {
		t.Fatal("a key in two files was accepted")
	}
}

func TestWeightsDirIsCommonAncestor(t *testing.T) {
	root := t.TempDir()
	var paths []string
	for i, sub := range []string{"a/x", "a/y/z"} {
		p := filepath.Join(root, sub, "w.safetensors")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		name := []string{"one", "two"}[i]
		if err := safetensors.WriteFile(p, []safetensors.Named{{Name: name, DType: safetensors.F32, Shape: []int64{1}, Data: f32(1)}}, nil); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	w := weights(t, paths...)
	real, _ := filepath.EvalSymlinks(filepath.Join(root, "a"))
	if w.Dir() != real {
		t.Fatalf("Dir = %s, want %s", w.Dir(), real)
	}
}

// forward runs y = LayerNorm(proj(in(x)))·scale for the first block, with
// weights in dtype dt, and compares with a float64 computation in Go.
func TestForwardMatchesGoForEveryDType(t *testing.T) {
	env, err := runtime.Init(runtime.Config{Provider: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.F16, safetensors.BF16} {
		for _, half := range []bool{false, true} {
			w := weights(t, writeNet(t, dt, "", nil))
			n := newNet()
			if err := w.Bind("m.", n); err != nil {
				t.Fatal(err)
			}
			opts := nn.BuildOptions{Float16: half}
			b := nn.NewBuilder("t", w.Dir(), opts)
			x := nn.Input(b, "x", nn.Dyn("batch"), nn.Fixed(3))
			h := n.In.Forward(x)
			h = n.Blocks[0].Proj.Forward(h)
			h = n.Blocks[0].Norm.Forward(h)
			h = h.Mul(n.Scale.Value(b))
			nn.Output(b, h, "y")
			g := &nn.Graph{Name: "t", Model: b.Model(), Inputs: []string{"x"}, Outputs: []string{"y"}, ExternalDir: w.Dir()}
			s, err := g.Session(env, runtime.SessionConfig{})
			if err != nil {
				t.Fatalf("%s: %v", dt, err)
			}
			in := []float32{0.5, -1, 2, 1, 1, 1}
			out, err := s.Run(context.Background(), map[string]runtime.Tensor{"x": runtime.F32(in, 2, 3)})
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := reference(dt, in)
			var maxd float64
			for i := range want {
				maxd = math.Max(maxd, math.Abs(float64(out["y"].F32[i])-want[i]))
			}
			tol := 1e-5
			if half {
				tol = 2e-2
			}
			t.Logf("weights %s, float16 compute %v: max|Δ| = %.2g", dt, half, maxd)
			if maxd > tol {
				t.Errorf("weights %s, float16 %v: max|Δ| = %g > %g; got %v want %v", dt, half, maxd, tol, out["y"].F32, want)
			}
		}
	}
}

// reference computes the same network in float64 from the values the
// checkpoint holds after rounding to dt.
func reference(dt safetensors.DType, x []float32) []float64 {
	round := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, f := range v {
			switch dt {
			case safetensors.F16:
				f = fp16.ToFloat32(fp16.FromFloat32(f))
			case safetensors.BF16:
				f = fp16.BF16ToFloat32(fp16.BF16FromFloat32(f))
			}
			out[i] = float64(f)
		}
		return out
	}
	win, bin := round(seq(12, 0.25)), round(seq(4, 0.25))
	wp := round(seq(16, 0.25))
	lnw, lnb := round(seq(4, 0.25)), round(seq(4, 0.25))
	sc := round(seq(4, 0.25))
	var out []float64
	for r := 0; r < 2; r++ {
		h := make([]float64, 4)
		for o := 0; o < 4; o++ {
			h[o] = bin[o]
			for i := 0; i < 3; i++ {
				h[o] += float64(x[3*r+i]) * win[3*o+i]
			}
		}
		p := make([]float64, 4)
		for o := 0; o < 4; o++ {
			for i := 0; i < 4; i++ {
				p[o] += h[i] * wp[4*o+i]
			}
		}
		var mean, vari float64
		for _, v := range p {
			mean += v / 4
		}
		for _, v := range p {
			vari += (v - mean) * (v - mean) / 4
		}
		for o := range p {
			out = append(out, ((p[o]-mean)/math.Sqrt(vari+1e-5)*lnw[o]+lnb[o])*sc[o])
		}
	}
	return out
}

func TestWalkListsTheKeysBindUses(t *testing.T) {
	var keys []string
	if err := nn.Walk("m.", newNet(), func(key string, p *nn.Param) { keys = append(keys, key) }); err != nil {
		t.Fatal(err)
	}
	want := "m.in.weight m.in.bias m.blocks.0.norm.weight m.blocks.0.norm.bias m.blocks.0.proj.weight " +
		"m.blocks.1.norm.weight m.blocks.1.norm.bias m.blocks.1.proj.weight m.scale"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("Walk keys:\n%s\nwant\n%s", got, want)
	}
	if err := nn.Walk("", 42, func(string, *nn.Param) {}); err == nil {
		t.Fatal("Walk accepted a non-struct")
	}
}
