// Command standin plays pixery-engine in remote/'s tests. `setup` takes
// the real setup's flags, prints progress and writes a marker; `serve`
// answers GET /v1/health with the fields of the real engine's api.Health
// (plus pid, models_dir and token_sha256 for the tests) and runs fake
// jobs one at a time, in order, as the real engine's queue does:
// POST /v1/jobs?ms=N&hold=PATH runs a job for N ms and then until PATH
// exists, so that a test decides when a job ends. With PIXERY_TOKEN set,
// every request needs it (Authorization: Bearer), as in the real engine.
// On SIGTERM it stops serving, cancels the queued jobs, finishes the
// running one, logs each, and exits.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
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

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func setup(args []string) {
	// The real setup's flags, so that arguments it would refuse are
	// refused here too.
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	models := fs.String("models", "models", "models folder")
	noModels := fs.Bool("no-models", false, "download no models")
	noLibs := fs.Bool("no-libs", false, "leave the libraries alone")
	var ids listFlag
	fs.Var(&ids, "model", "download only this model")
	fs.String("lib-dir", "", "library folder")
	fs.Int("cuda", 12, "CUDA major version")
	fs.String("ort-url", "", "archive address")
	fs.String("ort-sha256", "", "archive SHA-256")
	fs.Bool("force-libs", false, "reinstall the libraries")
	fs.Bool("verify", false, "verify models")
	fs.String("hf-url", "", "Hugging Face address")
	fs.String("civitai-url", "", "Civitai address")
	fs.Duration("progress-every", 0, "progress interval")
	_ = fs.Parse(args)
	if _, err := os.Stat(filepath.Join(*models, "FAIL_SETUP")); err == nil {
		fmt.Fprintln(os.Stderr, "setup: download of onnxruntime failed: connection reset")
		os.Exit(3)
	}
	if *noLibs {
		fmt.Println("setup: libraries left alone (--no-libs)")
	} else {
		for _, p := range []int{0, 50, 100} {
			fmt.Printf("setup: onnxruntime-gpu %d%%\n", p)
		}
	}
	ents, _ := os.ReadDir(*models)
	for _, e := range ents {
		fmt.Printf("setup: registry entry %s ok\n", e.Name())
	}
	switch {
	case *noModels:
		fmt.Println("setup: no models downloaded (--no-models)")
	case len(ids) > 0:
		fmt.Printf("setup: models %s\n", ids.String())
	}
	if err := os.WriteFile(filepath.Join(*models, ".setup-done"), []byte(version+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		os.Exit(1)
	}
	fmt.Println("setup: done")
}

type job struct {
	id    string
	ms    int
	hold  string
	state string // queued, running, done, cancelled
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "listen address")
	models := fs.String("models", "models", "models folder")
	_ = fs.Parse(args)
	token, hasToken := os.LookupEnv("PIXERY_TOKEN")
	var (
		mu      sync.Mutex
		queue   []*job
		running *job
		closed  bool
		nextJob int
		jobs    = map[string]*job{}
	)
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		// A job ends and the next starts under one lock, so that health
		// never shows the queue between two jobs.
		mu.Lock()
		for {
			for len(queue) == 0 && !closed {
				mu.Unlock()
				<-wake
				mu.Lock()
			}
			if len(queue) == 0 {
				mu.Unlock()
				return
			}
			j := queue[0]
			queue = queue[1:]
			running, j.state = j, "running"
			mu.Unlock()
			time.Sleep(time.Duration(j.ms) * time.Millisecond)
			for j.hold != "" {
				if _, err := os.Stat(j.hold); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			running, j.state = nil, "done"
			fmt.Printf("job %s done\n", j.id)
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := map[string]any{"version": version, "device": "CPU", "provider": "CPU", "loaded_models": []string{},
			"free_memory": 0, "queued": len(queue)}
		if running != nil {
			h["running"] = running.id
		}
		mu.Unlock()
		// Not in the real API: what the tests check the deployment by.
		// The token itself is never echoed; its hash shows it arrived.
		h["pid"], h["models_dir"] = os.Getpid(), *models
		if hasToken {
			s := sha256.Sum256([]byte(token))
			h["token_sha256"] = hex.EncodeToString(s[:])
		}
		writeJSON(w, http.StatusOK, h)
	})
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		mu.Lock()
		defer mu.Unlock()
		if closed {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "server is shutting down; not accepting jobs"})
			return
		}
		nextJob++
		j := &job{id: strconv.Itoa(nextJob), ms: ms, hold: r.URL.Query().Get("hold"), state: "queued"}
		jobs[j.id] = j
		pos := len(queue)
		if running != nil {
			pos++
		}
		queue = append(queue, j)
		poke()
		writeJSON(w, http.StatusAccepted, map[string]any{"id": j.id, "queue_position": pos})
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		j, ok := jobs[r.PathValue("id")]
		var state string
		if ok {
			state = j.state
		}
		mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such job"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": j.id, "state": state})
	})
	want := sha256.Sum256([]byte("Bearer " + token))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if hasToken && subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong token: send Authorization: Bearer <token>"})
			return
		}
		mux.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: *addr, Handler: handler}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		fmt.Println("SIGTERM: finishing jobs")
		mu.Lock()
		closed = true
		for _, j := range queue {
			j.state = "cancelled"
			fmt.Printf("job %s cancelled: shutting down\n", j.id)
		}
		queue = nil
		mu.Unlock()
		poke()
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Printf("engine %s serving on %s\n", version, *addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
	<-workerDone
	fmt.Println("stopped")
}
