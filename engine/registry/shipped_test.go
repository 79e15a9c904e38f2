package registry

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/pixery/pixery/models"
)

// The expected values are the ones issue #4 gives for the first three
// models (and, for Pony's size, its model card's 1024 px).
func TestShippedModels(t *testing.T) {
	r, problems := Embedded()
	for _, p := range problems {
		t.Errorf("embedded registry: %s", p)
	}
	if r.Len() != 3 {
		t.Fatalf("embedded registry has %d models, want 3", r.Len())
	}
	cases := []struct {
		id, display, file, source string
		defaults                  Defaults
		qualityTags               []string
		style, prefix             string
	}{
		{"animagine", "Animagine XL 4.0", "animagine-xl-4.0.safetensors", "huggingface:cagliostrolab/animagine-xl-4.0",
			Defaults{CFG: 5.0, Steps: 28, Width: 832, Height: 1216, Sampler: "euler_a", ClipSkip: 2},
			[]string{"masterpiece", "high score", "great score", "absurdres"}, "danbooru", ""},
		{"pony", "Pony Diffusion V6 XL", "ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "civitai:290640",
			Defaults{CFG: 7.0, Steps: 25, Width: 1024, Height: 1024, Sampler: "euler_a", ClipSkip: 2},
			[]string{"score_9", "score_8_up", "score_7_up", "score_6_up", "score_5_up", "score_4_up"}, "", "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up"},
		{"noobai", "NoobAI-XL 1.1", "NoobAI-XL-v1.1.safetensors", "huggingface:Laxhar/noobai-XL-1.1",
			Defaults{CFG: 5.5, Steps: 28, Width: 832, Height: 1216, Sampler: "euler_a", ClipSkip: 2},
			[]string{"masterpiece", "best quality", "newest", "absurdres", "highres"}, "danbooru", "masterpiece, best quality, newest, absurdres, highres"},
	}
	negatives := map[string]bool{}
	for _, c := range cases {
		m, err := r.Resolve(c.id)
		if err != nil {
			t.Fatal(err)
		}
		if m.DisplayName != c.display || m.File != c.file || m.Source != c.source || m.Architecture != ArchitectureSDXL ||
			m.Prediction != PredictionEpsilon || m.Discovered || m.Origin != "models/"+c.id+".toml" {
			t.Errorf("%s: identity fields %+v", c.id, m)
		}
		if m.Defaults != c.defaults {
			t.Errorf("%s: defaults %+v, want %+v", c.id, m.Defaults, c.defaults)
		}
		g := m.PromptGuide
		if !reflect.DeepEqual(g.QualityTags, c.qualityTags) {
			t.Errorf("%s: quality tags %q", c.id, g.QualityTags)
		}
		if c.style != "" && g.Style != c.style {
			t.Errorf("%s: style %q", c.id, g.Style)
		}
		if g.Prefix != c.prefix {
			t.Errorf("%s: prefix %q, want %q", c.id, g.Prefix, c.prefix)
		}
		if g.Notes == "" || g.Example == "" || m.NegativePrompt.Default == "" {
			t.Errorf("%s: notes, example and negative prompt must all be given", c.id)
		}
		if negatives[m.NegativePrompt.Default] {
			t.Errorf("%s: negative prompt is a copy of another model's", c.id)
		}
		negatives[m.NegativePrompt.Default] = true
		// The example shows the guide applied: prefix first, quality tags in it.
		if c.prefix != "" && !strings.HasPrefix(g.Example, c.prefix) {
			t.Errorf("%s: example does not start with the prefix", c.id)
		}
		for _, tag := range c.qualityTags {
			if !strings.Contains(g.Example, tag) {
				t.Errorf("%s: example lacks quality tag %q", c.id, tag)
			}
		}
	}
	pony, _ := r.Resolve("pony")
	// Clip skip 2 is also the fallback, so check that Pony's file sets it.
	src, err := fs.ReadFile(models.FS, "pony.toml")
	if err != nil || !strings.Contains(string(src), "\nclip_skip = 2\n") {
		t.Errorf("pony.toml does not set clip_skip = 2 (err %v)", err)
	}
	for _, w := range []string{"danbooru quality tags", "masterpiece", "score tags", "source_anime", "rating_safe"} {
		if !strings.Contains(pony.PromptGuide.Notes, w) {
			t.Errorf("pony notes lack %q", w)
		}
	}
	for _, bad := range []string{"masterpiece", "best quality"} {
		if strings.Contains(pony.PromptGuide.Example, bad) || strings.Contains(pony.NegativePrompt.Default, bad) {
			t.Errorf("pony prompts use the danbooru quality tag %q they warn against", bad)
		}
	}
}
