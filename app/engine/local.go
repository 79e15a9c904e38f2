package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/server"
	"github.com/pixery/pixery/engine/service"
)

// LocalConfig sets up the engine running inside the app.
type LocalConfig struct {
	// ModelsDir holds the checkpoints, loras/, ip-adapters/ and extra
	// registry TOMLs.
	ModelsDir string
	// Provider is "auto" (or empty: CUDA when its libraries load, CoreML on
	// macOS, else CPU), "cpu", "cuda" or "coreml".
	Provider string
	// ORTLib is the ONNX Runtime library's path; empty searches the usual
	// places (runtime.Candidates).
	ORTLib string
	// Threads is the CPU thread count per network (0: all cores).
	Threads int
	// MemoryBudget bounds the resident models' memory in bytes (0: the
	// engine's default).
	MemoryBudget int64
	// Logf receives what the operator should know (a provider fallback,
	// broken registry files, server warnings); nil drops it.
	Logf func(format string, args ...any)
}

// Local starts the engine package in this process: ONNX Runtime, the model
// service and the HTTP server, on a random loopback port guarded by a random
// token, and returns a client of it. Going through the same HTTP API as a
// remote engine makes progress, cancelling and events behave identically in
// both modes. ONNX Runtime is initialised once per process, so the Provider
// and ORTLib of a second Local in the same process are those of the first.
// Close stops the server and frees the models.
func Local(cfg LocalConfig) (Engine, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	provider := cfg.Provider
	if provider == "" {
		provider = "auto"
	}
	env, err := runtime.Init(runtime.Config{Library: cfg.ORTLib, Provider: provider, Threads: cfg.Threads})
	if err != nil {
		return nil, fmt.Errorf("local engine: %w", err)
	}
	if env.Fallback != "" {
		logf("local engine: using %s: %s", providerName(string(env.Provider)), env.Fallback)
	}
	svc, err := service.New(service.Config{
		ModelsDir:    cfg.ModelsDir,
		Env:          env,
		Threads:      cfg.Threads,
		MemoryBudget: cfg.MemoryBudget,
		Logf:         logf,
	})
	if err != nil {
		return nil, fmt.Errorf("local engine: models in %s: %w", cfg.ModelsDir, err)
	}
	token, err := randomToken()
	if err != nil {
		svc.Close()
		return nil, fmt.Errorf("local engine: %w", err)
	}
	var logOut io.Writer = io.Discard
	if cfg.Logf != nil {
		logOut = logfWriter(logf)
	}
	srv, err := server.New(svc, server.Config{
		Addr:   "127.0.0.1:0",
		Token:  token,
		Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		svc.Close()
		return nil, fmt.Errorf("local engine: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		svc.Close()
		return nil, fmt.Errorf("local engine: listen: %w", err)
	}
	e := &localEngine{
		Client: api.NewClient("http://"+l.Addr().String(), token),
		desc:   "local · " + providerName(string(env.Provider)),
		srv:    srv,
		svc:    svc,
		served: make(chan struct{}),
	}
	go func() {
		defer close(e.served)
		if err := srv.Serve(l); err != nil {
			logf("local engine: serve: %v", err)
		}
	}()
	return e, nil
}

// localEngine is the client of a server that it owns.
type localEngine struct {
	*api.Client
	desc   string
	srv    *server.Server
	svc    *service.Service
	served chan struct{}

	closeOnce sync.Once
	closeErr  error
}

func (e *localEngine) Describe() string { return e.desc }

// Close shuts the server down (waiting jobs are cancelled, the running one
// gets a few seconds to stop) and frees the resident models. Later calls
// return the first one's error.
func (e *localEngine) Close() error {
	e.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := e.srv.Shutdown(ctx)
		<-e.served
		if cerr := e.svc.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("free models: %w", cerr))
		}
		if err != nil {
			e.closeErr = fmt.Errorf("local engine: close: %w", err)
		}
	})
	return e.closeErr
}

var _ Engine = (*localEngine)(nil)

// providerName is how the status bar names an execution provider.
func providerName(p string) string {
	switch strings.ToLower(p) {
	case "cpu":
		return "CPU"
	case "cuda":
		return "CUDA"
	case "coreml":
		return "CoreML"
	}
	return p
}

// Notice is what the app should tell the user about an engine's device: on
// CPU, that images are slow; nothing otherwise.
func Notice(h *api.Health) string {
	if h == nil || !strings.EqualFold(h.Provider, "cpu") {
		return ""
	}
	return "running on CPU: an SDXL image takes minutes, not seconds (a GPU engine, local CUDA or a rented one, is much faster)"
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// logfWriter turns the server's log lines into Logf calls.
type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
