package lora

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/unet"
	"github.com/pixery/pixery/engine/sdxl/vae"
)

// writeRandomLoRA writes a kohya-format LoRA of the given rank for every
// layer keep selects, F16 as Civitai files are: down ~ N(0, 1/fan_in), up
// ~ N(0, 0.01²), alpha = rank/2. Values depend only on seed and the name.
func writeRandomLoRA(tb testing.TB, path string, a *Arch, rank int64, seed uint64, keep func(*Layer) bool) {
	tb.Helper()
	var specs []safetensors.Spec
	var layers []*Layer
	for _, l := range a.Layers() {
		if keep(l) {
			layers = append(layers, l)
			specs = append(specs,
				safetensors.Spec{Name: l.Kohya + ".alpha", DType: safetensors.F16},
				safetensors.Spec{Name: l.Kohya + ".lora_down.weight", DType: safetensors.F16, Shape: l.DownShape(rank)},
				safetensors.Spec{Name: l.Kohya + ".lora_up.weight", DType: safetensors.F16, Shape: l.UpShape(rank)})
		}
	}
	w, err := safetensors.Create(path, specs, map[string]string{"ss_network_dim": fmt.Sprint(rank), "generator": "pixery lora benchmark"})
	if err != nil {
		tb.Fatal(err)
	}
	write := func(name string, n int64, std float64) {
		h := fnv.New64a()
		h.Write([]byte(name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(std * r.NormFloat64())
		}
		raw, _ := safetensors.EncodeFloat32(safetensors.F16, v)
		if err := w.Write(name, raw); err != nil {
			tb.Fatal(err)
		}
	}
	for _, l := range layers {
		raw, _ := safetensors.EncodeFloat32(safetensors.F16, []float32{float32(rank) / 2})
		if err := w.Write(l.Kohya+".alpha", raw); err != nil {
			tb.Fatal(err)
		}
		write(l.Kohya+".lora_down.weight", rank*l.fanIn(), 1/math.Sqrt(float64(l.fanIn())))
		write(l.Kohya+".lora_up.weight", l.Out*rank, 0.01)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// everything and kohyaDefault select layers for random LoRAs.
func everything(*Layer) bool     { return true }
func kohyaDefault(l *Layer) bool { return l.Default }

// peakRSS is the process's peak resident set (VmHWM) in bytes.
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

// variant is one way of running a UNet step, timed by interleaved rounds.
type variant struct {
	name string
	run  func() // one step
}

// interleave runs every variant once per round and reports each one's
// fastest wall time and CPU time. The machine is shared: interleaving
// spreads other jobs' load over the variants, and the minimum is the least
// disturbed figure; with one intra-op thread the CPU time is the step's
// own work.
func interleave(b *testing.B, rounds int, vs []variant) {
	best := make([]time.Duration, len(vs))
	bestCPU := make([]time.Duration, len(vs))
	for _, v := range vs {
		v.run() // warm-up: first runs plan memory for the shapes
	}
	for range b.N * rounds {
		for i, v := range vs {
			t, c := time.Now(), cpuTime()
			v.run()
			d, dc := time.Since(t), cpuTime()-c
			if best[i] == 0 || d < best[i] {
				best[i] = d
			}
			if bestCPU[i] == 0 || dc < bestCPU[i] {
				bestCPU[i] = dc
			}
		}
	}
	for i, v := range vs {
		b.ReportMetric(best[i].Seconds()*1e3, v.name+"-ms")
		b.ReportMetric(bestCPU[i].Seconds()*1e3, v.name+"-cpu-ms")
	}
}

// unetStepVariants builds, for a bound UNet, the graph without slots and
// the graph with every slot, and returns steps for: no slots; slots fed
// empty; slots with each LoRA set.
func unetStepVariants(b *testing.B, m *unet.Model, w *nn.Weights, a *Arch, in map[string]runtime.Tensor, sets map[string]Set) []variant {
	env := nntest.Env(b)
	sc := runtime.SessionConfig{Threads: 1}
	mk := func(slots *Slots) *runtime.Session {
		if slots != nil {
			if err := slots.Attach(sdxl.UNet, m); err != nil {
				b.Fatal(err)
			}
		} else if err := a.NewSlots(nil).Attach(sdxl.UNet, m); err != nil {
			b.Fatal(err)
		}
		g, err := m.Build(w, nn.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		s, err := g.Session(env, sc)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("session (%d inputs): %.1f s", len(g.Inputs), time.Since(t).Seconds())
		b.Cleanup(func() { s.Close() })
		return s
	}
	step := func(s *runtime.Session, feeds map[string]runtime.Tensor) func() {
		all := Feeds{sdxl.UNet: feeds}.With(sdxl.UNet, in)
		return func() {
			if _, err := s.Run(context.Background(), all); err != nil {
				b.Fatal(err)
			}
		}
	}
	slots := a.AllSlots()
	plain, slotted := mk(nil), mk(slots)
	empty, err := slots.Inputs(nil)
	if err != nil {
		b.Fatal(err)
	}
	vs := []variant{{"plain", step(plain, nil)}, {"slots-empty", step(slotted, empty[sdxl.UNet])}}
	for name, set := range sets {
		f, err := slots.Inputs(set)
		if err != nil {
			b.Fatal(err)
		}
		vs = append(vs, variant{"slots-" + name, step(slotted, f[sdxl.UNet])})
	}
	return vs
}

// BenchmarkTinyUNetStep: one step of the golden tiny UNet (batch 2, 16×24
// latent) without slots, with empty slots, and with the golden LoRA.
func BenchmarkTinyUNetStep(b *testing.B) {
	cfg := tinyConfigs(b)
	a := tinyArch(b)
	w := nntest.OpenWeights(b, nntest.Golden(b, "unet-tiny.safetensors"))
	m, err := unet.New(cfg.UNet)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		b.Fatal(err)
	}
	k := openGolden(b, a, kohyaTiny)
	vs := unetStepVariants(b, m, w, a, unetInputs(b, "timestep"), map[string]Set{
		"lora":   {{File: k, Scale: 0.8}},
		"2loras": {{File: k, Scale: 0.3}, {File: openGolden(b, a, peftTiny), Scale: 0.5}},
	})
	interleave(b, 20, vs)
}

// midConfigs is a mid-size SDXL: SDXL's widths, heads and context, one
// ResBlock per level and transformer depths 0/1/2 (575 M UNet parameters,
// 343 M of them in Linear layers); the text encoders and VAE are tiny.
func midConfigs(b *testing.B) sdxl.Configs {
	cfg := tinyConfigs(b)
	cfg.UNet = unet.SDXL()
	cfg.UNet.ResBlocks = 1
	cfg.UNet.Depth, cfg.UNet.UpDepth, cfg.UNet.MidDepth = []int{0, 1, 2}, []int{0, 1, 2}, 2
	cfg.VAE = vae.Config{InChannels: 3, OutChannels: 3, BlockOutChannels: []int64{8, 8}, LayersPerBlock: 1,
		LatentChannels: 4, NormGroups: 4, ScalingFactor: vae.DefaultScalingFactor}
	return cfg
}

// benchDir is where large benchmark files are kept between runs.
func benchDir(b *testing.B) string {
	d := filepath.Join(os.TempDir(), "pixery-bench")
	if err := os.MkdirAll(d, 0o755); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkMidUNetStep: one step of the mid-size UNet (random F16
// weights, written once to $TMPDIR/pixery-bench) at a 64×64 latent, batch 2
// (a 512² image with CFG): no slots, empty slots, a rank-32 LoRA on kohya's
// default layers, and a rank-32 LoRA on every layer plus a rank-16 one
// stacked. It needs about 8 GB and a few minutes, so it runs only with
// PIXERY_BENCH_LARGE=1.
func BenchmarkMidUNetStep(b *testing.B) {
	if os.Getenv("PIXERY_BENCH_LARGE") == "" {
		b.Skip("set PIXERY_BENCH_LARGE=1 (about 8 GB, minutes)")
	}
	cfg := midConfigs(b)
	path := filepath.Join(benchDir(b), "lora-mid-sdxl-f16.safetensors")
	if _, err := os.Stat(path); err != nil {
		if err := sdxl.WriteRandom(context.Background(), path, cfg, safetensors.F16, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	ck, err := sdxl.Open(path, cfg, sdxl.UNet)
	if err != nil {
		b.Fatal(err)
	}
	a, err := NewArch(cfg)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	open := func(name string, rank int64, seed uint64, keep func(*Layer) bool) *File {
		p := filepath.Join(dir, name)
		writeRandomLoRA(b, p, a, rank, seed, keep)
		f, err := a.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	def := open("default.safetensors", 32, 1, kohyaDefault)
	all := open("all.safetensors", 32, 2, everything)
	extra := open("extra.safetensors", 16, 3, kohyaDefault)
	in := map[string]runtime.Tensor{
		unet.InputSample:  runtime.F32(make([]float32, 2*4*64*64), 2, 4, 64, 64),
		unet.InputTime:    runtime.F32([]float32{500, 500}, 2),
		unet.InputContext: runtime.F32(make([]float32, 2*77*2048), 2, 77, 2048),
		unet.InputPooled:  runtime.F32(make([]float32, 2*1280), 2, 1280),
		unet.InputTimeIDs: runtime.F32([]float32{512, 512, 0, 0, 512, 512, 512, 512, 0, 0, 512, 512}, 2, 6),
	}
	vs := unetStepVariants(b, ck.UNet, ck.Weights, a, in, map[string]Set{
		"r32-default":       {{File: def, Scale: 0.8}},
		"r32-all+r16-2sets": {{File: all, Scale: 0.7}, {File: extra, Scale: 0.5}},
	})
	interleave(b, 3, vs)
	b.ReportMetric(peakRSS()/1e9, "peakRSS-GB")
}

// BenchmarkSwitch measures what changing the LoRA set costs on a resident
// model, in Go: opening a file (parse, map, read the factors as float32)
// and making a set's slot inputs. The session is untouched by a switch;
// its first Run with the new inputs is timed by BenchmarkFirstRunAfterSwitch.
// Full-size: a rank-32 kohya LoRA on every default layer of SDXL (UNet 722
// + text encoders 264 modules), F16, written to a temporary folder.
func BenchmarkSwitch(b *testing.B) {
	full, err := NewArch(sdxl.Default())
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "full-r32.safetensors")
	writeRandomLoRA(b, p, full, 32, 7, func(l *Layer) bool { return l.Default })
	st, _ := os.Stat(p)
	b.Logf("full-size rank-32 LoRA: %.0f MB", float64(st.Size())/1e6)
	tiny := tinyArch(b)
	for _, c := range []struct {
		name string
		a    *Arch
		path string
	}{{"tiny", tiny, nntest.Golden(b, kohyaTiny)}, {"full-r32", full, p}} {
		b.Run(c.name+"/open", func(b *testing.B) {
			for range b.N {
				if _, err := c.a.Open(c.path); err != nil {
					b.Fatal(err)
				}
			}
		})
		f, err := c.a.Open(c.path)
		if err != nil {
			b.Fatal(err)
		}
		slots := c.a.AllSlots()
		for _, s := range []struct {
			name string
			set  Set
		}{{"inputs-1lora", Set{{File: f, Scale: 0.8}}}, {"inputs-2loras", Set{{File: f, Scale: 0.3}, {File: f, Scale: 0.5}}}, {"inputs-none", nil}} {
			b.Run(c.name+"/"+s.name, func(b *testing.B) {
				for range b.N {
					if _, err := slots.Inputs(s.set); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFirstRunAfterSwitch: ONNX Runtime plans memory per set of
// input shapes, so the first Run after the LoRA set (and so the ranks)
// changes may cost more than later ones. Tiny UNet, alternating sets.
func BenchmarkFirstRunAfterSwitch(b *testing.B) {
	cfg := tinyConfigs(b)
	a := tinyArch(b)
	slots := a.AllSlots()
	s := session(b, tinyUNet(b, cfg, slots, nn.BuildOptions{}))
	k := openGolden(b, a, kohyaTiny)
	in := unetInputs(b, "timestep")
	sets := []Set{nil, {{File: k, Scale: 0.8}}, {{File: k, Scale: 0.3}, {File: k, Scale: 0.5}}}
	feeds := make([]map[string]runtime.Tensor, len(sets))
	for i, set := range sets {
		f, err := slots.Inputs(set)
		if err != nil {
			b.Fatal(err)
		}
		feeds[i] = f.With(sdxl.UNet, in)
	}
	var first, again time.Duration
	for i := range b.N {
		all := feeds[i%len(feeds)]
		t := time.Now()
		if _, err := s.Run(context.Background(), all); err != nil {
			b.Fatal(err)
		}
		first += time.Since(t)
		t = time.Now()
		if _, err := s.Run(context.Background(), all); err != nil {
			b.Fatal(err)
		}
		again += time.Since(t)
	}
	b.ReportMetric(first.Seconds()*1e3/float64(b.N), "first-ms")
	b.ReportMetric(again.Seconds()*1e3/float64(b.N), "second-ms")
}

// BenchmarkFeedTensors: what handing n slot inputs to a Run costs in
// itself: Session.Run wraps every input in an ONNX Runtime tensor and frees
// it afterwards. n = 1,588 is the full SDXL UNet with every slot (794
// layers); 528 is CLIP-G's.
func BenchmarkFeedTensors(b *testing.B) {
	nntest.Env(b)
	data := make([]float32, 32*1280)
	for _, n := range []int{528, 1588} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			vals := make([]*ort.Tensor[float32], n)
			for range b.N {
				for i := range vals {
					v, err := ort.NewTensor(ort.NewShape(32, 1280), data)
					if err != nil {
						b.Fatal(err)
					}
					vals[i] = v
				}
				for _, v := range vals {
					v.Destroy()
				}
			}
		})
	}
}

// BenchmarkFullUNet is the full-size measurement: the random SDXL
// checkpoint ($PIXERY_BENCH_CHECKPOINT or $TMPDIR/pixery-bench/
// sdxl-random-f16.safetensors, as the pipeline benchmarks use), UNet at a
// 64×64 latent, batch 2. One session at a time (each holds about 11 GB):
// first without slots, then with every slot, fed empty, then with a
// rank-32 LoRA on kohya's default layers; switching sets is timed as
// Inputs plus the first Run with them. Runs only with PIXERY_BENCH_LARGE=1
// and when nothing else big runs; PIXERY_BENCH_VARIANT=plain or slots runs
// one session only, so that the peak resident set is that session's.
func BenchmarkFullUNet(b *testing.B) {
	if os.Getenv("PIXERY_BENCH_LARGE") == "" {
		b.Skip("set PIXERY_BENCH_LARGE=1 (about 12 GB, 10+ minutes)")
	}
	path := os.Getenv("PIXERY_BENCH_CHECKPOINT")
	if path == "" {
		path = filepath.Join(benchDir(b), "sdxl-random-f16.safetensors")
	}
	if _, err := os.Stat(path); err != nil {
		b.Skipf("no full-size checkpoint at %s (pipeline's BenchmarkFullUNetLoad writes one)", path)
	}
	env := nntest.Env(b)
	a, err := NewArch(sdxl.Default())
	if err != nil {
		b.Fatal(err)
	}
	lp := filepath.Join(b.TempDir(), "full-r32.safetensors")
	writeRandomLoRA(b, lp, a, 32, 7, kohyaDefault)
	lp2 := filepath.Join(b.TempDir(), "full-r16-all.safetensors")
	writeRandomLoRA(b, lp2, a, 16, 8, everything)
	in := map[string]runtime.Tensor{
		unet.InputSample:  runtime.F32(make([]float32, 2*4*64*64), 2, 4, 64, 64),
		unet.InputTime:    runtime.F32([]float32{500, 500}, 2),
		unet.InputContext: runtime.F32(make([]float32, 2*77*2048), 2, 77, 2048),
		unet.InputPooled:  runtime.F32(make([]float32, 2*1280), 2, 1280),
		unet.InputTimeIDs: runtime.F32([]float32{512, 512, 0, 0, 512, 512, 512, 512, 0, 0, 512, 512}, 2, 6),
	}
	timed := func(name string, s *runtime.Session, feeds map[string]runtime.Tensor) {
		all := Feeds{sdxl.UNet: feeds}.With(sdxl.UNet, in)
		for i := range 2 {
			t, c := time.Now(), cpuTime()
			if _, err := s.Run(context.Background(), all); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s run %d: %.1f s (cpu %.1f s)", name, i, time.Since(t).Seconds(), (cpuTime() - c).Seconds())
		}
	}
	variants := map[string][]bool{"": {false, true}, "plain": {false}, "slots": {true}}[os.Getenv("PIXERY_BENCH_VARIANT")]
	for _, withSlots := range variants {
		ck, err := sdxl.Open(path, sdxl.Default(), sdxl.UNet)
		if err != nil {
			b.Fatal(err)
		}
		slots := a.NewSlots(nil)
		if withSlots {
			slots = a.AllSlots()
		}
		if err := slots.Attach(sdxl.UNet, ck.UNet); err != nil {
			b.Fatal(err)
		}
		g, err := ck.Build(sdxl.UNet, nn.BuildOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		s, err := g.Session(env, runtime.SessionConfig{})
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("slots %v: session with %d inputs in %.1f s, peak RSS %.2f GB", withSlots, len(g.Inputs), time.Since(t).Seconds(), peakRSS()/1e9)
		if !withSlots {
			timed("plain", s, nil)
			s.Close()
			continue
		}
		empty, err := slots.Inputs(nil)
		if err != nil {
			b.Fatal(err)
		}
		timed("slots, no LoRA", s, empty[sdxl.UNet])
		for _, c := range []struct {
			name string
			path string
		}{{"rank-32 default layers", lp}, {"rank-16 every layer", lp2}} {
			t := time.Now()
			f, err := a.Open(c.path)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			feeds, err := slots.Inputs(Set{{File: f, Scale: 0.8}})
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("switch to %s: open %.2f s, inputs %.2f s", c.name, t1.Sub(t).Seconds(), time.Since(t1).Seconds())
			timed(c.name, s, feeds[sdxl.UNet])
		}
		b.Logf("peak RSS %.2f GB", peakRSS()/1e9)
		s.Close()
	}
	b.ReportMetric(peakRSS()/1e9, "peakRSS-GB")
}
