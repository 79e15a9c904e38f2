// Package registry knows which models pixery can run: the TOML entries of the
// built-in registry (package models) and of a user's models folder, merged,
// validated and checked against what lies on disk. A checkpoint that no entry
// names is offered too, under its file name, so that a model dropped into the
// folder can be picked right away.
package registry

import "fmt"

// Prediction types a model can be trained for.
const (
	PredictionEpsilon = "epsilon"
	PredictionV       = "v_prediction"
)

// ArchitectureSDXL is the only architecture the engine builds today.
const ArchitectureSDXL = "sdxl"

// Model is one registry entry: which file, where to get it, and how to
// prompt it. The TOML keys are given in the field tags.
type Model struct {
	// ID names the model in the API and on the command line.
	ID          string `toml:"id" json:"id"`
	DisplayName string `toml:"display_name" json:"display_name"`
	// File is the checkpoint's base name inside the models folder.
	File string `toml:"file" json:"file"`
	// Source says where File is downloaded from: "huggingface:owner/repo",
	// "civitai:<version id>" or an https URL. Empty for a model that is only
	// ever placed on disk by hand.
	Source       string `toml:"source" json:"source,omitempty"`
	Architecture string `toml:"architecture" json:"architecture"`
	// SHA256 is the file's lower-case hex digest, verified after a download;
	// empty when unknown.
	SHA256 string `toml:"sha256" json:"sha256,omitempty"`
	// Prediction is PredictionEpsilon (the default) or PredictionV.
	Prediction string `toml:"prediction" json:"prediction"`
	// ConfigDir, when set, names a folder laid out as diffusers lays out a
	// pipeline (unet/config.json, vae/config.json, text_encoder/config.json,
	// text_encoder_2/config.json) for checkpoints of non-standard sizes. In
	// the TOML it is relative to the TOML's folder or absolute; after LoadDir
	// it is an absolute OS path, after Load a path inside the fs.FS.
	ConfigDir      string         `toml:"config_dir" json:"config_dir,omitempty"`
	Defaults       Defaults       `toml:"defaults" json:"defaults"`
	NegativePrompt NegativePrompt `toml:"negative_prompt" json:"negative_prompt"`
	PromptGuide    PromptGuide    `toml:"prompt_guide" json:"prompt_guide"`

	// Origin is where the entry came from: the TOML's path, or the
	// checkpoint's path for a discovered model.
	Origin string `toml:"-" json:"-"`
	// Discovered is true for a checkpoint found on disk that no TOML names;
	// its architecture is assumed, not verified.
	Discovered bool `toml:"-" json:"discovered,omitempty"`
}

// Defaults are the generation settings a model is used with unless the user
// says otherwise.
type Defaults struct {
	CFG    float64 `toml:"cfg" json:"cfg"`
	Steps  int     `toml:"steps" json:"steps"`
	Width  int     `toml:"width" json:"width"`
	Height int     `toml:"height" json:"height"`
	// Sampler is a sampler name as the engine spells it ("euler_a").
	Sampler string `toml:"sampler" json:"sampler"`
	// Scheduler is the noise schedule ("karras", …); empty means the
	// sampler's own default (A1111's "Automatic").
	Scheduler string `toml:"scheduler" json:"scheduler,omitempty"`
	// ClipSkip counts as A1111 does: 1 takes the text encoders' last layer,
	// 2 the penultimate one. SDXL pipelines (diffusers, ComfyUI, A1111) use
	// the penultimate layer, so 2 is the default and what the pipeline
	// computes; it is recorded so the generation info matches what users of
	// Pony-family models expect to see.
	ClipSkip int `toml:"clip_skip" json:"clip_skip"`
}

// NegativePrompt holds the negative prompt offered with a model.
type NegativePrompt struct {
	Default string `toml:"default" json:"default"`
}

// PromptGuide tells users (and prompt helpers) how a model wants prompts.
type PromptGuide struct {
	QualityTags []string `toml:"quality_tags" json:"quality_tags"`
	// Style names the tag vocabulary ("danbooru", …).
	Style string `toml:"style" json:"style"`
	Notes string `toml:"notes" json:"notes"`
	// Prefix, when set, is what a prompt should start with.
	Prefix string `toml:"prefix" json:"prefix,omitempty"`
	// Example is a complete prompt that shows the expected form.
	Example string `toml:"example" json:"example,omitempty"`
}

// FallbackDefaults fill what an entry leaves out, and are the settings of a
// discovered checkpoint: SDXL's native 1024×1024, A1111's default CFG 7,
// 28 steps of Euler a, and the penultimate text-encoder layer.
var FallbackDefaults = Defaults{
	CFG:      7.0,
	Steps:    28,
	Width:    1024,
	Height:   1024,
	Sampler:  "euler_a",
	ClipSkip: 2,
}

// Severity tells whether a Problem kept something from loading.
type Severity int

const (
	// Error: the file, or the entry it holds, was not loaded.
	Error Severity = iota
	// Warning: loaded, but something deserves the user's attention (an
	// unknown key, an entry overriding another).
	Warning
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Problem is something wrong (or worth knowing) about a registry file.
type Problem struct {
	File     string
	Line     int // 1-based; 0 when not tied to a line
	Col      int // 1-based; 0 when unknown
	Severity Severity
	Message  string
}

// Error formats the problem as file:line:col: severity: message.
func (p Problem) Error() string {
	loc := p.File
	if p.Line > 0 {
		loc += fmt.Sprintf(":%d", p.Line)
		if p.Col > 0 {
			loc += fmt.Sprintf(":%d", p.Col)
		}
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Severity, p.Message)
}

func (p Problem) String() string { return p.Error() }
