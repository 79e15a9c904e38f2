package clip

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pixery/pixery/engine/sdxl/internal/clipconfig"
)

// Activations a config may name in hidden_act.
const (
	// QuickGELU is x·sigmoid(1.702x), OpenAI CLIP's activation (CLIP-L).
	QuickGELU = "quick_gelu"
	// GELU is the exact erf GELU (OpenCLIP bigG), architecture.md §3.
	GELU = "gelu"
)

// Config holds the sizes of one CLIP text transformer. Head counts cannot
// be inferred from the checkpoint's shapes, so they come from here.
type Config struct {
	VocabSize int64 // vocab_size
	Width     int64 // hidden_size
	Heads     int64 // num_attention_heads
	Layers    int64 // num_hidden_layers
	MLPWidth  int64 // intermediate_size
	// Positions is max_position_embeddings, which is also the fixed
	// sequence length of the graph's input_ids (77 for SDXL).
	Positions int64
	// Activation is hidden_act: QuickGELU or GELU.
	Activation   string
	LayerNormEps float32 // layer_norm_eps
	// ProjectionDim is the output width of OpenCLIP's text_projection
	// (projection_dim). CLIP-L in SDXL has no projection and ignores it.
	ProjectionDim int64
}

// SDXL returns the sizes of SDXL base's encoder of that kind:
// architecture.md §2 (CLIP ViT-L/14) and §3 (OpenCLIP ViT-bigG/14).
func (k Kind) SDXL() Config {
	if k == G {
		return Config{VocabSize: 49408, Width: 1280, Heads: 20, Layers: 32, MLPWidth: 5120, Positions: 77,
			Activation: GELU, LayerNormEps: 1e-5, ProjectionDim: 1280}
	}
	return Config{VocabSize: 49408, Width: 768, Heads: 12, Layers: 12, MLPWidth: 3072, Positions: 77,
		Activation: QuickGELU, LayerNormEps: 1e-5}
}

// Validate checks that the sizes make a network of that kind.
func (c Config) Validate(k Kind) error {
	if err := c.validate(k == G); err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	return nil
}

// sizes is the part of c that CLIP's image encoder shares.
func (c Config) sizes() clipconfig.Sizes {
	return clipconfig.Sizes{Width: c.Width, Heads: c.Heads, Layers: c.Layers, MLPWidth: c.MLPWidth,
		ProjectionDim: c.ProjectionDim, Activation: c.Activation, LayerNormEps: c.LayerNormEps}
}

func (c Config) validate(projection bool) error {
	var p clipconfig.Problems
	p.Positive("vocab_size", c.VocabSize)
	p.Sizes(c.sizes())
	p.Positive("max_position_embeddings", c.Positions)
	if projection {
		p.Positive("projection_dim", c.ProjectionDim)
	}
	p.Heads(c.sizes())
	p.Numerics(c.sizes(), QuickGELU, GELU)
	return p.Err("invalid config")
}

// hfConfig is the subset of a transformers CLIPTextConfig config.json that
// sizes the network. Pointers tell a missing field from a zero.
type hfConfig struct {
	clipconfig.Fields
	VocabSize      *int64          `json:"vocab_size"`
	MaxPositions   *int64          `json:"max_position_embeddings"`
	TextConfigJSON json.RawMessage `json:"text_config"`
}

// ParseConfig reads a transformers-style CLIP text config.json
// (CLIPTextConfig, as diffusers saves text_encoder/ and text_encoder_2/),
// or a full CLIPConfig whose "text_config" holds one. hidden_size,
// num_attention_heads, num_hidden_layers, intermediate_size and hidden_act
// are required: transformers always writes them, and a guess would build a
// network that runs but computes the wrong thing. vocab_size (49408),
// max_position_embeddings (77) and layer_norm_eps (1e-5) default to
// transformers' values; projection_dim stays 0 when absent, which
// Validate rejects for the OpenCLIP encoder.
func ParseConfig(data []byte) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, fmt.Errorf("parse CLIP text config: %w", err)
	}
	if clipconfig.Nested(h.TextConfigJSON) {
		if h.HiddenSize != nil {
			return Config{}, errors.New("parse CLIP text config: both hidden_size and text_config are present; which one sizes the text encoder is ambiguous")
		}
		return ParseConfig(h.TextConfigJSON)
	}
	s, missing := h.Sizes(false)
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("parse CLIP text config: missing %s", strings.Join(missing, ", "))
	}
	c := Config{
		Width:         s.Width,
		Heads:         s.Heads,
		Layers:        s.Layers,
		MLPWidth:      s.MLPWidth,
		VocabSize:     clipconfig.Or(h.VocabSize, 49408),
		Positions:     clipconfig.Or(h.MaxPositions, 77),
		ProjectionDim: s.ProjectionDim,
		Activation:    s.Activation,
		LayerNormEps:  s.LayerNormEps,
	}
	// The projection is checked by New, for the OpenCLIP encoder only.
	if err := c.validate(false); err != nil {
		return Config{}, fmt.Errorf("parse CLIP text config: %w", err)
	}
	return c, nil
}
