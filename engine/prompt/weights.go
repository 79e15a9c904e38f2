package prompt

import (
	"fmt"
	"math"
)

// ApplyWeights applies per-token attention weights to one encoder's output,
// as A1111's default ("Original") emphasis does: every token's embedding is
// multiplied by its weight, then the whole tensor is scaled so that its mean
// equals the mean it had before. emb is row-major [tokens×dim] and is
// changed in place; weights has one entry per token (Chunk.Weights converted
// to float32). In SDXL each encoder's output (before concatenation) gets its
// own call, once per chunk.
//
// Like PyTorch, the products and the scale factor are float32; the means
// are accumulated in float64. The error cases (mismatched sizes, and a
// weighted mean of zero or a non-finite mean, where A1111 would divide by
// zero) leave emb unchanged.
func ApplyWeights(emb []float32, tokens, dim int, weights []float32) error {
	if tokens <= 0 || dim <= 0 || len(emb) != tokens*dim || len(weights) != tokens {
		return fmt.Errorf("apply weights: embedding of %d values, %d weights for %d tokens × %d dims", len(emb), len(weights), tokens, dim)
	}
	var before, after float64
	for t := range tokens {
		w := weights[t]
		for _, v := range emb[t*dim : (t+1)*dim] {
			before += float64(v)
			after += float64(v * w)
		}
	}
	n := float64(len(emb))
	origMean, newMean := float32(before/n), float32(after/n)
	scale := origMean / newMean
	if newMean == 0 || math.IsInf(float64(scale), 0) || math.IsNaN(float64(scale)) {
		return fmt.Errorf("apply weights: cannot restore the mean (%g before weighting, %g after)", origMean, newMean)
	}
	for t := range tokens {
		w := weights[t]
		row := emb[t*dim : (t+1)*dim]
		for i, v := range row {
			row[i] = (v * w) * scale
		}
	}
	return nil
}
