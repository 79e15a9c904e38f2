// Package onnx writes ONNX models (ModelProto and friends) directly with
// protowire and offers a small graph-building API, so that networks can be
// described in Go and handed to ONNX Runtime without any generated code.
//
// Only the subset of the ONNX schema that the engine needs is written. Field
// numbers follow onnx/onnx.proto.
package onnx

import (
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// DataType is an ONNX TensorProto.DataType.
type DataType int32

// The element types the engine uses.
const (
	Float    DataType = 1
	Uint8    DataType = 2
	Int8     DataType = 3
	Int32    DataType = 6
	Int64    DataType = 7
	Bool     DataType = 9
	Float16  DataType = 10
	Double   DataType = 11
	BFloat16 DataType = 16
)

// Size returns the size of one element in bytes, or 0 if unknown.
func (d DataType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Float16, BFloat16:
		return 2
	case Float, Int32:
		return 4
	case Int64, Double:
		return 8
	}
	return 0
}

func (d DataType) String() string {
	switch d {
	case Float:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	case Double:
		return "float64"
	case BFloat16:
		return "bfloat16"
	}
	return "dtype(" + strconv.Itoa(int(d)) + ")"
}

// ExternalData locates a tensor's bytes in a file beside the model. Location
// is relative to the folder ONNX Runtime is told to resolve external data in.
type ExternalData struct {
	Location string
	Offset   int64
	Length   int64
}

// Tensor is a TensorProto: either raw little-endian data or external data.
type Tensor struct {
	Name     string
	DataType DataType
	Dims     []int64
	Raw      []byte
	External *ExternalData
}

// AttrKind is an AttributeProto.AttributeType.
type AttrKind int32

// Attribute kinds written by this package.
const (
	AttrFloat   AttrKind = 1
	AttrInt     AttrKind = 2
	AttrString  AttrKind = 3
	AttrTensor  AttrKind = 4
	AttrFloats  AttrKind = 6
	AttrInts    AttrKind = 7
	AttrStrings AttrKind = 8
)

// Attr is a node attribute.
type Attr struct {
	Name    string
	Kind    AttrKind
	F       float32
	I       int64
	S       string
	T       *Tensor
	Floats  []float32
	Ints    []int64
	Strings []string
}

// Node is a NodeProto.
type Node struct {
	OpType  string
	Domain  string
	Name    string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Dim is one dimension of a graph input or output: a fixed size, or a
// symbolic name when Param is set.
type Dim struct {
	Value int64
	Param string
}

// ValueInfo describes a graph input or output. A nil Shape means unknown.
type ValueInfo struct {
	Name     string
	DataType DataType
	Shape    []Dim
}

// Graph is a GraphProto.
type Graph struct {
	Name         string
	Nodes        []*Node
	Initializers []*Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// OpsetImport names an operator set version for a domain ("" is the default domain).
type OpsetImport struct {
	Domain  string
	Version int64
}

// Model is a ModelProto.
type Model struct {
	IRVersion    int64
	Producer     string
	Graph        *Graph
	OpsetImports []OpsetImport
}

// Marshal encodes the model as protobuf bytes.
func (m *Model) Marshal() []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.IRVersion))
	if m.Producer != "" {
		b = appendString(b, 2, m.Producer)
	}
	if m.Graph != nil {
		b = appendMessage(b, 7, m.Graph.marshal(nil))
	}
	for _, o := range m.OpsetImports {
		var ob []byte
		if o.Domain != "" {
			ob = appendString(ob, 1, o.Domain)
		}
		ob = protowire.AppendTag(ob, 2, protowire.VarintType)
		ob = protowire.AppendVarint(ob, uint64(o.Version))
		b = appendMessage(b, 8, ob)
	}
	return b
}

func (g *Graph) marshal(b []byte) []byte {
	for _, n := range g.Nodes {
		b = appendMessage(b, 1, n.marshal(nil))
	}
	if g.Name != "" {
		b = appendString(b, 2, g.Name)
	}
	for _, t := range g.Initializers {
		b = appendMessage(b, 5, t.marshal(nil))
	}
	for _, v := range g.Inputs {
		b = appendMessage(b, 11, v.marshal(nil))
	}
	for _, v := range g.Outputs {
		b = appendMessage(b, 12, v.marshal(nil))
	}
	return b
}

func (n *Node) marshal(b []byte) []byte {
	for _, s := range n.Inputs {
		b = appendString(b, 1, s)
	}
	for _, s := range n.Outputs {
		b = appendString(b, 2, s)
	}
	if n.Name != "" {
		b = appendString(b, 3, n.Name)
	}
	b = appendString(b, 4, n.OpType)
	for i := range n.Attrs {
		b = appendMessage(b, 5, n.Attrs[i].marshal(nil))
	}
	if n.Domain != "" {
		b = appendString(b, 7, n.Domain)
	}
	return b
}

func (a *Attr) marshal(b []byte) []byte {
	b = appendString(b, 1, a.Name)
	switch a.Kind {
	case AttrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	case AttrInt:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.I))
	case AttrString:
		b = appendString(b, 4, a.S)
	case AttrTensor:
		b = appendMessage(b, 5, a.T.marshal(nil))
	case AttrFloats:
		var p []byte
		for _, f := range a.Floats {
			p = protowire.AppendFixed32(p, math.Float32bits(f))
		}
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
	case AttrInts:
		var p []byte
		for _, i := range a.Ints {
			p = protowire.AppendVarint(p, uint64(i))
		}
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
	case AttrStrings:
		for _, s := range a.Strings {
			b = appendString(b, 9, s)
		}
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(a.Kind))
	return b
}

func (t *Tensor) marshal(b []byte) []byte {
	if len(t.Dims) > 0 {
		var p []byte
		for _, d := range t.Dims {
			p = protowire.AppendVarint(p, uint64(d))
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, p)
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(t.DataType))
	if t.Name != "" {
		b = appendString(b, 8, t.Name)
	}
	if t.External != nil {
		for _, kv := range [][2]string{
			{"location", t.External.Location},
			{"offset", strconv.FormatInt(t.External.Offset, 10)},
			{"length", strconv.FormatInt(t.External.Length, 10)},
		} {
			var e []byte
			e = appendString(e, 1, kv[0])
			e = appendString(e, 2, kv[1])
			b = appendMessage(b, 13, e)
		}
		b = protowire.AppendTag(b, 14, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	} else {
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Raw)
	}
	return b
}

func (v *ValueInfo) marshal(b []byte) []byte {
	b = appendString(b, 1, v.Name)
	var tt []byte // TypeProto.Tensor
	tt = protowire.AppendTag(tt, 1, protowire.VarintType)
	tt = protowire.AppendVarint(tt, uint64(v.DataType))
	if v.Shape != nil {
		var sh []byte
		for _, d := range v.Shape {
			var db []byte
			if d.Param != "" {
				db = appendString(db, 2, d.Param)
			} else {
				db = protowire.AppendTag(db, 1, protowire.VarintType)
				db = protowire.AppendVarint(db, uint64(d.Value))
			}
			sh = appendMessage(sh, 1, db)
		}
		tt = appendMessage(tt, 2, sh)
	}
	var typ []byte
	typ = appendMessage(typ, 1, tt)
	b = appendMessage(b, 2, typ)
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
