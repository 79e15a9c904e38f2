// Package clipconfig holds what CLIP's text encoder (engine/sdxl/clip) and
// image encoder (engine/sdxl/clipvision) share in reading a transformers
// config.json: the transformer's sizes, their parsing with transformers'
// defaults, and their validation. Each tower keeps its own Config type and
// adds its own fields around these.
package clipconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Fields is the part of a CLIPTextConfig or CLIPVisionConfig config.json
// both towers read; embed it in the tower's decoding struct. Pointers tell
// a missing field from a zero.
type Fields struct {
	HiddenSize    *int64   `json:"hidden_size"`
	Heads         *int64   `json:"num_attention_heads"`
	Layers        *int64   `json:"num_hidden_layers"`
	Intermediate  *int64   `json:"intermediate_size"`
	ProjectionDim *int64   `json:"projection_dim"`
	HiddenAct     *string  `json:"hidden_act"`
	LayerNormEps  *float64 `json:"layer_norm_eps"`
}

// Sizes are the transformer sizes both towers share.
type Sizes struct {
	Width         int64 // hidden_size
	Heads         int64 // num_attention_heads
	Layers        int64 // num_hidden_layers
	MLPWidth      int64 // intermediate_size
	ProjectionDim int64 // projection_dim
	Activation    string
	LayerNormEps  float32
}

// Sizes reads the fields. hidden_size, num_attention_heads,
// num_hidden_layers, intermediate_size and hidden_act are required, and so
// is projection_dim when needProjection (else it is 0 when absent): a guess
// would build a network that runs but computes the wrong thing.
// layer_norm_eps defaults to transformers' 1e-5. missing names the absent
// required fields in config.json's order.
func (f Fields) Sizes(needProjection bool) (s Sizes, missing []string) {
	need := func(name string, p *int64) int64 {
		if p == nil {
			missing = append(missing, name)
			return 0
		}
		return *p
	}
	s = Sizes{
		Width:        need("hidden_size", f.HiddenSize),
		Heads:        need("num_attention_heads", f.Heads),
		Layers:       need("num_hidden_layers", f.Layers),
		MLPWidth:     need("intermediate_size", f.Intermediate),
		LayerNormEps: 1e-5,
	}
	switch {
	case needProjection:
		s.ProjectionDim = need("projection_dim", f.ProjectionDim)
	case f.ProjectionDim != nil:
		s.ProjectionDim = *f.ProjectionDim
	}
	if f.HiddenAct == nil {
		missing = append(missing, "hidden_act")
	} else {
		s.Activation = *f.HiddenAct
	}
	if f.LayerNormEps != nil {
		s.LayerNormEps = float32(*f.LayerNormEps)
	}
	return s, missing
}

// Nested reports whether a nested config ("text_config", "vision_config"
// of a full CLIPConfig) is present: neither absent nor null.
func Nested(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// Problems collects what makes a config not a network, each phrase naming
// the config.json field, so that one error lists them all.
type Problems []string

// Positive notes a size that is not positive.
func (p *Problems) Positive(name string, v int64) {
	if v <= 0 {
		*p = append(*p, fmt.Sprintf("%s must be positive, got %d", name, v))
	}
}

// Addf notes a problem of the tower's own fields.
func (p *Problems) Addf(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// Sizes notes which of hidden_size, num_attention_heads,
// num_hidden_layers and intermediate_size are not positive.
func (p *Problems) Sizes(s Sizes) {
	p.Positive("hidden_size", s.Width)
	p.Positive("num_attention_heads", s.Heads)
	p.Positive("num_hidden_layers", s.Layers)
	p.Positive("intermediate_size", s.MLPWidth)
}

// Heads notes a width the heads do not divide.
func (p *Problems) Heads(s Sizes) {
	if s.Width > 0 && s.Heads > 0 && s.Width%s.Heads != 0 {
		p.Addf("hidden_size %d is not a multiple of num_attention_heads %d", s.Width, s.Heads)
	}
}

// Numerics notes an activation other than the two supported ones (listed
// in the message in the order given) and a layer_norm_eps that is not a
// positive finite number.
func (p *Problems) Numerics(s Sizes, act1, act2 string) {
	if s.Activation != act1 && s.Activation != act2 {
		p.Addf("hidden_act %q is not supported (want %q or %q)", s.Activation, act1, act2)
	}
	if !(s.LayerNormEps > 0) || math.IsInf(float64(s.LayerNormEps), 0) {
		p.Addf("layer_norm_eps must be a positive number, got %g", s.LayerNormEps)
	}
}

// Err is nil without problems, else one error "what: problem; problem".
func (p Problems) Err(what string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s", what, strings.Join(p, "; "))
}

// Or is *p, or def when the field is absent.
func Or(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}
