// Package unet builds SDXL's denoising UNet from a single-file checkpoint in
// Stability's sgm naming (model.diffusion_model.*): a Go module tree that
// mirrors sgm's openaimodel.UNetModel, bound to the checkpoint's tensors by
// name, whose Forward methods emit the ONNX graph.
//
// The facts come from the project's reference, architecture.md §1 (UNet)
// and §4 (conditioning); sizes come from a Config (SDXL by default, or a
// diffusers config.json), because the golden test models are tiny copies.
package unet

import (
	"fmt"
	"slices"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// Prefix is the namespace of the UNet's tensors in an sgm checkpoint.
const Prefix = "model.diffusion_model."

// Model is the UNet: sgm's module tree, with checkpoint names in the tags.
type Model struct {
	TimeEmbed    *EmbedMLP      `sd:"time_embed"`
	LabelEmb     *EmbedMLP      `sd:"label_emb.0"`
	InputBlocks  []*InputBlock  `sd:"input_blocks"`
	MiddleBlock  *MiddleBlock   `sd:"middle_block"`
	OutputBlocks []*OutputBlock `sd:"output_blocks"`
	OutNorm      *nn.GroupNorm  `sd:"out.0"`
	OutConv      *nn.Conv2D     `sd:"out.2"`

	Config Config
	bound  bool
}

// EmbedMLP is Linear → SiLU → Linear, sgm's time_embed and label_emb.0
// (the SiLU is index 1 and has no weights).
type EmbedMLP struct {
	In  *nn.Linear `sd:"0"`
	Out *nn.Linear `sd:"2"`
}

// InputBlock is one entry of input_blocks: the stem convolution (block 0),
// a ResBlock optionally followed by a SpatialTransformer, or a Downsample.
// Exactly one of the fields tagged "0" is set.
type InputBlock struct {
	Stem *nn.Conv2D          `sd:"0"`
	Res  *ResBlock           `sd:"0"`
	Attn *SpatialTransformer `sd:"1"`
	Down *Downsample         `sd:"0"`
}

// MiddleBlock is ResBlock, SpatialTransformer, ResBlock.
type MiddleBlock struct {
	Res1 *ResBlock           `sd:"0"`
	Attn *SpatialTransformer `sd:"1"`
	Res2 *ResBlock           `sd:"2"`
}

// OutputBlock is one entry of output_blocks: a ResBlock over the
// concatenation of h and a skip, an optional SpatialTransformer and, at the
// end of a level, an Upsample. sgm numbers the Upsample after whatever
// precedes it, so it sits at index 2 behind a transformer and at index 1
// otherwise; exactly one of Up and UpAt1 may be set.
type OutputBlock struct {
	Res   *ResBlock           `sd:"0"`
	Attn  *SpatialTransformer `sd:"1"`
	UpAt1 *Upsample           `sd:"1"`
	Up    *Upsample           `sd:"2"`
}

// ResBlock is sgm's ResBlock without scale-shift norm (architecture.md §1).
type ResBlock struct {
	InNorm  *nn.GroupNorm `sd:"in_layers.0"`
	InConv  *nn.Conv2D    `sd:"in_layers.2"`
	Emb     *nn.Linear    `sd:"emb_layers.1"`
	OutNorm *nn.GroupNorm `sd:"out_layers.0"`
	OutConv *nn.Conv2D    `sd:"out_layers.3"`
	// Skip is the 1×1 convolution used when the channel count changes;
	// nil means identity.
	Skip *nn.Conv2D `sd:"skip_connection"`
}

// Downsample is a 3×3 convolution with stride 2 and symmetric padding 1.
type Downsample struct {
	Op *nn.Conv2D `sd:"op"`
}

// Upsample is nearest-neighbour ×2 followed by a 3×3 convolution.
type Upsample struct {
	Conv *nn.Conv2D `sd:"conv"`
}

// SpatialTransformer is sgm's linear-projection SpatialTransformer.
type SpatialTransformer struct {
	Norm    *nn.GroupNorm       `sd:"norm"`
	ProjIn  *nn.Linear          `sd:"proj_in"`
	Blocks  []*TransformerBlock `sd:"transformer_blocks"`
	ProjOut *nn.Linear          `sd:"proj_out"`
}

// TransformerBlock is BasicTransformerBlock: self-attention,
// cross-attention on the text context, GEGLU feed-forward, each pre-norm
// with a residual.
type TransformerBlock struct {
	Attn1 *Attention    `sd:"attn1"`
	Attn2 *Attention    `sd:"attn2"`
	FF    *FeedForward  `sd:"ff"`
	Norm1 *nn.LayerNorm `sd:"norm1"`
	Norm2 *nn.LayerNorm `sd:"norm2"`
	Norm3 *nn.LayerNorm `sd:"norm3"`
}

// Attention is multi-head attention with bias-free q/k/v projections and
// a biased output projection.
type Attention struct {
	ToQ   *nn.Linear `sd:"to_q"`
	ToK   *nn.Linear `sd:"to_k"`
	ToV   *nn.Linear `sd:"to_v"`
	ToOut *nn.Linear `sd:"to_out.0"`
	Heads int64
	// HeadDim is the width of one head.
	HeadDim int64
	// Extra holds further attention terms that share this layer's
	// queries; their outputs are added to the attention output before
	// to_out. IP-Adapter's decoupled cross-attention plugs in here. Nil by
	// default.
	Extra []ExtraAttention
}

// ExtraAttention is a term added inside an attention layer, after the
// softmax attention and before to_out: IP-Adapter's
// scale · attention(q, to_k_ip(image tokens), to_v_ip(image tokens)).
// Implementations read their own weights and may declare their own graph
// inputs on q's builder (memoised with Builder.Memo so one input serves
// every layer); Build lists every declared input in the graph's inputs.
type ExtraAttention interface {
	// Attend returns a [B, T, heads·headDim] term for the layer's
	// projected queries q [B, T, heads·headDim].
	Attend(q onnx.Value, heads, headDim int64) onnx.Value
}

// FeedForward is the GEGLU feed-forward: ff.net.0.proj (C → 8C), value ·
// GELU(gate), ff.net.2 (4C → C); net.1 is dropout.
type FeedForward struct {
	Proj *nn.Linear `sd:"net.0.proj"`
	Out  *nn.Linear `sd:"net.2"`
}

// New makes the module tree for a configuration, with every parameter's
// expected shape, ready to be bound. The configuration must be valid.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("unet config: %w", err)
	}
	emb := c.EmbedDim()
	m := &Model{
		Config:    c,
		TimeEmbed: &EmbedMLP{In: nn.NewLinear(c.TimeDim(), emb, true), Out: nn.NewLinear(emb, emb, true)},
		LabelEmb:  &EmbedMLP{In: nn.NewLinear(c.AdmChannels, emb, true), Out: nn.NewLinear(emb, emb, true)},
	}
	resBlock := func(in, out int64) *ResBlock {
		r := &ResBlock{
			InNorm:  nn.NewGroupNorm(c.Groups, in, c.Eps),
			InConv:  nn.NewConv2D(in, out, 3, 1, 1),
			Emb:     nn.NewLinear(emb, out, true),
			OutNorm: nn.NewGroupNorm(c.Groups, out, c.Eps),
			OutConv: nn.NewConv2D(out, out, 3, 1, 1),
		}
		if in != out {
			r.Skip = nn.NewConv2D(in, out, 1, 1, 0)
		}
		return r
	}
	transformer := func(level, depth int) *SpatialTransformer {
		if depth == 0 {
			return nil
		}
		return newSpatialTransformer(c.Channels[level], c.Heads[level], c.ContextDim, depth, c.Groups)
	}

	// The way down; chans records each input block's output width, the
	// skips the way up consumes last-in first-out.
	ch := c.Channels[0]
	m.InputBlocks = append(m.InputBlocks, &InputBlock{Stem: nn.NewConv2D(c.InChannels, ch, 3, 1, 1)})
	chans := []int64{ch}
	for l, out := range c.Channels {
		for range c.ResBlocks {
			m.InputBlocks = append(m.InputBlocks, &InputBlock{Res: resBlock(ch, out), Attn: transformer(l, c.Depth[l])})
			ch = out
			chans = append(chans, ch)
		}
		if l < c.Levels()-1 {
			m.InputBlocks = append(m.InputBlocks, &InputBlock{Down: &Downsample{Op: nn.NewConv2D(ch, ch, 3, 2, 1)}})
			chans = append(chans, ch)
		}
	}
	last := c.Levels() - 1
	m.MiddleBlock = &MiddleBlock{
		Res1: resBlock(ch, ch),
		Attn: newSpatialTransformer(ch, c.Heads[last], c.ContextDim, c.MidDepth, c.Groups),
		Res2: resBlock(ch, ch),
	}
	for l := last; l >= 0; l-- {
		out := c.Channels[l]
		for i := 0; i <= c.ResBlocks; i++ {
			skip := chans[len(chans)-1]
			chans = chans[:len(chans)-1]
			ob := &OutputBlock{Res: resBlock(ch+skip, out), Attn: transformer(l, c.UpDepth[l])}
			ch = out
			if l > 0 && i == c.ResBlocks {
				up := &Upsample{Conv: nn.NewConv2D(ch, ch, 3, 1, 1)}
				if ob.Attn != nil {
					ob.Up = up
				} else {
					ob.UpAt1 = up
				}
			}
			m.OutputBlocks = append(m.OutputBlocks, ob)
		}
	}
	m.OutNorm = nn.NewGroupNorm(c.Groups, ch, c.Eps)
	m.OutConv = nn.NewConv2D(ch, c.OutChannels, 3, 1, 1)
	return m, nil
}

func newSpatialTransformer(ch, heads, ctx int64, depth int, groups int64) *SpatialTransformer {
	st := &SpatialTransformer{
		// eps 1e-6 here, unlike the ResBlocks (architecture.md §1).
		Norm:    nn.NewGroupNorm(groups, ch, 1e-6),
		ProjIn:  nn.NewLinear(ch, ch, true),
		ProjOut: nn.NewLinear(ch, ch, true),
	}
	attn := func(kv int64) *Attention {
		return &Attention{
			ToQ:     nn.NewLinear(ch, ch, false),
			ToK:     nn.NewLinear(kv, ch, false),
			ToV:     nn.NewLinear(kv, ch, false),
			ToOut:   nn.NewLinear(ch, ch, true),
			Heads:   heads,
			HeadDim: ch / heads,
		}
	}
	for range depth {
		st.Blocks = append(st.Blocks, &TransformerBlock{
			Attn1: attn(ch),
			Attn2: attn(ctx),
			FF:    &FeedForward{Proj: nn.NewLinear(ch, 8*ch, true), Out: nn.NewLinear(4*ch, ch, true)},
			Norm1: nn.NewLayerNorm(ch, 1e-5),
			Norm2: nn.NewLayerNorm(ch, 1e-5),
			Norm3: nn.NewLayerNorm(ch, 1e-5),
		})
	}
	return st
}

// Bind binds every parameter to the checkpoint tensor of the same sgm name
// under Prefix. All problems are reported together in one *nn.BindError:
// missing tensors and wrong shapes (with the expected shape), proj_in /
// proj_out stored as 1×1 convolutions (an SD1.x-layout UNet, which
// nn.Weights would otherwise accept as an equivalent matrix), and tensors
// under Prefix that this configuration has no place for (another
// architecture, or a config that does not match the file).
func (m *Model) Bind(w *nn.Weights) error {
	err := w.Bind(Prefix, m)
	be, ok := err.(*nn.BindError)
	if err != nil && !ok {
		return fmt.Errorf("bind unet: %w", err)
	}
	if be == nil {
		be = &nn.BindError{Prefix: Prefix}
	}
	m.visitTransformers(func(st *SpatialTransformer) {
		for _, l := range []*nn.Linear{st.ProjIn, st.ProjOut} {
			if p := l.Weight; p.Tensor != nil && len(p.Tensor.Shape) != len(p.Shape) {
				be.Mismatch = append(be.Mismatch, fmt.Sprintf("%s: shape %v, expected %v (a 1×1 convolution: the checkpoint's UNet has use_linear_projection false, like SD1.x)",
					p.Key, p.Tensor.Shape, p.Shape))
			}
		}
	})
	known := map[string]bool{}
	if err := nn.Walk(Prefix, m, func(key string, _ *nn.Param) { known[key] = true }); err != nil {
		return fmt.Errorf("bind unet: %w", err)
	}
	for _, k := range w.Unused(Prefix) {
		if known[k] {
			continue // a tensor of ours, already reported for its shape or dtype
		}
		t, _, _ := w.Lookup(k)
		be.Other = append(be.Other, fmt.Sprintf("%s %v: unexpected tensor, this UNet configuration has no such layer", k, t.Shape))
	}
	if len(be.Missing)+len(be.Mismatch)+len(be.Other) > 0 {
		return be
	}
	m.bound = true
	return nil
}

// visitTransformers calls fn for every SpatialTransformer in sgm order.
func (m *Model) visitTransformers(fn func(*SpatialTransformer)) {
	for _, ib := range m.InputBlocks {
		if ib.Attn != nil {
			fn(ib.Attn)
		}
	}
	fn(m.MiddleBlock.Attn)
	for _, ob := range m.OutputBlocks {
		if ob.Attn != nil {
			fn(ob.Attn)
		}
	}
}

// CrossAttentions returns every cross-attention layer (attn2) in the order
// of diffusers' UNet2DConditionModel.attn_processors: down blocks, then up
// blocks, then the middle block last. The j-th entry is the processor
// numbered 2j+1 there, the numbering IP-Adapter files use.
func (m *Model) CrossAttentions() []*Attention {
	var out []*Attention
	add := func(st *SpatialTransformer) {
		if st == nil {
			return
		}
		for _, tb := range st.Blocks {
			out = append(out, tb.Attn2)
		}
	}
	for _, ib := range m.InputBlocks {
		add(ib.Attn)
	}
	for _, ob := range m.OutputBlocks {
		add(ob.Attn)
	}
	add(m.MiddleBlock.Attn)
	return slices.Clip(out)
}
