package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/unet"
	"github.com/pixery/pixery/engine/server"
)

// addAdapter puts a random plain IP-Adapter sized for the tiny pipeline
// UNet, and the golden tiny CLIP vision encoder, into the models folder as
// users lay them out.
func addAdapter(t *testing.T, dir string) {
	t.Helper()
	cfg, err := sdxl.LoadConfigDir(nntest.Golden(t, "pipeline/configs"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := unet.New(cfg.UNet)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	tensor := func(name string, scale float64, shape ...int64) safetensors.Named {
		return nntest.RandomF32(r, name, scale, shape...)
	}
	ctx := cfg.UNet.ContextDim
	ts := []safetensors.Named{
		tensor("image_proj.proj.weight", 0.3, 4*ctx, 24),
		tensor("image_proj.proj.bias", 0.1, 4*ctx),
		tensor("image_proj.norm.weight", 0.1, ctx),
		tensor("image_proj.norm.bias", 0.1, ctx),
	}
	for j, a := range u.CrossAttentions() {
		n := 2*j + 1
		ts = append(ts, tensor("ip_adapter."+strconv.Itoa(n)+".to_k_ip.weight", 0.5, a.ToK.Out, ctx), tensor("ip_adapter."+strconv.Itoa(n)+".to_v_ip.weight", 0.5, a.ToV.Out, ctx))
	}
	ipdir := filepath.Join(dir, "ip-adapters")
	encdir := filepath.Join(ipdir, "image_encoders", "tiny")
	os.MkdirAll(encdir, 0o755)
	if err := safetensors.WriteFile(filepath.Join(ipdir, "tiny-plain.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"ipadapter/image-encoder-tiny.safetensors": "model.safetensors", "ipadapter/image-encoder-tiny-config.json": "config.json"} {
		data, err := os.ReadFile(nntest.Golden(t, src))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(encdir, dst), data, 0o644)
	}
}

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
