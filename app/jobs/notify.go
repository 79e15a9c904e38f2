package jobs

import (
	"slices"
	"sync"
)

// notifier hands job snapshots to the subscribers from one goroutine, in
// the order they were sent, without ever blocking the sender.
type notifier struct {
	mu      sync.Mutex
	subs    map[int]func(Job)
	next    int
	pending []Job
	quit    bool
	wake    chan struct{}
	done    chan struct{}
}

func (n *notifier) start() {
	n.subs = map[int]func(Job){}
	n.wake = make(chan struct{}, 1)
	n.done = make(chan struct{})
	go n.loop()
}

func (n *notifier) loop() {
	defer close(n.done)
	for {
		n.mu.Lock()
		batch, quit := n.pending, n.quit
		n.pending = nil
		ids := make([]int, 0, len(n.subs))
		for id := range n.subs {
			ids = append(ids, id)
		}
		n.mu.Unlock()
		slices.Sort(ids)
		for _, j := range batch {
			for _, id := range ids {
				n.mu.Lock()
				fn := n.subs[id]
				n.mu.Unlock()
				if fn != nil {
					fn(j)
				}
			}
		}
		if len(batch) > 0 {
			continue
		}
		if quit {
			return
		}
		<-n.wake
	}
}

func (n *notifier) send(j Job) {
	n.mu.Lock()
	if !n.quit {
		n.pending = append(n.pending, j)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) subscribe(fn func(Job)) func() {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := n.next
	n.next++
	n.subs[id] = fn
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs, id)
			n.mu.Unlock()
		})
	}
}

// stop delivers what is pending and ends the goroutine.
func (n *notifier) stop() {
	n.mu.Lock()
	n.quit = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}
