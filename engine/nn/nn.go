// Package nn holds the building blocks of networks described in Go: weight
// parameters bound to checkpoint tensors by struct tags, and layers whose
// Forward methods add ONNX nodes to a graph builder.
//
// A network is a tree of Go structs. A field tagged `sd:"name"` is part of
// the checkpoint: a *Param is the tensor "<prefix>name", a pointer to a
// struct is a sub-module under "<prefix>name.", and a slice of either is
// numbered "<prefix>name.0", "<prefix>name.1", … as PyTorch's ModuleList is.
// Nil pointers are modules the architecture leaves out. One reflective binder
// (Weights.Bind) walks the tree, so every key is found, shape-checked and
// recorded exactly once, and LoRA or IP-Adapter code can address a layer by
// the same names the checkpoint uses.
package nn

import (
	"fmt"
	"slices"

	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/safetensors"
)

// Param is one weight tensor of a network.
type Param struct {
	// Shape is the shape the architecture expects; Bind checks it.
	Shape []int64
	// Optional parameters may be absent from the checkpoint; Value must
	// not be called on an optional parameter that was not found.
	Optional bool

	// Key is the full checkpoint name, set by Bind.
	Key string
	// File and Tensor locate the bound tensor's bytes; the graph reads them
	// from the file as external data.
	File   *safetensors.File
	Tensor *safetensors.Tensor
	// Data, when set, replaces the file's tensor with values held in memory
	// (synthetic weights, LoRA-merged copies).
	Data []float32
	// Delta, when set, is added to the weight inside the graph (low-rank
	// adapters applied without touching the base weight).
	Delta func(b *onnx.Builder) onnx.Value
	// Adapter, when set, adds a term computed from the layer's input to
	// the output of every layer that applies this weight (Linear, Conv2D):
	// LoRA's up·(down·x). Unlike Delta it never materialises a changed
	// copy of the weight: ONNX Runtime computes input-independent nodes
	// early, so Deltas on every weight of a UNet held a second copy of all
	// of them at once (package lora, BENCHMARKS.md).
	Adapter Adapter
}

// Adapter is a term added to a layer's output, computed from its input.
type Adapter interface {
	// Linear returns the term for y = x·Wᵀ: x [..., in] → [..., out].
	Linear(x onnx.Value) onnx.Value
	// Conv returns the term for a convolution of NCHW x with this weight,
	// stride and pads ([top, left, bottom, right]).
	Conv(x onnx.Value, stride int64, pads [4]int64) onnx.Value
}

// NewParam returns a parameter of the expected shape.
func NewParam(shape ...int64) *Param { return &Param{Shape: shape} }

// Bound reports whether the parameter has a value.
func (p *Param) Bound() bool { return p != nil && (p.Tensor != nil || p.Data != nil) }

// NumElements is the product of the expected shape.
func (p *Param) NumElements() int64 {
	n := int64(1)
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// Value returns the parameter as a graph value of the builder's float type,
// adding its initializer the first time it is used in this graph.
func (p *Param) Value(b *onnx.Builder) onnx.Value {
	return b.Memo(p, func() onnx.Value {
		v := p.base(b)
		if p.Delta != nil {
			v = v.Add(p.Delta(b))
		}
		return v
	})
}

func (p *Param) base(b *onnx.Builder) onnx.Value {
	if p.Data != nil {
		return b.Initializer(&onnx.Tensor{Name: p.name(), DataType: b.Float, Dims: p.Shape, Raw: onnx.EncodeFloats(b.Float, p.Data)})
	}
	if p.Tensor == nil {
		panic(fmt.Sprintf("nn: parameter %q used in a graph but never bound", p.Key))
	}
	dt := onnxType(p.Tensor.DType)
	loc, err := externalLocation(b.ExternalDir, p.File.RealPath)
	if err != nil {
		panic(fmt.Sprintf("nn: parameter %q: %v", p.Key, err))
	}
	v := b.Initializer(&onnx.Tensor{
		Name:     p.Key,
		DataType: dt,
		// The checkpoint's own dims: a [C,C,1,1] conv kernel used as a
		// linear weight is reshaped by the layer, not here.
		Dims:     p.Tensor.Shape,
		External: &onnx.ExternalData{Location: loc, Offset: p.Tensor.Offset, Length: p.Tensor.Length},
	})
	if !slices.Equal(p.Tensor.Shape, p.Shape) {
		v = v.Reshape(p.Shape...)
	}
	if dt != b.Float {
		v = v.Cast(b.Float)
	}
	return v
}

func (p *Param) name() string {
	if p.Key != "" {
		return p.Key
	}
	return ""
}

func onnxType(d safetensors.DType) onnx.DataType {
	switch d {
	case "F32":
		return onnx.Float
	case "F16":
		return onnx.Float16
	case "BF16":
		return onnx.BFloat16
	case "F64":
		return onnx.Double
	}
	return 0
}

// floatDType reports whether a checkpoint dtype can hold weights.
func floatDType(d safetensors.DType) bool { return onnxType(d) != 0 }
