package remote_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/fakeclock"
)

// activity is a job queue's "last activity" time, settable by the test.
type activity struct {
	mu sync.Mutex
	t  time.Time
}

func (a *activity) get() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.t
}

func (a *activity) set(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.t = t
}

func TestIdleWatcherCheck(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	start := clk.Now()
	var act activity
	w, err := remote.NewIdleWatcher(remote.IdleConfig{Idle: 30 * time.Minute, Warn: 5 * time.Minute, Clock: clk,
		Activity: act.get, Destroy: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		advance   time.Duration
		activity  time.Duration // after start; <0 = none
		postpone  bool
		state     remote.IdleState
		idleFor   time.Duration
		remaining time.Duration
	}{
		{"just started", 0, -1, false, remote.IdleCounting, 0, 30 * time.Minute},
		{"ten minutes idle", 10 * time.Minute, -1, false, remote.IdleCounting, 10 * time.Minute, 20 * time.Minute},
		{"countdown", 16 * time.Minute, -1, false, remote.IdleWarning, 26 * time.Minute, 4 * time.Minute},
		{"due", 4 * time.Minute, -1, false, remote.IdleWarning, 30 * time.Minute, 0},
		{"overdue stays at zero", time.Hour, -1, false, remote.IdleWarning, 90 * time.Minute, 0},
		{"a job ran", 0, 85 * time.Minute, false, remote.IdleCounting, 5 * time.Minute, 25 * time.Minute},
		{"activity ahead of the clock", 0, 91 * time.Minute, false, remote.IdleCounting, 0, 30 * time.Minute},
		{"postponed", 20 * time.Minute, 85 * time.Minute, true, remote.IdleCounting, 0, 30 * time.Minute},
		{"an older job does not undo a postpone", 26 * time.Minute, 50 * time.Minute, false, remote.IdleWarning, 26 * time.Minute, 4 * time.Minute},
	}
	for _, tc := range tests {
		clk.Advance(tc.advance)
		if tc.activity >= 0 {
			act.set(start.Add(tc.activity))
		}
		if tc.postpone {
			w.Postpone()
		}
		st := w.Check()
		if st.State != tc.state || st.IdleFor != tc.idleFor || st.Remaining != tc.remaining {
			t.Errorf("%s: got %v idle %v remaining %v, want %v idle %v remaining %v", tc.name,
				st.State, st.IdleFor, st.Remaining, tc.state, tc.idleFor, tc.remaining)
		}
	}
}

func TestNewIdleWatcherRejectsBadConfig(t *testing.T) {
	destroy := func(context.Context) error { return nil }
	for _, cfg := range []remote.IdleConfig{
		{Idle: 0, Destroy: destroy},
		{Idle: -time.Minute, Destroy: destroy},
		{Idle: time.Minute},
	} {
		if _, err := remote.NewIdleWatcher(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	// A warning window longer than the idle time is the whole idle time.
	clk := fakeclock.New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	w, err := remote.NewIdleWatcher(remote.IdleConfig{Idle: 2 * time.Minute, Clock: clk, Destroy: destroy})
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Check(); st.State != remote.IdleWarning || st.Remaining != 2*time.Minute {
		t.Fatalf("short idle time: %+v, want the countdown from the start", st)
	}
}

// watcherRun is a running IdleWatcher with its reports and destroys.
type watcherRun struct {
	mu       sync.Mutex
	reports  []remote.IdleStatus
	destroys int
	finished chan struct{} // closed when Run returns; err is then set
	err      error
	cancel   context.CancelFunc
}

// wait waits for Run to return and returns its error.
func (r *watcherRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.finished:
		return r.err
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func (r *watcherRun) last() remote.IdleStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reports) == 0 {
		return remote.IdleStatus{State: -1}
	}
	return r.reports[len(r.reports)-1]
}

func (r *watcherRun) destroyCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.destroys
}

func startWatcher(t *testing.T, clk *fakeclock.Clock, idle time.Duration, act *activity, fail func(n int) error) (*remote.IdleWatcher, *watcherRun) {
	t.Helper()
	r := &watcherRun{finished: make(chan struct{})}
	w, err := remote.NewIdleWatcher(remote.IdleConfig{
		Idle: idle, Warn: 5 * time.Minute, Tick: time.Second, RetryAfter: 30 * time.Second, Clock: clk, Activity: act.get,
		Destroy: func(context.Context) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.destroys++
			if fail != nil {
				return fail(r.destroys)
			}
			return nil
		},
		OnStatus: func(st remote.IdleStatus) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.reports = append(r.reports, st)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.err = w.Run(ctx)
		close(r.finished)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.finished:
		case <-time.After(60 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return w, r
}

// step advances the clock by d in ticks, each time after Run is asleep.
func step(t *testing.T, clk *fakeclock.Clock, d, tick time.Duration) {
	t.Helper()
	for d > 0 {
		s := min(tick, d)
		clk.WaitForSleeper(t)
		clk.Advance(s)
		d -= s
	}
}

func TestIdleWatcherDestroysAfterIdleTime(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	var act activity
	_, run := startWatcher(t, clk, 10*time.Minute, &act, nil)

	// Coarse steps first: Run sleeps at most a tick, so advancing a
	// minute wakes it once per minute.
	step(t, clk, 9*time.Minute, time.Minute)
	clk.WaitForSleeper(t)
	if n := run.destroyCount(); n != 0 {
		t.Fatalf("destroyed %d times after 9 of 10 idle minutes", n)
	}
	if st := run.last(); st.State != remote.IdleWarning || st.Remaining != time.Minute {
		t.Fatalf("after 9 minutes: %+v, want the countdown at 1m", st)
	}
	step(t, clk, 59*time.Second, time.Second)
	clk.WaitForSleeper(t)
	if n := run.destroyCount(); n != 0 {
		t.Fatalf("destroyed with a second left")
	}
	if st := run.last(); st.Remaining != time.Second {
		t.Fatalf("countdown %v, want 1s", st.Remaining)
	}
	clk.Advance(time.Second)
	if err := run.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := run.destroyCount(); n != 1 {
		t.Fatalf("destroyed %d times", n)
	}
	if st := run.last(); st.State != remote.IdleDestroyed || st.IdleFor != 10*time.Minute {
		t.Fatalf("last report %+v", st)
	}
}

func TestIdleWatcherActivityKeepsInstance(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	start := clk.Now()
	var act activity
	w, run := startWatcher(t, clk, 10*time.Minute, &act, nil)

	step(t, clk, 8*time.Minute, time.Minute)
	act.set(start.Add(8 * time.Minute)) // a job was submitted
	step(t, clk, 9*time.Minute, time.Minute)
	clk.WaitForSleeper(t)
	if n := run.destroyCount(); n != 0 {
		t.Fatalf("destroyed %d times although a job ran 9 minutes ago", n)
	}
	if st := run.last(); st.IdleFor != 9*time.Minute || st.Remaining != time.Minute {
		t.Fatalf("after the job: %+v", st)
	}
	// The user taps "keep it" in the countdown.
	w.Postpone()
	step(t, clk, 9*time.Minute, time.Minute)
	clk.WaitForSleeper(t)
	if n := run.destroyCount(); n != 0 {
		t.Fatalf("destroyed %d times although postponed 9 minutes ago", n)
	}
	if st := run.last(); st.State != remote.IdleWarning || st.Remaining != time.Minute {
		t.Fatalf("after postponing: %+v", st)
	}
	// Left alone, it goes in the end.
	step(t, clk, time.Minute, time.Minute)
	if err := run.wait(t); err != nil {
		t.Fatal(err)
	}
	if run.destroyCount() != 1 {
		t.Fatalf("destroys %d", run.destroyCount())
	}
}

func TestIdleWatcherRetriesFailedDestroy(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	var act activity
	boom := errors.New("vast: destroy instance 7: HTTP 502")
	_, run := startWatcher(t, clk, time.Minute, &act, func(n int) error {
		if n < 3 {
			return boom
		}
		return nil
	})
	step(t, clk, time.Minute, time.Second)
	clk.WaitForSleeper(t) // asleep before the retry
	if st := run.last(); st.State != remote.IdleFailed || !errors.Is(st.Err, boom) || run.destroyCount() != 1 {
		t.Fatalf("after a failed destroy: %+v (%d tries)", st, run.destroyCount())
	}
	step(t, clk, 30*time.Second, 30*time.Second)
	clk.WaitForSleeper(t)
	if run.destroyCount() != 2 {
		t.Fatalf("tries %d, want 2 after one retry interval", run.destroyCount())
	}
	clk.Advance(30 * time.Second)
	if err := run.wait(t); err != nil {
		t.Fatal(err)
	}
	if run.destroyCount() != 3 || run.last().State != remote.IdleDestroyed {
		t.Fatalf("%d tries, last %+v", run.destroyCount(), run.last())
	}
}

func TestIdleWatcherStopsWithContext(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	var act activity
	_, run := startWatcher(t, clk, time.Hour, &act, nil)
	clk.WaitForSleeper(t)
	run.cancel()
	if err := run.wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if run.destroyCount() != 0 {
		t.Fatal("destroyed on cancel")
	}
}
