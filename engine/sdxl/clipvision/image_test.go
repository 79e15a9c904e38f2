package clipvision

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"slices"
	"strings"
	"testing"
)

// pattern is a 61×47 RGBA test image whose left third is fully
// transparent but keeps a colour, as exported PNGs often do.
func pattern() *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 61, 47))
	for y := 0; y < 47; y++ {
		for x := 0; x < 61; x++ {
			a := uint8(255)
			if x < 20 {
				a = 0
			} else if x < 30 {
				a = 128
			}
			img.SetNRGBA(x, y, color.NRGBA{uint8(4 * x), uint8(5 * y), uint8(x * y), a})
		}
	}
	return img
}

func opaque(img *image.NRGBA) *image.NRGBA {
	out := image.NewNRGBA(img.Bounds())
	copy(out.Pix, img.Pix)
	for i := 3; i < len(out.Pix); i += 4 {
		out.Pix[i] = 255
	}
	return out
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bitWriter packs bits least significant first, as VP8L reads them.
type bitWriter struct {
	buf   []byte
	nbits uint
}

func (w *bitWriter) write(v uint32, n uint) {
	for i := uint(0); i < n; i++ {
		if w.nbits%8 == 0 {
			w.buf = append(w.buf, 0)
		}
		w.buf[len(w.buf)-1] |= byte((v>>i)&1) << (w.nbits % 8)
		w.nbits++
	}
}

// losslessWebP encodes an image whose every channel takes at most two
// values as a VP8L (lossless WebP) file: no transforms, no colour cache,
// and a "simple" prefix code of one or two 8-bit symbols per channel.
func losslessWebP(t *testing.T, img *image.NRGBA) []byte {
	t.Helper()
	b := img.Bounds()
	var w bitWriter
	w.write(0x2f, 8)
	w.write(uint32(b.Dx()-1), 14)
	w.write(uint32(b.Dy()-1), 14)
	w.write(1, 1) // alpha used
	w.write(0, 3) // version
	w.write(0, 1) // no transform
	w.write(0, 1) // no colour cache
	w.write(0, 1) // no meta prefix codes
	// VP8L's channel order: green, red, blue, alpha (then distance).
	order := []int{1, 0, 2, 3}
	var symbols [4][]uint8
	for _, c := range order {
		for i := c; i < len(img.Pix); i += 4 {
			if !slices.Contains(symbols[c], img.Pix[i]) {
				symbols[c] = append(symbols[c], img.Pix[i])
			}
		}
		if len(symbols[c]) > 2 {
			t.Fatalf("channel %d has %d values; this encoder takes two", c, len(symbols[c]))
		}
		w.write(1, 1) // simple code
		w.write(uint32(len(symbols[c])-1), 1)
		w.write(1, 1) // 8-bit first symbol
		for _, s := range symbols[c] {
			w.write(uint32(s), 8)
		}
	}
	w.write(1, 1) // distance code: one symbol, 0
	w.write(0, 1)
	w.write(0, 1)
	w.write(0, 1)
	for p := 0; p < len(img.Pix); p += 4 {
		for _, c := range order {
			if len(symbols[c]) == 2 {
				w.write(uint32(slices.Index(symbols[c], img.Pix[p+c])), 1)
			}
		}
	}
	data := w.buf
	chunk := append([]byte("VP8L"), binary.LittleEndian.AppendUint32(nil, uint32(len(data)))...)
	chunk = append(chunk, data...)
	if len(data)%2 == 1 {
		chunk = append(chunk, 0)
	}
	out := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(4+len(chunk)))...)
	return append(append(out, "WEBP"...), chunk...)
}

// TestAlphaDropped checks that transparency is dropped, not composited, as
// Pillow's convert("RGB") does, for PNG, paletted PNG and WebP input.
func TestAlphaDropped(t *testing.T) {
	img := pattern()
	two := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			c := color.NRGBA{200, 10, 50, 255}
			if (x/5+y/5)%2 == 0 {
				c = color.NRGBA{30, 220, 90, 0} // transparent, keeps its colour
			}
			two.SetNRGBA(x, y, c)
		}
	}
	pal := image.NewPaletted(image.Rect(0, 0, 40, 30), color.Palette{color.NRGBA{200, 10, 50, 255}, color.NRGBA{30, 220, 90, 0}})
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			if (x/5+y/5)%2 == 0 {
				pal.SetColorIndex(x, y, 1)
			}
		}
	}
	for _, tc := range []struct {
		name string
		file []byte
		want *image.NRGBA
	}{
		{"png", encodePNG(t, img), img},
		{"paletted png", encodePNG(t, pal), two},
		{"webp", losslessWebP(t, two), two},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, err := DecodeImage(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Preprocess(dec, 224)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Preprocess(opaque(tc.want), 224)
			if !slices.Equal(got, want) {
				t.Error("preprocessing the image with alpha differs from preprocessing its colours alone")
			}
			// Compositing on black would change the transparent pixels: the
			// check above is not vacuous.
			black := opaque(tc.want)
			for i := 0; i < len(black.Pix); i += 4 {
				if tc.want.Pix[i+3] == 0 {
					black.Pix[i], black.Pix[i+1], black.Pix[i+2] = 0, 0, 0
				}
			}
			if other, _ := Preprocess(black, 224); slices.Equal(got, other) {
				t.Error("the test image's transparent pixels make no difference")
			}
		})
	}
}

// TestRowFastPaths checks each decoder type's fast row conversion against
// the generic per-pixel path.
func TestRowFastPaths(t *testing.T) {
	src := opaque(pattern())
	var jbuf bytes.Buffer
	if err := jpeg.Encode(&jbuf, src, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	ycc, err := DecodeImage(jbuf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ycc.(*image.YCbCr); !ok {
		t.Fatalf("JPEG decoded as %T", ycc)
	}
	gray := image.NewGray(src.Bounds())
	pal := image.NewPaletted(src.Bounds(), palette.Plan9)
	nycc := image.NewNYCbCrA(src.Bounds(), image.YCbCrSubsampleRatio420)
	for y := 0; y < 47; y++ {
		for x := 0; x < 61; x++ {
			c := src.NRGBAAt(x, y)
			gray.SetGray(x, y, color.Gray{c.R})
			pal.Set(x, y, c)
			yy, cb, cr := color.RGBToYCbCr(c.R, c.G, c.B)
			nycc.Y[nycc.YOffset(x, y)] = yy
			nycc.Cb[nycc.COffset(x, y)], nycc.Cr[nycc.COffset(x, y)] = cb, cr
			nycc.A[nycc.AOffset(x, y)] = uint8(x)
		}
	}
	sub := src.SubImage(image.Rect(3, 5, 40, 30))
	for _, img := range []image.Image{src, sub, ycc, gray, pal, nycc, image.NewRGBA64(image.Rect(0, 0, 7, 3))} {
		b := img.Bounds()
		rows := rgbRows(img)
		got := make([]uint8, 3*b.Dx())
		for y := 0; y < b.Dy(); y++ {
			rows(y, got)
			for x := 0; x < b.Dx(); x++ {
				want := rgbOf(img.At(b.Min.X+x, b.Min.Y+y))
				if !slices.Equal(got[3*x:3*x+3], want[:]) {
					t.Fatalf("%T at (%d,%d): fast path %v, generic %v", img, x, y, got[3*x:3*x+3], want)
				}
			}
		}
	}
	// The generic path keeps the stored colour of non-premultiplied pixels.
	if c := rgbOf(color.NRGBA{30, 220, 90, 0}); c != [3]uint8{30, 220, 90} {
		t.Errorf("transparent NRGBA gave %v", c)
	}
}

// pngHeader is a PNG signature and IHDR claiming w×h, with no image data.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA
	chunk := append([]byte("IHDR"), ihdr...)
	out := []byte("\x89PNG\r\n\x1a\n")
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)))
	out = append(out, chunk...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
}

func TestBadImages(t *testing.T) {
	good := encodePNG(t, pattern())
	var gbuf bytes.Buffer
	if err := gif.Encode(&gbuf, pattern(), nil); err != nil {
		t.Fatal(err)
	}
	strip := encodePNG(t, image.NewNRGBA(image.Rect(0, 0, 1, 5000)))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a PNG, JPEG or WebP image"},
		{"text", []byte("definitely not an image"), "not a PNG, JPEG or WebP image"},
		{"truncated png", good[:len(good)/2], "decode 61x47 png image"},
		{"gif", gbuf.Bytes(), "gif images are not accepted"},
		{"huge canvas", pngHeader(10000, 10000), "10000x10000 png image: at most 64000000 pixels"},
		{"extreme aspect", strip, "aspect ratio too extreme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := DecodeImage(tc.data)
			if err == nil {
				_, err = Preprocess(img, 224)
			}
			if err == nil || !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrImage containing %q", err, tc.want)
			}
		})
	}
}

// TestResizeIdentity checks Pillow's shortcut: no pass runs along an axis
// whose size does not change, so a 224×224 image is unchanged.
func TestResizeIdentity(t *testing.T) {
	src := opaque(pattern())
	if got := Resize(src, 61, 47); !slices.Equal(got.Pix, src.Pix) {
		t.Error("same-size resize changed the image")
	}
	// Only the width changes: every row is resampled on its own.
	wide := Resize(src, 100, 47)
	for y := 0; y < 47; y++ {
		row := image.NewNRGBA(image.Rect(0, 0, 61, 1))
		copy(row.Pix, src.Pix[y*src.Stride:(y+1)*src.Stride])
		if !slices.Equal(Resize(row, 100, 1).Pix, wide.Pix[y*wide.Stride:(y+1)*wide.Stride]) {
			t.Fatalf("row %d of a width-only resize depends on other rows", y)
		}
	}
}

// withOrientation inserts an EXIF APP1 segment declaring orientation o
// after a JPEG's SOI marker (TIFF in the given byte order).
func withOrientation(jpg []byte, o uint16, bigEndian bool) []byte {
	var bo binary.AppendByteOrder = binary.LittleEndian
	tiff := []byte("II")
	if bigEndian {
		bo, tiff = binary.BigEndian, []byte("MM")
	}
	tiff = bo.AppendUint16(tiff, 42)
	tiff = bo.AppendUint32(tiff, 8)
	tiff = bo.AppendUint16(tiff, 2) // two entries: a resolution tag, then orientation
	tiff = bo.AppendUint16(tiff, 0x011A)
	tiff = bo.AppendUint16(tiff, 5)
	tiff = bo.AppendUint32(tiff, 1)
	tiff = bo.AppendUint32(tiff, 0)
	tiff = bo.AppendUint16(tiff, 0x0112)
	tiff = bo.AppendUint16(tiff, 3)
	tiff = bo.AppendUint32(tiff, 1)
	tiff = bo.AppendUint16(tiff, o)
	tiff = bo.AppendUint16(tiff, 0)
	tiff = bo.AppendUint32(tiff, 0)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := append([]byte{0xFF, 0xE1}, binary.BigEndian.AppendUint16(nil, uint16(len(seg)+2))...)
	out := append([]byte{}, jpg[:2]...)
	out = append(append(out, app1...), seg...)
	return append(out, jpg[2:]...)
}

// TestEXIFOrientation checks that a JPEG's orientation is applied as
// PIL's exif_transpose applies it: for each orientation, where the
// stored image's corners end up.
func TestEXIFOrientation(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 48, 32))
	// Four flat quadrants, so JPEG's loss cannot move a corner's colour.
	quad := []color.NRGBA{{250, 0, 0, 255}, {0, 250, 0, 255}, {0, 0, 250, 255}, {250, 250, 250, 255}}
	for y := 0; y < 32; y++ {
		for x := 0; x < 48; x++ {
			src.SetNRGBA(x, y, quad[2*(y/16)+x/24])
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	plain, err := DecodeImage(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	corner := func(img image.Image, cx, cy int) int { // index of the quadrant colour nearest the corner
		b := img.Bounds()
		x, y := b.Min.X+2, b.Min.Y+2
		if cx == 1 {
			x = b.Max.X - 3
		}
		if cy == 1 {
			y = b.Max.Y - 3
		}
		c := rgbOf(img.At(x, y))
		best, bestD := -1, 1<<30
		for i, q := range quad {
			d := 0
			for k, v := range []uint8{q.R, q.G, q.B} {
				d += (int(c[k]) - int(v)) * (int(c[k]) - int(v))
			}
			if d < bestD {
				best, bestD = i, d
			}
		}
		return best
	}
	// Quadrants: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right of
	// the stored image; want lists the quadrant seen at the upright image's
	// top-left, top-right, bottom-left, bottom-right.
	for o, want := range map[uint16][4]int{
		1: {0, 1, 2, 3}, 2: {1, 0, 3, 2}, 3: {3, 2, 1, 0}, 4: {2, 3, 0, 1},
		5: {0, 2, 1, 3}, 6: {2, 0, 3, 1}, 7: {3, 1, 2, 0}, 8: {1, 3, 0, 2},
	} {
		for _, be := range []bool{false, true} {
			img, err := DecodeImage(withOrientation(buf.Bytes(), o, be))
			if err != nil {
				t.Fatal(err)
			}
			b := img.Bounds()
			if (o >= 5) != (b.Dx() == 32 && b.Dy() == 48) {
				t.Errorf("orientation %d: upright size %dx%d", o, b.Dx(), b.Dy())
			}
			got := [4]int{corner(img, 0, 0), corner(img, 1, 0), corner(img, 0, 1), corner(img, 1, 1)}
			if got != want {
				t.Errorf("orientation %d (big-endian %v): corners %v, want %v", o, be, got, want)
			}
			if o == 1 && !slices.Equal(img.(*image.YCbCr).Y, plain.(*image.YCbCr).Y) {
				t.Error("orientation 1 changed the image")
			}
		}
	}
	// Broken EXIF leaves the image as stored.
	broken := withOrientation(buf.Bytes(), 6, false)
	copy(broken[12:14], "XX") // not a TIFF byte order
	if img, err := DecodeImage(broken); err != nil || img.Bounds().Dx() != 48 {
		t.Errorf("broken EXIF: %v, %v", img.Bounds(), err)
	}
}
