package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
	ortruntime "github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/vast"
)

// The tiny SDXL checkpoint of the golden tests and its diffusers configs.
const (
	tinyCheckpoint = "../testdata/golden/pipeline/sdxl-tiny.safetensors"
	tinyConfigs    = "../testdata/golden/pipeline/configs"
)

// hostORT says which ONNX Runtime library the engine on the loopback host
// will load and what its sshd must pass on for that. The engine runs in an
// SSH session of this user, so its HOME is the user's home from the
// password database, not the test's temporary one: the install dir of
// scripts/setup.sh (~/.local/share/pixery/lib) resolves there, as on a
// host prepared by hand. PIXERY_ORT_LIB or XDG_DATA_HOME set for the test
// run are passed on with sshd's SetEnv, so the engine uses what the other
// tests use. Call it before sshdtest.Home moves HOME.
func hostORT(t *testing.T) (env []string, lib string) {
	t.Helper()
	if p := os.Getenv(ortruntime.LibraryEnv); p != "" {
		env = append(env, ortruntime.LibraryEnv+"="+p)
		lib = p
	} else {
		data := os.Getenv("XDG_DATA_HOME")
		if data != "" {
			env = append(env, "XDG_DATA_HOME="+data)
		} else {
			u, err := user.Current()
			if err != nil {
				t.Fatal(err)
			}
			data = filepath.Join(u.HomeDir, ".local", "share")
		}
		lib = filepath.Join(data, "pixery", "lib", ortruntime.LibraryName())
	}
	for _, kv := range env {
		if strings.ContainsAny(kv, " \t\"") {
			t.Fatalf("%s: sshd's SetEnv cannot pass a value with blanks or quotes", kv)
		}
	}
	resolved, err := filepath.EvalSymlinks(lib)
	if err != nil {
		t.Fatalf("the engine on the test host needs the CPU ONNX Runtime library at %s (run scripts/setup.sh, or set %s): %v",
			lib, ortruntime.LibraryEnv, err)
	}
	return env, resolved
}

// tinyModels lays out a local models folder as a user would have it: the
// registry entry tiny.toml naming tiny.safetensors and its config folder
// tiny-configs/. It returns the folder and the model files to upload (the
// checkpoint and the config files; the registry goes as the registry).
func tinyModels(t *testing.T) (string, []deploy.ModelFile) {
	t.Helper()
	dir := t.TempDir()
	files := []deploy.ModelFile{{Path: tinyCheckpoint, Name: "tiny.safetensors"}}
	for _, sub := range []string{"unet", "vae", "text_encoder", "text_encoder_2"} {
		b, err := os.ReadFile(filepath.Join(tinyConfigs, sub, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "tiny-configs", sub, "config.json")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, deploy.ModelFile{Path: p, Name: "tiny-configs/" + sub + "/config.json"})
	}
	toml := `id = "tiny"
display_name = "Tiny SDXL"
file = "tiny.safetensors"
architecture = "sdxl"
config_dir = "tiny-configs"

[defaults]
cfg = 5.0
steps = 2
width = 192
height = 128
sampler = "euler_a"
`
	if err := os.WriteFile(filepath.Join(dir, "tiny.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// withTrailer copies the engine with bytes appended after its ELF image:
// a different file (another sha256, so Update uploads it) that runs the
// same, as a rebuilt engine would.
func withTrailer(t *testing.T, engine, trailer string) string {
	t.Helper()
	b, err := os.ReadFile(engine)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pixery-engine")
	if err := os.WriteFile(p, append(b, trailer...), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// follow collects a job's events through the tunnel until its final one.
type follow struct {
	mu     sync.Mutex
	events []api.Event
	first  chan struct{} // closed at the first step event
	done   chan error
}

func followJob(c *api.Client, id string) *follow {
	f := &follow{first: make(chan struct{}), done: make(chan error, 1)}
	var once sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // hang guard
	go func() {
		defer cancel()
		f.done <- c.Events(ctx, id, func(e api.Event) error {
			f.mu.Lock()
			f.events = append(f.events, e)
			f.mu.Unlock()
			if e.Type == api.EventStep {
				once.Do(func() { close(f.first) })
			}
			return nil
		})
	}()
	return f
}

func (f *follow) wait(t *testing.T, what string) []api.Event {
	t.Helper()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatalf("%s: events: %v", what, err)
		}
	case <-time.After(4 * time.Minute):
		t.Fatalf("%s: events never ended", what)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Event(nil), f.events...)
}

func eventTypes(es []api.Event) string {
	var s []string
	for _, e := range es {
		if len(s) == 0 || s[len(s)-1] != string(e.Type) {
			s = append(s, string(e.Type))
		}
	}
	return strings.Join(s, ",")
}

// The whole cycle with the real pixery-engine: offers → rent (fake Vast
// API, real loopback sshd) → deploy of the real engine with `setup
// --no-libs --no-models`, the tiny checkpoint uploaded as a model file →
// tunnel → health and models from the real engine → a real job through
// the tunnel, its PNG and metadata → an update that gives up on the busy
// engine and leaves it running → an update that waits for the running and
// the queued job, whose PNGs the app fetches in its grace period, and
// replaces the engine → a job on the new engine → destroy.
func TestFullCycleRealEngine(t *testing.T) {
	engine := sshdtest.RealEngine(t)
	ortEnv, ortLib := hostORT(t)
	w := newWorldOpts(t, sshdtest.Options{Env: ortEnv})
	ctx := context.Background()

	q := vast.NewOfferQuery()
	q.GPUName = "RTX 4090"
	offers, err := w.mgr.Offers(ctx, q)
	if err != nil || len(offers) == 0 {
		t.Fatalf("offers: %d, %v", len(offers), err)
	}
	tg, err := w.mgr.Rent(ctx, remote.RentOptions{OfferID: offers[0].ID, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	local, modelFiles := tinyModels(t)
	var out bytes.Buffer
	var uploaded []string
	res, err := w.mgr.Deploy(ctx, remote.DeployOptions{Engine: engine, Registry: os.DirFS(local), RegistryDir: ".",
		ModelFiles: modelFiles, SetupArgs: []string{"--no-libs", "--no-models"}, Output: &out, HealthTimeout: time.Minute,
		Progress: func(p deploy.Progress) {
			if p.Step == "verify" {
				uploaded = append(uploaded, strings.TrimPrefix(p.File, w.cfg.Layout.Root+"/"))
			}
		}})
	if err != nil {
		t.Fatalf("deploy: %v\noutput:\n%s", err, out.String())
	}
	// setup ran on the host with the extra arguments: its JSON report
	// came back, and it fetched nothing.
	if !strings.Contains(out.String(), `"models":[]`) || !strings.Contains(out.String(), `"fetched":0`) {
		t.Errorf("setup output:\n%s", out.String())
	}
	if res.Health.Version != api.Version || res.Health.Raw["provider"] != "CPU" {
		t.Fatalf("health after deploy %+v", res.Health.Raw)
	}
	wantFiles := "pixery-engine,models/tiny.safetensors,models/tiny-configs/unet/config.json,models/tiny-configs/vae/config.json," +
		"models/tiny-configs/text_encoder/config.json,models/tiny-configs/text_encoder_2/config.json,models/tiny.toml"
	if got := strings.Join(uploaded, ","); got != wantFiles {
		t.Errorf("uploaded (verified on the host) %s\nwant %s", got, wantFiles)
	}
	if len(res.ModelFiles) != 5 || strings.Join(res.Registry, ",") != "tiny.toml" {
		t.Errorf("deploy result: model files %v, registry %v", res.ModelFiles, res.Registry)
	}
	ckpt, _ := os.ReadFile(tinyCheckpoint)
	if onHost, _ := os.ReadFile(filepath.Join(w.cfg.Layout.Models(), "tiny.safetensors")); !bytes.Equal(ckpt, onHost) {
		t.Fatal("the checkpoint on the host differs")
	}
	// The engine found the library the way a hand-prepared host does.
	if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", res.PID)); err != nil || !bytes.Contains(maps, []byte(ortLib)) {
		t.Errorf("engine (pid %d) did not load %s (%v)", res.PID, ortLib, err)
	}

	// The tunnel, and the app's client through it.
	localAddr, stopTunnel := openTunnel(t, ctx, w.mgr)
	c := api.NewClient("http://"+localAddr, "")
	h, err := c.Health(ctx)
	if err != nil || h.Version != api.Version || h.Provider != "CPU" || h.Device == "" || h.Queued != 0 || h.Running != "" {
		t.Fatalf("health through the tunnel: %+v %v", h, err)
	}
	ms, err := c.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tiny *api.Model
	for i := range ms {
		if ms[i].ID == "tiny" {
			tiny = &ms[i]
		}
	}
	if tiny == nil || tiny.State != api.ModelOnDisk || tiny.Size != int64(len(ckpt)) || tiny.Defaults.Width != 192 {
		t.Fatalf("models through the tunnel: %+v", ms)
	}

	// A real job: two steps at 192×128, its PNG with the recipe.
	sub, err := c.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, (red dress:1.2)", NegativePrompt: "lowres",
		Width: 192, Height: 128, Steps: 2, Seed: 4242})
	if err != nil {
		t.Fatal(err)
	}
	evs := followJob(c, sub.ID).wait(t, "job")
	if got := eventTypes(evs); !strings.HasSuffix(got, "step,image,done") || !strings.Contains(got, "loading") {
		t.Fatalf("job events %s", got)
	}
	raw, err := c.Image(ctx, sub.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil || img.Bounds().Dx() != 192 || img.Bounds().Dy() != 128 {
		t.Fatalf("image: %v %v", err, img)
	}
	md, err := pngmeta.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	wantHash, err := pngmeta.ModelHash(tinyCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	r := md.Recipe
	if r == nil || r.Model != "tiny" || r.Seed != 4242 || r.Steps != 2 || r.Width != 192 || r.ModelHash != wantHash ||
		r.Prompt != "1girl, (red dress:1.2)" || !strings.Contains(md.Parameters, "Size: 192x128") {
		t.Fatalf("metadata: recipe %+v\nparameters %q", r, md.Parameters)
	}

	// Update while a job runs and another waits. The engine is held
	// (SIGSTOP) from the long job's first step until the update asks it
	// whether it is busy, so that the update surely meets both jobs, as
	// it would on a busy host (the long job takes a few seconds here,
	// about as long as the upload before the wait).
	long, err := c.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "long", Width: 192, Height: 128, Steps: 150, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := c.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "queued", Width: 192, Height: 128, Steps: 2, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	longF, queuedF := followJob(c, long.ID), followJob(c, queued.ID)
	select {
	case <-longF.first:
	case <-time.After(2 * time.Minute):
		t.Fatal("the long job never started")
	}
	oldPID := res.PID
	held := false
	hold := func() {
		if err := syscall.Kill(oldPID, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		held = true
	}
	release := func() {
		if held {
			held = false
			syscall.Kill(oldPID, syscall.SIGCONT)
		}
	}
	defer release()
	v2 := withTrailer(t, engine, "\x00pixery-test-update")

	// First with no time to wait: the update gives up at once, and the
	// old engine goes on with both jobs.
	hold()
	_, err = w.mgr.Update(ctx, remote.DeployOptions{Engine: v2, SkipSetup: true, Output: io.Discard, WaitTimeout: time.Millisecond,
		Progress: func(p deploy.Progress) {
			if p.Step == "wait" {
				release()
			}
		}})
	if !errors.Is(err, deploy.ErrBusy) || !strings.Contains(err.Error(), "1 queued job and a running one ("+long.ID+")") {
		t.Fatalf("update of a busy engine: %v", err)
	}
	h, err = c.Health(ctx)
	if err != nil || h.Running != long.ID || h.Queued != 1 {
		t.Fatalf("health after the update gave up: %+v %v", h, err)
	}
	hold()
	if pid, err := os.ReadFile(w.cfg.Layout.PID()); err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(oldPID) {
		t.Fatalf("pid file after the update gave up: %q %v (engine pid %d)", pid, err, oldPID)
	}
	if !bytes.Equal(mustRead(t, w.cfg.Layout.Engine()), mustRead(t, engine)) {
		t.Fatal("the update that gave up replaced the engine binary")
	}

	// Now with time: the update waits for both jobs; in its grace period
	// the app fetches their images through the tunnel; then the engine
	// is replaced.
	var (
		waits   []deploy.Progress
		fetched = map[string][]byte{}
		graces  int
	)
	res2, err := w.mgr.Update(ctx, remote.DeployOptions{Engine: v2, SetupArgs: []string{"--no-libs", "--no-models"}, Output: io.Discard,
		HealthTimeout: time.Minute, WaitTimeout: 3 * time.Minute, Grace: time.Second, PollInterval: 100 * time.Millisecond,
		Progress: func(p deploy.Progress) {
			switch p.Step {
			case "wait":
				release()
				waits = append(waits, p)
			case "grace":
				graces++
				for _, id := range []string{long.ID, queued.ID} {
					if _, ok := fetched[id]; ok {
						continue
					}
					raw, err := c.Image(ctx, id, 0)
					if err != nil {
						t.Errorf("image of job %s during the grace period: %v", id, err)
						continue
					}
					fetched[id] = raw
				}
			}
		}})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	sum := sha256.Sum256(append(append([]byte(nil), mustRead(t, engine)...), "\x00pixery-test-update"...))
	if res2.PID == oldPID || !res2.Swapped || res2.Engine.SHA256 != hex.EncodeToString(sum[:]) || res2.Health.Version != api.Version ||
		res2.Health.Provider != "CPU" {
		t.Fatalf("update result: pid %d (old %d), swapped %v, engine %+v, health %+v", res2.PID, oldPID, res2.Swapped, res2.Engine, res2.Health)
	}
	if !bytes.Equal(mustRead(t, w.cfg.Layout.Engine()), mustRead(t, v2)) {
		t.Fatal("the engine binary on the host is not the new one")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", oldPID)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", oldPID)); !bytes.Contains(st, []byte(") Z ")) {
			t.Errorf("the old engine (pid %d) still runs", oldPID)
		}
	}
	// The update met the engine busy and said with what.
	busy := 0
	for _, p := range waits {
		if p.Running != "" {
			busy++
			if (p.Running == long.ID && p.Queued == 1 && p.Message != "waiting for 1 queued job and the running one to finish") ||
				(p.Running == queued.ID && p.Queued == 0 && p.Message != "waiting for the running job to finish") ||
				(p.Running != long.ID && p.Running != queued.ID) {
				t.Errorf("wait report %+v", p)
			}
		}
	}
	var said []string
	for _, p := range waits {
		if len(said) == 0 || said[len(said)-1] != p.Message {
			said = append(said, p.Message)
		}
	}
	t.Logf("the update said: %q, %d grace period(s)", said, graces)
	if busy == 0 || graces == 0 {
		t.Errorf("the update never waited: %d busy reports of %d, %d grace periods", busy, len(waits), graces)
	}
	for _, j := range []struct {
		f     *follow
		id    string
		steps int
		seed  int64
	}{{longF, long.ID, 150, 1}, {queuedF, queued.ID, 2, 2}} {
		evs := j.f.wait(t, "job "+j.id)
		steps := 0
		for _, e := range evs {
			if e.Type == api.EventStep {
				steps = e.Step
			}
		}
		if last := evs[len(evs)-1]; last.Type != api.EventDone || steps != j.steps {
			t.Fatalf("job %s did not finish across the update: %s, last step %d", j.id, eventTypes(evs), steps)
		}
		img, err := png.Decode(bytes.NewReader(fetched[j.id]))
		if err != nil || img.Bounds().Dx() != 192 || img.Bounds().Dy() != 128 {
			t.Fatalf("image of job %s fetched during the grace period: %v", j.id, err)
		}
		if md, err := pngmeta.Decode(bytes.NewReader(fetched[j.id])); err != nil || md.Recipe == nil || md.Recipe.Seed != j.seed || md.Recipe.Steps != j.steps {
			t.Fatalf("metadata of job %s: %+v %v", j.id, md, err)
		}
	}
	logs := bytes.Buffer{}
	if err := w.mgr.Logs(ctx, "", &logs, 200, false); err != nil {
		t.Fatal(err)
	}
	if strings.Count(logs.String(), "shutting down: no new jobs") != 1 ||
		strings.Count(logs.String(), `"listening":"`+w.cfg.Layout.Addr()+`"`) != 2 {
		t.Errorf("engine log:\n%s", logs.String())
	}
	// The new engine, through the same tunnel (it never went down: each
	// request opens its own channel).
	h, err = c.Health(ctx)
	if err != nil || h.Queued != 0 || h.Running != "" {
		t.Fatalf("health after the update: %+v %v", h, err)
	}
	sub, err = c.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "after", Width: 192, Height: 128, Steps: 1, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if evs := followJob(c, sub.ID).wait(t, "job after the update"); evs[len(evs)-1].Type != api.EventDone {
		t.Fatalf("job after the update: %s", eventTypes(evs))
	}
	if raw, err := c.Image(ctx, sub.ID, 0); err != nil || !bytes.HasPrefix(raw, []byte("\x89PNG")) {
		t.Fatalf("image after the update: %v", err)
	}
	st, err := w.mgr.Status(ctx, "")
	if err != nil || !st.EngineRunning || st.EnginePID != res2.PID || st.Health == nil {
		t.Fatalf("status %+v %v", st, err)
	}

	if err := stopTunnel(); err != nil {
		t.Fatal(err)
	}
	// Destroy ends the instance on Vast — the container and the engine in
	// it with it. (The fake cannot tear down the loopback host; the test's
	// cleanup ends the engine.)
	if err := w.mgr.Destroy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if !w.fake.Destroyed(tg.InstanceID) {
		t.Fatal("instance not destroyed")
	}
	if s, _ := w.mgr.State(); len(s.Targets) != 0 || s.Current != "" {
		t.Fatalf("state after destroy %+v", s)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
