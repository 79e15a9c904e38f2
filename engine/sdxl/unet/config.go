package unet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Config holds the sizes of an SDXL-family UNet. Levels are indexed from the
// full-resolution one (0) to the deepest; the way up visits them in reverse.
// Head counts and GroupNorm groups are here because a checkpoint's shapes
// cannot tell them apart (architecture.md §1, golden README "Caveats").
type Config struct {
	InChannels  int64
	OutChannels int64
	// Channels is the width of each level (diffusers block_out_channels;
	// sgm model_channels × channel_mult).
	Channels []int64
	// ResBlocks is the number of ResBlocks per level on the way down
	// (layers_per_block); the way up has one more per level.
	ResBlocks int
	// Depth is the number of transformer blocks in the SpatialTransformer
	// after each ResBlock of a level on the way down; 0 means the level
	// has no attention (SDXL's level 0).
	Depth []int
	// UpDepth is the same for the way up, indexed by level as Depth is.
	UpDepth []int
	// MidDepth is the middle block's transformer depth.
	MidDepth int
	// Heads is the number of attention heads per level (diffusers'
	// attention_head_dim, which despite its name is a head count); the
	// middle block uses the deepest level's.
	Heads []int64
	// ContextDim is the width of encoder_hidden_states (cross_attention_dim).
	ContextDim int64
	// Groups is the GroupNorm group count (norm_num_groups).
	Groups int64
	// Eps is the GroupNorm epsilon of the ResBlocks and of out.0
	// (norm_eps). The transformers' input GroupNorm always uses 1e-6 and
	// their LayerNorms 1e-5 (architecture.md §1).
	Eps float32
	// AddTimeDim is the sinusoid width of each time id
	// (addition_time_embed_dim).
	AddTimeDim int64
	// AdmChannels is the width of the added-conditioning vector y, pooled
	// text embedding followed by the time-id sinusoids
	// (projection_class_embeddings_input_dim; sgm adm_in_channels).
	AdmChannels int64
	// TimeIDs is how many scalars time_ids holds: 6 for SDXL base
	// (orig_h, orig_w, crop_top, crop_left, target_h, target_w). The
	// diffusers config does not say; the refiner uses 5.
	TimeIDs int
	// FlipSinToCos puts the cosine half of the sinusoids first.
	FlipSinToCos bool
	// FreqShift is diffusers' downscale_freq_shift.
	FreqShift float64
}

// SDXL returns the configuration of SDXL base 1.0 (architecture.md §1).
func SDXL() Config {
	return Config{
		InChannels:   4,
		OutChannels:  4,
		Channels:     []int64{320, 640, 1280},
		ResBlocks:    2,
		Depth:        []int{0, 2, 10},
		UpDepth:      []int{0, 2, 10},
		MidDepth:     10,
		Heads:        []int64{5, 10, 20},
		ContextDim:   2048,
		Groups:       32,
		Eps:          1e-5,
		AddTimeDim:   256,
		AdmChannels:  2816,
		TimeIDs:      6,
		FlipSinToCos: true,
	}
}

// String describes the configuration in a line.
func (c Config) String() string {
	return fmt.Sprintf("unet channels %v, %d res blocks, depth %v/%v mid %d, heads %v, context %d, groups %d, adm %d",
		c.Channels, c.ResBlocks, c.Depth, c.UpDepth, c.MidDepth, c.Heads, c.ContextDim, c.Groups, c.AdmChannels)
}

// Levels is the number of resolution levels.
func (c Config) Levels() int { return len(c.Channels) }

// TimeDim is the width of the timestep sinusoid (block_out_channels[0]).
func (c Config) TimeDim() int64 { return c.Channels[0] }

// EmbedDim is the width of the time embedding the ResBlocks receive.
func (c Config) EmbedDim() int64 { return 4 * c.Channels[0] }

// PooledDim is the width of text_embeds: y minus the time-id sinusoids.
func (c Config) PooledDim() int64 { return c.AdmChannels - int64(c.TimeIDs)*c.AddTimeDim }

// HeadDim is the per-head width at a level.
func (c Config) HeadDim(level int) int64 { return c.Channels[level] / c.Heads[level] }

// Validate reports the first inconsistency in the sizes.
func (c Config) Validate() error {
	n := len(c.Channels)
	switch {
	case n == 0:
		return errors.New("no levels (block_out_channels is empty)")
	case c.InChannels <= 0 || c.OutChannels <= 0:
		return fmt.Errorf("in/out channels %d/%d must be positive", c.InChannels, c.OutChannels)
	case c.ResBlocks <= 0:
		return fmt.Errorf("layers_per_block %d must be positive", c.ResBlocks)
	case len(c.Depth) != n || len(c.UpDepth) != n || len(c.Heads) != n:
		return fmt.Errorf("per-level lists disagree: %d levels, %d depths, %d up depths, %d head counts",
			n, len(c.Depth), len(c.UpDepth), len(c.Heads))
	case c.Groups <= 0:
		return fmt.Errorf("norm_num_groups %d must be positive", c.Groups)
	case !(c.Eps > 0):
		return fmt.Errorf("norm_eps %g must be positive", c.Eps)
	case c.ContextDim <= 0:
		return fmt.Errorf("cross_attention_dim %d must be positive", c.ContextDim)
	case c.MidDepth <= 0:
		return fmt.Errorf("middle block transformer depth %d must be positive", c.MidDepth)
	case c.TimeIDs <= 0:
		return fmt.Errorf("%d time ids: must be positive", c.TimeIDs)
	case c.AddTimeDim <= 0 || c.AddTimeDim%2 != 0:
		return fmt.Errorf("addition_time_embed_dim %d must be positive and even", c.AddTimeDim)
	case c.PooledDim() <= 0:
		return fmt.Errorf("projection_class_embeddings_input_dim %d leaves no room for a pooled text embedding after %d time ids × %d",
			c.AdmChannels, c.TimeIDs, c.AddTimeDim)
	case math.IsNaN(c.FreqShift) || math.IsInf(c.FreqShift, 0):
		return fmt.Errorf("freq_shift %g is not a finite number", c.FreqShift)
	}
	for l, ch := range c.Channels {
		switch {
		case ch <= 0:
			return fmt.Errorf("block_out_channels[%d] = %d must be positive", l, ch)
		case ch%c.Groups != 0:
			return fmt.Errorf("block_out_channels[%d] = %d is not divisible by %d GroupNorm groups", l, ch, c.Groups)
		case c.Depth[l] < 0 || c.UpDepth[l] < 0:
			return fmt.Errorf("level %d: negative transformer depth", l)
		case c.Heads[l] <= 0 || ch%c.Heads[l] != 0:
			return fmt.Errorf("level %d: %d channels cannot be split into %d heads", l, ch, c.Heads[l])
		}
	}
	if half := c.TimeDim() / 2; c.TimeDim()%2 != 0 || float64(half) == c.FreqShift {
		return fmt.Errorf("timestep sinusoid width %d must be even and differ from 2·freq_shift", c.TimeDim())
	}
	if float64(c.AddTimeDim/2) == c.FreqShift {
		return fmt.Errorf("addition_time_embed_dim %d: half equals freq_shift", c.AddTimeDim)
	}
	return nil
}

// The diffusers block types the SDXL layout is made of.
const (
	downPlain = "DownBlock2D"
	downAttn  = "CrossAttnDownBlock2D"
	upPlain   = "UpBlock2D"
	upAttn    = "CrossAttnUpBlock2D"
	midAttn   = "UNetMidBlock2DCrossAttn"
)

// ParseConfig reads the config.json diffusers writes for a
// UNet2DConditionModel. Size fields that decide the layout are required;
// the others take diffusers' defaults. Settings that change the
// computation in ways this builder does not implement are errors, so that a
// checkpoint of another family is refused instead of computed wrongly.
func ParseConfig(data []byte) (Config, error) {
	c, err := parseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("unet config: %w", err)
	}
	return c, nil
}

func parseConfig(data []byte) (Config, error) {
	var f fields
	if err := json.Unmarshal(data, &f); err != nil {
		return Config{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if f == nil {
		return Config{}, errors.New("not a JSON object")
	}
	if err := f.unsupported(); err != nil {
		return Config{}, err
	}
	// The two checks that tell an SD1.x/SD2.x config apart come first,
	// so that such a config gets the telling message.
	addType, err := f.string("addition_embed_type", "")
	if err != nil {
		return Config{}, err
	}
	if addType != "text_time" {
		if addType == "" {
			return Config{}, errors.New(`addition_embed_type is missing or null: SDXL's UNet adds a "text_time" embedding (pooled text + size/crop ids); SD1.x/SD2.x UNets have none and are not supported`)
		}
		return Config{}, fmt.Errorf(`addition_embed_type %q is not supported (want "text_time")`, addType)
	}

	linear, err := f.bool("use_linear_projection", false)
	if err != nil {
		return Config{}, err
	}
	if !linear {
		return Config{}, errors.New("use_linear_projection must be true: proj_in/proj_out are 1×1 convolutions in this UNet (SD1.x layout), SDXL's are Linear")
	}
	c := Config{TimeIDs: 6}
	get := func(dst *int64, name string, def int64, required bool) {
		if err == nil {
			*dst, err = f.int(name, def, required)
		}
	}
	get(&c.InChannels, "in_channels", 4, false)
	get(&c.OutChannels, "out_channels", 4, false)
	get(&c.Groups, "norm_num_groups", 32, false)
	get(&c.ContextDim, "cross_attention_dim", 0, true)
	get(&c.AddTimeDim, "addition_time_embed_dim", 0, true)
	get(&c.AdmChannels, "projection_class_embeddings_input_dim", 0, true)
	var resBlocks int64
	get(&resBlocks, "layers_per_block", 2, false)
	if err != nil {
		return Config{}, err
	}
	c.ResBlocks = int(resBlocks)
	if c.Channels, err = f.ints("block_out_channels"); err != nil {
		return Config{}, err
	}
	n := len(c.Channels)
	if n == 0 {
		return Config{}, errors.New("block_out_channels is empty")
	}

	eps, err := f.float("norm_eps", 1e-5)
	if err != nil {
		return Config{}, err
	}
	c.Eps = float32(eps)
	if c.FreqShift, err = f.float("freq_shift", 0); err != nil {
		return Config{}, err
	}
	if c.FlipSinToCos, err = f.bool("flip_sin_to_cos", true); err != nil {
		return Config{}, err
	}
	// Which levels have attention, from the block types.
	down, err := f.strings("down_block_types", n)
	if err != nil {
		return Config{}, err
	}
	up, err := f.strings("up_block_types", n)
	if err != nil {
		return Config{}, err
	}
	mid, err := f.string("mid_block_type", midAttn)
	if err != nil {
		return Config{}, err
	}
	if mid != midAttn {
		return Config{}, fmt.Errorf("mid_block_type %q is not supported (want %q)", mid, midAttn)
	}

	heads, err := f.intOrList("num_attention_heads", n, false)
	if err != nil {
		return Config{}, err
	}
	if heads == nil {
		// diffusers reads attention_head_dim as the head count when
		// num_attention_heads is unset (architecture.md §1).
		if heads, err = f.intOrList("attention_head_dim", n, true); err != nil {
			return Config{}, err
		}
	}
	c.Heads = heads

	depth, err := f.intOrList("transformer_layers_per_block", n, false)
	if err != nil {
		return Config{}, err
	}
	if depth == nil {
		depth = slices.Repeat([]int64{1}, n)
	}
	// reverse_transformer_layers_per_block lists the up blocks' depths in
	// up-block order (deepest level first); by default they mirror the
	// way down.
	upDepth := slices.Clone(depth)
	if rev, err := f.intOrList("reverse_transformer_layers_per_block", n, false); err != nil {
		return Config{}, err
	} else if rev != nil {
		upDepth = slices.Clone(rev)
		slices.Reverse(upDepth)
	}
	c.MidDepth = int(depth[n-1])
	c.Depth = make([]int, n)
	c.UpDepth = make([]int, n)
	for l := range n {
		switch down[l] {
		case downAttn:
			c.Depth[l] = int(depth[l])
		case downPlain:
		default:
			return Config{}, fmt.Errorf("down_block_types[%d] %q is not supported (want %s or %s)", l, down[l], downPlain, downAttn)
		}
		// up_block_types[i] is the block of level n-1-i.
		switch u := up[n-1-l]; u {
		case upAttn:
			c.UpDepth[l] = int(upDepth[l])
		case upPlain:
		default:
			return Config{}, fmt.Errorf("up_block_types[%d] %q is not supported (want %s or %s)", n-1-l, u, upPlain, upAttn)
		}
		if (c.Depth[l] > 0 || c.UpDepth[l] > 0) && (depth[l] <= 0 || upDepth[l] <= 0) {
			return Config{}, fmt.Errorf("level %d has attention but transformer depth %d/%d", l, depth[l], upDepth[l])
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// fields is a decoded JSON object whose members are read on demand, so
// that each field's error names it and null means "not set" as in diffusers.
type fields map[string]json.RawMessage

func (f fields) raw(name string) (json.RawMessage, bool) {
	r, ok := f[name]
	if !ok || string(r) == "null" {
		return nil, false
	}
	return r, true
}

func (f fields) float(name string, def float64) (float64, error) {
	r, ok := f.raw(name)
	if !ok {
		return def, nil
	}
	var v float64
	if err := json.Unmarshal(r, &v); err != nil {
		return 0, fmt.Errorf("%s: want a number, got %s", name, r)
	}
	return v, nil
}

func (f fields) int(name string, def int64, required bool) (int64, error) {
	r, ok := f.raw(name)
	if !ok {
		if required {
			return 0, fmt.Errorf("%s is missing", name)
		}
		return def, nil
	}
	v, err := decodeInt(r)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// decodeInt accepts an integral JSON number (Python writes 1e-05 style
// floats but plain integers for int fields).
func decodeInt(r json.RawMessage) (int64, error) {
	var v float64
	if err := json.Unmarshal(r, &v); err != nil || v != math.Trunc(v) || math.Abs(v) > 1<<40 {
		return 0, fmt.Errorf("want an integer, got %s", r)
	}
	return int64(v), nil
}

func (f fields) bool(name string, def bool) (bool, error) {
	r, ok := f.raw(name)
	if !ok {
		return def, nil
	}
	var v bool
	if err := json.Unmarshal(r, &v); err != nil {
		return false, fmt.Errorf("%s: want true or false, got %s", name, r)
	}
	return v, nil
}

func (f fields) string(name, def string) (string, error) {
	r, ok := f.raw(name)
	if !ok {
		return def, nil
	}
	var v string
	if err := json.Unmarshal(r, &v); err != nil {
		return "", fmt.Errorf("%s: want a string, got %s", name, r)
	}
	return v, nil
}

func (f fields) strings(name string, n int) ([]string, error) {
	r, ok := f.raw(name)
	if !ok {
		return nil, fmt.Errorf("%s is missing", name)
	}
	var v []string
	if err := json.Unmarshal(r, &v); err != nil {
		return nil, fmt.Errorf("%s: want a list of strings, got %s", name, r)
	}
	if len(v) != n {
		return nil, fmt.Errorf("%s has %d entries for %d levels (block_out_channels)", name, len(v), n)
	}
	return v, nil
}

func (f fields) ints(name string) ([]int64, error) {
	r, ok := f.raw(name)
	if !ok {
		return nil, fmt.Errorf("%s is missing", name)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(r, &raw); err != nil {
		return nil, fmt.Errorf("%s: want a list of integers, got %s", name, r)
	}
	out := make([]int64, len(raw))
	for i, e := range raw {
		v, err := decodeInt(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", name, i, err)
		}
		out[i] = v
	}
	return out, nil
}

// intOrList reads a field diffusers accepts as one integer for every level
// or a list with one per level. It returns nil when the field is unset and
// not required.
func (f fields) intOrList(name string, n int, required bool) ([]int64, error) {
	r, ok := f.raw(name)
	if !ok {
		if required {
			return nil, fmt.Errorf("%s is missing", name)
		}
		return nil, nil
	}
	if strings.HasPrefix(strings.TrimSpace(string(r)), "[") {
		var raw []json.RawMessage
		if err := json.Unmarshal(r, &raw); err != nil {
			return nil, fmt.Errorf("%s: want an integer or a list of integers, got %s", name, r)
		}
		if len(raw) != n {
			return nil, fmt.Errorf("%s has %d entries for %d levels (block_out_channels)", name, len(raw), n)
		}
		out := make([]int64, n)
		for i, e := range raw {
			if strings.HasPrefix(strings.TrimSpace(string(e)), "[") {
				return nil, fmt.Errorf("%s[%d] is a per-layer list; only one value per level is supported", name, i)
			}
			v, err := decodeInt(e)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", name, i, err)
			}
			out[i] = v
		}
		return out, nil
	}
	v, err := decodeInt(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return slices.Repeat([]int64{v}, n), nil
}

// unsupported rejects settings whose non-default values change the
// computation in ways SDXL's UNet does not use.
func (f fields) unsupported() error {
	// Fields that must be unset (or null).
	for _, name := range []string{
		"class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
		"time_cond_proj_dim", "timestep_post_act", "time_embedding_act_fn", "cross_attention_norm",
	} {
		if r, ok := f.raw(name); ok {
			return fmt.Errorf("%s = %s is not supported (SDXL leaves it null)", name, r)
		}
	}
	// Fields that must keep one value.
	want := []struct{ name, value string }{
		{"act_fn", `"silu"`},
		{"resnet_time_scale_shift", `"default"`},
		{"time_embedding_type", `"positional"`},
		{"attention_type", `"default"`},
		{"center_input_sample", "false"},
		{"dual_cross_attention", "false"},
		{"mid_block_only_cross_attention", "false"},
		{"resnet_skip_time_act", "false"},
		{"class_embeddings_concat", "false"},
		{"downsample_padding", "1"},
		{"mid_block_scale_factor", "1"},
		{"resnet_out_scale_factor", "1"},
		{"conv_in_kernel", "3"},
		{"conv_out_kernel", "3"},
	}
	for _, w := range want {
		r, ok := f.raw(w.name)
		if !ok {
			continue
		}
		var got, exp any
		if json.Unmarshal(r, &got) != nil || json.Unmarshal([]byte(w.value), &exp) != nil || fmt.Sprint(got) != fmt.Sprint(exp) {
			return fmt.Errorf("%s = %s is not supported (want %s)", w.name, r, w.value)
		}
	}
	// only_cross_attention may also be a per-level list.
	if r, ok := f.raw("only_cross_attention"); ok {
		var one bool
		var list []bool
		if json.Unmarshal(r, &one) == nil {
			list = []bool{one}
		} else if json.Unmarshal(r, &list) != nil {
			return fmt.Errorf("only_cross_attention: want false or a list of false, got %s", r)
		}
		if slices.Contains(list, true) {
			return fmt.Errorf("only_cross_attention = %s is not supported (want false)", r)
		}
	}
	if r, ok := f.raw("time_embedding_dim"); ok {
		v, err := decodeInt(r)
		chans, _ := f.ints("block_out_channels")
		if err != nil || len(chans) == 0 || v != 4*chans[0] {
			return fmt.Errorf("time_embedding_dim = %s is not supported (want 4 × block_out_channels[0])", r)
		}
	}
	return nil
}
