package rng

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// TestTorchStreamContinues checks that successive Randn calls continue one
// stream as PyTorch's do: for multiples of 16 the vectorised path consumes
// exactly n uniforms, and the scalar path keeps the spare Box-Muller value.
func TestTorchStreamContinues(t *testing.T) {
	whole := make([]float32, 48)
	NewTorchCPU(7).Randn(whole)
	g := NewTorchCPU(7)
	a, b := make([]float32, 32), make([]float32, 16)
	g.Randn(a)
	g.Randn(b)
	if !slices.Equal(whole, append(a, b...)) {
		t.Error("randn(48) differs from randn(32) + randn(16)")
	}

	whole = make([]float32, 8)
	NewTorchCPU(7).Randn(whole)
	g = NewTorchCPU(7)
	a, b = make([]float32, 7), make([]float32, 1)
	g.Randn(a)
	g.Randn(b)
	if !slices.Equal(whole, append(a, b...)) {
		t.Error("scalar path: randn(8) differs from randn(7) + randn(1)")
	}

	// A tail that is not a multiple of 16 redraws the last block but keeps
	// the first.
	g = NewTorchCPU(7)
	c := make([]float32, 17)
	g.Randn(c)
	ref := make([]float32, 16)
	NewTorchCPU(7).Randn(ref)
	if c[0] != ref[0] {
		t.Errorf("randn(17)[0] = %v, want randn(16)[0] = %v", c[0], ref[0])
	}
	if c[16] == ref[15] || c[1] == ref[1] {
		t.Error("randn(17) did not redraw its last 16 values")
	}
}

func TestPhiloxOffsets(t *testing.T) {
	p := NewPhilox(42)
	first, second := make([]float32, 10), make([]float32, 10)
	p.Randn(first)
	p.Randn(second)
	if slices.Equal(first, second) {
		t.Error("second draw repeats the first")
	}
	// Value i depends only on (seed, offset, i): a longer draw starts the same.
	long := make([]float32, 100)
	NewPhilox(42).Randn(long)
	if !slices.Equal(first, long[:10]) {
		t.Error("draw of 100 does not start with the draw of 10")
	}
	// The full 64-bit seed is the key.
	other := make([]float32, 10)
	NewPhilox(42 + 1<<32).Randn(other)
	if slices.Equal(first, other) {
		t.Error("seed 2^32+42 gives the noise of 42")
	}
}

func TestNoiseMoments(t *testing.T) {
	for _, k := range Kinds() {
		n, err := New(Options{Kind: k, Seed: 123, Batch: 2, Size: 4 * 64 * 64})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]float32, n.Len())
		if err := n.Initial(buf); err != nil {
			t.Fatal(err)
		}
		var sum, sq float64
		for _, v := range buf {
			sum += float64(v)
			sq += float64(v) * float64(v)
		}
		mean := sum / float64(len(buf))
		std := math.Sqrt(sq/float64(len(buf)) - mean*mean)
		t.Logf("%s: mean %.4f std %.4f", k, mean, std)
		if math.Abs(mean) > 0.02 || math.Abs(std-1) > 0.02 {
			t.Errorf("%s: mean %.4f std %.4f, want 0 and 1", k, mean, std)
		}
		if k != Comfy && slices.Equal(buf[:n.Len()/2], buf[n.Len()/2:]) {
			t.Errorf("%s: both images got the same noise", k)
		}
		step := make([]float32, n.Len())
		if err := n.Noise(0, step); err != nil {
			t.Fatal(err)
		}
		if slices.Equal(step, buf) {
			t.Errorf("%s: step noise equals the initial noise", k)
		}
	}
}

func TestNoiseErrors(t *testing.T) {
	bad := []Options{
		{Kind: "gpu", Batch: 1, Size: 16},
		{Kind: A1111, Batch: 0, Size: 16},
		{Kind: A1111, Batch: 1, Size: -1},
		{Kind: Comfy, Batch: 1 << 30, Size: 1 << 30},
		{Kind: Comfy, Batch: 2, Size: MaxElements},
	}
	for _, o := range bad {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	n, err := New(Options{Kind: A1111, Seed: 1, Batch: 1, Size: 16})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Noise(0, make([]float32, 16)); err == nil {
		t.Error("step noise before the initial noise accepted")
	}
	if err := n.Initial(make([]float32, 15)); err == nil {
		t.Error("short buffer accepted")
	}
	if err := n.Initial(make([]float32, 16)); err != nil {
		t.Fatal(err)
	}
	if err := n.Initial(make([]float32, 16)); !errors.Is(err, ErrInitialDrawn) {
		t.Errorf("second Initial: %v", err)
	}
	if err := n.Noise(0, make([]float32, 17)); err == nil {
		t.Error("long step buffer accepted")
	}
	if _, err := ParseKind("A1111"); err == nil {
		t.Error("ParseKind is case-sensitive by design: A1111 accepted")
	}
}

func BenchmarkRandn(b *testing.B) {
	const n = 1 * 4 * 128 * 128
	dst := make([]float32, n)
	b.Run("torch_cpu", func(b *testing.B) {
		b.SetBytes(n * 4)
		for b.Loop() {
			NewTorchCPU(42).Randn(dst)
		}
	})
	b.Run("a1111_philox", func(b *testing.B) {
		b.SetBytes(n * 4)
		for b.Loop() {
			NewPhilox(42).Randn(dst)
		}
	})
}
