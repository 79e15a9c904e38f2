package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
)

// testServer is a Server listening on a loopback port, with a client. The
// harness takes any Backend, so the pipeline's end-to-end tests can run the
// same scenarios with the real engine.
type testServer struct {
	*Server
	URL    string
	Client *api.Client
	t      testing.TB
}

// newTestServer starts a Server for b on 127.0.0.1 and shuts it down when
// the test ends.
func newTestServer(t testing.TB, b Backend, opts ...func(*Config)) *testServer {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), KeepAlive: time.Second, CancelWait: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	ts := &testServer{Server: s, URL: "http://" + l.Addr().String(), t: t}
	ts.Client = api.NewClient(ts.URL, cfg.Token)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return ts
}

// do sends a raw request and returns the status and body.
func (ts *testServer) do(method, path, body string, header ...string) (int, []byte) {
	ts.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// getJSON decodes a GET answer into v and fails the test on any error status.
func (ts *testServer) getJSON(path string, v any) {
	ts.t.Helper()
	status, b := ts.do("GET", path, "")
	if status != http.StatusOK {
		ts.t.Fatalf("GET %s: %d %s", path, status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		ts.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// waitState polls a job until it reaches the state.
func (ts *testServer) waitState(id string, want api.JobState) api.Job {
	ts.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := ts.Client.Job(context.Background(), id)
		if err != nil {
			ts.t.Fatal(err)
		}
		if j.State == want {
			return *j
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("job %s is %s, waited for %s", id, j.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeBackend is a deterministic engine: each step it reports progress
// (with a preview every PreviewEvery steps), and at the end it renders, for
// each image, a small gradient whose top-left pixel encodes the seed. Steps
// wait on Gate when it is set, so a test decides when a job advances.
type fakeBackend struct {
	mu         sync.Mutex
	models     []api.Model
	loras      []api.FileInfo
	ipAdapters []api.FileInfo
	// Gate, when not nil, must yield a value before each step.
	Gate chan struct{}
	// StepDelay is slept at each step.
	StepDelay    time.Duration
	PreviewEvery int
	// Load makes Generate report a model load first.
	Load bool
	// Fail and Panic make Generate fail or panic at its first step.
	Fail  error
	Panic any
	// Started receives each job's request as it starts, when not nil.
	Started chan api.JobRequest
	// ran records the jobs run, in order.
	ran []api.JobRequest
	// downloads completes on Release.
	release chan struct{}
}

func newFakeBackend() *fakeBackend {
	d := api.ModelDefaults{CFG: 5, Steps: 4, Width: 64, Height: 96, Sampler: "euler_a", ClipSkip: 2}
	return &fakeBackend{
		models: []api.Model{
			{ID: "animagine", DisplayName: "Animagine XL 4.0", File: "animagine-xl-4.0.safetensors", Architecture: "sdxl",
				Defaults: d, State: api.ModelOnDisk, Hash: "6327eca98b", SHA256: "6327eca98b" + strings.Repeat("0", 54)},
			{ID: "pony", DisplayName: "Pony Diffusion V6 XL", File: "ponyDiffusionV6XL.safetensors", Architecture: "sdxl",
				Defaults: api.ModelDefaults{CFG: 7, Steps: 3, Width: 72, Height: 64, Sampler: "euler_a", ClipSkip: 2}, State: api.ModelLoaded},
			{ID: "noobai", DisplayName: "NoobAI-XL 1.1", File: "NoobAI-XL-v1.1.safetensors", Architecture: "sdxl", Defaults: d, State: api.ModelMissing,
				Source: "huggingface:Laxhar/noobai-XL-1.1"},
		},
		loras:        []api.FileInfo{{Name: "add-detail-xl", File: "add-detail-xl.safetensors", Size: 1234, Hash: "9c783c8ce46c"}},
		ipAdapters:   []api.FileInfo{{Name: "ip-adapter-plus_sdxl_vit-h", File: "ip-adapter-plus_sdxl_vit-h.safetensors", Size: 4321}},
		PreviewEvery: 2,
		release:      make(chan struct{}),
	}
}

func (f *fakeBackend) Models() []api.Model {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Model(nil), f.models...)
}
func (f *fakeBackend) LoRAs() []api.FileInfo      { return f.loras }
func (f *fakeBackend) IPAdapters() []api.FileInfo { return f.ipAdapters }
func (f *fakeBackend) Health() api.Health {
	return api.Health{Device: "fake", Provider: "CPU", Loaded: []string{"pony"}, FreeMemory: 1 << 30}
}

func (f *fakeBackend) Validate(job *api.JobRequest) error {
	if findModel(f.Models(), job.Model) == nil {
		return &api.FieldError{Field: "model", Message: fmt.Sprintf("unknown model %q", job.Model)}
	}
	for i, l := range job.LoRAs {
		found := false
		for _, have := range f.loras {
			found = found || have.Name == l.Name
		}
		if !found {
			return &api.FieldError{Field: fmt.Sprintf("loras[%d].name", i), Message: fmt.Sprintf("unknown LoRA %q", l.Name)}
		}
	}
	if ip := job.IPAdapter; ip != nil && ip.Adapter != "" && ip.Adapter != f.ipAdapters[0].Name {
		return &api.FieldError{Field: "ip_adapter.adapter", Message: fmt.Sprintf("unknown IP-Adapter %q", ip.Adapter)}
	}
	return nil
}

func (f *fakeBackend) Generate(ctx context.Context, job *api.JobRequest, progress func(Progress)) ([]Result, error) {
	f.mu.Lock()
	f.ran = append(f.ran, *job)
	f.mu.Unlock()
	if f.Started != nil {
		f.Started <- *job
	}
	if f.Load {
		progress(Progress{Stage: StageLoading, Model: job.Model})
	}
	for i := 1; i <= job.Steps; i++ {
		if f.Panic != nil {
			panic(f.Panic)
		}
		if f.Fail != nil {
			return nil, f.Fail
		}
		if f.Gate != nil {
			select {
			case <-f.Gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if f.StepDelay > 0 {
			select {
			case <-time.After(f.StepDelay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := Progress{Stage: StageSampling, Step: i, Steps: job.Steps}
		if f.PreviewEvery > 0 && i%f.PreviewEvery == 0 {
			p.Preview = seedImage(job.Width/8, job.Height/8, job.Seed+int64(i))
		}
		progress(p)
	}
	var out []Result
	m := findModel(f.Models(), job.Model)
	for b := 0; b < job.Batch; b++ {
		rc := pngmeta.Recipe{
			Generator: "pixery " + api.Version, Model: job.Model, ModelFile: m.File, ModelHash: m.Hash,
			Prompt: job.Prompt, NegativePrompt: job.NegativePrompt, Width: job.Width, Height: job.Height,
			Steps: job.Steps, CFG: job.CFG, Sampler: job.Sampler, Seed: job.Seed + int64(b), RNG: job.RNG,
			ClipSkip: job.ClipSkip, BatchIndex: b, BatchSize: job.Batch,
		}
		for _, l := range job.LoRAs {
			rc.LoRAs = append(rc.LoRAs, pngmeta.LoRA{Name: l.Name, Scale: l.Scale, Hash: f.loras[0].Hash})
		}
		out = append(out, Result{Image: seedImage(job.Width, job.Height, rc.Seed), Recipe: rc})
	}
	return out, nil
}

func (f *fakeBackend) Download(ctx context.Context, id string, progress func(done, total int64)) error {
	progress(10, 100)
	select {
	case <-f.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.models {
		if f.models[i].ID == id {
			f.models[i].State = api.ModelOnDisk
			return nil
		}
	}
	return &api.FieldError{Field: "id", Message: "unknown model"}
}

func (f *fakeBackend) jobsRun() []api.JobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.JobRequest(nil), f.ran...)
}

// seedImage is a gradient whose first pixel holds the seed's low 24 bits,
// so that a test can tell which seed made an image.
func seedImage(w, h int, seed int64) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, max(w, 1), max(h, 1)))
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			img.SetRGBA(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), uint8(x + y), 255})
		}
	}
	img.SetRGBA(0, 0, color.RGBA{uint8(seed), uint8(seed >> 8), uint8(seed >> 16), 255})
	return img
}

// seedOf reads seedImage's seed back from a PNG.
func seedOf(t testing.TB, png []byte) int64 {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := img.At(0, 0).RGBA()
	return int64(r>>8) | int64(g>>8)<<8 | int64(b>>8)<<16
}

// collect runs Client.Events to the end and returns the events.
func collect(t testing.TB, c *api.Client, id string) []api.Event {
	t.Helper()
	var evs []api.Event
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Events(ctx, id, func(e api.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatalf("events of %s: %v (got %d)", id, err, len(evs))
	}
	return evs
}
