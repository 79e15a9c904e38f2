package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Clock is the time source of an IdleWatcher; tests substitute a fake one
// so that hours of idleness pass in microseconds.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// IdleState says where an IdleWatcher is.
type IdleState int

const (
	// IdleCounting: the instance is idle, but the end is not near yet.
	IdleCounting IdleState = iota
	// IdleWarning: the countdown is on; the user should be shown it and be
	// offered to keep the instance (IdleWatcher.Postpone).
	IdleWarning
	// IdleDestroying: time is up; the instance is being destroyed.
	IdleDestroying
	// IdleDestroyed: the instance was destroyed; Run has returned.
	IdleDestroyed
	// IdleFailed: destroying failed (Err says why); Run tries again later.
	IdleFailed
)

func (s IdleState) String() string {
	switch s {
	case IdleCounting:
		return "counting"
	case IdleWarning:
		return "warning"
	case IdleDestroying:
		return "destroying"
	case IdleDestroyed:
		return "destroyed"
	case IdleFailed:
		return "failed"
	}
	return fmt.Sprintf("IdleState(%d)", int(s))
}

// IdleStatus is one report of an IdleWatcher.
type IdleStatus struct {
	State IdleState
	// IdleFor is the time since the last activity; Remaining the time left
	// before the instance is destroyed (0 once it is due).
	IdleFor   time.Duration
	Remaining time.Duration
	// LastActivity is the latest of: the last job, the watcher's start and
	// the last Postpone.
	LastActivity time.Time
	// Err is why the last destroy failed (IdleFailed).
	Err error
}

// IdleConfig sets up an IdleWatcher.
type IdleConfig struct {
	// Idle is how long the instance may go without activity before it is
	// destroyed. It must be positive.
	Idle time.Duration
	// Warn is how long before the end the countdown is shown (IdleWarning).
	// Default: 5 minutes, or all of Idle when that is shorter.
	Warn time.Duration
	// Tick is how often Run checks and reports (default 1 s: the countdown
	// is shown in seconds).
	Tick time.Duration
	// RetryAfter is the wait before a failed destroy is tried again
	// (default 30 s). Destroy is what stops billing: it is not given up.
	RetryAfter time.Duration
	// Activity returns the last time a job was submitted or ran (zero when
	// none); nil means no activity is ever seen.
	Activity func() time.Time
	// Destroy destroys the instance. Required.
	Destroy func(ctx context.Context) error
	// OnStatus, if set, receives every report, from Run's goroutine.
	OnStatus func(IdleStatus)
	// Clock is the time source (nil = RealClock).
	Clock Clock
}

// IdleWatcher destroys a rented instance after it has had no activity for
// a set time — the user walked away and it would bill all night. It is
// plain logic with an injectable clock; the desktop app shows its reports
// as a countdown with a button that calls Postpone.
type IdleWatcher struct {
	cfg IdleConfig

	mu    sync.Mutex
	since time.Time // watcher start or last Postpone
}

// NewIdleWatcher checks cfg, fills its defaults and starts counting now.
func NewIdleWatcher(cfg IdleConfig) (*IdleWatcher, error) {
	if cfg.Idle <= 0 {
		return nil, fmt.Errorf("idle watcher: idle time must be positive, not %v", cfg.Idle)
	}
	if cfg.Destroy == nil {
		return nil, errors.New("idle watcher: nothing to destroy with (Destroy is nil)")
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock
	}
	if cfg.Warn <= 0 {
		cfg.Warn = 5 * time.Minute
	}
	cfg.Warn = min(cfg.Warn, cfg.Idle)
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 30 * time.Second
	}
	return &IdleWatcher{cfg: cfg, since: cfg.Clock.Now()}, nil
}

// Idle is the configured idle time.
func (w *IdleWatcher) Idle() time.Duration { return w.cfg.Idle }

// Postpone counts as activity now: the user said to keep the instance, so
// the full idle time starts again.
func (w *IdleWatcher) Postpone() {
	now := w.cfg.Clock.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.After(w.since) {
		w.since = now
	}
}

// Check evaluates the watcher at the clock's current time. It never
// destroys anything; Run does, when Remaining reaches 0.
func (w *IdleWatcher) Check() IdleStatus {
	now := w.cfg.Clock.Now()
	w.mu.Lock()
	last := w.since
	w.mu.Unlock()
	if w.cfg.Activity != nil {
		// A job running now may report a time slightly ahead of this
		// clock; it still only means "active now".
		if a := w.cfg.Activity(); a.After(last) {
			last = a
		}
	}
	idle := max(now.Sub(last), 0)
	st := IdleStatus{State: IdleCounting, IdleFor: idle, Remaining: max(w.cfg.Idle-idle, 0), LastActivity: last}
	if st.Remaining <= w.cfg.Warn {
		st.State = IdleWarning
	}
	return st
}

// Run watches until the instance is destroyed (it returns nil) or ctx ends
// (it returns ctx's error). A failed destroy is reported and tried again
// after RetryAfter, unless activity or Postpone came meanwhile.
func (w *IdleWatcher) Run(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		st := w.Check()
		if st.Remaining > 0 {
			w.report(st)
			if err := w.sleep(ctx, min(w.cfg.Tick, st.Remaining)); err != nil {
				return err
			}
			continue
		}
		st.State = IdleDestroying
		w.report(st)
		err := w.cfg.Destroy(ctx)
		if err == nil {
			st.State = IdleDestroyed
			w.report(st)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st.State, st.Err = IdleFailed, err
		w.report(st)
		if err := w.sleep(ctx, w.cfg.RetryAfter); err != nil {
			return err
		}
	}
}

func (w *IdleWatcher) report(st IdleStatus) {
	if w.cfg.OnStatus != nil {
		w.cfg.OnStatus(st)
	}
}

func (w *IdleWatcher) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-w.cfg.Clock.After(d):
		return nil
	}
}
