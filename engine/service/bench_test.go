package service

import (
	"context"
	"testing"
	"time"
)

// BenchmarkModelSwitch measures getting a model ready for a job: switching
// between two resident models (no load) against a cold load after eviction.
func BenchmarkModelSwitch(b *testing.B) {
	dir := modelsDirB(b, "a", "b")
	s, err := New(Config{ModelsDir: dir, Env: envB(b), MemoryBudget: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ma, _ := s.reg.Resolve("a")
	mb, _ := s.reg.Resolve("b")
	ctx := context.Background()
	var warm, cold time.Duration
	for i := 0; i < b.N; i++ {
		s.evictAll()
		t0 := time.Now()
		if _, err := s.model(ctx, ma, nil); err != nil {
			b.Fatal(err)
		}
		cold += time.Since(t0)
		if _, err := s.model(ctx, mb, nil); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, err := s.model(ctx, ma, nil); err != nil { // a is resident: a switch
			b.Fatal(err)
		}
		warm += time.Since(t0)
	}
	b.ReportMetric(float64(cold.Microseconds())/float64(b.N)/1e3, "cold-load-ms")
	b.ReportMetric(float64(warm.Nanoseconds())/float64(b.N)/1e3, "resident-switch-µs")
}
