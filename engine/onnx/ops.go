package onnx

// Elementwise and tensor operations as methods on Value, so that network
// code reads as a chain of the architecture's operations.

func (v Value) op(op string, attrs []Attr, others ...Value) Value {
	return v.b.Op(op, append([]Value{v}, others...), attrs...)
}

// Add returns v + w (broadcasting).
func (v Value) Add(w Value) Value { return v.op("Add", nil, w) }

// Sub returns v − w.
func (v Value) Sub(w Value) Value { return v.op("Sub", nil, w) }

// Mul returns v · w elementwise.
func (v Value) Mul(w Value) Value { return v.op("Mul", nil, w) }

// Div returns v / w elementwise.
func (v Value) Div(w Value) Value { return v.op("Div", nil, w) }

// MatMul returns the matrix product, batched over leading dimensions.
func (v Value) MatMul(w Value) Value { return v.op("MatMul", nil, w) }

// Scale multiplies by a constant.
func (v Value) Scale(f float32) Value { return v.Mul(v.b.Scalar(f)) }

// Sigmoid is the logistic function.
func (v Value) Sigmoid() Value { return v.op("Sigmoid", nil) }

// SiLU is x·sigmoid(x) (swish).
func (v Value) SiLU() Value { return v.Mul(v.Sigmoid()) }

// QuickGELU is x·sigmoid(1.702x), CLIP's activation.
func (v Value) QuickGELU() Value { return v.Mul(v.Scale(1.702).Sigmoid()) }

// GELU is the exact (erf) GELU.
func (v Value) GELU() Value { return v.op("Gelu", nil) }

// Tanh is the hyperbolic tangent.
func (v Value) Tanh() Value { return v.op("Tanh", nil) }

// Exp is eˣ.
func (v Value) Exp() Value { return v.op("Exp", nil) }

// Sin is the sine.
func (v Value) Sin() Value { return v.op("Sin", nil) }

// Cos is the cosine.
func (v Value) Cos() Value { return v.op("Cos", nil) }

// Sqrt is the square root.
func (v Value) Sqrt() Value { return v.op("Sqrt", nil) }

// Softmax along axis.
func (v Value) Softmax(axis int64) Value { return v.op("Softmax", []Attr{AInt("axis", axis)}) }

// Reshape to the given shape (0 copies the input dimension, −1 is inferred).
func (v Value) Reshape(shape ...int64) Value { return v.op("Reshape", nil, v.b.ConstInt64(shape...)) }

// ReshapeTo reshapes to a shape given as a runtime int64 tensor.
func (v Value) ReshapeTo(shape Value) Value { return v.op("Reshape", nil, shape) }

// Shape returns the runtime shape as an int64 tensor.
func (v Value) Shape() Value { return v.op("Shape", nil) }

// Transpose permutes the dimensions.
func (v Value) Transpose(perm ...int64) Value {
	return v.op("Transpose", []Attr{AInts("perm", perm...)})
}

// Cast converts the element type. Casting to the type a value already has
// is the caller's business to avoid; Cast always emits a node.
func (v Value) Cast(dt DataType) Value { return v.op("Cast", []Attr{AInt("to", int64(dt))}) }

// Unsqueeze inserts size-1 dimensions at axes.
func (v Value) Unsqueeze(axes ...int64) Value { return v.op("Unsqueeze", nil, v.b.ConstInt64(axes...)) }

// Squeeze removes size-1 dimensions at axes.
func (v Value) Squeeze(axes ...int64) Value { return v.op("Squeeze", nil, v.b.ConstInt64(axes...)) }

// Slice takes [start, end) along axis.
func (v Value) Slice(axis, start, end int64) Value {
	b := v.b
	return v.op("Slice", nil, b.ConstInt64(start), b.ConstInt64(end), b.ConstInt64(axis))
}

// Split cuts v along axis into pieces of the given sizes.
func (v Value) Split(axis int64, sizes ...int64) []Value {
	return v.b.Node("Split", "", []Value{v, v.b.ConstInt64(sizes...)}, len(sizes), AInt("axis", axis))
}

// Gather selects entries of v along axis by integer indices.
func (v Value) Gather(indices Value, axis int64) Value {
	return v.op("Gather", []Attr{AInt("axis", axis)}, indices)
}

// ReduceMean averages over axes.
func (v Value) ReduceMean(keepDims bool, axes ...int64) Value {
	k := int64(0)
	if keepDims {
		k = 1
	}
	return v.op("ReduceMean", []Attr{AInt("keepdims", k)}, v.b.ConstInt64(axes...))
}

// ArgMax along axis (keepdims 0), as int64.
func (v Value) ArgMax(axis int64) Value {
	return v.op("ArgMax", []Attr{AInt("axis", axis), AInt("keepdims", 0)})
}

// Concat joins values along axis.
func Concat(axis int64, vals ...Value) Value {
	return vals[0].b.Op("Concat", vals, AInt("axis", axis))
}

// Conv2D is a 2-D convolution with square kernel strides and explicit
// padding [top, left, bottom, right]. bias may be the zero Value.
func (v Value) Conv2D(w, bias Value, stride int64, pads [4]int64) Value {
	in := []Value{v, w}
	if bias.Name != "" {
		in = append(in, bias)
	}
	return v.b.Op("Conv", in,
		AInts("strides", stride, stride),
		AInts("pads", pads[0], pads[1], pads[2], pads[3]))
}

// Pad pads with zeros; pads are ONNX's [x1_begin, x2_begin, …, x1_end, …].
func (v Value) Pad(pads ...int64) Value {
	return v.op("Pad", []Attr{AString("mode", "constant")}, v.b.ConstInt64(pads...))
}

// UpsampleNearest2x doubles H and W of an NCHW tensor by nearest-neighbour,
// as torch's F.interpolate(scale_factor=2, mode="nearest").
func (v Value) UpsampleNearest2x() Value {
	b := v.b
	scales := b.Initializer(&Tensor{Name: b.fresh("scales"), DataType: Float, Dims: []int64{4}, Raw: EncodeFloats(Float, []float32{1, 1, 2, 2})})
	return b.Op("Resize", []Value{v, {b, ""}, scales},
		AString("mode", "nearest"),
		AString("coordinate_transformation_mode", "asymmetric"),
		AString("nearest_mode", "floor"))
}

// LayerNorm normalises over the last axis with scale and bias.
func (v Value) LayerNorm(scale, bias Value, eps float32) Value {
	return v.op("LayerNormalization", []Attr{AInt("axis", -1), AFloat("epsilon", eps)}, scale, bias)
}

// GroupNorm normalises an NCHW (or N,C,…) tensor in groups of channels and
// applies the per-channel scale and bias. It is built from
// InstanceNormalization on a [N, groups, −1] view, which ONNX Runtime runs
// as one kernel, instead of GroupNormalization, which it expands op by op.
func (v Value) GroupNorm(scale, bias Value, groups, channels int64, eps float32) Value {
	b := v.b
	ones := make([]float32, groups)
	zeros := make([]float32, groups)
	for i := range ones {
		ones[i] = 1
	}
	shape := v.Shape()
	x := v.Reshape(0, groups, -1)
	x = x.op("InstanceNormalization", []Attr{AFloat("epsilon", eps)},
		b.ConstFloat([]int64{groups}, ones...), b.ConstFloat([]int64{groups}, zeros...))
	x = x.ReshapeTo(shape)
	// Scale and bias broadcast over the trailing spatial dimensions.
	return x.Mul(scale.Reshape(channels, 1, 1)).Add(bias.Reshape(channels, 1, 1))
}
