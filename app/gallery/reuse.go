package gallery

import (
	"strings"

	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/sampler"
)

// ReuseMode says how much of an image's recipe Reuse takes.
type ReuseMode int

// Reuse modes.
const (
	// ReusePrompt takes the prompt and the negative prompt.
	ReusePrompt ReuseMode = iota
	// ReuseAll takes every setting the metadata has: model, size, steps,
	// CFG, sampler, seed, LoRAs, the IP-Adapter reference.
	ReuseAll
)

// Request is a generation request filled from an image's metadata, for the
// generation form (and, mapped by the caller, the engine's job request).
// Zero values mean "not given: keep what the form has".
type Request struct {
	Prompt, Negative string
	Model            string
	Width, Height    int
	Steps            int
	CFG              float64
	// Sampler is an engine sampler name ("dpmpp_2m_karras") when the
	// source's sampler and scheduler map to one; otherwise the source's own
	// name, with Scheduler beside it, and SamplerKnown false.
	Sampler, Scheduler string
	SamplerKnown       bool
	// Seed is set (not nil) when the image's seed is known.
	Seed     *int64
	RNG      string
	ClipSkip int
	LoRAs    []LoRA
	// RefSHA256 identifies the IP-Adapter reference image (which is not
	// stored in the PNG), with its scale and adapter.
	RefSHA256 string
	RefScale  float64
	IPAdapter string
}

// Reuse turns an image's metadata into a request.
func Reuse(it Item, mode ReuseMode) Request {
	r := Request{Prompt: it.Prompt, Negative: it.Negative}
	if mode != ReuseAll {
		return r
	}
	r.Model = it.Model
	r.Width, r.Height = it.Width, it.Height
	r.Steps, r.CFG = it.Steps, it.CFG
	r.Sampler, r.Scheduler = it.Sampler, it.Scheduler
	if it.Sampler != "" {
		if spec, err := sampler.Lookup(it.Sampler, comfyScheduler(it.Scheduler)); err == nil {
			r.Sampler, r.Scheduler, r.SamplerKnown = spec.Name(), "", true
		}
	}
	if it.HasSeed {
		seed := it.Seed
		r.Seed = &seed
	}
	r.RNG, r.ClipSkip = it.RNG, it.ClipSkip
	switch it.Source {
	case SourceA1111:
		// A1111 writes no RNG field for its default GPU-style noise and
		// "CPU" for torch's CPU generator, which is ComfyUI's noise.
		switch strings.ToUpper(it.RNG) {
		case "", "GPU":
			r.RNG = pngmeta.RNGA1111
		case "CPU":
			r.RNG = pngmeta.RNGComfy
		}
	case SourceComfyUI:
		r.RNG = pngmeta.RNGComfy
	}
	if len(it.LoRAs) > 0 {
		r.LoRAs = append([]LoRA(nil), it.LoRAs...)
	}
	r.RefSHA256, r.RefScale, r.IPAdapter = it.RefSHA256, it.RefScale, it.IPAdapter
	return r
}

// comfyScheduler maps ComfyUI's scheduler names onto the A1111 schedule
// types sampler.Lookup understands ("normal" is the uniform spacing; the
// other ComfyUI schedules have no engine equivalent).
func comfyScheduler(s string) string {
	switch strings.ToLower(s) {
	case "normal":
		return "Uniform"
	}
	return s
}
