package gpupanel

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/remote/fakeclock"
)

// advance waits until the idle watcher sleeps on the clock (so that it has
// reported), then moves time on.
func advance(t *testing.T, clk *fakeclock.Clock, d time.Duration) {
	t.Helper()
	clk.WaitForSleeper(t)
	clk.Advance(d)
}

type jobClock struct {
	mu sync.Mutex
	t  time.Time
}

func (j *jobClock) last() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.t
}

func (j *jobClock) ran(t time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.t = t
}

// The idle watcher in the panel: a countdown with "Keep running", a job
// that keeps the instance, and the destroy when nothing happens.
func TestIdleAutoDestroy(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC))
	var jobs jobClock
	w := newWorld(t, func(d *Deps) {
		d.IdleDestroy = 10 * time.Minute
		d.Clock = clk
		d.Activity = jobs.last
	})
	v := w.v
	w.search(t, "RTX 4090", "50", "0.5")
	w.rent(t, 0, true)
	tg := w.current(t)
	id := tg.InstanceID

	advance(t, clk, 4*time.Minute)
	clk.WaitForSleeper(t)
	if got := text(v.Idle); got != "Auto-destroy after 10m without jobs (idle for 4m)." {
		t.Errorf("idle line after 4 minutes: %q", got)
	}
	if visible(v.KeepIdle) {
		t.Error("Keep running shown before the countdown")
	}

	advance(t, clk, 2*time.Minute)
	clk.WaitForSleeper(t)
	if got := text(v.Idle); got != fmt.Sprintf("No jobs for 6m: instance %d will be destroyed in 4:00.", id) {
		t.Errorf("countdown: %q", got)
	}
	if !visible(v.KeepIdle) {
		t.Fatal("no Keep running button during the countdown")
	}
	tap(v.KeepIdle) // the full ten minutes start again
	if got := text(v.Idle); got != "Auto-destroy after 10m without jobs (idle for 0s)." || visible(v.KeepIdle) {
		t.Errorf("after Keep running: %q, button shown %v", got, visible(v.KeepIdle))
	}

	advance(t, clk, 9*time.Minute)
	jobs.ran(clk.Now()) // a job runs with one minute left
	advance(t, clk, 2*time.Minute)
	clk.WaitForSleeper(t)
	if got := text(v.Idle); got != "Auto-destroy after 10m without jobs (idle for 2m)." {
		t.Errorf("after a job: %q", got)
	}
	if w.fake.Destroyed(id) {
		t.Fatal("destroyed although a job ran two minutes ago")
	}
	if billing, _ := v.Billing(); !billing {
		t.Fatal("not billing before the idle time")
	}

	// Nothing more happens: eight minutes later it goes.
	advance(t, clk, 7*time.Minute)
	clk.WaitForSleeper(t)
	if w.fake.Destroyed(id) {
		t.Fatal("destroyed a minute early")
	}
	advance(t, clk, time.Minute)
	waitFor(t, "the idle destroy", func() bool { return strings.HasPrefix(v.Idle.Text, "Destroyed instance") })
	if got, want := text(v.Idle), fmt.Sprintf("Destroyed instance %d after 10m without jobs; billing has stopped.", id); got != want {
		t.Errorf("idle line %q, want %q", got, want)
	}
	if !w.fake.Destroyed(id) {
		t.Fatal("Vast instance not destroyed")
	}
	if billing, what := v.Billing(); billing {
		t.Fatalf("billing after the idle destroy: %s", what)
	}
	waitFor(t, "nothing rented", func() bool { return v.Instance.Text == noTargetText && !v.KeepIdle.Visible() })
	if s, _ := w.mgr.State(); len(s.Targets) != 0 {
		t.Fatalf("state keeps %+v", s.Targets)
	}
}

func TestIdleOffWithoutIdleTime(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC))
	w := newWorld(t, func(d *Deps) { d.Clock = clk })
	w.search(t, "RTX 4090", "50", "0.5")
	w.rent(t, 0, true)
	waitFor(t, "a poll after the rent", func() bool { return strings.HasSuffix(w.v.Instance.Text, "running") })
	if n := clk.Sleepers(); n != 0 {
		t.Fatalf("%d idle watchers run with IdleDestroy 0", n)
	}
	if got := text(w.v.Idle); got != "" {
		t.Errorf("idle line %q", got)
	}
}
