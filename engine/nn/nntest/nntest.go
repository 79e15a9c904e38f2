// Package nntest holds helpers shared by the golden tests of the networks:
// opening checkpoints through the real loading path, reading golden io
// tensors, running a graph once and comparing with a stated tolerance, and
// writing header-only full-size checkpoints (WriteHeaderOnly, SDXLKeys) to
// check binding without the weights.
package nntest

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

// Golden returns the path of a file under the repository's
// testdata/golden folder, found by walking up from the test's working
// directory to the folder holding go.mod.
func Golden(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(Root(t), "testdata", "golden", name)
}

// Root returns the repository root (the folder holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func Env(t testing.TB) *runtime.Env {
	t.Helper()
	env, err := runtime.Init(runtime.Config{Provider: "cpu"})
	if err != nil {
		t.Fatalf("init ONNX Runtime: %v", err)
	}
	return env
}

// openWeights opens checkpoint files through the real loading path.
func OpenWeights(t testing.TB, paths ...string) *nn.Weights {
	t.Helper()
	var files []*safetensors.File
	for _, p := range paths {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		files = append(files, f)
	}
	w, err := nn.NewWeights(files...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// ioTensor reads one float32 tensor of a golden io file with its shape.
func IOTensor(t testing.TB, path, name string) runtime.Tensor {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s has no tensor %q", path, name)
	}
	switch tt.DType {
	case "I64":
		raw, err := f.ReadRaw(name)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int64, len(raw)/8)
		for i := range ids {
			ids[i] = int64(uint64(raw[8*i]) | uint64(raw[8*i+1])<<8 | uint64(raw[8*i+2])<<16 | uint64(raw[8*i+3])<<24 |
				uint64(raw[8*i+4])<<32 | uint64(raw[8*i+5])<<40 | uint64(raw[8*i+6])<<48 | uint64(raw[8*i+7])<<56)
		}
		return runtime.I64(ids, tt.Shape...)
	}
	data, err := f.ReadFloat32(name)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.F32(data, tt.Shape...)
}

// run builds a session for g, runs it once and closes it.
func Run(t testing.TB, g *nn.Graph, in map[string]runtime.Tensor) map[string]runtime.Tensor {
	t.Helper()
	s, err := g.Session(Env(t), runtime.SessionConfig{})
	if err != nil {
		t.Fatalf("session for %s: %v", g.Name, err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("run %s: %v", g.Name, err)
	}
	return out
}

// expectClose compares got with want, logs the measured error and fails
// above tol (max absolute difference).
func ExpectClose(t testing.TB, what string, got, want runtime.Tensor, tol float64) {
	t.Helper()
	if len(got.Shape) != len(want.Shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
	}
	for i := range got.Shape {
		if got.Shape[i] != want.Shape[i] {
			t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
		}
	}
	var maxAbs, maxRef float64
	for i := range want.F32 {
		d := math.Abs(float64(got.F32[i]) - float64(want.F32[i]))
		if math.IsNaN(d) {
			t.Fatalf("%s: NaN at %d", what, i)
		}
		maxAbs = math.Max(maxAbs, d)
		maxRef = math.Max(maxRef, math.Abs(float64(want.F32[i])))
	}
	t.Logf("%s: max|Δ| = %.3g (max|ref| %.3g, tolerance %.0e)", what, maxAbs, maxRef, tol)
	if maxAbs > tol {
		t.Errorf("%s: max|Δ| = %g exceeds %g", what, maxAbs, tol)
	}
}

// RandomF32 is an F32 tensor named name of the given shape holding normal
// random values times scale, drawn from r: made-up weights (a LoRA, an
// adapter) that tests load through the real file format.
func RandomF32(r *rand.Rand, name string, scale float64, shape ...int64) safetensors.Named {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * r.NormFloat64())
	}
	raw, _ := safetensors.EncodeFloat32(safetensors.F32, v) // F32 takes every float32
	return safetensors.Named{Name: name, DType: safetensors.F32, Shape: shape, Data: raw}
}
