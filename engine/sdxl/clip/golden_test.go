package clip

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

// goldenTol is the parity bound for float32 graphs (max abs).
const goldenTol = 1e-4

// tinyConfig reads the config of one encoder of the text-encoder golden
// from the checkpoint's __metadata__, through ParseConfig.
func tinyConfig(t testing.TB, k Kind) Config {
	t.Helper()
	f, err := safetensors.Open(nntest.Golden(t, "text-encoders-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	key := map[Kind]string{L: "encoder1_config", G: "encoder2_config"}[k]
	c, err := ParseConfig([]byte(f.Metadata[key]))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return c
}

// tinyGraph binds an encoder of the golden checkpoint and builds its graph.
func tinyGraph(t testing.TB, k Kind, o nn.BuildOptions) (*nn.Graph, *nn.Weights) {
	t.Helper()
	w := nntest.OpenWeights(t, nntest.Golden(t, "text-encoders-tiny.safetensors"))
	enc, err := New(k, tinyConfig(t, k))
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Bind(w); err != nil {
		t.Fatal(err)
	}
	g, err := enc.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return g, w
}

// rowsAt gathers x [B, T, C] at per-sequence positions: the reference for
// the pooled outputs, computed independently of the graph's GatherND.
func rowsAt(x runtime.Tensor, pos []int) runtime.Tensor {
	t, c := int(x.Shape[1]), int(x.Shape[2])
	out := make([]float32, 0, len(pos)*c)
	for b, p := range pos {
		out = append(out, x.F32[(b*t+p)*c:(b*t+p+1)*c]...)
	}
	return runtime.F32(out, int64(len(pos)), int64(c))
}

// firstMax returns, per row of ids [B, T], the index of the first largest id.
func firstMax(ids runtime.Tensor) []int {
	t := int(ids.Shape[1])
	var pos []int
	for b := 0; b < int(ids.Shape[0]); b++ {
		row := ids.I64[b*t : (b+1)*t]
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		pos = append(pos, best)
	}
	return pos
}

// concatLast concatenates two [B, T, Ca] and [B, T, Cb] tensors on the last
// axis, as SDXL assembles its cross-attention context (§4).
func concatLast(a, b runtime.Tensor) runtime.Tensor {
	ca, cb := int(a.Shape[2]), int(b.Shape[2])
	rows := len(a.F32) / ca
	out := make([]float32, 0, rows*(ca+cb))
	for r := 0; r < rows; r++ {
		out = append(out, a.F32[r*ca:(r+1)*ca]...)
		out = append(out, b.F32[r*cb:(r+1)*cb]...)
	}
	return runtime.F32(out, a.Shape[0], a.Shape[1], int64(ca+cb))
}

func TestGoldenTextEncoders(t *testing.T) {
	io := nntest.Golden(t, "text-encoders-tiny-io.safetensors")
	got := map[Kind]map[string]runtime.Tensor{}
	for _, tc := range []struct {
		kind   Kind
		ids    string
		prefix string
		pooled string // golden name of the graph's pooled output
	}{
		{L, "input_ids_1", "enc1_", "enc1_pooled_output"},
		{G, "input_ids_2", "enc2_", "enc2_text_embeds"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			g, w := tinyGraph(t, tc.kind, nn.BuildOptions{})
			if u := tc.kind.Unknown(w); len(u) > 0 {
				t.Errorf("unknown keys: %v", u)
			}
			ids := nntest.IOTensor(t, io, tc.ids)
			out := nntest.Run(t, g, map[string]runtime.Tensor{InputIDs: ids})
			got[tc.kind] = out
			want := func(name string) runtime.Tensor { return nntest.IOTensor(t, io, name) }
			nntest.ExpectClose(t, "hidden vs "+tc.prefix+"last_hidden_state", out[OutputHidden], want(tc.prefix+"last_hidden_state"), goldenTol)
			nntest.ExpectClose(t, "penultimate vs "+tc.prefix+"penultimate", out[OutputPenultimate], want(tc.prefix+"penultimate"), goldenTol)
			nntest.ExpectClose(t, "pooled vs "+tc.pooled, out[OutputPooled], want(tc.pooled), goldenTol)
			// The unprojected pooled output, read off the hidden output at
			// the first EOS, checks the EOS position independently.
			nntest.ExpectClose(t, "hidden[argmax ids] vs "+tc.prefix+"pooled_output",
				rowsAt(out[OutputHidden], firstMax(ids)), want(tc.prefix+"pooled_output"), goldenTol)
		})
	}
	if got[L] == nil || got[G] == nil {
		return
	}
	nntest.ExpectClose(t, "concat(penultimate L, G) vs prompt_embeds",
		concatLast(got[L][OutputPenultimate], got[G][OutputPenultimate]), nntest.IOTensor(t, io, "prompt_embeds"), goldenTol)
	nntest.ExpectClose(t, "pooled G vs pooled_prompt_embeds", got[G][OutputPooled], nntest.IOTensor(t, io, "pooled_prompt_embeds"), goldenTol)
}

// TestFloat16Graph runs the fp16 build on CPU. It proves the half-precision
// graph is well typed (what CUDA runs); the tolerance is 5e-2 of the
// largest reference magnitude, fp16's ~3 significant digits compounded
// over the layers.
func TestFloat16Graph(t *testing.T) {
	io := nntest.Golden(t, "text-encoders-tiny-io.safetensors")
	for _, tc := range []struct {
		kind   Kind
		ids    string
		prefix string
		pooled string
	}{
		{L, "input_ids_1", "enc1_", "enc1_pooled_output"},
		{G, "input_ids_2", "enc2_", "enc2_text_embeds"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			g, _ := tinyGraph(t, tc.kind, nn.BuildOptions{Float16: true})
			out := nntest.Run(t, g, map[string]runtime.Tensor{InputIDs: nntest.IOTensor(t, io, tc.ids)})
			for name, ref := range map[string]string{
				OutputHidden:      tc.prefix + "last_hidden_state",
				OutputPenultimate: tc.prefix + "penultimate",
				OutputPooled:      tc.pooled,
			} {
				want := nntest.IOTensor(t, io, ref)
				nntest.ExpectClose(t, "fp16 "+name+" vs "+ref, out[name], want, 5e-2*maxAbs(want.F32))
			}
		})
	}
}

func maxAbs(v []float32) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// TestPipelineCheckpoint binds both encoders of the end-to-end golden's
// checkpoint (which, like real files, carries position_ids and
// logit_scale) with the configs diffusers saved beside it, and reproduces
// the pipeline's prompt embeddings for case a_euler.
func TestPipelineCheckpoint(t *testing.T) {
	var pj struct {
		Cases map[string]struct {
			InputIDs map[string]struct {
				Tokenizer1 []int64 `json:"tokenizer1"`
				Tokenizer2 []int64 `json:"tokenizer2"`
			} `json:"input_ids"`
		} `json:"cases"`
	}
	data, err := os.ReadFile(nntest.Golden(t, "pipeline/pipeline.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Python's json wrote one scheduler setting as -Infinity, which is not
	// JSON; it is irrelevant here.
	data = bytes.ReplaceAll(data, []byte("-Infinity"), []byte("null"))
	if err := json.Unmarshal(data, &pj); err != nil {
		t.Fatal(err)
	}
	ids := pj.Cases["a_euler"].InputIDs
	if len(ids["prompt"].Tokenizer1) != 77 || len(ids["negative_prompt"].Tokenizer2) != 77 {
		t.Fatalf("pipeline.json: a_euler token ids missing")
	}
	// Batch [negative, prompt], the order diffusers concatenates for CFG.
	batch := func(f func(p string) []int64) runtime.Tensor {
		return runtime.I64(append(append([]int64{}, f("negative_prompt")...), f("prompt")...), 2, 77)
	}
	in := map[Kind]runtime.Tensor{
		L: batch(func(p string) []int64 { return ids[p].Tokenizer1 }),
		G: batch(func(p string) []int64 { return ids[p].Tokenizer2 }),
	}

	w := nntest.OpenWeights(t, nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	out := map[Kind]map[string]runtime.Tensor{}
	for k, dir := range map[Kind]string{L: "text_encoder", G: "text_encoder_2"} {
		raw, err := os.ReadFile(nntest.Golden(t, "pipeline/configs/"+dir+"/config.json"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfig(raw)
		if err != nil {
			t.Fatalf("%s/config.json: %v", dir, err)
		}
		enc, err := New(k, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Bind(w); err != nil {
			t.Fatal(err)
		}
		if u := k.Unknown(w); len(u) > 0 {
			t.Errorf("%s: unknown keys %v", k, u)
		}
		g, err := enc.Build(nn.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out[k] = nntest.Run(t, g, map[string]runtime.Tensor{InputIDs: in[k]})
	}
	for _, extra := range KnownExtras {
		if !w.Has(extra) || w.Used(extra) {
			t.Errorf("known extra %s: present %v, bound %v (want present and unbound)", extra, w.Has(extra), w.Used(extra))
		}
	}

	io := nntest.Golden(t, "pipeline/pipeline-io.safetensors")
	ctx := concatLast(out[L][OutputPenultimate], out[G][OutputPenultimate])
	half := func(x runtime.Tensor, i int) runtime.Tensor {
		n := len(x.F32) / 2
		return runtime.F32(x.F32[i*n:(i+1)*n], append([]int64{1}, x.Shape[1:]...)...)
	}
	nntest.ExpectClose(t, "a_euler negative_prompt_embeds", half(ctx, 0), nntest.IOTensor(t, io, "a_euler/negative_prompt_embeds"), goldenTol)
	nntest.ExpectClose(t, "a_euler prompt_embeds", half(ctx, 1), nntest.IOTensor(t, io, "a_euler/prompt_embeds"), goldenTol)
	nntest.ExpectClose(t, "a_euler negative_pooled_prompt_embeds", half(out[G][OutputPooled], 0), nntest.IOTensor(t, io, "a_euler/negative_pooled_prompt_embeds"), goldenTol)
	nntest.ExpectClose(t, "a_euler pooled_prompt_embeds", half(out[G][OutputPooled], 1), nntest.IOTensor(t, io, "a_euler/pooled_prompt_embeds"), goldenTol)
}

// TestBadTokenIDs checks that ids outside the vocabulary or a sequence of
// the wrong length are errors from Run, not crashes or garbage. (ONNX
// Gather reads ids in [−vocab, −1] from the end of the table, as Python
// indexing does; the tokenizer never makes negative ids.)
func TestBadTokenIDs(t *testing.T) {
	g, _ := tinyGraph(t, G, nn.BuildOptions{})
	s, err := g.Session(nntest.Env(t), runtime.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vocab := tinyConfig(t, G).VocabSize
	for _, tc := range []struct {
		name string
		ids  runtime.Tensor
	}{
		{"id past the vocabulary", runtime.I64(append(make([]int64, 76), vocab), 1, 77)},
		{"negative id below -vocab", runtime.I64(append(make([]int64, 76), -vocab-1), 1, 77)},
		{"76 positions", runtime.I64(make([]int64, 76), 1, 76)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Run(context.Background(), map[string]runtime.Tensor{InputIDs: tc.ids}); err == nil {
				t.Error("Run gave no error")
			} else {
				t.Logf("%v", err)
			}
		})
	}
}
