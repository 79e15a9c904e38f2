package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/server"
)

func init() {
	Register(&Command{
		Name:    "serve",
		Summary: "serve the HTTP API (127.0.0.1:8000; other addresses need --token)",
		Run:     runServe,
	})
}

// EnvModels names the models folder when --models is not given.
const EnvModels = "PIXERY_MODELS"

func defaultModelsDir() string {
	if d := os.Getenv(EnvModels); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "pixery", "models")
	}
	return "models"
}

// serveListening is the line serve prints once it accepts connections.
type serveListening struct {
	Listening string `json:"listening"`
	Models    string `json:"models"`
	Token     bool   `json:"token"`
	Version   string `json:"version"`
}

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", server.DefaultAddr, "address to listen on; anything but loopback requires a token")
	models := fs.String("models", defaultModelsDir(), "models folder: checkpoints, loras/, ip-adapters/, extra registry TOMLs (default $"+EnvModels+" or ~/pixery/models)")
	token := fs.String("token", "", "bearer token required on every request (default $"+server.EnvToken+")")
	grace := fs.Duration("shutdown-timeout", 2*time.Minute, "on SIGINT/SIGTERM, how long the running job may take to finish")
	serveEngine.register(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv(server.EnvToken)
	}
	if err := server.CheckAddr(*addr, tok); err != nil {
		return err
	}
	if server.NewBackend == nil {
		return errors.New("this pixery-engine has no inference backend wired in (server.NewBackend is nil: engine/pipeline is not linked yet)")
	}
	backend, err := server.NewBackend(*models)
	if err != nil {
		return fmt.Errorf("models folder %s: %w", *models, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := server.New(backend, server.Config{Addr: *addr, Token: tok, Logger: log})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	// Signals are caught before the address is announced, so that whoever
	// reads the line may stop the server at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	if err := WriteJSON(stdout, serveListening{Listening: l.Addr().String(), Models: *models, Token: tok != "", Version: api.Version}); err != nil {
		stop()
		srv.Shutdown(context.Background())
		return err
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// A second signal ends the process the default way.
	stop()
	log.Info("shutting down: no new jobs; waiting for the running job", "timeout", *grace)
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			log.Warn("the running job did not finish in time and was cancelled", "timeout", *grace)
			return nil
		}
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
