package unet

import (
	"context"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
)

// BenchmarkBuildSDXL builds the full-size SDXL UNet graph and serialises
// it (no session, weights stay external).
func BenchmarkBuildSDXL(b *testing.B) {
	for _, tc := range []struct {
		name string
		o    nn.BuildOptions
	}{{"fp32", nn.BuildOptions{}}, {"fp16", nn.BuildOptions{Float16: true}}} {
		b.Run(tc.name, func(b *testing.B) {
			w, _ := sdxlWeights(b)
			m, err := New(SDXL())
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Bind(w); err != nil {
				b.Fatal(err)
			}
			var size, nodes int
			b.ResetTimer()
			for b.Loop() {
				g, err := m.Build(w, tc.o)
				if err != nil {
					b.Fatal(err)
				}
				size = len(g.Model.Marshal())
				nodes = len(g.Model.Graph.Nodes)
			}
			b.ReportMetric(float64(size), "model-bytes")
			b.ReportMetric(float64(nodes), "nodes")
		})
	}
}

// BenchmarkTinySessionRun creates a session for the tiny golden UNet and
// runs it once on the golden inputs (batch 2, 16×24 latent).
func BenchmarkTinySessionRun(b *testing.B) {
	m, w := tinyModel(b)
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	in := goldenInputs(b, nntest.Golden(b, "unet-tiny-io.safetensors"), "timestep")
	env := nntest.Env(b)
	for b.Loop() {
		s, err := g.Session(env, runtime.SessionConfig{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkTinyRun is one run of the tiny UNet on an open session.
func BenchmarkTinyRun(b *testing.B) {
	m, w := tinyModel(b)
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	in := goldenInputs(b, nntest.Golden(b, "unet-tiny-io.safetensors"), "timestep")
	s := session(b, g)
	for b.Loop() {
		if _, err := s.Run(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}
