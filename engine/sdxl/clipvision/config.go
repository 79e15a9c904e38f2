package clipvision

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/internal/clipconfig"
)

// Config holds the sizes of a CLIP vision transformer, named after the
// fields of transformers' CLIPVisionConfig. Head counts cannot be read from
// a checkpoint's shapes, so they come from here.
type Config struct {
	ImageSize int64 // image_size: the square input side (224)
	PatchSize int64 // patch_size (14)
	Channels  int64 // num_channels (3)
	Width     int64 // hidden_size
	Heads     int64 // num_attention_heads
	Layers    int64 // num_hidden_layers
	MLPWidth  int64 // intermediate_size
	// ProjectionDim is the width of image_embeds (visual_projection).
	ProjectionDim int64 // projection_dim
	// Activation is hidden_act: clip.GELU (OpenCLIP ViT-H and bigG) or
	// clip.QuickGELU (OpenAI's ViT-L).
	Activation   string
	LayerNormEps float32 // layer_norm_eps
}

// ViTH14 is OpenCLIP ViT-H/14's image tower as h94/IP-Adapter ships it
// (models/image_encoder), used by the *_vit-h SDXL adapters
// (ip-adapter.md §2).
func ViTH14() Config {
	return Config{ImageSize: 224, PatchSize: 14, Channels: 3, Width: 1280, Heads: 16, Layers: 32, MLPWidth: 5120,
		ProjectionDim: 1024, Activation: clip.GELU, LayerNormEps: 1e-5}
}

// ViTBigG14 is OpenCLIP ViT-bigG/14's image tower (h94/IP-Adapter
// sdxl_models/image_encoder), used by ip-adapter_sdxl (ip-adapter.md §2).
func ViTBigG14() Config {
	return Config{ImageSize: 224, PatchSize: 14, Channels: 3, Width: 1664, Heads: 16, Layers: 48, MLPWidth: 8192,
		ProjectionDim: 1280, Activation: clip.GELU, LayerNormEps: 1e-5}
}

// Grid is the number of patches along each side.
func (c Config) Grid() int64 { return c.ImageSize / c.PatchSize }

// Tokens is the sequence length: one class token and Grid² patches (257
// for 224-pixel images and 14-pixel patches).
func (c Config) Tokens() int64 { return c.Grid()*c.Grid() + 1 }

// Name describes the configuration for messages: "CLIP ViT-H/14" for the
// known towers, else the sizes.
func (c Config) Name() string {
	switch c {
	case ViTH14():
		return "CLIP ViT-H/14"
	case ViTBigG14():
		return "CLIP ViT-bigG/14"
	}
	return fmt.Sprintf("CLIP vision (width %d, %d layers, image_embeds %d)", c.Width, c.Layers, c.ProjectionDim)
}

// sizes is the part of c that CLIP's text encoder shares.
func (c Config) sizes() clipconfig.Sizes {
	return clipconfig.Sizes{Width: c.Width, Heads: c.Heads, Layers: c.Layers, MLPWidth: c.MLPWidth,
		ProjectionDim: c.ProjectionDim, Activation: c.Activation, LayerNormEps: c.LayerNormEps}
}

// Validate checks that the sizes make a network.
func (c Config) Validate() error {
	var p clipconfig.Problems
	p.Positive("image_size", c.ImageSize)
	p.Positive("patch_size", c.PatchSize)
	p.Positive("num_channels", c.Channels)
	p.Sizes(c.sizes())
	p.Positive("projection_dim", c.ProjectionDim)
	p.Heads(c.sizes())
	if c.ImageSize > 0 && c.PatchSize > 0 && c.ImageSize%c.PatchSize != 0 {
		p.Addf("image_size %d is not a multiple of patch_size %d", c.ImageSize, c.PatchSize)
	}
	if c.ImageSize > 4096 {
		p.Addf("image_size %d is implausibly large", c.ImageSize)
	}
	p.Numerics(c.sizes(), clip.GELU, clip.QuickGELU)
	return p.Err("invalid CLIP vision config")
}

// hfConfig is the subset of a transformers CLIPVisionConfig config.json
// that sizes the network. Pointers tell a missing field from a zero.
type hfConfig struct {
	clipconfig.Fields
	ImageSize    *int64          `json:"image_size"`
	PatchSize    *int64          `json:"patch_size"`
	Channels     *int64          `json:"num_channels"`
	VisionConfig json.RawMessage `json:"vision_config"`
}

// ParseConfig reads a transformers CLIPVisionConfig config.json (as
// h94/IP-Adapter's image_encoder folders hold), or a full CLIPConfig whose
// "vision_config" holds one. hidden_size, num_attention_heads,
// num_hidden_layers, intermediate_size, projection_dim and hidden_act are
// required: a guess would build a network that runs but computes the wrong
// thing. image_size (224), patch_size (32), num_channels (3) and
// layer_norm_eps (1e-5) default to transformers' values.
func ParseConfig(data []byte) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, fmt.Errorf("parse CLIP vision config: %w", err)
	}
	if clipconfig.Nested(h.VisionConfig) {
		if h.HiddenSize != nil {
			return Config{}, errors.New("parse CLIP vision config: both hidden_size and vision_config are present; which one sizes the image encoder is ambiguous")
		}
		return ParseConfig(h.VisionConfig)
	}
	s, missing := h.Sizes(true)
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("parse CLIP vision config: missing %s", strings.Join(missing, ", "))
	}
	c := Config{
		Width:         s.Width,
		Heads:         s.Heads,
		Layers:        s.Layers,
		MLPWidth:      s.MLPWidth,
		ProjectionDim: s.ProjectionDim,
		ImageSize:     clipconfig.Or(h.ImageSize, 224),
		PatchSize:     clipconfig.Or(h.PatchSize, 32),
		Channels:      clipconfig.Or(h.Channels, 3),
		Activation:    s.Activation,
		LayerNormEps:  s.LayerNormEps,
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("parse CLIP vision config: %w", err)
	}
	return c, nil
}
