//go:build unix

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/server"
	"github.com/pixery/pixery/internal/syncio"
)

// stubBackend is the least a Backend can be: one model on disk.
type stubBackend struct{}

func (stubBackend) Models() []api.Model {
	return []api.Model{{ID: "m", File: "m.safetensors", State: api.ModelOnDisk,
		Defaults: api.ModelDefaults{CFG: 5, Steps: 1, Width: 64, Height: 64, Sampler: "euler"}}}
}
func (stubBackend) LoRAs() []api.FileInfo                                      { return nil }
func (stubBackend) IPAdapters() []api.FileInfo                                 { return nil }
func (stubBackend) Health() api.Health                                         { return api.Health{Device: "stub"} }
func (stubBackend) Validate(*api.JobRequest) error                             { return nil }
func (stubBackend) Download(context.Context, string, func(int64, int64)) error { return nil }
func (stubBackend) Generate(ctx context.Context, _ *api.JobRequest, _ func(server.Progress)) ([]server.Result, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func withBackend(t *testing.T, f func(string) (server.Backend, error)) {
	old := server.NewBackend
	server.NewBackend = f
	t.Cleanup(func() { server.NewBackend = old })
}

func TestServeRefuses(t *testing.T) {
	t.Setenv(server.EnvToken, "")
	withBackend(t, nil)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--addr", "127.0.0.1:0"}, 1, "no inference backend"},
		{[]string{"--addr", "0.0.0.0:8000"}, 1, "--token"},
		{[]string{"--addr", ":8000"}, 1, "PIXERY_TOKEN"},
		{[]string{"--bogus"}, 2, "bogus"},
		{[]string{"extra"}, 2, "unexpected argument"},
	} {
		var out, errb bytes.Buffer
		if code := Main(append([]string{"serve"}, tc.args...), &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("serve %v: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
	withBackend(t, func(dir string) (server.Backend, error) { return nil, io.ErrUnexpectedEOF })
	var out, errb bytes.Buffer
	if code := Main([]string{"serve", "--addr", "127.0.0.1:0", "--models", "/nowhere"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "/nowhere") {
		t.Errorf("backend error: exit %d, %q", code, errb.String())
	}
}

func TestServeRunsAndStopsOnSIGTERM(t *testing.T) {
	var gotDir string
	withBackend(t, func(dir string) (server.Backend, error) { gotDir = dir; return stubBackend{}, nil })
	t.Setenv(server.EnvToken, "tok")
	var out, errb syncio.Buffer
	code := make(chan int)
	go func() {
		code <- Main([]string{"serve", "--addr", "127.0.0.1:0", "--models", t.TempDir(), "--shutdown-timeout", "200ms"}, &out, &errb)
	}()
	var line serveListening
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := out.String(); strings.HasSuffix(s, "\n") {
			if err := json.Unmarshal([]byte(s), &line); err != nil {
				t.Fatalf("stdout %q: %v", s, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve printed nothing; stderr %q", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !line.Token || line.Version != api.Version || gotDir == "" {
		t.Errorf("announcement %+v, models dir %q", line, gotDir)
	}
	// The token from the environment is enforced.
	resp, err := http.Get("http://" + line.Listening + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("health without token: %d", resp.StatusCode)
	}
	c := api.NewClient("http://"+line.Listening, "tok")
	if h, err := c.Health(context.Background()); err != nil || h.Device != "stub" {
		t.Fatalf("health: %+v, %v", h, err)
	}
	// A job that never ends on its own: SIGTERM waits the grace period,
	// cancels it, and exits cleanly.
	sub, err := c.Submit(context.Background(), &api.JobRequest{Prompt: "x", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, _ := c.Job(context.Background(), sub.ID)
		if j.State == api.StateRunning {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	select {
	case got := <-code:
		if got != 0 {
			t.Errorf("exit %d; stderr %q", got, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("stopped after %v, before the grace period", d)
	}
	if !strings.Contains(errb.String(), "cancelled") {
		t.Errorf("stderr does not say the job was cancelled: %q", errb.String())
	}
}
