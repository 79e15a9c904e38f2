package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/onnx"
)

func testEnv(t testing.TB) *Env {
	t.Helper()
	env, err := Init(Config{Provider: "cpu"})
	if err != nil {
		t.Fatalf("init ONNX Runtime: %v", err)
	}
	return env
}

func TestFindLibraryExplicitMissing(t *testing.T) {
	_, err := FindLibrary("/nonexistent/libonnxruntime.so.1")
	if !errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), "explicitly") {
		t.Fatalf("got %v", err)
	}
}

func TestFindLibraryEnv(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, LibraryName())
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(LibraryEnv, p)
	got, err := FindLibrary("")
	if err != nil || got != p {
		t.Fatalf("FindLibrary = %q, %v; want %q", got, err, p)
	}
	t.Setenv(LibraryEnv, filepath.Join(dir, "missing.so"))
	if _, err := FindLibrary(""); err == nil || !strings.Contains(err.Error(), LibraryEnv) {
		t.Fatalf("missing env library: got %v", err)
	}
}

func TestFindLibraryNotFoundNamesPlaces(t *testing.T) {
	t.Setenv(LibraryEnv, "")
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	_, err := FindLibrary("")
	if err == nil {
		t.Fatal("FindLibrary found a library with an empty install dir and no env")
	}
	if !strings.Contains(err.Error(), "looked in") || !strings.Contains(err.Error(), "pixery/lib") {
		t.Fatalf("error does not say where it looked: %v", err)
	}
}

// writeFloats writes a file with a few junk bytes first so the tensor sits
// at an odd offset, as tensors do in safetensors files.
func writeFloats(t *testing.T, dir string, vals []float32) (name string, off, length int64) {
	t.Helper()
	raw := []byte{1, 2, 3}
	for _, v := range vals {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	name = "w.bin"
	if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return name, 3, int64(4 * len(vals))
}

func TestExternalDataMatMul(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	w := []float32{1, 2, 3, 4, 5, 6} // [3,2]
	loc, off, n := writeFloats(t, dir, w)
	b := onnx.NewBuilder("mm")
	x := b.Input("x", onnx.Float, onnx.Dim{Param: "batch"}, onnx.Dim{Value: 3})
	wt := b.Initializer(&onnx.Tensor{Name: "w", DataType: onnx.Float, Dims: []int64{3, 2},
		External: &onnx.ExternalData{Location: loc, Offset: off, Length: n}})
	b.Output(x.MatMul(wt).Add(b.Scalar(0.5)), "y", onnx.Float)
	s, err := env.NewSession(b.Model().Marshal(), []string{"x"}, []string{"y"}, SessionConfig{ExternalDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := LiveValues()
	out, err := s.Run(context.Background(), map[string]Tensor{"x": F32([]float32{1, 0, 0, 0, 1, 1}, 2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	y := out["y"]
	want := []float32{1.5, 2.5, 8.5, 10.5}
	if len(y.F32) != 4 || y.Shape[0] != 2 || y.Shape[1] != 2 {
		t.Fatalf("y = %v %v", y.Shape, y.F32)
	}
	for i := range want {
		if y.F32[i] != want[i] {
			t.Fatalf("y = %v, want %v", y.F32, want)
		}
	}
	if LiveValues() != before {
		t.Fatalf("leaked %d ORT values", LiveValues()-before)
	}
}

func TestRunErrorsAreClear(t *testing.T) {
	env := testEnv(t)
	b := onnx.NewBuilder("id")
	x := b.Input("x", onnx.Float, onnx.Dim{Value: 2})
	b.Output(x.Scale(2), "y", onnx.Float)
	s, err := env.NewSession(b.Model().Marshal(), []string{"x"}, []string{"y"}, SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := LiveValues()
	cases := map[string]map[string]Tensor{
		"missing":    {},
		"short data": {"x": F32([]float32{1}, 2)},
		"unknown":    {"x": F32([]float32{1, 2}, 2), "z": F32([]float32{1}, 1)},
		"no data":    {"x": {Shape: []int64{2}}},
	}
	for name, in := range cases {
		if _, err := s.Run(context.Background(), in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if LiveValues() != before {
		t.Fatalf("leaked %d ORT values on error paths", LiveValues()-before)
	}
	s.Close()
	if _, err := s.Run(context.Background(), map[string]Tensor{"x": F32([]float32{1, 2}, 2)}); err == nil {
		t.Fatal("run on a closed session succeeded")
	}
}

// slowGraph chains many large MatMuls so a run lasts long enough to cancel.
func slowGraph(t *testing.T, env *Env) *Session {
	b := onnx.NewBuilder("slow")
	x := b.Input("x", onnx.Float, onnx.Dim{Value: 256}, onnx.Dim{Value: 256})
	m := make([]float32, 256*256)
	for i := range m {
		m[i] = 1.0 / 256
	}
	w := b.ConstFloat([]int64{256, 256}, m...)
	h := x
	for i := 0; i < 400; i++ {
		h = h.MatMul(w).Tanh()
	}
	b.Output(h, "y", onnx.Float)
	s, err := env.NewSession(b.Model().Marshal(), []string{"x"}, []string{"y"}, SessionConfig{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCancelDuringRun(t *testing.T) {
	env := testEnv(t)
	s := slowGraph(t, env)
	defer s.Close()
	in := map[string]Tensor{"x": F32(make([]float32, 256*256), 256, 256)}
	start := time.Now()
	if _, err := s.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(full / 10); cancel() }()
	start = time.Now()
	_, err := s.Run(ctx, in)
	took := time.Since(start)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v", err)
	}
	t.Logf("full run %v, cancelled run returned after %v", full, took)
	// The session stays usable after a cancelled run.
	if _, err := s.Run(context.Background(), in); err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	if LiveValues() != 0 {
		t.Fatalf("%d ORT values alive", LiveValues())
	}
}

func TestOptimizationLevels(t *testing.T) {
	env := testEnv(t)
	b := onnx.NewBuilder("id")
	x := b.Input("x", onnx.Float, onnx.Dim{Value: 2})
	b.Output(x.Scale(2), "y", onnx.Float)
	for _, lvl := range []string{"basic", "extended", "all", ""} {
		s, err := env.NewSession(b.Model().Marshal(), []string{"x"}, []string{"y"}, SessionConfig{Optimization: lvl})
		if err != nil {
			t.Fatalf("%q: %v", lvl, err)
		}
		out, err := s.Run(context.Background(), map[string]Tensor{"x": F32([]float32{1, 2}, 2)})
		s.Close()
		if err != nil || out["y"].F32[1] != 4 {
			t.Fatalf("%q: %v %v", lvl, out, err)
		}
	}
	if _, err := env.NewSession(b.Model().Marshal(), []string{"x"}, []string{"y"}, SessionConfig{Optimization: "max"}); err == nil {
		t.Fatal("unknown level accepted")
	}
}
