package pngmeta

import (
	"bytes"
	"image"
	"testing"
)

// photoLike is the gradient with a deterministic ±8-level texture, so that
// it compresses about as a generated picture does (PNG of 1–2 MB at 1024²)
// rather than as a flat gradient (a few kB).
func photoLike(w, h int) *image.RGBA {
	img := gradient(w, h, 5)
	x := uint32(2463534242)
	for i := range img.Pix {
		if i%4 == 3 {
			continue
		}
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		img.Pix[i] = uint8(int(img.Pix[i]) + int(x%17) - 8)
	}
	return img
}

// BenchmarkEncode1024 encodes a 1024×1024 opaque RGB image with both
// metadata chunks.
func BenchmarkEncode1024(b *testing.B) {
	img := photoLike(1024, 1024)
	rc := sampleRecipe()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		out, err := EncodeBytes(img, rc)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size), "bytes/png")
}

// BenchmarkDecodeMetadata reads the chunks back from that file.
func BenchmarkDecodeMetadata(b *testing.B) {
	out, err := EncodeBytes(photoLike(1024, 1024), sampleRecipe())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(bytes.NewReader(out)); err != nil {
			b.Fatal(err)
		}
	}
}
