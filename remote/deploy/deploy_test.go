package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/internal/syncio"
	"github.com/pixery/pixery/models"
	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sshdtest.CleanupBuilds()
	os.Exit(code)
}

// env is one test's sshd, connection and layout.
type env struct {
	t      *testing.T // the test that owns the connections
	srv    *sshdtest.Server
	key    sshdtest.Key
	client *sshx.Client
	host   *deploy.Host
	layout deploy.Layout
}

func setup(t *testing.T, opt sshdtest.Options) *env {
	t.Helper()
	home := sshdtest.Home(t)
	e := &env{t: t, srv: sshdtest.Start(t, opt)}
	e.key = sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	e.srv.Authorize(e.key.Public)
	e.layout = deploy.Layout{Root: filepath.Join(t.TempDir(), "workspace", "pixery"), Port: sshdtest.FreePort(t)}
	e.connect(t)
	t.Cleanup(func() { killEngine(e.layout) })
	return e
}

func (e *env) connect(t *testing.T) {
	t.Helper()
	c, err := sshx.Dial(context.Background(), sshx.Target{User: e.srv.User, Host: e.srv.Host, Port: e.srv.Port},
		sshx.Options{ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { return true, nil }})
	if err != nil {
		t.Fatal(err)
	}
	h, err := deploy.Open(c.Client, e.layout)
	if err != nil {
		t.Fatal(err)
	}
	e.client, e.host = c, h
	e.t.Cleanup(func() { h.Close(); c.Close() })
}

// killEngine ends a stand-in engine a test left running (it is detached
// from sshd, so stopping sshd does not end it).
func killEngine(l deploy.Layout) {
	b, err := os.ReadFile(l.PID())
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmd, []byte("pixery-engine")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func registryFS() (fstest.MapFS, string) {
	return fstest.MapFS{
		"reg/pony.toml":    {Data: mustReadFS("pony.toml")},
		"reg/noobai.toml":  {Data: mustReadFS("noobai.toml")},
		"reg/README.md":    {Data: []byte("not a registry file")},
		"reg/.hidden.toml": {Data: []byte("ignored = ")},
	}, "reg"
}

func mustReadFS(name string) []byte {
	b, err := models.FS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

func logText(t *testing.T, l deploy.Layout) string {
	t.Helper()
	b, err := os.ReadFile(l.Log())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDeployDetachedStartLogsUpdate(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1 := sshdtest.StandInEngine(t, "v1")
	reg, dir := registryFS()
	var setupOut bytes.Buffer
	var steps []string
	var uploads int
	token := "tok-" + hex.EncodeToString(randBytes(t, 12))
	res, err := e.host.Deploy(ctx, deploy.Options{
		Engine: v1, Registry: reg, RegistryDir: dir, Token: token, Output: &setupOut,
		Progress: func(p deploy.Progress) {
			if len(steps) == 0 || steps[len(steps)-1] != p.Step {
				steps = append(steps, p.Step)
			}
			if p.Step == "upload" {
				uploads++
			}
		},
		HealthTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("deploy: %v\nsetup output:\n%s", err, setupOut.String())
	}
	if res.Health.Version != "v1" || res.Health.Provider != "CPU" || res.Health.Device != "CPU" || !res.Health.Idle() {
		t.Fatalf("health %+v", res.Health)
	}
	if got := strings.Join(steps, ","); !strings.HasPrefix(got, "upload,verify") || !strings.HasSuffix(got, "setup,stop,start,health") {
		t.Errorf("steps %s", got)
	}
	// The engine is byte-identical on the host and executable.
	want, _ := os.ReadFile(v1)
	got, _ := os.ReadFile(e.layout.Engine())
	if !bytes.Equal(want, got) {
		t.Fatal("engine on the host differs")
	}
	if st, _ := os.Stat(e.layout.Engine()); st.Mode().Perm() != 0o755 {
		t.Errorf("engine mode %v", st.Mode())
	}
	sum := sha256.Sum256(want)
	if res.Engine.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("reported sha256 %s", res.Engine.SHA256)
	}
	// Registry: the TOMLs, nothing else.
	if strings.Join(res.Registry, ",") != "noobai.toml,pony.toml" {
		t.Errorf("registry uploaded %v", res.Registry)
	}
	if b, _ := os.ReadFile(filepath.Join(e.layout.Models(), "pony.toml")); !bytes.Equal(b, mustReadFS("pony.toml")) {
		t.Error("pony.toml differs on the host")
	}
	if _, err := os.Stat(filepath.Join(e.layout.Models(), "README.md")); err == nil {
		t.Error("a non-TOML file was uploaded")
	}
	// setup ran on the host and its output came back.
	if !strings.Contains(setupOut.String(), "setup: onnxruntime-gpu 100%") || !strings.Contains(setupOut.String(), "registry entry pony.toml ok") {
		t.Errorf("setup output:\n%s", setupOut.String())
	}
	// The token: a 0600 file, in the engine's environment, not in argv.
	if st, err := os.Stat(e.layout.TokenFile()); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", st, err)
	}
	tokSum := sha256.Sum256([]byte(token))
	if res.Health.Raw["token_sha256"] != hex.EncodeToString(tokSum[:]) {
		t.Errorf("engine did not get the token: %v", res.Health.Raw["token_sha256"])
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", res.PID))
	if bytes.Contains(cmdline, []byte(token)) || !bytes.Contains(cmdline, []byte("serve")) {
		t.Errorf("engine argv %q", cmdline)
	}
	if pidFile, _ := os.ReadFile(e.layout.PID()); strings.TrimSpace(string(pidFile)) != strconv.Itoa(res.PID) {
		t.Errorf("pid file %q, pid %d", pidFile, res.PID)
	}
	if float64(res.PID) != res.Health.Raw["pid"] {
		t.Errorf("pid %d but the engine says %v", res.PID, res.Health.Raw["pid"])
	}
	// The engine wants the token on every request (Health found it in the
	// token file on the host); without it the answer is 401.
	resp, err := http.Get("http://" + e.layout.Addr() + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("health without the token: HTTP %d", resp.StatusCode)
	}

	// Detached: the engine outlives the SSH connection and sshd itself.
	e.client.Close()
	e.srv.Kill()
	if err := e.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	e.connect(t)
	pid, ok, err := e.host.Running(ctx)
	if err != nil || !ok || pid != res.PID {
		t.Fatalf("after the session ended: pid %d running %v err %v", pid, ok, err)
	}
	if h, err := e.host.Health(ctx); err != nil || h.Version != "v1" {
		t.Fatalf("health after reconnect: %+v %v", h, err)
	}

	// Logs, and following them.
	var logs bytes.Buffer
	if err := e.host.Logs(ctx, &logs, 50, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "engine v1 serving on "+e.layout.Addr()) {
		t.Fatalf("logs:\n%s", logs.String())
	}
	fctx, cancel := context.WithCancel(ctx)
	fw := &syncio.Buffer{}
	done := make(chan error, 1)
	go func() { done <- e.host.Logs(fctx, fw, 5, true) }()
	submitJob(t, e.host, 0)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(fw.String(), "job 1 done") }, "followed log shows the new line")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v", err)
	}

	// Update: a running job finishes before the old engine exits, then v2 starts.
	submitJob(t, e.host, 700)
	v2 := sshdtest.StandInEngine(t, "v2")
	start := time.Now()
	res2, err := e.host.Update(ctx, deploy.Options{Engine: v2, SkipSetup: true, HealthTimeout: 20 * time.Second,
		Grace: 100 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Health.Version != "v2" || res2.PID == res.PID || !res2.Swapped {
		t.Fatalf("after update: %+v pid %d (old %d), swapped %v", res2.Health, res2.PID, res.PID, res2.Swapped)
	}
	if res2.Health.Raw["token_sha256"] != hex.EncodeToString(tokSum[:]) {
		t.Errorf("the new engine did not get the token: %v", res2.Health.Raw["token_sha256"])
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", res.PID)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", res.PID)); !bytes.Contains(st, []byte(") Z ")) {
			t.Fatalf("old engine %d still alive", res.PID)
		}
	}
	log := logText(t, e.layout)
	iJob, iStop, iV2 := strings.Index(log, "job 2 done"), strings.Index(log, "\nstopped"), strings.Index(log, "engine v2 serving")
	if iJob < 0 || iStop < iJob || iV2 < iStop {
		t.Fatalf("update was not graceful (job %d, stopped %d, v2 %d):\n%s", iJob, iStop, iV2, log)
	}
	t.Logf("update with a 700 ms job running took %v", time.Since(start))

	// Deploying the same binary again sends nothing.
	res3, err := e.host.Deploy(ctx, deploy.Options{Engine: v2, SkipSetup: true, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res3.Engine.Skipped || res3.Engine.Sent != 0 {
		t.Errorf("unchanged engine re-sent: %+v", res3.Engine)
	}
	if err := e.host.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := e.host.Health(ctx); !errors.Is(err, deploy.ErrEngineDown) {
		t.Fatalf("health after stop: %v", err)
	}
	if _, ok, _ := e.host.Running(ctx); ok {
		t.Fatal("still running after stop")
	}
}

func submitJob(t *testing.T, h *deploy.Host, ms int) string {
	t.Helper()
	return submit(t, h, "ms="+strconv.Itoa(ms))
}

// submit posts a stand-in job (query: ms=N, hold=PATH) and returns its id.
func submit(t *testing.T, h *deploy.Host, query string) string {
	t.Helper()
	resp, err := h.HTTPClient().Post("http://engine/v1/jobs?"+query, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sub struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sub); err != nil || resp.StatusCode != http.StatusAccepted || sub.ID == "" {
		t.Fatalf("job: HTTP %d, %+v %v", resp.StatusCode, sub, err)
	}
	return sub.ID
}

// holds makes hold files for stand-in jobs: a job submitted with
// hold=h.path(name) runs until h.release(name).
type holds string

// newHolds makes a folder for hold files. A hang guard releases every
// job after 90 s, so that a broken wait fails the test instead of
// hanging it.
func newHolds(t *testing.T) holds {
	h := holds(t.TempDir())
	guard := time.AfterFunc(90*time.Second, func() {
		t.Errorf("hang guard: releasing the held jobs after 90 s")
		for _, name := range []string{"a", "b", "c"} {
			os.WriteFile(h.path(name), nil, 0o644)
		}
	})
	t.Cleanup(func() { guard.Stop() })
	return h
}

func (h holds) path(name string) string { return filepath.Join(string(h), name) }

func (h holds) release(t *testing.T, name string) {
	if err := os.WriteFile(h.path(name), nil, 0o644); err != nil {
		t.Error(err)
	}
}

// inOrder says whether each of subs occurs in s after the one before.
func inOrder(s string, subs ...string) bool {
	at := 0
	for _, sub := range subs {
		i := strings.Index(s[at:], sub)
		if i < 0 {
			return false
		}
		at += i + len(sub)
	}
	return true
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Update waits until the engine is idle — the running job, the queued
// ones and one that comes in during the grace period — then stops it and
// swaps the binaries; the old binary stays in place while it waits, and
// setup runs with the new one.
func TestUpdateWaitsForQueuedJobs(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1, v2 := sshdtest.StandInEngine(t, "v1"), sshdtest.StandInEngine(t, "v2")
	res, err := e.host.Deploy(ctx, deploy.Options{Engine: v1, SkipSetup: true, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hold := newHolds(t)
	j1 := submit(t, e.host, "hold="+hold.path("a"))
	j2 := submit(t, e.host, "hold="+hold.path("b"))
	j3 := submit(t, e.host, "ms=0")
	var (
		waits     []string
		graces    int
		j4        string
		misplaced bool // a binary was not where it belongs during the wait
	)
	var out bytes.Buffer
	res2, err := e.host.Update(ctx, deploy.Options{Engine: v2, Output: &out, HealthTimeout: 20 * time.Second,
		Grace: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Progress: func(p deploy.Progress) {
			switch p.Step {
			case "wait":
				if len(waits) == 0 || waits[len(waits)-1] != p.Message {
					waits = append(waits, p.Message)
				}
				if !sameBytes(t, e.layout.Engine(), v1) || !sameBytes(t, e.layout.EngineNext(), v2) {
					misplaced = true
				}
				switch {
				case p.Running == "":
				case p.Running == j1:
					hold.release(t, "a")
				case p.Running == j2:
					hold.release(t, "b")
				case p.Running == j4:
					hold.release(t, "c")
				}
			case "grace":
				graces++
				if j4 == "" {
					// A client submits a job while the update waits.
					j4 = submit(t, e.host, "hold="+hold.path("c"))
				}
			}
		}})
	if err != nil {
		t.Fatalf("update: %v\n%s", err, out.String())
	}
	want := []string{"asking the engine whether it has jobs", "waiting for 2 queued jobs and the running one to finish",
		"waiting for 1 queued job and the running one to finish"}
	if len(waits) < 3 || !reflect.DeepEqual(waits[:3], want) {
		t.Errorf("wait reports %q\nwant first %q", waits, want)
	}
	if graces != 2 || misplaced {
		t.Errorf("%d grace periods (want 2: before and after job %s), binaries misplaced while waiting: %v", graces, j4, misplaced)
	}
	if res2.Health.Version != "v2" || res2.PID == res.PID || !res2.Swapped || res2.Engine.Skipped {
		t.Fatalf("after update: %+v pid %d (old %d), %+v", res2.Health, res2.PID, res.PID, res2)
	}
	if !sameBytes(t, e.layout.Engine(), v2) {
		t.Error("the engine on the host is not v2")
	}
	if _, err := os.Stat(e.layout.EngineNext()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", e.layout.EngineNext(), err)
	}
	// setup ran with the new binary, before the wait.
	if b, _ := os.ReadFile(filepath.Join(e.layout.Models(), ".setup-done")); string(b) != "v2\n" {
		t.Errorf("setup marker %q, want the new engine's", b)
	}
	log := logText(t, e.layout)
	if !inOrder(log, "job "+j1+" done", "job "+j2+" done", "job "+j3+" done", "job "+j4+" done", "SIGTERM", "\nstopped", "engine v2 serving") ||
		strings.Contains(log, "cancelled") {
		t.Fatalf("jobs did not all finish before the stop:\n%s", log)
	}
}

// A busy engine at the end of the wait: Update fails with ErrBusy and
// leaves it running, untouched; with Force it restarts it anyway (the
// running job finishes, the queued one is cancelled, as on SIGTERM).
func TestUpdateTimeoutAndForce(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1, v2 := sshdtest.StandInEngine(t, "v1"), sshdtest.StandInEngine(t, "v2")
	res, err := e.host.Deploy(ctx, deploy.Options{Engine: v1, SkipSetup: true, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hold := newHolds(t)
	j1 := submit(t, e.host, "hold="+hold.path("a"))
	var waits []string
	opts := deploy.Options{Engine: v2, SkipSetup: true, HealthTimeout: 20 * time.Second, WaitTimeout: 300 * time.Millisecond,
		Grace: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Progress: func(p deploy.Progress) {
			if p.Step == "wait" {
				waits = append(waits, p.Message)
			}
		}}
	_, err = e.host.Update(ctx, opts)
	if !errors.Is(err, deploy.ErrBusy) || !strings.Contains(err.Error(), "it is running job "+j1) ||
		!strings.Contains(err.Error(), "no job was touched") || !strings.Contains(err.Error(), e.layout.EngineNext()) {
		t.Fatalf("update of a busy engine: %v", err)
	}
	t.Logf("%v", err)
	if len(waits) < 2 || waits[1] != "waiting for the running job to finish" {
		t.Errorf("wait reports %q", waits)
	}
	// The old engine serves on, with its job, and its binary in place.
	check := func() {
		t.Helper()
		pid, ok, err := e.host.Running(ctx)
		h, herr := e.host.Health(ctx)
		if err != nil || !ok || pid != res.PID || herr != nil || h.Version != "v1" || h.Running != j1 {
			t.Fatalf("after the failed update: pid %d (was %d) %v %v, health %+v %v", pid, res.PID, ok, err, h, herr)
		}
		if !sameBytes(t, e.layout.Engine(), v1) || !sameBytes(t, e.layout.EngineNext(), v2) {
			t.Fatal("binaries on the host: want v1 in place and v2 beside it")
		}
	}
	check()
	// A negative wait does not wait: busy now is busy.
	opts.WaitTimeout = -1
	if _, err := e.host.Update(ctx, opts); !errors.Is(err, deploy.ErrBusy) {
		t.Fatalf("update without waiting: %v", err)
	}
	check()
	hold.release(t, "a")
	waitFor(t, 60*time.Second, func() bool { return strings.Contains(logText(t, e.layout), "job "+j1+" done") }, "job 1 to finish")

	// Force: a running job (held until the engine got SIGTERM) and a
	// queued one.
	j2 := submit(t, e.host, "hold="+hold.path("b"))
	j3 := submit(t, e.host, "ms=0")
	sigterm := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(e.layout.Log()); bytes.Contains(b, []byte("SIGTERM")) {
				sigterm <- os.WriteFile(hold.path("b"), nil, 0o644)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		sigterm <- errors.New("the engine never got SIGTERM")
		os.WriteFile(hold.path("b"), nil, 0o644)
	}()
	waits = nil
	opts.WaitTimeout, opts.Force = 200*time.Millisecond, true
	res2, err := e.host.Update(ctx, opts)
	if err != nil {
		t.Fatalf("forced update: %v", err)
	}
	if err := <-sigterm; err != nil {
		t.Fatal(err)
	}
	// The staged binary of the failed updates was used; nothing was sent again.
	if res2.Health.Version != "v2" || res2.PID == res.PID || !res2.Swapped || !res2.Engine.Skipped || res2.Engine.Sent != 0 {
		t.Fatalf("after the forced update: %+v pid %d, %+v %+v", res2.Health, res2.PID, res2, res2.Engine)
	}
	if last := waits[len(waits)-1]; !strings.Contains(last, "restarting anyway") || !strings.Contains(last, "1 queued job and a running one ("+j2+")") {
		t.Errorf("last wait report %q", last)
	}
	log := logText(t, e.layout)
	if !inOrder(log, "SIGTERM", "job "+j3+" cancelled: shutting down", "job "+j2+" done", "\nstopped", "engine v2 serving") {
		t.Fatalf("forced restart:\n%s", log)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResumeUpload(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	if err := os.MkdirAll(e.layout.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	data := randBytes(t, 12<<20)
	src := bytes.NewReader(data)
	dst := filepath.Join(e.layout.Root, "blob")
	check := func() {
		t.Helper()
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("final file wrong (%v)", err)
		}
		if _, err := os.Stat(dst + ".part"); err == nil {
			t.Fatal(".part left behind")
		}
	}

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		_, err := e.host.Upload(cctx, src, dst, 0o644, func(p deploy.Progress) {
			if p.Done >= 4<<20 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "resume") {
			t.Fatalf("interrupted upload: %v", err)
		}
		st, err := os.Stat(dst + ".part")
		if err != nil || st.Size() < 4<<20 || st.Size() >= int64(len(data)) {
			t.Fatalf("partial file %v %v", st, err)
		}
		var first int64 = -1
		res, err := e.host.Upload(ctx, src, dst, 0o644, func(p deploy.Progress) {
			if first < 0 {
				first = p.Done
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Resumed != st.Size() || res.Sent != int64(len(data))-st.Size() || first != st.Size() {
			t.Fatalf("resume: %+v, progress began at %d, partial was %d", res, first, st.Size())
		}
		t.Logf("resumed at %d of %d bytes, sent %d", res.Resumed, len(data), res.Sent)
		check()
	})

	t.Run("connection dropped", func(t *testing.T) {
		_ = os.Remove(dst)
		var once sync.Once
		_, err := e.host.Upload(ctx, src, dst, 0o644, func(p deploy.Progress) {
			if p.Done >= 5<<20 {
				once.Do(e.srv.Kill)
			}
		})
		if err == nil {
			t.Fatal("upload survived sshd being killed")
		}
		t.Logf("dropped: %v", err)
		if err := e.srv.Restart(); err != nil {
			t.Fatal(err)
		}
		e.connect(t)
		st, _ := os.Stat(dst + ".part")
		res, err := e.host.Upload(ctx, src, dst, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st == nil || res.Resumed == 0 || res.Resumed != st.Size() {
			t.Fatalf("did not resume: %+v (partial %v)", res, st)
		}
		check()
	})

	t.Run("bad partial restarts", func(t *testing.T) {
		_ = os.Remove(dst)
		bad := append([]byte(nil), data[:5<<20]...)
		bad[3<<20] ^= 0xff // a hole or garbage inside the kept prefix
		if err := os.WriteFile(dst+".part", bad, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := e.host.Upload(ctx, src, dst, 0o644, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Resumed != 0 || res.Sent != int64(len(data)) {
			t.Fatalf("kept a bad prefix: %+v", res)
		}
		check()
		// A .part longer than the file is not kept either.
		_ = os.Remove(dst)
		if err := os.WriteFile(dst+".part", append(append([]byte(nil), data...), 1, 2, 3), 0o644); err != nil {
			t.Fatal(err)
		}
		if res, err = e.host.Upload(ctx, src, dst, 0o644, nil); err != nil || res.Resumed != 0 {
			t.Fatalf("oversized partial: %+v %v", res, err)
		}
		check()
	})
}

// elfHeader makes a minimal 64-byte little-endian ELF64 header.
func elfHeader(class elf.Class, machine elf.Machine, osabi elf.OSABI, typ elf.Type, entry uint64) []byte {
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION], h[elf.EI_OSABI] = byte(class), byte(elf.ELFDATA2LSB), 1, byte(osabi)
	le := binary.LittleEndian
	le.PutUint16(h[16:], uint16(typ))
	le.PutUint16(h[18:], uint16(machine))
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[24:], entry)
	le.PutUint16(h[52:], 64) // ehsize
	le.PutUint16(h[54:], 56) // phentsize
	le.PutUint16(h[58:], 64) // shentsize
	return h
}

func TestBadInputsStopBeforeUpload(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1 := sshdtest.StandInEngine(t, "v1")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, dirName := registryFS()
	for _, tc := range []struct {
		name   string
		engine string
		reg    fstest.MapFS
		want   []string
	}{
		{"text file", write("notes.txt", []byte("hello, this is not a program\n")), nil, []string{"not an ELF file"}},
		{"windows exe", write("engine.exe", append([]byte("MZ\x90\x00"), make([]byte, 200)...)), nil, []string{"Windows executable"}},
		{"macos exe", write("engine-mac", append([]byte{0xcf, 0xfa, 0xed, 0xfe}, make([]byte, 200)...)), nil, []string{"macOS executable"}},
		{"script", write("engine.sh", []byte("#!/bin/sh\necho hi\n")), nil, []string{"a script"}},
		{"arm64", write("engine-arm64", elfHeader(elf.ELFCLASS64, elf.EM_AARCH64, elf.ELFOSABI_NONE, elf.ET_EXEC, 0x400000)), nil, []string{"arm64", "x86-64"}},
		{"386", write("engine-386", elfHeader(elf.ELFCLASS64, elf.EM_386, elf.ELFOSABI_NONE, elf.ET_EXEC, 0x400000)), nil, []string{"386"}},
		{"freebsd", write("engine-bsd", elfHeader(elf.ELFCLASS64, elf.EM_X86_64, elf.ELFOSABI_FREEBSD, elf.ET_EXEC, 0x400000)), nil, []string{"FREEBSD", "GOOS=linux"}},
		{"object file", write("engine.o", elfHeader(elf.ELFCLASS64, elf.EM_X86_64, elf.ELFOSABI_NONE, elf.ET_REL, 0)), nil, []string{"ET_REL", "not an executable"}},
		{"shared library", write("engine.so", elfHeader(elf.ELFCLASS64, elf.EM_X86_64, elf.ELFOSABI_NONE, elf.ET_DYN, 0)), nil, []string{"ET_DYN"}},
		{"empty", write("empty", nil), nil, []string{"too short"}},
		{"missing", filepath.Join(dir, "nope"), nil, []string{"no such file"}},
		{"registry syntax error", v1, fstest.MapFS{"reg/pony.toml": good["reg/pony.toml"],
			"reg/broken.toml": {Data: []byte("id = \"broken\"\ndisplay_name = \"x\nfile = \"a.safetensors\"\n")}},
			[]string{"broken.toml:2", "nothing was uploaded"}},
		{"registry invalid entry", v1, fstest.MapFS{"reg/bad.toml": {Data: []byte("id = \"Bad Id!\"\n")}}, []string{"bad.toml", "model registry has errors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := tc.reg
			if reg == nil {
				reg = good
			}
			_, err := e.host.Deploy(ctx, deploy.Options{Engine: tc.engine, Registry: reg, RegistryDir: dirName})
			if err == nil {
				t.Fatal("deploy accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if tc.reg == nil && tc.name != "missing" && !errors.Is(err, deploy.ErrNotEngineBinary) {
				t.Errorf("not ErrNotEngineBinary: %v", err)
			}
			if _, serr := os.Stat(e.layout.Root); serr == nil {
				t.Fatalf("something reached the host before the check failed")
			}
			t.Logf("%v", err)
		})
	}
}

func TestSetupFailureAndCrashOnStart(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1 := sshdtest.StandInEngine(t, "v1")
	if err := os.MkdirAll(e.layout.Models(), 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(e.layout.Models(), "FAIL_SETUP")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err := e.host.Deploy(ctx, deploy.Options{Engine: v1, Output: &out})
	var ee *deploy.ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || !strings.Contains(err.Error(), "download of onnxruntime failed") {
		t.Fatalf("setup failure: %v", err)
	}
	if !strings.Contains(out.String(), "download of onnxruntime failed") {
		t.Errorf("setup stderr not streamed: %q", out.String())
	}
	os.Remove(marker)
	// The engine's port is taken: it exits at once, and the error shows its log.
	l, err := net.Listen("tcp", e.layout.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = e.host.Deploy(ctx, deploy.Options{Engine: v1, SkipSetup: true, HealthTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("crash on start: %v", err)
	}
	t.Logf("%v", err)
}

// tmpfsRoot mounts a small tmpfs for the layout root; false when this
// machine does not allow mounting.
func tmpfsRoot(t *testing.T, size string) (string, bool) {
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("cannot mount a tmpfs here (%v: %s); using the quota SFTP server instead", err, bytes.TrimSpace(out))
		return "", false
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir, true
}

// Disk full on the host. Where a tmpfs can be mounted (root in CI and
// here), the host folder is a real 2 MiB tmpfs and OpenSSH's sftp-server
// writes into it; otherwise the sshd runs quotasftp as its SFTP subsystem,
// which reports little free space and fails writes with ENOSPC.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	v1 := sshdtest.StandInEngine(t, "v1")
	st, _ := os.Stat(v1)

	t.Run("checked before upload", func(t *testing.T) {
		root, mounted := tmpfsRoot(t, "2m")
		opt := sshdtest.Options{}
		if !mounted {
			opt.Subsystem = sshdtest.QuotaSFTP(t) + " -statvfs-free 2097152"
			root = "/pixery-quota"
		}
		e := setup(t, opt)
		e.layout.Root = filepath.Join(root, "pixery")
		e.connect(t)
		_, err := e.host.Deploy(ctx, deploy.Options{Engine: v1})
		if !errors.Is(err, deploy.ErrDiskFull) || !strings.Contains(err.Error(), "disk is full") {
			t.Fatalf("deploy to a full disk: %v", err)
		}
		var df *deploy.DiskFullError
		if !errors.As(err, &df) || df.Need != st.Size() || df.Free > 2<<20 {
			t.Fatalf("details %+v", df)
		}
		t.Logf("%v", err)
	})

	t.Run("fills during upload", func(t *testing.T) {
		root, mounted := tmpfsRoot(t, "12m")
		opt := sshdtest.Options{}
		if !mounted {
			opt.Subsystem = sshdtest.QuotaSFTP(t) + " -quota 3145728"
			root = "/pixery-quota"
		}
		e := setup(t, opt)
		e.layout.Root = filepath.Join(root, "pixery")
		e.connect(t)
		if err := e.host.SFTP().MkdirAll(e.layout.Root); err != nil {
			t.Fatal(err)
		}
		data := randBytes(t, 8<<20)
		var once sync.Once
		_, err := e.host.Upload(ctx, bytes.NewReader(data), filepath.Join(e.layout.Root, "blob"), 0o644, func(p deploy.Progress) {
			if mounted && p.Done >= 1<<20 {
				// Something else on the host takes the rest of the disk.
				once.Do(func() {
					f, _ := os.Create(filepath.Join(root, "filler"))
					_, _ = f.Write(make([]byte, 12<<20))
					f.Close()
				})
			}
		})
		if !errors.Is(err, deploy.ErrDiskFull) {
			t.Fatalf("upload onto a disk filling up: %v", err)
		}
		t.Logf("%v", err)
	})
}

// Deploying again onto a host whose engine is busy is an update: the
// running and queued jobs finish before the restart.
func TestDeployAgainWaitsForJobs(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1, v2 := sshdtest.StandInEngine(t, "v1"), sshdtest.StandInEngine(t, "v2")
	res, err := e.host.Deploy(ctx, deploy.Options{Engine: v1, SkipSetup: true, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hold := newHolds(t)
	j1 := submit(t, e.host, "hold="+hold.path("a"))
	j2 := submit(t, e.host, "ms=0")
	waited := false
	var out bytes.Buffer
	res2, err := e.host.Deploy(ctx, deploy.Options{Engine: v2, SkipSetup: true, Output: &out, HealthTimeout: 20 * time.Second,
		Grace: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Progress: func(p deploy.Progress) {
			if p.Step == "wait" && p.Running == j1 {
				waited = true
				hold.release(t, "a")
			}
		}})
	if err != nil {
		t.Fatalf("deploy again: %v\n%s", err, out.String())
	}
	if !waited || res2.Health.Version != "v2" || res2.PID == res.PID {
		t.Fatalf("waited for the running job: %v; after the deploy %+v pid %d (old %d)", waited, res2.Health, res2.PID, res.PID)
	}
	log := logText(t, e.layout)
	if !inOrder(log, "job "+j1+" done", "job "+j2+" done", "SIGTERM", "engine v2 serving") || strings.Contains(log, "cancelled") {
		t.Fatalf("jobs did not finish before the second deploy restarted the engine:\n%s", log)
	}
}
