package clip

import (
	"context"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
)

// BenchmarkBuildFullSize builds each SDXL-size graph (bound to a
// header-only checkpoint; no session), and separately serialises it, as
// Session does before handing it to ONNX Runtime.
func BenchmarkBuildFullSize(b *testing.B) {
	encs, _, _ := fullSizeEncoders(b)
	for _, k := range []Kind{L, G} {
		b.Run(string(k)+"/build", func(b *testing.B) {
			for b.Loop() {
				if _, err := encs[k].Build(nn.BuildOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(k)+"/build+marshal", func(b *testing.B) {
			var n int
			for b.Loop() {
				g, err := encs[k].Build(nn.BuildOptions{})
				if err != nil {
					b.Fatal(err)
				}
				n = len(g.Model.Marshal())
			}
			b.ReportMetric(float64(n), "model-bytes")
		})
	}
}

// BenchmarkTinySessionRun creates a session for each tiny golden encoder
// and runs it once on the golden batch of two prompts.
func BenchmarkTinySessionRun(b *testing.B) {
	io := nntest.Golden(b, "text-encoders-tiny-io.safetensors")
	env := nntest.Env(b)
	for _, tc := range []struct {
		kind Kind
		ids  string
	}{{L, "input_ids_1"}, {G, "input_ids_2"}} {
		b.Run(string(tc.kind), func(b *testing.B) {
			g, _ := tinyGraph(b, tc.kind, nn.BuildOptions{})
			in := map[string]runtime.Tensor{InputIDs: nntest.IOTensor(b, io, tc.ids)}
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
		})
	}
}
