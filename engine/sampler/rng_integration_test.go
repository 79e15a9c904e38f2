package sampler

import (
	"context"
	"slices"
	"testing"

	"github.com/pixery/pixery/engine/rng"
)

var _ NoiseSource = (*rng.Noise)(nil)

// countingNoise forwards to a NoiseSource and counts the draws.
type countingNoise struct {
	src   NoiseSource
	calls int
}

func (c *countingNoise) Noise(step int, dst []float32) error {
	c.calls++
	return c.src.Noise(step, dst)
}

// TestAncestralWithRNG runs Euler a on seeded A1111 noise: the walk is
// reproducible from the seed alone, draws one step noise per step but the
// last, and a different seed gives a different image.
func TestAncestralWithRNG(t *testing.T) {
	const size = 4 * 8 * 8
	s, err := New(Spec{EulerAncestral, ScheduleUniform}, 10, Options{Variant: A1111})
	if err != nil {
		t.Fatal(err)
	}
	run := func(seed uint64) ([]float32, int) {
		n, err := rng.New(rng.Options{Kind: rng.A1111, Seed: seed, Batch: 2, Size: size, ENSD: 31337})
		if err != nil {
			t.Fatal(err)
		}
		lat := make([]float32, n.Len())
		if err := n.Initial(lat); err != nil {
			t.Fatal(err)
		}
		for i := range lat {
			lat[i] *= float32(s.InitNoiseSigma())
		}
		cn := &countingNoise{src: n}
		out, err := s.Sample(context.Background(), constModel(0.05), lat, cn, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out, cn.calls
	}
	a, calls := run(7)
	b, _ := run(7)
	c, _ := run(8)
	if calls != s.Steps()-1 {
		t.Errorf("%d noise draws for %d steps", calls, s.Steps())
	}
	if !slices.Equal(a, b) {
		t.Error("same seed, different result")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds, same result")
	}
}
