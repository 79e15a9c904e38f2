package clip

import (
	"fmt"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// OpenCLIPText is OpenCLIP ViT-bigG/14's text transformer in OpenCLIP
// naming (the tensors under PrefixG), architecture.md §3. The checkpoint's
// logit_scale is deliberately not a field (a KnownExtra).
type OpenCLIPText struct {
	TokenEmbedding *nn.Embedding `sd:"token_embedding"`
	// PositionalEmbedding is a bare [Positions, Width] parameter.
	PositionalEmbedding *nn.Param     `sd:"positional_embedding"`
	Transformer         *ResBlocks    `sd:"transformer"`
	LnFinal             *nn.LayerNorm `sd:"ln_final"`
	// TextProjection is a bare [Width, ProjectionDim] matrix applied as
	// x·P, not a Linear weight (§3: square in bigG, so a wrong orientation
	// would go unnoticed by the shape check).
	TextProjection *nn.Param `sd:"text_projection"`
	binding
}

// ResBlocks is the transformer's list of residual attention blocks.
type ResBlocks struct {
	Resblocks []*ResidualAttentionBlock `sd:"resblocks"`
}

// ResidualAttentionBlock is one pre-LayerNorm transformer block.
type ResidualAttentionBlock struct {
	Ln1  *nn.LayerNorm       `sd:"ln_1"`
	Attn *MultiheadAttention `sd:"attn"`
	Ln2  *nn.LayerNorm       `sd:"ln_2"`
	MLP  *OpenCLIPMLP        `sd:"mlp"`
}

// MultiheadAttention is torch.nn.MultiheadAttention: one packed input
// projection whose rows are q, then k, then v (§3).
type MultiheadAttention struct {
	InProjWeight *nn.Param  `sd:"in_proj_weight"` // [3·Width, Width]
	InProjBias   *nn.Param  `sd:"in_proj_bias"`   // [3·Width]
	OutProj      *nn.Linear `sd:"out_proj"`
	Width, Heads int64
}

// OpenCLIPMLP is c_proj(act(c_fc(x))).
type OpenCLIPMLP struct {
	CFC        *nn.Linear `sd:"c_fc"`
	CProj      *nn.Linear `sd:"c_proj"`
	Activation string
}

// NewOpenCLIPText makes bigG's module tree with the expected shapes.
func NewOpenCLIPText(c Config) (*OpenCLIPText, error) {
	if err := c.Validate(G); err != nil {
		return nil, err
	}
	w := c.Width
	m := &OpenCLIPText{
		TokenEmbedding:      nn.NewEmbedding(c.VocabSize, w),
		PositionalEmbedding: nn.NewParam(c.Positions, w),
		Transformer:         &ResBlocks{},
		LnFinal:             nn.NewLayerNorm(w, c.LayerNormEps),
		TextProjection:      nn.NewParam(w, c.ProjectionDim),
		binding:             binding{cfg: c},
	}
	for range c.Layers {
		m.Transformer.Resblocks = append(m.Transformer.Resblocks, &ResidualAttentionBlock{
			Ln1: nn.NewLayerNorm(w, c.LayerNormEps),
			Attn: &MultiheadAttention{
				InProjWeight: nn.NewParam(3*w, w),
				InProjBias:   nn.NewParam(3 * w),
				OutProj:      nn.NewLinear(w, w, true),
				Width:        w,
				Heads:        c.Heads,
			},
			Ln2: nn.NewLayerNorm(w, c.LayerNormEps),
			MLP: &OpenCLIPMLP{
				CFC:        nn.NewLinear(w, c.MLPWidth, true),
				CProj:      nn.NewLinear(c.MLPWidth, w, true),
				Activation: c.Activation,
			},
		})
	}
	return m, nil
}

// Kind is G.
func (m *OpenCLIPText) Kind() Kind { return G }

// Bind binds the module tree to the tensors under PrefixG.
func (m *OpenCLIPText) Bind(w *nn.Weights) error { return m.bind(G, w, m) }

// Build makes the graph; see Encoder. Its pooled output is the projected
// text embedding SDXL conditions on (diffusers' text_embeds).
func (m *OpenCLIPText) Build(o nn.BuildOptions) (*nn.Graph, error) {
	return build(G, &m.binding, o, m.Forward)
}

// Forward runs the text transformer on input_ids [B, T].
func (m *OpenCLIPText) Forward(ids onnx.Value) Outputs {
	b := ids.Builder()
	x := m.TokenEmbedding.Forward(ids).Add(m.PositionalEmbedding.Value(b))
	mask := causalMask(b, m.cfg.Positions)
	var penultimate onnx.Value
	for i, r := range m.Transformer.Resblocks {
		// SDXL's "penultimate" layer is the tensor entering the last
		// resblock, without ln_final (§3).
		penultimate = x
		b.Push(fmt.Sprintf("resblocks.%d", i))
		x = r.Forward(x, mask)
		b.Pop()
	}
	hidden := m.LnFinal.Forward(x)
	pooled := atEOS(hidden, ids).MatMul(m.TextProjection.Value(b))
	return Outputs{Hidden: hidden, Penultimate: penultimate, Pooled: pooled}
}

// Forward is x += attn(ln_1(x)); x += mlp(ln_2(x)).
func (r *ResidualAttentionBlock) Forward(x, mask onnx.Value) onnx.Value {
	x = x.Add(r.Attn.Forward(r.Ln1.Forward(x), mask))
	return x.Add(r.MLP.Forward(r.Ln2.Forward(x)))
}

// Forward is causal multi-head self-attention with the packed projection
// done as one matrix product, then split into q, k, v.
func (a *MultiheadAttention) Forward(x, mask onnx.Value) onnx.Value {
	b := x.Builder()
	qkv := x.MatMul(a.InProjWeight.Value(b).Transpose(1, 0))
	if ad := a.InProjWeight.Adapter; ad != nil {
		qkv = qkv.Add(ad.Linear(x)) // LoRA on the packed q, k, v rows
	}
	qkv = qkv.Add(a.InProjBias.Value(b))
	p := qkv.Split(-1, a.Width, a.Width, a.Width)
	h := nn.Attention(p[0], p[1], p[2], a.Heads, a.Width/a.Heads, &mask)
	return a.OutProj.Forward(h)
}

// Forward is c_proj(act(c_fc(x))).
func (m *OpenCLIPMLP) Forward(x onnx.Value) onnx.Value {
	return m.CProj.Forward(activation(m.Activation, m.CFC.Forward(x)))
}
