package clip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
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

func (c Config) validate(projection bool) error {
	var errs []string
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Sprintf("%s must be positive, got %d", name, v))
		}
	}
	positive("vocab_size", c.VocabSize)
	positive("hidden_size", c.Width)
	positive("num_attention_heads", c.Heads)
	positive("num_hidden_layers", c.Layers)
	positive("intermediate_size", c.MLPWidth)
	positive("max_position_embeddings", c.Positions)
	if projection {
		positive("projection_dim", c.ProjectionDim)
	}
	if c.Width > 0 && c.Heads > 0 && c.Width%c.Heads != 0 {
		errs = append(errs, fmt.Sprintf("hidden_size %d is not a multiple of num_attention_heads %d", c.Width, c.Heads))
	}
	if c.Activation != QuickGELU && c.Activation != GELU {
		errs = append(errs, fmt.Sprintf("hidden_act %q is not supported (want %q or %q)", c.Activation, QuickGELU, GELU))
	}
	if !(c.LayerNormEps > 0) || math.IsInf(float64(c.LayerNormEps), 0) {
		errs = append(errs, fmt.Sprintf("layer_norm_eps must be a positive number, got %g", c.LayerNormEps))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// hfConfig is the subset of a transformers CLIPTextConfig config.json that
// sizes the network. Pointers tell a missing field from a zero.
type hfConfig struct {
	VocabSize      *int64          `json:"vocab_size"`
	HiddenSize     *int64          `json:"hidden_size"`
	Heads          *int64          `json:"num_attention_heads"`
	Layers         *int64          `json:"num_hidden_layers"`
	Intermediate   *int64          `json:"intermediate_size"`
	MaxPositions   *int64          `json:"max_position_embeddings"`
	HiddenAct      *string         `json:"hidden_act"`
	LayerNormEps   *float64        `json:"layer_norm_eps"`
	ProjectionDim  *int64          `json:"projection_dim"`
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
	if len(h.TextConfigJSON) > 0 && !bytes.Equal(bytes.TrimSpace(h.TextConfigJSON), []byte("null")) {
		if h.HiddenSize != nil {
			return Config{}, errors.New("parse CLIP text config: both hidden_size and text_config are present; which one sizes the text encoder is ambiguous")
		}
		return ParseConfig(h.TextConfigJSON)
	}
	var missing []string
	need := func(name string, p *int64) int64 {
		if p == nil {
			missing = append(missing, name)
			return 0
		}
		return *p
	}
	or := func(p *int64, def int64) int64 {
		if p == nil {
			return def
		}
		return *p
	}
	c := Config{
		Width:         need("hidden_size", h.HiddenSize),
		Heads:         need("num_attention_heads", h.Heads),
		Layers:        need("num_hidden_layers", h.Layers),
		MLPWidth:      need("intermediate_size", h.Intermediate),
		VocabSize:     or(h.VocabSize, 49408),
		Positions:     or(h.MaxPositions, 77),
		ProjectionDim: or(h.ProjectionDim, 0),
		LayerNormEps:  1e-5,
	}
	if h.HiddenAct == nil {
		missing = append(missing, "hidden_act")
	} else {
		c.Activation = *h.HiddenAct
	}
	if h.LayerNormEps != nil {
		c.LayerNormEps = float32(*h.LayerNormEps)
	}
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("parse CLIP text config: missing %s", strings.Join(missing, ", "))
	}
	// The projection is checked by New, for the OpenCLIP encoder only.
	if err := c.validate(false); err != nil {
		return Config{}, fmt.Errorf("parse CLIP text config: %w", err)
	}
	return c, nil
}
