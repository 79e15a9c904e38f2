package sampler

import (
	"context"
	"testing"
)

// BenchmarkSchedule28 builds a 28-step sampler of each kind (the training
// tables are computed once per process and shared).
func BenchmarkSchedule28(b *testing.B) {
	for _, spec := range []Spec{{Euler, ScheduleUniform}, {DPMPP2M, ScheduleKarras}} {
		for _, v := range []Variant{Diffusers, A1111} {
			b.Run(spec.Name()+"/"+v.String(), func(b *testing.B) {
				for b.Loop() {
					if _, err := New(spec, 28, Options{Variant: v}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTables computes the 1000-entry training schedule from scratch.
func BenchmarkTables(b *testing.B) {
	b.Run("diffusers", func(b *testing.B) {
		for b.Loop() {
			diffusersTable(false)
		}
	})
	b.Run("a1111", func(b *testing.B) {
		for b.Loop() {
			a1111Table(false)
		}
	})
}

// BenchmarkWalk28 is one full 28-step walk over a 1x4x128x128 latent (a
// 1024x1024 image) with a model that returns a fixed buffer, so it measures
// the sampler's own per-step cost.
func BenchmarkWalk28(b *testing.B) {
	const n = 4 * 128 * 128
	out := make([]float32, n)
	for i := range out {
		out[i] = 0.01
	}
	model := func(context.Context, []float32, float64) ([]float32, error) { return out, nil }
	lat := make([]float32, n)
	for i := range lat {
		lat[i] = float32(i%7) - 3
	}
	noise := noiseFunc(func(_ int, dst []float32) error {
		for i := range dst {
			dst[i] = 0.5
		}
		return nil
	})
	cb := func(Step) error { return nil }
	for _, spec := range []Spec{{Euler, ScheduleUniform}, {EulerAncestral, ScheduleUniform}, {DPMPP2M, ScheduleKarras}} {
		s, err := New(spec, 28, Options{Variant: A1111})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(spec.Name(), func(b *testing.B) {
			b.SetBytes(n * 4)
			for b.Loop() {
				if _, err := s.Sample(context.Background(), model, lat, noise, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(spec.Name()+"+callback", func(b *testing.B) {
			b.SetBytes(n * 4)
			for b.Loop() {
				if _, err := s.Sample(context.Background(), model, lat, noise, cb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type noiseFunc func(int, []float32) error

func (f noiseFunc) Noise(step int, dst []float32) error { return f(step, dst) }
