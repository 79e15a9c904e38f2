// Package gpupanel is the "GPU" tab of the pixery desktop app: search
// Vast.ai offers, rent one, deploy the engine to it, tunnel to it, watch its
// state, price and health, and destroy it — by hand, or by itself after it
// has been idle for a set time. It is a view over remote.Manager; the CLI's
// `pixery remote` does the same in a terminal.
//
// Every long operation runs off the UI goroutine, can be cancelled, and
// reports through fyne.Do. The package never imports fyne.io/fyne/v2/app.
package gpupanel

import (
	"context"
	"io/fs"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/models"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/vast"
)

// Deps is what the panel needs from the app.
type Deps struct {
	// Window parents the panel's dialogs (destroy confirmation, errors).
	Window fyne.Window
	// Manager does the work. Build it with a Config that Dialogs.Configure
	// filled, so that host keys and passphrases are asked in dialogs.
	Manager *remote.Manager
	// Dialogs are the prompts the Manager was configured with; Close
	// answers those still open (optional).
	Dialogs *Dialogs
	// Engine returns the app's current engine; while the tunnel is up the
	// panel checks health through it (optional: else over SSH).
	Engine func() engine.Engine
	// OnConnected is called, on the UI goroutine, each time a tunnel comes
	// up for the first time, with its local URL (http://127.0.0.1:8000):
	// the app switches its Server URL to it.
	OnConnected func(localURL string)
	// IdleDestroy destroys the rented instance after this long without
	// Activity (0 = never).
	IdleDestroy time.Duration
	// Activity returns the last time a job was submitted or ran.
	Activity func() time.Time
	// EngineBinary is the linux/amd64 pixery-engine to deploy ("" = the
	// one next to pixery, as the CLI finds it).
	EngineBinary string

	// TunnelLocal is the tunnel's local address ("" = 127.0.0.1:<the
	// engine's port>, normally 127.0.0.1:8000).
	TunnelLocal string
	// Registry and RegistryDir are the model registry to upload (nil =
	// the built-in one).
	Registry    fs.FS
	RegistryDir string
	// PollInterval is the time between status checks (default 15 s).
	PollInterval time.Duration
	// RentTimeout bounds waiting for a rented instance (default 20 min).
	RentTimeout time.Duration
	// HealthTimeout bounds waiting for the deployed engine (default 2 min).
	HealthTimeout time.Duration
	// Clock drives the idle countdown (nil = the wall clock).
	Clock remote.Clock
	// Do runs the panel's widget changes on the UI goroutine; nil means
	// fyne.Do. A test whose goroutine plays the event loop passes a queue
	// it runs (galleryview.UIQueue).
	Do func(func())
}

// View is the GPU tab. Its widgets are exported so that tests (and the
// window, for focus or layout) can reach them; change them only on the UI
// goroutine.
type View struct {
	// Offer search.
	GPU        *widget.Entry  // GPU name as Vast spells it ("" = any)
	Disk       *widget.Entry  // GB of disk to rent, also a filter
	MaxPrice   *widget.Entry  // highest $/h ("" = any)
	Order      *widget.Select // sort order
	Search     *widget.Button
	Offers     *widget.Table // id, GPU, VRAM, $/h, disk, download, reliability, location
	OffersInfo *widget.Label

	// Operations on the instance.
	Rent          *widget.Button
	Deploy        *widget.Button
	Connect       *widget.Button // "Connect" or "Disconnect" the tunnel
	Destroy       *widget.Button
	Cancel        *widget.Button // cancels the running rent, deploy or destroy
	Progress      *widget.ProgressBar
	ProgressLabel *widget.Label
	Output        *widget.Label // the last lines of setup's output

	// State, refreshed by polling.
	Instance *widget.Label // which instance, Vast's state
	Cost     *widget.Label // $/h, running time, cost so far
	Tunnel   *widget.Label // connected / reconnecting and why
	Health   *widget.Label // the engine's health
	Idle     *widget.Label // idle auto-destroy countdown
	KeepIdle *widget.Button
	Error    *widget.Label // the last failure, in words

	d       Deps
	m       *remote.Manager
	clock   remote.Clock
	content fyne.CanvasObject

	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	pollNow chan struct{}

	// UI goroutine only.
	offers       []vast.Offer
	selected     int // index in offers, -1 = none
	searchGen    int
	searchCancel context.CancelFunc
	outLines     []string
	opProgress   float64

	mu       sync.Mutex
	closed   bool
	started  bool
	busy     string // "rent", "deploy", "destroy" or ""
	opCancel context.CancelFunc
	lastOp   time.Time // start or end of the last operation (idle clock)
	epoch    int       // counts operations that ended: polls older than one are stale
	target   *remote.Target
	status   *remote.Status
	statusAt time.Time
	gone     map[int64]bool // instances Vast no longer knows
	tun      *tunnelRun
	idle     *idleRun
}

type tunnelRun struct {
	cancel   context.CancelFunc
	done     chan struct{}
	state    string // "starting", "connecting", "up", "down"
	url      string
	stopping bool
}

type idleRun struct {
	w      *remote.IdleWatcher
	target string
	cancel context.CancelFunc
}

// closeWait bounds how long Close waits for operations to wind up.
const closeWait = 10 * time.Second

// New builds the panel. Nothing runs until Start or a button is tapped.
func New(d Deps) *View {
	if d.PollInterval <= 0 {
		d.PollInterval = 15 * time.Second
	}
	if d.RentTimeout <= 0 {
		d.RentTimeout = 20 * time.Minute
	}
	if d.HealthTimeout <= 0 {
		d.HealthTimeout = 2 * time.Minute
	}
	if d.Registry == nil {
		d.Registry, d.RegistryDir = models.FS, "."
	}
	if d.RegistryDir == "" {
		d.RegistryDir = "."
	}
	v := &View{d: d, m: d.Manager, clock: d.Clock, selected: -1, gone: map[int64]bool{}, pollNow: make(chan struct{}, 1)}
	if v.clock == nil {
		v.clock = remote.RealClock
	}
	v.lastOp = v.clock.Now()
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.build()
	if v.m == nil {
		v.Error.SetText("GPU rental is not available: the app has no remote manager.")
	}
	v.updateButtons()
	return v
}

// Content is the panel's root object.
func (v *View) Content() fyne.CanvasObject { return v.content }

func (v *View) build() {
	v.GPU = widget.NewEntry()
	v.GPU.SetPlaceHolder("any, e.g. RTX 4090")
	v.Disk = widget.NewEntry()
	v.Disk.SetText("50")
	v.MaxPrice = widget.NewEntry()
	v.MaxPrice.SetPlaceHolder("any")
	v.Order = widget.NewSelect(orderNames(), nil)
	v.Order.SetSelectedIndex(0)
	v.Search = widget.NewButtonWithIcon("Search", theme.SearchIcon(), v.search)
	v.Search.Importance = widget.HighImportance
	for _, e := range []*widget.Entry{v.GPU, v.Disk, v.MaxPrice} {
		e.OnSubmitted = func(string) { v.search() }
	}
	v.Offers = v.newOffersTable()
	v.OffersInfo = widget.NewLabel("Search Vast.ai for a GPU to rent.")

	v.Rent = widget.NewButtonWithIcon("Rent", theme.ConfirmIcon(), v.rent)
	v.Rent.Importance = widget.HighImportance
	v.Deploy = widget.NewButtonWithIcon("Deploy engine", theme.UploadIcon(), v.deploy)
	v.Connect = widget.NewButtonWithIcon("Connect", theme.MailForwardIcon(), v.toggleTunnel)
	v.Destroy = widget.NewButtonWithIcon("Destroy", theme.DeleteIcon(), v.confirmDestroy)
	v.Destroy.Importance = widget.DangerImportance
	v.Cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), v.cancelOp)
	v.Progress = widget.NewProgressBar()
	v.ProgressLabel = wrapLabel("")
	v.Output = widget.NewLabel("")
	v.Output.TextStyle = fyne.TextStyle{Monospace: true}
	v.Output.Truncation = fyne.TextTruncateEllipsis

	v.Instance = wrapLabel(noTargetText)
	v.Instance.TextStyle = fyne.TextStyle{Bold: true}
	v.Cost = wrapLabel("")
	v.Tunnel = wrapLabel(tunnelIdleText)
	v.Health = wrapLabel("")
	v.Idle = wrapLabel("")
	v.KeepIdle = widget.NewButtonWithIcon("Keep running", theme.HistoryIcon(), v.keepIdle)
	v.KeepIdle.Hide()
	v.Error = wrapLabel("")
	v.Error.Importance = widget.DangerImportance

	field := func(name string, o fyne.CanvasObject) fyne.CanvasObject {
		return container.NewBorder(nil, nil, widget.NewLabel(name), nil, o)
	}
	filters := container.NewBorder(nil, nil, nil, v.Search, container.NewGridWithColumns(2,
		field("GPU", v.GPU), field("Min disk GB", v.Disk), field("Max $/h", v.MaxPrice), field("Order", v.Order)))
	offers := container.NewBorder(filters, container.NewBorder(nil, nil, nil, v.Rent, v.OffersInfo), nil, nil, v.Offers)

	buttons := container.NewHBox(v.Deploy, v.Connect, layout.NewSpacer(), v.Destroy)
	idle := container.NewBorder(nil, nil, nil, v.KeepIdle, v.Idle)
	if v.d.IdleDestroy <= 0 {
		idle.Hide()
	}
	progress := container.NewBorder(nil, nil, nil, v.Cancel, v.Progress)
	instance := container.NewVBox(v.Instance, v.Cost, v.Tunnel, v.Health, idle, buttons,
		widget.NewSeparator(), v.ProgressLabel, progress, v.Error, v.Output)
	split := container.NewVSplit(widget.NewCard("Offers", "", offers), widget.NewCard("Instance", "", container.NewVScroll(instance)))
	split.Offset = 0.5
	v.content = split
}

func wrapLabel(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapWord
	return l
}

// Start begins polling the instance's state, price, running time, cost,
// engine health and tunnel, and the idle watcher, until ctx ends or Close.
func (v *View) Start(ctx context.Context) {
	v.mu.Lock()
	if v.started || v.closed || v.m == nil {
		v.mu.Unlock()
		return
	}
	v.started = true
	v.mu.Unlock()
	pctx, cancel := context.WithCancel(v.ctx)
	context.AfterFunc(ctx, cancel)
	if !v.goRun(func() { v.pollLoop(pctx) }) {
		cancel()
	}
}

// Close stops the tunnel, the polling, the idle watcher and whatever
// operation runs (a rent in progress destroys its instance), answers open
// SSH questions, and waits a little for all that to wind up. A rented
// instance keeps running: ask Billing before closing.
func (v *View) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	if v.d.Dialogs != nil {
		v.d.Dialogs.Close()
	}
	done := make(chan struct{})
	go func() {
		v.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
}

// goRun runs f on a goroutine that Close waits for; it refuses (false)
// once the view is closed.
func (v *View) goRun(f func()) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		f()
	}()
	return true
}

// uiMu serialises the widget updates this package makes from its
// goroutines. In the app they all run on the UI goroutine anyway (fyne.Do
// queues them there), but Fyne's test driver runs fyne.Do on the caller's
// goroutine; the lock keeps them from overlapping there too.
var uiMu sync.Mutex

// runUI changes widgets from a goroutine this package started. It must
// not be called from the UI goroutine itself (event handlers).
func runUI(f func()) {
	fyne.Do(func() {
		uiMu.Lock()
		defer uiMu.Unlock()
		f()
	})
}

// ui is runUI for the view (through Deps.Do when set): nothing happens
// once it is closed.
func (v *View) ui(f func()) {
	run := runUI
	if v.d.Do != nil {
		run = v.d.Do
	}
	run(func() {
		v.mu.Lock()
		closed := v.closed
		v.mu.Unlock()
		if !closed {
			f()
		}
	})
}

// poke asks the poller for a fresh status now.
func (v *View) poke() {
	select {
	case v.pollNow <- struct{}{}:
	default:
	}
}

func setEnabled(w fyne.Disableable, on bool) {
	if on {
		w.Enable()
	} else {
		w.Disable()
	}
}

// updateButtons enables what makes sense now (UI goroutine).
func (v *View) updateButtons() {
	v.mu.Lock()
	busy, t, closed := v.busy, v.target, v.closed
	tunnelOn, stopping := v.tun != nil, v.tun != nil && v.tun.stopping
	gone := t != nil && t.Kind == remote.KindVast && v.gone[t.InstanceID]
	v.mu.Unlock()
	ok := v.m != nil && !closed
	rented := t != nil && t.Kind == remote.KindVast && !gone
	setEnabled(v.Search, ok)
	setEnabled(v.Rent, ok && busy == "" && v.selected >= 0 && !rented)
	setEnabled(v.Deploy, ok && busy == "" && t != nil && !gone)
	setEnabled(v.Destroy, ok && busy == "" && t != nil && t.Kind == remote.KindVast)
	setEnabled(v.Cancel, busy != "")
	if tunnelOn {
		v.Connect.SetText("Disconnect")
		setEnabled(v.Connect, !stopping)
	} else {
		v.Connect.SetText("Connect")
		setEnabled(v.Connect, ok && t != nil && !gone && busy != "rent" && busy != "destroy")
	}
}
