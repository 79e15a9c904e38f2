package fakeclock

import (
	"testing"
	"time"
)

func TestAdvanceWakesDueSleepers(t *testing.T) {
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	c := New(start)
	now := c.After(0)
	select {
	case got := <-now:
		if !got.Equal(start) {
			t.Errorf("After(0) gave %v, want %v", got, start)
		}
	default:
		t.Fatal("After(0) did not fire at once")
	}
	short, long := c.After(time.Minute), c.After(time.Hour)
	if n := c.Sleepers(); n != 2 {
		t.Fatalf("%d sleepers, want 2", n)
	}
	c.Advance(30 * time.Second)
	select {
	case <-short:
		t.Fatal("a one-minute sleep woke after 30 s")
	default:
	}
	c.Advance(30 * time.Second)
	if got := <-short; !got.Equal(start.Add(time.Minute)) {
		t.Errorf("woke at %v, want %v", got, start.Add(time.Minute))
	}
	if n := c.Sleepers(); n != 1 {
		t.Errorf("%d sleepers after one woke, want 1", n)
	}
	select {
	case <-long:
		t.Fatal("a one-hour sleep woke after a minute")
	default:
	}
	if got := c.Now(); !got.Equal(start.Add(time.Minute)) {
		t.Errorf("Now %v, want %v", got, start.Add(time.Minute))
	}
}

func TestWaitForSleeper(t *testing.T) {
	c := New(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))
	woke := make(chan time.Time)
	go func() { woke <- <-c.After(time.Second) }()
	c.WaitForSleeper(t)
	c.Advance(time.Second)
	select {
	case <-woke:
	case <-time.After(60 * time.Second):
		t.Fatal("the sleeper never woke")
	}
}
