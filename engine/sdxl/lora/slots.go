package lora

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/sdxl"
)

// Slots are the layers a graph takes LoRA factors for as inputs. A graph
// built after Attach has, for every slotted layer, two more float32 inputs:
// DownInput(l) [R, In] or [R, In, k, k] and UpInput(l) [Out, R] or
// [Out, R, 1, 1], with R free per layer, and adds up·(down·x) to the
// layer's output W·x. Several LoRAs stack by
// concatenating their factors along R, each one's scale·alpha/rank folded
// into its rows of up, so a change of LoRA set or strength is a change of
// inputs: the session, and the base weights it maps from the checkpoint,
// stay as they are.
type Slots struct {
	arch   *Arch
	layers []*Layer
	has    map[int]bool // by layer index
}

// AllSlots has a slot for every targetable layer, so that any LoRA set
// the model can take applies without building the graph again.
func (a *Arch) AllSlots() *Slots { return a.NewSlots(a.layers) }

// SlotsFor has slots for exactly the layers the sets change (plus the
// other row blocks of a packed weight), for graphs that should carry no
// more inputs than a known LoRA set needs.
func (a *Arch) SlotsFor(sets ...Set) *Slots {
	var ls []*Layer
	for _, s := range sets {
		for _, l := range s.Touched() {
			if own, ok := a.Layer(l.ID()); ok {
				ls = append(ls, own)
			}
		}
	}
	return a.NewSlots(ls)
}

// NewSlots has slots for the given layers of a (and the other parts of any
// packed weight among them: a weight gets one delta for all its rows).
func (a *Arch) NewSlots(layers []*Layer) *Slots {
	s := &Slots{arch: a, has: map[int]bool{}}
	for _, l := range layers {
		for _, sib := range a.byKey[l.Key] {
			s.has[sib.index] = true
		}
	}
	for _, l := range a.layers {
		if s.has[l.index] {
			s.layers = append(s.layers, l)
		}
	}
	return s
}

// Layers returns the slotted layers in layer order.
func (s *Slots) Layers() []*Layer { return slices.Clone(s.layers) }

// Len is the number of slots; a graph has two inputs per slot of its
// component.
func (s *Slots) Len() int { return len(s.layers) }

// Covers returns nil when every layer the set changes has a slot, else an
// error naming the first few that do not: a graph with these slots cannot
// apply the set, and must be rebuilt with more (e.g. AllSlots).
func (s *Slots) Covers(set Set) error {
	if err := set.check(s.arch); err != nil {
		return err
	}
	var missing []string
	for _, l := range set.Touched() {
		if !s.has[l.index] {
			missing = append(missing, l.ID())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the graph has no LoRA slot for %d layer(s) the set changes: %s%s",
			len(missing), strings.Join(missing[:min(3, len(missing))], ", "), more(len(missing)-3, "layer"))
	}
	return nil
}

// DownInput is the name of a layer's down-factor graph input.
func DownInput(l *Layer) string { return "lora_down:" + l.ID() }

// UpInput is the name of a layer's up-factor graph input.
func UpInput(l *Layer) string { return "lora_up:" + l.ID() }

// rankDim is the symbolic rank dimension of a slot, one per layer: layers of
// a set have different ranks, and ONNX Runtime may assume equal names mean
// equal sizes.
func rankDim(l *Layer) onnx.Dim { return nn.Dyn("lora_rank:" + l.ID()) }

// Attach makes graphs of module (the UNet, a *unet.Model, or a text
// encoder, bound or not) built from now on take the slots of component c
// as inputs: it sets nn.Param.Adapter on every slotted weight and clears it
// on the others, so attaching a smaller set of slots removes inputs again.
// A parameter whose shape differs from the layer's is an error (a module
// of another configuration).
func (s *Slots) Attach(c sdxl.Component, module any) error {
	prefix := c.Prefix()
	if prefix == "" || (c != sdxl.UNet && c != sdxl.CLIPL && c != sdxl.CLIPG) {
		return fmt.Errorf("attach LoRA slots: component %q takes no LoRA", c)
	}
	var bad []string
	err := nn.Walk(prefix, module, func(key string, p *nn.Param) {
		p.Adapter = nil
		var ls []*Layer
		for _, l := range s.arch.byKey[key] {
			if s.has[l.index] {
				ls = append(ls, l)
			}
		}
		if len(ls) == 0 {
			return
		}
		if !slices.Equal(p.Shape, ls[0].Shape) {
			bad = append(bad, fmt.Sprintf("%s has shape %v, the LoRA layer %v", key, p.Shape, ls[0].Shape))
			return
		}
		p.Adapter = adapter(ls)
	})
	if err != nil {
		return fmt.Errorf("attach LoRA slots to %s: %w", c, err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("attach LoRA slots to %s: %s", c, strings.Join(bad[:min(3, len(bad))], "; "))
	}
	return nil
}

// AttachCheckpoint attaches the slots to the UNet and text encoders a
// checkpoint has loaded (before its graphs are built).
func (s *Slots) AttachCheckpoint(ck *sdxl.Checkpoint) error {
	if ck.UNet != nil {
		if err := s.Attach(sdxl.UNet, ck.UNet); err != nil {
			return err
		}
	}
	if ck.CLIPL != nil {
		if err := s.Attach(sdxl.CLIPL, ck.CLIPL); err != nil {
			return err
		}
	}
	if ck.CLIPG != nil {
		if err := s.Attach(sdxl.CLIPG, ck.CLIPG); err != nil {
			return err
		}
	}
	return nil
}

// adapter adds up·(down·x) for the layers of one weight: one, or the q, k,
// v row blocks of a packed projection, whose terms are concatenated along
// the output features. The base weight is used as it is (prepacked by ONNX
// Runtime on CPU) and no changed copy of it is ever made; see the package
// documentation for the measurements behind this form.
func adapter(ls []*Layer) nn.Adapter { return slotAdapter(ls) }

type slotAdapter []*Layer

// factor declares (once per graph) a layer's down or up input.
func factor(b *onnx.Builder, l *Layer, up bool) onnx.Value {
	type key struct {
		l  *Layer
		up bool
	}
	return b.Memo(key{l, up}, func() onnx.Value {
		r := rankDim(l)
		switch {
		case up && l.Kernel == 0:
			return nn.Input(b, UpInput(l), nn.Fixed(l.Out), r)
		case up:
			return nn.Input(b, UpInput(l), nn.Fixed(l.Out), r, nn.Fixed(1), nn.Fixed(1))
		case l.Kernel == 0:
			return nn.Input(b, DownInput(l), r, nn.Fixed(l.In))
		}
		return nn.Input(b, DownInput(l), r, nn.Fixed(l.In), nn.Fixed(l.Kernel), nn.Fixed(l.Kernel))
	})
}

func (a slotAdapter) Linear(x onnx.Value) onnx.Value {
	b := x.Builder()
	parts := make([]onnx.Value, len(a))
	for i, l := range a {
		// FusedMatMul with transB reads both factors in their stored
		// layout, as nn.Linear reads weights.
		h := b.Node("FusedMatMul", onnx.MicrosoftDomain, []onnx.Value{x, factor(b, l, false)}, 1, onnx.AInt("transB", 1))[0]
		parts[i] = b.Node("FusedMatMul", onnx.MicrosoftDomain, []onnx.Value{h, factor(b, l, true)}, 1, onnx.AInt("transB", 1))[0]
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return onnx.Concat(-1, parts...)
}

func (a slotAdapter) Conv(x onnx.Value, stride int64, pads [4]int64) onnx.Value {
	b := x.Builder()
	l := a[0] // convolutions are never packed
	// The down factor is a convolution with the layer's own kernel,
	// stride and padding; up is a 1×1 convolution (lora.md §1).
	h := x.Conv2D(factor(b, l, false), onnx.Value{}, stride, pads)
	return h.Conv2D(factor(b, l, true), onnx.Value{}, 1, [4]int64{})
}

// Feeds are the slot inputs for one LoRA set, per component, to be added to
// every Run of that component's session.
type Feeds map[sdxl.Component]map[string]runtime.Tensor

// Inputs makes the slot inputs for a set: per slotted layer the factors of
// every LoRA that changes it, concatenated along the rank, with scale ·
// alpha/rank folded into up; a zero rank-1 pair where none does, or where
// every scale is 0, which leaves the layer's output exactly as it is. Every layer
// the set changes must have a slot (see Covers). The tensors share memory
// with the files where they can; they are only read.
func (s *Slots) Inputs(set Set) (Feeds, error) {
	if err := s.Covers(set); err != nil {
		return nil, err
	}
	type pair struct{ down, up runtime.Tensor }
	pairs := make([]pair, len(s.layers))
	// A zero rank-1 pair for layers no LoRA changes: its term is exactly
	// zero, so the layer computes what it computes without slots. (Rank 0
	// would skip even that, but not every kernel of every provider takes
	// empty convolutions.)
	var widest int64
	for _, l := range s.layers {
		widest = max(widest, l.fanIn(), l.Out)
	}
	zeros := make([]float32, widest)
	// Layers are independent; scaling the up factors of a full-size set is
	// a few hundred MB of float32, so the cores share it.
	parallel(len(s.layers), func(i int) {
		l := s.layers[i]
		fan := l.fanIn()
		ts := set.terms(l)
		if len(ts) == 0 {
			pairs[i] = pair{factorTensor(l, zeros[:fan], 1, false), factorTensor(l, zeros[:l.Out], 1, true)}
			return
		}
		var rank int64
		for _, t := range ts {
			rank += t.m.Rank
		}
		var down []float32
		if len(ts) == 1 {
			down = ts[0].m.Down // shared with the file: inputs are only read
		} else {
			down = make([]float32, 0, rank*fan)
			for _, t := range ts {
				down = append(down, t.m.Down...)
			}
		}
		up := make([]float32, l.Out*rank)
		col := int64(0)
		for _, t := range ts {
			r, f := t.m.Rank, t.factor
			for o := int64(0); o < l.Out; o++ {
				src := t.m.Up[o*r : (o+1)*r]
				dst := up[o*rank+col : o*rank+col+r]
				for k, v := range src {
					dst[k] = f * v
				}
			}
			col += r
		}
		pairs[i] = pair{factorTensor(l, down, rank, false), factorTensor(l, up, rank, true)}
	})
	feeds := Feeds{}
	for i, l := range s.layers {
		m := feeds[l.Component]
		if m == nil {
			m = map[string]runtime.Tensor{}
			feeds[l.Component] = m
		}
		m[DownInput(l)] = pairs[i].down
		m[UpInput(l)] = pairs[i].up
	}
	return feeds, nil
}

// factorTensor shapes a layer's factor data as its graph input.
func factorTensor(l *Layer, data []float32, rank int64, up bool) runtime.Tensor {
	switch {
	case up && l.Kernel == 0:
		return runtime.F32(data, l.Out, rank)
	case up:
		return runtime.F32(data, l.Out, rank, 1, 1)
	case l.Kernel == 0:
		return runtime.F32(data, rank, l.In)
	}
	return runtime.F32(data, rank, l.In, l.Kernel, l.Kernel)
}

// parallel calls fn(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	workers := min(goruntime.GOMAXPROCS(0), n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// With returns base plus the component's slot inputs, as one map for
// Session.Run. base wins where names collide (they never do: slot inputs
// start with "lora_").
func (f Feeds) With(c sdxl.Component, base map[string]runtime.Tensor) map[string]runtime.Tensor {
	slots := f[c]
	out := make(map[string]runtime.Tensor, len(base)+len(slots))
	for k, v := range slots {
		out[k] = v
	}
	for k, v := range base {
		out[k] = v
	}
	return out
}
