package clipvision

import (
	"context"
	"image"
	"math"
	"slices"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
)

const (
	encoderFile = "ipadapter/image-encoder-tiny.safetensors"
	encoderIO   = "ipadapter/image-encoder-tiny-io.safetensors"
)

// rawImages reads a U8 [N, H, W, 3] tensor of a golden io file as N opaque
// images.
func rawImages(t testing.TB, name string) []*image.NRGBA {
	t.Helper()
	f, err := safetensors.Open(nntest.Golden(t, encoderIO))
	if err != nil {
		t.Fatal(err)
	}
	tt, ok := f.Tensor(name)
	if !ok || tt.DType != safetensors.U8 || len(tt.Shape) != 4 || tt.Shape[3] != 3 {
		t.Fatalf("%s: want a U8 [N, H, W, 3] tensor, have %+v", name, tt)
	}
	raw, err := f.ReadRaw(name)
	if err != nil {
		t.Fatal(err)
	}
	n, h, w := int(tt.Shape[0]), int(tt.Shape[1]), int(tt.Shape[2])
	var out []*image.NRGBA
	for i := 0; i < n; i++ {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		src := raw[i*h*w*3:]
		for p := 0; p < h*w; p++ {
			copy(img.Pix[4*p:4*p+3], src[3*p:3*p+3])
			img.Pix[4*p+3] = 255
		}
		out = append(out, img)
	}
	return out
}

// stack concatenates preprocessed images into a [N, 3, S, S] batch.
func stack(t testing.TB, imgs []*image.NRGBA, size int) runtime.Tensor {
	t.Helper()
	var all []float32
	for _, img := range imgs {
		px, err := Preprocess(img, size)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, px...)
	}
	return runtime.F32(all, int64(len(imgs)), 3, int64(size), int64(size))
}

// TestPreprocessGolden checks the shortest-side resize against Pillow's
// bytes exactly and pixel_values against CLIPImageProcessor's, for the
// downscaled landscape images and the upscaled portrait one.
func TestPreprocessGolden(t *testing.T) {
	for _, tc := range []struct{ raw, resized, pixels string }{
		{"raw_uint8", "resized_uint8", "pixel_values"},
		{"raw_uint8_upscale", "resized_uint8_upscale", "pixel_values_upscale"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			imgs := rawImages(t, tc.raw)
			want := rawImages(t, tc.resized)
			for i, img := range imgs {
				b := img.Bounds()
				rw, rh := ResizedSize(b.Dx(), b.Dy(), 224)
				if wb := want[i].Bounds(); rw != wb.Dx() || rh != wb.Dy() {
					t.Fatalf("image %d: resized size %dx%d, Pillow's %dx%d", i, rw, rh, wb.Dx(), wb.Dy())
				}
				got := Resize(img, rw, rh)
				var diff, maxDiff int
				for p := range got.Pix {
					d := int(got.Pix[p]) - int(want[i].Pix[p])
					if d != 0 {
						diff++
						maxDiff = max(maxDiff, d, -d)
					}
				}
				t.Logf("image %d %dx%d → %dx%d: %d of %d bytes differ from Pillow, max %d levels", i, b.Dx(), b.Dy(), rw, rh, diff, len(got.Pix), maxDiff)
				if diff != 0 {
					t.Errorf("image %d: resize differs from Pillow's in %d bytes (max %d levels)", i, diff, maxDiff)
				}
			}
			want32 := nntest.IOTensor(t, nntest.Golden(t, encoderIO), tc.pixels)
			nntest.ExpectClose(t, tc.pixels, stack(t, imgs, 224), want32, 3e-7)
		})
	}
}

func openTiny(t testing.TB) (*Model, *nn.Weights) {
	t.Helper()
	w := nntest.OpenWeights(t, nntest.Golden(t, encoderFile))
	f := w.Files()[0]
	c, err := ConfigFor(f.Path, f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	return m, w
}

// TestEncoderGolden runs the tiny encoder from raw pixels (through this
// package's preprocessing) and on the all-zero normalised input.
func TestEncoderGolden(t *testing.T) {
	m, err := Open(nntest.Golden(t, encoderFile))
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	io := nntest.Golden(t, encoderIO)
	s, err := g.Session(nntest.Env(t), runtime.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := runSession(t, s, map[string]runtime.Tensor{InputPixels: stack(t, rawImages(t, "raw_uint8"), 224)})
	for _, name := range []string{OutputImageEmbeds, OutputPenultimate, OutputLastHidden, OutputPooled} {
		nntest.ExpectClose(t, name, out[name], nntest.IOTensor(t, io, name), 1e-4)
	}
	zeros := runtime.F32(make([]float32, 3*224*224), 1, 3, 224, 224)
	out = runSession(t, s, map[string]runtime.Tensor{InputPixels: zeros})
	nntest.ExpectClose(t, "zero image penultimate", out[OutputPenultimate], nntest.IOTensor(t, io, "zeros_penultimate_hidden_state"), 1e-4)
	nntest.ExpectClose(t, "zero image image_embeds", out[OutputImageEmbeds], nntest.IOTensor(t, io, "zeros_image_embeds"), 1e-4)
}

// TestPenultimateOnly builds the graph a plus adapter uses: without the
// last layer, same penultimate states.
func TestPenultimateOnly(t *testing.T) {
	m, _ := openTiny(t)
	full, err := m.Build(nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(nn.BuildOptions{}, OutputPenultimate)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Outputs, []string{OutputPenultimate}) {
		t.Fatalf("outputs %v", g.Outputs)
	}
	nf, np := len(full.Model.Graph.Nodes), len(g.Model.Graph.Nodes)
	t.Logf("nodes: all outputs %d, penultimate only %d", nf, np)
	if np >= nf {
		t.Errorf("the penultimate-only graph has %d nodes, the full one %d: the last layer was not left out", np, nf)
	}
	io := nntest.Golden(t, encoderIO)
	out := nntest.Run(t, g, map[string]runtime.Tensor{InputPixels: nntest.IOTensor(t, io, "pixel_values")})
	nntest.ExpectClose(t, "penultimate", out[OutputPenultimate], nntest.IOTensor(t, io, OutputPenultimate), 1e-4)
	if _, err := m.Build(nn.BuildOptions{}, "hidden_states"); err == nil {
		t.Error("an unknown output was accepted")
	}
}

// TestFloat16 builds the fp16 graph and runs it on CPU (ORT inserts the
// casts it lacks kernels for): the outputs must agree within 5e-2 of
// max|ref|, which proves the graph is well-typed for CUDA.
func TestFloat16(t *testing.T) {
	m, _ := openTiny(t)
	g, err := m.Build(nn.BuildOptions{Float16: true})
	if err != nil {
		t.Fatal(err)
	}
	io := nntest.Golden(t, encoderIO)
	out := nntest.Run(t, g, map[string]runtime.Tensor{InputPixels: nntest.IOTensor(t, io, "pixel_values")})
	for _, name := range []string{OutputImageEmbeds, OutputPenultimate} {
		want := nntest.IOTensor(t, io, name)
		var maxRef float64
		for _, v := range want.F32 {
			maxRef = math.Max(maxRef, math.Abs(float64(v)))
		}
		nntest.ExpectClose(t, name+" (fp16)", out[name], want, 5e-2*maxRef)
	}
}

func runSession(t testing.TB, s *runtime.Session, in map[string]runtime.Tensor) map[string]runtime.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return out
}
