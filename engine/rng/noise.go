package rng

import (
	"errors"
	"fmt"
)

// Kind selects whose seeded noise to reproduce.
type Kind string

// The supported noise kinds.
const (
	// A1111 is AUTOMATIC1111 with its default RNG source "GPU" on an NVIDIA
	// card, through its NV (Philox) emulation. Infotext "RNG" absent (GPU)
	// or "RNG: NV".
	A1111 Kind = "a1111"
	// A1111CPU is AUTOMATIC1111 with the RNG source "CPU" ("RNG: CPU").
	A1111CPU Kind = "a1111-cpu"
	// Comfy is ComfyUI: one PyTorch CPU generator for the whole batch.
	Comfy Kind = "comfy"
)

// Kinds lists the accepted kinds.
func Kinds() []Kind { return []Kind{A1111, A1111CPU, Comfy} }

// ParseKind accepts "a1111", "a1111-cpu" and "comfy".
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown rng %q (valid: a1111, a1111-cpu, comfy)", s)
}

// Options describe one job's noise.
type Options struct {
	Kind Kind
	// Seed is the first image's seed; image i uses Seed+i (A1111) or a
	// share of one draw (ComfyUI). Arithmetic wraps modulo 2^64.
	Seed uint64
	// Batch is the number of images, Size the elements of one image's
	// latent (4*H/8*W/8).
	Batch, Size int
	// ENSD is A1111's "Eta noise seed delta": when non-zero, the ancestral
	// step noise of image i comes from a fresh generator seeded
	// Seed+i+ENSD. ComfyUI has no such setting; it is ignored there.
	ENSD int64
}

// Noise draws a job's initial noise and then its per-step ancestral noise,
// in the order and from the generators the chosen tool uses:
//
//   - A1111 and A1111CPU (modules/rng.py ImageRNG): image i has its own
//     generator seeded Seed+i, each draw has shape (4, H/8, W/8) and the
//     batch is their stack. The initial noise is each generator's first
//     draw; k-diffusion's randn_like for step noise is A1111's next draw of
//     the same generators (Philox offsets 1, 2, ... for NV; the continuing
//     stream for CPU). With ENSD != 0 the generators are re-created with
//     Seed+i+ENSD right after the initial noise, and step k takes their
//     draw k.
//   - Comfy (comfy/sample.py prepare_noise): the initial noise is one
//     torch.randn of the whole [B, 4, H/8, W/8] from a CPU generator seeded
//     Seed. ComfyUI's ancestral samplers draw step noise from a separate
//     generator on the model's device; on the CPU it is seeded Seed+1 and
//     draws the whole batch per step, which is what Noise reproduces. On a
//     GPU, ComfyUI's step noise comes from the device's generator and is
//     not reproduced.
//
// A Noise is not safe for concurrent use.
type Noise struct {
	opts    Options
	initial bool
	gens    []generator // one per image (A1111) or a single one (Comfy)
	buf     []float32
}

// generator is one stream of standard normal draws.
type generator interface {
	Randn(dst []float32)
}

// MaxElements bounds Batch*Size so that a bad request cannot ask for an
// absurd allocation: 64 images of 4x512x512 latents (4096x4096 pixels).
const MaxElements = 64 * 4 * 512 * 512

// New prepares a job's noise. Nothing is drawn until Initial.
func New(o Options) (*Noise, error) {
	if _, err := ParseKind(string(o.Kind)); err != nil {
		return nil, err
	}
	if o.Batch <= 0 || o.Size <= 0 {
		return nil, fmt.Errorf("rng: batch %d and size %d must be positive", o.Batch, o.Size)
	}
	if o.Size > MaxElements/o.Batch {
		return nil, fmt.Errorf("rng: batch %d of %d elements exceeds %d elements", o.Batch, o.Size, MaxElements)
	}
	return &Noise{opts: o}, nil
}

// Kind returns the noise kind.
func (n *Noise) Kind() Kind { return n.opts.Kind }

// Len is the number of values of one draw: Batch*Size.
func (n *Noise) Len() int { return n.opts.Batch * n.opts.Size }

func (n *Noise) newGen(seed uint64) generator {
	if n.opts.Kind == A1111 {
		return NewPhilox(seed)
	}
	return NewTorchCPU(seed)
}

// ErrInitialDrawn is returned by a second call to Initial.
var ErrInitialDrawn = errors.New("rng: initial noise already drawn")

// Initial fills dst (Len values) with the initial noise, unit variance; the
// sampler's InitNoiseSigma scales it. It must be called once, before Noise.
func (n *Noise) Initial(dst []float32) error {
	if n.initial {
		return ErrInitialDrawn
	}
	if len(dst) != n.Len() {
		return fmt.Errorf("rng: initial noise needs %d values, got a buffer of %d", n.Len(), len(dst))
	}
	n.initial = true
	o := n.opts
	switch o.Kind {
	case Comfy:
		NewTorchCPU(o.Seed).Randn(dst)
		// ComfyUI on the CPU seeds the step-noise generator with seed+1.
		n.gens = []generator{NewTorchCPU(o.Seed + 1)}
	default:
		n.gens = make([]generator, o.Batch)
		for i := range n.gens {
			n.gens[i] = n.newGen(o.Seed + uint64(i))
			n.gens[i].Randn(dst[i*o.Size : (i+1)*o.Size])
		}
		if o.ENSD != 0 {
			for i := range n.gens {
				n.gens[i] = n.newGen(o.Seed + uint64(i) + uint64(o.ENSD))
			}
		}
	}
	return nil
}

// Noise fills dst (Len values) with the next step's ancestral noise. It
// implements the sampler package's NoiseSource; step is informational, as
// every call takes the next draw.
func (n *Noise) Noise(step int, dst []float32) error {
	if !n.initial {
		return fmt.Errorf("rng: step %d noise requested before the initial noise", step)
	}
	if len(dst) != n.Len() {
		return fmt.Errorf("rng: step %d noise needs %d values, got a buffer of %d", step, n.Len(), len(dst))
	}
	if n.opts.Kind == Comfy {
		n.gens[0].Randn(dst)
		return nil
	}
	size := n.opts.Size
	for i, g := range n.gens {
		g.Randn(dst[i*size : (i+1)*size])
	}
	return nil
}
