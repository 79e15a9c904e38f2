package gallery

import (
	"context"
	"reflect"
	"testing"

	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/sampler"
)

func TestReuse(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	writeSourcesGallery(t, dir)
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The engine names the samplers must map to, from the sampler package.
	name := func(n, sched string) string {
		spec, err := sampler.Lookup(n, sched)
		if err != nil {
			t.Fatal(err)
		}
		return spec.Name()
	}
	cases := []struct {
		id      string
		m       meta
		sampler string
		rng     string
		w, h    int
	}{
		{"pix.png", pixeryMeta, name("euler_a", ""), pngmeta.RNGA1111, 64, 48},
		{"sub/a1111.png", a1111Meta, name("DPM++ 2M", "Karras"), pngmeta.RNGComfy, 40, 56}, // "RNG: CPU"
		{"sub/deeper/comfy.PNG", comfyMeta, name("euler_ancestral", "Uniform"), pngmeta.RNGComfy, 32, 32},
	}
	for _, c := range cases {
		it, err := s.Get(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		p := Reuse(it, ReusePrompt)
		if !reflect.DeepEqual(p, Request{Prompt: c.m.prompt, Negative: c.m.negative}) {
			t.Errorf("%s prompt only: %+v", c.id, p)
		}
		r := Reuse(it, ReuseAll)
		if r.Prompt != c.m.prompt || r.Negative != c.m.negative || r.Model != c.m.model || r.Steps != c.m.steps ||
			r.CFG != c.m.cfg || r.Width != c.w || r.Height != c.h || r.Seed == nil || *r.Seed != c.m.seed ||
			!reflect.DeepEqual(r.LoRAs, c.m.loras) {
			t.Errorf("%s all settings: %+v", c.id, r)
		}
		if !r.SamplerKnown || r.Sampler != c.sampler || r.Scheduler != "" || r.RNG != c.rng {
			t.Errorf("%s sampler %q/%q known %v rng %q, want %q rng %q", c.id, r.Sampler, r.Scheduler, r.SamplerKnown, r.RNG, c.sampler, c.rng)
		}
		// The request does not share the item's LoRA slice.
		if len(r.LoRAs) > 0 {
			r.LoRAs[0].Weight = -1
			if it.LoRAs[0].Weight == -1 {
				t.Error("Reuse aliases the item's LoRAs")
			}
		}
	}
	px, _ := s.Get(ctx, "pix.png")
	if r := Reuse(px, ReuseAll); r.RefSHA256 != refSHA || r.RefScale != 0.5 || r.IPAdapter != "ip-adapter_sdxl" {
		t.Errorf("reference image not reused: %+v", r)
	}
	// A sampler the engine lacks is passed through, marked unknown; an
	// image without metadata gives no seed.
	odd := Item{Source: SourceComfyUI, Sampler: "dpmpp_sde", Scheduler: "exponential", Prompt: "x"}
	if r := Reuse(odd, ReuseAll); r.SamplerKnown || r.Sampler != "dpmpp_sde" || r.Scheduler != "exponential" || r.Seed != nil {
		t.Errorf("unknown sampler: %+v", r)
	}
}
