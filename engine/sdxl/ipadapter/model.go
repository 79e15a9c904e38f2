package ipadapter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"sync"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/sdxl/clipvision"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// Options choose how an adapter is loaded.
type Options struct {
	// UNet is the configuration of the UNet the adapter will drive; the
	// zero value means SDXL's.
	UNet unet.Config
	// Float16 computes the image encoder and the projection in half
	// precision (GPUs). Inputs and outputs stay float32.
	Float16 bool
	// Threads is the CPU intra-op thread count (0: the runtime's default).
	Threads int
}

// Model is an adapter and its image encoder, loaded: a session for the
// encoder and one for the projection graph.
type Model struct {
	Adapter     *Adapter
	Encoder     *clipvision.Model
	EncoderPath string
	// LoadTime is how long binding, building and creating the sessions took.
	LoadTime time.Duration

	enc, proj *runtime.Session
	mu        sync.Mutex
	// negHidden is, for plus adapters, the encoder's penultimate states
	// for the all-zero normalised image (the negative), made on first use.
	negHidden []float32
}

// Load opens an adapter and its image encoder, checks that they fit each
// other and the UNet, and creates the sessions.
func Load(env *runtime.Env, adapterPath, encoderPath string, o Options) (*Model, error) {
	start := time.Now()
	a, err := Open(adapterPath, o.UNet)
	if err != nil {
		return nil, err
	}
	e, err := clipvision.Open(encoderPath)
	if err != nil {
		return nil, err
	}
	if err := Check(a, e.Config); err != nil {
		return nil, fmt.Errorf("IP-Adapter %s with image encoder %s: %w", adapterPath, encoderPath, err)
	}
	bo := nn.BuildOptions{Float16: o.Float16}
	out := clipvision.OutputImageEmbeds
	if a.Kind == Plus {
		out = clipvision.OutputPenultimate
	}
	eg, err := e.Build(bo, out)
	if err != nil {
		return nil, err
	}
	pg, err := a.Build(bo)
	if err != nil {
		return nil, err
	}
	m := &Model{Adapter: a, Encoder: e, EncoderPath: encoderPath}
	sc := runtime.SessionConfig{Threads: o.Threads}
	if m.enc, err = eg.Session(env, sc); err != nil {
		return nil, fmt.Errorf("load image encoder %s: %w", encoderPath, err)
	}
	if m.proj, err = pg.Session(env, sc); err != nil {
		m.Close()
		return nil, fmt.Errorf("load IP-Adapter %s: %w", adapterPath, err)
	}
	m.LoadTime = time.Since(start)
	return m, nil
}

// Close frees the sessions.
func (m *Model) Close() error {
	var errs []error
	for _, s := range []*runtime.Session{m.enc, m.proj} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// Check reports whether the encoder gives the image features the adapter
// reads: image_embeds of its width for plain adapters, penultimate states
// of its width for plus adapters.
func Check(a *Adapter, c clipvision.Config) error {
	have := c.ProjectionDim
	what := "image_embeds"
	if a.Kind == Plus {
		have, what = c.Width, "hidden states"
	}
	if have != a.InputDim {
		return fmt.Errorf("the %s adapter reads %d-wide %s (%s); this image encoder (%s) gives %d-wide ones",
			a.Kind, a.InputDim, what, EncoderHint(a.Kind, a.InputDim), c.Name(), have)
	}
	return nil
}

// EncoderHint names the image encoder an adapter of that kind and input
// width was trained with.
func EncoderHint(k Kind, dim int64) string {
	switch {
	case k == Plain && dim == 1024, k == Plus && dim == 1280:
		return "CLIP ViT-H/14, h94/IP-Adapter models/image_encoder"
	case k == Plain && dim == 1280, k == Plus && dim == 1664:
		return "CLIP ViT-bigG/14, h94/IP-Adapter sdxl_models/image_encoder"
	}
	return "an encoder of that width"
}

// Conditioning is what a reference image gives the UNet: the image tokens
// and, for every cross-attention layer, their keys and values, for the
// image (positive) and for the reference's negative.
type Conditioning struct {
	Kind Kind
	// Tokens and NegTokens are [NumTokens, ContextDim] each.
	Tokens, NegTokens []float32
	NumTokens         int64
	ContextDim        int64
	// ImageSHA256 is the hex digest of the reference image file (set by
	// EncodeImage).
	ImageSHA256 string
	// EncodeTime is the image encoder's run, ProjectTime the projection's.
	EncodeTime, ProjectTime time.Duration

	layers []LayerShape
	// k[j] and v[j] are layer j's [2, NumTokens, Channels]: row 0 the
	// negative, row 1 the image.
	k, v [][]float32
}

// Layers lists the layers the conditioning has keys and values for.
func (c *Conditioning) Layers() []LayerShape { return c.layers }

// EncodeImage decodes a PNG, JPEG or WebP file, prepares it as
// CLIPImageProcessor does and encodes it; see Encode.
func (m *Model) EncodeImage(ctx context.Context, data []byte) (*Conditioning, error) {
	img, err := clipvision.DecodeImage(data)
	if err != nil {
		return nil, err
	}
	c, err := m.Encode(ctx, img)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	c.ImageSHA256 = hex.EncodeToString(sum[:])
	return c, nil
}

// Encode prepares an image (clipvision.Preprocess) and encodes it.
func (m *Model) Encode(ctx context.Context, img image.Image) (*Conditioning, error) {
	px, err := clipvision.Preprocess(img, int(m.Encoder.Config.ImageSize))
	if err != nil {
		return nil, err
	}
	return m.EncodePixels(ctx, px)
}

// EncodePixels encodes normalised pixel values [3, S, S] and projects them
// with the adapter, together with the negative the reference makes
// (ip-adapter.md §5): for plain adapters the projection of a zero
// image_embeds, for plus adapters the encoder's penultimate states of an
// all-zero normalised pixel tensor.
func (m *Model) EncodePixels(ctx context.Context, px []float32) (*Conditioning, error) {
	c := m.Encoder.Config
	s := c.ImageSize
	if int64(len(px)) != c.Channels*s*s {
		return nil, fmt.Errorf("encode image: %d pixel values, want %d×%d×%d", len(px), c.Channels, s, s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.Adapter
	var feats []float32
	var featShape []int64
	start := time.Now()
	if a.Kind == Plain {
		out, err := m.enc.Run(ctx, map[string]runtime.Tensor{clipvision.InputPixels: runtime.F32(px, 1, c.Channels, s, s)})
		if err != nil {
			return nil, fmt.Errorf("image encoder: %w", err)
		}
		emb := out[clipvision.OutputImageEmbeds].F32
		feats = append(make([]float32, len(emb)), emb...)
		featShape = []int64{2, a.InputDim}
	} else {
		in, rows := px, int64(1)
		if m.negHidden == nil {
			in, rows = append(make([]float32, len(px)), px...), 2
		}
		out, err := m.enc.Run(ctx, map[string]runtime.Tensor{clipvision.InputPixels: runtime.F32(in, rows, c.Channels, s, s)})
		if err != nil {
			return nil, fmt.Errorf("image encoder: %w", err)
		}
		h := out[clipvision.OutputPenultimate]
		per := len(h.F32) / int(rows)
		if m.negHidden == nil {
			m.negHidden = append([]float32(nil), h.F32[:per]...)
		}
		feats = append(append(make([]float32, 0, 2*per), m.negHidden...), h.F32[len(h.F32)-per:]...)
		featShape = []int64{2, h.Shape[1], h.Shape[2]}
	}
	enc := time.Since(start)
	start = time.Now()
	out, err := m.proj.Run(ctx, map[string]runtime.Tensor{a.Input(): runtime.F32(feats, featShape...)})
	if err != nil {
		return nil, fmt.Errorf("IP-Adapter projection: %w", err)
	}
	cond, err := a.conditioning(out)
	if err != nil {
		return nil, err
	}
	cond.EncodeTime, cond.ProjectTime = enc, time.Since(start)
	return cond, nil
}

// conditioning collects the projection graph's outputs for [negative,
// image].
func (a *Adapter) conditioning(out map[string]runtime.Tensor) (*Conditioning, error) {
	tok := out[OutputTokens]
	if len(tok.Shape) != 3 || tok.Shape[0] != 2 || tok.Shape[1] != a.Tokens || tok.Shape[2] != a.ContextDim {
		return nil, fmt.Errorf("IP-Adapter projection gave tokens of shape %v, want [2 %d %d]", tok.Shape, a.Tokens, a.ContextDim)
	}
	per := int(a.Tokens * a.ContextDim)
	c := &Conditioning{Kind: a.Kind, NegTokens: tok.F32[:per], Tokens: tok.F32[per:], NumTokens: a.Tokens, ContextDim: a.ContextDim}
	for _, l := range a.Layers {
		k, v := out[KeyInput(l.N)], out[ValueInput(l.N)]
		if len(k.F32) != 2*int(a.Tokens*l.Channels) || len(v.F32) != len(k.F32) {
			return nil, fmt.Errorf("IP-Adapter projection: layer %d gave %d keys and %d values, want %d", l.N, len(k.F32), len(v.F32), 2*a.Tokens*l.Channels)
		}
		c.layers = append(c.layers, LayerShape{N: l.N, Channels: l.Channels})
		c.k, c.v = append(c.k, k.F32), append(c.v, v.F32)
	}
	return c, nil
}

// Inputs returns the hooked UNet's image inputs for one job, rows laid out
// as the pipeline lays out its batch: with cfg, batch negative rows then
// batch image rows; without, batch image rows. scale multiplies the image
// attention in every layer (0: the plain UNet's output exactly). The
// tensors can be passed at every step of the job.
func (c *Conditioning) Inputs(batch int, cfg bool, scale float32) (map[string]runtime.Tensor, error) {
	if batch < 1 {
		return nil, fmt.Errorf("IP-Adapter inputs: batch %d", batch)
	}
	rows := batch
	if cfg {
		rows *= 2
	}
	in := make(map[string]runtime.Tensor, 2*len(c.layers))
	for j, l := range c.layers {
		per := int(c.NumTokens * l.Channels)
		k := make([]float32, 0, rows*per)
		v := make([]float32, 0, rows*per)
		for r := 0; r < rows; r++ {
			src := per // the image's row
			if cfg && r < batch {
				src = 0 // the negative's
			}
			k = append(k, c.k[j][src:src+per]...)
			for _, x := range c.v[j][src : src+per] {
				v = append(v, scale*x)
			}
		}
		in[KeyInput(l.N)] = runtime.F32(k, int64(rows), c.NumTokens, l.Channels)
		in[ValueInput(l.N)] = runtime.F32(v, int64(rows), c.NumTokens, l.Channels)
	}
	return in, nil
}

// Off returns the hooked UNet's image inputs for a job without an adapter:
// one zero token per row, whose zero value makes every image attention add
// exact zeros (softmax over one key is 1, times a zero value). A zero-token
// input works as well on ONNX Runtime's CPU provider and is slightly
// cheaper (BENCHMARKS.md), but one token needs no execution provider to
// handle empty tensors.
func (h *Hook) Off(rows int) map[string]runtime.Tensor {
	in := make(map[string]runtime.Tensor, 2*len(h.Layers))
	for _, l := range h.Layers {
		z := make([]float32, int64(rows)*l.Channels)
		in[KeyInput(l.N)] = runtime.F32(z, int64(rows), 1, l.Channels)
		in[ValueInput(l.N)] = runtime.F32(z, int64(rows), 1, l.Channels)
	}
	return in
}
