package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/internal/syncio"
)

// ErrEngineDown means nothing answers on the engine's port on the host.
var ErrEngineDown = errors.New("engine is not running on the host")

// ErrBusy means Update waited for the engine's jobs and the engine still
// had work when the wait ended: it was left running, untouched.
var ErrBusy = errors.New("the engine is still busy")

// Defaults of Update's wait for an idle engine.
const (
	DefaultWaitTimeout = 30 * time.Minute
	DefaultGrace       = 5 * time.Second
	DefaultIdlePoll    = time.Second
)

// procAlive is a shell function: is pid $1 a live (non-zombie) process
// whose command line names pixery-engine? Containers often have no init
// that reaps orphans, so a finished engine may linger as a zombie.
const procAlive = `alive() { [ -r "/proc/$1/stat" ] || return 1; st=$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1); [ "$st" != Z ] || return 1; tr '\0' ' ' < "/proc/$1/cmdline" | grep -q pixery-engine; }`

// Running returns the engine's pid if it runs.
func (h *Host) Running(ctx context.Context) (int, bool, error) {
	l := h.Layout
	out, err := h.output(ctx, "check engine", procAlive+`
pid=$(cat `+shq(l.PID())+` 2>/dev/null) || exit 0
case "$pid" in ''|*[!0-9]*) exit 0;; esac
alive "$pid" && echo "$pid"
exit 0`)
	if err != nil {
		return 0, false, err
	}
	s := strings.TrimSpace(out)
	if s == "" {
		return 0, false, nil
	}
	pid, err := strconv.Atoi(s)
	if err != nil {
		return 0, false, fmt.Errorf("check engine: unexpected output %q", s)
	}
	return pid, true, nil
}

// Start starts the engine detached from the SSH session (setsid + nohup,
// stdio to the log file), so it survives the session and the tunnel
// dropping. The pid file is written by the engine's own shell right before
// it execs the engine, so the pid is exact. A token file, if present, is
// read into PIXERY_TOKEN by that shell: the token never shows in argv.
// When the engine already runs, Start returns its pid.
func (h *Host) Start(ctx context.Context) (int, error) {
	if pid, ok, err := h.Running(ctx); err != nil {
		return 0, err
	} else if ok {
		return pid, nil
	}
	l := h.Layout
	script := `set -e
cd ` + shq(l.Root) + `
rm -f ` + shq(l.PID()) + `
echo "=== pixery: engine starting $(date -u +%Y-%m-%dT%H:%M:%SZ) ===" >> ` + shq(l.Log()) + `
if [ -f ` + shq(l.TokenFile()) + ` ]; then PIXERY_TOKEN=$(cat ` + shq(l.TokenFile()) + `); export PIXERY_TOKEN; fi
setsid nohup sh -c 'echo $$ > "$0"; exec "$@"' ` + shq(l.PID()) + ` ` + shq(l.Engine()) + ` ` + shqAll(l.ServeArgs()) +
		` >> ` + shq(l.Log()) + ` 2>&1 < /dev/null &
i=0
while [ ! -s ` + shq(l.PID()) + ` ]; do i=$((i+1)); [ $i -le 100 ] || { echo "no pid file after 10 s" >&2; exit 1; }; sleep 0.1; done
cat ` + shq(l.PID())
	out, err := h.output(ctx, "start engine", script)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("start engine: pid file holds %q", strings.TrimSpace(out))
	}
	return pid, nil
}

// Stop asks the engine to stop with SIGTERM, on which pixery-engine
// takes no new jobs, cancels the queued ones and finishes the running one
// (for up to its --shutdown-timeout, 2 min by default), and waits up to
// timeout for the process to be gone. It
// never sends SIGKILL: an engine that takes longer is left running and
// reported. Stopping an engine that is not running is not an error.
func (h *Host) Stop(ctx context.Context, timeout time.Duration) error {
	pid, ok, err := h.Running(ctx)
	if err != nil || !ok {
		return err
	}
	ticks := int(timeout/(200*time.Millisecond)) + 1
	script := procAlive + `
pid=` + strconv.Itoa(pid) + `
kill -TERM "$pid" 2>/dev/null || exit 0
i=0
while alive "$pid"; do i=$((i+1)); [ $i -le ` + strconv.Itoa(ticks) + ` ] || exit 124; sleep 0.2; done
rm -f ` + shq(h.Layout.PID())
	err = h.run(ctx, "stop engine", script, nil, nil)
	var ee *ExitError
	if errors.As(err, &ee) && ee.Status == 124 {
		return fmt.Errorf("stop engine: pid %d still finishing its jobs after %v (it got SIGTERM and will exit when done; try again later)", pid, timeout)
	}
	return err
}

// Health is the engine's answer to GET /v1/health: pixery-engine's
// api.Health (version, device, provider, queue), and the whole JSON
// object in Raw, fields this version does not know included.
type Health struct {
	api.Health
	Raw map[string]any `json:"-"`
}

// Idle says whether the engine has no job running and none waiting.
func (h *Health) Idle() bool { return h.Queued == 0 && h.Running == "" }

// token returns the engine's token as the start script hands it over
// (the token file without trailing newlines), or "" when there is none.
func (h *Host) token() string {
	f, err := h.sftp.Open(h.Layout.TokenFile())
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(b), "\n")
}

// bearer adds the engine's token to requests that carry no
// Authorization of their own.
type bearer struct {
	base  http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token == "" || r.Header.Get("Authorization") != "" {
		return b.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// HTTPClient returns an HTTP client whose connections go through the SSH
// connection to the engine's address on the host (direct-tcpip), whatever
// host the URL names. Requests carry the engine's token when the host
// has one (read from the token file now).
func (h *Host) HTTPClient() *http.Client {
	addr := h.Layout.Addr()
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: bearer{token: h.token(), base: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return h.ssh.DialContext(ctx, "tcp", addr)
			},
			DisableKeepAlives: true,
		}},
	}
}

// Health asks the engine on the host, through the SSH connection.
func (h *Host) Health(ctx context.Context) (*Health, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/v1/health", nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.HTTPClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: nothing answers on %s there (%v); see `pixery remote logs`", ErrEngineDown, h.Layout.Addr(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("engine health: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("engine health: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var hl Health
	if err := json.Unmarshal(b, &hl); err != nil {
		return nil, fmt.Errorf("engine health: not JSON: %w", err)
	}
	_ = json.Unmarshal(b, &hl.Raw)
	if hl.Version == "" {
		return nil, fmt.Errorf("engine health: the answer on %s names no version, so it is not pixery-engine's: %.200s", h.Layout.Addr(), bytes.TrimSpace(b))
	}
	return &hl, nil
}

// WaitHealthy polls Health until the engine answers, the process dies (the
// error then carries the log's last lines), or timeout passes.
func (h *Host) WaitHealthy(ctx context.Context, pid int, timeout time.Duration) (*Health, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for i := 0; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		hl, err := h.Health(cctx)
		cancel()
		if err == nil {
			return hl, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if i%5 == 4 || time.Now().After(deadline) {
			if _, ok, rerr := h.Running(ctx); rerr == nil && !ok {
				return nil, fmt.Errorf("engine (pid %d) exited during start-up; last log lines:\n%s", pid, h.logTail(ctx, 20))
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("engine (pid %d) did not answer /v1/health within %v: %w", pid, timeout, last)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (h *Host) logTail(ctx context.Context, n int) string {
	out, _ := h.output(ctx, "read log", "tail -n "+strconv.Itoa(n)+" -- "+shq(h.Layout.Log())+" 2>/dev/null")
	return out
}

// Logs writes the last lines of the engine log to w; with follow it keeps
// writing new lines until ctx ends (then it returns nil).
func (h *Host) Logs(ctx context.Context, w io.Writer, lines int, follow bool) error {
	if lines <= 0 {
		lines = 100
	}
	script := "tail -n " + strconv.Itoa(lines)
	if follow {
		script += " -F"
	}
	script += " -- " + shq(h.Layout.Log())
	if !follow {
		script = "[ -f " + shq(h.Layout.Log()) + " ] || { echo 'no engine log yet: the engine was never started here' >&2; exit 3; }; " + script
	}
	err := h.run(ctx, "engine logs", script, w, nil)
	if follow && ctx.Err() != nil {
		return nil
	}
	return err
}

// Setup runs `pixery-engine setup` on the host with the layout's
// arguments followed by extra, streaming its output (stdout and stderr)
// to w as it comes.
func (h *Host) Setup(ctx context.Context, w io.Writer, extra ...string) error {
	return h.setup(ctx, h.Layout.Engine(), w, extra...)
}

// setup runs the setup of the engine binary bin (the new one, during an
// update: it knows what it needs).
func (h *Host) setup(ctx context.Context, bin string, w io.Writer, extra ...string) error {
	if w == nil {
		w = io.Discard
	}
	l := h.Layout
	// stdout and stderr, copied by two goroutines, share w.
	lw := syncio.NewWriter(w)
	args := append(l.SetupArgs(), extra...)
	return h.run(ctx, "pixery-engine setup", "cd "+shq(l.Root)+" && exec "+shq(bin)+" "+shqAll(args), lw, lw)
}

// Options configure Deploy and Update.
type Options struct {
	// Engine is the local pixery-engine built for linux/amd64.
	Engine string
	// Registry and RegistryDir name the model registry to upload (every
	// *.toml of that folder). A nil Registry uploads no registry.
	Registry    fs.FS
	RegistryDir string
	// Token, when set, is stored in the layout's token file (mode 0600)
	// and handed to the engine as PIXERY_TOKEN.
	Token string
	// Progress receives upload and step progress.
	Progress func(Progress)
	// Output receives setup's output and step messages.
	Output io.Writer
	// ModelFiles are local files uploaded into the models folder before
	// the registry (checkpoints the user already has, LoRAs, config
	// files): resumable, verified, and skipped when the host has them.
	ModelFiles []ModelFile
	// SkipSetup skips `pixery-engine setup`.
	SkipSetup bool
	// SetupArgs are extra arguments for `pixery-engine setup`, after the
	// layout's own: "--no-models", "--model", "pony", "--no-libs"…
	SetupArgs []string
	// StopTimeout bounds the graceful stop of a running engine (default 10 min).
	StopTimeout time.Duration
	// HealthTimeout bounds waiting for /v1/health after the start (default 2 min).
	HealthTimeout time.Duration

	// The rest is for Update, which waits until the running engine is
	// idle before it stops it.

	// WaitTimeout bounds that wait (0 = DefaultWaitTimeout). A negative
	// one does not wait: a busy engine ends the update (or, with Force,
	// is restarted) at once.
	WaitTimeout time.Duration
	// Force restarts the engine when the wait ends with jobs left: the
	// running job gets the engine's shutdown timeout to finish, the
	// queued ones are cancelled. Without it, Update fails with ErrBusy
	// and leaves the old engine running.
	Force bool
	// Grace is the pause between the engine becoming idle and its stop,
	// for clients to fetch the last job's images (0 = DefaultGrace,
	// negative = none).
	Grace time.Duration
	// PollInterval is the time between health checks while waiting
	// (default DefaultIdlePoll).
	PollInterval time.Duration
}

// Result says what Deploy or Update did.
type Result struct {
	// Engine is the upload of the engine binary (Update: to
	// Layout.EngineNext, unless the host already ran the same binary).
	Engine     *UploadResult
	Registry   []string // registry files uploaded
	ModelFiles []string // model files uploaded (or already there), by name in the models folder
	// Swapped says that Update put a new engine binary in place of the
	// old one (false: the host already had this binary).
	Swapped bool
	PID     int
	Health  *Health
}

// Deploy uploads the engine, the model files and the registry, runs
// setup, starts the engine and waits for /v1/health. Everything is checked
// locally before the first byte goes out. On a host whose engine is
// already running, Deploy is Update: the running engine's jobs finish
// first (o.Force restarts at once), so deploying again never loses work.
func (h *Host) Deploy(ctx context.Context, o Options) (*Result, error) {
	if _, running, err := h.Running(ctx); err != nil {
		return nil, err
	} else if running {
		return h.Update(ctx, o)
	}
	return h.install(ctx, o, false)
}

// Update pushes a new engine (and registry and model files) to a host
// that has a deployment and restarts it gracefully, losing no job:
//
//  1. The new binary goes to Layout.EngineNext, beside the old one, which
//     keeps running; setup runs with the new binary.
//  2. Update polls /v1/health until the engine has no job queued or
//     running, reporting the queue (Progress step "wait"). Jobs that
//     arrive meanwhile are waited for too: waiting for "idle" rather than
//     for the jobs seen at the start is what lets every client's work
//     finish (a client that keeps submitting keeps the engine busy, which
//     is what the timeout is for). After o.WaitTimeout with work left,
//     Update returns ErrBusy and the old engine keeps running, untouched;
//     with o.Force it is restarted anyway.
//  3. Once idle, it waits o.Grace for clients to fetch the last images
//     (the old engine's jobs and images go with it) and checks again that
//     no job came in; a job submitted in the instant between that check
//     and the SIGTERM would still be cancelled.
//  4. SIGTERM, the new binary renamed over the old one, start, health.
func (h *Host) Update(ctx context.Context, o Options) (*Result, error) {
	if _, err := h.sftp.Stat(h.Layout.Engine()); err != nil {
		return nil, fmt.Errorf("update: no engine deployed at %s on the host (run deploy first): %w", h.Layout.Engine(), err)
	}
	return h.install(ctx, o, true)
}

func (h *Host) install(ctx context.Context, o Options, update bool) (*Result, error) {
	if err := CheckEngineBinary(o.Engine); err != nil {
		return nil, err
	}
	var reg []RegistryFile
	if o.Registry != nil {
		var err error
		if reg, err = LoadRegistry(o.Registry, o.RegistryDir); err != nil {
			return nil, err
		}
	}
	modelFiles, err := CheckModelFiles(o.ModelFiles)
	if err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(Progress) {}
	}
	out := o.Output
	if out == nil {
		out = io.Discard
	}
	l := h.Layout
	for _, d := range []string{l.Root, l.Models()} {
		if err := h.sftp.MkdirAll(d); err != nil {
			return nil, fmt.Errorf("create %s on the host: %w", d, err)
		}
	}
	f, err := os.Open(o.Engine)
	if err != nil {
		return nil, fmt.Errorf("engine binary: %w", err)
	}
	defer f.Close()
	src, err := fileSource(f)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	bin := l.Engine() // the binary setup runs and the start finds
	if update {
		staged := false
		if res.Engine, staged, err = h.stageEngine(ctx, src, progress); err != nil {
			return res, err
		}
		if staged {
			bin = l.EngineNext()
		}
	} else if res.Engine, err = h.Upload(ctx, src, l.Engine(), 0o755, progress); err != nil {
		return res, err
	}
	// Model files before the registry: an entry never names a file that
	// is not there yet.
	for _, mf := range modelFiles {
		if err := h.uploadModelFile(ctx, mf, progress); err != nil {
			return res, err
		}
		res.ModelFiles = append(res.ModelFiles, mf.Name)
	}
	for _, rf := range reg {
		dst := path.Join(l.Models(), rf.Name)
		if _, err := h.Upload(ctx, bytes.NewReader(rf.Data), dst, 0o644, progress); err != nil {
			return res, err
		}
		res.Registry = append(res.Registry, rf.Name)
	}
	if !o.SkipSetup {
		progress(Progress{Step: "setup"})
		if err := h.setup(ctx, bin, out, o.SetupArgs...); err != nil {
			return res, err
		}
	}
	if update {
		if _, running, err := h.Running(ctx); err != nil {
			return res, err
		} else if running {
			if err := h.waitIdle(ctx, o, bin, progress); err != nil {
				return res, err
			}
		}
	}
	stopTimeout := o.StopTimeout
	if stopTimeout <= 0 {
		stopTimeout = 10 * time.Minute
	}
	progress(Progress{Step: "stop"})
	if err := h.Stop(ctx, stopTimeout); err != nil {
		return res, err
	}
	if bin != l.Engine() {
		if err := h.rename(bin, l.Engine()); err != nil {
			// The old binary is still in place: bring the host back to
			// what it ran before.
			msg := "starting the old engine again failed too"
			if pid, serr := h.Start(ctx); serr == nil {
				msg = fmt.Sprintf("the old engine was started again (pid %d)", pid)
			}
			return res, fmt.Errorf("update: put the new engine in place: %w (%s)", err, msg)
		}
		res.Swapped = true
	}
	// The token goes in only now: while the old engine ran, its own
	// token (in the file until here) was what reached it.
	if o.Token != "" {
		if err := h.writeSecret(l.TokenFile(), []byte(o.Token)); err != nil {
			return res, err
		}
	}
	progress(Progress{Step: "start"})
	if res.PID, err = h.Start(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "engine started on the host (pid %d), log %s\n", res.PID, l.Log())
	progress(Progress{Step: "health"})
	ht := o.HealthTimeout
	if ht <= 0 {
		ht = 2 * time.Minute
	}
	if res.Health, err = h.WaitHealthy(ctx, res.PID, ht); err != nil {
		return res, err
	}
	return res, nil
}

// stageEngine puts the new engine at Layout.EngineNext, beside the running
// one. When the host's engine already is this binary nothing is sent and
// no EngineNext is left (an older one, from an update that gave up, is
// removed) and staged is false.
func (h *Host) stageEngine(ctx context.Context, src Source, progress func(Progress)) (res *UploadResult, staged bool, err error) {
	l := h.Layout
	size := src.Size()
	if st, err := h.sftp.Stat(l.Engine()); err == nil && st.Size() == size {
		sum, err := hashPrefix(src, size)
		if err != nil {
			return nil, false, fmt.Errorf("upload %s: hash local data: %w", l.Engine(), err)
		}
		if got, err := h.remoteSHA256(ctx, l.Engine(), -1); err == nil && got == sum {
			for _, stale := range []string{l.EngineNext(), l.EngineNext() + ".part"} {
				if err := h.sftp.Remove(stale); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, false, fmt.Errorf("remove the stale %s: %w", stale, err)
				}
			}
			progress(Progress{Step: "upload", File: l.Engine(), Done: size, Total: size, Resumed: size})
			return &UploadResult{SHA256: sum, Size: size, Skipped: true}, false, nil
		}
	}
	res, err = h.Upload(ctx, src, l.EngineNext(), 0o755, progress)
	return res, err == nil, err
}

// waitIdle waits until the engine has no job queued or running and then
// for the grace period (see Update). It returns nil when the engine may
// be stopped: idle, gone, or still busy at the deadline with o.Force.
// staged is the binary that will replace the engine's.
func (h *Host) waitIdle(ctx context.Context, o Options, staged string, progress func(Progress)) error {
	timeout := o.WaitTimeout
	if timeout == 0 {
		timeout = DefaultWaitTimeout
	}
	grace := o.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	poll := o.PollInterval
	if poll <= 0 {
		poll = DefaultIdlePoll
	}
	sleep := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return fmt.Errorf("update: interrupted while waiting for the engine's jobs; the old engine keeps running: %w", ctx.Err())
		}
	}
	start := time.Now()
	deadline := start.Add(timeout)
	graced := false
	progress(Progress{Step: "wait", Message: "asking the engine whether it has jobs"})
	for {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		hl, err := h.Health(hctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("update: interrupted while waiting for the engine's jobs; the old engine keeps running: %w", ctx.Err())
		}
		var left string // what keeps the engine busy, for the error
		switch {
		case err != nil:
			if _, ok, rerr := h.Running(ctx); rerr == nil && !ok {
				progress(Progress{Step: "wait", Message: "the engine is no longer running; nothing to wait for"})
				return nil
			}
			left = fmt.Sprintf("no answer from /v1/health (%v)", err)
			progress(Progress{Step: "wait", Message: "the engine does not answer /v1/health; waiting: " + err.Error()})
			graced = false
		case hl.Idle() && (graced || grace < 0):
			return nil
		case hl.Idle():
			// Clients of the last job fetch its images now; the engine is
			// asked again afterwards, as a job may have come in.
			progress(Progress{Step: "grace", Message: fmt.Sprintf("the engine is idle; %v for clients to fetch the last images", grace)})
			if err := sleep(grace); err != nil {
				return err
			}
			graced = true
			continue
		default:
			left = busyText(hl.Queued, hl.Running, false)
			progress(Progress{Step: "wait", Queued: hl.Queued, Running: hl.Running, Message: busyText(hl.Queued, hl.Running, true)})
			graced = false
		}
		if !time.Now().Before(deadline) {
			waited := time.Since(start)
			if waited < 10*time.Second {
				waited = waited.Round(10 * time.Millisecond)
			} else {
				waited = waited.Round(time.Second)
			}
			if o.Force {
				progress(Progress{Step: "wait", Message: fmt.Sprintf("still busy after %v (%s); restarting anyway: the running job may finish (within the engine's --shutdown-timeout), queued jobs are cancelled", waited, left)})
				return nil
			}
			where := ""
			if staged != h.Layout.Engine() {
				where = "; the new engine waits at " + staged
			}
			return fmt.Errorf("update: %w after %v: %s. It keeps running the old version and no job was touched%s. Update again later, wait longer, or force the restart",
				ErrBusy, waited, left, where)
		}
		// The last check falls on the deadline rather than a poll after it.
		if err := sleep(min(poll, time.Until(deadline))); err != nil {
			return err
		}
	}
}

// busyText says what the engine is busy with: as the wait's progress
// ("waiting for 2 queued jobs and the running one to finish") or as a
// plain description ("2 queued jobs and a running one (abc)").
func busyText(queued int, running string, waiting bool) string {
	q := "1 queued job"
	if queued != 1 {
		q = fmt.Sprintf("%d queued jobs", queued)
	}
	if !waiting {
		switch {
		case queued > 0 && running != "":
			return fmt.Sprintf("it has %s and a running one (%s)", q, running)
		case queued > 0:
			return "it has " + q
		default:
			return fmt.Sprintf("it is running job %s", running)
		}
	}
	switch {
	case queued > 0 && running != "":
		return "waiting for " + q + " and the running one to finish"
	case queued > 0:
		return "waiting for " + q + " to finish"
	default:
		return "waiting for the running job to finish"
	}
}

// writeSecret writes a file only its owner can read: created with mode
// 0600 before any byte of the secret is written, replaced atomically.
func (h *Host) writeSecret(p string, data []byte) error {
	tmp := p + ".tmp"
	f, err := h.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: chmod: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return h.rename(tmp, p)
}

func (h *Host) uploadModelFile(ctx context.Context, mf ModelFile, progress func(Progress)) error {
	dst := path.Join(h.Layout.Models(), mf.Name)
	if err := h.sftp.MkdirAll(path.Dir(dst)); err != nil {
		return fmt.Errorf("create %s on the host: %w", path.Dir(dst), err)
	}
	src, closer, err := FileSource(mf.Path)
	if err != nil {
		return fmt.Errorf("model file: %w", err)
	}
	defer closer.Close()
	if _, err := h.Upload(ctx, src, dst, 0o644, progress); err != nil {
		return err
	}
	return nil
}

type sizedFile struct {
	*os.File
	size int64
}

func (s sizedFile) Size() int64 { return s.size }

func fileSource(f *os.File) (Source, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return sizedFile{File: f, size: st.Size()}, nil
}

// FileSource opens a local file as an upload Source; close it when done.
func FileSource(p string) (Source, io.Closer, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	s, err := fileSource(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return s, f, nil
}
