package fp16

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// format describes a 16-bit float format for the slow reference below, which
// works from the definition of the format rather than from bit tricks.
type format struct {
	name     string
	expBits  uint // exponent field width
	manBits  uint // stored mantissa width
	toF32    func(uint16) float32
	fromF32  func(float32) uint16
	infBits  uint16 // positive infinity
	maxFinit float64
}

var formats = []format{
	{"f16", 5, 10, ToFloat32, FromFloat32, 0x7c00, 65504},
	{"bf16", 8, 7, BF16ToFloat32, BF16FromFloat32, 0x7f80, (2 - math.Ldexp(1, -7)) * math.Ldexp(1, 127)},
}

// refValue computes the value of a bit pattern from the IEEE definition:
// (−1)^s × 2^(e−bias) × 1.m for normals, 2^(1−bias) × 0.m for subnormals.
// It returns ok=false for Inf and NaN.
func (f format) refValue(b uint16) (v float64, ok bool) {
	bias := int(1)<<(f.expBits-1) - 1
	e := int(b>>f.manBits) & (1<<f.expBits - 1)
	m := float64(int(b) & (1<<f.manBits - 1))
	if e == 1<<f.expBits-1 {
		return 0, false
	}
	if e == 0 {
		v = math.Ldexp(m, 1-bias-int(f.manBits))
	} else {
		v = math.Ldexp(m+math.Ldexp(1, int(f.manBits)), e-bias-int(f.manBits))
	}
	if b&0x8000 != 0 {
		v = -v
	}
	return v, true
}

// refTable lists the non-negative finite values of the format in increasing
// order, followed by +Inf standing in as the value 2^(emax+1): IEEE 754 says
// that a value rounds to Inf exactly when it would round to that power of two
// with an unbounded exponent, and 2^(emax+1) has an even mantissa.
type refEntry struct {
	bits uint16
	v    float64
}

func (f format) refTable() []refEntry {
	var t []refEntry
	for b := uint16(0); b < f.infBits; b++ {
		v, ok := f.refValue(b)
		if !ok {
			panic("unexpected non-finite")
		}
		t = append(t, refEntry{b, v})
	}
	bias := int(1)<<(f.expBits-1) - 1
	t = append(t, refEntry{f.infBits, math.Ldexp(1, bias+1)})
	if !sort.SliceIsSorted(t, func(i, j int) bool { return t[i].v < t[j].v }) {
		panic("table not sorted")
	}
	return t
}

// refRound rounds the finite float32 x to the format by searching the table
// for its neighbours and comparing x with their midpoint. All these float64
// values and midpoints are exact (at most 25 significant bits, exponents far
// inside float64's range), so the comparisons are exact.
func refRound(t []refEntry, x float32) uint16 {
	a := math.Abs(float64(x))
	var sign uint16
	if math.Signbit(float64(x)) {
		sign = 0x8000
	}
	i := sort.Search(len(t), func(i int) bool { return t[i].v >= a })
	if i == len(t) {
		return sign | t[len(t)-1].bits // beyond 2^(emax+1): Inf
	}
	if t[i].v == a || i == 0 {
		return sign | t[i].bits
	}
	lo, hi := t[i-1], t[i]
	mid := (lo.v + hi.v) / 2
	switch {
	case a < mid:
		return sign | lo.bits
	case a > mid:
		return sign | hi.bits
	case lo.bits&1 == 0:
		return sign | lo.bits
	default:
		return sign | hi.bits
	}
}

func TestWidenAllValues(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			for i := 0; i < 1<<16; i++ {
				b := uint16(i)
				got := f.toF32(b)
				if v, ok := f.refValue(b); ok {
					// Compare bits so that −0 and +0 are told apart.
					if math.Float32bits(got) != math.Float32bits(float32(v)) || float64(got) != v {
						t.Fatalf("%#04x: got %g, want %g", b, got, v)
					}
					continue
				}
				man := b & (1<<f.manBits - 1)
				g := float64(got)
				switch {
				case man == 0 && !math.IsInf(g, 1-2*int(b>>15)):
					t.Fatalf("%#04x: got %g, want Inf of sign %d", b, got, b>>15)
				case man != 0 && !math.IsNaN(g):
					t.Fatalf("%#04x: got %g, want NaN", b, got)
				}
			}
		})
	}
}

func TestRoundTripAllValues(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			for i := 0; i < 1<<16; i++ {
				b := uint16(i)
				if got := f.fromF32(f.toF32(b)); got != b {
					t.Fatalf("%#04x → %#08x → %#04x", b, math.Float32bits(f.toF32(b)), got)
				}
			}
		})
	}
}

// TestNarrowBoundaries checks narrowing at every value of the format, at
// every midpoint between neighbours (the ties), and one float32 step either
// side of each of those, for both signs — the places where a rounding bug
// would show.
func TestNarrowBoundaries(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			tab := f.refTable()
			var points []float32
			for i, e := range tab {
				points = append(points, float32(e.v))
				if i > 0 {
					mid := (tab[i-1].v + e.v) / 2
					m32 := float32(mid)
					if float64(m32) != mid {
						// Midpoints below float32's subnormal range do
						// not exist as float32 inputs.
						continue
					}
					points = append(points, m32)
				}
			}
			n := 0
			for _, p := range points {
				for _, q := range []float32{p, math.Nextafter32(p, 0), math.Nextafter32(p, float32(math.Inf(1)))} {
					for _, x := range []float32{q, -q} {
						if math.IsInf(float64(x), 0) {
							continue
						}
						want := refRound(tab, x)
						if got := f.fromF32(x); got != want {
							t.Fatalf("%g (%#08x): got %#04x, want %#04x", x, math.Float32bits(x), got, want)
						}
						n++
					}
				}
			}
			t.Logf("%d boundary inputs agree with the reference", n)
		})
	}
}

// TestNarrowRandom compares narrowing with the reference on random float32
// bit patterns (all exponents) and on random values within the format's
// range, where most of the interesting rounding happens.
func TestNarrowRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			tab := f.refTable()
			for i := 0; i < 2000000; i++ {
				var x float32
				if i%2 == 0 {
					x = math.Float32frombits(rng.Uint32())
				} else {
					x = float32((rng.Float64()*2 - 1) * math.Ldexp(1, rng.IntN(40)-30))
				}
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					continue
				}
				want := refRound(tab, x)
				if got := f.fromF32(x); got != want {
					t.Fatalf("%g (%#08x): got %#04x, want %#04x", x, math.Float32bits(x), got, want)
				}
			}
		})
	}
}

func TestSpecials(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			if got := f.fromF32(inf); got != f.infBits {
				t.Errorf("+Inf: got %#04x", got)
			}
			if got := f.fromF32(-inf); got != f.infBits|0x8000 {
				t.Errorf("-Inf: got %#04x", got)
			}
			if got := f.fromF32(float32(math.Copysign(0, -1))); got != 0x8000 {
				t.Errorf("-0: got %#04x", got)
			}
			// Every float32 NaN, including ones whose payload lies only in
			// the bits that narrowing drops, must stay a NaN of the same sign.
			for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0x7fa00000, 0xffffffff, 0xff800001, 0x7f801fff} {
				x := math.Float32frombits(bits)
				got := f.fromF32(x)
				back := float64(f.toF32(got))
				if !math.IsNaN(back) || (got&0x8000 != 0) != (bits>>31 == 1) {
					t.Errorf("NaN %#08x → %#04x", bits, got)
				}
			}
			if v, ok := f.refValue(f.infBits - 1); !ok || v != f.maxFinit {
				t.Errorf("largest finite = %g, want %g", v, f.maxFinit)
			}
		})
	}
}

func TestBulk(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 10007)
	for i := range src {
		src[i] = float32(rng.NormFloat64() * 100)
	}
	src[0] = float32(math.Inf(-1))
	src[1] = float32(math.NaN())
	for _, c := range []struct {
		name   string
		enc    func([]byte, []float32)
		dec    func([]float32, []byte)
		narrow func(float32) uint16
		widen  func(uint16) float32
	}{
		{"f16", EncodeF16, DecodeF16, FromFloat32, ToFloat32},
		{"bf16", EncodeBF16, DecodeBF16, BF16FromFloat32, BF16ToFloat32},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, 2*len(src))
			c.enc(buf, src)
			out := make([]float32, len(src))
			c.dec(out, buf)
			for i, x := range src {
				b := binary.LittleEndian.Uint16(buf[2*i:])
				if b != c.narrow(x) {
					t.Fatalf("encode[%d] = %#04x, want %#04x", i, b, c.narrow(x))
				}
				if math.Float32bits(out[i]) != math.Float32bits(c.widen(b)) {
					t.Fatalf("decode[%d] = %g, want %g", i, out[i], c.widen(b))
				}
			}
			defer func() {
				if recover() == nil {
					t.Errorf("length mismatch did not panic")
				}
			}()
			c.dec(out, buf[:len(buf)-1])
		})
	}
}

func BenchmarkDecodeF16(b *testing.B) {
	src := make([]byte, 1<<22)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < len(src); i += 2 {
		binary.LittleEndian.PutUint16(src[i:], FromFloat32(float32(rng.NormFloat64())))
	}
	dst := make([]float32, len(src)/2)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		DecodeF16(dst, src)
	}
}

func BenchmarkDecodeF16Scalar(b *testing.B) {
	src := make([]byte, 1<<22)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < len(src); i += 2 {
		binary.LittleEndian.PutUint16(src[i:], FromFloat32(float32(rng.NormFloat64())))
	}
	dst := make([]float32, len(src)/2)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		for i := range dst {
			dst[i] = ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	}
}

func BenchmarkEncodeF16(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	src := make([]float32, 1<<21)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	dst := make([]byte, 2*len(src))
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		EncodeF16(dst, src)
	}
}

func BenchmarkDecodeBF16(b *testing.B) {
	src := make([]byte, 1<<22)
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < len(src); i += 2 {
		binary.LittleEndian.PutUint16(src[i:], BF16FromFloat32(float32(rng.NormFloat64())))
	}
	dst := make([]float32, len(src)/2)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		DecodeBF16(dst, src)
	}
}

func BenchmarkEncodeBF16(b *testing.B) {
	rng := rand.New(rand.NewPCG(11, 12))
	src := make([]float32, 1<<21)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	dst := make([]byte, 2*len(src))
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		EncodeBF16(dst, src)
	}
}
