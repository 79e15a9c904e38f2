package gpupanel

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/tunnel"
	"github.com/pixery/pixery/remote/vast"
)

// startOp runs one of the long operations (rent, deploy, destroy) on a
// goroutine with a context that Cancel and Close end. Only one runs at a
// time. It is called on the UI goroutine.
func (v *View) startOp(name, label string, f func(ctx context.Context)) {
	v.mu.Lock()
	if v.busy != "" || v.closed {
		v.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(v.ctx)
	v.busy, v.opCancel, v.lastOp = name, cancel, v.clock.Now()
	v.mu.Unlock()

	v.Error.SetText("")
	v.opProgress = 0
	v.Progress.SetValue(0)
	v.ProgressLabel.SetText(label)
	v.updateButtons()
	end := func() {
		cancel()
		v.mu.Lock()
		v.busy, v.opCancel, v.lastOp = "", nil, v.clock.Now()
		v.epoch++
		v.mu.Unlock()
	}
	if !v.goRun(func() {
		defer v.ui(v.updateButtons)
		defer end()
		f(ctx)
	}) {
		end()
	}
}

func (v *View) cancelOp() {
	v.mu.Lock()
	cancel, busy := v.opCancel, v.busy
	v.mu.Unlock()
	if cancel != nil {
		cancel()
		v.ProgressLabel.SetText("Cancelling " + busy + "…")
		v.Cancel.Disable()
	}
}

// fail shows what went wrong in the error line and in a dialog (UI
// goroutine).
func (v *View) fail(what string, msg string) {
	v.ProgressLabel.SetText(what + " failed.")
	v.Error.SetText(what + " failed: " + msg)
	v.showMessage(what+" failed", msg)
}

func (v *View) showMessage(title, msg string) {
	if v.d.Window == nil {
		return
	}
	l := widget.NewLabel(msg)
	l.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustom(title, "OK", l, v.d.Window)
	d.Resize(fyne.NewSize(560, 260))
	d.Show()
}

func (v *View) selectedOffer() (vast.Offer, bool) {
	if v.selected < 0 || v.selected >= len(v.offers) {
		return vast.Offer{}, false
	}
	return v.offers[v.selected], true
}

// rent rents the selected offer (UI goroutine).
func (v *View) rent() {
	offer, ok := v.selectedOffer()
	if !ok || v.m == nil {
		v.Error.SetText("Select an offer in the list first.")
		return
	}
	disk, err := v.diskGB()
	if err != nil {
		v.Error.SetText(err.Error())
		return
	}
	v.Output.SetText("")
	v.startOp("rent", fmt.Sprintf("Renting offer %d: %s in %s at $%.4f/h…", offer.ID, gpuText(offer), offer.Geolocation, offer.DPHTotal),
		func(ctx context.Context) {
			t, err := v.m.Rent(ctx, remote.RentOptions{OfferID: offer.ID, DiskGB: disk, Timeout: v.d.RentTimeout,
				Progress: func(p remote.RentProgress) { v.ui(func() { v.showRent(p) }) }})
			if err != nil {
				gone := errors.Is(err, vast.ErrOfferGone)
				v.ui(func() {
					v.fail("Rent", rentError(ctx, offer, err))
					if gone {
						v.runSearch(false) // that offer is gone from the list too
					}
				})
				v.poke()
				return
			}
			v.mu.Lock()
			v.target = t
			v.mu.Unlock()
			v.ensureIdle(*t)
			v.ui(func() {
				v.Progress.SetValue(1)
				v.ProgressLabel.SetText(fmt.Sprintf("Instance %d (%s) is running at $%.4f/h. Next: Deploy engine.", t.InstanceID, t.GPU, t.DPH))
				v.Instance.SetText(fmt.Sprintf("Instance %d (%s) · %s · running", t.InstanceID, t.Label, t.GPU))
			})
			v.poke()
		})
}

func rentError(ctx context.Context, offer vast.Offer, err error) string {
	var apiErr *vast.APIError
	switch {
	case errors.Is(err, vast.ErrOfferGone) && errors.As(err, &apiErr):
		return fmt.Sprintf("offer %d (%s in %s) is no longer available: someone else rented it or its host withdrew it. "+
			"The offers were searched again; pick another one. (%v)", offer.ID, gpuText(offer), offer.Geolocation, apiErr)
	case ctx.Err() != nil:
		return "cancelled. " + err.Error()
	}
	return describe(err)
}

// showRent displays one rent progress report (UI goroutine).
func (v *View) showRent(p remote.RentProgress) {
	steps := map[string]float64{"offer": 0.05, "key": 0.1, "create": 0.2, "wait": 0.4, "connect": 0.8, "ready": 1}
	f, ok := steps[p.Phase]
	if p.Phase == "wait" && p.Status == "loading" {
		f = 0.6 // pulling the image: the long part
	}
	if ok && f > v.opProgress {
		v.opProgress = f
		v.Progress.SetValue(f)
	}
	line := p.Message
	if p.Phase == "wait" {
		status := p.Status
		if status == "" {
			status = "provisioning"
		}
		line = "Instance " + fmt.Sprint(p.InstanceID) + " " + status
		if p.Message != "" {
			line += ": " + p.Message
		}
	}
	v.ProgressLabel.SetText(fmt.Sprintf("[%s] %s", fmtClock(p.Elapsed), line))
}

// deploy uploads, sets up and starts the engine on the current target,
// then opens the tunnel (UI goroutine).
func (v *View) deploy() {
	if v.m == nil {
		return
	}
	bin := v.d.EngineBinary
	if bin == "" {
		var err error
		if bin, err = remote.FindEngineBinary(); err != nil {
			v.Error.SetText("Deploy: " + err.Error())
			return
		}
	}
	v.outLines = nil
	v.Output.SetText("")
	v.startOp("deploy", "Deploying the engine…", func(ctx context.Context) {
		out := &lineWriter{v: v}
		res, err := v.m.Deploy(ctx, remote.DeployOptions{Engine: bin, Registry: v.d.Registry, RegistryDir: v.d.RegistryDir,
			Output: out, HealthTimeout: v.d.HealthTimeout,
			Progress: func(p deploy.Progress) { v.ui(func() { v.showDeploy(p) }) }})
		out.Flush()
		if err != nil {
			v.ui(func() {
				msg := describe(err)
				if ctx.Err() != nil {
					msg = "cancelled. " + msg
				}
				v.fail("Deploy", msg)
			})
			v.poke()
			return
		}
		v.ui(func() {
			v.Progress.SetValue(1)
			v.ProgressLabel.SetText(fmt.Sprintf("Engine %s is running on the host (pid %d). Connecting…", res.Health.Version, res.PID))
			v.Health.SetText(deployHealthText(res.Health))
		})
		v.startTunnel()
		v.poke()
	})
}

func deployHealthText(h *deploy.Health) string {
	if h == nil {
		return ""
	}
	s := "Engine " + h.Version + " healthy"
	if h.Device != "" {
		s += " on " + h.Device
	}
	return s
}

// showDeploy displays one deploy progress report (UI goroutine).
func (v *View) showDeploy(p deploy.Progress) {
	set := func(f float64, label string) {
		v.Progress.SetValue(f)
		v.ProgressLabel.SetText(label)
	}
	switch p.Step {
	case "upload":
		frac := 1.0
		if p.Total > 0 {
			frac = float64(p.Done) / float64(p.Total)
		}
		label := fmt.Sprintf("Uploading %s: %s of %s", path.Base(p.File), fmtBytes(p.Done), fmtBytes(p.Total))
		if p.Resumed > 0 && p.Resumed < p.Total {
			label += fmt.Sprintf(" (resumed at %s)", fmtBytes(p.Resumed))
		}
		set(0.5*frac, label)
	case "verify":
		set(0.55, "Checking "+path.Base(p.File)+" on the host (sha256)…")
	case "setup":
		set(0.6, "Running setup on the host (GPU runtime, model files)…")
	case "stop":
		set(0.8, "Stopping the running engine; it finishes its jobs first…")
	case "start":
		set(0.85, "Starting the engine…")
	case "health":
		set(0.9, "Waiting for the engine to answer /v1/health…")
	default:
		if p.Message != "" {
			v.ProgressLabel.SetText(p.Message)
		}
	}
}

// lineWriter shows the last lines of setup's output in the panel.
type lineWriter struct {
	v       *View
	mu      sync.Mutex
	partial []byte
}

const outputLines = 10

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.partial = append(w.partial, b...)
	var lines []string
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		lines = append(lines, strings.TrimRight(string(w.partial[:i]), "\r"))
		w.partial = w.partial[i+1:]
	}
	w.mu.Unlock()
	if len(lines) > 0 {
		w.v.ui(func() { w.v.addOutput(lines) })
	}
	return len(b), nil
}

// Flush shows a last line without its newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	rest := strings.TrimSpace(string(w.partial))
	w.partial = nil
	w.mu.Unlock()
	if rest != "" {
		w.v.ui(func() { w.v.addOutput([]string{rest}) })
	}
}

func (v *View) addOutput(lines []string) {
	v.outLines = append(v.outLines, lines...)
	if n := len(v.outLines); n > outputLines {
		v.outLines = append([]string(nil), v.outLines[n-outputLines:]...)
	}
	v.Output.SetText(strings.Join(v.outLines, "\n"))
}

// toggleTunnel connects or disconnects (UI goroutine).
func (v *View) toggleTunnel() {
	if tr := v.cancelTunnel(); tr != nil {
		v.Tunnel.SetText("Tunnel: disconnecting…")
		v.updateButtons()
		return
	}
	v.Tunnel.SetText("Tunnel: starting…")
	v.startTunnel()
	v.updateButtons()
}

// startTunnel opens the tunnel to the current target unless one runs.
// It may be called from any goroutine.
func (v *View) startTunnel() {
	if v.m == nil {
		return
	}
	v.mu.Lock()
	if v.closed || v.tun != nil {
		v.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(v.ctx)
	tr := &tunnelRun{cancel: cancel, done: make(chan struct{}), state: "starting"}
	v.tun = tr
	v.mu.Unlock()

	run := func() {
		defer close(tr.done)
		announced := false
		err := v.m.Tunnel(ctx, remote.TunnelOptions{Local: v.d.TunnelLocal,
			Ready: func(t *tunnel.Tunnel) {
				v.mu.Lock()
				tr.url = "http://" + t.Addr().String()
				v.mu.Unlock()
			},
			OnEvent: func(e tunnel.Event) {
				v.mu.Lock()
				tr.state = e.State.String()
				url := tr.url
				v.mu.Unlock()
				first := e.State == tunnel.Up && !announced
				if first {
					announced = true
				}
				v.ui(func() {
					v.Tunnel.SetText(tunnelText(e, url))
					if first && v.d.OnConnected != nil {
						v.d.OnConnected(url)
					}
					v.updateButtons()
				})
				if e.State == tunnel.Up {
					v.poke()
				}
			},
			OnForwardError: func(err error) {
				v.ui(func() {
					v.Health.SetText("The tunnel is up, but the engine does not answer on the host (" + err.Error() + "). Deploy engine starts it.")
				})
			},
		})
		v.mu.Lock()
		if v.tun == tr {
			v.tun = nil
		}
		v.mu.Unlock()
		v.ui(func() {
			if err != nil && ctx.Err() == nil {
				v.Tunnel.SetText("Tunnel stopped: " + describe(err))
				v.Error.SetText("Tunnel failed: " + describe(err))
			} else {
				v.Tunnel.SetText(tunnelIdleText)
			}
			v.updateButtons()
		})
		v.poke()
	}
	if !v.goRun(run) {
		cancel()
		close(tr.done)
		v.mu.Lock()
		v.tun = nil
		v.mu.Unlock()
	}
}

// stopTunnel closes the tunnel and waits until it is down (not on the UI
// goroutine).
func (v *View) stopTunnel() {
	if tr := v.cancelTunnel(); tr != nil {
		<-tr.done
	}
}

// cancelTunnel tells the running tunnel, if any, to close as asked (not
// lost) and returns it; its done closes once it is down.
func (v *View) cancelTunnel() *tunnelRun {
	v.mu.Lock()
	tr := v.tun
	if tr != nil {
		tr.stopping = true
	}
	v.mu.Unlock()
	if tr != nil {
		tr.cancel()
	}
	return tr
}

const tunnelIdleText = "Tunnel: not connected."

func tunnelText(e tunnel.Event, url string) string {
	switch e.State {
	case tunnel.Connecting:
		if e.Attempt > 1 {
			return fmt.Sprintf("Tunnel: connecting (attempt %d)…", e.Attempt)
		}
		return "Tunnel: connecting…"
	case tunnel.Up:
		return "Tunnel: connected — " + url + " reaches the engine on the host."
	case tunnel.Down:
		why := "connection lost"
		if e.Err != nil {
			why = describe(e.Err)
		}
		if e.Retry > 0 {
			return fmt.Sprintf("Tunnel: reconnecting in %s — %s", fmtDuration(e.Retry), why)
		}
		return "Tunnel: reconnecting — " + why
	case tunnel.Closed:
		return tunnelIdleText
	}
	return "Tunnel: " + e.State.String()
}

// confirmDestroy asks, then destroys the current instance (UI goroutine).
func (v *View) confirmDestroy() {
	v.mu.Lock()
	t := v.target
	st := v.status
	v.mu.Unlock()
	if t == nil || t.Kind != remote.KindVast || v.m == nil {
		return
	}
	if v.d.Window == nil {
		v.Error.SetText("Destroy: no window to confirm in.")
		return
	}
	dph := t.DPH
	if st != nil && st.Target.Name == t.Name && st.DPH > 0 {
		dph = st.DPH
	}
	target := *t
	msg := widget.NewLabel(fmt.Sprintf("Destroy instance %d (%s, $%.4f/h)?\n\nIts disk and everything on it are deleted, and billing stops.", t.InstanceID, t.GPU, dph))
	msg.Wrapping = fyne.TextWrapWord
	dlg := dialog.NewCustomConfirm("Destroy instance", "Destroy", "Keep it", msg, func(ok bool) {
		if ok {
			v.startOp("destroy", fmt.Sprintf("Destroying instance %d…", target.InstanceID), func(ctx context.Context) {
				v.stopIdle()
				err := v.destroyTarget(ctx, target)
				v.ui(func() {
					if err != nil {
						v.fail("Destroy", describe(err))
						return
					}
					v.Progress.SetValue(1)
					v.ProgressLabel.SetText(fmt.Sprintf("Destroyed instance %d; billing has stopped.", target.InstanceID))
					v.showNoTarget()
				})
				v.poke()
			})
		}
	}, v.d.Window)
	dlg.Resize(fyne.NewSize(480, 220))
	dlg.Show()
}

// destroyTarget closes the tunnel and destroys the instance; an instance
// Vast no longer knows counts as destroyed (Manager.Destroy). Any
// goroutine but the UI's.
func (v *View) destroyTarget(ctx context.Context, t remote.Target) error {
	v.stopTunnel()
	if err := v.m.Destroy(ctx, t.Name); err != nil {
		return err
	}
	v.mu.Lock()
	if v.target != nil && v.target.Name == t.Name {
		v.target, v.status = nil, nil
	}
	delete(v.gone, t.InstanceID)
	v.epoch++
	v.mu.Unlock()
	return nil
}
