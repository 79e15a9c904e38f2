package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
)

func TestJobLifecycle(t *testing.T) {
	fb := newFakeBackend()
	fb.Load = true
	ts := newTestServer(t, fb)
	ctx := context.Background()

	sub, err := ts.Client.Submit(ctx, &api.JobRequest{Model: "animagine", Prompt: "1girl, smile", NegativePrompt: "lowres",
		Sampler: "DPM++ 2M", Seed: 1234, Batch: 3, Steps: 5, LoRAs: []api.LoRA{{Name: "add-detail-xl", Scale: 0.7}}})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Seed != 1234 || sub.ID == "" {
		t.Fatalf("submitted %+v", sub)
	}
	evs := collect(t, ts.Client, sub.ID)

	// queued, loading, 5 steps (previews at 2 and 4), 3 images, done.
	var types []string
	for i, e := range evs {
		if e.ID != int64(i+1) {
			t.Fatalf("event %d has id %d", i, e.ID)
		}
		types = append(types, string(e.Type))
	}
	want := "queued loading step step step step step image image image done"
	if strings.Join(types, " ") != want {
		t.Fatalf("events %v\nwant %s", types, want)
	}
	for _, e := range evs[2:7] {
		if hasPreview := len(e.Preview) > 0; hasPreview != (e.Step%2 == 0) || e.Steps != 5 {
			t.Errorf("step %d/%d preview %d bytes", e.Step, e.Steps, len(e.Preview))
		}
		if len(e.Preview) > 0 && !bytes.HasPrefix(e.Preview, []byte{0xff, 0xd8}) {
			t.Errorf("preview is not a JPEG")
		}
	}

	j, err := ts.Client.Job(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateDone || j.Step != 5 || j.Steps != 5 || len(j.Images) != 3 || j.Model != "animagine" ||
		j.Started == nil || j.Finished == nil {
		t.Fatalf("job %+v", j)
	}
	ran := fb.jobsRun()[0]
	// The server resolved the A1111 name to the engine's, and filled the
	// model's defaults.
	if ran.Sampler != "dpmpp_2m_karras" || ran.Scheduler != "" || ran.Width != 64 || ran.Height != 96 || ran.CFG != 5 ||
		ran.ClipSkip != 2 || ran.RNG != api.RNGA1111 {
		t.Errorf("backend got %+v", ran)
	}
	for k := 0; k < 3; k++ {
		ev := evs[7+k]
		png, err := ts.Client.Image(ctx, sub.ID, k)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Index != k || ev.URL != j.Images[k] || ev.Seed != 1234+int64(k) || j.Seeds[k] != ev.Seed {
			t.Errorf("image event %+v, job images %v seeds %v", ev, j.Images, j.Seeds)
		}
		if got := seedOf(t, png); got != 1234+int64(k) {
			t.Errorf("image %d made with seed %d", k, got)
		}
		m, err := pngmeta.Decode(bytes.NewReader(png))
		if err != nil {
			t.Fatal(err)
		}
		if m.Recipe == nil || m.Recipe.Seed != 1234+int64(k) || m.A1111 == nil || m.A1111.Seed != 1234+int64(k) ||
			m.A1111.Sampler != "DPM++ 2M" || m.A1111.ScheduleType != "Karras" || m.A1111.Model != "animagine-xl-4.0" ||
			len(m.A1111.LoRAHashes) != 1 {
			t.Errorf("image %d metadata: %+v / %+v", k, m.Recipe, m.A1111)
		}
	}

	// Replaying a finished job's events gives the same log.
	again := collect(t, ts.Client, sub.ID)
	if len(again) != len(evs) || again[len(again)-1].Type != api.EventDone {
		t.Errorf("replay: %d events", len(again))
	}
	loras, err1 := ts.Client.LoRAs(ctx)
	ips, err2 := ts.Client.IPAdapters(ctx)
	models, err3 := ts.Client.Models(ctx)
	if err := errors.Join(err1, err2, err3); err != nil || len(loras) != 1 || loras[0].Name != "add-detail-xl" ||
		len(ips) != 1 || len(models) != 3 || models[2].State != api.ModelMissing {
		t.Errorf("lists: %+v %+v %+v, %v", loras, ips, models, err)
	}
	var h api.Health
	ts.getJSON("/v1/health", &h)
	if h.Version != api.Version || h.Device != "fake" || h.Queued != 0 || h.Running != "" || len(h.Loaded) != 1 {
		t.Errorf("health %+v", h)
	}
}

func TestQueueFIFOAndPositions(t *testing.T) {
	fb := newFakeBackend()
	fb.Gate = make(chan struct{})
	ts := newTestServer(t, fb)
	ctx := context.Background()
	var subs []*api.Submitted
	for i := 0; i < 3; i++ {
		s, err := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Prompt: fmt.Sprint("job ", i), Seed: int64(i), Steps: 2})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	// The first starts (0 ahead); the others wait behind it.
	ts.waitState(subs[0].ID, api.StateRunning)
	for i, want := range []int{0, 1, 2} {
		j, _ := ts.Client.Job(ctx, subs[i].ID)
		if i > 0 && j.QueuePosition != want {
			t.Errorf("job %d position %d, want %d", i, j.QueuePosition, want)
		}
	}
	if subs[0].QueuePosition != 0 || subs[1].QueuePosition != 1 || subs[2].QueuePosition != 2 {
		t.Errorf("submit positions %d %d %d", subs[0].QueuePosition, subs[1].QueuePosition, subs[2].QueuePosition)
	}
	// Release every step; the third job's stream shows its position fall.
	done := make(chan []api.Event)
	go func() { done <- collect(t, ts.Client, subs[2].ID) }()
	go func() {
		for i := 0; i < 6; i++ {
			fb.Gate <- struct{}{}
		}
	}()
	evs := <-done
	var positions []int
	for _, e := range evs {
		if e.Type == api.EventQueued {
			positions = append(positions, e.Position)
		}
	}
	if fmt.Sprint(positions) != "[2 1]" {
		t.Errorf("third job's queued events %v, want [2 1] (then it ran)", positions)
	}
	var order []string
	for _, r := range fb.jobsRun() {
		order = append(order, r.Prompt)
	}
	if strings.Join(order, ",") != "job 0,job 1,job 2" {
		t.Errorf("run order %v", order)
	}
}

func TestCancel(t *testing.T) {
	fb := newFakeBackend()
	fb.Gate = make(chan struct{})
	ts := newTestServer(t, fb)
	ctx := context.Background()
	a, _ := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 1})
	b, _ := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 2})
	ts.waitState(a.ID, api.StateRunning)

	// A queued job is cancelled at once and never reaches the backend.
	j, err := ts.Client.Cancel(ctx, b.ID)
	if err != nil || j.State != api.StateCancelled {
		t.Fatalf("cancel queued: %+v, %v", j, err)
	}
	evs := collect(t, ts.Client, b.ID)
	if last := evs[len(evs)-1]; last.Type != api.EventCancelled {
		t.Errorf("queued job's last event %+v", last)
	}
	// The running one stops at its next step.
	fb.Gate <- struct{}{}
	j, err = ts.Client.Cancel(ctx, a.ID)
	if err != nil || j.State != api.StateCancelled || j.Step != 1 {
		t.Fatalf("cancel running: %+v, %v", j, err)
	}
	if n := len(fb.jobsRun()); n != 1 {
		t.Errorf("backend ran %d jobs, want 1", n)
	}
	// A finished job cannot be cancelled; an unknown one is not found.
	_, err = ts.Client.Cancel(ctx, a.ID)
	var se *api.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusConflict {
		t.Errorf("cancel finished: %v", err)
	}
	_, err = ts.Client.Cancel(ctx, "0123456789abcdef")
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.Field != "id" {
		t.Errorf("cancel unknown: %v", err)
	}
	// The queue goes on.
	c, _ := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 3, Steps: 1})
	fb.Gate <- struct{}{}
	ts.waitState(c.ID, api.StateDone)
}

// readSSE reads raw events from an HTTP stream until n events (or the end).
func readSSE(t *testing.T, url, lastID string, n int) (evs []api.SSEMessage, comments int) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var cur api.SSEMessage
	for sc.Scan() && len(evs) < n {
		line := sc.Text()
		switch {
		case line == "":
			if cur.ID != "" {
				evs = append(evs, cur)
			}
			cur = api.SSEMessage{}
		case strings.HasPrefix(line, ": keep-alive"):
			comments++
		case strings.HasPrefix(line, "id: "):
			cur.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.Data = line[6:]
		}
	}
	return evs, comments
}

func TestSSEResumeAndKeepAlive(t *testing.T) {
	fb := newFakeBackend()
	fb.Gate = make(chan struct{})
	ts := newTestServer(t, fb, func(c *Config) { c.KeepAlive = 20 * time.Millisecond })
	sub, _ := ts.Client.Submit(context.Background(), &api.JobRequest{Model: "pony", Seed: 9, Steps: 6})
	url := ts.URL + "/v1/jobs/" + sub.ID + "/events"

	go func() { fb.Gate <- struct{}{}; fb.Gate <- struct{}{} }()
	first, _ := readSSE(t, url, "", 3) // queued, step 1, step 2
	if len(first) != 3 || first[0].Event != "queued" || first[2].ID != "3" || first[2].Event != "step" {
		t.Fatalf("first connection: %+v", first)
	}
	// Nothing happens for a while: keep-alives flow.
	waitDone := make(chan int)
	go func() {
		_, c := readSSE(t, url, "3", 1)
		waitDone <- c
	}()
	time.Sleep(100 * time.Millisecond)
	fb.Gate <- struct{}{}
	if c := <-waitDone; c < 2 {
		t.Errorf("%d keep-alive comments in 100 ms at a 20 ms interval", c)
	}
	// Resume after event 3: exactly the later events, in order.
	go func() {
		for i := 0; i < 3; i++ {
			fb.Gate <- struct{}{}
		}
	}()
	rest, _ := readSSE(t, url, "3", 100)
	var ids []string
	for _, e := range rest {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "4,5,6,7,8,9" || rest[len(rest)-1].Event != "done" {
		t.Errorf("resumed events %v (%+v)", ids, rest)
	}
	// A resume point past the end gives nothing but ends (the job is final).
	if evs, _ := readSSE(t, url, "99", 100); len(evs) != 0 {
		t.Errorf("past the end: %+v", evs)
	}
}

// abortAfter breaks a streaming response after n events, as a dropped
// connection would.
type abortAfter struct {
	http.ResponseWriter
	n int
}

func (a *abortAfter) Write(b []byte) (int, error) {
	// Pass whole messages while events remain, then break the connection
	// (the server may write several events at once).
	written := 0
	for len(b) > 0 {
		end := bytes.Index(b, []byte("\n\n"))
		if end < 0 {
			end = len(b)
		} else {
			end += 2
		}
		if bytes.HasPrefix(b, []byte("id: ")) {
			if a.n == 0 {
				if f, ok := a.ResponseWriter.(http.Flusher); ok {
					f.Flush()
				}
				panic(http.ErrAbortHandler)
			}
			a.n--
		}
		n, err := a.ResponseWriter.Write(b[:end])
		written += n
		if err != nil {
			return written, err
		}
		b = b[end:]
	}
	return written, nil
}

func (a *abortAfter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

func TestClientReconnects(t *testing.T) {
	fb := newFakeBackend()
	fb.StepDelay = 5 * time.Millisecond
	s := newTestServer(t, fb)
	var (
		mu       sync.Mutex
		requests int
		lastIDs  []string
	)
	// A proxy that drops the first two event streams after two events each.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") {
			mu.Lock()
			requests++
			lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
			if requests <= 2 {
				w = &abortAfter{ResponseWriter: w, n: 2}
			}
			mu.Unlock()
		}
		s.Handler().ServeHTTP(w, r)
	}))
	defer proxy.Close()
	c := api.NewClient(proxy.URL, "")
	c.Retry = 10 * time.Millisecond
	sub, err := c.Submit(context.Background(), &api.JobRequest{Model: "pony", Seed: 5, Steps: 8, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	evs := collect(t, c, sub.ID)
	for i, e := range evs {
		if e.ID != int64(i+1) {
			t.Fatalf("event %d has id %d: lost or repeated events across reconnects", i, e.ID)
		}
	}
	if n := len(evs); n != 1+8+2+1 || evs[n-1].Type != api.EventDone {
		t.Errorf("%d events, last %+v", n, evs[len(evs)-1])
	}
	if fmt.Sprint(lastIDs[:3]) != "[ 2 4]" {
		t.Errorf("Last-Event-ID of the three connections: %q", lastIDs)
	}
	// A job the server does not know ends Events at once.
	err = c.Events(context.Background(), "ffffffffffffffff", func(api.Event) error { return nil })
	var se *api.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Errorf("events of an unknown job: %v", err)
	}
	// A callback's error ends it with that error; ErrStop quietly.
	boom := errors.New("boom")
	if err := c.Events(context.Background(), sub.ID, func(api.Event) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: %v", err)
	}
	if err := c.Events(context.Background(), sub.ID, func(api.Event) error { return api.ErrStop }); err != nil {
		t.Errorf("ErrStop: %v", err)
	}
}

func TestResultsKeptAndEvicted(t *testing.T) {
	fb := newFakeBackend()
	ts := newTestServer(t, fb, func(c *Config) { c.KeepJobs = 3 })
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		sub, err := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: int64(100 + i), Steps: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sub.ID)
		// No one listens: the results wait on the server.
		ts.waitState(sub.ID, api.StateDone)
	}
	for i, id := range ids {
		png, err := ts.Client.Image(ctx, id, 0)
		var se *api.StatusError
		if i < 2 {
			if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
				t.Errorf("job %d should have been evicted: %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		if got := seedOf(t, png); got != int64(100+i) {
			t.Errorf("job %d image has seed %d", i, got)
		}
	}

	// A byte budget evicts too, keeping the newest job whatever its size.
	ts2 := newTestServer(t, newFakeBackend(), func(c *Config) { c.KeepBytes = 1 })
	a, _ := ts2.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 1, Steps: 1})
	ts2.waitState(a.ID, api.StateDone)
	b, _ := ts2.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 2, Steps: 1})
	ts2.waitState(b.ID, api.StateDone)
	if _, err := ts2.Client.Job(ctx, a.ID); err == nil {
		t.Error("older job kept beyond the byte budget")
	}
	if _, err := ts2.Client.Image(ctx, b.ID, 0); err != nil {
		t.Errorf("newest job evicted: %v", err)
	}
}

func TestBackendFailureAndPanic(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*fakeBackend)
		want string
	}{
		{"error", func(f *fakeBackend) { f.Fail = errors.New("CUDA out of memory") }, "CUDA out of memory"},
		{"panic", func(f *fakeBackend) { f.Panic = "index out of range" }, "internal error in the engine: index out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend()
			tc.set(fb)
			ts := newTestServer(t, fb)
			sub, err := ts.Client.Submit(context.Background(), &api.JobRequest{Model: "pony", Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			evs := collect(t, ts.Client, sub.ID)
			last := evs[len(evs)-1]
			if last.Type != api.EventError || last.Message != tc.want {
				t.Errorf("last event %+v", last)
			}
			j := ts.waitState(sub.ID, api.StateFailed)
			if j.Error != tc.want {
				t.Errorf("job error %q", j.Error)
			}
			if _, err := ts.Client.Health(context.Background()); err != nil {
				t.Errorf("server down after a %s: %v", tc.name, err)
			}
		})
	}
}

func TestDownload(t *testing.T) {
	fb := newFakeBackend()
	ts := newTestServer(t, fb)
	ctx := context.Background()
	// A job for a model that is not on disk says how to get it.
	_, err := ts.Client.Submit(ctx, &api.JobRequest{Model: "noobai", Seed: 1})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Field != "model" || !strings.Contains(se.Message, "/v1/models/noobai/download") {
		t.Fatalf("job on a missing model: %v", err)
	}
	m, err := ts.Client.DownloadModel(ctx, "noobai")
	if err != nil || m.State != api.ModelDownloading {
		t.Fatalf("download: %+v, %v", m, err)
	}
	// While it runs, /v1/models shows the progress; a second request joins it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ms, _ := ts.Client.Models(ctx)
		if x := findModel(ms, "noobai"); x.State == api.ModelDownloading && x.Progress == 0.1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no download progress shown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, _ := ts.do("POST", "/v1/models/noobai/download", ""); status != http.StatusAccepted {
		t.Errorf("second download request: %d", status)
	}
	close(fb.release)
	for {
		ms, _ := ts.Client.Models(ctx)
		if findModel(ms, "noobai").State == api.ModelOnDisk {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("download never finished")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, _ := ts.do("POST", "/v1/models/noobai/download", ""); status != http.StatusOK {
		t.Errorf("download of a model on disk: %d", status)
	}
	if _, err := ts.Client.Submit(ctx, &api.JobRequest{Model: "noobai", Seed: 1}); err != nil {
		t.Errorf("job after the download: %v", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	fb := newFakeBackend()
	fb.Gate = make(chan struct{})
	ts := newTestServer(t, fb)
	ctx := context.Background()
	running, _ := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 1, Steps: 3})
	queued, _ := ts.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 2, Steps: 3})
	ts.waitState(running.ID, api.StateRunning)
	streamDone := make(chan []api.Event)
	go func() { streamDone <- collect(t, ts.Client, running.ID) }()
	time.Sleep(20 * time.Millisecond) // let the stream connect

	shutDone := make(chan error)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		shutDone <- ts.Shutdown(sctx)
	}()
	// New connections are refused while the running job finishes.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := http.Get(ts.URL + "/v1/health"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections during shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-shutDone:
		t.Fatalf("shutdown returned (%v) before the running job finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	for i := 0; i < 3; i++ {
		fb.Gate <- struct{}{}
	}
	if err := <-shutDone; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	evs := <-streamDone
	if evs[len(evs)-1].Type != api.EventDone {
		t.Errorf("running job's stream ended with %+v", evs[len(evs)-1])
	}
	ts.q.mu.Lock()
	qs, rs := ts.q.jobs[queued.ID].state, ts.q.jobs[running.ID].state
	ts.q.mu.Unlock()
	if qs != api.StateCancelled || rs != api.StateDone {
		t.Errorf("after shutdown: queued job %s, running job %s", qs, rs)
	}
	if n := len(fb.jobsRun()); n != 1 {
		t.Errorf("backend ran %d jobs", n)
	}

	// With a deadline shorter than the job, the job is cancelled.
	fb2 := newFakeBackend()
	fb2.Gate = make(chan struct{})
	ts2 := newTestServer(t, fb2)
	j, _ := ts2.Client.Submit(ctx, &api.JobRequest{Model: "pony", Seed: 1, Steps: 3})
	ts2.waitState(j.ID, api.StateRunning)
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := ts2.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("short shutdown: %v", err)
	}
	ts2.q.mu.Lock()
	st := ts2.q.jobs[j.ID].state
	ts2.q.mu.Unlock()
	if st != api.StateCancelled {
		t.Errorf("job after a short shutdown: %s", st)
	}
}

func TestAuth(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:8000", "", true},
		{"localhost:8000", "", true},
		{"[::1]:8000", "", true},
		{"127.0.0.2:8000", "", true},
		{"0.0.0.0:8000", "", false},
		{":8000", "", false},
		{"192.168.1.5:8000", "", false},
		{"[::]:8000", "", false},
		{"0.0.0.0:8000", "s3cret", true},
		{"no-port", "", false},
	} {
		err := CheckAddr(tc.addr, tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q, %q) = %v", tc.addr, tc.token, err)
		}
		if _, err := New(newFakeBackend(), Config{Addr: tc.addr, Token: tc.token}); (err == nil) != tc.ok {
			t.Errorf("New on %q with token %q: %v", tc.addr, tc.token, err)
		} else if err != nil && tc.addr == "0.0.0.0:8000" && !strings.Contains(err.Error(), "--token") {
			t.Errorf("error does not say how to fix it: %v", err)
		}
	}

	// Serve holds its listener to the rule too.
	if l, err := net.Listen("tcp", "0.0.0.0:0"); err == nil {
		s, _ := New(newFakeBackend(), Config{})
		if err := s.Serve(l); err == nil || !strings.Contains(err.Error(), "token") {
			t.Errorf("Serve on %s without a token: %v", l.Addr(), err)
		}
	}

	ts := newTestServer(t, newFakeBackend(), func(c *Config) { c.Token = "s3cret" })
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, path := range []string{"/v1/health", "/v1/models", "/v1/jobs/x", "/sdapi/v1/options", "/sdapi/v1/sd-models", "/nope"} {
		for _, tc := range []struct {
			header string
			ok     bool
		}{
			{"", false},
			{"Bearer wrong", false},
			{"Bearer s3cre", false},
			{"Bearer s3cret", true},
			{basic("sillytavern", "s3cret"), true},
			{basic("x", "nope"), false},
			{"Basic !!!", false},
			{"s3cret", false},
		} {
			status, body := ts.do("GET", path, "", "Authorization", tc.header)
			if (status != http.StatusUnauthorized) != tc.ok {
				t.Errorf("GET %s with %q: %d %s", path, tc.header, status, body)
			}
		}
	}
	// The Go client sends the token.
	if _, err := ts.Client.Health(context.Background()); err != nil {
		t.Errorf("client with token: %v", err)
	}
	if _, err := api.NewClient(ts.URL, "wrong").Health(context.Background()); err == nil {
		t.Error("client with a wrong token got in")
	}
}

func TestPreviewDownscale(t *testing.T) {
	img := seedImage(1000, 600, 7)
	b := encodePreview(img)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil || format != "jpeg" {
		t.Fatalf("%s, %v", format, err)
	}
	// 1000x600 halves twice to fit 256.
	if cfg.Width != 250 || cfg.Height != 150 {
		t.Errorf("preview %dx%d, want 250x150", cfg.Width, cfg.Height)
	}
}
