package tags

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time, reported beside wall time
// because the benchmark machine is shared and wall time includes waiting.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLoad builds an index from an embedded list: what the first
// completion of a session pays.
func BenchmarkLoad(b *testing.B) {
	for _, src := range []Source{Danbooru, E621} {
		b.Run(string(src), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				if _, err := parseString(src, embeddedData[src]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

// lookupQueries makes a realistic, deterministic query mix: prefixes of
// 1..12 characters of tags sampled across the whole list (typed with
// spaces), every one- and two-letter prefix (the broadest ranges), and some
// '*' substring queries.
func lookupQueries(ix *Index) []string {
	var qs []string
	seed := uint32(1)
	next := func(n int) int {
		seed = seed*1664525 + 1013904223
		return int(seed>>8) % n
	}
	for i := 0; i < ix.Len(); i += 7 {
		name := []rune(strings.ReplaceAll(ix.Tag(i).Name, "_", " "))
		n := 1 + next(min(12, len(name)))
		qs = append(qs, string(name[:n]))
	}
	for a := 'a'; a <= 'z'; a++ {
		qs = append(qs, string(a))
		for b := 'a'; b <= 'z'; b++ {
			qs = append(qs, string(a)+string(b))
		}
	}
	for i := 0; i < ix.Len(); i += 997 {
		name := ix.Tag(i).Name
		qs = append(qs, "*"+name[len(name)/2:])
	}
	return qs
}

// BenchmarkComplete measures single lookups (20 results) over the query
// mix. Each query runs three times per iteration: p50/p99/max are over all
// runs; "worst-min" is the slowest query's fastest run, which leaves out
// the scheduler stalls a shared machine adds to single runs.
func BenchmarkComplete(b *testing.B) {
	for _, src := range []Source{Danbooru, E621} {
		b.Run(string(src), func(b *testing.B) {
			ix, err := Load(src)
			if err != nil {
				b.Fatal(err)
			}
			c := &Completer{Indexes: []*Index{ix}}
			qs := lookupQueries(ix)
			var lat []time.Duration
			best := make([]time.Duration, len(qs))
			for i := range best {
				best[i] = time.Hour
			}
			for b.Loop() {
				for i, q := range qs {
					for range 3 {
						t0 := time.Now()
						c.Complete(q)
						d := time.Since(t0)
						lat = append(lat, d)
						best[i] = min(best[i], d)
					}
				}
			}
			slices.Sort(lat)
			us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
			b.ReportMetric(float64(len(qs)), "queries")
			b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
			b.ReportMetric(us(lat[len(lat)*99/100]), "p99-µs")
			b.ReportMetric(us(lat[len(lat)-1]), "max-µs")
			b.ReportMetric(us(slices.Max(best)), "worst-min-µs")
		})
	}
}
