package gallery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/image/draw"
	"golang.org/x/image/math/f64"
)

// ThumbSize is the longest side of a thumbnail, in pixels.
const ThumbSize = 256

// thumbQuality is the JPEG quality of thumbnails: small files, and no
// visible blocking at grid size.
const thumbQuality = 85

// thumbPath names the cached thumbnail of a file as it is now: the name
// hashes its ID, size and time, so a changed file gets a new thumbnail.
func (s *Store) thumbPath(id string, st fileStamp) string {
	h := sha256.Sum256([]byte(id + "\x00" + strconv.FormatInt(st.size, 10) + "\x00" + strconv.FormatInt(st.mtime, 10)))
	name := hex.EncodeToString(h[:12])
	return filepath.Join(s.cacheDir, thumbDir, name[:2], name+".jpg")
}

func (s *Store) removeThumb(id string, st fileStamp) {
	os.Remove(s.thumbPath(id, st))
}

// Thumbnail returns the path of a JPEG thumbnail of the image (at most
// ThumbSize pixels on its longer side), making it on first use and caching
// it in the cache folder.
func (s *Store) Thumbnail(ctx context.Context, id string) (string, error) {
	if err := s.check(ctx); err != nil {
		return "", err
	}
	p, err := s.pathOf(id)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if os.IsNotExist(err) {
		return "", fmt.Errorf("gallery: thumbnail: %w: %s", ErrNotFound, id)
	}
	if err != nil {
		return "", fmt.Errorf("gallery: thumbnail %s: %w", id, err)
	}
	tp := s.thumbPath(id, fileStamp{fi.Size(), mtimeNanos(fi.ModTime())})
	if _, err := os.Stat(tp); err == nil {
		return tp, nil
	}
	img, err := decodeImage(p)
	if err != nil {
		return "", fmt.Errorf("gallery: thumbnail %s: %w", id, err)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, scaleToFit(img, ThumbSize), &jpeg.Options{Quality: thumbQuality}); err != nil {
		return "", fmt.Errorf("gallery: thumbnail %s: encode: %w", id, err)
	}
	if err := writeCacheFile(tp, buf.Bytes()); err != nil {
		return "", fmt.Errorf("gallery: thumbnail %s: %w", id, err)
	}
	return tp, nil
}

// decodeImage decodes a PNG file, refusing sizes beyond maxPixels before
// allocating for them.
func decodeImage(p string) (image.Image, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, fmt.Errorf("image of %dx%d pixels is beyond the %d-pixel limit", cfg.Width, cfg.Height, maxPixels)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return img, nil
}

// writeCacheFile writes a cache file atomically (temporary file, rename):
// a reader never sees half a thumbnail, and two writers of the same
// thumbnail write the same bytes.
func writeCacheFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// thumbBackground is what transparent pixels are composed onto, since JPEG
// has no alpha: a neutral grey that reads on light and dark themes.
var thumbBackground = color.RGBA{0x80, 0x80, 0x80, 0xff}

// scaleToFit scales img to fit a box×box square, keeping its aspect ratio
// and never enlarging it. It halves the image with a 2×2 box filter while
// it is at least twice the target size, then finishes with Catmull-Rom:
// close to Catmull-Rom's quality on the whole image at a fraction of the
// cost for large reductions (832×1216 → 175×256), and free of the aliasing
// of bilinear sampling at such ratios.
func scaleToFit(img image.Image, box int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w > box || h > box {
		if w >= h {
			tw, th = box, max(1, (h*box+w/2)/w)
		} else {
			tw, th = max(1, (w*box+h/2)/h), box
		}
	}
	// Compose onto the background first: this also converts any pixel
	// format to RGBA, which the halving works on.
	src := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(src, src.Bounds(), &image.Uniform{thumbBackground}, image.Point{}, draw.Src)
	draw.Draw(src, src.Bounds(), img, b.Min, draw.Over)
	k := 0
	for src.Rect.Dx() >= 2*tw && src.Rect.Dy() >= 2*th {
		src = halve(src)
		k++
	}
	if tw<<k == w && th<<k == h {
		return src // the halvings hit the target exactly
	}
	// Pixel u of the halved image covers original pixels [u·2^k, (u+1)·2^k)
	// (halve pads odd sizes), so the final step maps it by 2^k·tw/w: an
	// exact mapping even where halving could not be.
	f := float64(int(1) << k)
	s2d := f64.Aff3{f * float64(tw) / float64(w), 0, 0, 0, f * float64(th) / float64(h), 0}
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	draw.CatmullRom.Transform(dst, s2d, src, src.Bounds(), draw.Src, nil)
	return dst
}

// halve averages each 2×2 block of src. An odd last row or column is
// averaged with itself, so the result covers the whole image.
func halve(src *image.RGBA) *image.RGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	w, h := (sw+1)/2, (sh+1)/2
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		r0 := src.Pix[(2*y)*src.Stride:]
		r1 := src.Pix[min(2*y+1, sh-1)*src.Stride:]
		out := dst.Pix[y*dst.Stride : y*dst.Stride+4*w]
		for x := 0; x < w; x++ {
			i, j := 8*x, 4*min(2*x+1, sw-1)
			for c := 0; c < 4; c++ {
				sum := uint32(r0[i+c]) + uint32(r0[j+c]) + uint32(r1[i+c]) + uint32(r1[j+c])
				out[4*x+c] = uint8((sum + 2) / 4)
			}
		}
	}
	return dst
}
