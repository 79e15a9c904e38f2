package gpupanel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/remote/vast"
	"github.com/pixery/pixery/remote/vast/vastfake"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sshdtest.CleanupBuilds()
	os.Exit(code)
}

const apiKey = "vast-test-key-5e6f7a8b"

// The two default offers that pass pixery's filters for "RTX 4090" under
// $0.5/h, cheapest first.
const (
	cheapOffer = 24817601 // $0.2911/h, Oslo
	baseOffer  = 24817533 // $0.3538/h, Ontario
)

// world is the panel over a real Manager, the fake Vast API and a real
// loopback sshd standing in for the rented instance.
type world struct {
	srv       *sshdtest.Server
	fake      *vastfake.Server
	mgr       *remote.Manager
	cfg       remote.Config
	win       fyne.Window
	dlg       *Dialogs
	v         *View
	local     string // the tunnel's local address
	connected chan string
	healths   atomic.Int32 // health checks through Deps.Engine

	mu  sync.Mutex
	url string
}

func newWorld(t *testing.T, tweak func(*Deps)) *world {
	t.Helper()
	test.NewTempApp(t)
	w := &world{connected: make(chan string, 10)}
	home := sshdtest.Home(t)
	w.srv = sshdtest.Start(t, sshdtest.Options{})
	sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	w.fake = vastfake.New(apiKey)
	t.Cleanup(w.fake.Close)
	w.fake.SetSSHTarget(w.srv.Host, w.srv.Port)
	w.fake.SetAuthorizedKeysFile(w.srv.AuthorizedKeys)

	w.win = test.NewTempWindow(t, widget.NewLabel(""))
	w.dlg = NewDialogs(w.win)
	retry := vast.Retry{Attempts: 5, Base: time.Millisecond, Max: 10 * time.Millisecond}
	w.cfg = remote.Config{
		VastURL: w.fake.URL, VastKey: apiKey, VastRetry: &retry,
		SSH: sshx.Options{Timeout: 5 * time.Second},
		// The "instance" is this machine: the engine goes to a temporary
		// folder and listens on a free port, and the tunnel on another.
		Layout:           deploy.Layout{Root: filepath.Join(t.TempDir(), "workspace", "pixery"), Port: sshdtest.FreePort(t)},
		PollInterval:     10 * time.Millisecond,
		SSHRetryInterval: 50 * time.Millisecond,
	}
	w.dlg.Configure(&w.cfg)
	var err error
	if w.mgr, err = remote.New(w.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killEngine(w.cfg.Layout) })
	w.local = fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t))
	d := Deps{
		Window: w.win, Manager: w.mgr, Dialogs: w.dlg,
		Engine: func() engine.Engine {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.url == "" {
				return nil
			}
			w.healths.Add(1)
			return engine.Remote(w.url, "")
		},
		OnConnected: func(u string) {
			w.mu.Lock()
			w.url = u
			w.mu.Unlock()
			select {
			case w.connected <- u:
			default:
			}
		},
		EngineBinary:  sshdtest.StandInEngine(t, "v1"),
		TunnelLocal:   w.local,
		PollInterval:  300 * time.Millisecond,
		RentTimeout:   30 * time.Second,
		HealthTimeout: 20 * time.Second,
	}
	if tweak != nil {
		tweak(&d)
	}
	w.v = New(d)
	t.Cleanup(w.v.Close) // before the fake and the sshd go
	inUI(func() {
		w.win.SetContent(w.v.Content())
		w.win.Resize(fyne.NewSize(1100, 900))
	})
	w.v.Start(context.Background())
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

// inUI runs f as the UI goroutine would: not overlapping the panel's own
// updates from its goroutines.
func inUI(f func()) {
	uiMu.Lock()
	defer uiMu.Unlock()
	f()
}

func text(l *widget.Label) (s string) {
	inUI(func() { s = l.Text })
	return s
}

func tap(b *widget.Button) { inUI(func() { test.Tap(b) }) }

func disabled(b *widget.Button) (d bool) {
	inUI(func() { d = b.Disabled() })
	return d
}

func buttonText(b *widget.Button) (s string) {
	inUI(func() { s = b.Text })
	return s
}

func visible(o fyne.CanvasObject) (shown bool) {
	inUI(func() { shown = o.Visible() })
	return shown
}

// waitFor polls cond (in the UI's turn) until it holds; a generous guard
// turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ok bool
		inUI(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *world) idle() bool {
	w.v.mu.Lock()
	defer w.v.mu.Unlock()
	return w.v.busy == ""
}

// dialogObjects lists what the window's dialogs show.
func dialogObjects(win fyne.Window) []fyne.CanvasObject {
	var out []fyne.CanvasObject
	for _, o := range win.Canvas().Overlays().List() {
		out = append(out, test.LaidOutObjects(o)...)
	}
	return out
}

func dialogButton(win fyne.Window, label string) *widget.Button {
	for _, o := range dialogObjects(win) {
		if b, ok := o.(*widget.Button); ok && b.Text == label && !b.Disabled() && b.Visible() {
			return b
		}
	}
	return nil
}

func dialogText(win fyne.Window) string {
	var b strings.Builder
	for _, o := range dialogObjects(win) {
		if l, ok := o.(*widget.Label); ok {
			b.WriteString(l.Text + "\n")
		}
	}
	return b.String()
}

// answer waits for a dialog button and taps it; it returns the dialogs'
// text as it was.
func answer(t *testing.T, win fyne.Window, label string) string {
	t.Helper()
	var b *widget.Button
	waitFor(t, "a dialog with "+label, func() bool { b = dialogButton(win, label); return b != nil })
	var s string
	inUI(func() {
		s = dialogText(win)
		test.Tap(b)
	})
	return s
}

func (w *world) search(t *testing.T, gpu, disk, price string) {
	t.Helper()
	inUI(func() {
		w.v.GPU.SetText("")
		test.Type(w.v.GPU, gpu)
		w.v.Disk.SetText(disk)
		w.v.MaxPrice.SetText(price)
		test.Tap(w.v.Search)
	})
	waitFor(t, "search results", func() bool { return strings.Contains(w.v.OffersInfo.Text, "offer") })
}

// rent selects a row and rents it, answering the host key question.
func (w *world) rent(t *testing.T, row int, trust bool) {
	t.Helper()
	inUI(func() { w.v.Offers.Select(widget.TableCellID{Row: row, Col: 1}) })
	tap(w.v.Rent)
	label := "Don't trust"
	if trust {
		label = "Trust"
	}
	shown := answer(t, w.win, label)
	if fp := ssh.FingerprintSHA256(w.srv.HostKey); !strings.Contains(shown, fp) {
		t.Errorf("host key dialog does not show the fingerprint %s:\n%s", fp, shown)
	}
	waitFor(t, "the rent to end", w.idle)
}

func (w *world) current(t *testing.T) remote.Target {
	t.Helper()
	s, err := w.mgr.State()
	if err != nil {
		t.Fatal(err)
	}
	tg, ok := s.Find(s.Current)
	if !ok {
		t.Fatalf("no current target in %+v", s)
	}
	return tg
}

func cell(v *View, row, col int) (s string) {
	inUI(func() {
		l := widget.NewLabel("")
		v.Offers.UpdateCell(widget.TableCellID{Row: row, Col: col}, l)
		s = l.Text
	})
	return s
}

// The whole cycle through the panel: search → rent → deploy → tunnel →
// health and cost → disconnect/connect → destroy.
func TestWholeCycle(t *testing.T) {
	w := newWorld(t, nil)
	v := w.v
	if billing, what := v.Billing(); billing {
		t.Fatalf("billing before renting: %s", what)
	}
	waitFor(t, "the first poll", func() bool { return v.Instance.Text == noTargetText })

	w.search(t, "RTX 4090", "50", "0.5")
	var rows, cols int
	inUI(func() { rows, cols = v.Offers.Length() })
	if rows != 2 || cols != len(offerColumns) {
		t.Fatalf("table %dx%d, want 2 offers × %d columns", rows, cols, len(offerColumns))
	}
	want := [][]string{
		{"24817601", "RTX 4090", "24 GB", "0.2911", "413 GB", "1840 Mb/s", "99.6%", "Oslo, NO"},
		{"24817533", "RTX 4090", "24 GB", "0.3538", "413 GB", "912 Mb/s", "99.6%", "Ontario, CA"},
	}
	for r, row := range want {
		for c, s := range row {
			if got := cell(v, r, c); got != s {
				t.Errorf("cell %d,%d = %q, want %q", r, c, got, s)
			}
		}
	}
	if got := text(v.OffersInfo); got != "2 offers. Select one, then Rent." {
		t.Errorf("offers info %q", got)
	}
	// What the search asked Vast for.
	var body map[string]any
	for _, r := range w.fake.Requests() {
		if r.Method == "POST" && strings.HasPrefix(r.Path, "/api/v0/bundles") {
			_ = json.Unmarshal(r.Body, &body)
		}
	}
	if fmt.Sprint(body["gpu_name"]) != "map[eq:RTX 4090]" || fmt.Sprint(body["dph_total"]) != "map[lt:0.5]" ||
		fmt.Sprint(body["disk_space"]) != "map[gte:50]" || fmt.Sprint(body["order"]) != "[[dph_total asc]]" {
		t.Errorf("search body %v", body)
	}
	if !disabled(v.Rent) {
		t.Error("Rent enabled with no offer selected")
	}

	w.rent(t, 0, true)
	tg := w.current(t)
	if tg.OfferID != cheapOffer || tg.GPU != "RTX 4090" {
		t.Fatalf("rented %+v", tg)
	}
	if got := text(v.ProgressLabel); !strings.Contains(got, fmt.Sprintf("Instance %d (RTX 4090) is running at $0.2911/h", tg.InstanceID)) {
		t.Errorf("progress after rent: %q", got)
	}
	billing, what := v.Billing()
	if !billing || !strings.HasPrefix(what, "RTX 4090 · $0.29/h · running ") {
		t.Errorf("Billing() = %v %q", billing, what)
	}
	waitFor(t, "the instance state", func() bool {
		return strings.Contains(v.Instance.Text, fmt.Sprintf("Instance %d", tg.InstanceID)) && strings.HasSuffix(v.Instance.Text, "running")
	})
	waitFor(t, "the engine's absence", func() bool { return strings.Contains(v.Health.Text, "not running") })

	tap(v.Deploy)
	select {
	case u := <-w.connected:
		if u != "http://"+w.local {
			t.Fatalf("OnConnected(%q), want http://%s", u, w.local)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no tunnel after deploy; progress %q, error %q", text(v.ProgressLabel), text(v.Error))
	}
	waitFor(t, "the deploy to end", w.idle)
	if got := text(v.Output); !strings.Contains(got, "setup: done") {
		t.Errorf("setup output not shown: %q", got)
	}
	if got := text(v.ProgressLabel); !strings.Contains(got, "Engine v1 is running on the host") {
		t.Errorf("progress after deploy: %q", got)
	}
	// The engine answers through the tunnel.
	resp, err := http.Get("http://" + w.local + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["version"] != "v1" {
		t.Fatalf("health through the tunnel: %v", health)
	}
	waitFor(t, "tunnel state", func() bool { return strings.HasPrefix(v.Tunnel.Text, "Tunnel: connected — http://"+w.local) })
	// Polls now check health through the app's engine (the tunnel).
	waitFor(t, "health through the engine", func() bool {
		return w.healths.Load() > 0 && strings.HasPrefix(v.Health.Text, "Engine v1 healthy")
	})
	waitFor(t, "the cost line", func() bool {
		return strings.HasPrefix(v.Cost.Text, "$0.2911/h · running ") && strings.HasSuffix(v.Cost.Text, "so far (estimate)")
	})

	// The connection drops: the tunnel says that it reconnects, and why,
	// and comes back by itself.
	w.srv.Kill()
	waitFor(t, "the tunnel to notice the drop", func() bool { return strings.HasPrefix(v.Tunnel.Text, "Tunnel: reconnecting") })
	if got := text(v.Tunnel); !strings.Contains(got, " — ") {
		t.Errorf("reconnecting without a reason: %q", got)
	}
	if err := w.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tunnel to come back", func() bool { return strings.HasPrefix(v.Tunnel.Text, "Tunnel: connected") })
	if resp, err := http.Get("http://" + w.local + "/v1/health"); err != nil {
		t.Fatalf("engine through the restored tunnel: %v", err)
	} else {
		resp.Body.Close()
	}

	// Disconnect and connect again.
	if got := buttonText(v.Connect); got != "Disconnect" {
		t.Fatalf("connect button says %q while connected", got)
	}
	tap(v.Connect)
	waitFor(t, "the tunnel to close", func() bool { return v.Tunnel.Text == tunnelIdleText && v.Connect.Text == "Connect" })
	if _, err := http.Get("http://" + w.local + "/v1/health"); err == nil {
		t.Fatal("tunnel still answers after Disconnect")
	}
	tap(v.Connect)
	select {
	case u := <-w.connected:
		if u != "http://"+w.local {
			t.Fatalf("reconnected at %q", u)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no reconnect: %s", text(v.Tunnel))
	}

	// Destroy, after confirming.
	tap(v.Destroy)
	shown := answer(t, w.win, "Destroy")
	if !strings.Contains(shown, fmt.Sprintf("Destroy instance %d (RTX 4090, $0.2911/h)?", tg.InstanceID)) {
		t.Errorf("confirmation says:\n%s", shown)
	}
	waitFor(t, "the destroy", func() bool { return strings.Contains(v.ProgressLabel.Text, "Destroyed instance") })
	if !w.fake.Destroyed(tg.InstanceID) {
		t.Fatal("instance not destroyed on Vast")
	}
	if billing, what := v.Billing(); billing {
		t.Fatalf("still billing after destroy: %s", what)
	}
	waitFor(t, "the panel to show nothing rented", func() bool {
		return v.Instance.Text == noTargetText && v.Tunnel.Text == tunnelIdleText && v.Deploy.Disabled() && v.Destroy.Disabled()
	})
	if _, err := http.Get("http://" + w.local + "/v1/health"); err == nil {
		t.Fatal("tunnel still open after destroy")
	}
	if got := text(v.Error); got != "" {
		t.Errorf("error line after a clean cycle: %q", got)
	}
}

func TestRentOfferGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail vastfake.CreateFailure
	}{
		{"404", vastfake.CreateOfferGone404},
		{"410", vastfake.CreateOfferGone410},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			w.search(t, "RTX 4090", "50", "0.5")
			w.fake.FailCreate(tc.fail)
			searches := 0
			for _, r := range w.fake.Requests() {
				if strings.HasPrefix(r.Path, "/api/v0/bundles") {
					searches++
				}
			}
			inUI(func() { w.v.Offers.Select(widget.TableCellID{Row: 1, Col: 0}) })
			tap(w.v.Rent)
			waitFor(t, "the rent to fail", func() bool { return w.idle() && w.v.Error.Text != "" })
			msg := text(w.v.Error)
			if !strings.HasPrefix(msg, fmt.Sprintf("Rent failed: offer %d (RTX 4090 in Ontario, CA) is no longer available", baseOffer)) ||
				!strings.Contains(msg, "no_such_ask") {
				t.Errorf("error line: %q", msg)
			}
			if got := answer(t, w.win, "OK"); !strings.Contains(got, "is no longer available") {
				t.Errorf("error dialog says:\n%s", got)
			}
			if alive := w.fake.Alive(); len(alive) != 0 {
				t.Errorf("instances alive after a failed create: %v", alive)
			}
			if billing, what := w.v.Billing(); billing {
				t.Errorf("billing after a failed rent: %s", what)
			}
			// The list is searched again, and renting stays possible.
			waitFor(t, "a fresh search", func() bool {
				n := 0
				for _, r := range w.fake.Requests() {
					if strings.HasPrefix(r.Path, "/api/v0/bundles") {
						n++
					}
				}
				return n > searches && strings.Contains(w.v.OffersInfo.Text, "2 offers")
			})
		})
	}
}

func TestSearchInputErrors(t *testing.T) {
	w := newWorld(t, nil)
	for _, tc := range []struct{ disk, price, want string }{
		{"abc", "", `Min disk: "abc" is not a number`},
		{"0", "", "Min disk must be more than 0, not 0"},
		{"50", "-1", "Max $/h must be more than 0, not -1"},
		{"50", "NaN", `Max $/h: "NaN" is not a number`},
		{"1e9", "", "Min disk: 1e9 GB is more than any host has"},
	} {
		inUI(func() {
			w.v.Disk.SetText(tc.disk)
			w.v.MaxPrice.SetText(tc.price)
			test.Tap(w.v.Search)
		})
		if got := text(w.v.Error); got != tc.want {
			t.Errorf("disk %q price %q: error %q, want %q", tc.disk, tc.price, got, tc.want)
		}
	}
	for _, r := range w.fake.Requests() {
		if strings.HasPrefix(r.Path, "/api/v0/bundles") {
			t.Fatalf("bad input reached Vast: %s", r.Body)
		}
	}
	// "$0.4" is read as 0.4, an empty GPU as any GPU.
	w.search(t, "", "50", "$0.4")
	// Of the fake's offers, two pass the default filters under $0.4/h.
	var rows int
	inUI(func() { rows, _ = w.v.Offers.Length() })
	if rows != 2 || cell(w.v, 0, 0) != strconv.Itoa(cheapOffer) || cell(w.v, 1, 0) != strconv.Itoa(baseOffer) {
		t.Errorf("%d offers (%s, %s)", rows, cell(w.v, 0, 0), cell(w.v, 1, 0))
	}
	var body map[string]any
	for _, r := range w.fake.Requests() {
		if strings.HasPrefix(r.Path, "/api/v0/bundles") {
			_ = json.Unmarshal(r.Body, &body)
		}
	}
	if _, ok := body["gpu_name"]; ok || fmt.Sprint(body["dph_total"]) != "map[lt:0.4]" {
		t.Errorf("search body %v", body)
	}
	if got := text(w.v.Error); got != "" {
		t.Errorf("error after a good search: %q", got)
	}
}

// First contact asks; a refusal fails the rent and destroys the instance;
// a changed key is refused with the clear message.
func TestHostKeys(t *testing.T) {
	w := newWorld(t, nil)
	w.search(t, "RTX 4090", "50", "0.5")

	w.rent(t, 0, false)
	if msg := text(w.v.Error); !strings.Contains(msg, "declined the key") || !strings.Contains(msg, "was destroyed") {
		t.Errorf("error after declining: %q", msg)
	}
	if alive := w.fake.Alive(); len(alive) != 0 {
		t.Fatalf("declined instance still alive: %v", alive)
	}
	if billing, _ := w.v.Billing(); billing {
		t.Fatal("billing after a declined host key")
	}
	answer(t, w.win, "OK")

	w.rent(t, 0, true)
	tg := w.current(t)
	// Someone else answers as that instance now.
	khFile, err := sshx.DefaultKnownHostsFile()
	if err != nil {
		t.Fatal(err)
	}
	kh, err := os.ReadFile(khFile)
	if err != nil || !bytes.Contains(kh, []byte(tg.Name)) {
		t.Fatalf("known_hosts lacks %s: %v\n%s", tg.Name, err, kh)
	}
	other := sshdtest.NewKey(t, filepath.Join(t.TempDir(), "other"), "")
	line := knownhosts.Line([]string{tg.Name}, other.Public)
	if err := os.WriteFile(khFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap(w.v.Deploy)
	waitFor(t, "the deploy to fail", func() bool { return w.idle() && w.v.Error.Text != "" })
	msg := text(w.v.Error)
	if !strings.Contains(msg, "has CHANGED") || !strings.Contains(msg, "pixery refuses to connect") ||
		!strings.Contains(msg, ssh.FingerprintSHA256(w.srv.HostKey)) {
		t.Errorf("error for a changed key: %q", msg)
	}
	if b := dialogButton(w.win, "Trust"); b != nil {
		t.Error("a changed key was offered for trust")
	}

	// Closing the panel leaves the instance running, and says so.
	w.v.Close()
	billing, what := w.v.Billing()
	if !billing || !strings.HasPrefix(what, "RTX 4090 · $0.29/h") {
		t.Fatalf("after Close: Billing() = %v %q", billing, what)
	}

	// A new panel knows it at once; destroyed elsewhere, it is gone, and
	// destroying it again succeeds.
	v2 := New(Deps{Window: w.win, Manager: w.mgr, PollInterval: 200 * time.Millisecond})
	t.Cleanup(v2.Close)
	if billing, _ := v2.Billing(); !billing {
		t.Fatal("a new panel does not see the billing instance")
	}
	if err := vast.New(w.fake.URL, apiKey).DestroyInstance(context.Background(), tg.InstanceID); err != nil {
		t.Fatal(err)
	}
	inUI(func() { w.win.SetContent(v2.Content()) })
	v2.Start(context.Background())
	waitFor(t, "the panel to see the instance gone", func() bool { return strings.Contains(v2.Instance.Text, "no longer exists") })
	if billing, what := v2.Billing(); billing {
		t.Fatalf("billing for a destroyed instance: %s", what)
	}
	waitFor(t, "Destroy to be enabled", func() bool { return !v2.Destroy.Disabled() })
	tap(v2.Destroy)
	answer(t, w.win, "Destroy")
	waitFor(t, "the destroy", func() bool {
		return strings.Contains(v2.ProgressLabel.Text, "Destroyed instance") && v2.Instance.Text == noTargetText
	})
	if s, _ := w.mgr.State(); len(s.Targets) != 0 {
		t.Fatalf("state keeps %+v", s.Targets)
	}
}

// Cancel during a rent: Rent destroys the instance it created.
func TestCancelRent(t *testing.T) {
	w := newWorld(t, nil)
	w.fake.SetWalk(vastfake.WalkStuckLoading)
	w.search(t, "RTX 4090", "50", "0.5")
	inUI(func() { w.v.Offers.Select(widget.TableCellID{Row: 0, Col: 0}) })
	tap(w.v.Rent)
	waitFor(t, "the instance to load", func() bool {
		return strings.Contains(w.v.ProgressLabel.Text, " loading") && w.v.Progress.Value >= 0.6
	})
	if billing, _ := w.v.Billing(); !billing {
		t.Error("a loading instance is not reported as billing")
	}
	if disabled(w.v.Cancel) || !disabled(w.v.Rent) || !disabled(w.v.Destroy) {
		t.Fatal("buttons during a rent: Cancel off or Rent/Destroy on")
	}
	tap(w.v.Cancel)
	waitFor(t, "the rent to end", w.idle)
	if msg := text(w.v.Error); !strings.HasPrefix(msg, "Rent failed: cancelled.") || !strings.Contains(msg, "was destroyed") {
		t.Errorf("error line: %q", msg)
	}
	answer(t, w.win, "OK")
	if alive := w.fake.Alive(); len(alive) != 0 {
		t.Fatalf("cancelled instance still alive: %v", alive)
	}
	if billing, what := w.v.Billing(); billing {
		t.Fatalf("billing after a cancelled rent: %s", what)
	}
	if !disabled(w.v.Cancel) || disabled(w.v.Rent) {
		t.Error("buttons after the cancel: Cancel on or Rent off")
	}
}
