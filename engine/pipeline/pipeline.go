// Package pipeline turns a prompt into images with an SDXL checkpoint, as
// diffusers' StableDiffusionXLPipeline computes txt2img: both text encoders'
// penultimate states concatenated, the second encoder's pooled output,
// add_time_ids, classifier-free guidance, the sampler's walk from seeded
// noise, and the VAE decode to 8-bit RGB. Prompts use A1111's attention
// syntax and long-prompt chunking.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"sync"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/prompt"
	"github.com/pixery/pixery/engine/rng"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/sampler"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/ipadapter"
	"github.com/pixery/pixery/engine/sdxl/lora"
	"github.com/pixery/pixery/engine/sdxl/unet"
	"github.com/pixery/pixery/engine/sdxl/vae"
	"github.com/pixery/pixery/engine/tokenizer"
)

// LoadOptions choose how a model is loaded.
type LoadOptions struct {
	// Configs holds the networks' sizes; the zero value means SDXL's.
	Configs *sdxl.Configs
	// Float16 computes the UNet and text encoders in half precision. The
	// VAE always runs in float32: SDXL's VAE overflows in float16.
	Float16 bool
	// Threads is the CPU intra-op thread count (0: all cores).
	Threads int
	// LoRA builds the UNet and text encoders with LoRA slots for every
	// layer (package lora), so any set of LoRAs and strengths applies per
	// job through inputs, without building a session again.
	LoRA bool
}

// Model is a loaded checkpoint with a session per network.
type Model struct {
	Path    string
	Info    sdxl.Info
	Configs sdxl.Configs
	// LoadTime is how long building the graphs and sessions took.
	LoadTime time.Duration

	ck                      *sdxl.Checkpoint
	tok                     *tokenizer.Tokenizer
	ip                      *ipadapter.Hook
	loraArch                *lora.Arch
	slots                   *lora.Slots
	feeds                   lora.Feeds // the running job's LoRA inputs
	clipL, clipG, unetS, vd *runtime.Session
	mu                      sync.Mutex // one generation at a time per model
}

// Load opens a checkpoint, binds and builds its networks, and creates the
// runtime sessions. Weights are mapped from the file by ONNX Runtime.
func Load(ctx context.Context, env *runtime.Env, path string, o LoadOptions) (*Model, error) {
	start := time.Now()
	cfg := sdxl.Default()
	if o.Configs != nil {
		cfg = *o.Configs
	}
	ck, err := sdxl.Open(path, cfg)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Default()
	if err != nil {
		return nil, err
	}
	m := &Model{Path: path, Info: ck.Info, Configs: cfg, ck: ck, tok: tok}
	// Every UNet takes IP-Adapter keys and values as inputs (zeros when a
	// job has no reference image), so choosing, changing or dropping an
	// adapter never rebuilds the UNet's session.
	m.ip = ipadapter.HookUNet(ck.UNet)
	if o.LoRA {
		if m.loraArch, err = lora.NewArch(cfg); err != nil {
			return nil, err
		}
		m.slots = m.loraArch.AllSlots()
		if err := m.slots.AttachCheckpoint(ck); err != nil {
			return nil, err
		}
	}
	half := nn.BuildOptions{Float16: o.Float16}
	for _, c := range []struct {
		comp sdxl.Component
		opts nn.BuildOptions
		dst  **runtime.Session
	}{
		// Largest first: creating a session briefly needs more memory than
		// it keeps (casts and prepacking), so the peak is lowest when the
		// UNet's transient comes before the others are resident.
		{sdxl.UNet, half, &m.unetS},
		{sdxl.CLIPG, half, &m.clipG},
		{sdxl.CLIPL, half, &m.clipL},
		{sdxl.VAEDecoder, nn.BuildOptions{}, &m.vd},
	} {
		if err := ctx.Err(); err != nil {
			m.Close()
			return nil, err
		}
		g, err := ck.Build(c.comp, c.opts)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("build %s: %w", c.comp, err)
		}
		s, err := g.Session(env, runtime.SessionConfig{Threads: o.Threads})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("load %s of %s: %w", c.comp, path, err)
		}
		*c.dst = s
	}
	m.LoadTime = time.Since(start)
	return m, nil
}

// Close frees the sessions.
func (m *Model) Close() error {
	var errs []error
	for _, s := range []*runtime.Session{m.clipL, m.clipG, m.unetS, m.vd} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// OpenLoRA reads a LoRA file for this model's architecture; the model must
// have been loaded with LoadOptions.LoRA.
func (m *Model) OpenLoRA(path string) (*lora.File, error) {
	if m.loraArch == nil {
		return nil, errors.New("model was loaded without LoRA support")
	}
	return m.loraArch.Open(path)
}

// Prediction is the checkpoint's prediction type.
func (m *Model) Prediction() sampler.Prediction {
	if m.Info.Prediction == sdxl.VPrediction {
		return sampler.VPrediction
	}
	return sampler.Epsilon
}

// Request is one txt2img job.
type Request struct {
	Prompt         string
	NegativePrompt string
	Width, Height  int
	Steps          int
	CFG            float64
	// Sampler and Scheduler are pixery or A1111 names (see sampler.Lookup).
	Sampler, Scheduler string
	// Variant picks whose sampler arithmetic to reproduce: diffusers (the
	// zero value) or A1111, which is also what ComfyUI's k-diffusion
	// samplers compute and what the service uses.
	Variant sampler.Variant
	Seed    uint64
	Batch   int
	// RNG is whose seeded noise to reproduce (default A1111's GPU noise).
	RNG  rng.Kind
	ENSD int64
	// PlainText turns A1111's attention syntax off: brackets are text, as
	// in diffusers.
	PlainText bool
	// OriginalSize, CropTopLeft and TargetSize are SDXL's size
	// conditioning as (height, width) / (top, left); zero means the image
	// size and no crop.
	OriginalSize, CropTopLeft, TargetSize [2]int
	// CFGRescale is diffusers' guidance_rescale (0 off; 0.7 is usual for
	// v-prediction with zero terminal SNR).
	CFGRescale float64
	// InitialNoise replaces the seeded noise (unit variance, Batch images);
	// parity tests use it to start from the reference's latents.
	InitialNoise []float32
	// LoRAs are applied with their strengths (model loaded with
	// LoadOptions.LoRA; files from Model.OpenLoRA).
	LoRAs lora.Set
	// IPAdapter is an encoded reference image (package ipadapter) and
	// IPScale its weight; nil means no image prompt.
	IPAdapter *ipadapter.Conditioning
	IPScale   float64
	// PreviewEvery sends a preview with every k-th step's progress (0: none).
	PreviewEvery int
	// Trace, when set, receives intermediate tensors by name (parity
	// tests and debugging); the slices are only valid during the call.
	Trace func(name string, data []float32)
}

// Progress reports a finished step.
type Progress struct {
	Step, Steps int
	// Preview is a small RGB rendering of the first image's current
	// latent, on the steps PreviewEvery selects.
	Preview image.Image
}

// Image is one generated picture.
type Image struct {
	Index int
	Seed  uint64
	RGB   *image.NRGBA
}

// Result holds a job's images and timings.
type Result struct {
	Images      []Image
	EncodeTime  time.Duration
	SampleTime  time.Duration
	DecodeTime  time.Duration
	UNetRunTime time.Duration // the UNet session's own Run time, summed
	UNetCalls   int
}

// Limits on requests; the server enforces tighter, configurable ones.
const (
	MaxSide  = 4096
	MaxBatch = 64
)

func (r *Request) validate() error {
	switch {
	case r.Width%8 != 0 || r.Height%8 != 0 || r.Width < 64 || r.Height < 64 || r.Width > MaxSide || r.Height > MaxSide:
		return fmt.Errorf("size %dx%d: width and height must be multiples of 8 between 64 and %d", r.Width, r.Height, MaxSide)
	case r.Steps < 1 || r.Steps > sampler.MaxSteps:
		return fmt.Errorf("steps %d: want 1..%d", r.Steps, sampler.MaxSteps)
	case r.Batch < 1 || r.Batch > MaxBatch:
		return fmt.Errorf("batch %d: want 1..%d", r.Batch, MaxBatch)
	case math.IsNaN(r.CFG) || r.CFG < 0 || r.CFG > 100:
		return fmt.Errorf("cfg %g: want 0..100", r.CFG)
	case math.IsNaN(r.CFGRescale) || r.CFGRescale < 0 || r.CFGRescale > 1:
		return fmt.Errorf("cfg rescale %g: want 0..1", r.CFGRescale)
	}
	return nil
}

// Generate runs one job. progress, if set, is called after every step.
// Cancelling ctx stops the job between steps and inside a running network.
func (m *Model) Generate(ctx context.Context, req Request, progress func(Progress)) (*Result, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	spec, err := sampler.Lookup(req.Sampler, req.Scheduler)
	if err != nil {
		return nil, err
	}
	smp, err := sampler.New(spec, req.Steps, sampler.Options{Variant: req.Variant, Prediction: m.Prediction(), ZeroTerminalSNR: m.Info.ZeroTerminalSNR})
	if err != nil {
		return nil, err
	}
	trace := req.Trace
	if trace == nil {
		trace = func(string, []float32) {}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	res := &Result{}
	var feeds lora.Feeds
	if m.slots != nil {
		if feeds, err = m.slots.Inputs(req.LoRAs); err != nil {
			return nil, fmt.Errorf("loras: %w", err)
		}
	} else if len(req.LoRAs) > 0 {
		return nil, errors.New("loras: the model was loaded without LoRA support")
	}
	m.feeds = feeds

	start := time.Now()
	cond, err := m.encodePair(ctx, req)
	if err != nil {
		return nil, err
	}
	res.EncodeTime = time.Since(start)
	trace("prompt_embeds", cond.pos)
	trace("pooled_prompt_embeds", cond.posPooled)
	trace("negative_prompt_embeds", cond.neg)
	trace("negative_pooled_prompt_embeds", cond.negPooled)

	lh, lw := req.Height/8, req.Width/8
	lc := int(m.Configs.UNet.InChannels)
	size := lc * lh * lw
	n := req.Batch * size
	kind := req.RNG
	if kind == "" {
		kind = rng.A1111
	}
	noise, err := rng.New(rng.Options{Kind: kind, Seed: req.Seed, Batch: req.Batch, Size: size, ENSD: req.ENSD})
	if err != nil {
		return nil, err
	}
	latent := make([]float32, n)
	if req.InitialNoise != nil {
		if len(req.InitialNoise) != n {
			return nil, fmt.Errorf("initial noise has %d values, want %d", len(req.InitialNoise), n)
		}
		copy(latent, req.InitialNoise)
	} else if err := noise.Initial(latent); err != nil {
		return nil, err
	}
	sigma0 := float32(smp.InitNoiseSigma())
	for i := range latent {
		latent[i] *= sigma0
	}
	trace("initial_latents_times_init_noise_sigma", latent)

	cfgOn := req.CFG != 1
	rows := req.Batch
	if cfgOn {
		rows *= 2
	}
	ctxLen := len(cond.pos) / int(m.Configs.UNet.ContextDim)
	ctxIn, pooledIn, ids := m.unetConditioning(req, cond, cfgOn)
	trace("add_time_ids", ids)
	trace("unet_encoder_hidden_states", ctxIn)
	trace("unet_text_embeds", pooledIn)
	var ipIn map[string]runtime.Tensor
	if req.IPAdapter != nil {
		if ipIn, err = req.IPAdapter.Inputs(req.Batch, cfgOn, float32(req.IPScale)); err != nil {
			return nil, fmt.Errorf("ip-adapter: %w", err)
		}
	} else {
		ipIn = m.ip.Off(rows)
	}
	sample := make([]float32, rows*size)
	tIn := make([]float32, rows)
	call := 0
	model := func(ctx context.Context, x []float32, t float64) ([]float32, error) {
		if cfgOn {
			copy(sample, x) // negative rows first, as diffusers orders them
			copy(sample[n:], x)
		} else {
			copy(sample, x)
		}
		for i := range tIn {
			tIn[i] = float32(t)
		}
		trace(fmt.Sprintf("step%d_unet_sample", call), sample)
		trace(fmt.Sprintf("step%d_unet_timestep", call), tIn[:1])
		runStart := time.Now()
		in := map[string]runtime.Tensor{
			unet.InputSample:  runtime.F32(sample, int64(rows), int64(lc), int64(lh), int64(lw)),
			unet.InputTime:    runtime.F32(tIn, int64(rows)),
			unet.InputContext: runtime.F32(ctxIn, int64(rows), int64(ctxLen), m.Configs.UNet.ContextDim),
			unet.InputPooled:  runtime.F32(pooledIn, int64(rows), m.Configs.UNet.PooledDim()),
			unet.InputTimeIDs: runtime.F32(ids, int64(rows), int64(m.Configs.UNet.TimeIDs)),
		}
		for k, v := range ipIn {
			in[k] = v
		}
		out, err := m.unetS.Run(ctx, m.feeds.With(sdxl.UNet, in))
		res.UNetRunTime += time.Since(runStart)
		res.UNetCalls++
		if err != nil {
			return nil, err
		}
		eps := out[unet.Output].F32
		trace(fmt.Sprintf("step%d_unet_out", call), eps)
		call++
		if !cfgOn {
			return eps, nil
		}
		guided := make([]float32, n)
		g := float32(req.CFG)
		for i := range guided {
			u, c := eps[i], eps[n+i]
			guided[i] = u + g*(c-u)
		}
		if req.CFGRescale > 0 {
			rescale(guided, eps[n:], req.Batch, float32(req.CFGRescale))
		}
		return guided, nil
	}
	start = time.Now()
	stepIndex := 0
	final, err := smp.Sample(ctx, model, latent, noise, func(s sampler.Step) error {
		trace(fmt.Sprintf("step%d_latents_after", stepIndex), s.Latent)
		stepIndex++
		if progress != nil {
			p := Progress{Step: s.Index + 1, Steps: s.Total}
			if req.PreviewEvery > 0 && (s.Index+1)%req.PreviewEvery == 0 {
				p.Preview = vae.Preview(s.Denoised[:size], lh, lw)
			}
			progress(p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.SampleTime = time.Since(start)
	trace("final_latents", final)

	start = time.Now()
	scale := float32(1 / m.Configs.VAE.ScalingFactor)
	z := make([]float32, size)
	for b := 0; b < req.Batch; b++ {
		// One image at a time bounds the decoder's memory, which grows with
		// the square of the pixel count in its attention.
		for i := range z {
			z[i] = final[b*size+i] * scale
		}
		trace("vae_decoder_input", z)
		out, err := m.vd.Run(ctx, map[string]runtime.Tensor{vae.LatentInput: runtime.F32(z, 1, int64(lc), int64(lh), int64(lw))})
		if err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		img := out[vae.ImageOutput]
		trace("image_float", img.F32)
		seed := req.Seed + uint64(b) // A1111: image i has seed s+i
		if kind == rng.Comfy {
			seed = req.Seed // ComfyUI: one generator for the batch
		}
		res.Images = append(res.Images, Image{Index: b, Seed: seed, RGB: toRGB(img.F32, req.Height, req.Width)})
	}
	res.DecodeTime = time.Since(start)
	return res, nil
}

// rescale applies diffusers' rescale_noise_cfg per image: the guided
// prediction is scaled to the conditional prediction's standard deviation
// and mixed back by phi, which counters over-exposure with zero-SNR models.
func rescale(guided, cond []float32, batch int, phi float32) {
	per := len(guided) / batch
	std := func(v []float32) float64 {
		var mean, sq float64
		for _, x := range v {
			mean += float64(x)
		}
		mean /= float64(len(v))
		for _, x := range v {
			d := float64(x) - mean
			sq += d * d
		}
		return math.Sqrt(sq / float64(len(v)-1))
	}
	for b := 0; b < batch; b++ {
		g, c := guided[b*per:(b+1)*per], cond[b*per:(b+1)*per]
		sg, sc := std(g), std(c)
		if sg == 0 {
			continue
		}
		f := float32(sc / sg)
		for i := range g {
			g[i] = phi*(g[i]*f) + (1-phi)*g[i]
		}
	}
}

// toRGB converts the decoder's [1,3,H,W] output in [-1,1] to 8-bit RGB as
// diffusers does: round(clamp(x/2+0.5, 0, 1)·255).
func toRGB(x []float32, h, w int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	for y := 0; y < h; y++ {
		for xx := 0; xx < w; xx++ {
			o := img.PixOffset(xx, y)
			for c := 0; c < 3; c++ {
				v := float64(x[c*plane+y*w+xx])/2 + 0.5
				v = math.Min(1, math.Max(0, v))
				img.Pix[o+c] = uint8(math.Round(v * 255))
			}
			img.Pix[o+3] = 255
		}
	}
	return img
}

// conditioning holds both sides' text conditioning, [tokens×ctx] each.
type conditioning struct {
	pos, neg             []float32
	posPooled, negPooled []float32
}

// unetConditioning lays out the UNet's per-row inputs: with CFG, Batch
// negative rows then Batch positive rows, as diffusers concatenates them.
func (m *Model) unetConditioning(req Request, c *conditioning, cfgOn bool) (ctx, pooled, ids []float32) {
	h, w := req.Height, req.Width
	orig, target := req.OriginalSize, req.TargetSize
	if orig == [2]int{} {
		orig = [2]int{h, w}
	}
	if target == [2]int{} {
		target = [2]int{h, w}
	}
	row := []float32{float32(orig[0]), float32(orig[1]), float32(req.CropTopLeft[0]), float32(req.CropTopLeft[1]), float32(target[0]), float32(target[1])}
	add := func(pos, neg []float32) []float32 {
		var out []float32
		if cfgOn {
			for b := 0; b < req.Batch; b++ {
				out = append(out, neg...)
			}
		}
		for b := 0; b < req.Batch; b++ {
			out = append(out, pos...)
		}
		return out
	}
	ctx = add(c.pos, c.neg)
	pooled = add(c.posPooled, c.negPooled)
	ids = add(row, row)
	return ctx, pooled, ids
}

// encodePair encodes the prompt and the negative prompt to the same number
// of 77-token chunks. An empty negative prompt gives zeros, as diffusers
// (force_zeros_for_empty_prompt) and A1111 do for SDXL.
func (m *Model) encodePair(ctx context.Context, req Request) (*conditioning, error) {
	posChunks, err := m.chunks(req.Prompt, req.PlainText)
	if err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	var negChunks []prompt.Chunk
	zeroNeg := req.NegativePrompt == ""
	if !zeroNeg {
		if negChunks, err = m.chunks(req.NegativePrompt, req.PlainText); err != nil {
			return nil, fmt.Errorf("negative prompt: %w", err)
		}
	}
	// A1111 pads the shorter side with chunks of the empty prompt so both
	// have the same number of tokens.
	empty, err := m.chunks("", true)
	if err != nil {
		return nil, err
	}
	for !zeroNeg && len(negChunks) < len(posChunks) {
		negChunks = append(negChunks, empty[0])
	}
	for !zeroNeg && len(posChunks) < len(negChunks) {
		posChunks = append(posChunks, empty[0])
	}
	c := &conditioning{}
	if c.pos, c.posPooled, err = m.encode(ctx, posChunks); err != nil {
		return nil, err
	}
	if zeroNeg {
		c.neg = make([]float32, len(c.pos))
		c.negPooled = make([]float32, len(c.posPooled))
	} else if c.neg, c.negPooled, err = m.encode(ctx, negChunks); err != nil {
		return nil, err
	}
	return c, nil
}

func (m *Model) chunks(text string, plain bool) ([]prompt.Chunk, error) {
	var parts []prompt.Part
	if plain {
		parts = []prompt.Part{{Text: text, Weight: 1}}
	} else {
		var err error
		if parts, err = prompt.ParseAttention(text); err != nil {
			return nil, err
		}
	}
	ch, err := prompt.ChunkParts(m.tok, parts)
	if err != nil {
		return nil, err
	}
	return ch.Chunks, nil
}

// encode runs both text encoders over the chunks (as one batch each),
// applies the attention weights to each encoder's output, and returns the
// concatenated context [chunks·77 × (L+G)] and the first chunk's pooled G.
func (m *Model) encode(ctx context.Context, chunks []prompt.Chunk) (context_, pooled []float32, err error) {
	n := len(chunks)
	ids1 := make([]int64, 0, n*tokenizer.ContextLen)
	ids2 := make([]int64, 0, n*tokenizer.ContextLen)
	for i := range chunks {
		a, b := chunks[i].EncoderIDs(tokenizer.PadEncoder1), chunks[i].EncoderIDs(tokenizer.PadEncoder2)
		for j := range a {
			ids1 = append(ids1, int64(a[j]))
			ids2 = append(ids2, int64(b[j]))
		}
	}
	run := func(s *runtime.Session, c sdxl.Component, ids []int64) (map[string]runtime.Tensor, error) {
		return s.Run(ctx, m.feeds.With(c, map[string]runtime.Tensor{clip.InputIDs: runtime.I64(ids, int64(n), tokenizer.ContextLen)}))
	}
	outL, err := run(m.clipL, sdxl.CLIPL, ids1)
	if err != nil {
		return nil, nil, fmt.Errorf("text encoder 1: %w", err)
	}
	outG, err := run(m.clipG, sdxl.CLIPG, ids2)
	if err != nil {
		return nil, nil, fmt.Errorf("text encoder 2: %w", err)
	}
	hl, hg := outL[clip.OutputPenultimate].F32, outG[clip.OutputPenultimate].F32
	dl, dg := int(m.Configs.CLIPL.Width), int(m.Configs.CLIPG.Width)
	const T = tokenizer.ContextLen
	weights := make([]float32, T)
	context_ = make([]float32, 0, n*T*(dl+dg))
	for i := range chunks {
		el := hl[i*T*dl : (i+1)*T*dl]
		eg := hg[i*T*dg : (i+1)*T*dg]
		uniform := true
		for j, w := range chunks[i].Weights {
			weights[j] = float32(w)
			uniform = uniform && w == 1
		}
		if !uniform {
			if err := prompt.ApplyWeights(el, T, dl, weights); err != nil {
				return nil, nil, err
			}
			if err := prompt.ApplyWeights(eg, T, dg, weights); err != nil {
				return nil, nil, err
			}
		}
		for t := 0; t < T; t++ {
			context_ = append(context_, el[t*dl:(t+1)*dl]...)
			context_ = append(context_, eg[t*dg:(t+1)*dg]...)
		}
	}
	pg := outG[clip.OutputPooled].F32
	return context_, pg[:len(pg)/n], nil
}
