// Package clip builds SDXL's two text encoders as ONNX graphs whose weights
// are read straight from a single-file (sgm) checkpoint:
//
//   - L, CLIP ViT-L/14's text transformer in Hugging Face CLIPTextModel
//     naming under PrefixL (architecture.md §2);
//   - G, OpenCLIP ViT-bigG/14's text transformer in OpenCLIP naming under
//     PrefixG (architecture.md §3).
//
// Both graphs take input_ids [batch, 77] (int64) and give three float32
// outputs: "hidden" (the last layer's output after the final LayerNorm),
// "penultimate" (the input of the last layer, no final LayerNorm — what
// SDXL's cross-attention context is made of, §2–§4) and "pooled" (the final
// hidden state at the first EOS token, projected by text_projection for G).
package clip

import (
	"fmt"
	"slices"

	"github.com/pixery/pixery/engine/nn"
)

// Kind names one of SDXL's two text encoders. Its values are the component
// names used by checkpoint-keys.tsv and the command line.
type Kind string

// The two text encoders.
const (
	L Kind = "clip_l"
	G Kind = "clip_g"
)

// Checkpoint prefixes of the two encoders in an sgm single-file checkpoint.
const (
	PrefixL = "conditioner.embedders.0.transformer.text_model."
	PrefixG = "conditioner.embedders.1.model."
)

// KnownExtras are checkpoint keys of the text encoders that SDXL
// checkpoints carry but generation does not use, so a loader must not call
// them unknown: CLIP-L's position_ids buffer (stored as F16 in the base
// file; positions are always 0..76, architecture.md §0) and OpenCLIP's
// logit_scale (§3). They are full key names, so matching a key by equality
// or by strings.HasSuffix gives the same answer.
var KnownExtras = []string{
	PrefixL + "embeddings.position_ids",
	PrefixG + "logit_scale",
}

// ParseKind accepts "clip_l" or "clip_g".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case L, G:
		return k, nil
	}
	return "", fmt.Errorf("unknown text encoder %q (want %q or %q)", s, L, G)
}

// Prefix is the checkpoint prefix of the encoder's tensors.
func (k Kind) Prefix() string {
	if k == G {
		return PrefixG
	}
	return PrefixL
}

// Unknown lists, sorted, the keys under the encoder's prefix that no
// parameter bound and that are not KnownExtras: tensors this code does not
// understand, worth reporting to the user.
func (k Kind) Unknown(w *nn.Weights) []string {
	var out []string
	for _, key := range w.Unused(k.Prefix()) {
		if !slices.Contains(KnownExtras, key) {
			out = append(out, key)
		}
	}
	return out
}

// Encoder is either text encoder: a module tree that binds to a checkpoint
// and then builds its graph.
type Encoder interface {
	// Kind says which encoder it is.
	Kind() Kind
	// Config returns the sizes it was made with.
	Config() Config
	// Bind binds every parameter to the checkpoint tensors under
	// Kind().Prefix(); problems are reported as a wrapped *nn.BindError.
	Bind(w *nn.Weights) error
	// Build makes the graph (input "input_ids"; outputs "hidden",
	// "penultimate", "pooled"). It needs a successful Bind.
	Build(o nn.BuildOptions) (*nn.Graph, error)
}

// New makes the encoder of that kind with the given sizes.
func New(k Kind, c Config) (Encoder, error) {
	switch k {
	case L:
		return NewTextModel(c)
	case G:
		return NewOpenCLIPText(c)
	}
	_, err := ParseKind(string(k))
	return nil, err
}

// binding is what both encoders remember between Bind and Build.
type binding struct {
	cfg   Config
	dir   string
	bound bool
}

func (s *binding) Config() Config { return s.cfg }

func (s *binding) bind(k Kind, w *nn.Weights, module any) error {
	s.bound = false
	if err := w.Bind(k.Prefix(), module); err != nil {
		return fmt.Errorf("bind %s text encoder: %w", k, err)
	}
	s.dir, s.bound = w.Dir(), true
	return nil
}

func (s *binding) ready(k Kind) error {
	if !s.bound {
		return fmt.Errorf("build %s text encoder: weights not bound (call Bind first)", k)
	}
	return nil
}
