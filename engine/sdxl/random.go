package sdxl

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/unet"
	"github.com/pixery/pixery/engine/sdxl/vae"
)

// Specs lists every tensor an SDXL checkpoint of these sizes holds, with
// the shapes real single-file checkpoints use, sorted by name as
// safetensors writers sort them. It walks the same module trees Bind walks,
// so a checkpoint written from it binds by construction.
func Specs(cfg Configs, dt safetensors.DType) ([]safetensors.Spec, error) {
	var specs []safetensors.Spec
	add := func(prefix string, module any) error {
		return nn.Walk(prefix, module, func(key string, p *nn.Param) {
			shape := append([]int64(nil), p.Shape...)
			// Real files store the VAE's attention projections as 1×1
			// convolutions (architecture.md §6).
			if strings.HasPrefix(key, vae.Prefix) && strings.Contains(key, ".attn_1.") && strings.HasSuffix(key, ".weight") && len(shape) == 2 {
				shape = append(shape, 1, 1)
			}
			specs = append(specs, safetensors.Spec{Name: key, DType: dt, Shape: shape})
		})
	}
	u, err := unet.New(cfg.UNet)
	if err != nil {
		return nil, fmt.Errorf("unet: %w", err)
	}
	if err := add(unet.Prefix, u); err != nil {
		return nil, err
	}
	l, err := clip.NewTextModel(cfg.CLIPL)
	if err != nil {
		return nil, fmt.Errorf("clip_l: %w", err)
	}
	if err := add(clip.PrefixL, l); err != nil {
		return nil, err
	}
	g, err := clip.NewOpenCLIPText(cfg.CLIPG)
	if err != nil {
		return nil, fmt.Errorf("clip_g: %w", err)
	}
	if err := add(clip.PrefixG, g); err != nil {
		return nil, err
	}
	if err := cfg.VAE.Validate(); err != nil {
		return nil, fmt.Errorf("vae: %w", err)
	}
	if err := add(vae.Prefix, vae.New(cfg.VAE)); err != nil {
		return nil, err
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs, nil
}

// WriteRandom writes a checkpoint of random weights in sgm naming. The
// values depend only on seed and each tensor's name, so a seed always
// gives the same file. Weights are N(0, 1/fan_in) (so activations keep
// their scale through the layers, as in a trained network), norm scales
// are near 1 and biases near 0. progress, if set, is called after each
// tensor with bytes written and the total.
func WriteRandom(ctx context.Context, path string, cfg Configs, dt safetensors.DType, seed uint64, progress func(done, total int64)) error {
	specs, err := Specs(cfg, dt)
	if err != nil {
		return err
	}
	w, err := safetensors.Create(path, specs, map[string]string{"generator": "pixery make-checkpoint", "seed": fmt.Sprint(seed)})
	if err != nil {
		return err
	}
	var total, done int64
	for _, s := range specs {
		total += product(s.Shape) * int64(dt.Size())
	}
	const chunk = 1 << 20 // values per write, so memory stays small
	buf := make([]float32, 0, chunk)
	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			w.Abort()
			return err
		}
		h := fnv.New64a()
		h.Write([]byte(s.Name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		gen := initializer(s)
		n := product(s.Shape)
		for i := int64(0); i < n; {
			m := min(int64(chunk), n-i)
			buf = buf[:m]
			for j := range buf {
				buf[j] = gen(r)
			}
			raw, err := safetensors.EncodeFloat32(dt, buf)
			if err != nil {
				w.Abort()
				return err
			}
			if err := w.WritePart(s.Name, raw); err != nil {
				w.Abort()
				return err
			}
			i += m
			done += int64(len(raw))
		}
		if n == 0 {
			if err := w.Write(s.Name, nil); err != nil {
				w.Abort()
				return err
			}
		}
		if progress != nil {
			progress(done, total)
		}
	}
	return w.Close()
}

func product(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// initializer picks a distribution from the tensor's name and shape.
func initializer(s safetensors.Spec) func(*rand.Rand) float32 {
	name := s.Name
	isNorm := strings.Contains(name, "norm") || strings.Contains(name, "ln_") || strings.Contains(name, ".ln") ||
		strings.Contains(name, "in_layers.0") || strings.Contains(name, "out_layers.0") || strings.HasSuffix(name, "out.0.weight") ||
		strings.HasSuffix(name, "out.0.bias")
	switch {
	case strings.HasSuffix(name, ".bias") || strings.HasSuffix(name, "_bias"):
		return func(r *rand.Rand) float32 { return float32(0.01 * r.NormFloat64()) }
	case len(s.Shape) == 1 && isNorm:
		return func(r *rand.Rand) float32 { return float32(1 + 0.05*r.NormFloat64()) }
	case strings.Contains(name, "embedding"):
		return func(r *rand.Rand) float32 { return float32(0.02 * r.NormFloat64()) }
	}
	fanIn := int64(1)
	if len(s.Shape) > 1 {
		fanIn = product(s.Shape[1:])
	} else if len(s.Shape) == 1 {
		fanIn = s.Shape[0]
	}
	if strings.HasSuffix(name, "text_projection") && len(s.Shape) == 2 {
		fanIn = s.Shape[0] // applied as x @ P
	}
	std := 1 / math.Sqrt(float64(max(fanIn, 1)))
	return func(r *rand.Rand) float32 { return float32(std * r.NormFloat64()) }
}
