package pipeline

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/lora"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// Full-size benchmarks need an SDXL-size checkpoint. They use
// $PIXERY_BENCH_CHECKPOINT, or write a random one (seed 1, f16, 6.9 GB) to
// $TMPDIR/pixery-bench once and reuse it.
func fullCheckpoint(b *testing.B) string {
	if p := os.Getenv("PIXERY_BENCH_CHECKPOINT"); p != "" {
		return p
	}
	p := filepath.Join(os.TempDir(), "pixery-bench", "sdxl-random-f16.safetensors")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	b.Logf("writing a random SDXL checkpoint to %s (once)", p)
	if err := sdxl.WriteRandom(context.Background(), p, sdxl.Default(), safetensors.F16, 1, nil); err != nil {
		b.Fatal(err)
	}
	return p
}

// peakRSS reads the process's peak resident set (VmHWM) in bytes.
func peakRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(sc.Text())[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// BenchmarkFullUNetLoad measures opening the checkpoint, building the
// UNet graph and creating its CPU session (f16 weights cast to f32).
func BenchmarkFullUNetLoad(b *testing.B) {
	path := fullCheckpoint(b)
	env := nntest.Env(b)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ck, err := sdxl.Open(path, sdxl.Default(), sdxl.UNet)
		if err != nil {
			b.Fatal(err)
		}
		g, err := ck.Build(sdxl.UNet, nn.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		s, err := g.Session(env, runtime.SessionConfig{})
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		s.Close()
		b.ReportMetric(t1.Sub(t0).Seconds(), "build-s")
		b.ReportMetric(t2.Sub(t1).Seconds(), "session-s")
	}
	b.ReportMetric(peakRSS()/1e9, "peakRSS-GB")
}

// BenchmarkFullUNetStep runs one UNet evaluation at a 64×64 latent
// (512×512 image), batch 2 (classifier-free guidance), on CPU.
func BenchmarkFullUNetStep(b *testing.B) {
	path := fullCheckpoint(b)
	env := nntest.Env(b)
	ck, err := sdxl.Open(path, sdxl.Default(), sdxl.UNet)
	if err != nil {
		b.Fatal(err)
	}
	g, err := ck.Build(sdxl.UNet, nn.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := g.Session(env, runtime.SessionConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	in := map[string]runtime.Tensor{
		unet.InputSample:  runtime.F32(make([]float32, 2*4*64*64), 2, 4, 64, 64),
		unet.InputTime:    runtime.F32([]float32{500, 500}, 2),
		unet.InputContext: runtime.F32(make([]float32, 2*77*2048), 2, 77, 2048),
		unet.InputPooled:  runtime.F32(make([]float32, 2*1280), 2, 1280),
		unet.InputTimeIDs: runtime.F32([]float32{512, 512, 0, 0, 512, 512, 512, 512, 0, 0, 512, 512}, 2, 6),
	}
	if _, err := s.Run(context.Background(), in); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(peakRSS()/1e9, "peakRSS-GB")
}

// BenchmarkReadFile reads the checkpoint once, the floor for a cold load.
func BenchmarkReadFile(b *testing.B) {
	path := fullCheckpoint(b)
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}

// BenchmarkPipelineOverhead measures what the pipeline adds per step above
// the UNet session's own Run time (tokenising, encoding, CFG arithmetic,
// sampler, copies), on the tiny model: 20 steps, CFG, batch 1.
func BenchmarkPipelineOverhead(b *testing.B) {
	m := tinyModel(b)
	req := Request{Prompt: "1girl, solo, masterpiece", NegativePrompt: "lowres", Width: 192, Height: 128, Steps: 20, CFG: 5, Sampler: "euler_a", Batch: 1}
	var sample, unetRun time.Duration
	for i := 0; i < b.N; i++ {
		res, err := m.Generate(context.Background(), req, nil)
		if err != nil {
			b.Fatal(err)
		}
		sample += res.SampleTime
		unetRun += res.UNetRunTime
	}
	b.ReportMetric(100*float64(sample-unetRun)/float64(unetRun), "overhead-%")
	b.ReportMetric(float64(sample-unetRun)/float64(b.N*req.Steps)/1e3, "overhead-µs/step")
}

// BenchmarkFullPipelineLoad loads all four networks of a full-size
// checkpoint (a cold load: what a model switch costs when the model is not
// resident), to compare with BenchmarkReadFile.
func BenchmarkFullPipelineLoad(b *testing.B) {
	path := fullCheckpoint(b)
	env := nntest.Env(b)
	for i := 0; i < b.N; i++ {
		m, err := Load(context.Background(), env, path, LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(m.LoadTime.Seconds(), "load-s")
		m.Close()
	}
	b.ReportMetric(peakRSS()/1e9, "peakRSS-GB")
}

// BenchmarkFullUNetLoadLoRASlots is BenchmarkFullUNetLoad with LoRA slots
// on every layer, as the service loads models.
func BenchmarkFullUNetLoadLoRASlots(b *testing.B) {
	path := fullCheckpoint(b)
	env := nntest.Env(b)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ck, err := sdxl.Open(path, sdxl.Default(), sdxl.UNet)
		if err != nil {
			b.Fatal(err)
		}
		arch, err := lora.NewArch(sdxl.Default())
		if err != nil {
			b.Fatal(err)
		}
		if err := arch.AllSlots().Attach(sdxl.UNet, ck.UNet); err != nil {
			b.Fatal(err)
		}
		g, err := ck.Build(sdxl.UNet, nn.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		s, err := g.Session(env, runtime.SessionConfig{})
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		s.Close()
		b.ReportMetric(t1.Sub(t0).Seconds(), "build-s")
		b.ReportMetric(t2.Sub(t1).Seconds(), "session-s")
		b.ReportMetric(float64(len(g.Inputs)), "inputs")
	}
	b.ReportMetric(peakRSS()/1e9, "peakRSS-GB")
}
