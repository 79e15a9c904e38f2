package vae

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Prefix is where an sgm single-file checkpoint keeps the VAE's tensors.
const Prefix = "first_stage_model."

// DefaultScalingFactor is SDXL's latent scaling factor (architecture.md §6,
// "Scaling"): the sampler works on latent·0.13025 and the decoder takes the
// latent divided by it. SD1.x uses 0.18215; the two must not be mixed.
const DefaultScalingFactor = 0.13025

// Eps is the epsilon of every GroupNorm in the VAE (architecture.md §6:
// sgm's Normalize uses 1e-6, unlike the UNet's 1e-5).
const Eps = 1e-6

// Config holds the sizes of an SDXL-shaped VAE (diffusers AutoencoderKL with
// DownEncoderBlock2D/UpDecoderBlock2D blocks, sgm's AutoencoderKL).
type Config struct {
	// InChannels is the image's channel count at the encoder input and
	// OutChannels at the decoder output (3 for RGB).
	InChannels  int64
	OutChannels int64
	// BlockOutChannels are the widths of the resolution levels, finest
	// first (sgm ch·ch_mult). The encoder halves the resolution after every
	// level but the last; the decoder doubles it the same number of times.
	BlockOutChannels []int64
	// LayersPerBlock is the number of resnets per encoder level; decoder
	// levels have one more.
	LayersPerBlock int64
	// LatentChannels is the latent's channel count (sgm z_channels and
	// embed_dim). The encoder produces twice as many: mean and log-variance.
	LatentChannels int64
	// NormGroups is the GroupNorm group count (32 in SDXL, 8 in the tiny
	// golden model); it cannot be inferred from tensor shapes.
	NormGroups int64
	// ScalingFactor relates the sampler's latent to the VAE's:
	// decode(z / ScalingFactor), encode(x)·ScalingFactor. The graphs built
	// here leave it out; the pipeline applies it.
	ScalingFactor float64
	// ForceUpcast says the VAE must run in float32 even where the rest of
	// the pipeline computes in float16: SDXL's original VAE overflows in
	// fp16 (architecture.md §6, fp16 caveat).
	ForceUpcast bool
}

// SDXL returns the configuration of SDXL base's VAE (architecture.md §6).
func SDXL() Config {
	return Config{
		InChannels:       3,
		OutChannels:      3,
		BlockOutChannels: []int64{128, 256, 512, 512},
		LayersPerBlock:   2,
		LatentChannels:   4,
		NormGroups:       32,
		ScalingFactor:    DefaultScalingFactor,
		ForceUpcast:      true,
	}
}

// Bounds that keep a hostile config from asking for absurd graphs.
const (
	maxChannels = 1 << 16
	maxLevels   = 8
	maxLayers   = 64
)

// Validate reports the first problem that would make the config unusable.
func (c Config) Validate() error {
	positive := func(name string, v, max int64) error {
		if v <= 0 || v > max {
			return fmt.Errorf("%s = %d, want 1..%d", name, v, max)
		}
		return nil
	}
	if err := errors.Join(
		positive("in_channels", c.InChannels, maxChannels),
		positive("out_channels", c.OutChannels, maxChannels),
		positive("layers_per_block", c.LayersPerBlock, maxLayers),
		positive("latent_channels", c.LatentChannels, maxChannels),
		positive("norm_num_groups", c.NormGroups, maxChannels),
	); err != nil {
		return err
	}
	if n := len(c.BlockOutChannels); n == 0 || n > maxLevels {
		return fmt.Errorf("block_out_channels has %d entries, want 1..%d", n, maxLevels)
	}
	for i, ch := range c.BlockOutChannels {
		if err := positive(fmt.Sprintf("block_out_channels[%d]", i), ch, maxChannels); err != nil {
			return err
		}
		if ch%c.NormGroups != 0 {
			return fmt.Errorf("block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", i, ch, c.NormGroups)
		}
	}
	if !(c.ScalingFactor > 0) || math.IsInf(c.ScalingFactor, 0) {
		return fmt.Errorf("scaling_factor = %v, want a positive number", c.ScalingFactor)
	}
	return nil
}

// diffusersConfig is the part of diffusers' AutoencoderKL config.json that
// matters here. Pointers tell a missing field from a zero one.
type diffusersConfig struct {
	InChannels           *int64   `json:"in_channels"`
	OutChannels          *int64   `json:"out_channels"`
	DownBlockTypes       []string `json:"down_block_types"`
	UpBlockTypes         []string `json:"up_block_types"`
	BlockOutChannels     []int64  `json:"block_out_channels"`
	LayersPerBlock       *int64   `json:"layers_per_block"`
	ActFn                *string  `json:"act_fn"`
	LatentChannels       *int64   `json:"latent_channels"`
	NormNumGroups        *int64   `json:"norm_num_groups"`
	ScalingFactor        *float64 `json:"scaling_factor"`
	ForceUpcast          *bool    `json:"force_upcast"`
	MidBlockAddAttention *bool    `json:"mid_block_add_attention"`
	UseQuantConv         *bool    `json:"use_quant_conv"`
	UsePostQuantConv     *bool    `json:"use_post_quant_conv"`
}

// ParseConfig reads the config.json that diffusers writes for an
// AutoencoderKL. block_out_channels, layers_per_block, latent_channels and
// norm_num_groups are required; in/out_channels default to 3,
// scaling_factor to SDXL's 0.13025 and force_upcast to true. Configs
// describing another kind of VAE (other block types, activation, no mid
// attention, no quant convs) are rejected with the field at fault.
func ParseConfig(data []byte) (Config, error) {
	var d diffusersConfig
	if err := json.Unmarshal(data, &d); err != nil {
		return Config{}, fmt.Errorf("parse VAE config: %w", err)
	}
	var missing []string
	need := func(name string, ok bool) {
		if !ok {
			missing = append(missing, name)
		}
	}
	need("block_out_channels", d.BlockOutChannels != nil)
	need("layers_per_block", d.LayersPerBlock != nil)
	need("latent_channels", d.LatentChannels != nil)
	need("norm_num_groups", d.NormNumGroups != nil)
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("parse VAE config: missing %s", strings.Join(missing, ", "))
	}
	c := SDXL()
	c.BlockOutChannels = d.BlockOutChannels
	c.LayersPerBlock = *d.LayersPerBlock
	c.LatentChannels = *d.LatentChannels
	c.NormGroups = *d.NormNumGroups
	if d.InChannels != nil {
		c.InChannels = *d.InChannels
	}
	if d.OutChannels != nil {
		c.OutChannels = *d.OutChannels
	}
	if d.ScalingFactor != nil {
		c.ScalingFactor = *d.ScalingFactor
	}
	if d.ForceUpcast != nil {
		c.ForceUpcast = *d.ForceUpcast
	}
	if err := checkTypes("down_block_types", d.DownBlockTypes, "DownEncoderBlock2D", len(c.BlockOutChannels)); err != nil {
		return Config{}, fmt.Errorf("parse VAE config: %w", err)
	}
	if err := checkTypes("up_block_types", d.UpBlockTypes, "UpDecoderBlock2D", len(c.BlockOutChannels)); err != nil {
		return Config{}, fmt.Errorf("parse VAE config: %w", err)
	}
	if d.ActFn != nil && *d.ActFn != "silu" && *d.ActFn != "swish" {
		return Config{}, fmt.Errorf("parse VAE config: act_fn %q is not supported (want silu)", *d.ActFn)
	}
	for _, f := range []struct {
		name string
		v    *bool
	}{{"mid_block_add_attention", d.MidBlockAddAttention}, {"use_quant_conv", d.UseQuantConv}, {"use_post_quant_conv", d.UsePostQuantConv}} {
		if f.v != nil && !*f.v {
			return Config{}, fmt.Errorf("parse VAE config: %s false is not supported (SDXL's VAE has it)", f.name)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("parse VAE config: %w", err)
	}
	return c, nil
}

// checkTypes accepts an absent list, or one entry per level, all want.
func checkTypes(field string, types []string, want string, levels int) error {
	if types == nil {
		return nil
	}
	if len(types) != levels {
		return fmt.Errorf("%s has %d entries but block_out_channels has %d", field, len(types), levels)
	}
	for i, t := range types {
		if t != want {
			return fmt.Errorf("%s[%d] = %q is not supported (want %s)", field, i, t, want)
		}
	}
	return nil
}
