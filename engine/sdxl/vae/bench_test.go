package vae

import (
	"path/filepath"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
)

// BenchmarkBuildSDXL builds the full-size graphs against a header-only
// checkpoint of SDXL's VAE keys (no session, no weights read).
func BenchmarkBuildSDXL(b *testing.B) {
	path := filepath.Join(b.TempDir(), "sdxl-vae-header.safetensors")
	nntest.WriteHeaderOnly(b, path, nntest.SDXLKeys(b, "vae"), nil)
	w := nntest.OpenWeights(b, path)
	m := New(SDXL())
	if err := m.Bind(w); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name    string
		encoder bool
	}{{"decoder", false}, {"encoder", true}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				g := build(b, m, bc.encoder, nn.BuildOptions{})
				_ = g.Model.Marshal()
			}
		})
	}
}

// BenchmarkTinyDecoder measures session creation and one run of the tiny
// golden decoder (batch 2, 8×12 latent → 64×96 image).
func BenchmarkTinyDecoder(b *testing.B) {
	m, _ := tinyModel(b)
	g := build(b, m, false, nn.BuildOptions{})
	env := nntest.Env(b)
	latent := nntest.IOTensor(b, nntest.Golden(b, "vae-tiny-io.safetensors"), "latent")
	b.Run("session", func(b *testing.B) {
		for b.Loop() {
			s, err := g.Session(env, runtime.SessionConfig{})
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
	b.Run("run", func(b *testing.B) {
		s, err := g.Session(env, runtime.SessionConfig{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		in := map[string]runtime.Tensor{LatentInput: latent}
		for b.Loop() {
			if _, err := s.Run(b.Context(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPreview measures the latent → RGB preview of a 1024×1024
// image's latent (128×128).
func BenchmarkPreview(b *testing.B) {
	latent := make([]float32, 4*128*128)
	for i := range latent {
		latent[i] = float32(i%17)/8 - 1
	}
	for b.Loop() {
		Preview(latent, 128, 128)
	}
}
