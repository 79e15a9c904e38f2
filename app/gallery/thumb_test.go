package gallery

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"testing"
	"time"
)

// patternImage has a horizontal red ramp, a vertical green ramp and 64-pixel
// blue blocks: a swapped axis, a shift or a wrong scale shows up as error.
func patternImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			b := uint8(40)
			if (x/64+y/64)%2 == 0 {
				b = 220
			}
			img.SetRGBA(x, y, color.RGBA{uint8(x * 255 / (w - 1)), uint8(y * 255 / (h - 1)), b, 255})
		}
	}
	return img
}

// areaAverage is the reference downscale: each target pixel is the mean of
// the source pixels its footprint covers (fractional edges weighted).
func areaAverage(src *image.RGBA, tw, th int) [][3]float64 {
	w, h := src.Rect.Dx(), src.Rect.Dy()
	sx, sy := float64(w)/float64(tw), float64(h)/float64(th)
	out := make([][3]float64, tw*th)
	for ty := 0; ty < th; ty++ {
		for tx := 0; tx < tw; tx++ {
			x0, x1 := float64(tx)*sx, float64(tx+1)*sx
			y0, y1 := float64(ty)*sy, float64(ty+1)*sy
			var sum [3]float64
			var wsum float64
			for y := int(y0); y < int(math.Ceil(y1)) && y < h; y++ {
				wy := math.Min(float64(y+1), y1) - math.Max(float64(y), y0)
				for x := int(x0); x < int(math.Ceil(x1)) && x < w; x++ {
					wx := math.Min(float64(x+1), x1) - math.Max(float64(x), x0)
					c := src.RGBAAt(x, y)
					sum[0] += wx * wy * float64(c.R)
					sum[1] += wx * wy * float64(c.G)
					sum[2] += wx * wy * float64(c.B)
					wsum += wx * wy
				}
			}
			for c := range sum {
				out[ty*tw+tx][c] = sum[c] / wsum
			}
		}
	}
	return out
}

func TestThumbnailAccuracy(t *testing.T) {
	s, dir, cache := openStore(t)
	ctx := context.Background()
	src := patternImage(832, 1216)
	writeAt(t, dir, "big.png", encodePNG(t, src), time.Time{})
	p, err := s.Thumbnail(ctx, "big.png")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	thumb, err := jpeg.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// 832×1216 fits 256 high: 832·256/1216 = 175.2 → 175 wide.
	tw, th := int(math.Round(832*256.0/1216)), 256
	if b := thumb.Bounds(); b.Dx() != tw || b.Dy() != th {
		t.Fatalf("thumbnail %v, want %dx%d", b, tw, th)
	}
	ref := areaAverage(src, tw, th)
	var sumErr, maxErr float64
	var interior, interiorMax float64
	n := 0
	for y := 0; y < th; y++ {
		for x := 0; x < tw; x++ {
			r, g, b, _ := thumb.At(x, y).RGBA()
			got := [3]float64{float64(r >> 8), float64(g >> 8), float64(b >> 8)}
			for c := range got {
				e := math.Abs(got[c] - ref[y*tw+x][c])
				sumErr += e
				maxErr = math.Max(maxErr, e)
				if c < 2 {
					interior += e // the ramps: no edges, so tight
					interiorMax = math.Max(interiorMax, e)
				}
			}
			n++
		}
	}
	mean := sumErr / float64(3*n)
	rampMean := interior / float64(2*n)
	t.Logf("JPEG thumbnail vs area average: mean |err| %.2f, max %.1f (of 255); ramps only: mean %.2f, max %.1f", mean, maxErr, rampMean, interiorMax)
	// JPEG's 4:2:0 chroma subsampling blurs the saturated blue block edges
	// into the other channels, hence the looser bounds here than on the
	// scaled image itself (TestScaleToFitAccuracy).
	if mean > 12 || rampMean > 6 || interiorMax > 40 {
		t.Errorf("thumbnail too far from the area-average reference")
	}

	// Cached: the same path, not rewritten.
	st1, _ := os.Stat(p)
	p2, err := s.Thumbnail(ctx, "big.png")
	st2, _ := os.Stat(p2)
	if err != nil || p2 != p || !st1.ModTime().Equal(st2.ModTime()) {
		t.Errorf("second call: %s %v", p2, err)
	}
	if len(p) <= len(cache) || p[:len(cache)] != cache {
		t.Errorf("thumbnail %s not in the cache folder %s", p, cache)
	}
	// A changed file gets a new thumbnail.
	writeAt(t, dir, "big.png", encodePNG(t, testImage(100, 50, 1)), time.Now().Add(time.Minute))
	p3, err := s.Thumbnail(ctx, "big.png")
	if err != nil || p3 == p {
		t.Fatalf("thumbnail after change: %s %v", p3, err)
	}
	if img := decodeJPEG(t, p3); img.Bounds().Dx() != 100 || img.Bounds().Dy() != 50 {
		t.Errorf("small image enlarged or cropped: %v", img.Bounds())
	}
}

func TestScaleToFitAccuracy(t *testing.T) {
	for _, size := range [][2]int{{832, 1216}, {1216, 832}, {1024, 1024}, {300, 200}, {513, 1027}} {
		src := patternImage(size[0], size[1])
		dst := scaleToFit(src, ThumbSize)
		tw, th := dst.Rect.Dx(), dst.Rect.Dy()
		if max(tw, th) != ThumbSize || math.Abs(float64(tw)/float64(th)-float64(size[0])/float64(size[1])) > 0.01 {
			t.Errorf("%v scaled to %dx%d", size, tw, th)
		}
		ref := areaAverage(src, tw, th)
		var sum, worst [3]float64
		for y := 0; y < th; y++ {
			for x := 0; x < tw; x++ {
				c := dst.RGBAAt(x, y)
				for k, v := range []uint8{c.R, c.G, c.B} {
					e := math.Abs(float64(v) - ref[y*tw+x][k])
					sum[k] += e
					worst[k] = math.Max(worst[k], e)
				}
			}
		}
		n := float64(tw * th)
		t.Logf("%dx%d → %dx%d: mean |err| R %.2f G %.2f B %.2f; max R %.1f G %.1f B %.1f",
			size[0], size[1], tw, th, sum[0]/n, sum[1]/n, sum[2]/n, worst[0], worst[1], worst[2])
		// The ramps have no edges: within two levels everywhere. The blue
		// blocks' edges are where a 4-tap filter differs most from a box.
		if worst[0] > 2 || worst[1] > 2 || sum[2]/n > 4 || worst[2] > 64 {
			t.Errorf("%v: scaled image too far from the area average", size)
		}
	}
}

func decodeJPEG(t *testing.T, p string) image.Image {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestThumbnailTransparentAndBad(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	trans := image.NewNRGBA(image.Rect(0, 0, 300, 300))
	for i := range trans.Pix {
		trans.Pix[i] = 0 // fully transparent
	}
	writeAt(t, dir, "clear.png", encodePNG(t, trans), time.Time{})
	p, err := s.Thumbnail(ctx, "clear.png")
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := decodeJPEG(t, p).At(128, 128).RGBA()
	if d := math.Abs(float64(r>>8)-0x80) + math.Abs(float64(g>>8)-0x80) + math.Abs(float64(b>>8)-0x80); d > 6 {
		t.Errorf("transparent image thumbnail pixel %d,%d,%d, want the grey background", r>>8, g>>8, b>>8)
	}

	// A header claiming 100000×100000 pixels: indexed (its metadata is
	// readable), but no thumbnail, and no attempt to allocate 40 GB.
	huge := makePNG(t, 16, 16, 1, tEXt("parameters", a1111Params(a1111Meta, 16, 16, "")))
	binary.BigEndian.PutUint32(huge[16:], 100000)
	binary.BigEndian.PutUint32(huge[20:], 100000)
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29]))
	writeAt(t, dir, "huge.png", huge, time.Time{})
	writeAt(t, dir, "trunc.png", trimEnd(encodePNG(t, testImage(64, 64, 1)), 30), time.Time{})
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if it, err := s.Get(ctx, "huge.png"); err != nil || it.Width != 100000 || it.Source != SourceA1111 {
		t.Errorf("huge.png indexed as %+v %v", it, err)
	}
	if _, err := s.Thumbnail(ctx, "huge.png"); err == nil {
		t.Error("thumbnail of a 10-gigapixel header succeeded")
	} else {
		t.Logf("huge: %v", err)
	}
	if _, err := s.Thumbnail(ctx, "trunc.png"); err == nil {
		t.Error("thumbnail of a truncated PNG succeeded")
	}
	if _, err := s.Thumbnail(ctx, "missing.png"); !errors.Is(err, ErrNotFound) {
		t.Errorf("thumbnail of a missing file: %v", err)
	}
}
