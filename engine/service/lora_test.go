package service

import (
	"bytes"
	"context"
	"image"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/sdxl/lora/loratest"
	"github.com/pixery/pixery/engine/server"
)

// addLoRA writes a kohya-format LoRA (rank 4, alpha 2) for a few UNet and
// text-encoder layers of the tiny pipeline model into loras/.
func addLoRA(t *testing.T, dir string) {
	t.Helper()
	loratest.WriteTiny(t, filepath.Join(dir, "loras", "tiny-style.safetensors"), rand.New(rand.NewPCG(3, 4)), 6)
}

func TestLoRAJobs(t *testing.T) {
	dir := modelsDir(t, "tiny")
	addLoRA(t, dir)
	s := newService(t, dir, 0)
	if got := s.LoRAs(); len(got) != 1 || got[0].Name != "tiny-style" {
		t.Fatalf("loras %+v", got)
	}
	base := api.JobRequest{Model: "tiny", Prompt: "1girl", NegativePrompt: "lowres", Width: 64, Height: 64, Steps: 2, CFG: 5, Sampler: "euler", Batch: 1, Seed: 9}
	loads := 0
	run := func(job api.JobRequest) server.Result {
		if err := s.Validate(&job); err != nil {
			t.Fatal(err)
		}
		res, err := s.Generate(context.Background(), &job, func(p server.Progress) {
			if p.Stage == server.StageLoading {
				loads++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	pix := func(r server.Result) []uint8 { return r.Image.(*image.NRGBA).Pix }
	plain := run(base)
	withField := base
	withField.LoRAs = []api.LoRA{{Name: "tiny-style", Scale: 1}}
	a := run(withField)
	withTag := base
	withTag.Prompt = "1girl <lora:tiny-style:1>"
	b := run(withTag)
	zero := base
	zero.LoRAs = []api.LoRA{{Name: "tiny-style", Scale: 0}}
	c := run(zero)
	again := run(base)
	if bytes.Equal(pix(plain), pix(a)) {
		t.Fatal("the LoRA changed nothing")
	}
	if !bytes.Equal(pix(a), pix(b)) {
		t.Error("<lora:tiny-style:1> in the prompt differs from the loras field")
	}
	if !bytes.Equal(pix(plain), pix(c)) || !bytes.Equal(pix(plain), pix(again)) {
		t.Error("strength 0, or a job after a LoRA job, differs from the plain model")
	}
	if loads != 1 {
		t.Errorf("%d model loads for 5 jobs with different LoRA sets, want 1", loads)
	}
	if l := a.Recipe.LoRAs; len(l) != 1 || l[0].Name != "tiny-style" || len(l[0].Hash) != 12 {
		t.Fatalf("recipe loras %+v", l)
	}
	raw, err := pngmeta.EncodeBytes(b.Image, &b.Recipe)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := pngmeta.Decode(bytes.NewReader(raw))
	if !strings.Contains(md.Parameters, "1girl <lora:tiny-style:1>") || !strings.Contains(md.Parameters, `Lora hashes: "tiny-style: `) {
		t.Errorf("parameters: %s", md.Parameters)
	}
	bad := base
	bad.Prompt = "1girl <lora:missing:1>"
	if fe, ok := s.Validate(&bad).(*api.FieldError); !ok || fe.Field != "prompt" {
		t.Errorf("unknown LoRA tag: %v", s.Validate(&bad))
	}
}
