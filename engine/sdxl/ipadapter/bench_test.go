package ipadapter

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// BenchmarkTinyUNetStep is one step of the tiny golden UNet (batch 2,
// 16×24 latent) without the hook, and hooked: with no image tokens, one
// zero token (Hook.Off), the plain adapter's 4 tokens and the plus
// adapter's 16. The difference to the plain graph is the per-step cost of
// the adapter. Sessions run on one thread (ONNX Runtime then computes on
// the calling thread), and the variants run in turn, round after round,
// each run timed by its thread's CPU time: on a machine shared with other
// work the median of that is far steadier than wall time. The metrics are
// the medians in milliseconds.
func BenchmarkTinyUNetStep(b *testing.B) {
	io := nntest.Golden(b, unetIO)
	plain, _ := tinyUNetThreads(b, false, 1)
	hooked, h := tinyUNetThreads(b, true, 1)
	encode := func(adapter string) map[string]runtime.Tensor {
		c, err := loadTiny(b, adapter).Encode(context.Background(), rawImage(b, 0))
		if err != nil {
			b.Fatal(err)
		}
		in, err := c.Inputs(1, true, 0.6)
		if err != nil {
			b.Fatal(err)
		}
		return in
	}
	noTokens := map[string]runtime.Tensor{}
	for _, l := range h.Layers {
		noTokens[KeyInput(l.N)] = runtime.F32([]float32{}, 2, 0, l.Channels)
		noTokens[ValueInput(l.N)] = runtime.F32([]float32{}, 2, 0, l.Channels)
	}
	variants := []struct {
		name string
		s    *runtime.Session
		in   map[string]runtime.Tensor
	}{
		{"plain-graph", plain, unetInputs(b, io, nil)},
		{"hooked-0-tokens", hooked, unetInputs(b, io, noTokens)},
		{"hooked-off-1-zero-token", hooked, unetInputs(b, io, h.Off(2))},
		{"hooked-plain-4-tokens", hooked, unetInputs(b, io, encode(plainFile))},
		{"hooked-plus-16-tokens", hooked, unetInputs(b, io, encode(plusFile))},
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	cpu := make([][]float64, len(variants))
	for b.Loop() {
		for i, v := range variants {
			t0 := threadCPU()
			if _, err := v.s.Run(context.Background(), v.in); err != nil {
				b.Fatal(err)
			}
			cpu[i] = append(cpu[i], float64(threadCPU()-t0)/1e6)
		}
	}
	for i, v := range variants {
		slices.Sort(cpu[i])
		b.ReportMetric(cpu[i][len(cpu[i])/2], v.name+"-ms")
	}
}

// BenchmarkTinyEncode is a reference image's whole cost with the tiny
// models: preprocessing from a 400×300 image, the encoder and the
// projection (keys and values of every layer) for the image and its
// negative.
func BenchmarkTinyEncode(b *testing.B) {
	for _, adapter := range []string{plainFile, plusFile} {
		m := loadTiny(b, adapter)
		img := rawImage(b, 0)
		b.Run(string(m.Adapter.Kind), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Encode(context.Background(), img); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// threadCPU is the calling thread's user and system CPU time in
// nanoseconds.
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// rusageThread is Linux's RUSAGE_THREAD.
const rusageThread = 1

// writeRandomRows writes an F16 file of the rows with random values:
// matrices N(0, 1/fan_in), vectors near 0 (biases) or 1 (norm scales).
func writeRandomRows(tb testing.TB, path string, rows []row) {
	tb.Helper()
	specs := make([]safetensors.Spec, len(rows))
	for i, r := range rows {
		specs[i] = safetensors.Spec{Name: r.Name, DType: safetensors.F16, Shape: r.Shape}
	}
	w, err := safetensors.Create(path, specs, nil)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, r := range rows {
		n := int64(1)
		for _, d := range r.Shape {
			n *= d
		}
		vals := make([]float32, n)
		for i := range vals {
			switch {
			case len(r.Shape) >= 2:
				vals[i] = float32(rng.NormFloat64() / math.Sqrt(float64(r.Shape[len(r.Shape)-1])))
			case strings.HasSuffix(r.Name, ".weight"):
				vals[i] = 1
			default:
				vals[i] = float32(0.02 * rng.NormFloat64())
			}
		}
		raw, err := safetensors.EncodeFloat32(safetensors.F16, vals)
		if err != nil {
			tb.Fatal(err)
		}
		if err := w.Write(r.Name, raw); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSDXLProjectionRandom makes the full-size SDXL adapters with
// random F16 weights and runs their projection graphs (float32, CPU) on
// one image and its negative: the tokens and the keys and values of all 70
// layers, the per-image work besides the encoder.
func BenchmarkSDXLProjectionRandom(b *testing.B) {
	for _, tc := range []struct {
		file  string
		shape []int64
	}{{"ip-adapter_sdxl_vit-h", []int64{2, 1024}}, {"ip-adapter-plus_sdxl_vit-h", []int64{2, 257, 1280}}} {
		b.Run(tc.file, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), tc.file+".safetensors")
			writeRandomRows(b, path, adapterRows(tc.file))
			a, err := Open(path, unet.Config{})
			if err != nil {
				b.Fatal(err)
			}
			g, err := a.Build(nn.BuildOptions{})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			s, err := g.Session(nntest.Env(b), runtime.SessionConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			session := time.Since(start)
			n := int64(1)
			for _, d := range tc.shape {
				n *= d
			}
			feats := make([]float32, n)
			for i := range feats {
				feats[i] = float32(math.Sin(float64(i)))
			}
			in := map[string]runtime.Tensor{a.Input(): runtime.F32(feats, tc.shape...)}
			for b.Loop() {
				if _, err := s.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(session.Seconds(), "session-s")
		})
	}
}
