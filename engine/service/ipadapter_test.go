package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/sdxl/ipadapter/ipadaptertest"
	"github.com/pixery/pixery/engine/server"
)

// addAdapter puts the tiny test IP-Adapter and its encoder into dir.
func addAdapter(t *testing.T, dir string) { ipadaptertest.WriteTiny(t, dir) }

func referencePNG(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := 0; y < 200; y++ {
		for x := 0; x < 300; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func TestIPAdapterJob(t *testing.T) {
	dir := modelsDir(t, "tiny")
	addAdapter(t, dir)
	s := newService(t, dir, 0)
	if got := s.IPAdapters(); len(got) != 1 || got[0].Name != "tiny-plain" {
		t.Fatalf("ip-adapters %+v", got)
	}
	ref := referencePNG(t)
	base := api.JobRequest{Model: "tiny", Prompt: "1girl", NegativePrompt: "lowres", Width: 64, Height: 64, Steps: 2, CFG: 5, Sampler: "euler", Batch: 1, Seed: 9}
	run := func(ip *api.IPAdapter) server.Result {
		job := base
		job.IPAdapter = ip
		if err := s.Validate(&job); err != nil {
			t.Fatal(err)
		}
		res, err := s.Generate(context.Background(), &job, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	plain := run(nil)
	with := run(&api.IPAdapter{Image: ref, Scale: 1, Adapter: "tiny-plain"})
	off := run(&api.IPAdapter{Image: ref, Scale: 1e-9})
	pix := func(r server.Result) []uint8 { return r.Image.(*image.NRGBA).Pix }
	if bytes.Equal(pix(plain), pix(with)) {
		t.Fatal("the reference image changed nothing")
	}
	diff := 0
	for i, v := range pix(off) {
		if d := int(v) - int(pix(plain)[i]); d > 1 || d < -1 {
			diff++
		}
	}
	if diff != 0 {
		t.Fatalf("scale ~0 differs from no adapter in %d values", diff)
	}
	sum := sha256.Sum256(ref)
	if r := with.Recipe.IPAdapter; r == nil || r.Adapter != "tiny-plain" || r.Scale != 1 || r.ImageSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("recipe %+v", with.Recipe.IPAdapter)
	}
	bad := base
	bad.IPAdapter = &api.IPAdapter{Image: []byte("not an image")}
	if fe, ok := s.Validate(&bad).(*api.FieldError); !ok || fe.Field != "ip_adapter.image" {
		t.Fatalf("bad image: %v", s.Validate(&bad))
	}
	bad.IPAdapter = &api.IPAdapter{Image: ref, Adapter: "nope"}
	if fe, ok := s.Validate(&bad).(*api.FieldError); !ok || fe.Field != "ip_adapter.adapter" {
		t.Fatalf("unknown adapter: %v", s.Validate(&bad))
	}
}
