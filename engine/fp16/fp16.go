// Package fp16 converts between float32 and the two 16-bit floating-point
// formats found in model checkpoints: IEEE 754 binary16 ("half", F16) and
// bfloat16 (BF16).
//
// Widening (16 → 32 bits) is exact for every input. Narrowing (32 → 16 bits)
// rounds to nearest, ties to even, as IEEE 754 requires; values too large for
// the format become ±Inf and values too small become signed zeros or
// subnormals, correctly rounded.
//
// NaNs keep their sign and the top bits of their payload, and are not
// quietened: a signalling NaN stays signalling. That makes every one of the
// 65536 bit patterns of either format survive a round trip through float32
// unchanged, which matters when copying tensors that may hold NaN markers. A
// NaN whose payload would vanish when narrowed gets the quiet bit instead, so
// that it stays a NaN.
package fp16

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
)

// ToFloat32 returns the value of the IEEE binary16 number whose bits are h.
func ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN: keep the payload bits in place.
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // Normal: rebias the exponent from 15 to 127.
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: every one is a normal float32. Shift the mantissa up
	// until its leading one becomes the implicit bit.
	e := uint32(127 - 15 + 1)
	for man&0x400 == 0 {
		man <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (man&0x3ff)<<13)
}

// FromFloat32 returns the bits of the IEEE binary16 number nearest to f,
// rounding ties to even.
func FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man == 0 {
			return sign | 0x7c00
		}
		m := uint16(man >> 13)
		if m == 0 {
			m = 0x200
		}
		return sign | 0x7c00 | m
	}
	e := exp - 127 + 15 // biased half exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e >= 1 {
		// Normal range. A carry out of the mantissa bumps the exponent,
		// and a carry out of the largest exponent gives exactly Inf.
		return sign | roundShift(uint32(e)<<23|man, 13)
	}
	// Subnormal half or zero. Values below 2^-25 (half of the smallest
	// subnormal) round to zero; shifting by more than 24 bits would
	// overflow the rounding arithmetic, so stop early.
	if e < -10 {
		return sign
	}
	m := man
	if exp != 0 {
		m |= 0x800000
	}
	// The half mantissa is m × 2^(exp−126) when exp ≥ 1; float32 subnormals
	// (exp == 0) are far below the half range and were handled above.
	return sign | roundShift(m, uint(14-e))
}

// roundShift returns v >> s rounded to nearest, ties to even (1 ≤ s ≤ 24).
//
// Adding half−1 carries into the kept bits exactly when the dropped bits
// exceed one half; adding the lowest kept bit as well makes an exact half
// carry only when the kept part is odd. Being branch-free, this runs at the
// same speed on random data as on smooth data.
func roundShift(v uint32, s uint) uint16 {
	return uint16((v + (1<<(s-1) - 1) + (v>>s)&1) >> s)
}

// BF16ToFloat32 returns the value of the bfloat16 number whose bits are b.
// bfloat16 is the top half of a float32, so this is exact.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// BF16FromFloat32 returns the bits of the bfloat16 number nearest to f,
// rounding ties to even.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		h := uint16(b >> 16)
		if h&0x7f == 0 {
			h |= 0x40
		}
		return h
	}
	// Adding 0x7fff rounds up anything above the midpoint; the extra low bit
	// of the kept part turns an exact tie into a round-up only when that
	// would make the result even. Overflow lands on Inf, as it should.
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

var (
	f16TableOnce sync.Once
	f16Table     []float32
)

// table returns a lookup table from half bits to float32. It costs 256 KiB
// once, and makes bulk decoding several times faster than the bit fiddling of
// ToFloat32 (see the benchmarks).
func table() []float32 {
	f16TableOnce.Do(func() {
		t := make([]float32, 1<<16)
		for i := range t {
			t[i] = ToFloat32(uint16(i))
		}
		f16Table = t
	})
	return f16Table
}

func checkLen(op string, n16, nBytes int) {
	if nBytes != 2*n16 {
		panic(fmt.Sprintf("fp16.%s: %d bytes for %d values (want %d bytes)", op, nBytes, n16, 2*n16))
	}
}

// DecodeF16 converts little-endian binary16 values in src to float32 in dst.
// It panics unless len(src) == 2*len(dst): a mismatch is a programming error.
func DecodeF16(dst []float32, src []byte) {
	checkLen("DecodeF16", len(dst), len(src))
	t := table()
	for i := range dst {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
}

// EncodeF16 converts src to little-endian binary16 values in dst, rounding
// to nearest even. It panics unless len(dst) == 2*len(src).
func EncodeF16(dst []byte, src []float32) {
	checkLen("EncodeF16", len(src), len(dst))
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], FromFloat32(f))
	}
}

// DecodeBF16 converts little-endian bfloat16 values in src to float32 in dst.
// It panics unless len(src) == 2*len(dst).
func DecodeBF16(dst []float32, src []byte) {
	checkLen("DecodeBF16", len(dst), len(src))
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// EncodeBF16 converts src to little-endian bfloat16 values in dst, rounding
// to nearest even. It panics unless len(dst) == 2*len(src).
func EncodeBF16(dst []byte, src []float32) {
	checkLen("EncodeBF16", len(src), len(dst))
	for i, f := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], BF16FromFloat32(f))
	}
}
