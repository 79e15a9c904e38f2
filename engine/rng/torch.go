package rng

import "math"

// mt19937 is the Mersenne Twister of PyTorch's CPU generator (and of C++'s
// std::mt19937 and NumPy's legacy RandomState).
type mt19937 struct {
	state [624]uint32
	next  int
}

func (m *mt19937) seed(s uint32) {
	m.state[0] = s
	for i := 1; i < len(m.state); i++ {
		prev := m.state[i-1]
		m.state[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	m.next = len(m.state)
}

func (m *mt19937) twist() {
	const n, mid = 624, 397
	for i := range n {
		y := m.state[i]&0x80000000 | m.state[(i+1)%n]&0x7fffffff
		v := m.state[(i+mid)%n] ^ y>>1
		if y&1 != 0 {
			v ^= 0x9908b0df
		}
		m.state[i] = v
	}
	m.next = 0
}

func (m *mt19937) uint32() uint32 {
	if m.next >= len(m.state) {
		m.twist()
	}
	y := m.state[m.next]
	m.next++
	y ^= y >> 11
	y ^= y << 7 & 0x9d2c5680
	y ^= y << 15 & 0xefc60000
	y ^= y >> 18
	return y
}

// TorchCPU reproduces PyTorch's CPU generator: torch.manual_seed(seed)
// followed by torch.randn calls on float32 tensors, value for value. This is
// ComfyUI's initial noise and A1111's "CPU" RNG source.
//
// The seed is used modulo 2^32, as PyTorch does: 2^32+42 gives the noise of
// 42.
type TorchCPU struct {
	mt mt19937
	// cached is the second value of the scalar path's last Box-Muller pair,
	// which PyTorch keeps in the generator for the next scalar draw.
	cached    float64
	hasCached bool
}

// NewTorchCPU returns a generator in the state torch.manual_seed(seed)
// leaves.
func NewTorchCPU(seed uint64) *TorchCPU {
	g := &TorchCPU{}
	g.mt.seed(uint32(seed))
	return g
}

// Randn fills dst as torch.randn of a contiguous float32 tensor with
// len(dst) elements would, and advances the generator the same way, so
// successive calls continue PyTorch's stream.
//
// Tensors of 16 or more elements take PyTorch's vectorised path: len(dst)
// uniforms, Box-Muller on blocks of 16 with PyTorch's AVX2 float32 log and
// sincos (bit-exact; see cephesLog), and, when len(dst) is not a multiple of
// 16, 16 more uniforms that overwrite and redo the last 16 values. Smaller
// tensors take PyTorch's scalar path: float64 Box-Muller on 53-bit uniforms,
// one pair per two values, the spare value kept for the next call.
func (g *TorchCPU) Randn(dst []float32) {
	n := len(dst)
	if n < 16 {
		for i := range dst {
			dst[i] = float32(g.normal64())
		}
		return
	}
	for i := range dst {
		dst[i] = g.uniform24()
	}
	for i := 0; i+16 <= n; i += 16 {
		boxMuller16(dst[i : i+16])
	}
	if n%16 != 0 {
		tail := dst[n-16:]
		for i := range tail {
			tail[i] = g.uniform24()
		}
		boxMuller16(tail)
	}
}

// uniform24 is at::uniform_real_distribution<float>(0, 1): 24 random bits
// scaled into [0, 1), exact in float32.
func (g *TorchCPU) uniform24() float32 {
	return float32(g.mt.uint32()&0xffffff) * (1.0 / (1 << 24))
}

// uniform53 is at::uniform_real_distribution<double>(0, 1) on random64(),
// which joins two 32-bit draws, the first as the high half.
func (g *TorchCPU) uniform53() float64 {
	hi := uint64(g.mt.uint32())
	lo := uint64(g.mt.uint32())
	return float64((hi<<32|lo)&(1<<53-1)) * (1.0 / (1 << 53))
}

// normal64 is at::normal_distribution<double>: Box-Muller in float64,
// r = sqrt(-2 log(1-u2)), theta = 2*pi*u1, returning r*cos(theta) and
// keeping r*sin(theta) for the next call.
func (g *TorchCPU) normal64() float64 {
	if g.hasCached {
		g.hasCached = false
		return g.cached
	}
	u1 := g.uniform53()
	u2 := g.uniform53()
	r := math.Sqrt(-2 * log64(1-u2))
	sin, cos := sincos64(mul(2*math.Pi, u1))
	g.cached, g.hasCached = mul(r, sin), true
	return mul(r, cos)
}

// boxMuller16 is PyTorch's normal_fill_16_AVX2 with mean 0 and std 1: the
// first 8 values give u1 = 1-u, the last 8 give theta = 2*pi*u; the first 8
// outputs are r*cos(theta) and the last 8 r*sin(theta).
func boxMuller16(d []float32) {
	for j := range 8 {
		u1 := 1 - d[j]
		u2 := d[j+8]
		r := float32(math.Sqrt(float64(-2 * cephesLog(u1)))) // exactly rounded, as sqrt_ps
		sin, cos := cephesSinCos(float32(twoPi32 * u2))
		d[j] = unsignedZero(float32(r * cos))
		d[j+8] = unsignedZero(float32(r * sin))
	}
}

// unsignedZero turns -0 into +0, as the reference's final
// fma(n, std=1, mean=0) does.
func unsignedZero(v float32) float32 {
	if v == 0 {
		return 0
	}
	return v
}
