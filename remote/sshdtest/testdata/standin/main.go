// Command standin plays pixery-engine in remote/'s tests: `setup` prints
// progress and writes a marker, `serve` answers /v1/health on --addr and
// runs fake jobs (POST /v1/jobs?ms=N); on SIGTERM it stops taking jobs,
// finishes the ones running, logs each, and exits.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var version = "dev"

// readVersion takes the version from the trailer the tests append to this
// program's file: "PIXVER" + version + one byte holding its length.
func readVersion() {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	b, err := os.ReadFile(exe)
	if err != nil || len(b) < 8 {
		return
	}
	n := int(b[len(b)-1])
	start := len(b) - 1 - n
	if start-6 < 0 || string(b[start-6:start]) != "PIXVER" {
		return
	}
	version = string(b[start : len(b)-1])
}

func main() {
	readVersion()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pixery-engine setup|serve|version")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version":
		fmt.Println(version)
	case "setup":
		setup(os.Args[2:])
	case "serve":
		serve(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func setup(args []string) {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	models := fs.String("models", "models", "models folder")
	_ = fs.Parse(args)
	if _, err := os.Stat(filepath.Join(*models, "FAIL_SETUP")); err == nil {
		fmt.Fprintln(os.Stderr, "setup: download of onnxruntime failed: connection reset")
		os.Exit(3)
	}
	for _, p := range []int{0, 50, 100} {
		fmt.Printf("setup: onnxruntime-gpu %d%%\n", p)
	}
	ents, _ := os.ReadDir(*models)
	for _, e := range ents {
		fmt.Printf("setup: registry entry %s ok\n", e.Name())
	}
	if err := os.WriteFile(filepath.Join(*models, ".setup-done"), []byte(version+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		os.Exit(1)
	}
	fmt.Println("setup: done")
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "listen address")
	models := fs.String("models", "models", "models folder")
	_ = fs.Parse(args)
	var (
		mu      sync.Mutex
		jobs    sync.WaitGroup
		nextJob int
		running int
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := running
		mu.Unlock()
		// The token itself is never echoed; its hash lets tests check it arrived.
		tokSum := ""
		if tok, ok := os.LookupEnv("PIXERY_TOKEN"); ok {
			s := sha256.Sum256([]byte(tok))
			tokSum = hex.EncodeToString(s[:])
		}
		json.NewEncoder(w).Encode(map[string]any{"status": "ok", "version": version, "device": "cpu",
			"models_dir": *models, "pid": os.Getpid(), "running_jobs": n, "token_sha256": tokSum})
	})
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		mu.Lock()
		nextJob++
		id := nextJob
		running++
		mu.Unlock()
		jobs.Add(1)
		go func() {
			defer jobs.Done()
			time.Sleep(time.Duration(ms) * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
			fmt.Printf("job %d done\n", id)
		}()
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]any{"id": id})
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		fmt.Println("SIGTERM: finishing jobs")
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Printf("engine %s serving on %s\n", version, *addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	jobs.Wait()
	fmt.Println("stopped")
}
