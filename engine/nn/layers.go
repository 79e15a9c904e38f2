package nn

import "github.com/pixery/pixery/engine/onnx"

// Linear is y = x·Wᵀ + b with W stored [out, in] as PyTorch does.
type Linear struct {
	Weight  *Param `sd:"weight"`
	Bias    *Param `sd:"bias"`
	In, Out int64
}

// NewLinear makes a linear layer; bias false leaves the bias out.
func NewLinear(in, out int64, bias bool) *Linear {
	l := &Linear{Weight: NewParam(out, in), In: in, Out: out}
	if bias {
		l.Bias = NewParam(out)
	}
	return l
}

// Forward applies the layer over the last axis of x.
func (l *Linear) Forward(x onnx.Value) onnx.Value {
	b := x.Builder()
	// FusedMatMul with transB reads the weight in its stored [out, in]
	// layout. A Transpose node before MatMul would be constant-folded at
	// session creation into a second full copy of every weight: measured on
	// a 0.9 B-parameter UNet, peak RSS 6.9 → 5.3 GB and session creation
	// 98 → 73 s (BENCHMARKS.md).
	y := b.Node("FusedMatMul", onnx.MicrosoftDomain, []onnx.Value{x, l.Weight.Value(b)}, 1, onnx.AInt("transB", 1))[0]
	if a := l.Weight.Adapter; a != nil {
		y = y.Add(a.Linear(x))
	}
	if l.Bias != nil {
		y = y.Add(l.Bias.Value(b))
	}
	return y
}

// Conv2D is a 2-D convolution over NCHW input with a square kernel.
type Conv2D struct {
	Weight *Param `sd:"weight"`
	Bias   *Param `sd:"bias"`
	// Stride and Pads ([top, left, bottom, right]) follow PyTorch's Conv2d.
	Stride int64
	Pads   [4]int64
}

// NewConv2D makes a conv with symmetric padding pad.
func NewConv2D(in, out, kernel, stride, pad int64) *Conv2D {
	return &Conv2D{
		Weight: NewParam(out, in, kernel, kernel),
		Bias:   NewParam(out),
		Stride: stride,
		Pads:   [4]int64{pad, pad, pad, pad},
	}
}

// Forward convolves x.
func (c *Conv2D) Forward(x onnx.Value) onnx.Value {
	b := x.Builder()
	var bias onnx.Value
	if c.Bias != nil {
		bias = c.Bias.Value(b)
	}
	y := x.Conv2D(c.Weight.Value(b), bias, c.Stride, c.Pads)
	if a := c.Weight.Adapter; a != nil {
		y = y.Add(a.Conv(x, c.Stride, c.Pads))
	}
	return y
}

// GroupNorm is torch.nn.GroupNorm with affine parameters.
type GroupNorm struct {
	Weight   *Param `sd:"weight"`
	Bias     *Param `sd:"bias"`
	Groups   int64
	Channels int64
	Eps      float32
}

// NewGroupNorm makes a group norm over channels in groups.
func NewGroupNorm(groups, channels int64, eps float32) *GroupNorm {
	return &GroupNorm{Weight: NewParam(channels), Bias: NewParam(channels), Groups: groups, Channels: channels, Eps: eps}
}

// Forward normalises an NCHW tensor.
func (g *GroupNorm) Forward(x onnx.Value) onnx.Value {
	b := x.Builder()
	return x.GroupNorm(g.Weight.Value(b), g.Bias.Value(b), g.Groups, g.Channels, g.Eps)
}

// LayerNorm is torch.nn.LayerNorm over the last axis.
type LayerNorm struct {
	Weight *Param `sd:"weight"`
	Bias   *Param `sd:"bias"`
	Eps    float32
}

// NewLayerNorm makes a layer norm of width dim.
func NewLayerNorm(dim int64, eps float32) *LayerNorm {
	return &LayerNorm{Weight: NewParam(dim), Bias: NewParam(dim), Eps: eps}
}

// Forward normalises over the last axis.
func (l *LayerNorm) Forward(x onnx.Value) onnx.Value {
	b := x.Builder()
	return x.LayerNorm(l.Weight.Value(b), l.Bias.Value(b), l.Eps)
}

// Embedding looks rows of a [vocab, dim] table up by integer ids.
type Embedding struct {
	Weight *Param `sd:"weight"`
}

// NewEmbedding makes an embedding table.
func NewEmbedding(vocab, dim int64) *Embedding { return &Embedding{Weight: NewParam(vocab, dim)} }

// Forward gathers the rows for ids (int64).
func (e *Embedding) Forward(ids onnx.Value) onnx.Value {
	return e.Weight.Value(ids.Builder()).Gather(ids, 0)
}

// Attention is scaled dot-product multi-head attention on [B, T, C]
// queries and [B, S, C] keys/values, heads splitting C. mask, when given,
// is added to the [B, heads, T, S] scores (a causal mask, say).
func Attention(q, k, v onnx.Value, heads, headDim int64, mask *onnx.Value) onnx.Value {
	split := func(x onnx.Value) onnx.Value {
		// 0 copies T instead of inferring it (−1): ONNX Runtime then keeps
		// the symbolic length, where −1 makes a fresh unknown dimension per
		// reshape and session creation grows quadratically with the number
		// of attention layers (tiny UNet: 1.6–2.0 s → 0.9–1.2 s).
		return x.Reshape(0, 0, heads, headDim).Transpose(0, 2, 1, 3) // B, H, T, D
	}
	qh, kh, vh := split(q), split(k), split(v)
	// Scaling q and k by d^-1/4 each keeps the product's magnitude in range
	// when the graph runs in fp16; in fp32 it is the same as scaling scores.
	scale := float32(1 / sqrt(sqrt(float64(headDim))))
	scores := qh.Scale(scale).MatMul(kh.Transpose(0, 1, 3, 2).Scale(scale))
	if mask != nil {
		scores = scores.Add(*mask)
	}
	out := scores.Softmax(-1).MatMul(vh)                          // B, H, T, D
	return out.Transpose(0, 2, 1, 3).Reshape(0, 0, heads*headDim) // B, T, C
}
