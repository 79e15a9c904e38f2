package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
)

var (
	errNotFound     = errors.New("no such job (finished jobs are kept for a while, then forgotten)")
	errFinished     = errors.New("job already finished")
	errShuttingDown = errors.New("server is shutting down; not accepting jobs")
	errQueueFull    = errors.New("queue is full; try again later")
)

// job is one request's life on the server. Every field is guarded by the
// queue's mutex.
type job struct {
	id    string
	req   api.JobRequest
	group string // jobs of one A1111 txt2img call (n_iter), "" otherwise

	state    api.JobState
	step     int
	steps    int
	position int
	errMsg   string
	// cancelMsg, when set, is why the job is being cancelled.
	cancelMsg string
	cancel    context.CancelFunc

	images  [][]byte
	recipes []pngmeta.Recipe
	preview image.Image

	events []api.Event
	notify chan struct{} // closed and replaced at each event
	done   chan struct{} // closed once the job is final
	bytes  int64         // memory held: images and events

	created, started, finished time.Time
}

// queue runs jobs one at a time in arrival order on a single worker (the
// GPU), keeps each job's events for replay, and keeps finished results
// within bounds, evicting the oldest first.
type queue struct {
	backend Backend
	log     *slog.Logger

	maxJobs   int
	maxBytes  int64
	maxQueued int

	mu          sync.Mutex
	jobs        map[string]*job
	waiting     []*job
	running     *job
	finished    []*job // oldest first
	resultBytes int64
	closed      bool

	wake       chan struct{}
	workerDone chan struct{}
}

func newQueue(b Backend, cfg Config) *queue {
	q := &queue{
		backend:    b,
		log:        cfg.Logger,
		maxJobs:    cfg.KeepJobs,
		maxBytes:   cfg.KeepBytes,
		maxQueued:  cfg.MaxQueued,
		jobs:       map[string]*job{},
		wake:       make(chan struct{}, 1),
		workerDone: make(chan struct{}),
	}
	go q.work()
	return q
}

func newJobID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// submit queues a prepared request and returns the job and its position.
func (q *queue) submit(req *api.JobRequest, group string) (*job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, errShuttingDown
	}
	if len(q.waiting) >= q.maxQueued {
		return nil, errQueueFull
	}
	j := &job{
		id:       newJobID(),
		req:      *req,
		group:    group,
		state:    api.StateQueued,
		steps:    req.Steps,
		position: -1,
		notify:   make(chan struct{}),
		done:     make(chan struct{}),
		created:  time.Now(),
	}
	q.jobs[j.id] = j
	q.waiting = append(q.waiting, j)
	q.repositionLocked()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return j, nil
}

// emitLocked appends an event to the job's log and wakes its listeners.
func (q *queue) emitLocked(j *job, ev api.Event) {
	ev.ID = int64(len(j.events)) + 1
	j.events = append(j.events, ev)
	j.bytes += int64(96 + len(ev.Preview) + len(ev.Message) + len(ev.URL))
	close(j.notify)
	j.notify = make(chan struct{})
}

// repositionLocked gives each waiting job its count of jobs ahead and tells
// it when that changed.
func (q *queue) repositionLocked() {
	ahead := 0
	if q.running != nil {
		ahead = 1
	}
	for i, j := range q.waiting {
		if p := ahead + i; p != j.position {
			j.position = p
			q.emitLocked(j, api.Event{Type: api.EventQueued, Position: p})
		}
	}
}

func (q *queue) get(id string) (*job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.jobs[id]
	return j, ok
}

// snapshot is the job as the API shows it.
func (q *queue) snapshot(j *job) api.Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.snapshotLocked(j)
}

func (q *queue) snapshotLocked(j *job) api.Job {
	out := api.Job{
		ID: j.id, State: j.state, Model: j.req.Model, Step: j.step, Steps: j.steps,
		Images: []string{}, Error: j.errMsg, Created: j.created,
	}
	if j.state == api.StateQueued {
		out.QueuePosition = j.position
	}
	for k := range j.images {
		out.Images = append(out.Images, imageURL(j.id, k))
		out.Seeds = append(out.Seeds, j.recipes[k].Seed)
	}
	if !j.started.IsZero() {
		t := j.started
		out.Started = &t
	}
	if !j.finished.IsZero() {
		t := j.finished
		out.Finished = &t
	}
	return out
}

func imageURL(id string, k int) string { return "/v1/jobs/" + id + "/images/" + strconv.Itoa(k) }

// eventsAfter returns the job's events after id, a channel closed at the
// next event, and whether the job is final (so no event will follow).
func (q *queue) eventsAfter(j *job, after int64) ([]api.Event, <-chan struct{}, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var evs []api.Event
	if after < int64(len(j.events)) {
		evs = append(evs, j.events[max(after, 0):]...)
	}
	return evs, j.notify, j.state.Final()
}

// cancel cancels a queued job at once, or asks the running one to stop.
func (q *queue) cancel(id, why string) (*job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.jobs[id]
	if !ok {
		return nil, errNotFound
	}
	return j, q.cancelLocked(j, why)
}

func (q *queue) cancelLocked(j *job, why string) error {
	switch {
	case j.state.Final():
		return errFinished
	case j.state == api.StateQueued:
		for i, w := range q.waiting {
			if w == j {
				q.waiting = append(q.waiting[:i:i], q.waiting[i+1:]...)
				break
			}
		}
		j.errMsg = why
		q.finishLocked(j, api.StateCancelled)
		q.repositionLocked()
	default:
		if j.cancelMsg == "" {
			j.cancelMsg = why
		}
		if j.cancel != nil {
			j.cancel()
		}
	}
	return nil
}

// interrupt is A1111's: stop the running job, and the rest of its txt2img
// call when it is one.
func (q *queue) interrupt() {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.running
	if r == nil {
		return
	}
	if r.group != "" {
		for _, w := range append([]*job(nil), q.waiting...) {
			if w.group == r.group {
				q.cancelLocked(w, "interrupted")
			}
		}
	}
	q.cancelLocked(r, "interrupted")
}

// finishLocked makes a job final and accounts for what it keeps.
func (q *queue) finishLocked(j *job, state api.JobState) {
	j.state = state
	j.finished = time.Now()
	j.preview = nil
	switch state {
	case api.StateDone:
		q.emitLocked(j, api.Event{Type: api.EventDone})
	case api.StateFailed:
		q.emitLocked(j, api.Event{Type: api.EventError, Message: j.errMsg})
	case api.StateCancelled:
		q.emitLocked(j, api.Event{Type: api.EventCancelled, Message: j.errMsg})
	}
	close(j.done)
	q.finished = append(q.finished, j)
	q.resultBytes += j.bytes
	q.evictLocked()
}

// evictLocked forgets the oldest finished jobs beyond the bounds, always
// keeping the newest.
func (q *queue) evictLocked() {
	for len(q.finished) > 1 && (len(q.finished) > q.maxJobs || q.resultBytes > q.maxBytes) {
		old := q.finished[0]
		q.finished = q.finished[1:]
		q.resultBytes -= old.bytes
		delete(q.jobs, old.id)
	}
}

// work is the single worker.
func (q *queue) work() {
	defer close(q.workerDone)
	for {
		q.mu.Lock()
		for len(q.waiting) == 0 && !q.closed {
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		if len(q.waiting) == 0 {
			q.mu.Unlock()
			return
		}
		j := q.waiting[0]
		q.waiting = q.waiting[1:]
		ctx, cancel := context.WithCancel(context.Background())
		j.cancel = cancel
		j.state = api.StateRunning
		j.started = time.Now()
		q.running = j
		q.repositionLocked()
		req := j.req
		q.mu.Unlock()

		results, err := q.generate(ctx, j, &req)
		pngs, recipes, encErr := encodeResults(results)

		q.mu.Lock()
		for k := range pngs {
			j.images = append(j.images, pngs[k])
			j.recipes = append(j.recipes, recipes[k])
			j.bytes += int64(len(pngs[k]))
			q.emitLocked(j, api.Event{Type: api.EventImage, Index: k, URL: imageURL(j.id, k), Seed: recipes[k].Seed})
		}
		switch {
		case ctx.Err() != nil || j.cancelMsg != "":
			j.errMsg = j.cancelMsg
			if j.errMsg == "" {
				j.errMsg = "cancelled"
			}
			q.finishLocked(j, api.StateCancelled)
		case err != nil:
			j.errMsg = err.Error()
			q.finishLocked(j, api.StateFailed)
		case encErr != nil:
			j.errMsg = encErr.Error()
			q.finishLocked(j, api.StateFailed)
		case len(pngs) == 0:
			j.errMsg = "the engine returned no image"
			q.finishLocked(j, api.StateFailed)
		default:
			q.finishLocked(j, api.StateDone)
		}
		// The waiting jobs keep their positions until the worker takes the
		// next one, a moment from now.
		q.running = nil
		j.cancel = nil
		q.mu.Unlock()
		cancel()
		if err != nil && ctx.Err() == nil {
			q.log.Warn("job failed", "job", j.id, "model", req.Model, "error", err)
		}
	}
}

// generate calls the backend, turning a panic into an error so that one bad
// job cannot take the server down.
func (q *queue) generate(ctx context.Context, j *job, req *api.JobRequest) (results []Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 8<<10)
			buf = buf[:runtime.Stack(buf, false)]
			q.log.Error("backend panicked", "job", j.id, "panic", p, "stack", string(buf))
			err = fmt.Errorf("internal error in the engine: %v", p)
		}
	}()
	return q.backend.Generate(ctx, req, func(p Progress) { q.progress(j, p) })
}

// progress records a backend report as job state and an event.
func (q *queue) progress(j *job, p Progress) {
	var preview []byte
	if p.Stage == StageSampling && p.Preview != nil {
		preview = encodePreview(p.Preview)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if j.state.Final() || q.running != j {
		return
	}
	switch p.Stage {
	case StageLoading:
		j.state = api.StateLoading
		q.emitLocked(j, api.Event{Type: api.EventLoading, Model: p.Model})
	case StageSampling:
		j.state = api.StateRunning
		j.step, j.steps = p.Step, p.Steps
		if p.Preview != nil {
			j.preview = p.Preview
		}
		q.emitLocked(j, api.Event{Type: api.EventStep, Step: p.Step, Steps: p.Steps, Preview: preview})
	}
}

// previewMaxSide bounds the preview JPEG sent with step events.
const previewMaxSide = 256

// encodePreview writes a preview as a small JPEG, halving it (box filter)
// while it is larger than previewMaxSide.
func encodePreview(img image.Image) []byte {
	for b := img.Bounds(); b.Dx() > previewMaxSide || b.Dy() > previewMaxSide; b = img.Bounds() {
		img = halve(img)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
		return nil
	}
	return buf.Bytes()
}

func halve(src image.Image) image.Image {
	b := src.Bounds()
	w, h := max(b.Dx()/2, 1), max(b.Dy()/2, 1)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var r, g, bl uint32
			for dy := 0; dy < 2; dy++ {
				for dx := 0; dx < 2; dx++ {
					cr, cg, cb, _ := src.At(b.Min.X+min(2*x+dx, b.Dx()-1), b.Min.Y+min(2*y+dy, b.Dy()-1)).RGBA()
					r, g, bl = r+cr, g+cg, bl+cb
				}
			}
			i := dst.PixOffset(x, y)
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = uint8(r>>10), uint8(g>>10), uint8(bl>>10), 255
		}
	}
	return dst
}

// encodeResults writes each result as a PNG with metadata, in parallel.
func encodeResults(results []Result) ([][]byte, []pngmeta.Recipe, error) {
	pngs := make([][]byte, len(results))
	errs := make([]error, len(results))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for k := range results {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rc := results[k].Recipe
			pngs[k], errs[k] = pngmeta.EncodeBytes(results[k].Image, &rc)
		}()
	}
	wg.Wait()
	recipes := make([]pngmeta.Recipe, 0, len(results))
	var out [][]byte
	for k := range results {
		if errs[k] != nil {
			return out, recipes, fmt.Errorf("image %d: %w", k, errs[k])
		}
		out = append(out, pngs[k])
		recipes = append(recipes, results[k].Recipe)
	}
	return out, recipes, nil
}

// shutdown stops taking jobs, cancels the waiting ones, lets the running
// one finish until ctx ends, then cancels it and waits for the worker.
func (q *queue) shutdown(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	for _, w := range append([]*job(nil), q.waiting...) {
		q.cancelLocked(w, "server shutting down")
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	select {
	case <-q.workerDone:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	if r := q.running; r != nil {
		q.cancelLocked(r, "server shutting down")
	}
	q.mu.Unlock()
	select {
	case <-q.workerDone:
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("the running job did not stop within 30 s of being cancelled")
	}
}

// status is what A1111's progress route and /v1/health need.
type queueStatus struct {
	running  *api.Job
	started  time.Time
	preview  image.Image
	queued   int
	groupLen int // jobs of the running job's txt2img call, itself included
	groupNo  int // how many of them finished before it
}

func (q *queue) status() queueStatus {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := queueStatus{queued: len(q.waiting)}
	if r := q.running; r != nil {
		s := q.snapshotLocked(r)
		st.running, st.started, st.preview = &s, r.started, r.preview
		st.groupLen = 1
		if r.group != "" {
			for _, w := range q.waiting {
				if w.group == r.group {
					st.groupLen++
				}
			}
			for _, f := range q.finished {
				if f.group == r.group {
					st.groupLen++
					st.groupNo++
				}
			}
		}
	}
	return st
}
