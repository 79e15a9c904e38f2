package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/remote/tunnel"
)

// remoteEcho is the service on the "host": an HTTP server on loopback that
// answers /v1/health and echoes POST bodies.
func remoteEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func dialer(t *testing.T, srv *sshdtest.Server) tunnel.Dialer {
	home := sshdtest.Home(t)
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	return func(ctx context.Context) (*ssh.Client, error) {
		c, err := sshx.Dial(ctx, sshx.Target{User: srv.User, Host: srv.Host, Port: srv.Port},
			sshx.Options{ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { return true, nil }, Timeout: 2 * time.Second})
		if err != nil {
			return nil, err
		}
		return c.Client, nil
	}
}

type events struct {
	mu  sync.Mutex
	all []tunnel.Event
	ch  chan tunnel.Event
}

func newEvents() *events { return &events{ch: make(chan tunnel.Event, 100)} }

func (e *events) add(ev tunnel.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	e.ch <- ev
}

// wait returns the next event in state s, failing after d.
func (e *events) wait(t *testing.T, s tunnel.State, d time.Duration) tunnel.Event {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-e.ch:
			t.Logf("event: %v", ev)
			if ev.State == s {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event within %v", s, d)
		}
	}
}

func get(client *http.Client, addr string) (string, error) {
	resp, err := client.Get("http://" + addr + "/v1/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestTunnelReconnectsAfterServerRestart(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	remote := remoteEcho(t)
	ev := newEvents()
	var fwdErrs []error
	var mu sync.Mutex
	tun, err := tunnel.Listen(tunnel.Config{Local: "127.0.0.1:0", Remote: remote, Dial: dialer(t, srv), OnEvent: ev.add,
		OnForwardError: func(err error) { mu.Lock(); fwdErrs = append(fwdErrs, err); mu.Unlock() },
		MinBackoff:     50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, KeepAlive: time.Second, WaitForLink: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tun.Run(ctx) }()
	ev.wait(t, tunnel.Up, 10*time.Second)
	local := tun.Addr().String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 15 * time.Second}
	if body, err := get(client, local); err != nil || body != `{"status":"ok"}` {
		t.Fatalf("through the tunnel: %q %v", body, err)
	}

	// A big body both ways arrives intact.
	payload := make([]byte, 8<<20)
	rand.Read(payload)
	resp, err := client.Post("http://"+local+"/echo", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(back, payload) {
		t.Fatalf("echo through the tunnel: %d bytes back, equal=%v", len(back), bytes.Equal(back, payload))
	}

	// The SSH server dies: the tunnel notices and retries with backoff.
	srv.Kill()
	down := ev.wait(t, tunnel.Down, 5*time.Second)
	if down.Err == nil || !strings.Contains(down.Err.Error(), "connection lost") {
		t.Fatalf("down event %v", down)
	}
	failed := ev.wait(t, tunnel.Down, 5*time.Second)
	if !errors.Is(failed.Err, sshx.ErrUnreachable) {
		t.Fatalf("retry while sshd is dead: %v", failed.Err)
	}
	var retries []time.Duration
	for len(retries) < 3 {
		retries = append(retries, ev.wait(t, tunnel.Down, 5*time.Second).Retry)
	}
	if !(retries[0] < retries[1] && retries[1] <= retries[2] && retries[2] <= 400*time.Millisecond) {
		t.Errorf("no backoff: %v", retries)
	}
	// A request made while down waits for the link to come back.
	type result struct {
		body string
		err  error
	}
	pending := make(chan result, 1)
	go func() { b, err := get(client, local); pending <- result{b, err} }()
	time.Sleep(100 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	up := ev.wait(t, tunnel.Up, 10*time.Second)
	t.Logf("back up after %d attempts", up.Attempt)
	select {
	case r := <-pending:
		if r.err != nil || r.body != `{"status":"ok"}` {
			t.Fatalf("request made while down: %q %v", r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request made while down never finished")
	}
	if body, err := get(client, local); err != nil || body != `{"status":"ok"}` {
		t.Fatalf("after reconnect: %q %v", body, err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	ev.wait(t, tunnel.Closed, 5*time.Second)
	if _, err := net.DialTimeout("tcp", local, time.Second); err == nil {
		t.Fatal("local port still open after close")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fwdErrs) != 0 {
		t.Errorf("forward errors: %v", fwdErrs)
	}
}

func TestTunnelReportsMissingEngine(t *testing.T) {
	srv := sshdtest.Start(t, sshdtest.Options{})
	closed := fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t))
	ev := newEvents()
	fwd := make(chan error, 1)
	tun, err := tunnel.Listen(tunnel.Config{Local: "127.0.0.1:0", Remote: closed, Dial: dialer(t, srv), OnEvent: ev.add,
		OnForwardError: func(err error) { fwd <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tun.Run(ctx)
	ev.wait(t, tunnel.Up, 10*time.Second)
	if _, err := get(&http.Client{Timeout: 5 * time.Second}, tun.Addr().String()); err == nil {
		t.Fatal("request to a missing engine succeeded")
	}
	select {
	case err := <-fwd:
		if !strings.Contains(err.Error(), "is the engine running") || !strings.Contains(err.Error(), closed) {
			t.Fatalf("forward error %v", err)
		}
		t.Logf("%v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no forward error reported")
	}
	// Port in use: a second tunnel on the same local port says so at once.
	_, err = tunnel.Listen(tunnel.Config{Local: tun.Addr().String(), Remote: closed, Dial: dialer(t, srv)})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "another tunnel") {
		t.Fatalf("second listener: %v", err)
	}
}
