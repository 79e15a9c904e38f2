// Package enginetest runs the real engine for the app's tests: a models
// folder holding the tiny golden SDXL checkpoint under registry entries of the
// caller's choosing, and the engine's service and HTTP server on a loopback
// port, reached through app/engine like any remote engine. The listener can
// be dropped and brought back on the same port, so tests can cut the
// connection in the middle of a job.
package enginetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/server"
	"github.com/pixery/pixery/engine/service"
)

// Model is one registry entry of a test models folder. Zero fields take the
// defaults in brackets.
type Model struct {
	ID string
	// DisplayName ["Tiny SDXL <ID>"].
	DisplayName string
	// CFG [5], Steps [3], Width [192], Height [128], Sampler [euler_a].
	CFG           float64
	Steps         int
	Width, Height int
	Sampler       string
	// Negative is the default negative prompt ["lowres"].
	Negative string
	// QualityTags [masterpiece, best quality], Style [danbooru] and Notes
	// ["a tiny random model for tests"] make the prompt guide.
	QualityTags []string
	Style       string
	Notes       string
}

func (m Model) filled() Model {
	if m.DisplayName == "" {
		m.DisplayName = "Tiny SDXL " + m.ID
	}
	if m.CFG == 0 {
		m.CFG = 5
	}
	if m.Steps == 0 {
		m.Steps = 3
	}
	if m.Width == 0 {
		m.Width = 192
	}
	if m.Height == 0 {
		m.Height = 128
	}
	if m.Sampler == "" {
		m.Sampler = "euler_a"
	}
	if m.Negative == "" {
		m.Negative = "lowres"
	}
	if m.QualityTags == nil {
		m.QualityTags = []string{"masterpiece", "best quality"}
	}
	if m.Style == "" {
		m.Style = "danbooru"
	}
	if m.Notes == "" {
		m.Notes = "a tiny random model for tests"
	}
	return m
}

// ModelsDir returns a new temporary models folder holding the tiny golden
// checkpoint (testdata/golden/pipeline/sdxl-tiny.safetensors) under each id,
// each with a registry TOML of the default settings (see Model).
func ModelsDir(t testing.TB, ids ...string) string {
	t.Helper()
	ms := make([]Model, len(ids))
	for i, id := range ids {
		ms[i] = Model{ID: id}
	}
	return ModelsDirWith(t, ms...)
}

// ModelsDirWith is ModelsDir with each model's settings given.
func ModelsDirWith(t testing.TB, models ...Model) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	configs := nntest.Golden(t, "pipeline/configs")
	for _, m := range models {
		m = m.filled()
		if err := os.WriteFile(filepath.Join(dir, m.ID+".safetensors"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		tags := make([]string, len(m.QualityTags))
		for i, q := range m.QualityTags {
			tags[i] = strconv.Quote(q)
		}
		toml := fmt.Sprintf(`id = %q
display_name = %q
file = "%s.safetensors"
architecture = "sdxl"
config_dir = %q

[defaults]
cfg = %s
steps = %d
width = %d
height = %d
sampler = %q

[negative_prompt]
default = %q

[prompt_guide]
quality_tags = [%s]
style = %q
notes = %q
`, m.ID, m.DisplayName, m.ID, configs, strconv.FormatFloat(m.CFG, 'f', -1, 64), m.Steps, m.Width, m.Height,
			m.Sampler, m.Negative, strings.Join(tags, ", "), m.Style, m.Notes)
		if err := os.WriteFile(filepath.Join(dir, m.ID+".toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Server is the real engine serving a models folder on 127.0.0.1.
type Server struct {
	// URL is the server's base URL ("http://127.0.0.1:41234"); Token the
	// bearer token it requires.
	URL, Token string
	// Engine is engine.Remote(URL, Token).
	Engine engine.Engine
	// Service is the engine behind the server.
	Service *service.Service

	addr    string
	handler http.Handler

	mu   sync.Mutex
	http *http.Server // nil while stopped
}

// Start runs the engine (engine/service on nntest.Env, engine/server) for
// modelsDir on a free loopback port with a random token, and shuts it down
// when the test ends.
func Start(t testing.TB, modelsDir string) *Server {
	t.Helper()
	var (
		logMu sync.Mutex
		ended bool
	)
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			t.Logf("engine: "+format, args...)
		}
	}
	svc, err := service.New(service.Config{ModelsDir: modelsDir, Env: nntest.Env(t), Logf: logf})
	if err != nil {
		t.Fatalf("engine service: %v", err)
	}
	token := randomToken(t)
	srv, err := server.New(svc, server.Config{
		Addr:   "127.0.0.1:0",
		Token:  token,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		svc.Close()
		t.Fatalf("engine server: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		svc.Close()
		t.Fatal(err)
	}
	s := &Server{
		URL:     "http://" + l.Addr().String(),
		Token:   token,
		Service: svc,
		addr:    l.Addr().String(),
		handler: srv.Handler(),
	}
	s.Engine = engine.Remote(s.URL, s.Token)
	s.serve(l)
	t.Cleanup(func() {
		s.Stop()
		// The server's own Shutdown ends its queue: waiting jobs are
		// cancelled and the running one is given time to stop.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
		svc.Close()
		logMu.Lock()
		ended = true
		logMu.Unlock()
	})
	return s
}

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// serve starts an HTTP server of the engine's handler on l. The server's
// own http.Server is not used, so that the listener can be closed and
// reopened without shutting down the engine's queue.
func (s *Server) serve(l net.Listener) {
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.http = hs
	s.mu.Unlock()
	go hs.Serve(l)
}

// Stop closes the listener and every open connection, event streams
// included, as a network failure would; the engine goes on running its
// jobs. It does nothing when already stopped.
func (s *Server) Stop() {
	s.mu.Lock()
	hs := s.http
	s.http = nil
	s.mu.Unlock()
	if hs != nil {
		hs.Close()
	}
}

// Restart listens again on the same address after Stop. It retries for a
// few seconds while the port is still being released.
func (s *Server) Restart() error {
	s.mu.Lock()
	running := s.http != nil
	s.mu.Unlock()
	if running {
		return errors.New("enginetest: restart: server is running")
	}
	var err error
	for range 50 {
		var l net.Listener
		if l, err = net.Listen("tcp", s.addr); err == nil {
			s.serve(l)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("enginetest: listen again on %s: %w", s.addr, err)
}

// EngineWith returns an engine of the server whose Events gives up after
// maxReconnects failed reconnections, retry apart: for tests of what happens
// once a connection is lost for long.
func (s *Server) EngineWith(retry time.Duration, maxReconnects int) engine.Engine {
	c := api.NewClient(s.URL, s.Token)
	c.Retry, c.MaxRetry, c.MaxReconnects = retry, retry, maxReconnects
	return engine.FromClient(c, s.URL)
}
