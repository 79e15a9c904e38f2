package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Host is a connection to one host, for deploying and running the engine.
type Host struct {
	ssh    *ssh.Client
	sftp   *sftp.Client
	Layout Layout
	// writesInFlight is how many SFTP writes an upload keeps in flight.
	writesInFlight int
}

// SFTP tuning (measurements in BENCHMARKS.md). Writes are 128 KiB, four
// times OpenSSH's 32 KiB default and well under the 255 KiB its
// sftp-server accepts, which cuts per-request costs. How many are in flight
// follows the round-trip time: enough to fill the path (about 100 MB/s ×
// RTT), at least 512 KiB and at most sshd's 2 MiB channel window, beyond
// which writes only queue. On loopback, more than about 1 MiB in flight
// made OpenSSH's sftp-server several times slower (its own sftp client
// shows the same with its defaults), so short paths get the minimum.
const (
	sftpPacket       = 128 << 10
	minBytesInFlight = 512 << 10
	maxBytesInFlight = 2 << 20
	pathBandwidth    = 100e6 // bytes/s assumed when sizing the window
)

// Open starts an SFTP session on c. Close releases it (not c).
func Open(c *ssh.Client, l Layout) (*Host, error) {
	if l.Root == "" || !strings.HasPrefix(l.Root, "/") {
		return nil, fmt.Errorf("remote layout root %q must be an absolute path", l.Root)
	}
	sc, err := sftp.NewClient(c,
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(maxBytesInFlight/sftpPacket),
		sftp.MaxPacketUnchecked(sftpPacket),
	)
	if err != nil {
		return nil, fmt.Errorf("start SFTP on the host: %w", err)
	}
	h := &Host{ssh: c, sftp: sc, Layout: l}
	h.writesInFlight = writesFor(h.measureRTT())
	return h, nil
}

// measureRTT times a few cheap SFTP round trips and keeps the fastest.
func (h *Host) measureRTT() time.Duration {
	best := time.Duration(-1)
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		if _, err := h.sftp.Stat("/"); err != nil {
			return 0
		}
		if d := time.Since(t0); best < 0 || d < best {
			best = d
		}
	}
	return best
}

// writesFor sizes the writes in flight for a round-trip time.
func writesFor(rtt time.Duration) int {
	b := int(pathBandwidth * rtt.Seconds())
	b = min(max(b, minBytesInFlight), maxBytesInFlight)
	return b / sftpPacket
}

// Close ends the SFTP session.
func (h *Host) Close() error { return h.sftp.Close() }

// SFTP exposes the SFTP client (for callers that need more).
func (h *Host) SFTP() *sftp.Client { return h.sftp }

// ExitError is a remote command that failed.
type ExitError struct {
	Cmd    string // a short name of what ran, never the full script
	Status int
	Stderr string // the tail of its stderr
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s on the host failed (exit status %d)", e.Cmd, e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	n int
	b []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.n {
		t.b = t.b[len(t.b)-t.n:]
	}
	return len(p), nil
}

// run runs a shell script on the host (no PTY, so Vast's auto-tmux and
// login noise stay out), with stdout and stderr going to the writers
// (nil discards). Cancelling ctx ends the session. name describes it in
// errors; scripts must not contain secrets, as the host's ps shows them.
func (h *Host) run(ctx context.Context, name, script string, stdout, stderr io.Writer) error {
	sess, err := h.ssh.NewSession()
	if err != nil {
		return fmt.Errorf("%s: open SSH session: %w", name, err)
	}
	defer sess.Close()
	tail := &tailBuffer{n: 2048}
	if stdout == nil {
		stdout = io.Discard
	}
	sess.Stdout = stdout
	if stderr == nil {
		sess.Stderr = tail
	} else {
		sess.Stderr = io.MultiWriter(stderr, tail)
	}
	if err := sess.Start(script); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		sess.Close()
		<-done
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return &ExitError{Cmd: name, Status: ee.ExitStatus(), Stderr: string(tail.b)}
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// output runs a script and returns its stdout.
func (h *Host) output(ctx context.Context, name, script string) (string, error) {
	var out bytes.Buffer
	err := h.run(ctx, name, script, &out, nil)
	return out.String(), err
}

// shq quotes s for a POSIX shell.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shqAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shq(a)
	}
	return strings.Join(q, " ")
}
