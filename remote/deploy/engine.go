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
	"sync"
	"time"
)

// ErrEngineDown means nothing answers on the engine's port on the host.
var ErrEngineDown = errors.New("engine is not running on the host")

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

// Stop asks the engine to stop with SIGTERM, on which it finishes queued
// and running jobs, and waits up to timeout for the process to be gone. It
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

// Health is the engine's answer to GET /v1/health.
type Health struct {
	Status  string         `json:"status"`
	Version string         `json:"version"`
	Device  string         `json:"device"`
	Raw     map[string]any `json:"-"`
}

// HTTPClient returns an HTTP client whose connections go through the SSH
// connection to the engine's address on the host (direct-tcpip), whatever
// host the URL names.
func (h *Host) HTTPClient() *http.Client {
	addr := h.Layout.Addr()
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return h.ssh.DialContext(ctx, "tcp", addr)
			},
			DisableKeepAlives: true,
		},
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

// Setup runs `pixery-engine setup` on the host, streaming its output
// (stdout and stderr) to w as it comes.
func (h *Host) Setup(ctx context.Context, w io.Writer) error {
	if w == nil {
		w = io.Discard
	}
	l := h.Layout
	lw := &lockedWriter{w: w}
	return h.run(ctx, "pixery-engine setup", "cd "+shq(l.Root)+" && exec "+shq(l.Engine())+" "+shqAll(l.SetupArgs()), lw, lw)
}

// lockedWriter lets stdout and stderr, copied by two goroutines, share w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
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
	// SkipSetup skips `pixery-engine setup`.
	SkipSetup bool
	// StopTimeout bounds the graceful stop of a running engine (default 10 min).
	StopTimeout time.Duration
	// HealthTimeout bounds waiting for /v1/health after the start (default 2 min).
	HealthTimeout time.Duration
}

// Result says what Deploy or Update did.
type Result struct {
	Engine   *UploadResult
	Registry []string // registry files uploaded
	PID      int
	Health   *Health
}

// Deploy uploads the engine and registry, runs setup, (re)starts the
// engine and waits for /v1/health. Everything is checked locally before
// the first byte goes out. An engine already running is stopped
// gracefully after the upload and setup, so it keeps serving meanwhile.
func (h *Host) Deploy(ctx context.Context, o Options) (*Result, error) {
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
	if res.Engine, err = h.Upload(ctx, src, l.Engine(), 0o755, progress); err != nil {
		return res, err
	}
	for _, rf := range reg {
		dst := path.Join(l.Models(), rf.Name)
		if _, err := h.Upload(ctx, bytes.NewReader(rf.Data), dst, 0o644, progress); err != nil {
			return res, err
		}
		res.Registry = append(res.Registry, rf.Name)
	}
	if o.Token != "" {
		if err := h.writeSecret(l.TokenFile(), []byte(o.Token)); err != nil {
			return res, err
		}
	}
	if !o.SkipSetup {
		progress(Progress{Step: "setup"})
		if err := h.Setup(ctx, out); err != nil {
			return res, err
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

// Update pushes a new engine (and registry) to a host that has a
// deployment and restarts it gracefully: the old engine gets SIGTERM,
// finishes its queued and running jobs, and exits before the new one
// starts. It is Deploy with a check that something was deployed.
func (h *Host) Update(ctx context.Context, o Options) (*Result, error) {
	if _, err := h.sftp.Stat(h.Layout.Engine()); err != nil {
		return nil, fmt.Errorf("update: no engine deployed at %s on the host (run deploy first): %w", h.Layout.Engine(), err)
	}
	return h.Deploy(ctx, o)
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
