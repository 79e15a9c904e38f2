package lora

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// Layer is one weight, or one row block of a weight, that a LoRA module
// can change: ΔW = up·down is added to rows [Row0, Row0+Out) of Key.
type Layer struct {
	// Component is sdxl.UNet, sdxl.CLIPL or sdxl.CLIPG.
	Component sdxl.Component
	// Key is the sgm checkpoint key of the weight.
	Key string
	// Shape is the whole weight's shape as the network's parameter has it.
	Shape []int64
	// Part is "q", "k" or "v" for a row block of CLIP-G's packed
	// in_proj_weight, "" when the layer is the whole weight.
	Part string
	// Row0 is the first row of Key the layer covers.
	Row0 int64
	// Out and In are the changed block's output rows and input features.
	Out, In int64
	// Kernel is k for a k×k convolution (1 for 1×1), 0 for a linear layer.
	Kernel int64
	// Kohya is the kohya-ss module name (lora.md §2: sgm paths for the
	// UNet, Hugging Face paths for the text encoders).
	Kohya string
	// Diffusers is the diffusers/PEFT module path with its component
	// prefix: "unet.down_blocks.1.attentions.0.proj_in",
	// "text_encoder.text_model.encoder.layers.0.mlp.fc1",
	// "text_encoder_2.…".
	Diffusers string
	// Default reports whether kohya adapts the layer without conv_dim
	// (lora.md §1): the Linear layers of the UNet's transformers and of the
	// text encoders' attention and MLP.
	Default bool

	index int
}

// ID names the layer uniquely: its key, plus ":q" / ":k" / ":v" for a row
// block.
func (l *Layer) ID() string {
	if l.Part == "" {
		return l.Key
	}
	return l.Key + ":" + l.Part
}

// DownShape is the shape of a LoRA down factor of rank r for the layer as
// files store it: [r, in] or [r, in, k, k].
func (l *Layer) DownShape(r int64) []int64 {
	if l.Kernel == 0 {
		return []int64{r, l.In}
	}
	return []int64{r, l.In, l.Kernel, l.Kernel}
}

// UpShape is the shape of an up factor of rank r: [out, r] or [out, r, 1, 1].
func (l *Layer) UpShape(r int64) []int64 {
	if l.Kernel == 0 {
		return []int64{l.Out, r}
	}
	return []int64{l.Out, r, 1, 1}
}

// fanIn is the number of values one row of the down factor holds.
func (l *Layer) fanIn() int64 {
	if l.Kernel == 0 {
		return l.In
	}
	return l.In * l.Kernel * l.Kernel
}

// Arch lists every layer of one SDXL configuration that LoRA files can
// target, with the names the supported file formats give them. Files are
// opened against an Arch, so the tiny test models and full-size SDXL use
// the same code.
type Arch struct {
	Configs sdxl.Configs
	layers  []*Layer
	byName  map[string]*Layer // every accepted module name, normalised
	byKey   map[string][]*Layer
}

// NewArch lists the targetable layers of the UNet and both text encoders
// of a configuration: every Linear and Conv2D weight of the UNet (kohya's
// 722 transformer layers, the 66 conv_dim layers, and conv_in, conv_out,
// time_embed and label_emb that other trainers adapt), and the attention
// and MLP projections of both text encoders.
func NewArch(cfg sdxl.Configs) (*Arch, error) {
	a := &Arch{Configs: cfg, byName: map[string]*Layer{}, byKey: map[string][]*Layer{}}
	if err := a.addUNet(cfg.UNet); err != nil {
		return nil, err
	}
	if err := a.addText(cfg.CLIPL, cfg.CLIPG); err != nil {
		return nil, err
	}
	return a, nil
}

// Layers returns every targetable layer, UNet first, in checkpoint order.
func (a *Arch) Layers() []*Layer { return slices.Clone(a.layers) }

// Layer returns the layer with that ID.
func (a *Arch) Layer(id string) (*Layer, bool) {
	key, part, _ := strings.Cut(id, ":")
	for _, l := range a.byKey[key] {
		if l.Part == part {
			return l, true
		}
	}
	return nil, false
}

// ByKey returns the layers that change the weight with that sgm key (three
// for CLIP-G's in_proj_weight, else at most one).
func (a *Arch) ByKey(key string) []*Layer { return a.byKey[key] }

// Lookup finds the layer a module name of any supported naming refers to.
func (a *Arch) Lookup(module string) (*Layer, bool) {
	l, ok := a.byName[module]
	return l, ok
}

func (a *Arch) add(l *Layer, names ...string) error {
	l.index = len(a.layers)
	a.layers = append(a.layers, l)
	a.byKey[l.Key] = append(a.byKey[l.Key], l)
	for _, n := range names {
		if other, dup := a.byName[n]; dup {
			return fmt.Errorf("lora: module name %q would mean both %s and %s", n, other.ID(), l.ID())
		}
		a.byName[n] = l
	}
	return nil
}

func underscored(path string) string { return strings.ReplaceAll(path, ".", "_") }

func (a *Arch) addUNet(cfg unet.Config) error {
	m, err := unet.New(cfg)
	if err != nil {
		return err
	}
	blocks := diffusersBlocks(m)
	var errs []string
	walkErr := nn.Walk(unet.Prefix, m, func(key string, p *nn.Param) {
		if !strings.HasSuffix(key, ".weight") || (len(p.Shape) != 2 && len(p.Shape) != 4) {
			return // norms and biases: no LoRA changes them
		}
		path := strings.TrimSuffix(strings.TrimPrefix(key, unet.Prefix), ".weight")
		dpath, ok := blocks.convert(path)
		if !ok {
			errs = append(errs, path)
			return
		}
		l := &Layer{Component: sdxl.UNet, Key: key, Shape: p.Shape, Out: p.Shape[0], In: p.Shape[1],
			Kohya: "lora_unet_" + underscored(path), Diffusers: "unet." + dpath}
		if len(p.Shape) == 4 {
			l.Kernel = p.Shape[2]
		}
		l.Default = l.Kernel == 0 && (strings.Contains(path, ".transformer_blocks.") || strings.HasSuffix(path, ".proj_in") || strings.HasSuffix(path, ".proj_out"))
		if err := a.add(l,
			l.Kohya, "lora_unet_"+underscored(dpath), // kohya, sgm or diffusers paths (lora.md §2)
			l.Diffusers, dpath, // PEFT, with or without "unet."
			"diffusion_model."+path, unet.Prefix+path, // ComfyUI-style sgm keys
		); err != nil {
			errs = append(errs, err.Error())
		}
	})
	if walkErr != nil {
		return walkErr
	}
	if len(errs) > 0 {
		return fmt.Errorf("lora: UNet layers without a diffusers name: %s", strings.Join(errs, ", "))
	}
	return nil
}

// blockMap maps sgm UNet block paths to diffusers block paths.
type blockMap struct {
	prefixes []string          // sgm block paths, longest first
	to       map[string]string // sgm block path → diffusers block path
	resnet   map[string]bool   // blocks whose inner names differ (ResBlocks)
}

// resnetNames are the ResBlock children with different names in the two
// layouts (lora.md §2, the last rows of the block table).
var resnetNames = map[string]string{
	"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
	"out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}

func (bm *blockMap) convert(path string) (string, bool) {
	for _, p := range bm.prefixes {
		if path != p && !strings.HasPrefix(path, p+".") {
			continue
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(path, p), ".")
		if bm.resnet[p] {
			r, ok := resnetNames[rest]
			if !ok {
				return "", false
			}
			rest = r
		}
		if rest == "" {
			return bm.to[p], true
		}
		return bm.to[p] + "." + rest, true
	}
	return "", false
}

// diffusersBlocks derives the sgm → diffusers block correspondence
// (lora.md §2, kohya's make_unet_conversion_map) from the module tree, so
// that it holds for any level count and ResBlocks per level.
func diffusersBlocks(m *unet.Model) *blockMap {
	bm := &blockMap{to: map[string]string{}, resnet: map[string]bool{}}
	set := func(sgm, diff string, resnet bool) {
		bm.to[sgm] = diff
		bm.resnet[sgm] = resnet
		bm.prefixes = append(bm.prefixes, sgm)
	}
	set("time_embed.0", "time_embedding.linear_1", false)
	set("time_embed.2", "time_embedding.linear_2", false)
	set("label_emb.0.0", "add_embedding.linear_1", false)
	set("label_emb.0.2", "add_embedding.linear_2", false)
	set("out.0", "conv_norm_out", false)
	set("out.2", "conv_out", false)
	level, j := 0, 0
	for i, ib := range m.InputBlocks {
		at := "input_blocks." + strconv.Itoa(i)
		switch {
		case ib.Stem != nil:
			set(at+".0", "conv_in", false)
		case ib.Down != nil:
			set(at+".0.op", fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", level), false)
			level, j = level+1, 0
		default:
			set(at+".0", fmt.Sprintf("down_blocks.%d.resnets.%d", level, j), true)
			if ib.Attn != nil {
				set(at+".1", fmt.Sprintf("down_blocks.%d.attentions.%d", level, j), false)
			}
			j++
		}
	}
	set("middle_block.0", "mid_block.resnets.0", true)
	set("middle_block.1", "mid_block.attentions.0", false)
	set("middle_block.2", "mid_block.resnets.1", true)
	per := m.Config.ResBlocks + 1
	for i, ob := range m.OutputBlocks {
		at := "output_blocks." + strconv.Itoa(i)
		up, j := i/per, i%per
		set(at+".0", fmt.Sprintf("up_blocks.%d.resnets.%d", up, j), true)
		if ob.Attn != nil {
			set(at+".1", fmt.Sprintf("up_blocks.%d.attentions.%d", up, j), false)
		}
		if ob.Up != nil {
			set(at+".2.conv", fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", up), false)
		}
		if ob.UpAt1 != nil {
			set(at+".1.conv", fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", up), false)
		}
	}
	// Longest first, so that "input_blocks.1.0" never claims a path of
	// "input_blocks.1.0.op"-like deeper blocks or "input_blocks.10.…".
	slices.SortFunc(bm.prefixes, func(x, y string) int { return len(y) - len(x) })
	return bm
}

// textLayerNames are the Hugging Face names of the six adapted projections
// of a text-encoder layer, in kohya's order.
var textLayerNames = []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"}

func (a *Arch) addText(l, g clip.Config) error {
	// CLIP-L: Hugging Face names in the checkpoint too (lora.md §2).
	if err := l.Validate(clip.L); err != nil {
		return err
	}
	for i := range l.Layers {
		for _, n := range textLayerNames {
			hf := fmt.Sprintf("text_model.encoder.layers.%d.%s", i, n)
			out, in := l.Width, l.Width
			switch n {
			case "mlp.fc1":
				out = l.MLPWidth
			case "mlp.fc2":
				in = l.MLPWidth
			}
			layer := &Layer{Component: sdxl.CLIPL, Key: "conditioner.embedders.0.transformer." + hf + ".weight",
				Shape: []int64{out, in}, Out: out, In: in, Kohya: "lora_te1_" + underscored(hf),
				Diffusers: "text_encoder." + hf, Default: true}
			if err := a.add(layer, layer.Kohya, layer.Diffusers, "text_encoders.clip_l.transformer."+hf); err != nil {
				return err
			}
		}
	}
	// CLIP-G: OpenCLIP names in the checkpoint, q/k/v packed row-wise.
	if err := g.Validate(clip.G); err != nil {
		return err
	}
	w := g.Width
	for i := range g.Layers {
		rb := fmt.Sprintf("%stransformer.resblocks.%d.", clip.PrefixG, i)
		for _, n := range textLayerNames {
			hf := fmt.Sprintf("text_model.encoder.layers.%d.%s", i, n)
			layer := &Layer{Component: sdxl.CLIPG, Out: w, In: w, Kohya: "lora_te2_" + underscored(hf),
				Diffusers: "text_encoder_2." + hf, Default: true}
			switch n {
			case "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj":
				layer.Key, layer.Shape = rb+"attn.in_proj_weight", []int64{3 * w, w}
				layer.Part = n[len("self_attn.") : len("self_attn.")+1]
				layer.Row0 = int64(strings.Index("qkv", layer.Part)) * w
			case "self_attn.out_proj":
				layer.Key = rb + "attn.out_proj.weight"
			case "mlp.fc1":
				layer.Key, layer.Out = rb+"mlp.c_fc.weight", g.MLPWidth
			case "mlp.fc2":
				layer.Key, layer.In = rb+"mlp.c_proj.weight", g.MLPWidth
			}
			if layer.Shape == nil {
				layer.Shape = []int64{layer.Out, layer.In}
			}
			if err := a.add(layer, layer.Kohya, layer.Diffusers, "text_encoders.clip_g.transformer."+hf); err != nil {
				return err
			}
		}
	}
	return nil
}
