package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
)

// BenchmarkSSEThroughput measures events going from the backend's progress
// callback through the queue, the SSE writer and the Go client's parser:
// one job of 150 steps (no previews) per iteration, followed by 1, 10 or
// 50 clients at once.
func BenchmarkSSEThroughput(b *testing.B) {
	for _, subs := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			fb := newFakeBackend()
			fb.PreviewEvery = 0
			fb.Gate = make(chan struct{})
			ts := newTestServer(b, fb, func(c *Config) { c.KeepJobs = 10 })
			ctx := context.Background()
			var events int64
			b.ResetTimer()
			for b.Loop() {
				sub, err := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 1, Steps: 150, Width: 64, Height: 64})
				if err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				counts := make([]int64, subs)
				ready := make(chan struct{}, subs)
				for i := range subs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ts.Client.Events(ctx, sub.ID, func(e api.Event) error {
							if e.ID == 1 {
								ready <- struct{}{}
							}
							counts[i]++
							return nil
						})
					}()
				}
				for range subs {
					<-ready
				}
				// All steps at once: the backend is as fast as it can be.
				close(fb.Gate)
				wg.Wait()
				fb.Gate = make(chan struct{})
				for _, c := range counts {
					if c != 153 {
						b.Fatalf("a subscriber got %d events, want 153", c)
					}
					events += c
				}
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkSubmitBurst sends 100 POST /v1/jobs at once (each over its own
// connection from a pool of 100) while the worker runs the jobs (1 step,
// 64×64), and reports the latency distribution of the submissions.
func BenchmarkSubmitBurst(b *testing.B) {
	fb := newFakeBackend()
	fb.PreviewEvery = 0
	ts := newTestServer(b, fb, func(c *Config) { c.MaxQueued = 100000; c.KeepJobs = 200 })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100, MaxConnsPerHost: 100}}
	body := []byte(`{"model": "pony", "prompt": "a cat", "steps": 1, "width": 64, "height": 64}`)
	var lat []time.Duration
	var mu sync.Mutex
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				t0 := time.Now()
				resp, err := client.Post(ts.URL+"/v1/jobs", "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusAccepted {
					b.Errorf("status %d", resp.StatusCode)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
