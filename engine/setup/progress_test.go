package setup

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestMeterOffTerminal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		total int64
		// updates are fed every step of the clock, done growing by
		// total/updates (or 1 MB when total is unknown).
		updates int
		step    time.Duration
		want    int
	}{
		// A line at each 5 % (0 % … 95 %), then the final one: 21.
		{"fast, known size", 7_000_000_000, 1000, 10 * time.Millisecond, 21},
		// 60 s of updates every second, unknown size: a line at 0, 5, …,
		// 55 s, then the final one: 13.
		{"slow, unknown size", -1, 60, time.Second, 13},
		// Slow and known: 300 updates a second apart over a 1000-update
		// transfer cut short: the 5 s rule adds lines between the steps.
		{"slow, known size", 1000, 300, time.Second, 61},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			clk := &fakeClock{t: time.Unix(0, 0)}
			m := newMeter(&buf, "setup: x", false, 5*time.Second, clk.now)
			per := int64(1_000_000)
			if tc.total > 0 {
				per = tc.total / 1000
			}
			var done int64
			for i := 0; i < tc.updates; i++ {
				m.update(done, tc.total, 5e7, false)
				done += per
				clk.t = clk.t.Add(tc.step)
			}
			m.update(done, tc.total, 5e7, true)
			out := buf.String()
			if strings.Contains(out, "\r") {
				t.Error("carriage return off a terminal")
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != tc.want {
				t.Errorf("%d lines, want %d:\n%s", len(lines), tc.want, out)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "setup: x  ") || !strings.Contains(l, "50.0 MB/s") {
					t.Errorf("line %q", l)
				}
			}
			if tc.total > 0 && tc.updates == 1000 && !strings.Contains(lines[len(lines)-1], "100%") {
				t.Errorf("last line %q", lines[len(lines)-1])
			}
		})
	}
}

func TestMeterNoDuplicateFinalLine(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0)}
	m := newMeter(&buf, "setup: z", false, 5*time.Second, clk.now)
	m.update(0, 100, 10, false)
	m.update(100, 100, 10, false) // the 100 % step prints
	m.update(100, 100, 10, true)  // and the final report adds nothing
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, buf.String())
	}
}

func TestMeterTerminal(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(0, 0)}
	m := newMeter(&buf, "setup: y", true, 0, clk.now)
	for i := 0; i <= 100; i++ { // 1 s in 10 ms steps
		m.update(int64(i)*1e6, 100e6, 1e8, false)
		clk.t = clk.t.Add(10 * time.Millisecond)
	}
	m.update(100e6, 100e6, 1e8, true)
	out := buf.String()
	// Redraws at most every 200 ms: at 0, 200, …, 1000 ms, plus the final.
	if n := strings.Count(out, "\r"); n != 7 {
		t.Errorf("%d redraws, want 7: %q", n, out)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "100%  100.0/100.0 MB  100.0 MB/s\n") {
		t.Errorf("output %q", out)
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		rate        float64
		want        string
	}{
		{2_900_000_000, 6_900_000_000, 85.3e6, " 42%  2.9/6.9 GB  85.3 MB/s  eta 47s"},
		{512, 2048, 1000, " 25%  0.5/2.0 kB  0.0 MB/s  eta 2s"},
		{999_000, 1_000_000, 1e8, " 99%  1.0/1.0 MB  100.0 MB/s"}, // no "eta 0s"
		{1_500_000, -1, 2e6, "1.5 MB  2.0 MB/s"},
		{0, 100, 0, "  0%  0/100 B  0.0 MB/s"},
	} {
		if got := describe(tc.done, tc.total, tc.rate); got != tc.want {
			t.Errorf("describe(%d, %d, %g) = %q, want %q", tc.done, tc.total, tc.rate, got, tc.want)
		}
	}
}
