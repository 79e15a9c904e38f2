package clipvision

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

// photo is a w×h opaque test image with gradients and noise.
func photo(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := uint8(r.IntN(32))
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*255/w) ^ n, uint8(y*255/h) + n, uint8((x + y) % 256), 255})
		}
	}
	return img
}

// BenchmarkPreprocess is CLIPImageProcessor's work on images of common
// sizes: decode (JPEG, quality 90) and resize/crop/normalise.
func BenchmarkPreprocess(b *testing.B) {
	for _, sz := range []struct {
		name string
		w, h int
	}{{"1024x1024", 1024, 1024}, {"4000x3000", 4000, 3000}} {
		img := photo(sz.w, sz.h)
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
			b.Fatal(err)
		}
		b.Run("decode-jpeg-"+sz.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := DecodeImage(buf.Bytes()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("preprocess-"+sz.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Preprocess(img, 224); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTinyEncoder runs the tiny golden encoder on one image.
func BenchmarkTinyEncoder(b *testing.B) {
	m, _ := openTiny(b)
	g, err := m.Build(nn.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	s, err := g.Session(nntest.Env(b), runtime.SessionConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	px, _ := Preprocess(photo(640, 480), 224)
	in := map[string]runtime.Tensor{InputPixels: runtime.F32(px, 1, 3, 224, 224)}
	for b.Loop() {
		if _, err := s.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildFullSize builds the full-size graphs from header-only
// files (no session).
func BenchmarkBuildFullSize(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"ViT-H-14", ViTH14()}, {"ViT-bigG-14", ViTBigG14()}} {
		b.Run(tc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "model.safetensors")
			nntest.WriteHeaderOnly(b, path, hfVisionRows(tc.cfg), nil)
			m, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			var size int
			for b.Loop() {
				g, err := m.Build(nn.BuildOptions{Float16: true})
				if err != nil {
					b.Fatal(err)
				}
				size = len(g.Model.Marshal())
			}
			b.ReportMetric(float64(size), "model-bytes")
		})
	}
}

// writeRandom writes a checkpoint of random weights for the module tree:
// matrices N(0, 1/fan_in), norm scales 1, biases and embeddings small.
func writeRandom(tb testing.TB, path string, module any, dt safetensors.DType) {
	tb.Helper()
	var specs []safetensors.Spec
	if err := nn.Walk("", module, func(key string, p *nn.Param) {
		specs = append(specs, safetensors.Spec{Name: key, DType: dt, Shape: p.Shape})
	}); err != nil {
		tb.Fatal(err)
	}
	w, err := safetensors.Create(path, specs, nil)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	buf := make([]float32, 0, 1<<20)
	for _, s := range specs {
		n := int64(1)
		for _, d := range s.Shape {
			n *= d
		}
		std := 0.02
		switch {
		case len(s.Shape) >= 2:
			std = 1 / math.Sqrt(float64(n/s.Shape[0]))
		case strings.Contains(s.Name, "norm") || strings.Contains(s.Name, "layrnorm"):
			std = -1 // scale: ones
		}
		for done := int64(0); done < n; {
			m := min(int64(cap(buf)), n-done)
			buf = buf[:m]
			for i := range buf {
				if std < 0 {
					if strings.HasSuffix(s.Name, ".weight") {
						buf[i] = 1
					} else {
						buf[i] = 0
					}
					continue
				}
				buf[i] = float32(std * r.NormFloat64())
			}
			raw, err := safetensors.EncodeFloat32(dt, buf)
			if err != nil {
				tb.Fatal(err)
			}
			if err := w.WritePart(s.Name, raw); err != nil {
				tb.Fatal(err)
			}
			done += m
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkViTHRandom makes a full-size ViT-H/14 encoder of random F16
// weights, creates its float32 CPU session and encodes one image: the
// figures a plain or plus adapter's first use costs on this machine.
func BenchmarkViTHRandom(b *testing.B) {
	m, err := New(ViTH14())
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "model.safetensors")
	start := time.Now()
	writeRandom(b, path, m, safetensors.F16)
	b.Logf("random ViT-H/14 written in %v", time.Since(start))
	for _, out := range [][]string{{OutputImageEmbeds}, {OutputPenultimate}} {
		b.Run(out[0], func(b *testing.B) {
			m, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			g, err := m.Build(nn.BuildOptions{}, out...)
			if err != nil {
				b.Fatal(err)
			}
			build := time.Since(start)
			start = time.Now()
			s, err := g.Session(nntest.Env(b), runtime.SessionConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			session := time.Since(start)
			px, _ := Preprocess(photo(640, 480), 224)
			in := map[string]runtime.Tensor{InputPixels: runtime.F32(px, 1, 3, 224, 224)}
			for b.Loop() {
				res, err := s.Run(context.Background(), in)
				if err != nil {
					b.Fatal(err)
				}
				for _, v := range res[out[0]].F32 {
					if math.IsNaN(float64(v)) {
						b.Fatal("NaN output")
					}
				}
			}
			b.ReportMetric(build.Seconds(), "build-s")
			b.ReportMetric(session.Seconds(), "session-s")
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				b.ReportMetric(float64(ru.Maxrss)/(1<<20), "peak-rss-GB")
			}
		})
	}
}
