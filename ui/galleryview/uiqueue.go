package galleryview

import (
	"sync"
	"time"
)

// UIQueue is a Deps.Do for tests. Fyne's test driver runs fyne.Do at once
// on the calling goroutine, so the view's background results would change
// widgets while the test goroutine lays them out (a data race under -race).
// With a UIQueue the view's goroutines queue their widget changes and the
// test runs them on its own goroutine, as the real event loop would:
//
//	q := &galleryview.UIQueue{}
//	v := galleryview.New(galleryview.Deps{Store: s, Do: q.Do})
//	…
//	q.Settle(v, time.Minute)
type UIQueue struct {
	mu  sync.Mutex
	fns []func()
}

// Do queues fn.
func (q *UIQueue) Do(fn func()) {
	q.mu.Lock()
	q.fns = append(q.fns, fn)
	q.mu.Unlock()
}

// Run runs what is queued, and what that queues, on the calling goroutine;
// it reports whether anything ran.
func (q *UIQueue) Run() bool {
	ran := false
	for {
		q.mu.Lock()
		fns := q.fns
		q.fns = nil
		q.mu.Unlock()
		if len(fns) == 0 {
			return ran
		}
		for _, fn := range fns {
			fn()
		}
		ran = true
	}
}

// Settle runs the queue until v has nothing in progress or queued, or until
// timeout; it reports whether v settled.
func (q *UIQueue) Settle(v *View, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		// Results are queued before their work counts as done, so a view
		// seen idle before an empty queue is really idle.
		busy := v.Busy()
		if !q.Run() && !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		if busy {
			time.Sleep(500 * time.Microsecond)
		}
	}
}
