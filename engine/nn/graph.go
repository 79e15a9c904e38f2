package nn

import (
	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/runtime"
)

// BuildOptions choose how a graph computes.
type BuildOptions struct {
	// Float16 computes in half precision (GPUs); weights of other dtypes
	// are cast once at load. Inputs and outputs stay float32.
	Float16 bool
}

// Float is the compute element type the options select.
func (o BuildOptions) Float() onnx.DataType {
	if o.Float16 {
		return onnx.Float16
	}
	return onnx.Float
}

// Graph is a built network, ready to become a runtime session.
type Graph struct {
	Name    string
	Model   *onnx.Model
	Inputs  []string
	Outputs []string
	// ExternalDir is the folder the weights' external-data locations are
	// relative to.
	ExternalDir string
}

// Session creates a runtime session for the graph.
func (g *Graph) Session(env *runtime.Env, sc runtime.SessionConfig) (*runtime.Session, error) {
	sc.ExternalDir = g.ExternalDir
	return env.NewSession(g.Model.Marshal(), g.Inputs, g.Outputs, sc)
}

// NewBuilder starts a graph whose weights' external data is resolved in
// dir (Weights.Dir of the files bound).
func NewBuilder(name, dir string, o BuildOptions) *onnx.Builder {
	b := onnx.NewBuilder(name)
	b.Float = o.Float()
	b.ExternalDir = dir
	return b
}

// Input declares a float32 graph input and casts it to the compute type.
func Input(b *onnx.Builder, name string, dims ...onnx.Dim) onnx.Value {
	v := b.Input(name, onnx.Float, dims...)
	if b.Float != onnx.Float {
		v = v.Cast(b.Float)
	}
	return v
}

// Output casts v back to float32 and declares it as a graph output.
func Output(b *onnx.Builder, v onnx.Value, name string) {
	if b.Float != onnx.Float {
		v = v.Cast(onnx.Float)
	}
	b.Output(v, name, onnx.Float)
}

// Dyn is a symbolic dimension.
func Dyn(name string) onnx.Dim { return onnx.Dim{Param: name} }

// Fixed is a fixed dimension.
func Fixed(n int64) onnx.Dim { return onnx.Dim{Value: n} }
