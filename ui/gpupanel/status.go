package gpupanel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/vast"
)

const noTargetText = "No GPU rented. Search the offers, select one and Rent."

func (v *View) pollLoop(ctx context.Context) {
	for {
		v.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-v.pollNow:
		case <-time.After(v.d.PollInterval):
		}
	}
}

// refresh asks for the current target's state and shows it. While an
// operation runs or the tunnel is up it asks Vast only (the operation or
// the tunnel already tells about the host); otherwise it also checks the
// engine over SSH.
func (v *View) refresh(ctx context.Context) {
	v.mu.Lock()
	epoch := v.epoch
	v.mu.Unlock()
	// apply stores what this poll learnt unless an operation changed the
	// target meanwhile; then the poll is stale and another one follows.
	apply := func(f func()) bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.epoch != epoch {
			v.poke()
			return false
		}
		f()
		return true
	}
	t, err := v.m.Resolve("")
	if err != nil {
		if !errors.Is(err, remote.ErrNoTarget) {
			v.ui(func() { v.Instance.SetText("Cannot read pixery's remote state: " + err.Error()) })
			return
		}
		if apply(func() { v.target, v.status = nil, nil }) {
			v.stopIdle()
			v.ui(func() {
				v.showNoTarget()
				v.updateButtons()
			})
		}
		return
	}
	v.mu.Lock()
	busy := v.busy
	tunUp := v.tun != nil && v.tun.state == "up"
	v.mu.Unlock()

	var st *remote.Status
	if busy != "" || tunUp {
		st, err = v.m.InstanceStatus(ctx, t.Name)
	} else {
		st, err = v.m.Status(ctx, t.Name)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		v.ui(func() { v.Instance.SetText("Cannot check " + t.Name + ": " + describe(err)) })
		return
	}
	health := ""
	var eng engine.Engine
	if tunUp && v.d.Engine != nil {
		eng = v.d.Engine()
	}
	switch {
	case eng != nil:
		health = engineHealth(ctx, eng)
	case busy == "" && !tunUp:
		health = sshHealth(st)
	}
	gone := t.Kind == remote.KindVast && errors.Is(st.InstanceErr, vast.ErrNotFound)
	if !apply(func() {
		v.target, v.status, v.statusAt = &t, st, time.Now()
		if gone {
			v.gone[t.InstanceID] = true
		} else {
			delete(v.gone, t.InstanceID)
		}
	}) {
		return
	}
	if t.Kind == remote.KindVast && !gone {
		v.ensureIdle(t)
	} else {
		v.stopIdle()
	}
	v.ui(func() {
		v.showStatus(st, health)
		v.updateButtons()
	})
}

func engineHealth(ctx context.Context, e engine.Engine) string {
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, err := e.Health(hctx)
	if err != nil {
		return "The engine does not answer through the tunnel: " + err.Error()
	}
	return apiHealthText(h)
}

func apiHealthText(h *api.Health) string {
	s := "Engine " + h.Version + " healthy"
	if h.Device != "" {
		s += " on " + h.Device
	}
	if h.Provider != "" {
		s += " (" + h.Provider + ")"
	}
	if h.Running != "" {
		s += " · running a job"
	}
	if h.Queued > 0 {
		s += fmt.Sprintf(" · %d queued", h.Queued)
	}
	if n := engine.Notice(h); n != "" {
		s += ". " + n
	}
	return s
}

func sshHealth(st *remote.Status) string {
	switch {
	case st.Target.Kind == remote.KindVast && errors.Is(st.InstanceErr, vast.ErrNotFound):
		return "Engine: gone with the instance."
	case st.SSHErr != nil:
		return "Engine: unknown — cannot reach the host: " + describe(st.SSHErr)
	case !st.EngineRunning:
		return "Engine: not running on the host. Deploy engine starts it."
	case st.HealthErr != nil:
		return fmt.Sprintf("Engine: running (pid %d), but /v1/health fails: %v", st.EnginePID, st.HealthErr)
	}
	return deployHealthText(st.Health)
}

func (v *View) showNoTarget() {
	v.Instance.SetText(noTargetText)
	v.Cost.SetText("")
	v.Health.SetText("")
	v.KeepIdle.Hide()
}

// showStatus displays a status (UI goroutine); an empty health keeps the
// health line as it is.
func (v *View) showStatus(st *remote.Status, health string) {
	t := st.Target
	switch {
	case t.Kind != remote.KindVast:
		v.Instance.SetText(fmt.Sprintf("Host %s@%s:%d (your own server)", t.User, t.Host, t.Port))
		v.Cost.SetText("Not rented through pixery: no Vast.ai billing.")
	case st.Instance != nil:
		in := st.Instance
		state := in.ActualStatus
		if state == "" {
			state = "provisioning"
		}
		line := fmt.Sprintf("Instance %d (%s) · %s · %s", t.InstanceID, t.Label, orDefault(in.GPUName, t.GPU), state)
		if msg := strings.TrimSpace(in.StatusMsg); msg != "" && state != "running" {
			line += ": " + msg
		}
		v.Instance.SetText(line)
		v.Cost.SetText(fmt.Sprintf("$%.4f/h · running %s · $%.2f so far (estimate)", st.DPH, fmtDuration(st.Uptime), st.Cost))
	case errors.Is(st.InstanceErr, vast.ErrNotFound):
		v.Instance.SetText(fmt.Sprintf("Instance %d no longer exists on Vast.ai (destroyed elsewhere?). Destroy forgets it.", t.InstanceID))
		v.Cost.SetText("Not billing.")
	default:
		v.Instance.SetText(fmt.Sprintf("Instance %d (%s) · %s · state unknown: %s", t.InstanceID, t.Label, t.GPU, describe(st.InstanceErr)))
		v.Cost.SetText(fmt.Sprintf("$%.4f/h when rented; Vast.ai did not answer, so it may still be billing.", t.DPH))
	}
	if health != "" {
		v.Health.SetText(health)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Billing says whether an instance pixery rented is (probably) still
// billing, and what: "RTX 4090 · $0.42/h · running 1h12m". It reads
// pixery's remote state, which knows every instance from the moment it is
// created until it is destroyed, so it is right even before the first
// poll; only an instance Vast said is gone is left out. Safe on the UI
// goroutine (a small file read).
func (v *View) Billing() (bool, string) {
	if v.m == nil {
		return false, ""
	}
	s, err := v.m.State()
	if err != nil {
		return true, "unknown: pixery cannot read its remote state (" + err.Error() + ")"
	}
	v.mu.Lock()
	st, at := v.status, v.statusAt
	gone := make(map[int64]bool, len(v.gone))
	for id := range v.gone {
		gone[id] = true
	}
	v.mu.Unlock()
	now := time.Now()
	var parts []string
	for _, t := range s.Targets {
		if t.Kind != remote.KindVast || gone[t.InstanceID] {
			continue
		}
		gpu, dph, running := orDefault(t.GPU, "GPU instance"), t.DPH, time.Duration(-1)
		if !t.CreatedAt.IsZero() {
			running = max(now.Sub(t.CreatedAt), 0)
		}
		if st != nil && st.Target.Name == t.Name && st.Instance != nil {
			gpu, dph, running = orDefault(st.Instance.GPUName, gpu), st.DPH, st.Uptime+now.Sub(at)
		}
		part := fmt.Sprintf("%s · $%.2f/h", gpu, dph)
		if running >= 0 {
			part += " · running " + fmtDuration(running)
		}
		parts = append(parts, part)
	}
	return len(parts) > 0, strings.Join(parts, "; ")
}

// activity is the idle watcher's view of activity: the app's jobs, and
// the panel's own operations (an instance being deployed is not idle).
func (v *View) activity() time.Time {
	v.mu.Lock()
	busy, last := v.busy != "", v.lastOp
	v.mu.Unlock()
	if busy {
		return v.clock.Now()
	}
	if v.d.Activity != nil {
		if a := v.d.Activity(); a.After(last) {
			last = a
		}
	}
	return last
}

// ensureIdle runs the idle watcher for t, if IdleDestroy asks for one.
// Any goroutine.
func (v *View) ensureIdle(t remote.Target) {
	if v.d.IdleDestroy <= 0 || t.Kind != remote.KindVast {
		return
	}
	v.mu.Lock()
	if v.closed || (v.idle != nil && v.idle.target == t.Name) {
		v.mu.Unlock()
		return
	}
	old := v.idle
	ctx, cancel := context.WithCancel(v.ctx)
	run := &idleRun{target: t.Name, cancel: cancel}
	v.idle = run
	v.mu.Unlock()
	if old != nil {
		old.cancel()
	}
	w, err := remote.NewIdleWatcher(remote.IdleConfig{Idle: v.d.IdleDestroy, Clock: v.clock, Activity: v.activity,
		Destroy: func(ctx context.Context) error { return v.destroyTarget(ctx, t) },
		OnStatus: func(st remote.IdleStatus) {
			v.ui(func() { v.showIdle(t, st) })
		}})
	if err != nil {
		v.ui(func() { v.Idle.SetText("Idle auto-destroy is off: " + err.Error()) })
		return
	}
	v.mu.Lock()
	run.w = w
	v.mu.Unlock()
	if !v.goRun(func() {
		err := w.Run(ctx)
		v.mu.Lock()
		if v.idle == run {
			v.idle = nil
		}
		v.mu.Unlock()
		if err == nil {
			v.poke()
		}
	}) {
		cancel()
	}
}

// stopIdle stops the idle watcher (any goroutine).
func (v *View) stopIdle() {
	v.mu.Lock()
	run := v.idle
	v.idle = nil
	v.mu.Unlock()
	if run != nil {
		run.cancel()
		v.ui(func() {
			v.KeepIdle.Hide()
		})
	}
}

// keepIdle is the countdown's "Keep running" (UI goroutine).
func (v *View) keepIdle() {
	v.mu.Lock()
	run := v.idle
	v.mu.Unlock()
	if run == nil || run.w == nil {
		v.KeepIdle.Hide()
		return
	}
	run.w.Postpone()
	t := remote.Target{Name: run.target}
	v.mu.Lock()
	if v.target != nil && v.target.Name == run.target {
		t = *v.target
	}
	v.mu.Unlock()
	v.showIdle(t, run.w.Check())
}

// showIdle displays an idle watcher report (UI goroutine).
func (v *View) showIdle(t remote.Target, st remote.IdleStatus) {
	idle := fmtDuration(v.d.IdleDestroy)
	switch st.State {
	case remote.IdleCounting:
		v.Idle.SetText(fmt.Sprintf("Auto-destroy after %s without jobs (idle for %s).", idle, fmtDuration(st.IdleFor)))
		v.KeepIdle.Hide()
	case remote.IdleWarning:
		v.Idle.SetText(fmt.Sprintf("No jobs for %s: instance %d will be destroyed in %s.", fmtDuration(st.IdleFor), t.InstanceID, fmtClock(st.Remaining)))
		v.KeepIdle.Show()
	case remote.IdleDestroying:
		v.Idle.SetText(fmt.Sprintf("Destroying instance %d: no jobs for %s…", t.InstanceID, idle))
		v.KeepIdle.Hide()
	case remote.IdleDestroyed:
		v.Idle.SetText(fmt.Sprintf("Destroyed instance %d after %s without jobs; billing has stopped.", t.InstanceID, idle))
		v.KeepIdle.Hide()
		v.showNoTarget()
		v.updateButtons()
	case remote.IdleFailed:
		v.Idle.SetText(fmt.Sprintf("Could not destroy idle instance %d; trying again. It may still be billing.", t.InstanceID))
		v.Error.SetText("Idle auto-destroy failed: " + describe(st.Err))
		v.KeepIdle.Show()
	}
}

// fmtDuration is "45s", "12m", "1h12m".
func fmtDuration(d time.Duration) string {
	d = max(d.Round(time.Second), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// fmtClock is a countdown or an elapsed time: "4:05", "1:02:03".
func fmtClock(d time.Duration) string {
	d = max(d.Round(time.Second), 0)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
