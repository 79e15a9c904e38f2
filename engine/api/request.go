package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // registered for DecodeConfig of IP-Adapter images
	_ "image/png"
	"io"
	"math"
	"net/http"
	"strings"
	"unicode/utf8"

	_ "golang.org/x/image/webp"
)

// Limits on a job request.
const (
	MinSize = 64
	MaxSize = 4096
	// MaxPixels bounds Width×Height: 2048×2048, SDXL's largest useful
	// area, in any aspect ratio.
	MaxPixels = 2048 * 2048
	MinSteps  = 1
	MaxSteps  = 150
	MinCFG    = 1.0
	MaxCFG    = 30.0
	MaxBatch  = 16
	// MaxClipSkip counts CLIP-L's layers.
	MaxClipSkip = 12
	MaxLoRAs    = 16
	// MaxLoRAScale bounds a LoRA's weight either way.
	MaxLoRAScale    = 10.0
	MaxIPScale      = 2.0
	MaxPromptLength = 32 << 10
	// MaxIPImageBytes bounds the reference image file; MaxIPImageSide its
	// width and height.
	MaxIPImageBytes = 16 << 20
	MaxIPImageSide  = 8192
)

// wireJob is JobRequest as it arrives: pointers tell a field left out (take
// the default) from one set to zero (an error).
type wireJob struct {
	Model          *string        `json:"model"`
	Prompt         *string        `json:"prompt"`
	NegativePrompt *string        `json:"negative_prompt"`
	Width          *int           `json:"width"`
	Height         *int           `json:"height"`
	Steps          *int           `json:"steps"`
	CFG            *float64       `json:"cfg"`
	Sampler        *string        `json:"sampler"`
	Scheduler      *string        `json:"scheduler"`
	Seed           *int64         `json:"seed"`
	Batch          *int           `json:"batch"`
	RNG            *string        `json:"rng"`
	ClipSkip       *int           `json:"clip_skip"`
	LoRAs          []wireLoRA     `json:"loras"`
	IPAdapter      *wireIPAdapter `json:"ip_adapter"`
}

type wireLoRA struct {
	Name  *string  `json:"name"`
	Scale *float64 `json:"scale"`
}

type wireIPAdapter struct {
	Image   *string  `json:"image"`
	Scale   *float64 `json:"scale"`
	Adapter *string  `json:"adapter"`
}

// DecodeJobRequest reads a POST /v1/jobs body strictly: unknown fields,
// wrong types, trailing data and values out of bounds are errors naming the
// field (*FieldError). Fields left out are zero in the result, meaning "the
// model's default"; a left-out seed is -1. An error from the reader itself
// (such as *http.MaxBytesError) is returned as it is.
func DecodeJobRequest(r io.Reader) (*JobRequest, error) {
	var w wireJob
	if err := decodeStrict(r, &w); err != nil {
		return nil, err
	}
	req := &JobRequest{Seed: -1}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	req.Model, req.Prompt, req.NegativePrompt = str(w.Model), str(w.Prompt), str(w.NegativePrompt)
	req.Sampler, req.Scheduler, req.RNG = str(w.Sampler), str(w.Scheduler), str(w.RNG)
	// A field sent explicitly must be valid on its own, even if zero.
	checks := []struct {
		set   bool
		check func() error
	}{
		{w.Width != nil, func() error { req.Width = *w.Width; return checkSize("width", req.Width) }},
		{w.Height != nil, func() error { req.Height = *w.Height; return checkSize("height", req.Height) }},
		{w.Steps != nil, func() error { req.Steps = *w.Steps; return checkSteps(req.Steps) }},
		{w.CFG != nil, func() error { req.CFG = *w.CFG; return checkCFG(req.CFG) }},
		{w.Seed != nil, func() error { req.Seed = *w.Seed; return checkSeed(req.Seed) }},
		{w.Batch != nil, func() error { req.Batch = *w.Batch; return checkBatch(req.Batch) }},
		{w.ClipSkip != nil, func() error { req.ClipSkip = *w.ClipSkip; return checkClipSkip(req.ClipSkip) }},
		{w.RNG != nil, func() error { return checkRNG(req.RNG) }},
	}
	for _, c := range checks {
		if c.set {
			if err := c.check(); err != nil {
				return nil, err
			}
		}
	}
	if len(w.LoRAs) > MaxLoRAs {
		return nil, &FieldError{"loras", fmt.Sprintf("at most %d LoRAs, got %d", MaxLoRAs, len(w.LoRAs))}
	}
	for i, l := range w.LoRAs {
		field := fmt.Sprintf("loras[%d]", i)
		if l.Name == nil {
			return nil, &FieldError{field + ".name", "required"}
		}
		lo := LoRA{Name: *l.Name, Scale: 1}
		if l.Scale != nil {
			lo.Scale = *l.Scale
		}
		req.LoRAs = append(req.LoRAs, lo)
	}
	if ip := w.IPAdapter; ip != nil {
		if ip.Image == nil {
			return nil, &FieldError{"ip_adapter.image", "required"}
		}
		img, err := DecodeImageBase64(*ip.Image)
		if err != nil {
			return nil, &FieldError{"ip_adapter.image", err.Error()}
		}
		req.IPAdapter = &IPAdapter{Image: img, Scale: 1, Adapter: str(ip.Adapter)}
		if ip.Scale != nil {
			req.IPAdapter.Scale = *ip.Scale
		}
	}
	if err := req.checkCommon(); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeStrict decodes one JSON value into v, rejecting unknown fields and
// trailing data, and turns encoding/json's errors into *FieldError.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return JSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return &FieldError{"body", "unexpected data after the JSON object"}
	}
	return nil
}

// JSONError turns an encoding/json decoding error into a *FieldError naming
// the field; errors that are not about the JSON (the reader failed, the body
// was too large) are returned unchanged.
func JSONError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return &FieldError{"body", "empty body: want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{"body", "truncated JSON"}
	case errors.As(err, &syn):
		return &FieldError{"body", fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return &FieldError{field, fmt.Sprintf("must be %s, got %s", jsonTypeName(typ.Type.Kind().String()), typ.Value)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return &FieldError{name, "unknown field"}
	}
	return err
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "a " + kind
}

// Validate checks a request whose defaults have been filled in (the server
// does that from the model's registry entry): every bound, and the pixel
// budget. Whether the model, sampler and LoRAs exist is the engine's to say.
func (r *JobRequest) Validate() error {
	if err := checkSize("width", r.Width); err != nil {
		return err
	}
	if err := checkSize("height", r.Height); err != nil {
		return err
	}
	if r.Width*r.Height > MaxPixels {
		return &FieldError{"width", fmt.Sprintf("%dx%d is %d pixels, more than the %d (2048x2048) allowed", r.Width, r.Height, r.Width*r.Height, MaxPixels)}
	}
	if err := checkSteps(r.Steps); err != nil {
		return err
	}
	if err := checkCFG(r.CFG); err != nil {
		return err
	}
	if err := checkSeed(r.Seed); err != nil {
		return err
	}
	if err := checkBatch(r.Batch); err != nil {
		return err
	}
	if err := checkClipSkip(r.ClipSkip); err != nil {
		return err
	}
	if err := checkRNG(r.RNG); err != nil {
		return err
	}
	if r.Sampler == "" {
		return &FieldError{"sampler", "required"}
	}
	if r.Model == "" {
		return &FieldError{"model", "required"}
	}
	return r.checkCommon()
}

// checkCommon checks what has no default: text, LoRAs, the image prompt.
func (r *JobRequest) checkCommon() error {
	for _, f := range []struct{ name, v string }{{"prompt", r.Prompt}, {"negative_prompt", r.NegativePrompt}} {
		if len(f.v) > MaxPromptLength {
			return &FieldError{f.name, fmt.Sprintf("%d bytes, more than the %d allowed", len(f.v), MaxPromptLength)}
		}
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return &FieldError{f.name, "must be UTF-8 text without NUL characters"}
		}
	}
	if len(r.LoRAs) > MaxLoRAs {
		return &FieldError{"loras", fmt.Sprintf("at most %d LoRAs, got %d", MaxLoRAs, len(r.LoRAs))}
	}
	seen := map[string]bool{}
	for i, l := range r.LoRAs {
		field := fmt.Sprintf("loras[%d]", i)
		if strings.TrimSpace(l.Name) == "" {
			return &FieldError{field + ".name", "must not be empty"}
		}
		if seen[l.Name] {
			return &FieldError{field + ".name", fmt.Sprintf("LoRA %q is listed twice", l.Name)}
		}
		seen[l.Name] = true
		if math.IsNaN(l.Scale) || math.Abs(l.Scale) > MaxLoRAScale {
			return &FieldError{field + ".scale", fmt.Sprintf("must be between %g and %g, got %g", -MaxLoRAScale, MaxLoRAScale, l.Scale)}
		}
	}
	if ip := r.IPAdapter; ip != nil {
		if len(ip.Image) == 0 {
			return &FieldError{"ip_adapter.image", "required"}
		}
		if _, err := CheckImage(ip.Image); err != nil {
			return &FieldError{"ip_adapter.image", err.Error()}
		}
		if math.IsNaN(ip.Scale) || ip.Scale < 0 || ip.Scale > MaxIPScale {
			return &FieldError{"ip_adapter.scale", fmt.Sprintf("must be between 0 and %g, got %g", MaxIPScale, ip.Scale)}
		}
	}
	return nil
}

func checkSize(field string, v int) error {
	if v < MinSize || v > MaxSize {
		return &FieldError{field, fmt.Sprintf("must be between %d and %d, got %d", MinSize, MaxSize, v)}
	}
	if v%8 != 0 {
		return &FieldError{field, fmt.Sprintf("must be a multiple of 8, got %d", v)}
	}
	return nil
}

func checkSteps(v int) error {
	if v < MinSteps || v > MaxSteps {
		return &FieldError{"steps", fmt.Sprintf("must be between %d and %d, got %d", MinSteps, MaxSteps, v)}
	}
	return nil
}

func checkCFG(v float64) error {
	if math.IsNaN(v) || v < MinCFG || v > MaxCFG {
		return &FieldError{"cfg", fmt.Sprintf("must be between %g and %g, got %g", MinCFG, MaxCFG, v)}
	}
	return nil
}

func checkSeed(v int64) error {
	if v < -1 {
		return &FieldError{"seed", fmt.Sprintf("must be -1 (random) or a non-negative integer, got %d", v)}
	}
	return nil
}

func checkBatch(v int) error {
	if v < 1 || v > MaxBatch {
		return &FieldError{"batch", fmt.Sprintf("must be between 1 and %d, got %d", MaxBatch, v)}
	}
	return nil
}

func checkClipSkip(v int) error {
	if v < 1 || v > MaxClipSkip {
		return &FieldError{"clip_skip", fmt.Sprintf("must be between 1 and %d, got %d", MaxClipSkip, v)}
	}
	return nil
}

func checkRNG(v string) error {
	if v != RNGA1111 && v != RNGComfy {
		return &FieldError{"rng", fmt.Sprintf("must be %q or %q, got %q", RNGA1111, RNGComfy, v)}
	}
	return nil
}

// DecodeImageBase64 decodes an image file sent as base64, with or without
// padding, in the standard or URL-safe alphabet, optionally as a data: URL,
// and checks that it is a PNG, JPEG or WebP of sensible size.
func DecodeImageBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		_, data, ok := strings.Cut(rest, ",")
		if !ok {
			return nil, errors.New("data: URL without a comma")
		}
		s = data
	}
	if s == "" {
		return nil, errors.New("empty")
	}
	if base64.StdEncoding.DecodedLen(len(s)) > MaxIPImageBytes+3 {
		return nil, fmt.Errorf("image larger than %d bytes", MaxIPImageBytes)
	}
	var (
		b   []byte
		err error
	)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("not valid base64: %v", err)
	}
	if _, err := CheckImage(b); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckImage reports the format of a PNG, JPEG or WebP file after checking
// its header and size; anything else is an error.
func CheckImage(b []byte) (string, error) {
	if len(b) > MaxIPImageBytes {
		return "", fmt.Errorf("image larger than %d bytes", MaxIPImageBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("not a PNG, JPEG or WebP image: %v", err)
	}
	if format != "png" && format != "jpeg" && format != "webp" {
		return "", fmt.Errorf("%s images are not accepted: send PNG, JPEG or WebP", format)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxIPImageSide || cfg.Height > MaxIPImageSide {
		return "", fmt.Errorf("%dx%d image: each side must be 1..%d", cfg.Width, cfg.Height, MaxIPImageSide)
	}
	return format, nil
}
