package registry

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/pixery/pixery/engine/download"
)

// Limits on the values of an entry.
const (
	MinSize = 256  // smallest default width/height of a standard checkpoint
	MaxSize = 4096 // largest default width/height
	// MinSizeCustom is the smallest default width/height of an entry with a
	// config_dir: such checkpoints (the tiny test model) have other sizes.
	MinSizeCustom = 64
	MaxSteps      = 150
	MaxCFG        = 30.0
	MaxClipSkip   = 12 // CLIP-L has 12 layers
	maxIDLen      = 64
)

var (
	idRE      = regexp.MustCompile(`^[a-z0-9._-]+$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	samplerRE = regexp.MustCompile(`^[a-z0-9_+]+$`)
)

type fieldError struct{ key, msg string }

// validate checks the values of an entry whose defaults were filled in.
// Sampler and scheduler names are checked for form only: which ones exist is
// the sampler package's business, and the server names unknown ones.
func validate(m *Model) []fieldError {
	var errs []fieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, fieldError{key, fmt.Sprintf(format, args...)})
	}

	switch {
	case m.ID == "":
		add("id", "missing; every entry needs an id such as \"animagine\"")
	case len(m.ID) > maxIDLen:
		add("id", "%q is longer than %d characters", m.ID, maxIDLen)
	case !idRE.MatchString(m.ID):
		add("id", "%q may only hold lower-case letters, digits, '.', '_' and '-'", m.ID)
	case strings.Trim(m.ID, ".") == "":
		add("id", "%q is not a usable name", m.ID)
	}

	if msg := checkFileName(m.File); msg != "" {
		add("file", "%s", msg)
	}

	if m.Source != "" {
		if _, err := download.ParseSource(m.Source); err != nil {
			add("source", "%v", err)
		}
	}

	if m.Architecture != ArchitectureSDXL {
		add("architecture", "%q is not supported (supported: %s)", m.Architecture, ArchitectureSDXL)
	}
	if m.SHA256 != "" && !sha256RE.MatchString(m.SHA256) {
		add("sha256", "%q is not a SHA-256 digest (64 hex digits)", m.SHA256)
	}
	if m.Prediction != PredictionEpsilon && m.Prediction != PredictionV {
		add("prediction", "%q is not one of %q, %q", m.Prediction, PredictionEpsilon, PredictionV)
	}

	d := m.Defaults
	minSize := MinSize
	if m.ConfigDir != "" {
		minSize = MinSizeCustom
	}
	for _, s := range []struct {
		key string
		v   int
	}{{"defaults.width", d.Width}, {"defaults.height", d.Height}} {
		switch {
		case s.v < minSize || s.v > MaxSize:
			add(s.key, "%d is outside %d..%d", s.v, minSize, MaxSize)
		case s.v%8 != 0:
			add(s.key, "%d is not a multiple of 8 (the VAE works in 8-pixel cells)", s.v)
		}
	}
	if d.Steps < 1 || d.Steps > MaxSteps {
		add("defaults.steps", "%d is outside 1..%d", d.Steps, MaxSteps)
	}
	// The negated form also rejects NaN, which TOML allows (cfg = nan).
	if !(d.CFG >= 0 && d.CFG <= MaxCFG) || math.IsInf(d.CFG, 0) {
		add("defaults.cfg", "%v is outside 0..%v", d.CFG, MaxCFG)
	}
	if !samplerRE.MatchString(d.Sampler) {
		add("defaults.sampler", "%q is not a sampler name (lower-case, like \"euler_a\" or \"dpmpp_2m\")", d.Sampler)
	}
	if d.Scheduler != "" && !samplerRE.MatchString(d.Scheduler) {
		add("defaults.scheduler", "%q is not a scheduler name (lower-case, like \"karras\")", d.Scheduler)
	}
	if d.ClipSkip < 1 || d.ClipSkip > MaxClipSkip {
		add("defaults.clip_skip", "%d is outside 1..%d (1 = last text-encoder layer, 2 = penultimate)", d.ClipSkip, MaxClipSkip)
	}
	for i, t := range m.PromptGuide.QualityTags {
		if strings.TrimSpace(t) == "" {
			add("prompt_guide.quality_tags", "tag %d is empty", i+1)
		}
	}
	return errs
}

// checkFileName returns why name cannot be a checkpoint file name, or "".
// The name is joined to the models folder, so anything that could reach
// outside it (separators, "..", a drive letter) is refused.
func checkFileName(name string) string {
	switch {
	case name == "":
		return "missing; name the checkpoint file, e.g. \"model.safetensors\""
	case !strings.HasSuffix(name, ".safetensors") || len(name) == len(".safetensors"):
		return fmt.Sprintf("%q must be a .safetensors file name", name)
	case strings.ContainsAny(name, `/\:`) || strings.ContainsRune(name, 0):
		return fmt.Sprintf("%q must be a plain file name inside the models folder, without folders", name)
	case strings.HasPrefix(name, "."):
		return fmt.Sprintf("%q must not start with a dot", name)
	}
	return ""
}
