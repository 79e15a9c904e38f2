// Package vae builds SDXL's VAE (sgm AutoencoderKL, architecture.md §6) as
// ONNX graphs whose weights are read straight from a single-file
// checkpoint: the decoder (latent → image) and the encoder (image →
// moments), plus a cheap latent → RGB preview computed in Go.
package vae

import (
	"fmt"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// Model is the VAE's module tree under sgm names (relative to Prefix).
type Model struct {
	Encoder       *Encoder   `sd:"encoder"`
	Decoder       *Decoder   `sd:"decoder"`
	QuantConv     *nn.Conv2D `sd:"quant_conv"`
	PostQuantConv *nn.Conv2D `sd:"post_quant_conv"`

	Config Config
	// dir is the external-data folder of the weights bound by Bind.
	dir   string
	bound bool
}

// Encoder maps an image to the latent distribution's moments.
type Encoder struct {
	ConvIn  *nn.Conv2D    `sd:"conv_in"`
	Down    []*DownLevel  `sd:"down"`
	Mid     *Mid          `sd:"mid"`
	NormOut *nn.GroupNorm `sd:"norm_out"`
	ConvOut *nn.Conv2D    `sd:"conv_out"`
}

// DownLevel is one resolution level of the encoder.
type DownLevel struct {
	Block      []*ResnetBlock `sd:"block"`
	Downsample *Resample      `sd:"downsample"` // nil on the last level
}

// Decoder maps a latent to an image.
type Decoder struct {
	ConvIn *nn.Conv2D `sd:"conv_in"`
	Mid    *Mid       `sd:"mid"`
	// Up is indexed by resolution level as in the checkpoint: Up[0] is the
	// finest. The decoder runs it from the last entry to the first.
	Up      []*UpLevel    `sd:"up"`
	NormOut *nn.GroupNorm `sd:"norm_out"`
	ConvOut *nn.Conv2D    `sd:"conv_out"`
}

// UpLevel is one resolution level of the decoder.
type UpLevel struct {
	Block    []*ResnetBlock `sd:"block"`
	Upsample *Resample      `sd:"upsample"` // nil on level 0
}

// Resample is the convolution of a down- or upsampler.
type Resample struct {
	Conv *nn.Conv2D `sd:"conv"`
}

// Mid is the middle of the encoder and the decoder: resnet, attention,
// resnet at the coarsest resolution.
type Mid struct {
	Block1 *ResnetBlock `sd:"block_1"`
	Attn1  *AttnBlock   `sd:"attn_1"`
	Block2 *ResnetBlock `sd:"block_2"`
}

// ResnetBlock is sgm's ResnetBlock without a time embedding.
type ResnetBlock struct {
	Norm1       *nn.GroupNorm `sd:"norm1"`
	Conv1       *nn.Conv2D    `sd:"conv1"`
	Norm2       *nn.GroupNorm `sd:"norm2"`
	Conv2       *nn.Conv2D    `sd:"conv2"`
	NinShortcut *nn.Conv2D    `sd:"nin_shortcut"` // only when channels change
}

// AttnBlock is single-head self-attention over all H·W positions. Its
// projections are stored as 1×1 convolution kernels [C,C,1,1]; they are
// bound as [C,C] matrices and applied as linear layers on [B, H·W, C].
type AttnBlock struct {
	Norm    *nn.GroupNorm `sd:"norm"`
	Q       *nn.Linear    `sd:"q"`
	K       *nn.Linear    `sd:"k"`
	V       *nn.Linear    `sd:"v"`
	ProjOut *nn.Linear    `sd:"proj_out"`
	C       int64
}

// New returns the module tree for cfg with every parameter's expected
// shape. cfg must be valid (SDXL and ParseConfig return valid configs); an
// invalid one is a programming error and panics.
func New(cfg Config) *Model {
	if err := cfg.Validate(); err != nil {
		panic("vae.New: " + err.Error())
	}
	boc := cfg.BlockOutChannels
	levels := len(boc)
	top := boc[levels-1]
	g := cfg.NormGroups
	m := &Model{Config: cfg}

	enc := &Encoder{ConvIn: nn.NewConv2D(cfg.InChannels, boc[0], 3, 1, 1)}
	in := boc[0]
	for i, out := range boc {
		lvl := &DownLevel{}
		for range cfg.LayersPerBlock {
			lvl.Block = append(lvl.Block, newResnet(in, out, g))
			in = out
		}
		if i != levels-1 {
			// Zero-pad right and bottom by one, then a stride-2 3×3 conv
			// with no padding (architecture.md §6, Downsample): ONNX Conv
			// takes the asymmetric pads [top, left, bottom, right] itself.
			c := nn.NewConv2D(out, out, 3, 2, 0)
			c.Pads = [4]int64{0, 0, 1, 1}
			lvl.Downsample = &Resample{Conv: c}
		}
		enc.Down = append(enc.Down, lvl)
	}
	enc.Mid = newMid(top, g)
	enc.NormOut = nn.NewGroupNorm(g, top, Eps)
	enc.ConvOut = nn.NewConv2D(top, 2*cfg.LatentChannels, 3, 1, 1)
	m.Encoder = enc

	dec := &Decoder{ConvIn: nn.NewConv2D(cfg.LatentChannels, top, 3, 1, 1), Mid: newMid(top, g)}
	dec.Up = make([]*UpLevel, levels)
	in = top
	for i := levels - 1; i >= 0; i-- {
		out := boc[i]
		lvl := &UpLevel{}
		for range cfg.LayersPerBlock + 1 {
			lvl.Block = append(lvl.Block, newResnet(in, out, g))
			in = out
		}
		if i != 0 {
			lvl.Upsample = &Resample{Conv: nn.NewConv2D(out, out, 3, 1, 1)}
		}
		dec.Up[i] = lvl
	}
	dec.NormOut = nn.NewGroupNorm(g, boc[0], Eps)
	dec.ConvOut = nn.NewConv2D(boc[0], cfg.OutChannels, 3, 1, 1)
	m.Decoder = dec

	z2 := 2 * cfg.LatentChannels
	m.QuantConv = nn.NewConv2D(z2, z2, 1, 1, 0)
	m.PostQuantConv = nn.NewConv2D(cfg.LatentChannels, cfg.LatentChannels, 1, 1, 0)
	return m
}

func newResnet(in, out, groups int64) *ResnetBlock {
	r := &ResnetBlock{
		Norm1: nn.NewGroupNorm(groups, in, Eps),
		Conv1: nn.NewConv2D(in, out, 3, 1, 1),
		Norm2: nn.NewGroupNorm(groups, out, Eps),
		Conv2: nn.NewConv2D(out, out, 3, 1, 1),
	}
	if in != out {
		r.NinShortcut = nn.NewConv2D(in, out, 1, 1, 0)
	}
	return r
}

func newMid(c, groups int64) *Mid {
	return &Mid{
		Block1: newResnet(c, c, groups),
		Attn1: &AttnBlock{
			Norm:    nn.NewGroupNorm(groups, c, Eps),
			Q:       nn.NewLinear(c, c, true),
			K:       nn.NewLinear(c, c, true),
			V:       nn.NewLinear(c, c, true),
			ProjOut: nn.NewLinear(c, c, true),
			C:       c,
		},
		Block2: newResnet(c, c, groups),
	}
}

// Bind binds every parameter to the checkpoint tensor under Prefix. A
// missing tensor or one of the wrong shape is reported in an *nn.BindError
// naming the tensor and the shape expected. Tensors under Prefix that the
// model does not use are not an error here; see Unknown.
func (m *Model) Bind(w *nn.Weights) error {
	if err := w.Bind(Prefix, m); err != nil {
		return fmt.Errorf("bind VAE: %w", err)
	}
	m.dir = w.Dir()
	m.bound = true
	return nil
}

// knownExtras are tensors that real checkpoints carry under Prefix and that
// inference does not need: the training loss (LPIPS and discriminator
// weights) of the original autoencoder checkpoints.
var knownExtras = []string{Prefix + "loss."}

// Unknown lists, sorted, the tensors under Prefix that a bound model left
// unused and that are not known extras. A non-empty list means the
// checkpoint holds a VAE of another layout than the one configured.
func (m *Model) Unknown(w *nn.Weights) []string {
	var out []string
	for _, k := range w.Unused(Prefix) {
		known := false
		for _, e := range knownExtras {
			if strings.HasPrefix(k, e) {
				known = true
				break
			}
		}
		if !known {
			out = append(out, k)
		}
	}
	return out
}

// Decode maps a latent z (already divided by the scaling factor) to an
// image, raw and not clamped (about [−1, 1] for real weights).
func (m *Model) Decode(z onnx.Value) onnx.Value {
	b := z.Builder()
	b.Push("post_quant_conv")
	z = m.PostQuantConv.Forward(z)
	b.Pop()
	return m.Decoder.Forward(z)
}

// Encode maps an image in [−1, 1] to the moments of the latent
// distribution: channels [0, L) are the mean, [L, 2L) the log-variance.
func (m *Model) Encode(x onnx.Value) onnx.Value {
	b := x.Builder()
	h := m.Encoder.Forward(x)
	b.Push("quant_conv")
	defer b.Pop()
	return m.QuantConv.Forward(h)
}

// Forward runs the decoder: conv_in, mid, up levels from coarsest (the last
// index) to finest, norm_out, swish, conv_out (architecture.md §6, "Decode
// path": the processing order is up.3 first).
func (d *Decoder) Forward(z onnx.Value) onnx.Value {
	b := z.Builder()
	b.Push("decoder.conv_in")
	h := d.ConvIn.Forward(z)
	b.Pop()
	h = d.Mid.Forward(h, "decoder.mid")
	for i := len(d.Up) - 1; i >= 0; i-- {
		up := d.Up[i]
		for j, r := range up.Block {
			h = r.Forward(h, fmt.Sprintf("decoder.up.%d.block.%d", i, j))
		}
		if up.Upsample != nil {
			b.Push(fmt.Sprintf("decoder.up.%d.upsample", i))
			h = up.Upsample.Conv.Forward(h.UpsampleNearest2x())
			b.Pop()
		}
	}
	b.Push("decoder.out")
	defer b.Pop()
	return d.ConvOut.Forward(d.NormOut.Forward(h).SiLU())
}

// Forward runs the encoder up to conv_out (before quant_conv).
func (e *Encoder) Forward(x onnx.Value) onnx.Value {
	b := x.Builder()
	b.Push("encoder.conv_in")
	h := e.ConvIn.Forward(x)
	b.Pop()
	for i, down := range e.Down {
		for j, r := range down.Block {
			h = r.Forward(h, fmt.Sprintf("encoder.down.%d.block.%d", i, j))
		}
		if down.Downsample != nil {
			b.Push(fmt.Sprintf("encoder.down.%d.downsample", i))
			h = down.Downsample.Conv.Forward(h)
			b.Pop()
		}
	}
	h = e.Mid.Forward(h, "encoder.mid")
	b.Push("encoder.out")
	defer b.Pop()
	return e.ConvOut.Forward(e.NormOut.Forward(h).SiLU())
}

// Forward runs block_1, attn_1, block_2; scope names the graph nodes.
func (m *Mid) Forward(x onnx.Value, scope string) onnx.Value {
	x = m.Block1.Forward(x, scope+".block_1")
	x = m.Attn1.Forward(x, scope+".attn_1")
	return m.Block2.Forward(x, scope+".block_2")
}

// Forward is x + conv2(swish(norm2(conv1(swish(norm1(x)))))), with x
// through nin_shortcut when the channel count changes. Dropout is the
// identity at inference.
func (r *ResnetBlock) Forward(x onnx.Value, scope string) onnx.Value {
	b := x.Builder()
	b.Push(scope)
	defer b.Pop()
	h := r.Conv1.Forward(r.Norm1.Forward(x).SiLU())
	h = r.Conv2.Forward(r.Norm2.Forward(h).SiLU())
	if r.NinShortcut != nil {
		x = r.NinShortcut.Forward(x)
	}
	return x.Add(h)
}

// Forward is x + proj_out(softmax(q·kᵀ/√C)·v) over the H·W positions of
// the group-normalised x, one head of all C channels (architecture.md §6,
// "Mid attention").
func (a *AttnBlock) Forward(x onnx.Value, scope string) onnx.Value {
	b := x.Builder()
	b.Push(scope)
	defer b.Pop()
	shape := x.Shape()
	// [B, C, H, W] → [B, H·W, C]: positions become the sequence.
	h := a.Norm.Forward(x).Reshape(0, a.C, -1).Transpose(0, 2, 1)
	out := nn.Attention(a.Q.Forward(h), a.K.Forward(h), a.V.Forward(h), 1, a.C, nil)
	out = a.ProjOut.Forward(out).Transpose(0, 2, 1).ReshapeTo(shape)
	return x.Add(out)
}
