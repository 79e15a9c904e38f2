package vae

import (
	"image"
	"image/color"
	"math"
	"testing"
)

// expected is the colour Preview should give a latent pixel, computed in
// float64 from the factors.
func expected(px [4]float64) color.RGBA {
	var rgb [3]uint8
	for k := range 3 {
		v := float64(latentRGBBias[k])
		for c := range 4 {
			v += px[c] * float64(latentRGB[c][k])
		}
		rgb[k] = uint8(math.Round(math.Min(math.Max((v+1)/2*255, 0), 255)))
	}
	return color.RGBA{rgb[0], rgb[1], rgb[2], 255}
}

func TestPreviewRows(t *testing.T) {
	// A 2×3 latent whose pixel (x, y) is a multiple of one channel's unit
	// vector, so each pixel decodes to one row of the matrix (plus bias).
	// H≠W and a different channel per pixel catch swapped axes and a
	// pixel-major layout.
	const h, w = 2, 3
	latent := make([]float32, 4*h*w)
	want := make([]color.RGBA, h*w)
	for i := range h * w {
		c, s := i%4, float32(1+i/4)
		latent[c*h*w+i] = s
		var px [4]float64
		px[c] = float64(s)
		want[i] = expected(px)
	}
	img := Preview(latent, h, w)
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("preview is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	seen := map[color.RGBA]bool{}
	for i := range h * w {
		got := img.At(i%w, i/w).(color.RGBA)
		if got != want[i] {
			t.Errorf("pixel (%d,%d): %v, want %v", i%w, i/w, got, want[i])
		}
		seen[got] = true
	}
	if len(seen) < 4 {
		t.Errorf("only %d distinct colours for four different matrix rows", len(seen))
	}
}

func TestPreviewValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		px   [4]float32
		want color.RGBA
	}{
		// Channel 0's row is positive in R, G and B; the rest is clamped.
		{"clamp high", [4]float32{100, 0, 0, 0}, color.RGBA{255, 255, 255, 255}},
		{"clamp low", [4]float32{-100, 0, 0, 0}, color.RGBA{0, 0, 0, 255}},
		{"NaN", [4]float32{float32(math.NaN()), 0, 0, 0}, color.RGBA{0, 0, 0, 255}},
		{"mixed", [4]float32{0.5, -1, 2, 0.25}, expected([4]float64{0.5, -1, 2, 0.25})},
		{"zero latent is the bias", [4]float32{}, expected([4]float64{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := Preview(tc.px[:], 1, 1)
			if got := img.At(0, 0).(color.RGBA); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPreviewBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		latent []float32
		h, w   int
	}{
		{"short", make([]float32, 4*2*2-1), 2, 2},
		{"zero height", make([]float32, 16), 0, 4},
		{"negative width", make([]float32, 16), 2, -2},
		{"overflowing size", make([]float32, 16), math.MaxInt32, math.MaxInt32},
		{"nil", nil, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b := Preview(tc.latent, tc.h, tc.w).Bounds(); b != (image.Rectangle{}) {
				t.Errorf("bounds %v, want empty", b)
			}
		})
	}
	// A batch gives the first image's preview.
	batch := make([]float32, 2*4)
	batch[4] = 100 // second image, channel 0
	if got := Preview(batch, 1, 1).At(0, 0).(color.RGBA); got != expected([4]float64{}) {
		t.Errorf("batch: %v, want the first image's colour", got)
	}
}
