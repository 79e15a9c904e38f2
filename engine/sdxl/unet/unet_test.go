package unet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

// goldenInputs reads the UNet inputs of a golden io file, with the
// timestep taken from the named tensor.
func goldenInputs(t testing.TB, io, timestep string) map[string]runtime.Tensor {
	t.Helper()
	in := map[string]runtime.Tensor{}
	for _, name := range []string{InputSample, InputContext, InputPooled, InputTimeIDs} {
		in[name] = nntest.IOTensor(t, io, name)
	}
	in[InputTime] = nntest.IOTensor(t, io, timestep)
	return in
}

func session(t testing.TB, g *nn.Graph) *runtime.Session {
	t.Helper()
	s, err := g.Session(nntest.Env(t), runtime.SessionConfig{})
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func run(t testing.TB, s *runtime.Session, in map[string]runtime.Tensor) runtime.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return out[Output]
}

func maxAbs(x runtime.Tensor) float64 {
	var m float64
	for _, v := range x.F32 {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

func maxDiff(a, b runtime.Tensor) float64 {
	var m float64
	for i := range a.F32 {
		m = math.Max(m, math.Abs(float64(a.F32[i])-float64(b.F32[i])))
	}
	return m
}

// TestGolden runs the tiny UNet through the real loading path and matches
// diffusers' outputs, with one timestep for the batch and with a different
// timestep per batch element.
func TestGolden(t *testing.T) {
	m, w := tinyModel(t)
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, g)
	io := nntest.Golden(t, "unet-tiny-io.safetensors")
	for _, tc := range []struct{ timestep, want string }{
		{"timestep", "out"},
		{"timestep_mixed", "out_mixed"},
	} {
		got := run(t, s, goldenInputs(t, io, tc.timestep))
		nntest.ExpectClose(t, tc.want, got, nntest.IOTensor(t, io, tc.want), 1e-4)
	}

	// The timestep is embedded as a float in the graph: a fractional one
	// must give an output distinct from both neighbouring integers (a
	// graph that rounded or truncated it would equal one of them).
	in := goldenInputs(t, io, "timestep")
	at := func(ts float32) runtime.Tensor {
		in[InputTime] = runtime.F32([]float32{ts, ts}, 2)
		return run(t, s, in)
	}
	lo, mid, hi := at(800), at(800.5), at(801)
	dLo, dHi := maxDiff(mid, lo), maxDiff(mid, hi)
	t.Logf("t=800.5 differs from t=800 by %.3g and from t=801 by %.3g", dLo, dHi)
	if dLo < 1e-4 || dHi < 1e-4 {
		t.Errorf("fractional timestep 800.5 gives the output of an integer timestep (Δ %.3g, %.3g)", dLo, dHi)
	}
}

// TestFloat16 builds the fp16 graph (what CUDA runs) and runs it on CPU,
// where ONNX Runtime inserts casts around kernels it has only in fp32. It
// proves the fp16 graph is well-typed; the tolerance is loose because every
// activation is rounded to 11 bits: max|Δ| ≤ 5e-2 × max|ref|.
func TestFloat16(t *testing.T) {
	m, w := tinyModel(t)
	g, err := m.Build(w, nn.BuildOptions{Float16: true})
	if err != nil {
		t.Fatal(err)
	}
	io := nntest.Golden(t, "unet-tiny-io.safetensors")
	got := run(t, session(t, g), goldenInputs(t, io, "timestep_mixed"))
	want := nntest.IOTensor(t, io, "out_mixed")
	nntest.ExpectClose(t, "out_mixed fp16", got, want, 5e-2*maxAbs(want))
}

// TestOddLatentSize runs a latent whose sides are not multiples of 4: the
// upsamplers must produce the skips' sizes (as diffusers does with
// upsample_size) for the concatenations to line up.
func TestOddLatentSize(t *testing.T) {
	m, w := tinyModel(t)
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := goldenInputs(t, nntest.Golden(t, "unet-tiny-io.safetensors"), "timestep")
	const h, wd = 13, 22
	x := make([]float32, 2*4*h*wd)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	in[InputSample] = runtime.F32(x, 2, 4, h, wd)
	out := run(t, session(t, g), in)
	if !slices.Equal(out.Shape, []int64{2, 4, h, wd}) {
		t.Fatalf("output shape %v, want [2 4 %d %d]", out.Shape, h, wd)
	}
	for i, v := range out.F32 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("output %d is %v", i, v)
		}
	}
}

// ipAdapter is a test-only IP-Adapter (original h94 naming) plugged in
// through Attention.Extra, to prove the hook carries decoupled
// cross-attention: image tokens = LayerNorm(reshape(proj(image_embeds),
// [B, 4, C])), and every attn2 adds scale · attention(q, to_k_ip(tokens),
// to_v_ip(tokens)).
type ipAdapter struct {
	Proj   *nn.Linear    `sd:"image_proj.proj"`
	Norm   *nn.LayerNorm `sd:"image_proj.norm"`
	tokens int64
	ctx    int64
	embDim int64
}

// ipScaleKey memoises the adapter's scale input.
type ipScaleKey struct{ a *ipAdapter }

type ipLayer struct {
	ad  *ipAdapter
	ToK *nn.Linear `sd:"to_k_ip"`
	ToV *nn.Linear `sd:"to_v_ip"`
}

func (a *ipAdapter) inputs(b *onnx.Builder) (tokens, scale onnx.Value) {
	tokens = b.Memo(a, func() onnx.Value {
		emb := nn.Input(b, "image_embeds", nn.Dyn("batch"), nn.Fixed(a.embDim))
		return a.Norm.Forward(a.Proj.Forward(emb).Reshape(0, a.tokens, a.ctx))
	})
	scale = b.Memo(ipScaleKey{a}, func() onnx.Value { return nn.Input(b, "scale", nn.Fixed(1)) })
	return tokens, scale
}

func (l *ipLayer) Attend(q onnx.Value, heads, headDim int64) onnx.Value {
	tok, scale := l.ad.inputs(q.Builder())
	return nn.Attention(q, l.ToK.Forward(tok), l.ToV.Forward(tok), heads, headDim, nil).Mul(scale)
}

func TestIPAdapterHook(t *testing.T) {
	ipFile := nntest.Golden(t, "unet-tiny-ipadapter.safetensors")
	m, w := tinyModel(t, ipFile)
	c := m.Config
	ad := &ipAdapter{Proj: nn.NewLinear(24, 4*c.ContextDim, true), Norm: nn.NewLayerNorm(c.ContextDim, 1e-5), tokens: 4, ctx: c.ContextDim, embDim: 24}
	if err := w.Bind("", ad); err != nil {
		t.Fatal(err)
	}
	cross := m.CrossAttentions()
	for j, a := range cross {
		ch := a.Heads * a.HeadDim
		l := &ipLayer{ad: ad, ToK: nn.NewLinear(c.ContextDim, ch, false), ToV: nn.NewLinear(c.ContextDim, ch, false)}
		if err := w.Bind(fmt.Sprintf("ip_adapter.%d.", 2*j+1), l); err != nil {
			t.Fatal(err)
		}
		a.Extra = append(a.Extra, l)
	}
	if un := w.Unused(""); len(un) > 0 {
		t.Fatalf("%d IP-Adapter tensors left unbound with %d cross-attention layers: %v", len(un), len(cross), un)
	}
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(g.Inputs, "image_embeds") || !slices.Contains(g.Inputs, "scale") {
		t.Fatalf("graph inputs %v lack the hook's inputs", g.Inputs)
	}
	io := nntest.Golden(t, "unet-tiny-ipadapter-io.safetensors")
	in := goldenInputs(t, io, "timestep")
	in["image_embeds"] = nntest.IOTensor(t, io, "image_embeds")
	in["scale"] = nntest.IOTensor(t, io, "scale")
	s := session(t, g)
	nntest.ExpectClose(t, "out with IP-Adapter", run(t, s, in), nntest.IOTensor(t, io, "out"), 1e-4)
	// Scale 0 must give the plain UNet output.
	in["scale"] = runtime.F32([]float32{0}, 1)
	nntest.ExpectClose(t, "out with IP-Adapter scale 0", run(t, s, in), nntest.IOTensor(t, nntest.Golden(t, "unet-tiny-io.safetensors"), "out"), 1e-4)
}

// TestStructureSDXL binds the full-size SDXL UNet against a header-only
// checkpoint made of the 1,680 unet rows of checkpoint-keys.tsv and builds
// the full graph (no session).
func TestStructureSDXL(t *testing.T) {
	w, rows := sdxlWeights(t)
	if len(rows) != 1680 {
		t.Fatalf("checkpoint-keys.tsv has %d unet rows, want 1680", len(rows))
	}
	m, err := New(SDXL())
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
	ps := params(m)
	seen := map[string]bool{}
	var elements int64
	for _, p := range ps {
		shape, ok := want[p.Key]
		switch {
		case !ok:
			t.Errorf("parameter bound to %q, which is not a unet row", p.Key)
		case seen[p.Key]:
			t.Errorf("%s bound twice", p.Key)
		case !slices.Equal(shape, p.Shape) || !slices.Equal(p.Tensor.Shape, p.Shape):
			t.Errorf("%s: row shape %v, tensor %v, expected by the model %v", p.Key, shape, p.Tensor.Shape, p.Shape)
		}
		seen[p.Key] = true
		elements += p.NumElements()
	}
	for _, r := range rows {
		if !seen[r.Name] || !w.Used(r.Name) {
			t.Errorf("row %s not bound", r.Name)
		}
	}
	if len(ps) != len(rows) || w.NumUsed() != len(rows) {
		t.Errorf("%d parameters, %d keys used, for %d rows", len(ps), w.NumUsed(), len(rows))
	}
	if un := w.Unused(Prefix); len(un) > 0 {
		t.Errorf("unused: %v", un)
	}
	// architecture.md §0: unet 2,567,463,684 parameters, 70 transformer
	// blocks, attn2 K/V of width 2048.
	if elements != 2567463684 {
		t.Errorf("%d parameters, reference says 2,567,463,684", elements)
	}
	if n := len(m.CrossAttentions()); n != 70 {
		t.Errorf("%d cross-attention layers, want 70", n)
	}

	start := time.Now()
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	size := len(g.Model.Marshal())
	t.Logf("full SDXL UNet: %d parameters in %d tensors; graph %d nodes, %d initializers, %d bytes serialized, built in %v",
		elements, len(ps), len(g.Model.Graph.Nodes), len(g.Model.Graph.Initializers), size, built)
	if !slices.Equal(g.Inputs, []string{InputSample, InputTime, InputContext, InputPooled, InputTimeIDs}) {
		t.Errorf("graph inputs %v", g.Inputs)
	}
	external := 0
	for _, in := range g.Model.Graph.Initializers {
		if in.External != nil {
			external++
		}
	}
	if external != len(rows) {
		t.Errorf("%d external initializers, want one per tensor (%d)", external, len(rows))
	}
}

// TestBindErrors alters the tiny checkpoint and checks the error names the
// tensor and what was expected.
func TestBindErrors(t *testing.T) {
	src, err := safetensors.Open(nntest.Golden(t, "unet-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	const (
		blk    = Prefix + "input_blocks.4.1."
		toK    = blk + "transformer_blocks.0.attn2.to_k.weight"
		projIn = blk + "proj_in.weight"
		label  = Prefix + "label_emb.0.0.weight"
		sd15   = Prefix + "input_blocks.1.1.proj_in.weight"
	)
	zeros := func(shape ...int64) safetensors.Named {
		n := int64(4)
		for _, d := range shape {
			n *= d
		}
		return safetensors.Named{DType: safetensors.F32, Shape: shape, Data: make([]byte, n)}
	}
	tests := []struct {
		name    string
		drop    []string
		replace map[string]safetensors.Named
		kind    string   // which BindError list
		want    []string // substrings of the error
	}{
		{name: "missing tensor", drop: []string{label},
			kind: "missing", want: []string{label + " [64 68]"}},
		{name: "wrong shape", replace: map[string]safetensors.Named{toK: zeros(32, 24)},
			kind: "mismatch", want: []string{toK + ": shape [32 24], expected [32 32]"}},
		{name: "sd15 conv projection", replace: map[string]safetensors.Named{projIn: zeros(32, 32, 1, 1)},
			kind: "mismatch", want: []string{projIn + ": shape [32 32 1 1], expected [32 32]", "use_linear_projection"}},
		{name: "sd15 extra transformer", replace: map[string]safetensors.Named{sd15: zeros(16, 16, 1, 1)},
			kind: "other", want: []string{sd15 + " [16 16 1 1]: unexpected tensor"}},
		{name: "integer dtype", replace: map[string]safetensors.Named{toK: {DType: safetensors.I32, Shape: []int64{32, 32}, Data: make([]byte, 4*32*32)}},
			kind: "other", want: []string{toK + ": dtype I32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out []safetensors.Named
			for _, name := range src.Names() {
				if slices.Contains(tc.drop, name) {
					continue
				}
				if r, ok := tc.replace[name]; ok {
					r.Name = name
					out = append(out, r)
					continue
				}
				tt, _ := src.Tensor(name)
				data, err := src.ReadRaw(name)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, safetensors.Named{Name: name, DType: tt.DType, Shape: tt.Shape, Data: data})
			}
			for name, r := range tc.replace {
				if _, ok := src.Tensor(name); !ok {
					r.Name = name
					out = append(out, r)
				}
			}
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := safetensors.WriteFile(path, out, nil); err != nil {
				t.Fatal(err)
			}
			m, err := New(tinyConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			err = m.Bind(nntest.OpenWeights(t, path))
			var be *nn.BindError
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T), want *nn.BindError", err, err)
			}
			t.Logf("%v", err)
			list := map[string][]string{"missing": be.Missing, "mismatch": be.Mismatch, "other": be.Other}[tc.kind]
			if total := len(be.Missing) + len(be.Mismatch) + len(be.Other); total != 1 || len(list) != 1 {
				t.Fatalf("want exactly one %s problem, got %+v", tc.kind, be)
			}
			for _, s := range tc.want {
				if !strings.Contains(list[0], s) || !strings.Contains(err.Error(), s) {
					t.Errorf("%s problem %q (error %q) lacks %q", tc.kind, list[0], err, s)
				}
			}
			if _, err := m.Build(nntest.OpenWeights(t, path), nn.BuildOptions{}); err == nil {
				t.Error("Build succeeded on a model whose binding failed")
			}
		})
	}
}

// A full-size SDXL checkpoint given to the tiny configuration (a config
// that does not match the file) must fail with shape errors, not bind.
func TestBindWrongConfig(t *testing.T) {
	w, _ := sdxlWeights(t)
	m, err := New(tinyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Bind(w)
	var be *nn.BindError
	if !errors.As(err, &be) {
		t.Fatalf("error %v, want *nn.BindError", err)
	}
	const key = Prefix + "time_embed.0.weight: shape [1280 320], expected [64 16]"
	if !slices.Contains(be.Mismatch, key) {
		t.Errorf("mismatches lack %q: %v", key, be.Mismatch[:3])
	}
	// SDXL's transformer_blocks.3–9 have no place in the tiny config.
	if len(be.Other) == 0 {
		t.Error("no unexpected tensors reported")
	}
	t.Logf("%d mismatches, %d unexpected; %.300s…", len(be.Mismatch), len(be.Other), err)
}

// TestPipelineCheckpoint binds the UNet of the tiny pipeline checkpoint
// (all four components in one file, another config: context 40, depths
// 1,2,2, pooled 24) with its config.json and matches every UNet call of
// the three recorded diffusers runs (batch 2 with CFG, batch 1 without).
//
// Tolerance: max|Δ| ≤ 2e-4 · max|ref|, the relative form the golden README
// suggests. Case c (no CFG) is ill-conditioned at steps 1–2: scaling its
// sample by (1 + 1e-7) alone moves the output by 6.5e-5 (3e-6 in case a),
// so float32 reordering gives up to 2.6e-4 absolute (1e-4 relative) there,
// against ≤ 1e-5 in cases a and b.
func TestPipelineCheckpoint(t *testing.T) {
	data, err := os.ReadFile("../../../testdata/golden/pipeline/configs/unet/config.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	w := nntest.OpenWeights(t, "../../../testdata/golden/pipeline/sdxl-tiny.safetensors")
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, g)
	io := "../../../testdata/golden/pipeline/pipeline-io.safetensors"
	f, err := safetensors.Open(io)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, name := range f.Names() {
		run0, ok := strings.CutSuffix(name, "_unet_out")
		if !ok {
			continue
		}
		cs, _, _ := strings.Cut(run0, "/")
		in := map[string]runtime.Tensor{
			InputSample:  nntest.IOTensor(t, io, run0+"_unet_sample"),
			InputContext: nntest.IOTensor(t, io, cs+"/unet_encoder_hidden_states"),
			InputPooled:  nntest.IOTensor(t, io, cs+"/unet_text_embeds"),
			InputTimeIDs: nntest.IOTensor(t, io, cs+"/add_time_ids"),
		}
		// diffusers broadcasts the one timestep over the batch.
		ts := nntest.IOTensor(t, io, run0+"_unet_timestep").F32[0]
		batch := in[InputSample].Shape[0]
		in[InputTime] = runtime.F32(slices.Repeat([]float32{ts}, int(batch)), batch)
		want := nntest.IOTensor(t, io, name)
		nntest.ExpectClose(t, fmt.Sprintf("%s (t=%g)", name, ts), run(t, s, in), want, 2e-4*maxAbs(want))
		calls++
	}
	if calls != 13 {
		t.Errorf("%d UNet calls checked, pipeline-io has 13", calls)
	}
}
