package ipadapter

import (
	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// ImageProj is the plain adapters' ImageProjModel (tencent-ailab
// ip_adapter.py, ip-adapter.md §2.1): tokens = LayerNorm(reshape(
// proj(image_embeds), [B, Tokens, ContextDim])), eps 1e-5.
type ImageProj struct {
	Proj *nn.Linear    `sd:"proj"`
	Norm *nn.LayerNorm `sd:"norm"`

	Tokens, ContextDim int64
}

func newImageProj(in, tokens, ctx int64) *ImageProj {
	return &ImageProj{Proj: nn.NewLinear(in, tokens*ctx, true), Norm: nn.NewLayerNorm(ctx, 1e-5), Tokens: tokens, ContextDim: ctx}
}

// Forward maps image_embeds [B, in] to [B, Tokens, ContextDim]. Row r of
// the projection belongs to token r / ContextDim.
func (p *ImageProj) Forward(emb onnx.Value) onnx.Value {
	return p.Norm.Forward(p.Proj.Forward(emb).Reshape(0, p.Tokens, p.ContextDim))
}

// Resampler is the "plus" adapters' perceiver (tencent-ailab
// resampler.py, ip-adapter.md §2.2): learned latent queries that attend to
// the image encoder's penultimate hidden states.
type Resampler struct {
	// Latents is [1, Tokens, Dim], broadcast over the batch.
	Latents *nn.Param      `sd:"latents"`
	ProjIn  *nn.Linear     `sd:"proj_in"`
	Layers  []*PerceiverFF `sd:"layers"`
	ProjOut *nn.Linear     `sd:"proj_out"`
	NormOut *nn.LayerNorm  `sd:"norm_out"`
	Sizes   ResamplerSizes `sd:"-"`
}

// ResamplerSizes are read from the file's shapes (no head count is
// stored: heads = inner width / 64, as diffusers computes it).
type ResamplerSizes struct {
	In, Dim, Out, Tokens, Heads, HeadDim, FFWidth int64
	Depth                                         int
}

// PerceiverFF is one layer: layers.i.0 the attention, layers.i.1 the
// feed-forward.
type PerceiverFF struct {
	Attn *PerceiverAttention `sd:"0"`
	FF   *FeedForward        `sd:"1"`
}

// PerceiverAttention lets the latents attend to the image features and to
// themselves: queries from the latents, keys and values from both.
type PerceiverAttention struct {
	Norm1 *nn.LayerNorm `sd:"norm1"` // on the image features
	Norm2 *nn.LayerNorm `sd:"norm2"` // on the latents
	ToQ   *nn.Linear    `sd:"to_q"`
	ToKV  *nn.Linear    `sd:"to_kv"`
	ToOut *nn.Linear    `sd:"to_out"`

	Heads, HeadDim int64
}

// FeedForward is LayerNorm → Linear → GELU → Linear, all Linear bias-free
// (nn.Sequential indices 0, 1, 2 = GELU, 3).
type FeedForward struct {
	Norm *nn.LayerNorm `sd:"0"`
	W1   *nn.Linear    `sd:"1"`
	W2   *nn.Linear    `sd:"3"`
}

func newResampler(s ResamplerSizes) *Resampler {
	inner := s.Heads * s.HeadDim
	r := &Resampler{
		Latents: nn.NewParam(1, s.Tokens, s.Dim),
		ProjIn:  nn.NewLinear(s.In, s.Dim, true),
		ProjOut: nn.NewLinear(s.Dim, s.Out, true),
		NormOut: nn.NewLayerNorm(s.Out, 1e-5),
		Sizes:   s,
	}
	for range s.Depth {
		r.Layers = append(r.Layers, &PerceiverFF{
			Attn: &PerceiverAttention{
				Norm1:   nn.NewLayerNorm(s.Dim, 1e-5),
				Norm2:   nn.NewLayerNorm(s.Dim, 1e-5),
				ToQ:     nn.NewLinear(s.Dim, inner, false),
				ToKV:    nn.NewLinear(s.Dim, 2*inner, false),
				ToOut:   nn.NewLinear(inner, s.Dim, false),
				Heads:   s.Heads,
				HeadDim: s.HeadDim,
			},
			FF: &FeedForward{
				Norm: nn.NewLayerNorm(s.Dim, 1e-5),
				W1:   nn.NewLinear(s.Dim, s.FFWidth, false),
				W2:   nn.NewLinear(s.FFWidth, s.Dim, false),
			},
		})
	}
	return r
}

// Forward maps image features [B, N, In] to [B, Tokens, Out].
func (r *Resampler) Forward(h onnx.Value) onnx.Value {
	b := h.Builder()
	x := r.ProjIn.Forward(h)
	batch := h.Shape().Slice(0, 0, 1)
	lat := b.Op("Expand", []onnx.Value{r.Latents.Value(b), onnx.Concat(0, batch, b.ConstInt64(1, 1))})
	for i, l := range r.Layers {
		b.Push("resampler." + itoa(i))
		lat = l.Attn.Forward(x, lat).Add(lat)
		lat = l.FF.Forward(lat).Add(lat)
		b.Pop()
	}
	return r.NormOut.Forward(r.ProjOut.Forward(lat))
}

// Forward is PerceiverAttention: keys and values come from the image
// features and the latents concatenated along the token axis; the first
// half of to_kv's output is k, the second v.
func (a *PerceiverAttention) Forward(x, lat onnx.Value) onnx.Value {
	xn := a.Norm1.Forward(x)
	ln := a.Norm2.Forward(lat)
	q := a.ToQ.Forward(ln)
	inner := a.Heads * a.HeadDim
	kv := a.ToKV.Forward(onnx.Concat(1, xn, ln)).Split(-1, inner, inner)
	return a.ToOut.Forward(nn.Attention(q, kv[0], kv[1], a.Heads, a.HeadDim, nil))
}

// Forward is W2(GELU(W1(LayerNorm(x)))) with the exact GELU.
func (f *FeedForward) Forward(x onnx.Value) onnx.Value {
	return f.W2.Forward(f.W1.Forward(f.Norm.Forward(x)).GELU())
}
