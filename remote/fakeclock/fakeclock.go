// Package fakeclock provides a remote.Clock whose time moves only when a
// test says, for tests of the idle watcher and of the views that show it.
package fakeclock

import (
	"sync"
	"testing"
	"time"
)

// Clock is a remote.Clock that stands still until Advance.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	changed chan struct{} // signalled when a waiter is added
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock that reads start.
func New(start time.Time) *Clock {
	return &Clock{now: start, changed: make(chan struct{}, 1)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once Advance has moved it
// d on (at once when d <= 0).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves time on and wakes the sleepers that are due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// Sleepers returns how many After channels have not fired yet.
func (c *Clock) Sleepers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// WaitForSleeper blocks until someone sleeps on the clock, so that what
// it ran before sleeping (a check, a report) is done; it fails the test
// if nothing does within a minute.
func (c *Clock) WaitForSleeper(t testing.TB) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for c.Sleepers() == 0 {
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatal("nothing sleeps on the clock")
		}
	}
}
