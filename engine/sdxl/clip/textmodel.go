package clip

import (
	"fmt"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// TextModel is CLIP-L's text transformer in Hugging Face CLIPTextModel
// naming (the tensors under PrefixL), architecture.md §2.
type TextModel struct {
	Embeddings     *Embeddings   `sd:"embeddings"`
	Encoder        *Layers       `sd:"encoder"`
	FinalLayerNorm *nn.LayerNorm `sd:"final_layer_norm"`
	binding
}

// Embeddings are the token and position tables. The checkpoint's
// embeddings.position_ids buffer is deliberately not a field: positions are
// always 0..Positions−1 (architecture.md §0), so it is a KnownExtra.
type Embeddings struct {
	TokenEmbedding    *nn.Embedding `sd:"token_embedding"`
	PositionEmbedding *nn.Embedding `sd:"position_embedding"`
}

// Layers is the encoder's list of transformer layers.
type Layers struct {
	Layers []*EncoderLayer `sd:"layers"`
}

// EncoderLayer is one pre-LayerNorm transformer layer.
type EncoderLayer struct {
	SelfAttn   *SelfAttention `sd:"self_attn"`
	LayerNorm1 *nn.LayerNorm  `sd:"layer_norm1"`
	MLP        *MLP           `sd:"mlp"`
	LayerNorm2 *nn.LayerNorm  `sd:"layer_norm2"`
}

// SelfAttention is multi-head self-attention with separate, biased
// projections.
type SelfAttention struct {
	QProj   *nn.Linear `sd:"q_proj"`
	KProj   *nn.Linear `sd:"k_proj"`
	VProj   *nn.Linear `sd:"v_proj"`
	OutProj *nn.Linear `sd:"out_proj"`
	Heads   int64
}

// MLP is fc2(act(fc1(x))).
type MLP struct {
	FC1        *nn.Linear `sd:"fc1"`
	FC2        *nn.Linear `sd:"fc2"`
	Activation string
}

// NewTextModel makes CLIP-L's module tree with the expected shapes.
func NewTextModel(c Config) (*TextModel, error) {
	if err := c.Validate(L); err != nil {
		return nil, err
	}
	w := c.Width
	m := &TextModel{
		Embeddings: &Embeddings{
			TokenEmbedding:    nn.NewEmbedding(c.VocabSize, w),
			PositionEmbedding: nn.NewEmbedding(c.Positions, w),
		},
		Encoder:        &Layers{},
		FinalLayerNorm: nn.NewLayerNorm(w, c.LayerNormEps),
		binding:        binding{cfg: c},
	}
	for range c.Layers {
		m.Encoder.Layers = append(m.Encoder.Layers, &EncoderLayer{
			SelfAttn: &SelfAttention{
				QProj:   nn.NewLinear(w, w, true),
				KProj:   nn.NewLinear(w, w, true),
				VProj:   nn.NewLinear(w, w, true),
				OutProj: nn.NewLinear(w, w, true),
				Heads:   c.Heads,
			},
			LayerNorm1: nn.NewLayerNorm(w, c.LayerNormEps),
			MLP: &MLP{
				FC1:        nn.NewLinear(w, c.MLPWidth, true),
				FC2:        nn.NewLinear(c.MLPWidth, w, true),
				Activation: c.Activation,
			},
			LayerNorm2: nn.NewLayerNorm(w, c.LayerNormEps),
		})
	}
	return m, nil
}

// Kind is L.
func (m *TextModel) Kind() Kind { return L }

// Bind binds the module tree to the tensors under PrefixL.
func (m *TextModel) Bind(w *nn.Weights) error { return m.bind(L, w, m) }

// Build makes the graph; see Encoder.
func (m *TextModel) Build(o nn.BuildOptions) (*nn.Graph, error) {
	return build(L, &m.binding, o, m.Forward)
}

// Forward runs the text transformer on input_ids [B, T].
func (m *TextModel) Forward(ids onnx.Value) Outputs {
	b := ids.Builder()
	x := m.Embeddings.Forward(ids)
	mask := causalMask(b, m.cfg.Positions)
	var penultimate onnx.Value
	for i, l := range m.Encoder.Layers {
		// hidden_states[-2] of CLIPTextModel is the input of the last layer
		// (§2: SDXL's layer_idx 11 of 12).
		penultimate = x
		b.Push(fmt.Sprintf("layers.%d", i))
		x = l.Forward(x, mask)
		b.Pop()
	}
	hidden := m.FinalLayerNorm.Forward(x)
	return Outputs{Hidden: hidden, Penultimate: penultimate, Pooled: atEOS(hidden, ids)}
}

// Forward is token embedding + position embedding. The whole position
// table is added, which fixes the sequence length to Positions.
func (e *Embeddings) Forward(ids onnx.Value) onnx.Value {
	return e.TokenEmbedding.Forward(ids).Add(e.PositionEmbedding.Weight.Value(ids.Builder()))
}

// Forward is x += attn(ln1(x)); x += mlp(ln2(x)).
func (l *EncoderLayer) Forward(x, mask onnx.Value) onnx.Value {
	x = x.Add(l.SelfAttn.Forward(l.LayerNorm1.Forward(x), mask))
	return x.Add(l.MLP.Forward(l.LayerNorm2.Forward(x)))
}

// Forward is causal multi-head self-attention.
func (a *SelfAttention) Forward(x, mask onnx.Value) onnx.Value {
	headDim := a.QProj.Out / a.Heads
	h := nn.Attention(a.QProj.Forward(x), a.KProj.Forward(x), a.VProj.Forward(x), a.Heads, headDim, &mask)
	return a.OutProj.Forward(h)
}

// Forward is fc2(act(fc1(x))).
func (m *MLP) Forward(x onnx.Value) onnx.Value {
	return m.FC2.Forward(activation(m.Activation, m.FC1.Forward(x)))
}
