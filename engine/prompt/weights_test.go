package prompt

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestApplyWeights compares ApplyWeights with the formula worked out in
// float64, on small tensors: out[t][d] = e[t][d]·w[t] · mean(e) / mean(e·w).
func TestApplyWeights(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, shape := range []struct{ tokens, dim int }{{3, 4}, {1, 1}, {77, 8}, {5, 1}} {
		emb := make([]float32, shape.tokens*shape.dim)
		for i := range emb {
			emb[i] = float32(rng.NormFloat64()) + 0.5 // a clearly non-zero mean
		}
		weights := make([]float32, shape.tokens)
		for i := range weights {
			weights[i] = float32([]float64{1, 1.1, 1.21, 0.9090909090909091, 1.5, 0.5}[i%6])
		}
		var sum, wsum float64
		for i, v := range emb {
			sum += float64(v)
			wsum += float64(v) * float64(weights[i/shape.dim])
		}
		want := make([]float64, len(emb))
		for i, v := range emb {
			want[i] = float64(v) * float64(weights[i/shape.dim]) * (sum / wsum)
		}

		got := slices.Clone(emb)
		if err := ApplyWeights(got, shape.tokens, shape.dim, weights); err != nil {
			t.Fatal(err)
		}
		var maxErr, outSum float64
		for i := range got {
			maxErr = max(maxErr, math.Abs(float64(got[i])-want[i])/max(1, math.Abs(want[i])))
			outSum += float64(got[i])
		}
		meanErr := math.Abs(outSum-sum) / float64(len(emb))
		t.Logf("%d×%d: max relative error %.3g, mean drift %.3g", shape.tokens, shape.dim, maxErr, meanErr)
		if maxErr > 1e-6 || meanErr > 1e-6 {
			t.Errorf("%d×%d: max error %g, mean drift %g (tolerance 1e-6)", shape.tokens, shape.dim, maxErr, meanErr)
		}
	}
}

func TestApplyWeightsUnitWeightsAreIdentity(t *testing.T) {
	emb := []float32{0.25, -1, 3, 0.125, 7, -0.5}
	got := slices.Clone(emb)
	if err := ApplyWeights(got, 3, 2, []float32{1, 1, 1}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, emb) {
		t.Errorf("weights of 1 changed the tensor: %v -> %v", emb, got)
	}
}

func TestApplyWeightsErrors(t *testing.T) {
	emb := []float32{1, 2, 3, 4, 5, 6}
	for _, c := range []struct {
		name        string
		tokens, dim int
		weights     []float32
	}{
		{"too few weights", 3, 2, []float32{1, 1}},
		{"shape mismatch", 2, 2, []float32{1, 1}},
		{"zero dim", 3, 0, []float32{1, 1, 1}},
		{"all weights zero", 3, 2, []float32{0, 0, 0}},
		{"NaN weight", 3, 2, []float32{1, float32(math.NaN()), 1}},
	} {
		got := slices.Clone(emb)
		if err := ApplyWeights(got, c.tokens, c.dim, c.weights); err == nil {
			t.Errorf("%s: no error", c.name)
		} else if !slices.Equal(got, emb) {
			t.Errorf("%s: tensor changed despite the error", c.name)
		}
	}
}
