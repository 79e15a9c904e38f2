// Package jobs is the app's side of image generation: a queue of the jobs
// the user submitted, each followed on its engine through its events, with
// every finished image saved into the gallery as it arrives. The desktop UI
// and the `pixery generate` command both use it.
//
// A lost connection never loses a job: the engine keeps running it and keeps
// its results for a while, so the queue retries until the engine answers
// again, then fetches and saves what it missed. With a StateFile, the
// pending jobs also survive a restart of the app. An image is saved once per
// job and index, whatever the reconnections and restarts.
//
// When saving an image fails (disk full, gallery folder gone), its PNG is
// kept in memory, the job's Err says so and the job stays in the StateFile;
// Wait and SaveAgain try again, and after a restart the image is fetched from
// the engine again while the engine still has it.
package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/api"
)

// DefaultRetry is the pause between reconnection rounds when Config.Retry
// is zero.
const DefaultRetry = 5 * time.Second

// Errors of the Queue.
var (
	ErrClosed   = errors.New("jobs: queue is closed")
	ErrUnknown  = errors.New("jobs: no such job")
	ErrNoEngine = errors.New("jobs: no engine set")
)

// errNoEngine is a resumed job's while its engine is not the current one.
var errNoEngine = errors.New("no engine")

// Config sets up a Queue.
type Config struct {
	// Engine runs the jobs; nil until SetEngine (Submit fails meanwhile and
	// resumed jobs wait for it).
	Engine engine.Engine
	// Store receives every finished image (gallery.Store.Save) as its
	// "image" event arrives. Required.
	Store *gallery.Store
	// StateFile keeps the pending jobs' ids, requests and saved images, so
	// that they are followed again after a restart of the app; "" keeps
	// nothing. It is written atomically with mode 0600.
	StateFile string
	// RecoveryDir keeps the PNGs that could not be saved into the gallery
	// until they can be, across restarts ["unsaved" beside StateFile; with
	// no StateFile, they are kept in memory only].
	RecoveryDir string
	// Retry is the pause between reconnection rounds once Engine.Events has
	// given up [DefaultRetry].
	Retry time.Duration
	// Logf receives problems worth a line in the log; nil drops them.
	Logf func(format string, args ...any)

	// beforeFetch, in tests, runs before image k of job id is fetched; an
	// error stands for a failed fetch.
	beforeFetch func(ctx context.Context, id string, k int) error
}

// Job is a snapshot of one job.
type Job struct {
	ID string
	// Request is what was submitted, with the seed the engine drew when a
	// random one was asked for.
	Request api.JobRequest
	// State is queued, loading, running, done, failed or cancelled.
	State api.JobState
	// Position is the count of jobs ahead while queued.
	Position int
	// Step of Steps is the progress while running.
	Step, Steps int
	// Loading is the model being loaded, while loading.
	Loading string
	// Preview is the latest live preview, nil before the first.
	Preview image.Image
	// Seeds holds each finished image's seed, by index.
	Seeds []int64
	// Images are the images saved into the gallery so far, in order.
	Images []gallery.Item
	// Unsaved counts the finished images whose saving failed; their PNGs
	// are held until SaveAgain or Wait manages it.
	Unsaved int
	// Err says why the job failed (the engine's message), or why an image
	// could not be saved.
	Err string
	// Connection is "" while the engine is reachable; otherwise what is
	// wrong ("reconnecting: …").
	Connection string
	// Engine describes the engine the job runs on (Engine.Describe).
	Engine    string
	Submitted time.Time
}

// Final reports whether the job will not change on its engine any more.
// Its images are saved by then unless Unsaved says otherwise.
func (j Job) Final() bool { return j.State.Final() }

// entry is a job with what the queue needs to follow it. Its fields are
// guarded by Queue.mu.
type entry struct {
	job Job
	eng engine.Engine
	// lastEvent is the id of the last event handled: a replay after
	// reconnecting skips what was handled.
	lastEvent int64
	// saved maps an image index to its gallery ID; unsaved holds the PNGs
	// that could not be saved.
	saved   map[int]string
	unsaved map[int][]byte
	// saveErr is why the last save failed, shown in Job.Err while images
	// are unsaved.
	saveErr string
	// stop, once set, ends following (cancelled here, or removed).
	stop bool
	// kick cancels the current attempt, so the follower starts again with
	// the entry's (new) engine at once.
	kick context.CancelFunc
	// running is set while a follower goroutine exists; stopped is closed
	// when it ends.
	running bool
	stopped chan struct{}
}

// Queue follows jobs on an engine and saves their images. Its methods are
// safe for concurrent use.
type Queue struct {
	cfg   Config
	store *gallery.Store
	retry time.Duration
	logf  func(string, ...any)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	eng    engine.Engine
	jobs   map[string]*entry
	order  []string
	closed bool

	// saveMu serialises saving images, so SaveAgain and a follower never
	// save the same image twice.
	saveMu sync.Mutex

	state stateWriter
	note  notifier
}

// New makes a Queue and resumes following the pending jobs found in
// cfg.StateFile. A state file that cannot be read is moved aside (its name
// gets ".broken-<time>"), logged, and the queue starts empty.
func New(cfg Config) (*Queue, error) {
	if cfg.Store == nil {
		return nil, errors.New("jobs: no gallery store")
	}
	q := &Queue{
		cfg:   cfg,
		store: cfg.Store,
		retry: cfg.Retry,
		logf:  cfg.Logf,
		eng:   cfg.Engine,
		jobs:  map[string]*entry{},
		state: stateWriter{path: cfg.StateFile},
	}
	if q.cfg.RecoveryDir == "" && q.cfg.StateFile != "" {
		q.cfg.RecoveryDir = filepath.Join(filepath.Dir(q.cfg.StateFile), "unsaved")
	}
	if q.retry <= 0 {
		q.retry = DefaultRetry
	}
	if q.logf == nil {
		q.logf = func(string, ...any) {}
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	q.note.start()
	saved, err := q.state.load()
	if err != nil {
		q.logf("jobs: %v", err)
	}
	for _, s := range saved {
		e := s.entry()
		// A job is followed on the engine it was submitted to: another
		// engine would not know it.
		if q.eng != nil && (e.job.Engine == "" || e.job.Engine == q.eng.Describe()) {
			e.eng = q.eng
			e.job.Engine = q.eng.Describe()
			e.job.Connection = "resuming"
		} else {
			e.job.Connection = waitingFor(e.job.Engine)
		}
		q.recover(e)
		// The images saved before the restart are shown from the gallery;
		// one deleted since is still not saved again.
		for _, k := range slices.Sorted(maps.Keys(e.saved)) {
			it, err := q.store.Get(q.ctx, e.saved[k])
			if err != nil {
				it = gallery.Item{ID: e.saved[k]}
			}
			e.job.Images = append(e.job.Images, it)
		}
		q.jobs[e.job.ID] = e
		q.order = append(q.order, e.job.ID)
	}
	q.mu.Lock()
	for _, id := range q.order {
		q.startLocked(q.jobs[id])
	}
	q.mu.Unlock()
	return q, nil
}

// SetEngine makes e the engine of new jobs. Pending jobs submitted to an
// engine of the same description (Describe: the same Server URL, perhaps
// reconnected or with a new token; the same local provider) are followed on
// e from now on; jobs of another engine stay with theirs (or, resumed from
// the StateFile, wait for theirs to be set again; Cancel drops them).
func (q *Queue) SetEngine(e engine.Engine) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.eng = e
	if e == nil {
		return
	}
	desc := e.Describe()
	for _, id := range q.order {
		en := q.jobs[id]
		if en.job.Final() && len(en.unsaved) == 0 {
			continue
		}
		if en.job.Engine == "" || en.job.Engine == desc {
			en.eng = e
			en.job.Engine = desc
			if en.kick != nil {
				en.kick()
			}
			q.startLocked(en)
			q.changedLocked(en)
		}
	}
}

// Submit sends req to the engine and returns the job's id once the engine
// has accepted it; the job is then followed in the background. A request
// the engine refuses is an error wrapping *api.StatusError (with the field,
// for a bad model, size or sampler).
func (q *Queue) Submit(ctx context.Context, req *api.JobRequest) (string, error) {
	if req == nil {
		return "", errors.New("jobs: submit: no request")
	}
	q.mu.Lock()
	eng, closed := q.eng, q.closed
	q.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	if eng == nil {
		return "", ErrNoEngine
	}
	sub, err := eng.Submit(ctx, req)
	if err != nil {
		return "", fmt.Errorf("jobs: submit to %s: %w", eng.Describe(), err)
	}
	r := *req
	r.LoRAs = slices.Clone(req.LoRAs)
	if req.IPAdapter != nil {
		ip := *req.IPAdapter
		ip.Image = slices.Clone(ip.Image)
		r.IPAdapter = &ip
	}
	if r.Seed < 0 {
		r.Seed = sub.Seed
	}
	e := &entry{
		job: Job{
			ID:        sub.ID,
			Request:   r,
			State:     api.StateQueued,
			Position:  sub.QueuePosition,
			Steps:     req.Steps,
			Engine:    eng.Describe(),
			Submitted: time.Now(),
		},
		eng:     eng,
		saved:   map[int]string{},
		unsaved: map[int][]byte{},
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		// Closed meanwhile: the engine has the job, and the state file
		// keeps it for the next Queue.
		if err := q.state.write(append(q.pendingLocked(), e)); err != nil {
			q.logf("jobs: %v", err)
		}
		return sub.ID, nil
	}
	q.jobs[sub.ID] = e
	q.order = append(q.order, sub.ID)
	q.saveStateLocked()
	q.changedLocked(e)
	q.startLocked(e)
	return sub.ID, nil
}

// Cancel cancels a job on its engine. The job ends as cancelled when the
// engine's event says so. When the engine cannot be reached (or no longer
// knows the job) the job is marked cancelled here and no longer followed;
// the error then says that the engine could not be told.
func (q *Queue) Cancel(ctx context.Context, id string) error {
	q.mu.Lock()
	e, ok := q.jobs[id]
	var eng engine.Engine
	if ok {
		eng = e.eng
	}
	q.mu.Unlock()
	if !ok {
		return fmt.Errorf("cancel %s: %w", id, ErrUnknown)
	}
	var err error
	if eng == nil {
		err = ErrNoEngine
	} else {
		_, err = eng.Cancel(ctx, id)
	}
	if err == nil {
		return nil
	}
	var se *api.StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusConflict {
		return nil // already finished: its final event tells how
	}
	if ctx.Err() != nil {
		return fmt.Errorf("jobs: cancel %s: %w", id, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if e.job.Final() {
		return nil
	}
	e.job.State = api.StateCancelled
	e.stop = true
	if e.kick != nil {
		e.kick()
	}
	if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
		e.job.Err = "cancelled; the engine no longer knew the job"
		err = nil
	} else {
		e.job.Err = "cancelled here; the engine could not be told: " + err.Error()
		err = fmt.Errorf("jobs: cancelled %s here, but the engine could not be told: %w", id, err)
	}
	q.saveStateLocked()
	q.changedLocked(e)
	return err
}

// Jobs returns snapshots of the jobs, oldest first.
func (q *Queue) Jobs() []Job {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Job, 0, len(q.order))
	for _, id := range q.order {
		out = append(out, q.jobs[id].snapshot())
	}
	return out
}

// Get returns a snapshot of one job.
func (q *Queue) Get(id string) (Job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.jobs[id]
	if !ok {
		return Job{}, false
	}
	return e.snapshot(), true
}

// Subscribe calls fn with a snapshot of a job on every change of it, in the
// order of the changes, from one goroutine of the queue (never the caller's,
// so fn must hand UI work to the UI thread). fn must not call Close. It may
// be called once more after unsubscribe returns.
func (q *Queue) Subscribe(fn func(Job)) (unsubscribe func()) {
	return q.note.subscribe(fn)
}

// Wait returns the job once it is final and its images are saved. It
// returns an error when the job is unknown, ctx ends, the queue is closed
// first, or an image could not be saved (then after trying again); a job
// that failed or was cancelled on the engine is not an error of Wait: see
// its State and Err.
func (q *Queue) Wait(ctx context.Context, id string) (Job, error) {
	q.mu.Lock()
	e, ok := q.jobs[id]
	var stopped chan struct{}
	if ok {
		stopped = e.stopped
	}
	q.mu.Unlock()
	if !ok {
		return Job{}, fmt.Errorf("wait for %s: %w", id, ErrUnknown)
	}
	if stopped != nil {
		select {
		case <-stopped:
		case <-ctx.Done():
			j, _ := q.Get(id)
			return j, fmt.Errorf("wait for %s: %w", id, ctx.Err())
		}
	}
	j, _ := q.Get(id)
	if !j.Final() {
		return j, fmt.Errorf("wait for %s: %w", id, ErrClosed)
	}
	if j.Unsaved > 0 {
		if err := q.SaveAgain(ctx, id); err != nil {
			j, _ = q.Get(id)
			return j, err
		}
		j, _ = q.Get(id)
	}
	return j, nil
}

// SaveAgain tries again to save a job's images whose saving failed.
func (q *Queue) SaveAgain(ctx context.Context, id string) error {
	q.saveMu.Lock()
	defer q.saveMu.Unlock()
	q.mu.Lock()
	e, ok := q.jobs[id]
	var todo map[int][]byte
	if ok {
		todo = maps.Clone(e.unsaved)
	}
	q.mu.Unlock()
	if !ok {
		return fmt.Errorf("save images of %s: %w", id, ErrUnknown)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(todo)) {
		if err := q.saveLocked(ctx, e, k, todo[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Remove drops a final job from the list. Jobs still running, and jobs with
// images not saved yet, stay: cancel the first, SaveAgain the second.
func (q *Queue) Remove(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.jobs[id]
	if !ok || !e.job.Final() || len(e.unsaved) > 0 {
		return
	}
	delete(q.jobs, id)
	q.order = slices.DeleteFunc(q.order, func(s string) bool { return s == id })
	q.saveStateLocked()
}

// Close stops following the jobs and waits for the followers to end. The
// jobs go on on their engines; the pending ones stay in the StateFile, to be
// resumed by the next Queue. Close does not close the engine or the store.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	q.cancel()
	q.wg.Wait()
	q.note.stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state.write(q.pendingLocked())
}

// snapshot copies the job, so that callers never share its slices.
func (e *entry) snapshot() Job {
	j := e.job
	j.Seeds = slices.Clone(j.Seeds)
	j.Images = slices.Clone(j.Images)
	j.Request.LoRAs = slices.Clone(j.Request.LoRAs)
	j.Unsaved = len(e.unsaved)
	if j.Unsaved > 0 && e.saveErr != "" {
		if j.Err != "" {
			j.Err += "; "
		}
		j.Err += e.saveErr
	}
	return j
}

// changedLocked tells the subscribers; q.mu must be held, so that the
// snapshots queue up in the order of the changes.
func (q *Queue) changedLocked(e *entry) {
	q.note.send(e.snapshot())
}

// pendingLocked lists the jobs the state file keeps: those not final, and
// those with images not saved yet.
func (q *Queue) pendingLocked() []*entry {
	var out []*entry
	for _, id := range q.order {
		e := q.jobs[id]
		if !e.job.Final() || len(e.unsaved) > 0 {
			out = append(out, e)
		}
	}
	return out
}

func (q *Queue) saveStateLocked() {
	if err := q.state.write(q.pendingLocked()); err != nil {
		q.logf("jobs: %v", err)
	}
}

// startLocked starts e's follower unless it has one or is done with.
func (q *Queue) startLocked(e *entry) {
	if e.running || q.closed || e.stop || (e.job.Final() && e.lastEvent > 0) {
		return
	}
	e.running = true
	e.stopped = make(chan struct{})
	q.wg.Add(1)
	go q.follow(e)
}

// follow follows a job until it is final, cancelled here, or the queue is
// closed.
func (q *Queue) follow(e *entry) {
	defer q.wg.Done()
	defer func() {
		q.mu.Lock()
		e.running = false
		close(e.stopped)
		q.mu.Unlock()
	}()
	probe := false
	for {
		q.mu.Lock()
		if e.stop || q.ctx.Err() != nil {
			q.mu.Unlock()
			return
		}
		eng := e.eng
		ctx, kick := context.WithCancel(q.ctx)
		e.kick = kick
		q.mu.Unlock()

		var err error
		if eng == nil {
			err = errNoEngine
		} else {
			if probe {
				err = q.probe(ctx, e, eng)
			}
			if err == nil {
				err = eng.Events(ctx, e.job.ID, func(ev api.Event) error { return q.handle(ctx, e, eng, ev) })
			}
		}
		kicked := ctx.Err() != nil
		kick()
		if err == nil {
			q.mu.Lock()
			final := e.job.Final()
			q.mu.Unlock()
			if final {
				q.mu.Lock()
				unsaved := len(e.unsaved)
				q.mu.Unlock()
				if unsaved > 0 {
					q.SaveAgain(q.ctx, e.job.ID) // on failure, Err says why
				}
				return
			}
			err = errors.New("the event stream ended before the job did")
		}
		if q.ctx.Err() != nil {
			return
		}
		if kicked {
			continue // start again with the entry's (new) engine
		}
		var se *api.StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
			q.lost(e, eng, err)
			return
		}
		q.mu.Lock()
		if eng == nil {
			e.job.Connection = waitingFor(e.job.Engine)
		} else {
			e.job.Connection = "reconnecting: " + err.Error()
		}
		q.changedLocked(e)
		wake, wakeUp := context.WithCancel(q.ctx)
		e.kick = wakeUp
		q.mu.Unlock()
		if eng != nil {
			q.logf("jobs: %s: %v; trying again in %v", e.job.ID, err, q.retry)
		}
		t := time.NewTimer(q.retry)
		select {
		case <-t.C:
		case <-wake.Done():
		}
		t.Stop()
		wakeUp()
		probe = true
	}
}

// probe asks the engine for the job's state after a lost connection, so
// the job shows where it is before its events are replayed.
func (q *Queue) probe(ctx context.Context, e *entry, eng engine.Engine) error {
	j, err := eng.Job(ctx, e.job.ID)
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e.job.Connection = ""
	if !e.job.Final() && !j.State.Final() {
		e.job.State = j.State
		e.job.Step, e.job.Steps, e.job.Position = j.Step, j.Steps, j.QueuePosition
	}
	q.changedLocked(e)
	return nil
}

// lost marks a job its engine does not know (any more): the engine was
// restarted, dropped the results after a long time, or is another one.
func (q *Queue) lost(e *entry, eng engine.Engine, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e.job.Connection = ""
	if !e.job.Final() {
		e.job.State = api.StateFailed
	}
	msg := fmt.Sprintf("%s no longer has this job (restarted, or its results expired): %v", eng.Describe(), err)
	if e.job.Err == "" {
		e.job.Err = msg
	} else {
		e.job.Err += "; " + msg
	}
	q.saveStateLocked()
	q.changedLocked(e)
}

// handle applies one event to the job. Events already handled before a
// reconnection are skipped; an image is fetched and saved before its event
// counts as handled, so a failure to fetch it is retried with the replay.
func (q *Queue) handle(ctx context.Context, e *entry, eng engine.Engine, ev api.Event) error {
	q.mu.Lock()
	if ev.ID != 0 && ev.ID <= e.lastEvent {
		q.mu.Unlock()
		return nil
	}
	e.job.Connection = ""
	q.mu.Unlock()

	if ev.Type == api.EventImage && (ev.Index < 0 || ev.Index >= api.MaxBatch) {
		q.logf("jobs: %s: the engine sent an image event with index %d; ignored", e.job.ID, ev.Index)
	} else if ev.Type == api.EventImage {
		if err := q.fetch(ctx, e, eng, ev); err != nil {
			return err
		}
	}
	var preview image.Image
	if ev.Type == api.EventStep && len(ev.Preview) > 0 {
		img, err := jpeg.Decode(bytes.NewReader(ev.Preview))
		if err != nil {
			q.logf("jobs: %s: preview of step %d: %v", e.job.ID, ev.Step, err)
		} else {
			preview = img
		}
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if ev.ID > e.lastEvent {
		e.lastEvent = ev.ID
	}
	j := &e.job
	if j.Final() {
		// Cancelled here meanwhile: keep that.
		q.changedLocked(e)
		return nil
	}
	switch ev.Type {
	case api.EventQueued:
		j.State, j.Position = api.StateQueued, ev.Position
	case api.EventLoading:
		j.State, j.Loading, j.Position = api.StateLoading, ev.Model, 0
	case api.EventStep:
		j.State, j.Loading, j.Position = api.StateRunning, "", 0
		j.Step, j.Steps = ev.Step, ev.Steps
		if preview != nil {
			j.Preview = preview
		}
	case api.EventImage:
		j.State, j.Loading, j.Position = api.StateRunning, "", 0
	case api.EventDone:
		j.State = api.StateDone
	case api.EventError:
		j.State, j.Err = api.StateFailed, ev.Message
	case api.EventCancelled:
		j.State = api.StateCancelled
		if ev.Message != "" && j.Err == "" {
			j.Err = ev.Message
		}
	}
	if j.Final() {
		j.Loading, j.Position = "", 0
		q.saveStateLocked()
	}
	q.changedLocked(e)
	return nil
}

// fetch gets image ev.Index from the engine and saves it, unless it was
// saved already (before a reconnection or a restart).
func (q *Queue) fetch(ctx context.Context, e *entry, eng engine.Engine, ev api.Event) error {
	q.mu.Lock()
	for len(e.job.Seeds) <= ev.Index {
		e.job.Seeds = append(e.job.Seeds, 0)
	}
	e.job.Seeds[ev.Index] = ev.Seed
	_, done := e.saved[ev.Index]
	_, held := e.unsaved[ev.Index]
	q.mu.Unlock()
	if done || held {
		return nil
	}
	var (
		data []byte
		err  error
	)
	if q.cfg.beforeFetch != nil {
		err = q.cfg.beforeFetch(ctx, e.job.ID, ev.Index)
	}
	if err == nil {
		data, err = eng.Image(ctx, e.job.ID, ev.Index)
	}
	if err != nil {
		// Like a lost connection, this is retried with the events.
		return fmt.Errorf("fetch image %d: %w", ev.Index+1, err)
	}
	q.saveMu.Lock()
	defer q.saveMu.Unlock()
	q.saveLocked(ctx, e, ev.Index, data)
	return nil
}

// saveLocked saves image k of e into the gallery, or holds it in e.unsaved
// with the reason in the job's Err. q.saveMu must be held.
func (q *Queue) saveLocked(ctx context.Context, e *entry, k int, data []byte) error {
	q.mu.Lock()
	_, done := e.saved[k]
	q.mu.Unlock()
	if done {
		return nil
	}
	it, err := q.store.Save(ctx, data, nil)
	if err != nil && it.ID != "" {
		// On disk but not indexed: a later Sync indexes it.
		q.logf("jobs: %s: image %d: %v", e.job.ID, k+1, err)
		err = nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		e.unsaved[k] = data
		where := "kept in memory"
		if p, kerr := q.keep(e.job.ID, k, data); kerr == nil {
			where = "kept in " + p
		} else if p != "" {
			q.logf("jobs: %v", kerr)
		}
		e.saveErr = fmt.Sprintf("image %d could not be saved to the gallery (%s until it can be): %v", k+1, where, err)
		q.saveStateLocked()
		q.changedLocked(e)
		return fmt.Errorf("jobs: %s: save image %d: %w", e.job.ID, k+1, err)
	}
	delete(e.unsaved, k)
	q.unkeep(e.job.ID, k)
	e.saved[k] = it.ID
	// Images are listed in index order, whatever order they were saved in.
	pos := len(e.job.Images)
	for i, other := range e.job.Images {
		if kk, ok := indexOf(e.saved, other.ID); ok && kk > k {
			pos = i
			break
		}
	}
	e.job.Images = slices.Insert(e.job.Images, pos, it)
	if len(e.unsaved) == 0 {
		e.saveErr = ""
	}
	q.saveStateLocked()
	q.changedLocked(e)
	return nil
}

func indexOf(saved map[int]string, id string) (int, bool) {
	for k, v := range saved {
		if v == id {
			return k, true
		}
	}
	return 0, false
}

// waitingFor is the Connection of a resumed job whose engine is not set.
func waitingFor(desc string) string {
	return fmt.Sprintf("waiting for its engine (%s) to be set", desc)
}
