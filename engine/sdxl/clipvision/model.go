// Package clipvision builds the CLIP vision encoder that IP-Adapters take
// their image features from (transformers CLIPVisionModelWithProjection, the
// layout of h94/IP-Adapter's image_encoder/model.safetensors: OpenCLIP
// ViT-H/14 for the *_vit-h SDXL adapters, ViT-bigG/14 for ip-adapter_sdxl),
// and prepares images for it exactly as transformers' CLIPImageProcessor
// does with Pillow.
//
// The graph takes pixel_values [batch, 3, 224, 224] and gives image_embeds
// (the projected, post-LayerNorm class token: what plain adapters use) and
// penultimate_hidden_state (hidden_states[-2], all tokens, no post-LayerNorm:
// what "plus" adapters use), ip-adapter.md §5.
package clipvision

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/sdxl/clip"
)

// Checkpoint prefixes: the transformer and the projection sit side by side
// at the root of the encoder's file.
const (
	PrefixVision     = "vision_model."
	PrefixProjection = "visual_projection."
)

// KnownExtras are keys some encoder files carry that hold no weight: the
// position_ids buffer older transformers versions saved (positions are
// always 0..Tokens−1).
var KnownExtras = []string{PrefixVision + "embeddings.position_ids"}

// Graph input and output names.
const (
	InputPixels       = "pixel_values"             // [B, 3, S, S]
	OutputImageEmbeds = "image_embeds"             // [B, ProjectionDim]
	OutputPenultimate = "penultimate_hidden_state" // [B, Tokens, Width]
	OutputLastHidden  = "last_hidden_state"        // [B, Tokens, Width]
	OutputPooled      = "pooler_output"            // [B, Width]
)

// Outputs lists every output a graph can have, in Build's default order.
var Outputs = []string{OutputImageEmbeds, OutputPenultimate, OutputLastHidden, OutputPooled}

// Model is CLIPVisionModelWithProjection: the vision transformer and the
// bias-free projection of its pooled output.
type Model struct {
	Vision     *Transformer `sd:"vision_model"`
	Projection *nn.Linear   `sd:"visual_projection"`

	Config Config
	dir    string
	bound  bool
}

// Transformer is CLIPVisionTransformer. pre_layrnorm is spelled as
// transformers spells it.
type Transformer struct {
	Embeddings    *Embeddings   `sd:"embeddings"`
	PreLayerNorm  *nn.LayerNorm `sd:"pre_layrnorm"`
	Encoder       *clip.Layers  `sd:"encoder"`
	PostLayerNorm *nn.LayerNorm `sd:"post_layernorm"`
}

// Embeddings are the patch convolution (no bias), the class token and the
// learned position table, whose row 0 belongs to the class token.
type Embeddings struct {
	PatchEmbedding    *nn.Conv2D    `sd:"patch_embedding"`
	ClassEmbedding    *nn.Param     `sd:"class_embedding"`
	PositionEmbedding *nn.Embedding `sd:"position_embedding"`
}

// New makes the module tree with every parameter's expected shape. The
// encoder layers are those of package clip's CLIPTextModel: the same
// transformers names and shapes.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	w := c.Width
	patch := nn.NewConv2D(c.Channels, w, c.PatchSize, c.PatchSize, 0)
	patch.Bias = nil
	m := &Model{
		Vision: &Transformer{
			Embeddings: &Embeddings{
				PatchEmbedding:    patch,
				ClassEmbedding:    nn.NewParam(w),
				PositionEmbedding: nn.NewEmbedding(c.Tokens(), w),
			},
			PreLayerNorm:  nn.NewLayerNorm(w, c.LayerNormEps),
			Encoder:       &clip.Layers{},
			PostLayerNorm: nn.NewLayerNorm(w, c.LayerNormEps),
		},
		Projection: nn.NewLinear(w, c.ProjectionDim, false),
		Config:     c,
	}
	for range c.Layers {
		m.Vision.Encoder.Layers = append(m.Vision.Encoder.Layers, &clip.EncoderLayer{
			SelfAttn: &clip.SelfAttention{
				QProj:   nn.NewLinear(w, w, true),
				KProj:   nn.NewLinear(w, w, true),
				VProj:   nn.NewLinear(w, w, true),
				OutProj: nn.NewLinear(w, w, true),
				Heads:   c.Heads,
			},
			LayerNorm1: nn.NewLayerNorm(w, c.LayerNormEps),
			MLP: &clip.MLP{
				FC1:        nn.NewLinear(w, c.MLPWidth, true),
				FC2:        nn.NewLinear(c.MLPWidth, w, true),
				Activation: c.Activation,
			},
			LayerNorm2: nn.NewLayerNorm(w, c.LayerNormEps),
		})
	}
	return m, nil
}

// Bind binds every parameter to the tensors under PrefixVision and
// PrefixProjection. Problems come back together in one *nn.BindError,
// including tensors under PrefixVision this configuration has no place for
// (another depth or layout). Keys outside both prefixes are ignored, so a
// full CLIPModel file (with its text_model.*) binds too.
func (m *Model) Bind(w *nn.Weights) error {
	m.bound = false
	err := w.Bind("", m)
	var be *nn.BindError
	if err != nil && !errors.As(err, &be) {
		return fmt.Errorf("bind image encoder: %w", err)
	}
	if be == nil {
		be = &nn.BindError{}
	}
	be.Prefix = PrefixVision + "*, " + PrefixProjection
	known := map[string]bool{}
	if err := nn.Walk("", m, func(key string, _ *nn.Param) { known[key] = true }); err != nil {
		return fmt.Errorf("bind image encoder: %w", err)
	}
	for _, k := range w.Unused(PrefixVision, PrefixProjection) {
		if known[k] || slices.Contains(KnownExtras, k) {
			continue
		}
		t, _, _ := w.Lookup(k)
		be.Other = append(be.Other, fmt.Sprintf("%s %v: unexpected tensor, this %s has no such layer", k, t.Shape, m.Config.Name()))
	}
	if len(be.Missing)+len(be.Mismatch)+len(be.Other) > 0 {
		return fmt.Errorf("bind image encoder (%s): %w", m.Config.Name(), be)
	}
	m.dir, m.bound = w.Dir(), true
	return nil
}

// Build makes the graph with input pixel_values and the named outputs (all
// of Outputs when none are named). A graph asked only for the penultimate
// state leaves the last layer out.
func (m *Model) Build(o nn.BuildOptions, outputs ...string) (*nn.Graph, error) {
	if !m.bound {
		return nil, errors.New("build image encoder: weights not bound (call Bind first)")
	}
	if len(outputs) == 0 {
		outputs = Outputs
	}
	for _, name := range outputs {
		if !slices.Contains(Outputs, name) {
			return nil, fmt.Errorf("build image encoder: unknown output %q (want %s)", name, strings.Join(Outputs, ", "))
		}
	}
	c := m.Config
	b := nn.NewBuilder("clip_vision", m.dir, o)
	pixels := nn.Input(b, InputPixels, nn.Dyn("batch"), nn.Fixed(c.Channels), nn.Fixed(c.ImageSize), nn.Fixed(c.ImageSize))
	onlyPenultimate := len(outputs) == 1 && outputs[0] == OutputPenultimate
	out := m.Forward(pixels, !onlyPenultimate)
	for _, name := range outputs {
		nn.Output(b, out[name], name)
	}
	return &nn.Graph{Name: "clip_vision", Model: b.Model(), Inputs: []string{InputPixels}, Outputs: slices.Clone(outputs), ExternalDir: m.dir}, nil
}

// Forward runs the encoder on normalised pixels [B, C, S, S] and returns
// its outputs by name. Without full, only the penultimate state is made.
func (m *Model) Forward(pixels onnx.Value, full bool) map[string]onnx.Value {
	b := pixels.Builder()
	v := m.Vision
	x := v.PreLayerNorm.Forward(v.Embeddings.Forward(pixels))
	layers := v.Encoder.Layers
	// hidden_states[0] is the pre-LayerNorm output and hidden_states[i]
	// layer i's output, so hidden_states[-2] is what enters the last layer.
	for i, l := range layers[:len(layers)-1] {
		b.Push(fmt.Sprintf("layers.%d", i))
		x = encoderLayer(l, x)
		b.Pop()
	}
	out := map[string]onnx.Value{OutputPenultimate: x}
	if !full {
		return out
	}
	b.Push(fmt.Sprintf("layers.%d", len(layers)-1))
	last := encoderLayer(layers[len(layers)-1], x)
	b.Pop()
	// The post-LayerNorm applies to the class token only; last_hidden_state
	// is left without it (transformers' CLIPVisionTransformer).
	pooled := v.PostLayerNorm.Forward(last.Gather(b.ConstInt64(0), 1).Squeeze(1))
	out[OutputLastHidden] = last
	out[OutputPooled] = pooled
	out[OutputImageEmbeds] = m.Projection.Forward(pooled)
	return out
}

// Forward embeds pixels [B, C, S, S] as [B, Tokens, Width]: the class token
// then the patches in row-major order, plus the position table.
func (e *Embeddings) Forward(pixels onnx.Value) onnx.Value {
	b := pixels.Builder()
	patches := e.PatchEmbedding.Forward(pixels)            // B, W, g, g
	patches = patches.Reshape(0, 0, -1).Transpose(0, 2, 1) // B, g², W
	batch := pixels.Shape().Slice(0, 0, 1)
	cls := e.ClassEmbedding.Value(b).Reshape(1, 1, -1)
	cls = b.Op("Expand", []onnx.Value{cls, onnx.Concat(0, batch, b.ConstInt64(1, 1))}) // B, 1, W
	return onnx.Concat(1, cls, patches).Add(e.PositionEmbedding.Weight.Value(b))
}

// encoderLayer is x += attn(ln1(x)); x += mlp(ln2(x)) with unmasked
// attention: clip.EncoderLayer's weights, without the text model's causal
// mask.
func encoderLayer(l *clip.EncoderLayer, x onnx.Value) onnx.Value {
	a := l.SelfAttn
	h := l.LayerNorm1.Forward(x)
	h = nn.Attention(a.QProj.Forward(h), a.KProj.Forward(h), a.VProj.Forward(h), a.Heads, a.QProj.Out/a.Heads, nil)
	x = x.Add(a.OutProj.Forward(h))
	return x.Add(l.MLP.Forward(l.LayerNorm2.Forward(x)))
}
