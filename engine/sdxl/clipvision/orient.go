package clipvision

import (
	"encoding/binary"
	"image"
)

// jpegOrientation returns the EXIF orientation (1…8) a JPEG file declares
// in its APP1 segment, or 1 when it declares none or the EXIF data is
// unreadable (a photo is then used as stored, never rejected).
func jpegOrientation(data []byte) int {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return 1
	}
	for p := 2; p+4 <= len(data); {
		if data[p] != 0xFF {
			return 1
		}
		marker := data[p+1]
		switch {
		case marker == 0xFF: // fill byte
			p++
			continue
		case marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8):
			p += 2
			continue
		case marker == 0xDA || marker == 0xD9: // image data follows: no more metadata
			return 1
		}
		n := int(binary.BigEndian.Uint16(data[p+2:]))
		if n < 2 || p+2+n > len(data) {
			return 1
		}
		seg := data[p+4 : p+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		p += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 of IFD0 of an EXIF TIFF structure.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	ifd := int(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > len(t) {
		return 1
	}
	for i := range int(bo.Uint16(t[ifd:])) {
		e := ifd + 2 + 12*i
		if e+12 > len(t) {
			return 1
		}
		if bo.Uint16(t[e:]) == 0x0112 && bo.Uint16(t[e+2:]) == 3 { // SHORT
			if o := int(bo.Uint16(t[e+8:])); o >= 1 && o <= 8 {
				return o
			}
			return 1
		}
	}
	return 1
}

// orient turns img upright as PIL's ImageOps.exif_transpose does for an
// EXIF orientation (2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate
// 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise). The result
// is opaque RGB: Preprocess drops alpha anyway.
func orient(img image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := image.NewNRGBA(image.Rect(0, 0, ow, oh))
	rows := rgbRows(img)
	row := make([]uint8, 3*w)
	for y := 0; y < h; y++ {
		rows(y, row)
		for x := 0; x < w; x++ {
			// Where source pixel (x, y) lands.
			var dx, dy int
			switch o {
			case 2:
				dx, dy = w-1-x, y
			case 3:
				dx, dy = w-1-x, h-1-y
			case 4:
				dx, dy = x, h-1-y
			case 5:
				dx, dy = y, x
			case 6:
				dx, dy = h-1-y, x
			case 7:
				dx, dy = h-1-y, w-1-x
			case 8:
				dx, dy = y, w-1-x
			}
			p := out.PixOffset(dx, dy)
			out.Pix[p], out.Pix[p+1], out.Pix[p+2], out.Pix[p+3] = row[3*x], row[3*x+1], row[3*x+2], 255
		}
	}
	return out
}
