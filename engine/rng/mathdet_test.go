package rng

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func ulpDiff(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / (math.Nextafter(math.Abs(b), math.Inf(1)) - math.Abs(b))
}

func TestLog64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pts := []float64{1, 0.5, 0.25, math.Sqrt2 / 2, math.Nextafter(1, 0), 0x1p-53, 0x1p-24, 1e-300, 3, 1e300, math.E}
	for range 200000 {
		pts = append(pts, r.Float64())
	}
	var worst float64
	for _, x := range pts {
		if x == 0 {
			continue
		}
		worst = math.Max(worst, ulpDiff(log64(x), math.Log(x)))
	}
	t.Logf("log64 vs math.Log: max %.2f ulp over %d points", worst, len(pts))
	if worst > 1 {
		t.Errorf("log64 off by %.2f ulp", worst)
	}
	if log64(1) != 0 {
		t.Errorf("log64(1) = %v", log64(1))
	}
}

func TestSincos64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pts := []float64{0, 1e-300, math.Pi / 4, math.Pi / 2, math.Pi, 3 * math.Pi / 2, math.Nextafter(2*math.Pi, 0), 2 * math.Pi}
	for range 200000 {
		pts = append(pts, r.Float64()*2*math.Pi)
	}
	var worst float64
	for _, x := range pts {
		s, c := sincos64(x)
		ws, wc := math.Sincos(x)
		// Absolute error in units of 2^-53 (half an ulp of 1): sin and cos
		// near their zeros have tiny values whose ulps say nothing here.
		worst = math.Max(worst, math.Max(math.Abs(s-ws), math.Abs(c-wc))/0x1p-53)
	}
	t.Logf("sincos64 vs math.Sincos: max abs error %.2f x 2^-53 over %d points", worst, len(pts))
	if worst > 2 {
		t.Errorf("sincos64 off by %.2f x 2^-53", worst)
	}
}

func exactFMA32(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(256).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetFloat64(float64(c)))
	f, _ := x.Float32()
	return f
}

func TestFMA32(t *testing.T) {
	// Cases where a*b+c rounded to float64 is exactly halfway between two
	// float32 values but the exact value is not: rounding twice gives the
	// wrong neighbour.
	p23 := float32(0x1p-23)
	tricky := [][3]float32{
		{0x1p-12 * (1 + p23), 0x1p-12 * (1 - p23), 1 + p23},
		{-0x1p-12 * (1 + p23), 0x1p-12 * (1 - p23), 1 + 3*p23},
		{0x1p-12 * (1 + p23), -0x1p-12 * (1 - p23), -(1 + p23)},
	}
	for _, c := range tricky {
		want := exactFMA32(c[0], c[1], c[2])
		naive := float32(float64(c[0])*float64(c[1]) + float64(c[2]))
		if naive == want {
			t.Errorf("case %v does not exercise double rounding", c)
		}
		if got := fma32(c[0], c[1], c[2]); got != want {
			t.Errorf("fma32(%v) = %v, want %v", c, got, want)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	rnd := func() float32 {
		return float32(r.NormFloat64() * math.Pow(2, float64(r.IntN(40)-20)))
	}
	bad := 0
	for range 300000 {
		a, b, c := rnd(), rnd(), rnd()
		if got, want := fma32(a, b, c), exactFMA32(a, b, c); got != want {
			bad++
			if bad < 5 {
				t.Errorf("fma32(%v, %v, %v) = %v, want %v", a, b, c, got, want)
			}
		}
	}
}

// TestCephes checks PyTorch's float32 approximations against float64 math:
// they are approximations, but good to a few float32 ulps.
func TestCephes(t *testing.T) {
	var worstLog, worstTrig float64
	for i := 1; i <= 1<<16; i++ {
		u := float32(i) / (1 << 16)
		worstLog = math.Max(worstLog, math.Abs(float64(cephesLog(u))-math.Log(float64(u))))
		th := float32(twoPi32 * (float32(i-1) / (1 << 16)))
		s, c := cephesSinCos(th)
		ws, wc := math.Sincos(float64(th))
		worstTrig = math.Max(worstTrig, math.Max(math.Abs(float64(s)-ws), math.Abs(float64(c)-wc)))
	}
	t.Logf("cephes log max abs error %.3g, sincos %.3g", worstLog, worstTrig)
	if worstLog > 2e-6 || worstTrig > 3e-7 {
		t.Errorf("cephes kernels too far from math: log %.3g, sincos %.3g", worstLog, worstTrig)
	}
}
