package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/pixery/pixery/engine/fp16"
)

// Opset is the default-domain operator set the builder targets. ONNX Runtime
// 1.24 accepts it, and it has LayerNormalization, Gelu and the input-form axes
// of ReduceMean/Split/Squeeze.
const Opset = 20

// MicrosoftDomain is the domain of ONNX Runtime's contrib operators.
const MicrosoftDomain = "com.microsoft"

// Builder accumulates the nodes, initializers, inputs and outputs of one
// graph. Network code works with Values and never sees protobuf.
type Builder struct {
	name   string
	graph  Graph
	names  map[string]int
	scope  []string
	consts map[string]Value
	params map[any]Value
	// Float is the element type used for floating-point computation inside
	// the graph: Float on CPU, Float16 on GPUs. Constants made by Scalar and
	// Const follow it.
	Float DataType
	// ExternalDir is the folder ONNX Runtime resolves external-data locations
	// against (the session's model_external_initializers_file_folder_path).
	ExternalDir string
	usesMS      bool
}

// Value is a tensor flowing through the graph under construction.
type Value struct {
	b    *Builder
	Name string
}

// Builder returns the graph builder the value belongs to.
func (v Value) Builder() *Builder { return v.b }

// NewBuilder starts an empty graph computing in float32.
func NewBuilder(name string) *Builder {
	return &Builder{
		name:   name,
		names:  map[string]int{},
		consts: map[string]Value{},
		params: map[any]Value{},
		Float:  Float,
	}
}

// Push enters a naming scope: node and value names made until the matching
// Pop start with it, which keeps graphs readable in profiles and errors.
func (b *Builder) Push(scope string) { b.scope = append(b.scope, scope) }

// Pop leaves the innermost naming scope.
func (b *Builder) Pop() { b.scope = b.scope[:len(b.scope)-1] }

func (b *Builder) fresh(base string) string {
	p := base
	if len(b.scope) > 0 {
		p = b.scope[len(b.scope)-1] + "/" + base
	}
	n := b.names[p]
	b.names[p] = n + 1
	if n == 0 {
		return p
	}
	return p + "_" + strconv.Itoa(n)
}

// Input declares a graph input.
func (b *Builder) Input(name string, dt DataType, dims ...Dim) Value {
	b.graph.Inputs = append(b.graph.Inputs, ValueInfo{Name: name, DataType: dt, Shape: dims})
	b.names[name]++
	return Value{b, name}
}

// Output declares v as a graph output under the given name. ONNX needs
// output names to be produced by a node, so v is passed through Identity.
func (b *Builder) Output(v Value, name string, dt DataType, dims ...Dim) {
	b.graph.Nodes = append(b.graph.Nodes, &Node{OpType: "Identity", Name: name + "/out", Inputs: []string{v.Name}, Outputs: []string{name}})
	var shape []Dim
	if dims != nil {
		shape = dims
	}
	b.graph.Outputs = append(b.graph.Outputs, ValueInfo{Name: name, DataType: dt, Shape: shape})
}

// Initializer adds a tensor (raw or external) as a graph initializer.
func (b *Builder) Initializer(t *Tensor) Value {
	if t.Name == "" {
		t.Name = b.fresh("const")
	}
	b.graph.Initializers = append(b.graph.Initializers, t)
	return Value{b, t.Name}
}

// Memo returns the value cached for key, creating it with make the first
// time. Weights use it so that a parameter becomes one initializer however
// often the network reads it.
func (b *Builder) Memo(key any, make func() Value) Value {
	if v, ok := b.params[key]; ok {
		return v
	}
	v := make()
	b.params[key] = v
	return v
}

// Node adds a node with explicit inputs and the given number of outputs.
// An empty Value name stands for an omitted optional input.
func (b *Builder) Node(op, domain string, inputs []Value, nOut int, attrs ...Attr) []Value {
	if domain == MicrosoftDomain {
		b.usesMS = true
	}
	n := &Node{OpType: op, Domain: domain, Name: b.fresh(op), Attrs: attrs}
	for _, in := range inputs {
		n.Inputs = append(n.Inputs, in.Name)
	}
	outs := make([]Value, nOut)
	for i := range outs {
		name := n.Name
		if nOut > 1 {
			name += ":" + strconv.Itoa(i)
		}
		n.Outputs = append(n.Outputs, name)
		outs[i] = Value{b, name}
	}
	b.graph.Nodes = append(b.graph.Nodes, n)
	return outs
}

// Op adds a default-domain node with one output.
func (b *Builder) Op(op string, inputs []Value, attrs ...Attr) Value {
	return b.Node(op, "", inputs, 1, attrs...)[0]
}

// Model finishes the graph as a model.
func (b *Builder) Model() *Model {
	g := b.graph
	g.Name = b.name
	m := &Model{IRVersion: 10, Producer: "pixery", Graph: &g, OpsetImports: []OpsetImport{{"", Opset}}}
	if b.usesMS {
		m.OpsetImports = append(m.OpsetImports, OpsetImport{MicrosoftDomain, 1})
	}
	return m
}

// NumNodes reports how many nodes the graph has so far.
func (b *Builder) NumNodes() int { return len(b.graph.Nodes) }

// Initializers returns the initializers added so far.
func (b *Builder) Initializers() []*Tensor { return b.graph.Initializers }

// Attribute constructors.

// AInt is an integer attribute.
func AInt(name string, v int64) Attr { return Attr{Name: name, Kind: AttrInt, I: v} }

// AFloat is a float attribute.
func AFloat(name string, v float32) Attr { return Attr{Name: name, Kind: AttrFloat, F: v} }

// AInts is an integer-list attribute.
func AInts(name string, v ...int64) Attr { return Attr{Name: name, Kind: AttrInts, Ints: v} }

// AString is a string attribute.
func AString(name, v string) Attr { return Attr{Name: name, Kind: AttrString, S: v} }

// Constants.

// ConstInt64 returns an int64 constant (rank 1), shared between uses.
func (b *Builder) ConstInt64(vals ...int64) Value {
	key := fmt.Sprint("i64", vals)
	if v, ok := b.consts[key]; ok {
		return v
	}
	raw := make([]byte, 8*len(vals))
	for i, x := range vals {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	v := b.Initializer(&Tensor{Name: b.fresh("i64"), DataType: Int64, Dims: []int64{int64(len(vals))}, Raw: raw})
	b.consts[key] = v
	return v
}

// ConstFloat returns a constant of the builder's float type with the given
// shape (nil dims means a scalar).
func (b *Builder) ConstFloat(dims []int64, vals ...float32) Value {
	// Only small constants (epsilons, scales, shapes) repeat; keying large
	// ones would cost more than it saves.
	if len(vals) > 16 {
		return b.Initializer(&Tensor{Name: b.fresh("f"), DataType: b.Float, Dims: dims, Raw: EncodeFloats(b.Float, vals)})
	}
	key := fmt.Sprint("f", b.Float, dims, vals)
	if v, ok := b.consts[key]; ok {
		return v
	}
	v := b.Initializer(&Tensor{Name: b.fresh("f"), DataType: b.Float, Dims: dims, Raw: EncodeFloats(b.Float, vals)})
	b.consts[key] = v
	return v
}

// Scalar returns a rank-0 constant of the builder's float type.
func (b *Builder) Scalar(f float32) Value { return b.ConstFloat(nil, f) }

// EncodeFloats encodes float32 values as little-endian bytes of type dt
// (Float, Float16 or BFloat16).
func EncodeFloats(dt DataType, vals []float32) []byte {
	switch dt {
	case Float16:
		raw := make([]byte, 2*len(vals))
		fp16.EncodeF16(raw, vals)
		return raw
	case BFloat16:
		raw := make([]byte, 2*len(vals))
		fp16.EncodeBF16(raw, vals)
		return raw
	default:
		raw := make([]byte, 4*len(vals))
		for i, f := range vals {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
		}
		return raw
	}
}
