// Package server is pixery-engine's HTTP API (ARCHITECTURE.md §4): health,
// models and files, a FIFO job queue with Server-Sent Events that resume
// after a dropped connection, finished results kept for a while, and the
// subset of AUTOMATIC1111's /sdapi/v1 that SillyTavern and Open WebUI use.
// The inference itself is a Backend's.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pixery/pixery/engine/api"
)

// DefaultAddr is where the server listens unless told otherwise: loopback
// only, reached from elsewhere through an SSH tunnel.
const DefaultAddr = "127.0.0.1:8000"

// EnvToken is the environment variable that may hold the bearer token.
const EnvToken = "PIXERY_TOKEN"

// Config tunes a Server. Zero fields take the defaults in brackets.
type Config struct {
	// Addr is the address to listen on [DefaultAddr].
	Addr string
	// Token, when set, must accompany every request as
	// "Authorization: Bearer <token>" (or as the password of Basic auth,
	// which A1111 clients send). It is required for a non-loopback Addr.
	Token string
	// MaxBodyBytes bounds a request body [32 MiB].
	MaxBodyBytes int64
	// KeepJobs and KeepBytes bound the finished jobs kept for later
	// fetching [200 jobs, 1 GiB of images and events]; the oldest go first.
	KeepJobs  int
	KeepBytes int64
	// MaxQueued bounds the waiting jobs [1000].
	MaxQueued int
	// KeepAlive is the interval of SSE keep-alive comments [15 s].
	KeepAlive time.Duration
	// CancelWait is how long DELETE /v1/jobs/{id} waits for a running job
	// to stop before answering 202 [10 s].
	CancelWait time.Duration
	// Logger receives the server's log [slog.Default()].
	Logger *slog.Logger
}

func (c *Config) fill() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 32 << 20
	}
	if c.KeepJobs <= 0 {
		c.KeepJobs = 200
	}
	if c.KeepBytes <= 0 {
		c.KeepBytes = 1 << 30
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 1000
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.CancelWait <= 0 {
		c.CancelWait = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server serves a Backend over HTTP.
type Server struct {
	cfg       Config
	backend   Backend
	q         *queue
	mux       *http.ServeMux
	tokenHash [32]byte
	http      *http.Server

	// ctx ends when the server shuts down (downloads stop, streams end).
	ctx    context.Context
	cancel context.CancelFunc

	mu           sync.Mutex
	defaultModel string
	options      map[string]json.RawMessage // A1111 options set by clients
	randnSource  string                     // A1111's "GPU" or "CPU"
	downloads    map[string]*download
}

// CheckAddr enforces the listening rule: loopback is open, any other address
// needs a token.
func CheckAddr(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if token != "" || isLoopback(host) {
		return nil
	}
	where := host
	if where == "" {
		where = "all interfaces"
	}
	return fmt.Errorf("refusing to listen on %s (%s) without a token: anyone who can reach it could use the GPU; "+
		"set --token or %s, or listen on 127.0.0.1 and use an SSH tunnel", addr, where, EnvToken)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New makes a Server for b. It fails when cfg.Addr is not loopback and
// there is no token.
func New(b Backend, cfg Config) (*Server, error) {
	cfg.fill()
	if err := CheckAddr(cfg.Addr, cfg.Token); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		backend:     b,
		q:           newQueue(b, cfg),
		mux:         http.NewServeMux(),
		options:     map[string]json.RawMessage{},
		randnSource: "GPU",
		downloads:   map[string]*download{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	s.routes()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.Background() },
	}
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/health", s.handleHealth)
	m.HandleFunc("GET /v1/models", s.handleModels)
	m.HandleFunc("POST /v1/models/{id}/download", s.handleDownload)
	m.HandleFunc("GET /v1/loras", s.handleLoRAs)
	m.HandleFunc("GET /v1/ip-adapters", s.handleIPAdapters)
	m.HandleFunc("POST /v1/jobs", s.handleSubmit)
	m.HandleFunc("GET /v1/jobs/{id}", s.handleJob)
	m.HandleFunc("DELETE /v1/jobs/{id}", s.handleCancel)
	m.HandleFunc("GET /v1/jobs/{id}/events", s.handleEvents)
	m.HandleFunc("GET /v1/jobs/{id}/images/{k}", s.handleImage)

	m.HandleFunc("GET /sdapi/v1/options", s.handleGetOptions)
	m.HandleFunc("POST /sdapi/v1/options", s.handleSetOptions)
	m.HandleFunc("GET /sdapi/v1/sd-models", s.handleSDModels)
	m.HandleFunc("GET /sdapi/v1/samplers", s.handleSamplers)
	m.HandleFunc("GET /sdapi/v1/schedulers", s.handleSchedulers)
	m.HandleFunc("GET /sdapi/v1/sd-vae", s.handleEmptyList)
	m.HandleFunc("GET /sdapi/v1/latent-upscale-modes", s.handleEmptyList)
	m.HandleFunc("GET /sdapi/v1/upscalers", s.handleUpscalers)
	m.HandleFunc("POST /sdapi/v1/txt2img", s.handleTxt2Img)
	m.HandleFunc("GET /sdapi/v1/progress", s.handleProgress)
	m.HandleFunc("POST /sdapi/v1/interrupt", s.handleInterrupt)
}

// ServeHTTP checks the token, bounds the body and routes, answering unknown
// routes and wrong methods with JSON errors like every other.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pixery-engine"`)
		s.writeError(w, r, http.StatusUnauthorized, errors.New("missing or wrong token: send Authorization: Bearer <token>"))
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	}
	// Handler finds the route without filling r's path values; the mux's
	// own ServeHTTP does both.
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, p := s.mux.Handler(r2); p != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, r, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return
	}
	s.writeError(w, r, http.StatusNotFound, fmt.Errorf("no route %s %s", r.Method, r.URL.Path))
}

// authorized compares the token in constant time (of hashes, so that its
// length does not show either). Basic auth's password is accepted too, as
// SillyTavern and Open WebUI send their A1111 credentials that way.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	var given string
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		given = strings.TrimSpace(t)
	} else if b, ok := strings.CutPrefix(h, "Basic "); ok {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b))
		if err != nil {
			return false
		}
		_, given, _ = strings.Cut(string(raw), ":")
	} else {
		return false
	}
	sum := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1
}

// Handler returns the server's http.Handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Serve accepts connections on l until Shutdown. A TCP listener is held to
// the same rule as Config.Addr: not loopback, then a token.
func (s *Server) Serve(l net.Listener) error {
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		if err := CheckAddr(a.String(), s.cfg.Token); err != nil {
			l.Close()
			return err
		}
	}
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ListenAndServe listens on the configured address and serves.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Shutdown stops the server gracefully: it stops accepting connections and
// jobs, cancels the waiting jobs, lets the running job finish until ctx
// ends (then cancels it), ends the event streams once their jobs are final,
// and returns when every connection is closed or ctx has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(ctx) }()
	qerr := s.q.shutdown(ctx)
	s.cancel()
	herr := <-httpDone
	if errors.Is(herr, context.DeadlineExceeded) || errors.Is(herr, context.Canceled) {
		s.http.Close()
	}
	return errors.Join(qerr, herr)
}

// writeJSON writes v with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"encode answer"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError writes the JSON error body: a *api.FieldError names its field,
// a body over the limit is 413.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, status int, err error) {
	var (
		fe  *api.FieldError
		mbe *http.MaxBytesError
	)
	body := api.ErrorResponse{Error: err.Error()}
	if errors.As(err, &mbe) {
		status = http.StatusRequestEntityTooLarge
		fe = &api.FieldError{Field: "body", Message: fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		body.Error = fe.Error()
	}
	if fe != nil || errors.As(err, &fe) {
		body.Field, body.Message = fe.Field, fe.Message
	}
	if strings.HasPrefix(r.URL.Path, "/sdapi/") {
		body.Detail = body.Error
	}
	if status >= 500 {
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeJSON(w, status, body)
}
