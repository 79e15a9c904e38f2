package rng

import "math"

// Philox reproduces A1111's "NV" RNG source (modules/rng_philox.py), its
// emulation of torch.randn on an NVIDIA GPU, which is what A1111's default
// "GPU" source gives on such a card. Unlike TorchCPU, the whole 64-bit seed
// is the key: 2^32+42 differs from 42.
type Philox struct {
	key    [2]uint32
	offset uint32
}

// NewPhilox returns Generator(seed) at offset 0.
func NewPhilox(seed uint64) *Philox {
	return &Philox{key: [2]uint32{uint32(seed), uint32(seed >> 32)}}
}

// Box-Muller scale factors, float32 constants as rng_philox.py holds them
// (numpy float32 arrays made from Python floats).
var (
	philoxA  = float64(f32(2.3283064e-10))
	philoxA2 = float64(f32(2.3283064e-10) / 2)
	philoxB  = float64(f32(2.3283064e-10 * 6.2831855))
	philoxB2 = float64(f32(2.3283064e-10*6.2831855) / 2)
)

// Randn fills dst as Generator.randn of a tensor with len(dst) elements and
// then advances the offset by one, whatever the size, as A1111 does per
// call. Value i comes from the Philox-4x32-10 block at counter
// (offset, 0, i, 0): the first two words go through the sine branch of
// Box-Muller in float64, rounded to float32 at the end.
func (p *Philox) Randn(dst []float32) {
	for i := range dst {
		c0, c1 := philox4x32(p.offset, uint32(i), p.key)
		dst[i] = philoxNormal(c0, c1)
	}
	p.offset++
}

// philox4x32 runs 10 Philox rounds on the counter (c0, 0, c2, 0) and returns
// the first two output words (A1111 discards the other two).
func philox4x32(c0, c2 uint32, key [2]uint32) (uint32, uint32) {
	const (
		m0, m1 = 0xD2511F53, 0xCD9E8D57
		w0, w1 = 0x9E3779B9, 0xBB67AE85
	)
	var c1, c3 uint32
	k0, k1 := key[0], key[1]
	for r := range 10 {
		if r > 0 {
			k0 += w0
			k1 += w1
		}
		a := uint64(m0) * uint64(c0)
		b := uint64(m1) * uint64(c2)
		c0, c1, c2, c3 = uint32(b>>32)^c1^k0, uint32(b), uint32(a>>32)^c3^k1, uint32(a)
	}
	return c0, c1
}

// philoxNormal is rng_philox.box_muller for one pair: NumPy promotes the
// uint32 words times float32 constants to float64, so the arithmetic is
// float64 with float32-rounded constants.
func philoxNormal(x, y uint32) float32 {
	u := mul(float64(x), philoxA) + philoxA2
	v := mul(float64(y), philoxB) + philoxB2
	s := math.Sqrt(-2 * log64(u))
	sin, _ := sincos64(v)
	return float32(mul(s, sin))
}
