package lora

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/runtime"
)

// BenchmarkDesign compares the ways a LoRA can enter a graph on a chain of
// square Linear layers (width C, N token rows), the shape of the UNet's
// transformer projections: no LoRA; the weight-space form W + up·down
// computed per run through nn.Param.Delta (cost C²·R per layer, whatever
// N); the activation-space form y = W x + up(down x) that the slots use
// (cost N·R·2C per layer plus an N×C add); and, to find where the weight
// form's cost comes from, the plain chain with its weights fed as inputs
// (not constants, so not prepacked). "r0" feeds empty factors, "r1" a zero
// rank-1 pair, as the slots do for layers no LoRA changes. The chain is
// also the experiment behind the package's memory finding: run it with
// C = 4096 and watch the weight form's resident set grow by a copy of all
// weights.
func BenchmarkDesign(b *testing.B) {
	env := nntest.Env(b)
	const layers, rounds = 16, 5
	variants := []struct {
		name string
		mode string
		r    int64
	}{
		{"plain", "", 0}, {"weight-r0", "weight", 0}, {"weight-r1", "weight", 1}, {"weight-r32", "weight", 32},
		{"act-r1", "act", 1}, {"act-r32", "act", 32}, {"dynamic-weight", "dynw", 0},
	}
	for _, shape := range []struct{ c, n int64 }{{640, 8192}, {1280, 2048}, {1280, 154}} {
		b.Run(fmt.Sprintf("C%d-N%d", shape.c, shape.n), func(b *testing.B) {
			// Sessions first, then interleaved rounds: the machine is
			// shared, and interleaving spreads other jobs' load evenly over
			// the variants; the minimum is the least disturbed figure.
			runs := make([]func() (time.Duration, time.Duration), len(variants))
			for i, v := range variants {
				runs[i] = chain(b, env, layers, shape.c, shape.n, v.mode, v.r)
			}
			best := make([]time.Duration, len(variants))
			bestCPU := make([]time.Duration, len(variants))
			for range b.N * rounds {
				for i, run := range runs {
					d, c := run()
					if best[i] == 0 || d < best[i] {
						best[i] = d
					}
					if bestCPU[i] == 0 || c < bestCPU[i] {
						bestCPU[i] = c
					}
				}
			}
			for i, v := range variants {
				b.ReportMetric(float64(best[i].Microseconds())/1e3, v.name+"-ms")
				b.ReportMetric(float64(bestCPU[i].Microseconds())/1e3, v.name+"-cpu-ms")
			}
		})
	}
}

func chain(b testing.TB, env *runtime.Env, layers int, c, n int64, mode string, r int64) func() (wall, cpu time.Duration) {
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(k int64, std float64) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
		return v
	}
	bld := nn.NewBuilder("chain", b.TempDir(), nn.BuildOptions{})
	x := nn.Input(bld, "x", nn.Fixed(n), nn.Fixed(c))
	in := map[string]runtime.Tensor{"x": runtime.F32(randn(n*c, 1), n, c)}
	var names []string
	for i := range layers {
		lin := nn.NewLinear(c, c, false)
		lin.Weight.Key = fmt.Sprintf("w%d", i)
		lin.Weight.Data = randn(c*c, 1/float64(c))
		down, up := fmt.Sprintf("down%d", i), fmt.Sprintf("up%d", i)
		if mode == "weight" || mode == "act" {
			in[down] = runtime.F32(randn(r*c, 0.01), r, c)
			in[up] = runtime.F32(randn(c*r, 0.01), c, r)
		}
		rank := nn.Dyn("r" + fmt.Sprint(i))
		switch mode {
		case "weight":
			lin.Weight.Delta = func(b *onnx.Builder) onnx.Value {
				return nn.Input(b, up, nn.Fixed(c), rank).MatMul(nn.Input(b, down, rank, nn.Fixed(c)))
			}
			x = lin.Forward(x)
		case "dynw":
			in[lin.Weight.Key] = runtime.F32(lin.Weight.Data, c, c)
			w := nn.Input(bld, lin.Weight.Key, nn.Fixed(c), nn.Fixed(c))
			x = bld.Node("FusedMatMul", onnx.MicrosoftDomain, []onnx.Value{x, w}, 1, onnx.AInt("transB", 1))[0]
		case "act":
			d := nn.Input(bld, down, rank, nn.Fixed(c))
			u := nn.Input(bld, up, nn.Fixed(c), rank)
			h := bld.Node("FusedMatMul", onnx.MicrosoftDomain, []onnx.Value{x, d}, 1, onnx.AInt("transB", 1))[0]
			lo := bld.Node("FusedMatMul", onnx.MicrosoftDomain, []onnx.Value{h, u}, 1, onnx.AInt("transB", 1))[0]
			x = lin.Forward(x).Add(lo)
		default:
			x = lin.Forward(x)
		}
		x = x.Tanh() // keeps values bounded, stands for the layers in between
	}
	nn.Output(bld, x, "y")
	model := bld.Model()
	for _, i := range model.Graph.Inputs {
		names = append(names, i.Name)
	}
	g := &nn.Graph{Name: "chain", Model: model, Inputs: names, Outputs: []string{"y"}}
	// One thread: CPU time then measures this graph's work alone, which
	// other jobs on the machine disturb far less than wall time.
	s, err := g.Session(env, runtime.SessionConfig{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.Run(context.Background(), in); err != nil {
		b.Fatal(err)
	}
	return func() (time.Duration, time.Duration) {
		t, c := time.Now(), cpuTime()
		if _, err := s.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		return time.Since(t), cpuTime() - c
	}
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
