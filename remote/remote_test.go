package remote_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/models"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/remote/tunnel"
	"github.com/pixery/pixery/remote/vast"
	"github.com/pixery/pixery/remote/vast/vastfake"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sshdtest.CleanupBuilds()
	os.Exit(code)
}

const apiKey = "vast-test-key-9a8b7c6d"

type world struct {
	home    string
	srv     *sshdtest.Server
	fake    *vastfake.Server
	key     sshdtest.Key
	mgr     *remote.Manager
	cfg     remote.Config
	prompts []string // "host fingerprint" of every trust-on-first-use question
	accept  bool
	mu      sync.Mutex
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return newWorldOpts(t, sshdtest.Options{})
}

// newWorldOpts is newWorld with the host's sshd configured by opt.
func newWorldOpts(t *testing.T, opt sshdtest.Options) *world {
	t.Helper()
	w := &world{accept: true}
	w.home = sshdtest.Home(t)
	w.srv = sshdtest.Start(t, opt)
	w.key = sshdtest.NewKey(t, filepath.Join(w.home, ".ssh", "id_ed25519"), "")
	w.fake = vastfake.New(apiKey)
	t.Cleanup(w.fake.Close)
	w.fake.SetSSHTarget(w.srv.Host, w.srv.Port)
	// The instance authorises the account's keys (contract §13.6); pixery
	// has to put the user's key on the account for SSH to work.
	w.fake.SetAuthorizedKeysFile(w.srv.AuthorizedKeys)
	retry := vast.Retry{Attempts: 5, Base: time.Millisecond, Max: 10 * time.Millisecond}
	w.cfg = remote.Config{
		VastURL: w.fake.URL, VastKey: apiKey, VastRetry: &retry,
		SSH: sshx.Options{Timeout: 3 * time.Second, ConfirmHostKey: func(host string, _ ssh.PublicKey, fp string) (bool, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.prompts = append(w.prompts, host+" "+fp)
			return w.accept, nil
		}},
		Layout:           deploy.Layout{Root: filepath.Join(t.TempDir(), "workspace", "pixery"), Port: sshdtest.FreePort(t)},
		PollInterval:     10 * time.Millisecond,
		SSHRetryInterval: 50 * time.Millisecond,
	}
	var err error
	if w.mgr, err = remote.New(w.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killEngine(w.cfg.Layout) })
	return w
}

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

func stateFile(t *testing.T) string {
	p, err := remote.DefaultStateFile()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The whole cycle, as the app runs it: offers → rent → deploy → tunnel →
// health → status → destroy, against the fake Vast API whose instance is
// the test's real sshd.
// openTunnel runs mgr's tunnel to the current target on a free local port
// until the test ends or stop, which returns Tunnel's error; it returns
// once the tunnel listens and is up.
func openTunnel(t *testing.T, ctx context.Context, mgr *remote.Manager) (local string, stop func() error) {
	t.Helper()
	tctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	ready := make(chan struct{}, 1)
	ups := make(chan struct{}, 10)
	done := make(chan error, 1)
	local = fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t))
	go func() {
		done <- mgr.Tunnel(tctx, remote.TunnelOptions{Local: local,
			Ready: func(*tunnel.Tunnel) { ready <- struct{}{} },
			OnEvent: func(e tunnel.Event) {
				if e.State == tunnel.Up {
					ups <- struct{}{}
				}
			}})
	}()
	select {
	case <-ups:
	case err := <-done:
		t.Fatalf("tunnel: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("tunnel never came up")
	}
	<-ready // sent before Tunnel blocks, so before any event
	return local, func() error {
		cancel()
		return <-done
	}
}

func TestFullCycle(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	q := vast.NewOfferQuery()
	q.GPUName, q.MaxPrice = "RTX 4090", 0.5
	offers, err := w.mgr.Offers(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) == 0 {
		t.Fatal("no offers")
	}
	offer := offers[0]
	for _, o := range offers[1:] {
		if o.DPHTotal < offer.DPHTotal {
			t.Fatalf("offer %d at $%v is cheaper than the first, $%v", o.ID, o.DPHTotal, offer.DPHTotal)
		}
	}

	var statuses []string
	var phases []string
	tg, err := w.mgr.Rent(ctx, remote.RentOptions{OfferID: offer.ID, DiskGB: 50, Timeout: 30 * time.Second,
		Progress: func(p remote.RentProgress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
			if p.Phase == "wait" && (len(statuses) == 0 || statuses[len(statuses)-1] != p.Status) {
				statuses = append(statuses, p.Status)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(statuses, ","); got != ",loading,running" {
		t.Errorf("statuses seen %q, want null → loading → running", got)
	}
	if got := strings.Join(phases, ","); got != "offer,key,create,wait,connect,ready" {
		t.Errorf("phases %q", got)
	}
	if tg.Host != "127.0.0.1" || tg.Port != w.srv.Port || tg.User != "root" || !strings.HasPrefix(tg.Label, "pixery-") || tg.DPH != offer.DPHTotal {
		t.Fatalf("target %+v", tg)
	}
	if keys := w.fake.AccountKeys(); len(keys) != 1 || !strings.HasPrefix(keys[0], strings.Join(strings.Fields(w.key.PubLine)[:2], " ")) {
		t.Fatalf("account keys %v", keys)
	}
	if len(w.prompts) != 1 || w.prompts[0] != tg.Name+" "+ssh.FingerprintSHA256(w.srv.HostKey) {
		t.Fatalf("host key prompts %v", w.prompts)
	}
	st, err := os.Stat(stateFile(t))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file %v %v", st, err)
	}
	s, _ := w.mgr.State()
	if s.Current != tg.Name || len(s.Targets) != 1 {
		t.Fatalf("state %+v", s)
	}

	var out bytes.Buffer
	res, err := w.mgr.Deploy(ctx, remote.DeployOptions{Engine: sshdtest.StandInEngine(t, "v1"), Registry: models.FS,
		RegistryDir: ".", Output: &out, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out.String())
	}
	if res.Health.Version != "v1" || len(res.Registry) == 0 {
		t.Fatalf("deploy result %+v", res)
	}

	// The tunnel: the engine answers on a local port.
	local, stopTunnel := openTunnel(t, ctx, w.mgr)
	resp, err := http.Get("http://" + local + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["version"] != "v1" || health["provider"] != "CPU" || health["queued"] != 0.0 {
		t.Fatalf("health through the tunnel: %v", health)
	}

	status, err := w.mgr.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if status.Instance == nil || status.Instance.ActualStatus != "running" || !status.EngineRunning || status.Health == nil ||
		status.Health.Version != "v1" || status.DPH != offer.DPHTotal || status.Uptime <= 0 || status.Cost < 0 {
		t.Fatalf("status %+v", status)
	}
	if want := status.DPH * status.Uptime.Hours(); status.Cost != want {
		t.Errorf("cost %v, want %v", status.Cost, want)
	}
	var logs bytes.Buffer
	if err := w.mgr.Logs(ctx, "", &logs, 20, false); err != nil || !strings.Contains(logs.String(), "engine v1 serving") {
		t.Fatalf("logs %v:\n%s", err, logs.String())
	}

	if err := stopTunnel(); err != nil {
		t.Fatal(err)
	}
	w.fake.RateLimit("destroy", 2)
	if err := w.mgr.Destroy(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if !w.fake.Destroyed(tg.InstanceID) {
		t.Fatal("instance not destroyed")
	}
	s, _ = w.mgr.State()
	if len(s.Targets) != 0 || s.Current != "" {
		t.Fatalf("state after destroy %+v", s)
	}
	kh, _ := os.ReadFile(w.cfg.SSH.KnownHostsFile)
	if bytes.Contains(kh, []byte(tg.Name)) {
		t.Fatalf("known_hosts still has %s:\n%s", tg.Name, kh)
	}
	// Destroying it again (already gone) is fine.
	if err := w.mgr.Destroy(ctx, strconv.FormatInt(tg.InstanceID, 10)); err != nil {
		t.Fatalf("destroy again: %v", err)
	}
	// The create request asked for what the issue says.
	for _, r := range w.fake.Requests() {
		if r.Method == "PUT" && strings.HasPrefix(r.Path, "/api/v0/asks/") {
			var body map[string]any
			_ = json.Unmarshal(r.Body, &body)
			env, _ := body["env"].(map[string]any)
			if body["image"] != vast.DefaultImage || body["disk"] != 50.0 || env["-p 8000:8000"] != "1" ||
				body["onstart"] != "touch ~/.no_auto_tmux" || body["label"] != tg.Label {
				t.Errorf("create body %v", body)
			}
		}
		if strings.Contains(r.Query.Encode(), apiKey) {
			t.Errorf("API key in a URL: %s", r.Path)
		}
	}
}

func TestRentFailuresDestroyOnlyWhatTheyCreated(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		arrange func(w *world)
		timeout time.Duration
		want    string
		created bool
	}{
		{"exited", func(w *world) { w.fake.SetWalk(vastfake.WalkExited) }, 0, "instance is exited", true},
		{"oci error", func(w *world) { w.fake.SetWalk(vastfake.WalkOCIError) }, 0, "OCI runtime create failed", true},
		{"stopped", func(w *world) { w.fake.SetWalk(vastfake.WalkStopped) }, 0, "stopped by Vast", true},
		{"offline", func(w *world) { w.fake.SetWalk(vastfake.WalkOffline) }, 0, "offline", true},
		{"never leaves loading", func(w *world) { w.fake.SetWalk(vastfake.WalkStuckLoading) }, 400 * time.Millisecond, "not running and reachable after 400ms", true},
		{"bid quirk", func(w *world) { w.fake.FailCreate(vastfake.CreateBidQuirk) }, 0, "created anyway", true},
		{"ssh unreachable", func(w *world) { w.fake.SetSSHTarget("127.0.0.1", sshdtest.FreePort(t)) }, time.Second, "last SSH error: host unreachable", true},
		{"host key declined", func(w *world) { w.accept = false }, 0, "declined the key", true},
		{"answer lost", func(w *world) { w.fake.FailCreate(vastfake.CreateLostAnswer) }, 0, "EOF", true},
		{"offer gone 404", func(w *world) { w.fake.FailCreate(vastfake.CreateOfferGone404) }, 0, "taken or withdrawn", false},
		{"offer gone 410", func(w *world) { w.fake.FailCreate(vastfake.CreateOfferGone410) }, 0, "taken or withdrawn", false},
		{"insufficient credit", func(w *world) { w.fake.FailCreate(vastfake.CreateInsufficientCredit) }, 0, "Insufficient credit", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			other := w.fake.AddInstance("pixery-other") // someone else's: must survive
			tc.arrange(w)
			var cleanup []string
			start := time.Now()
			_, err := w.mgr.Rent(ctx, remote.RentOptions{OfferID: 24817533, Timeout: orDefault(tc.timeout, 20*time.Second),
				Progress: func(p remote.RentProgress) {
					if p.Phase == "cleanup" {
						cleanup = append(cleanup, p.Message)
					}
				}})
			if err == nil {
				t.Fatal("rent succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error lacks %q: %v", tc.want, err)
			}
			alive := w.fake.Alive()
			if len(alive) != 1 || alive[0] != other {
				t.Fatalf("alive after failure: %v, want only %d", alive, other)
			}
			if tc.created != (len(cleanup) == 1) || tc.created != strings.Contains(err.Error(), "was destroyed") {
				t.Fatalf("created=%v but cleanup %v, err %v", tc.created, cleanup, err)
			}
			s, _ := w.mgr.State()
			if len(s.Targets) != 0 {
				t.Fatalf("state keeps %+v", s.Targets)
			}
			if time.Since(start) > 60*time.Second { // failed fast, not after the rent timeout
				t.Errorf("failing took %v", time.Since(start))
			}
			t.Logf("%v", err)
		})
	}
	t.Run("rate limited create", func(t *testing.T) {
		w := newWorld(t)
		w.fake.RateLimit("create", 2)
		w.fake.RateLimit("show", 2)
		tg, err := w.mgr.Rent(ctx, remote.RentOptions{Cheapest: true, Query: vast.NewOfferQuery(), Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		// Cheapest: the lowest-priced offer that passes the default filters.
		if tg.OfferID != 24817601 {
			t.Errorf("rented offer %d", tg.OfferID)
		}
	})
}

// SSH refuses the account key for a while after the instance runs: Rent
// keeps trying, attaches the key to the instance itself after repeated
// refusals, and gets in.
func TestRentWaitsForKeys(t *testing.T) {
	w := newWorld(t)
	w.fake.SetKeyDelay(time.Minute) // only the attach can let pixery in
	start := time.Now()
	var connects int
	tg, err := w.mgr.Rent(context.Background(), remote.RentOptions{OfferID: 24817533, Timeout: 20 * time.Second,
		Progress: func(p remote.RentProgress) {
			if p.Phase == "connect" && strings.HasPrefix(p.Message, "connecting") {
				connects++
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	attached := false
	for _, r := range w.fake.Requests() {
		if r.Method == "POST" && r.Path == fmt.Sprintf("/api/v0/instances/%d/ssh/", tg.InstanceID) {
			attached = true
		}
	}
	if !attached || connects < 4 {
		t.Fatalf("attached %v after %d connection attempts", attached, connects)
	}
	t.Logf("in after %d attempts, %v", connects, time.Since(start))
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func TestOrphansAndDestroy(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	tg, err := w.mgr.Rent(ctx, remote.RentOptions{OfferID: 24817533, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lost := w.fake.AddInstance("pixery-0badf00d")
	w.fake.AddInstance("somebody-else")
	orphans, err := w.mgr.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || orphans[0].ID != lost {
		t.Fatalf("orphans %+v, want only %d (known: %d)", orphans, lost, tg.InstanceID)
	}
	if err := w.mgr.Destroy(ctx, strconv.FormatInt(lost, 10)); err != nil {
		t.Fatal(err)
	}
	if !w.fake.Destroyed(lost) || w.fake.Destroyed(tg.InstanceID) {
		t.Fatal("wrong instance destroyed")
	}
	// Destroy keeps trying through rate limits; it gives up only after its
	// budget and then says the instance may still bill.
	w.fake.RateLimit("destroy", 100)
	err = w.mgr.Destroy(ctx, tg.Name)
	if !errors.Is(err, vast.ErrRateLimited) || !strings.Contains(err.Error(), "may still be billing") {
		t.Fatalf("destroy through endless 429s: %v", err)
	}
	if s, _ := w.mgr.State(); len(s.Targets) != 1 {
		t.Fatal("a failed destroy forgot the instance")
	}
	w.fake.RateLimit("destroy", 0)
	if err := w.mgr.Destroy(ctx, tg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := w.mgr.Status(ctx, ""); !errors.Is(err, remote.ErrNoTarget) {
		t.Fatalf("status with nothing rented: %v", err)
	}
}

func TestDeployToPlainSSHHost(t *testing.T) {
	w := newWorld(t)
	w.srv.Authorize(w.key.Public)
	cfg := w.cfg
	cfg.VastKey, cfg.VastURL = "", "http://127.0.0.1:1" // no Vast involved
	mgr, err := remote.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := mgr.Deploy(ctx, remote.DeployOptions{Host: w.srv.User + "@127.0.0.1", Port: w.srv.Port,
		Engine: sshdtest.StandInEngine(t, "v1"), SkipSetup: true, HealthTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("ssh-%s@127.0.0.1:%d", w.srv.User, w.srv.Port)
	s, _ := mgr.State()
	if s.Current != name || res.Health.Version != "v1" {
		t.Fatalf("state %+v health %+v", s, res.Health)
	}
	st, err := mgr.Status(ctx, "")
	if err != nil || st.Instance != nil || !st.EngineRunning || st.Health == nil {
		t.Fatalf("status %+v %v", st, err)
	}
	res, err = mgr.Update(ctx, remote.DeployOptions{Engine: sshdtest.StandInEngine(t, "v2"), SkipSetup: true, HealthTimeout: 20 * time.Second,
		Grace: 100 * time.Millisecond})
	if err != nil || res.Health.Version != "v2" {
		t.Fatalf("update: %+v %v", res, err)
	}
	if err := mgr.Destroy(ctx, ""); err == nil || !strings.Contains(err.Error(), "not an instance pixery rented") {
		t.Fatalf("destroy of a plain host: %v", err)
	}
	// A bad binary is refused before any connection is made.
	bad := filepath.Join(t.TempDir(), "x")
	os.WriteFile(bad, []byte("#!/bin/sh\n"), 0o755)
	if _, err := mgr.Deploy(ctx, remote.DeployOptions{Host: "nobody@192.0.2.1", Engine: bad}); !errors.Is(err, deploy.ErrNotEngineBinary) {
		t.Fatalf("bad binary: %v", err)
	}
	// Unreachable host: a clear error.
	_, err = mgr.Deploy(ctx, remote.DeployOptions{Host: "root@127.0.0.1", Port: sshdtest.FreePort(t), Engine: sshdtest.StandInEngine(t, "v1")})
	if !errors.Is(err, sshx.ErrUnreachable) {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestNoVastKey(t *testing.T) {
	sshdtest.Home(t)
	mgr, err := remote.New(remote.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mgr.Offers(context.Background(), vast.NewOfferQuery())
	if !errors.Is(err, vast.ErrNoKey) || !strings.Contains(err.Error(), "VAST_API_KEY") {
		t.Fatalf("no key: %v", err)
	}
	// Set later (the app stays open while the user fixes it): found then.
	fake := vastfake.New("later-key")
	defer fake.Close()
	mgr, _ = remote.New(remote.Config{VastURL: fake.URL})
	if _, err := mgr.Offers(context.Background(), vast.NewOfferQuery()); !errors.Is(err, vast.ErrNoKey) {
		t.Fatalf("before the key is set: %v", err)
	}
	t.Setenv("VAST_API_KEY", "later-key")
	if offers, err := mgr.Offers(context.Background(), vast.NewOfferQuery()); err != nil || len(offers) == 0 {
		t.Fatalf("after the key is set: %d offers, %v", len(offers), err)
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "remote.json")
	s := &remote.State{Version: 1, Current: "vast-1"}
	s.Put(remote.Target{Name: "vast-2", Kind: remote.KindVast, InstanceID: 2})
	s.Put(remote.Target{Name: "vast-1", Kind: remote.KindVast, InstanceID: 1, DPH: 0.35})
	if err := remote.SaveState(p, s); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("leftovers next to the state: %v", ents)
	}
	got, err := remote.LoadState(p)
	if err != nil || got.Current != "vast-1" || len(got.Targets) != 2 || got.Targets[0].Name != "vast-1" || got.Targets[0].DPH != 0.35 {
		t.Fatalf("round trip %+v %v", got, err)
	}
	got.Remove("vast-1")
	if got.Current != "" || len(got.Targets) != 1 {
		t.Fatalf("remove %+v", got)
	}
	if err := os.WriteFile(p, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.LoadState(p); err == nil || !strings.Contains(err.Error(), "orphans") {
		t.Fatalf("damaged state: %v", err)
	}
	if s, err := remote.LoadState(filepath.Join(dir, "none.json")); err != nil || len(s.Targets) != 0 {
		t.Fatalf("missing state: %+v %v", s, err)
	}
	_ = io.Discard
}

func TestConfigStringHidesKey(t *testing.T) {
	c := remote.Config{VastKey: "secret-key-123", StateFile: "/x/remote.json"}
	if s := c.String(); strings.Contains(s, "secret-key-123") || !strings.Contains(s, "/x/remote.json") {
		t.Fatalf("%s", s)
	}
	if s := fmt.Sprint(c); strings.Contains(s, "secret-key-123") {
		t.Fatalf("%s", s)
	}
}
