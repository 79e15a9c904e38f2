package clipvision

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // the formats DecodeImage accepts
	_ "image/png"

	_ "golang.org/x/image/webp"
)

// MaxPixels bounds the size of an image DecodeImage will decode (64
// megapixels: 256 MB as 8-bit RGBA), so a small file announcing a huge
// canvas cannot exhaust memory.
const MaxPixels = 64_000_000

// Formats DecodeImage accepts, as image.DecodeConfig names them.
var Formats = []string{"png", "jpeg", "webp"}

// ErrImage marks a reference image that cannot be used (not an image, an
// unsupported format, corrupt or too large).
var ErrImage = errors.New("unusable reference image")

// DecodeImage decodes a PNG, JPEG or WebP file of any size and aspect up to
// MaxPixels. Alpha is kept in the result; Preprocess drops it as Pillow's
// convert("RGB") does. A JPEG's EXIF orientation is applied, as diffusers'
// load_image and ComfyUI's image loader do (ImageOps.exif_transpose), so a
// phone photo is encoded upright.
func DecodeImage(data []byte) (image.Image, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: not a PNG, JPEG or WebP image (%v)", ErrImage, err)
	}
	supported := false
	for _, f := range Formats {
		supported = supported || f == format
	}
	if !supported {
		return nil, fmt.Errorf("%w: %s images are not accepted (send PNG, JPEG or WebP)", ErrImage, format)
	}
	if cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d %s image: at most %d pixels", ErrImage, cfg.Width, cfg.Height, format, MaxPixels)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: decode %dx%d %s image: %v", ErrImage, cfg.Width, cfg.Height, format, err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, fmt.Errorf("%w: %s image decoded as %dx%d, header says %dx%d", ErrImage, format, b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	if format == "jpeg" {
		img = orient(img, jpegOrientation(data))
	}
	return img, nil
}

// CLIP's normalisation constants (CLIPImageProcessor defaults,
// ip-adapter.md §5).
var (
	Mean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	Std  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// ResizedSize is the size CLIPImageProcessor resizes a w×h image to: the
// shorter side becomes size and the longer int(size·long/short), truncated
// as transformers' get_resize_output_image_size truncates.
func ResizedSize(w, h, size int) (rw, rh int) {
	if w <= h {
		return size, int(float64(size) * float64(h) / float64(w))
	}
	return int(float64(size) * float64(w) / float64(h)), size
}

// maxResizedSide bounds the resized image a pathological aspect ratio could
// ask for (a 1×60,000,000 strip would become 224 × 13 billion): beyond
// it the center crop would be a sliver of a sliver.
const maxResizedSide = 1 << 20

// Preprocess turns an image into CLIP's pixel_values, [3, size, size]
// float32, as transformers' CLIPImageProcessor() computes them with Pillow:
// convert to RGB (alpha dropped, not composited), resize so the shorter
// side is size with Pillow's antialiased 8-bit bicubic, center-crop
// size×size, rescale by 1/255 in float64, then normalise in float32 with
// Mean and Std. Only the cropped window of the resize is computed; each
// output pixel depends only on its own filter taps, so the result is that
// of resizing the whole image and cropping.
func Preprocess(img image.Image, size int) ([]float32, error) {
	b := img.Bounds()
	if b.Dx() < 1 || b.Dy() < 1 {
		return nil, fmt.Errorf("%w: empty image", ErrImage)
	}
	rw, rh := ResizedSize(b.Dx(), b.Dy(), size)
	if rw > maxResizedSide || rh > maxResizedSide {
		return nil, fmt.Errorf("%w: %dx%d image: aspect ratio too extreme (its shorter side would be %d pixels and its longer %d)", ErrImage, b.Dx(), b.Dy(), size, max(rw, rh))
	}
	// transformers' center_crop: top and left are floored.
	top, left := (rh-size)/2, (rw-size)/2
	crop := resample(img, rw, rh, image.Rect(left, top, left+size, top+size))
	return Normalize(crop), nil
}

// Normalize rescales and normalises 8-bit RGB to CHW float32 as
// CLIPImageProcessor does: float32(float64(v)·(1/255)), then (x−mean)/std
// in float32.
func Normalize(img *image.NRGBA) []float32 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]float32, 3*w*h)
	var mean, std [3]float32
	copy(mean[:], Mean[:])
	copy(std[:], Std[:])
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := float32(float64(row[4*x+c]) * (1.0 / 255))
				out[c*w*h+y*w+x] = (v - mean[c]) / std[c]
			}
		}
	}
	return out
}

// Resize resizes img to w×h exactly as Pillow's Image.resize((w, h),
// BICUBIC, reducing_gap=None) does on img.convert("RGB"): separable
// passes, horizontal first through an 8-bit intermediate, Keys' cubic
// (a = −0.5) widened by the scale when shrinking, and Pillow's 22-bit
// fixed-point weights. The result is opaque.
func Resize(img image.Image, w, h int) *image.NRGBA {
	return resample(img, w, h, image.Rect(0, 0, w, h))
}

// precisionBits is Pillow's PRECISION_BITS for 8-bit images.
const precisionBits = 32 - 8 - 2

// taps are one axis' filter weights: output i reads inputs start[i] …
// start[i]+len(k[i])−1.
type taps struct {
	start []int
	k     [][]int32
}

// bicubic is Pillow's bicubic_filter with a = −0.5. The conversions force
// rounding after every product, so no platform fuses them into FMAs and
// the weights are Pillow's to the last bit.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		t := float64(float64((a+2)*x) - (a + 3))
		t = float64(float64(t*x) * x)
		return t + 1
	}
	if x < 2 {
		t := float64(float64(x-5) * x)
		t = float64(float64(t+8) * x)
		return float64((t - 4) * a)
	}
	return 0
}

// precompute is Pillow's precompute_coeffs followed by
// normalize_coeffs_8bpc, for outputs lo ≤ i < hi of an inSize → outSize
// resize.
func precompute(inSize, outSize, lo, hi int) taps {
	scale := float64(inSize) / float64(outSize)
	filterscale := max(scale, 1)
	support := 2 * filterscale
	ss := 1 / filterscale
	t := taps{start: make([]int, hi-lo), k: make([][]int32, hi-lo)}
	w := make([]float64, 0, 2*int(support)+3)
	for i := lo; i < hi; i++ {
		center := float64((float64(i) + 0.5) * scale)
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize)
		w = w[:0]
		ww := 0.0
		for x := xmin; x < xmax; x++ {
			v := bicubic(float64((float64(x) - center + 0.5) * ss))
			w = append(w, v)
			ww += v
		}
		k := make([]int32, len(w))
		for j, v := range w {
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[j] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[j] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		t.start[i-lo], t.k[i-lo] = xmin, k
	}
	return t
}

// clip8 is Pillow's clip8: the fixed-point sum shifted back to 8 bits and
// clamped.
func clip8(acc int64) uint8 {
	v := acc >> precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// resample computes the window win of the img → outW×outH resize (Pillow's
// ImagingResampleInner), as an opaque NRGBA image of win's size.
func resample(img image.Image, outW, outH int, win image.Rectangle) *image.NRGBA {
	b := img.Bounds()
	inW, inH := b.Dx(), b.Dy()
	rows := rgbRows(img)

	// Rows of the source the vertical pass reads.
	vert := taps{}
	needV := outH != inH
	y0, y1 := win.Min.Y, win.Max.Y
	if needV {
		vert = precompute(inH, outH, win.Min.Y, win.Max.Y)
		last := len(vert.start) - 1
		y0, y1 = vert.start[0], vert.start[last]+len(vert.k[last])
	}

	// Horizontal pass into an 8-bit intermediate of the window's columns
	// and the rows y0..y1 (Pillow rounds and clamps between the passes).
	cols := win.Dx()
	mid := make([]uint8, (y1-y0)*cols*3)
	src := make([]uint8, inW*3)
	if outW != inW {
		hor := precompute(inW, outW, win.Min.X, win.Max.X)
		for y := y0; y < y1; y++ {
			rows(y, src)
			dst := mid[(y-y0)*cols*3:]
			for i, k := range hor.k {
				s := src[hor.start[i]*3:]
				var r, g, bl int64 = 1 << (precisionBits - 1), 1 << (precisionBits - 1), 1 << (precisionBits - 1)
				for j, kj := range k {
					r += int64(s[3*j]) * int64(kj)
					g += int64(s[3*j+1]) * int64(kj)
					bl += int64(s[3*j+2]) * int64(kj)
				}
				dst[3*i], dst[3*i+1], dst[3*i+2] = clip8(r), clip8(g), clip8(bl)
			}
		}
	} else {
		for y := y0; y < y1; y++ {
			rows(y, src)
			copy(mid[(y-y0)*cols*3:(y-y0+1)*cols*3], src[win.Min.X*3:win.Max.X*3])
		}
	}

	out := image.NewNRGBA(image.Rect(0, 0, cols, win.Dy()))
	for yy := 0; yy < win.Dy(); yy++ {
		o := out.Pix[yy*out.Stride:]
		if !needV {
			m := mid[yy*cols*3:]
			for x := 0; x < cols; x++ {
				o[4*x], o[4*x+1], o[4*x+2], o[4*x+3] = m[3*x], m[3*x+1], m[3*x+2], 255
			}
			continue
		}
		k, start := vert.k[yy], vert.start[yy]-y0
		for x := 0; x < cols*3; x++ {
			acc := int64(1 << (precisionBits - 1))
			for j, kj := range k {
				acc += int64(mid[(start+j)*cols*3+x]) * int64(kj)
			}
			o[x/3*4+x%3] = clip8(acc)
		}
		for x := 0; x < cols; x++ {
			o[4*x+3] = 255
		}
	}
	return out
}

// rgbRows returns a function that fills dst with row y (relative to the
// bounds) of img as 8-bit RGB, dropping alpha without compositing, as
// Pillow's convert("RGB") does: a transparent pixel keeps the colour stored
// under it where the format keeps one (non-premultiplied NRGBA, WebP's
// NYCbCrA, paletted PNGs).
func rgbRows(img image.Image) func(y int, dst []uint8) {
	b := img.Bounds()
	w := b.Dx()
	switch m := img.(type) {
	case *image.NRGBA:
		return func(y int, dst []uint8) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				dst[3*x], dst[3*x+1], dst[3*x+2] = p[4*x], p[4*x+1], p[4*x+2]
			}
		}
	case *image.YCbCr:
		return func(y int, dst []uint8) {
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				dst[3*x], dst[3*x+1], dst[3*x+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
	case *image.NYCbCrA:
		return rgbRows(&m.YCbCr)
	case *image.Gray:
		return func(y int, dst []uint8) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				dst[3*x], dst[3*x+1], dst[3*x+2] = p[x], p[x], p[x]
			}
		}
	case *image.Paletted:
		pal := make([][3]uint8, len(m.Palette))
		for i, c := range m.Palette {
			pal[i] = rgbOf(c)
		}
		return func(y int, dst []uint8) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < w; x++ {
				var c [3]uint8
				if int(p[x]) < len(pal) {
					c = pal[p[x]]
				}
				dst[3*x], dst[3*x+1], dst[3*x+2] = c[0], c[1], c[2]
			}
		}
	}
	return func(y int, dst []uint8) {
		for x := 0; x < w; x++ {
			c := rgbOf(img.At(b.Min.X+x, b.Min.Y+y))
			dst[3*x], dst[3*x+1], dst[3*x+2] = c[0], c[1], c[2]
		}
	}
}

// rgbOf is one colour's 8-bit RGB with alpha dropped: the stored colour for
// non-premultiplied models, un-premultiplied otherwise (where a fully
// transparent premultiplied pixel has no colour left, black).
func rgbOf(c color.Color) [3]uint8 {
	switch c := c.(type) {
	case color.NRGBA:
		return [3]uint8{c.R, c.G, c.B}
	case color.NRGBA64:
		return [3]uint8{uint8(c.R >> 8), uint8(c.G >> 8), uint8(c.B >> 8)}
	case color.NYCbCrA:
		r, g, b := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
		return [3]uint8{r, g, b}
	case color.YCbCr:
		r, g, b := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
		return [3]uint8{r, g, b}
	case color.Gray:
		return [3]uint8{c.Y, c.Y, c.Y}
	case color.Gray16:
		return [3]uint8{uint8(c.Y >> 8), uint8(c.Y >> 8), uint8(c.Y >> 8)}
	}
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return [3]uint8{uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)}
}
