package rng

import "math"

// This file holds the floating-point kernels behind the generators, written
// so that they give the same bits on every platform. Go's math package does
// not promise that: math.Log is assembly on amd64 and s390x and pure Go
// elsewhere, and the compiler may fuse x*y+z into one rounding on arm64,
// ppc64le, s390x and riscv64 (and amd64 with GOAMD64=v3). Here every product
// that feeds an addition is wrapped in an explicit conversion, which the Go
// spec guarantees is rounded and never fused, and every intended fused
// multiply-add is math.FMA, which is exact everywhere (hardware or software).

// f32 rounds a float64 to float32 at run time, the way C converts a double
// literal to float; constants below go through it so that they match the
// reference's float constants even where decimal -> float32 directly would
// round differently.
func f32(x float64) float32 { return float32(x) }

// fma32 is a float32 fused multiply-add, a*b+c rounded once. The product of
// two float32 values is exact in float64; the sum is rounded to float64 and
// then to float32, and that double rounding is repaired when the float64 sum
// lands exactly halfway between two float32 values.
func fma32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact: 48 significant bits at most
	s := p + float64(c)
	r := float32(s)
	// Fast path: a float64 in float32's normal range that is not exactly
	// halfway between two float32 values (its 29 bits below float32
	// precision are not 100...0) rounds the same once or twice.
	if math.Float64bits(s)&(1<<29-1) != 1<<28 && math.Abs(s) >= 0x1p-126 {
		return r
	}
	if float64(r) == s {
		return r
	}
	// The rounding error of the float64 sum (Knuth's TwoSum).
	bv := s - p
	e := (p - (s - bv)) + (float64(c) - bv)
	if e == 0 {
		return r
	}
	// other is r's neighbour on the far side of s; s is a tie only if it
	// lies exactly midway (both differences are exact by Sterbenz).
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if s-float64(r) != float64(other)-s {
		return r
	}
	if (e > 0) == (other > r) {
		return other
	}
	return r
}

// Cephes constants of PyTorch's avx_mathfun.h (log256_ps, sincos256_ps).
var (
	minNormPos   = math.Float32frombits(0x00800000)
	cephesSQRTHF = f32(0.707106781186547524)
	logP         = [9]float32{
		f32(7.0376836292e-2), f32(-1.1514610310e-1), f32(1.1676998740e-1),
		f32(-1.2420140846e-1), f32(1.4249322787e-1), f32(-1.6668057665e-1),
		f32(2.0000714765e-1), f32(-2.4999993993e-1), f32(3.3333331174e-1),
	}
	logQ1 = f32(-2.12194440e-4)
	logQ2 = f32(0.693359375)

	cephesFOPI = f32(1.27323954473516) // 4/pi
	minusDP1   = f32(-0.78515625)
	minusDP2   = f32(-2.4187564849853515625e-4)
	minusDP3   = f32(-3.77489497744594108e-8)
	sinP       = [3]float32{f32(-1.9515295891e-4), f32(8.3321608736e-3), f32(-1.6666654611e-1)}
	cosP       = [3]float32{f32(2.443315711809948e-5), f32(-1.388731625493765e-3), f32(4.166664568298827e-2)}
	twoPi32    = f32(2 * math.Pi)
)

// cephesLog is log256_ps for one positive lane, with the multiply-adds that
// PyTorch 1.13's x86-64 AVX2 build fuses (see testdata/golden/rng/README.md).
func cephesLog(x float32) float32 {
	x = max(x, minNormPos)
	bits := math.Float32bits(x)
	e := float32(int32(bits>>23)-0x7f) + 1
	m := math.Float32frombits(bits&^0x7f800000 | 0x3f000000) // mantissa in [0.5, 1)
	if m < cephesSQRTHF {
		e--
		x = (m - 1) + m
	} else {
		x = m - 1
	}
	z := float32(x * x)
	y := logP[0]
	for _, p := range logP[1:] {
		y = fma32(y, x, p)
	}
	y = float32(y * x)
	y = fma32(y, z, float32(e*logQ1))
	y -= float32(z * 0.5)
	x += y
	return fma32(e, logQ2, x)
}

// cephesSinCos is sincos256_ps for one non-negative lane, with the same
// fused multiply-adds.
func cephesSinCos(x float32) (sin, cos float32) {
	j := int32(float32(x * cephesFOPI)) // truncation, as cvttps
	j = (j + 1) &^ 1
	y := float32(j)
	x = fma32(y, minusDP1, x)
	x = fma32(y, minusDP2, x)
	x = fma32(y, minusDP3, x)
	z := float32(x * x)

	c := fma32(fma32(cosP[0], z, cosP[1]), z, cosP[2])
	c = float32(c * z)
	c = fma32(c, z, -float32(z*0.5))
	c++

	s := fma32(fma32(sinP[0], z, sinP[1]), z, sinP[2])
	s = float32(s * z)
	s = fma32(s, x, x)

	if j&2 != 0 {
		s, c = c, s
	}
	if j&4 != 0 {
		s = -s
	}
	if (j-2)&4 == 0 {
		c = -c
	}
	return s, c
}

// fdlibm's argument-reduction and polynomial constants (the minimax fits
// every libm derived from Sun's uses).
const (
	ln2Hi = 6.93147180369123816490e-01
	ln2Lo = 1.90821492927058770002e-10
	lg1   = 6.666666666666735130e-01
	lg2   = 3.999999999940941908e-01
	lg3   = 2.857142874366239149e-01
	lg4   = 2.222219843214978396e-01
	lg5   = 1.818357216161805012e-01
	lg6   = 1.531383769920937332e-01
	lg7   = 1.479819860511658591e-01

	pio2Hi  = 1.57079632673412561417e+00 // first 33 bits of pi/2
	pio2Lo  = 6.07710050650619224932e-11 // pi/2 - pio2Hi
	invPio2 = 6.36619772367581382433e-01

	ks1 = -1.66666666666666324348e-01
	ks2 = 8.33333333332248946124e-03
	ks3 = -1.98412698298579493134e-04
	ks4 = 2.75573137070700676789e-06
	ks5 = -2.50507602534068634195e-08
	ks6 = 1.58969099521155010221e-10

	kc1 = 4.16666666666666019037e-02
	kc2 = -1.38888888888741095749e-03
	kc3 = 2.48015872894767294178e-05
	kc4 = -2.75573143513906633035e-07
	kc5 = 2.08757232129817482790e-09
	kc6 = -1.13596475577881948265e-11
)

// mul is a product that is rounded before any addition uses it.
func mul(a, b float64) float64 { return float64(a * b) }

// log64 is the natural logarithm of a positive, normal, finite x, accurate
// to under one ulp and identical on every platform.
func log64(x float64) float64 {
	bits := math.Float64bits(x)
	k := int((bits>>52)&0x7ff) - 1023
	// m in [1, 2), then moved into [sqrt(2)/2, sqrt(2)).
	m := math.Float64frombits(bits&(1<<52-1) | 0x3ff<<52)
	if m > math.Sqrt2 {
		m *= 0.5
		k++
	}
	f := m - 1
	s := f / (2 + f)
	z := mul(s, s)
	w := mul(z, z)
	t1 := mul(w, lg2+mul(w, lg4+mul(w, lg6)))
	t2 := mul(z, lg1+mul(w, lg3+mul(w, lg5+mul(w, lg7))))
	r := t2 + t1
	hfsq := mul(mul(0.5, f), f)
	dk := float64(k)
	return mul(dk, ln2Hi) - ((hfsq - (mul(s, hfsq+r) + mul(dk, ln2Lo))) - f)
}

// kernelSin is sin(x+y) for |x| <= pi/4, y the tail of x.
func kernelSin(x, y float64) float64 {
	z := mul(x, x)
	v := mul(z, x)
	r := ks2 + mul(z, ks3+mul(z, ks4+mul(z, ks5+mul(z, ks6))))
	return x - ((mul(z, mul(0.5, y)-mul(v, r)) - y) - mul(v, ks1))
}

// kernelCos is cos(x+y) for |x| <= pi/4, y the tail of x.
func kernelCos(x, y float64) float64 {
	z := mul(x, x)
	r := mul(z, kc1+mul(z, kc2+mul(z, kc3+mul(z, kc4+mul(z, kc5+mul(z, kc6))))))
	hz := mul(0.5, z)
	w := 1 - hz
	return w + (((1 - w) - hz) + (mul(z, r) - mul(x, y)))
}

// sincos64 is sin and cos of x in [0, 8), the range the generators need,
// accurate to about one ulp and identical on every platform.
func sincos64(x float64) (sin, cos float64) {
	n := math.Floor(mul(x, invPio2) + 0.5)
	// x - n*pi/2 in two parts; n*pio2Hi is exact (n < 8, 33-bit constant).
	r := x - mul(n, pio2Hi)
	w := mul(n, pio2Lo)
	y0 := r - w
	y1 := (r - y0) - w
	s, c := kernelSin(y0, y1), kernelCos(y0, y1)
	switch int(n) & 3 {
	case 0:
		return s, c
	case 1:
		return c, -s
	case 2:
		return -s, -c
	default:
		return -c, s
	}
}
