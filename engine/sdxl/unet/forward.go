package unet

import (
	"errors"
	"math"
	"strconv"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
)

// Names of the graph's inputs and output (those of the golden io files).
const (
	InputSample  = "sample"                // [B, in_channels, H, W]
	InputTime    = "timestep"              // [B], float: fractional timesteps are fine
	InputContext = "encoder_hidden_states" // [B, tokens, context_dim]
	InputPooled  = "text_embeds"           // [B, pooled]
	InputTimeIDs = "time_ids"              // [B, TimeIDs]
	Output       = "out"                   // [B, out_channels, H, W]
)

// Build makes the UNet graph. Batch, height, width and token count are
// dynamic; all inputs and the output are float32 whatever o says. Graph
// inputs are the five above plus any that ExtraAttention hooks declare.
func (m *Model) Build(w *nn.Weights, o nn.BuildOptions) (*nn.Graph, error) {
	if !m.bound {
		return nil, errors.New("build unet: the model has not been bound to a checkpoint")
	}
	c := m.Config
	b := nn.NewBuilder("unet", w.Dir(), o)
	batch := nn.Dyn("batch")
	sample := nn.Input(b, InputSample, batch, nn.Fixed(c.InChannels), nn.Dyn("height"), nn.Dyn("width"))
	// The timestep and time ids stay float32 even in an fp16 graph: fp16
	// cannot even hold 801.5 or 1344 + a fraction, and their sinusoids are
	// computed before any cast (see sinusoid).
	t := b.Input(InputTime, onnx.Float, batch)
	ctx := nn.Input(b, InputContext, batch, nn.Dyn("tokens"), nn.Fixed(c.ContextDim))
	pooled := nn.Input(b, InputPooled, batch, nn.Fixed(c.PooledDim()))
	ids := b.Input(InputTimeIDs, onnx.Float, batch, nn.Fixed(int64(c.TimeIDs)))

	out := m.Forward(sample, t, ctx, pooled, ids)
	nn.Output(b, out, Output)

	model := b.Model()
	g := &nn.Graph{Name: "unet", Model: model, Outputs: []string{Output}, ExternalDir: w.Dir()}
	for _, in := range model.Graph.Inputs {
		g.Inputs = append(g.Inputs, in.Name)
	}
	return g, nil
}

// Forward is sgm's UNetModel.forward. sample, ctx and pooled are in the
// builder's compute type; t [B] and ids [B, TimeIDs] are float32.
func (m *Model) Forward(sample, t, ctx, pooled, ids onnx.Value) onnx.Value {
	b := sample.Builder()
	c := m.Config

	// emb = time_embed(sinusoid(t)) + label_emb([pooled ‖ sinusoids of the
	// time ids]) (architecture.md §1 and §4).
	b.Push("embed")
	emb := m.TimeEmbed.Forward(c.sinusoid(t.Unsqueeze(1), c.TimeDim())) // from B, dim
	idEmb := c.sinusoid(ids.Unsqueeze(2), c.AddTimeDim)                 // B, n, dim: each id separately, in order
	y := onnx.Concat(1, pooled, idEmb.Reshape(0, -1))
	emb = emb.Add(m.LabelEmb.Forward(y))
	// Every ResBlock applies SiLU to emb before its own Linear.
	embAct := emb.SiLU()
	b.Pop()

	h := sample
	var skips []onnx.Value
	for i, ib := range m.InputBlocks {
		b.Push("input_blocks." + strconv.Itoa(i))
		h = ib.Forward(h, embAct, ctx)
		skips = append(skips, h)
		b.Pop()
	}
	b.Push("middle_block")
	h = m.MiddleBlock.Forward(h, embAct, ctx)
	b.Pop()
	for i, ob := range m.OutputBlocks {
		b.Push("output_blocks." + strconv.Itoa(i))
		skip := skips[len(skips)-1]
		skips = skips[:len(skips)-1]
		// The next skip fixes the size the upsampler must produce.
		var next onnx.Value
		if len(skips) > 0 {
			next = skips[len(skips)-1]
		}
		h = ob.Forward(h, skip, next, embAct, ctx)
		b.Pop()
	}
	b.Push("out")
	h = m.OutConv.Forward(m.OutNorm.Forward(h).SiLU())
	b.Pop()
	return h
}

// sinusoid embeds every element of x (float32, last axis of size 1) as a
// dim-wide sinusoid along that axis: freq_i = exp(−ln(10000)·i /
// (half − freq_shift)), [cos(x·f), sin(x·f)] with the cosine half first
// when FlipSinToCos (diffusers get_timestep_embedding; architecture.md §1).
// It is computed in float32 and cast to the compute type afterwards.
func (c Config) sinusoid(x onnx.Value, dim int64) onnx.Value {
	b := x.Builder()
	half := dim / 2
	freqs := make([]float32, half)
	// Rounded through float32 step by step as PyTorch computes them, so
	// that t·f at t≈1000 matches diffusers to the last bit or so.
	k := float32(-math.Log(10000))
	den := float32(float64(half) - c.FreqShift)
	for i := range freqs {
		freqs[i] = float32(math.Exp(float64(float32(i) * k / den)))
	}
	f := b.Initializer(&onnx.Tensor{DataType: onnx.Float, Dims: []int64{half}, Raw: onnx.EncodeFloats(onnx.Float, freqs)})
	arg := x.Mul(f)
	var e onnx.Value
	if c.FlipSinToCos {
		e = onnx.Concat(-1, arg.Cos(), arg.Sin())
	} else {
		e = onnx.Concat(-1, arg.Sin(), arg.Cos())
	}
	if b.Float != onnx.Float {
		e = e.Cast(b.Float)
	}
	return e
}

// Forward is Linear → SiLU → Linear.
func (e *EmbedMLP) Forward(x onnx.Value) onnx.Value {
	return e.Out.Forward(e.In.Forward(x).SiLU())
}

// Forward runs the block; emb is the time embedding after SiLU.
func (ib *InputBlock) Forward(h, emb, ctx onnx.Value) onnx.Value {
	switch {
	case ib.Stem != nil:
		return ib.Stem.Forward(h)
	case ib.Down != nil:
		return ib.Down.Op.Forward(h)
	}
	h = ib.Res.Forward(h, emb)
	if ib.Attn != nil {
		h = ib.Attn.Forward(h, ctx)
	}
	return h
}

// Forward runs the middle block.
func (mb *MiddleBlock) Forward(h, emb, ctx onnx.Value) onnx.Value {
	h = mb.Res1.Forward(h, emb)
	h = mb.Attn.Forward(h, ctx)
	return mb.Res2.Forward(h, emb)
}

// Forward runs the block on h and its skip, concatenated h first
// (architecture.md §1). next, the skip the following block will consume,
// gives the upsampler its output size; it is unused without an upsampler.
func (ob *OutputBlock) Forward(h, skip, next, emb, ctx onnx.Value) onnx.Value {
	h = ob.Res.Forward(onnx.Concat(1, h, skip), emb)
	if ob.Attn != nil {
		h = ob.Attn.Forward(h, ctx)
	}
	up := ob.Up
	if up == nil {
		up = ob.UpAt1
	}
	if up != nil {
		h = up.Forward(h, next)
	}
	return h
}

// Forward upsamples x by nearest neighbour to the spatial size of like (2×
// x's whenever the latent size is a multiple of 2^(levels−1); otherwise the
// skip's odd size, as diffusers does with upsample_size) and convolves.
func (u *Upsample) Forward(x, like onnx.Value) onnx.Value {
	b := x.Builder()
	sizes := onnx.Concat(0, x.Shape().Slice(0, 0, 2), like.Shape().Slice(0, 2, 4))
	y := b.Op("Resize", []onnx.Value{x, {}, {}, sizes},
		onnx.AString("mode", "nearest"),
		onnx.AString("coordinate_transformation_mode", "asymmetric"),
		onnx.AString("nearest_mode", "floor"))
	return u.Conv.Forward(y)
}

// Forward is sgm's ResBlock: skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))) +
// Linear(emb)))). emb is the time embedding after SiLU.
func (r *ResBlock) Forward(x, emb onnx.Value) onnx.Value {
	h := r.InConv.Forward(r.InNorm.Forward(x).SiLU())
	h = h.Add(r.Emb.Forward(emb).Unsqueeze(2, 3))
	h = r.OutConv.Forward(r.OutNorm.Forward(h).SiLU())
	if r.Skip != nil {
		x = r.Skip.Forward(x)
	}
	return x.Add(h)
}

// Forward runs the transformer on the H·W positions of x and adds x back.
func (st *SpatialTransformer) Forward(x, ctx onnx.Value) onnx.Value {
	shape := x.Shape()
	h := st.Norm.Forward(x).Reshape(0, 0, -1).Transpose(0, 2, 1) // B, HW, C
	h = st.ProjIn.Forward(h)
	for _, tb := range st.Blocks {
		h = tb.Forward(h, ctx)
	}
	h = st.ProjOut.Forward(h)
	return h.Transpose(0, 2, 1).ReshapeTo(shape).Add(x)
}

// Forward is BasicTransformerBlock: pre-norm self-attention,
// cross-attention on ctx and feed-forward, each with a residual.
func (tb *TransformerBlock) Forward(x, ctx onnx.Value) onnx.Value {
	n := tb.Norm1.Forward(x)
	x = tb.Attn1.Forward(n, n).Add(x)
	x = tb.Attn2.Forward(tb.Norm2.Forward(x), ctx).Add(x)
	return tb.FF.Forward(tb.Norm3.Forward(x)).Add(x)
}

// Forward attends from x [B, T, C] to ctx [B, S, Ckv] (ctx is x itself for
// self-attention), adds the Extra terms and projects out.
func (a *Attention) Forward(x, ctx onnx.Value) onnx.Value {
	q := a.ToQ.Forward(x)
	h := nn.Attention(q, a.ToK.Forward(ctx), a.ToV.Forward(ctx), a.Heads, a.HeadDim, nil)
	for _, e := range a.Extra {
		h = h.Add(e.Attend(q, a.Heads, a.HeadDim))
	}
	return a.ToOut.Forward(h)
}

// Forward is the GEGLU feed-forward: the projection's first half is the
// value, the second half the gate (architecture.md §1).
func (ff *FeedForward) Forward(x onnx.Value) onnx.Value {
	inner := ff.Out.In
	p := ff.Proj.Forward(x).Split(-1, inner, inner)
	return ff.Out.Forward(p[0].Mul(p[1].GELU()))
}
