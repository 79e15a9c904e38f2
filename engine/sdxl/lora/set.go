package lora

import (
	"fmt"
	"math"
	"slices"

	"github.com/pixery/pixery/engine/sdxl"
)

// Applied is one LoRA of a job with its strength.
type Applied struct {
	File *File
	// Scale is the user's strength m (A1111's <lora:name:m>, diffusers'
	// lora_scale): ΔW = m · (alpha/r) · up·down.
	Scale float64
	// Name is how the job named it (A1111's name), for metadata.
	Name string
}

// Set is the LoRAs of one job. Their changes add up (lora.md §3: multiple
// LoRAs add their ΔW independently).
type Set []Applied

// check rejects sets that cannot be applied to a model of arch a.
func (s Set) check(a *Arch) error {
	for i, ap := range s {
		switch {
		case ap.File == nil:
			return fmt.Errorf("LoRA %d (%q) has no file", i, ap.Name)
		case math.IsNaN(ap.Scale) || math.IsInf(ap.Scale, 0):
			return fmt.Errorf("LoRA %q: scale %v is not a finite number", ap.Name, ap.Scale)
		case !a.same(ap.File.arch):
			return fmt.Errorf("LoRA %q (%s) was opened for another model configuration", ap.Name, ap.File.Path)
		}
	}
	return nil
}

// same reports whether two archs list the same layers (files opened with
// another Arch of the same configuration can be applied).
func (a *Arch) same(b *Arch) bool {
	if a == b {
		return true
	}
	if b == nil || len(a.layers) != len(b.layers) {
		return false
	}
	for i, l := range a.layers {
		o := b.layers[i]
		if l.ID() != o.ID() || !slices.Equal(l.Shape, o.Shape) || l.Out != o.Out || l.In != o.In || l.Kernel != o.Kernel {
			return false
		}
	}
	return true
}

// term is one module's contribution to a layer: factor · up · down.
type term struct {
	m      *Module
	factor float32
}

// terms lists the contributions to layer l, skipping LoRAs of scale 0 (so
// that a zero strength is the base model exactly). l may come from another
// Arch of the same configuration: layers are matched by ID.
func (s Set) terms(l *Layer) []term {
	var out []term
	id := l.ID()
	for _, ap := range s {
		if ap.Scale == 0 {
			continue
		}
		if m := ap.File.module(l.index); m != nil && (m.Layer == l || m.Layer.ID() == id) {
			out = append(out, term{m, float32(ap.Scale * m.Factor())})
		}
	}
	return out
}

// Touched returns the layers any LoRA of the set changes, in layer order.
func (s Set) Touched() []*Layer {
	seen := map[int]*Layer{}
	for _, ap := range s {
		if ap.File == nil {
			continue
		}
		for _, m := range ap.File.Modules {
			seen[m.Layer.index] = m.Layer
		}
	}
	out := make([]*Layer, 0, len(seen))
	for _, l := range seen {
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y *Layer) int { return x.index - y.index })
	return out
}

// Delta returns the set's ΔW for one layer, [Out, In·k·k] row-major
// (accumulated in float64, rounded once), or nil when no LoRA of the set
// with a non-zero scale changes the layer.
func (s Set) Delta(l *Layer) []float32 {
	ts := s.terms(l)
	if len(ts) == 0 {
		return nil
	}
	fan := int(l.fanIn())
	acc := make([]float64, int(l.Out)*fan)
	for _, t := range ts {
		r := int(t.m.Rank)
		f := float64(t.factor)
		for o := 0; o < int(l.Out); o++ {
			row := acc[o*fan : (o+1)*fan]
			for k := 0; k < r; k++ {
				u := f * float64(t.m.Up[o*r+k])
				if u == 0 {
					continue
				}
				d := t.m.Down[k*fan : (k+1)*fan]
				for i, x := range d {
					row[i] += u * float64(x)
				}
			}
		}
	}
	out := make([]float32, len(acc))
	for i, v := range acc {
		out[i] = float32(v)
	}
	return out
}

// Merge returns a copy of the weight with sgm key key, w (its values in
// the layout of the checkpoint, float32), with the set's changes added:
// kohya's merge_to_sd_model, lora.md §3. The base weights on disk are
// never touched; merged tensors are for tools and checks, generation
// applies LoRAs through graph inputs (see Slots).
func (s Set) Merge(a *Arch, key string, w []float32) ([]float32, error) {
	if err := s.check(a); err != nil {
		return nil, err
	}
	layers := a.ByKey(key)
	if len(layers) == 0 {
		return nil, fmt.Errorf("merge %s: no LoRA can change this tensor", key)
	}
	if n := product(layers[0].Shape); int64(len(w)) != n {
		return nil, fmt.Errorf("merge %s: %d values, the weight %v has %d", key, len(w), layers[0].Shape, n)
	}
	out := slices.Clone(w)
	for _, l := range layers {
		d := s.Delta(l)
		if d == nil {
			continue
		}
		base := out[l.Row0*l.fanIn():]
		for i, v := range d {
			base[i] += v
		}
	}
	return out, nil
}

func product(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// Components returns which of the UNet and text encoders the set changes.
func (s Set) Components() []sdxl.Component {
	var out []sdxl.Component
	for _, c := range []sdxl.Component{sdxl.UNet, sdxl.CLIPL, sdxl.CLIPG} {
		for _, l := range s.Touched() {
			if l.Component == c {
				out = append(out, c)
				break
			}
		}
	}
	return out
}
