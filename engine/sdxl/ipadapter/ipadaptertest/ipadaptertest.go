// Package ipadaptertest lays out a small IP-Adapter in a models folder for
// the tests of packages that find and apply adapters (the engine service,
// the app's test engine).
package ipadaptertest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// AdapterName is the adapter WriteTiny writes (its file name without
// extension), as the engine lists it.
const AdapterName = "tiny-plain"

// WriteTiny puts a random plain IP-Adapter sized for the tiny pipeline UNet,
// and the golden tiny CLIP vision encoder, into the models folder dir as
// users lay them out (ip-adapters/ and ip-adapters/image_encoders/).
func WriteTiny(t testing.TB, dir string) {
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
	if err := os.MkdirAll(encdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(filepath.Join(ipdir, AdapterName+".safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"ipadapter/image-encoder-tiny.safetensors": "model.safetensors", "ipadapter/image-encoder-tiny-config.json": "config.json"} {
		data, err := os.ReadFile(nntest.Golden(t, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(encdir, dst), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
