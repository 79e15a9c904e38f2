package ipadapter

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// Checkpoint prefixes of an adapter file (h94 / tencent-ailab naming,
// ip-adapter.md §1).
const (
	PrefixImageProj = "image_proj."
	PrefixLayers    = "ip_adapter."
)

// Kind is the adapter's image projection.
type Kind string

// The supported kinds.
const (
	// Plain adapters (ip-adapter_sdxl, ip-adapter_sdxl_vit-h) project the
	// encoder's image_embeds to 4 tokens.
	Plain Kind = "plain"
	// Plus adapters (ip-adapter-plus_sdxl_vit-h, -plus-face) resample the
	// encoder's penultimate hidden states to 16 tokens.
	Plus Kind = "plus"
)

// Adapter is an IP-Adapter file bound to a UNet configuration: the image
// projection and, for every cross-attention layer, the to_k_ip / to_v_ip
// projections of the image tokens.
type Adapter struct {
	Path string
	Kind Kind
	// Plain or Resampler is set, as Kind says.
	Plain     *ImageProj
	Resampler *Resampler
	// Layers[j] belongs to the UNet's j-th cross-attention in
	// unet.Model.CrossAttentions order; its file number is N = 2j+1.
	Layers []*Layer
	// InputDim is the width of the image features the projection reads:
	// image_embeds (plain) or the encoder's hidden width (plus).
	InputDim int64
	// Tokens is the number of image tokens (4 plain, 16 plus).
	Tokens int64
	// ContextDim is the tokens' width, the UNet's cross_attention_dim.
	ContextDim int64

	w *nn.Weights
}

// Layer holds one cross-attention layer's image key and value projections,
// bias-free [Channels, ContextDim] matrices.
type Layer struct {
	ToK *nn.Linear `sd:"to_k_ip"`
	ToV *nn.Linear `sd:"to_v_ip"`
	// N is the layer's number in the file; Channels its width.
	N        int
	Channels int64
}

// KeyName is the file's name of layer N's image key projection.
func KeyName(n int) string { return fmt.Sprintf("%s%d.to_k_ip.weight", PrefixLayers, n) }

// ValueName is the file's name of layer N's image value projection.
func ValueName(n int) string { return fmt.Sprintf("%s%d.to_v_ip.weight", PrefixLayers, n) }

// crossLayers lists the width of every cross-attention layer of a UNet of
// that configuration, in the adapter's numbering order.
func crossLayers(c unet.Config) ([]int64, error) {
	m, err := unet.New(c)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, a := range m.CrossAttentions() {
		out = append(out, a.Heads*a.HeadDim)
	}
	return out, nil
}

// Open reads an adapter file and binds it for a UNet of configuration uc
// (the zero Config means SDXL's). Every tensor must be bound exactly once
// with the expected shape; the problems are reported together.
func Open(path string, uc unet.Config) (*Adapter, error) {
	if uc.ContextDim == 0 {
		uc = unet.SDXL()
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open IP-Adapter: %w", err)
	}
	a, err := bind(f, uc)
	if err != nil {
		return nil, fmt.Errorf("IP-Adapter %s: %w", path, err)
	}
	a.Path = path
	return a, nil
}

// Inspect tells the kind and image-feature width of an adapter file from
// its header alone, for matching it with an image encoder.
func Inspect(f *safetensors.File) (Kind, int64, error) {
	kind, err := detectKind(f)
	if err != nil {
		return "", 0, err
	}
	switch kind {
	case Plain:
		s, _ := shapeOf(f, PrefixImageProj+"proj.weight")
		if len(s) != 2 {
			return "", 0, fmt.Errorf("%sproj.weight has shape %v, want [tokens·context, image_embeds]", PrefixImageProj, s)
		}
		return kind, s[1], nil
	default:
		s, _ := shapeOf(f, PrefixImageProj+"proj_in.weight")
		if len(s) != 2 {
			return "", 0, fmt.Errorf("%sproj_in.weight has shape %v or is missing, want [dim, encoder width]", PrefixImageProj, s)
		}
		return kind, s[1], nil
	}
}

func shapeOf(f *safetensors.File, name string) ([]int64, bool) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, false
	}
	return t.Shape, true
}

// detectKind tells plain from plus (ComfyUI_IPAdapter_plus's rule: plus
// has image_proj.latents) and names the variants pixery does not run.
func detectKind(f *safetensors.File) (Kind, error) {
	var proj, layers int
	for _, n := range f.Names() {
		switch {
		case strings.HasPrefix(n, PrefixImageProj):
			proj++
		case strings.HasPrefix(n, PrefixLayers):
			layers++
		}
	}
	if proj == 0 || layers == 0 {
		return "", fmt.Errorf("not an IP-Adapter: an adapter file holds image_proj.* and ip_adapter.N.to_k_ip/to_v_ip tensors; this one has %d and %d of them among %d tensors", proj, layers, f.Len())
	}
	_, latents := f.Tensor(PrefixImageProj + "latents")
	_, linear := f.Tensor(PrefixImageProj + "proj.weight")
	switch {
	case latents:
		return Plus, nil
	case linear:
		return Plain, nil
	}
	if _, ok := f.Tensor(PrefixImageProj + "proj.0.weight"); ok {
		return "", errors.New("this IP-Adapter uses an MLP image projection (image_proj.proj.0.*: a \"full face\" or FaceID adapter); pixery runs the plain and plus adapters")
	}
	if _, ok := f.Tensor(PrefixImageProj + "perceiver_resampler.proj_in.weight"); ok {
		return "", errors.New("this is a FaceID Plus adapter (image_proj.perceiver_resampler.*), which needs InsightFace embeddings; pixery runs the plain and plus adapters")
	}
	return "", errors.New("unrecognised image projection: neither image_proj.proj.weight (plain) nor image_proj.latents (plus)")
}

// layerNumbers returns the N of every ip_adapter.N.* tensor, sorted.
func layerNumbers(f *safetensors.File) []int {
	seen := map[int]bool{}
	for _, n := range f.Names() {
		rest, ok := strings.CutPrefix(n, PrefixLayers)
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(num); err == nil {
			seen[i] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// architectureOf names the model family a cross-attention width belongs
// to, for messages.
func architectureOf(ctx int64) string {
	switch ctx {
	case 768:
		return " (SD1.x: CLIP ViT-L text context)"
	case 1024:
		return " (SD2.x: OpenCLIP ViT-H text context)"
	case 2048:
		return " (SDXL)"
	}
	return ""
}

func bind(f *safetensors.File, uc unet.Config) (*Adapter, error) {
	kind, err := detectKind(f)
	if err != nil {
		return nil, err
	}
	cross, err := crossLayers(uc)
	if err != nil {
		return nil, err
	}
	ctx := uc.ContextDim
	// The text-context width of to_k_ip tells the model family before any
	// shape check drowns it in 140 mismatches.
	if s, ok := shapeOf(f, KeyName(1)); ok && len(s) == 2 && s[1] != ctx {
		return nil, fmt.Errorf("this IP-Adapter is for another model: its image keys read %d-wide tokens%s, this UNet's cross-attention takes %d%s",
			s[1], architectureOf(s[1]), ctx, architectureOf(ctx))
	}
	w, err := nn.NewWeights(f)
	if err != nil {
		return nil, err
	}
	a := &Adapter{Kind: kind, ContextDim: ctx, w: w}
	be := &nn.BindError{Prefix: "image_proj.*, ip_adapter."}
	merge := func(err error) error {
		var e *nn.BindError
		if errors.As(err, &e) {
			be.Missing = append(be.Missing, e.Missing...)
			be.Mismatch = append(be.Mismatch, e.Mismatch...)
			be.Other = append(be.Other, e.Other...)
			return nil
		}
		return err
	}
	switch kind {
	case Plain:
		s, _ := shapeOf(f, PrefixImageProj+"proj.weight")
		if len(s) != 2 || s[0]%ctx != 0 || s[0] == 0 {
			return nil, fmt.Errorf("%sproj.weight has shape %v: want [tokens·%d, image_embeds width]", PrefixImageProj, s, ctx)
		}
		a.InputDim, a.Tokens = s[1], s[0]/ctx
		a.Plain = newImageProj(a.InputDim, a.Tokens, ctx)
		if err := merge(w.Bind(PrefixImageProj, a.Plain)); err != nil {
			return nil, err
		}
	case Plus:
		sz, err := resamplerSizes(f, ctx)
		if err != nil {
			return nil, err
		}
		a.InputDim, a.Tokens = sz.In, sz.Tokens
		a.Resampler = newResampler(sz)
		if err := merge(w.Bind(PrefixImageProj, a.Resampler)); err != nil {
			return nil, err
		}
	}
	for j, ch := range cross {
		l := &Layer{ToK: nn.NewLinear(ctx, ch, false), ToV: nn.NewLinear(ctx, ch, false), N: 2*j + 1, Channels: ch}
		if err := merge(w.Bind(fmt.Sprintf("%s%d.", PrefixLayers, l.N), l)); err != nil {
			return nil, err
		}
		a.Layers = append(a.Layers, l)
	}
	for _, k := range w.Unused("") {
		t, _, _ := w.Lookup(k)
		be.Other = append(be.Other, fmt.Sprintf("%s %v: unexpected tensor, a %s adapter for this UNet has no such weight", k, t.Shape, kind))
	}
	if len(be.Missing)+len(be.Mismatch)+len(be.Other) > 0 {
		if nums := layerNumbers(f); len(nums) != len(cross) {
			return nil, fmt.Errorf("this IP-Adapter has %d cross-attention layers, this UNet has %d (N = 1, 3, …, %d): %w", len(nums), len(cross), 2*len(cross)-1, be)
		}
		return nil, be
	}
	return a, nil
}

// resamplerSizes reads a plus adapter's sizes from its shapes.
func resamplerSizes(f *safetensors.File, ctx int64) (ResamplerSizes, error) {
	get := func(name string, rank int) ([]int64, error) {
		s, ok := shapeOf(f, PrefixImageProj+name)
		if !ok {
			return nil, fmt.Errorf("plus adapter: %s%s is missing", PrefixImageProj, name)
		}
		if len(s) != rank {
			return nil, fmt.Errorf("plus adapter: %s%s has shape %v, want rank %d", PrefixImageProj, name, s, rank)
		}
		return s, nil
	}
	lat, err := get("latents", 3)
	if err != nil {
		return ResamplerSizes{}, err
	}
	in, err := get("proj_in.weight", 2)
	if err != nil {
		return ResamplerSizes{}, err
	}
	q, err := get("layers.0.0.to_q.weight", 2)
	if err != nil {
		return ResamplerSizes{}, err
	}
	ff, err := get("layers.0.1.1.weight", 2)
	if err != nil {
		return ResamplerSizes{}, err
	}
	depth := 0
	for _, n := range f.Names() {
		rest, ok := strings.CutPrefix(n, PrefixImageProj+"layers.")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(num); err == nil && i+1 > depth {
			depth = i + 1
		}
	}
	// The head size is fixed at 64 (Resampler's dim_head default, which
	// every released adapter uses); the file stores no head count.
	const headDim = 64
	if q[0]%headDim != 0 {
		return ResamplerSizes{}, fmt.Errorf("plus adapter: to_q has %d outputs, not a multiple of the head size %d", q[0], headDim)
	}
	return ResamplerSizes{In: in[1], Dim: lat[2], Out: ctx, Tokens: lat[1], Heads: q[0] / headDim, HeadDim: headDim, FFWidth: ff[0], Depth: depth}, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
