package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/enginetest"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/api"
)

// hangGuard bounds every wait of these tests; it is not a timing assertion.
const hangGuard = 3 * time.Minute

func guardCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T) *gallery.Store {
	t.Helper()
	s, err := gallery.Open(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newQueue(t *testing.T, cfg Config) *Queue {
	t.Helper()
	if cfg.Logf == nil {
		start := time.Now()
		cfg.Logf = func(f string, a ...any) { t.Logf("%v "+f, append([]any{time.Since(start)}, a...)...) }
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// recorder keeps every snapshot a subscriber gets.
type recorder struct {
	mu   sync.Mutex
	jobs []Job
}

func record(q *Queue) *recorder {
	r := &recorder{}
	q.Subscribe(func(j Job) {
		r.mu.Lock()
		r.jobs = append(r.jobs, j)
		r.mu.Unlock()
	})
	return r
}

func (r *recorder) all() []Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.jobs)
}

// when returns a channel that receives the first snapshot of job id (or of
// any job, for id "") for which cond holds.
func when(q *Queue, id string, cond func(Job) bool) <-chan Job {
	ch := make(chan Job, 1)
	var once sync.Once
	q.Subscribe(func(j Job) {
		if (id == "" || j.ID == id) && cond(j) {
			once.Do(func() { ch <- j })
		}
	})
	return ch
}

func await(t *testing.T, ch <-chan Job, what string) Job {
	t.Helper()
	select {
	case j := <-ch:
		return j
	case <-time.After(hangGuard):
		t.Fatalf("no job %s within %v", what, hangGuard)
		return Job{}
	}
}

func count(t *testing.T, s *gallery.Store) int {
	t.Helper()
	n, err := s.Count(context.Background(), gallery.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readState(t *testing.T, path string) stateFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("state file: %v\n%s", err, b)
	}
	return f
}

// TestQueue runs the queue against one real engine (the tiny checkpoint
// behind the real HTTP server), shared by the subtests so that the model is
// loaded once.
func TestQueue(t *testing.T) {
	dir := enginetest.ModelsDir(t, "tiny", "broken")
	// A checkpoint that is on disk but cannot be loaded makes the engine
	// fail the job after accepting it.
	if err := os.WriteFile(filepath.Join(dir, "broken.safetensors"), []byte("not a safetensors file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := enginetest.Start(t, dir)

	t.Run("Done", func(t *testing.T) { testDone(t, srv) })
	t.Run("Batch", func(t *testing.T) { testBatch(t, srv) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, srv) })
	t.Run("CancelOffline", func(t *testing.T) { testCancelOffline(t, srv) })
	t.Run("Refused", func(t *testing.T) { testRefused(t, srv) })
	t.Run("Reconnect", func(t *testing.T) { testReconnect(t, srv) })
	t.Run("Resume", func(t *testing.T) { testResume(t, srv) })
	t.Run("ResumeOtherEngine", func(t *testing.T) { testResumeOtherEngine(t, srv) })
	t.Run("SaveFailure", func(t *testing.T) { testSaveFailure(t, srv) })
	t.Run("SetEngine", func(t *testing.T) { testSetEngine(t, srv) })
	// Last: loading the broken model may evict the tiny one.
	t.Run("EngineFailure", func(t *testing.T) { testEngineFailure(t, srv) })
}

// testDone follows a job from submission to its image in the gallery.
func testDone(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	state := filepath.Join(t.TempDir(), "jobs.json")
	q := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	rec := record(q)

	const prompt = "1girl, (red dress:1.2), garden"
	id, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: prompt, NegativePrompt: "lowres", Seed: 1234, Steps: 3})
	if err != nil {
		t.Fatal(err)
	}
	if j, ok := q.Get(id); !ok || j.Final() || j.Request.Prompt != prompt || j.Engine != srv.URL {
		t.Fatalf("just submitted: %+v %v", j, ok)
	}
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || j.Err != "" || j.Step != 3 || j.Steps != 3 || len(j.Images) != 1 || !slices.Equal(j.Seeds, []int64{1234}) {
		t.Fatalf("job %+v", j)
	}
	it := j.Images[0]
	if it.Prompt != prompt || it.Negative != "lowres" || it.Model != "tiny" || !it.HasSeed || it.Seed != 1234 ||
		it.Steps != 3 || it.Width != 192 || it.Height != 128 || it.Source != gallery.SourcePixery {
		t.Errorf("gallery item %+v", it)
	}
	if _, err := os.Stat(it.Path); err != nil {
		t.Errorf("image file: %v", err)
	}
	found, err := store.Search(ctx, gallery.Query{Text: "red garden"})
	if err != nil || len(found) != 1 || found[0].ID != it.ID {
		t.Errorf("search red garden: %v %+v", err, found)
	}
	if found, _ := store.Search(ctx, gallery.Query{Text: "blue"}); len(found) != 0 {
		t.Errorf("search blue found %+v", found)
	}
	if n := count(t, store); n != 1 {
		t.Errorf("%d images in the gallery", n)
	}
	// A finished job is no longer pending.
	if f := readState(t, state); len(f.Jobs) != 0 {
		t.Errorf("state file keeps %+v", f.Jobs)
	}

	// Closing delivers what the subscribers have not had yet.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	var steps []int
	var preview, loading bool
	snaps := rec.all()
	for _, s := range snaps {
		if s.ID != id {
			t.Fatalf("snapshot of another job %q", s.ID)
		}
		if s.State == api.StateRunning && (len(steps) == 0 || steps[len(steps)-1] != s.Step) {
			steps = append(steps, s.Step)
		}
		if s.Preview != nil && s.Preview.Bounds().Dx() > 0 {
			preview = true
		}
		loading = loading || (s.State == api.StateLoading && s.Loading == "tiny")
	}
	if !slices.Equal(steps, []int{1, 2, 3}) || !preview {
		t.Errorf("subscriber saw steps %v, preview %v", steps, preview)
	}
	if last := snaps[len(snaps)-1]; last.State != api.StateDone || len(last.Images) != 1 {
		t.Errorf("last snapshot %+v", last)
	}
	// The model may be resident from an earlier subtest; loading shows
	// only when it was not.
	t.Logf("loading seen: %v; %d snapshots", loading, len(snaps))

	if got := q.Jobs(); len(got) != 1 || got[0].ID != id {
		t.Fatalf("Jobs() = %+v", got)
	}
	q.Remove(id)
	if got := q.Jobs(); len(got) != 0 {
		t.Errorf("after Remove: %+v", got)
	}
	if _, ok := q.Get(id); ok {
		t.Error("Get finds a removed job")
	}
	if _, err := q.Wait(ctx, "nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Wait(unknown) = %v", err)
	}
	if _, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close = %v", err)
	}
}

// testBatch: two images of one job, saved in order with their seeds.
func testBatch(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	q := newQueue(t, Config{Engine: srv.Engine, Store: store})
	id, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "2girls, beach", Seed: 77, Steps: 2, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || len(j.Images) != 2 || !slices.Equal(j.Seeds, []int64{77, 78}) {
		t.Fatalf("job %+v", j)
	}
	for k, it := range j.Images {
		if it.Seed != int64(77+k) || it.Prompt != "2girls, beach" {
			t.Errorf("image %d: %+v", k, it)
		}
	}
	if j.Images[0].ID == j.Images[1].ID {
		t.Errorf("both images are %s", j.Images[0].ID)
	}
	if n := count(t, store); n != 2 {
		t.Errorf("%d images in the gallery", n)
	}
}

// testCancel cancels a long job while it runs.
func testCancel(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	q := newQueue(t, Config{Engine: srv.Engine, Store: store})
	running := when(q, "", func(j Job) bool { return j.State == api.StateRunning && j.Step >= 1 })
	id, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1boy", Seed: 1, Steps: 50})
	if err != nil {
		t.Fatal(err)
	}
	await(t, running, "running")
	if err := q.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateCancelled || len(j.Images) != 0 || j.Step >= 50 {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 0 {
		t.Errorf("%d images in the gallery", n)
	}
	if err := q.Cancel(ctx, "nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Cancel(unknown) = %v", err)
	}
	// Cancelling a finished job changes nothing.
	if err := q.Cancel(ctx, id); err != nil {
		t.Errorf("cancel again: %v", err)
	}
	if j2, _ := q.Get(id); j2.State != api.StateCancelled {
		t.Errorf("after second cancel: %+v", j2)
	}
}

// testCancelOffline: cancelling a job whose engine cannot be reached
// marks it cancelled here, says the engine was not told, and stops
// following it.
func testCancelOffline(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	state := filepath.Join(t.TempDir(), "jobs.json")
	q := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state, Retry: 50 * time.Millisecond})
	running := when(q, "", func(j Job) bool { return j.State == api.StateRunning && j.Step >= 1 })
	id, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1boy", Seed: 1, Steps: 50})
	if err != nil {
		t.Fatal(err)
	}
	await(t, running, "running")
	srv.Stop()
	defer func() {
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		srv.Engine.Cancel(ctx, id)
	}()
	err = q.Cancel(ctx, id)
	if err == nil || !strings.Contains(err.Error(), "could not be told") {
		t.Fatalf("Cancel: %v", err)
	}
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateCancelled || !strings.Contains(j.Err, "could not be told") || len(j.Images) != 0 {
		t.Fatalf("job %+v", j)
	}
	if f := readState(t, state); len(f.Jobs) != 0 {
		t.Errorf("state keeps %+v", f.Jobs)
	}
}

// testRefused: requests the engine refuses are Submit's errors, naming the
// field, and leave no job behind.
func testRefused(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	q := newQueue(t, Config{Engine: srv.Engine, Store: newStore(t)})
	for _, tc := range []struct {
		req   api.JobRequest
		field string
		says  string
	}{
		{api.JobRequest{Model: "nope", Prompt: "x"}, "model", "nope"},
		{api.JobRequest{Model: "tiny", Prompt: "x", Width: 100}, "width", "8"},
		{api.JobRequest{Model: "tiny", Prompt: "x", Sampler: "warp_drive"}, "sampler", "warp_drive"},
	} {
		_, err := q.Submit(ctx, &tc.req)
		var se *api.StatusError
		if !errors.As(err, &se) || se.Field != tc.field || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: %v", tc.req, err)
		}
	}
	if js := q.Jobs(); len(js) != 0 {
		t.Errorf("jobs left: %+v", js)
	}
}

// testEngineFailure: a job the engine accepts but cannot run fails with the
// engine's message.
func testEngineFailure(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	q := newQueue(t, Config{Engine: srv.Engine, Store: store})
	id, err := q.Submit(ctx, &api.JobRequest{Model: "broken", Prompt: "x", Seed: 1, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateFailed || !strings.Contains(j.Err, "broken") || len(j.Images) != 0 {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 0 {
		t.Errorf("%d images in the gallery", n)
	}
}

// testReconnect drops the connection to the engine in the middle of a job
// for longer than Events waits, then brings it back on the same port: the
// job completes and its images are saved once. The connection goes down a
// second time right before an image is fetched.
func testReconnect(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	var dropOnce sync.Once
	q := newQueue(t, Config{
		Engine: srv.EngineWith(20*time.Millisecond, 1),
		Store:  store,
		Retry:  50 * time.Millisecond,
		beforeFetch: func(ctx context.Context, id string, k int) error {
			if k == 1 {
				dropOnce.Do(srv.Stop)
			}
			return nil
		},
	})
	running := when(q, "", func(j Job) bool { return j.State == api.StateRunning && j.Step >= 1 })
	lost := when(q, "", func(j Job) bool { return strings.HasPrefix(j.Connection, "reconnecting") })
	id, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, rain", Seed: 9, Steps: 20, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	await(t, running, "running")
	srv.Stop()
	lostJob := await(t, lost, "reconnecting")
	t.Logf("while down: %s", lostJob.Connection)
	// The second outage, made by beforeFetch, is seen the same way.
	lost2 := when(q, "", func(j Job) bool { return strings.Contains(j.Connection, "fetch image 2") })
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	await(t, lost2, "reconnecting for image 2")
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || len(j.Images) != 2 || j.Connection != "" || j.Err != "" {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 2 {
		t.Errorf("%d images in the gallery, want 2", n)
	}
	for k, it := range j.Images {
		if it.Seed != int64(9+k) {
			t.Errorf("image %d has seed %d", k, it.Seed)
		}
	}
}

// testResume closes the queue in the middle of a job, after its first image
// was saved and before its second, as a crash would; a new Queue on the same
// state file follows the job to its end and saves only the second image.
func testResume(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	state := filepath.Join(t.TempDir(), "state", "jobs.json")
	stopped := make(chan struct{})
	q1 := newQueue(t, Config{
		Engine:    srv.Engine,
		Store:     store,
		StateFile: state,
		beforeFetch: func(ctx context.Context, id string, k int) error {
			if k == 1 {
				close(stopped)
				<-ctx.Done() // the app quits before image 2 is fetched
				return ctx.Err()
			}
			return nil
		},
	})
	id, err := q1.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, snow", Seed: 500, Steps: 2, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(hangGuard):
		t.Fatal("image 2 never fetched")
	}
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, store); n != 1 {
		t.Fatalf("%d images saved before the restart", n)
	}
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", fi.Mode())
	}
	f := readState(t, state)
	if len(f.Jobs) != 1 || f.Jobs[0].ID != id || len(f.Jobs[0].Saved) != 1 || f.Jobs[0].Request.Prompt != "1girl, snow" {
		t.Fatalf("state %+v", f)
	}

	q2 := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	js := q2.Jobs()
	if len(js) != 1 || js[0].ID != id || len(js[0].Images) != 1 || js[0].Images[0].Seed != 500 {
		t.Fatalf("resumed %+v", js)
	}
	j, err := q2.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || len(j.Images) != 2 || j.Images[0].Seed != 500 || j.Images[1].Seed != 501 {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 2 {
		t.Errorf("%d images in the gallery, want 2", n)
	}
	if err := q2.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing pending any more: a third start resumes nothing.
	q3 := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	if js := q3.Jobs(); len(js) != 0 {
		t.Errorf("third start resumed %+v", js)
	}

	// A state file that is not one is moved aside, not lost.
	if err := os.WriteFile(state, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	q4 := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	if js := q4.Jobs(); len(js) != 0 {
		t.Errorf("broken state resumed %+v", js)
	}
	aside, _ := filepath.Glob(state + ".broken-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != "{garbage" {
		t.Errorf("aside holds %q", b)
	}
}

// testSaveFailure: when the gallery cannot take an image, the job says so,
// keeps the PNG (in the recovery folder) and the job pending, across a
// restart, and saves it once the gallery can.
func testSaveFailure(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	state := filepath.Join(t.TempDir(), "jobs.json")
	q1 := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	// A file where the gallery's day folder goes makes Save fail.
	var blockers []string
	for _, d := range []time.Time{time.Now(), time.Now().Add(24 * time.Hour)} {
		p := filepath.Join(store.Dir(), d.Format("2006-01-02"))
		if err := os.WriteFile(p, []byte("in the way"), 0o644); err != nil {
			t.Fatal(err)
		}
		blockers = append(blockers, p)
	}
	id, err := q1.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, desert", Seed: 3, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	j, err := q1.Wait(ctx, id)
	if err == nil || !strings.Contains(err.Error(), "save image 1") {
		t.Fatalf("Wait: %v", err)
	}
	kept := filepath.Join(filepath.Dir(state), "unsaved", id+".0.png")
	if j.State != api.StateDone || j.Unsaved != 1 || len(j.Images) != 0 || !strings.Contains(j.Err, "could not be saved") || !strings.Contains(j.Err, kept) {
		t.Fatalf("job %+v", j)
	}
	if b, err := os.ReadFile(kept); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("kept image: %v", err)
	}
	if f := readState(t, state); len(f.Jobs) != 1 || f.Jobs[0].ID != id {
		t.Errorf("state %+v", f)
	}
	q1.Remove(id) // refused: the image is not saved
	if _, ok := q1.Get(id); !ok {
		t.Fatal("Remove dropped a job with an unsaved image")
	}
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the job is still there with its kept image; the
	// gallery still refuses it.
	q2 := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	if js := q2.Jobs(); len(js) != 1 || js[0].ID != id || js[0].Unsaved != 1 || !strings.Contains(js[0].Err, kept) {
		t.Fatalf("resumed %+v", js)
	}
	if _, err := q2.Wait(ctx, id); err == nil {
		t.Fatal("Wait saved into a blocked gallery")
	}
	for _, p := range blockers {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	j, err = q2.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Unsaved != 0 || len(j.Images) != 1 || j.Err != "" || j.Images[0].Seed != 3 || j.Images[0].Prompt != "1girl, desert" {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 1 {
		t.Errorf("%d images in the gallery", n)
	}
	if f := readState(t, state); len(f.Jobs) != 0 {
		t.Errorf("state %+v", f)
	}
	if _, err := os.Stat(kept); !os.IsNotExist(err) {
		t.Errorf("kept image still there: %v", err)
	}
}

// testSetEngine: without an engine nothing is submitted; a job whose
// engine is replaced by one of the same address follows the new one.
func testSetEngine(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	q := newQueue(t, Config{Store: store})
	if _, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "x"}); !errors.Is(err, ErrNoEngine) {
		t.Fatalf("Submit without engine: %v", err)
	}
	q.SetEngine(srv.EngineWith(20*time.Millisecond, 1))
	id, err := q.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, city", Seed: 11, Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	q.SetEngine(srv.Engine)
	j, err := q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || len(j.Images) != 1 || j.Engine != srv.URL {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 1 {
		t.Errorf("%d images", n)
	}
}

// testResumeOtherEngine: a job resumed while another engine is set waits
// for its own, and is followed to its end once that is set again.
func testResumeOtherEngine(t *testing.T, srv *enginetest.Server) {
	ctx := guardCtx(t)
	store := newStore(t)
	state := filepath.Join(t.TempDir(), "jobs.json")
	q1 := newQueue(t, Config{Engine: srv.Engine, Store: store, StateFile: state})
	id, err := q1.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, forest", Seed: 21, Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := q1.Close(); err != nil {
		t.Fatal(err)
	}
	other := engine.Remote("http://127.0.0.1:9", "")
	q2 := newQueue(t, Config{Engine: other, Store: store, StateFile: state, Retry: 50 * time.Millisecond})
	js := q2.Jobs()
	if len(js) != 1 || js[0].ID != id || js[0].Engine != srv.URL || !strings.Contains(js[0].Connection, "waiting for its engine") {
		t.Fatalf("resumed %+v", js)
	}
	q2.SetEngine(engine.Remote(srv.URL, srv.Token))
	j, err := q2.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || len(j.Images) != 1 || j.Images[0].Seed != 21 || j.Connection != "" {
		t.Fatalf("job %+v", j)
	}
	if n := count(t, store); n != 1 {
		t.Errorf("%d images", n)
	}
}

func TestNewNeedsStore(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "store") {
		t.Fatalf("New without store: %v", err)
	}
}
