package clip

import (
	"math"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// Graph input and output names.
const (
	InputIDs          = "input_ids"
	OutputHidden      = "hidden"
	OutputPenultimate = "penultimate"
	OutputPooled      = "pooled"
)

// Outputs are the three tensors both encoders produce.
type Outputs struct {
	Hidden      onnx.Value // last layer's output after the final LayerNorm
	Penultimate onnx.Value // input of the last layer, no final LayerNorm
	Pooled      onnx.Value // Hidden at the first EOS (projected for G)
}

// build wraps a forward pass in a graph with SDXL's text-encoder interface.
func build(k Kind, s *binding, o nn.BuildOptions, forward func(ids onnx.Value) Outputs) (*nn.Graph, error) {
	if err := s.ready(k); err != nil {
		return nil, err
	}
	b := nn.NewBuilder(string(k), s.dir, o)
	ids := b.Input(InputIDs, onnx.Int64, nn.Dyn("batch"), nn.Fixed(s.cfg.Positions))
	out := forward(ids)
	nn.Output(b, out.Hidden, OutputHidden)
	nn.Output(b, out.Penultimate, OutputPenultimate)
	nn.Output(b, out.Pooled, OutputPooled)
	model := b.Model()
	g := &nn.Graph{
		Name:        string(k),
		Model:       model,
		Outputs:     []string{OutputHidden, OutputPenultimate, OutputPooled},
		ExternalDir: s.dir,
	}
	// input_ids, plus any inputs that parameters' Delta or Adapter hooks declared
	// (LoRA factors, package lora).
	for _, in := range model.Graph.Inputs {
		g.Inputs = append(g.Inputs, in.Name)
	}
	return g, nil
}

// causalMask is the [1, 1, T, T] additive mask that stops position i from
// attending to positions after it. The blocked entries hold the most
// negative finite value of the compute type, as PyTorch's CLIP does
// (torch.finfo(dtype).min): finite so that no softmax row can become NaN,
// and in fp16 small enough (−65504) that exp underflows to exactly 0.
func causalMask(b *onnx.Builder, t int64) onnx.Value {
	neg := float32(-math.MaxFloat32)
	if b.Float == onnx.Float16 {
		neg = -65504
	}
	vals := make([]float32, t*t)
	for i := int64(0); i < t; i++ {
		for j := i + 1; j < t; j++ {
			vals[i*t+j] = neg
		}
	}
	// Made directly rather than by ConstFloat, whose cache key would
	// format all t² values; Forward makes it once per graph.
	return b.Initializer(&onnx.Tensor{Name: "causal_mask", DataType: b.Float, Dims: []int64{1, 1, t, t},
		Raw: onnx.EncodeFloats(b.Float, vals)})
}

// atEOS picks, for each sequence of x [B, T, C], the row at the first
// occurrence of the largest token id: the EOS token 49407, whether the
// sequence is padded with EOS (CLIP-L) or with 0 (OpenCLIP), architecture.md
// §3 and §5. ONNX ArgMax, like torch.argmax, returns the first of equal
// maxima.
func atEOS(x, ids onnx.Value) onnx.Value {
	b := x.Builder()
	eos := ids.ArgMax(-1).Unsqueeze(-1) // [B, 1]
	return b.Op("GatherND", []onnx.Value{x, eos}, onnx.AInt("batch_dims", 1))
}

// activation applies a config's hidden_act.
func activation(name string, x onnx.Value) onnx.Value {
	if name == GELU {
		return x.GELU()
	}
	return x.QuickGELU()
}
