package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/sampler"
)

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := s.backend.Health()
	h.Version = api.Version
	if h.Loaded == nil {
		h.Loaded = []string{}
	}
	st := s.q.status()
	h.Queued = st.queued
	h.Running = ""
	if st.running != nil {
		h.Running = st.running.ID
	}
	writeJSON(w, http.StatusOK, h)
}

// models is the backend's list with the server's download progress laid
// over it.
func (s *Server) models() []api.Model {
	ms := s.backend.Models()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ms {
		d, ok := s.downloads[ms[i].ID]
		if !ok {
			continue
		}
		switch {
		case d.running && ms[i].State == api.ModelMissing:
			ms[i].State = api.ModelDownloading
			if d.total > 0 {
				ms[i].Progress = float64(d.done) / float64(d.total)
			}
		case !d.running && d.err != "" && ms[i].State == api.ModelMissing:
			ms[i].Error = d.err
		}
	}
	return ms
}

func findModel(ms []api.Model, id string) *api.Model {
	for i := range ms {
		if ms[i].ID == id {
			return &ms[i]
		}
	}
	return nil
}

func modelIDs(ms []api.Model) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return strings.Join(ids, ", ")
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	ms := s.models()
	if ms == nil {
		ms = []api.Model{}
	}
	writeJSON(w, http.StatusOK, api.ModelList{Models: ms})
}

type download struct {
	running     bool
	done, total int64
	err         string
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ms := s.models()
	m := findModel(ms, id)
	if m == nil {
		s.writeError(w, r, http.StatusNotFound, &api.FieldError{Field: "id", Message: fmt.Sprintf("unknown model %q (known: %s)", id, modelIDs(ms))})
		return
	}
	switch m.State {
	case api.ModelOnDisk, api.ModelLoaded:
		writeJSON(w, http.StatusOK, m)
		return
	case api.ModelDownloading:
		writeJSON(w, http.StatusAccepted, m)
		return
	}
	s.mu.Lock()
	if d := s.downloads[id]; d != nil && d.running {
		s.mu.Unlock()
		writeJSON(w, http.StatusAccepted, m)
		return
	}
	d := &download{running: true}
	s.downloads[id] = d
	s.mu.Unlock()
	go func() {
		err := s.backend.Download(s.ctx, id, func(done, total int64) {
			s.mu.Lock()
			d.done, d.total = done, total
			s.mu.Unlock()
		})
		s.mu.Lock()
		d.running = false
		if err != nil {
			d.err = err.Error()
			s.cfg.Logger.Warn("download failed", "model", id, "error", err)
		}
		s.mu.Unlock()
	}()
	m.State, m.Progress, m.Error = api.ModelDownloading, 0, ""
	writeJSON(w, http.StatusAccepted, m)
}

func (s *Server) handleLoRAs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.FileList{Files: nonNil(s.backend.LoRAs())})
}

func (s *Server) handleIPAdapters(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.FileList{Files: nonNil(s.backend.IPAdapters())})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// currentModel is the model used when a request names none: the one set
// through A1111's options, else the first resident, else the first on disk.
func (s *Server) currentModel(ms []api.Model) string {
	s.mu.Lock()
	def := s.defaultModel
	s.mu.Unlock()
	if def != "" && findModel(ms, def) != nil {
		return def
	}
	for _, st := range []api.ModelState{api.ModelLoaded, api.ModelOnDisk} {
		for _, m := range ms {
			if m.State == st {
				return m.ID
			}
		}
	}
	return ""
}

// prepare fills a request's defaults from its model, resolves the sampler
// to the engine's canonical name, draws a random seed, and validates it all,
// the backend having the last word.
func (s *Server) prepare(req *api.JobRequest) error {
	ms := s.models()
	if req.Model == "" {
		req.Model = s.currentModel(ms)
	}
	if err := Settle(req, ms); err != nil {
		return err
	}
	return s.backend.Validate(req)
}

// Settle fills a request's defaults from its model's entry in ms, resolves
// the sampler to the engine's canonical name, draws a random seed for -1,
// and validates the fields. The CLI's one-shot generate uses it too, so both
// paths make the same job from the same request.
func Settle(req *api.JobRequest, ms []api.Model) error {
	if req.Model == "" {
		return &api.FieldError{Field: "model", Message: "no model given and none is on disk"}
	}
	m := findModel(ms, req.Model)
	if m == nil {
		return &api.FieldError{Field: "model", Message: fmt.Sprintf("unknown model %q (known: %s)", req.Model, modelIDs(ms))}
	}
	if m.State != api.ModelOnDisk && m.State != api.ModelLoaded {
		return &api.FieldError{Field: "model", Message: fmt.Sprintf("model %q is not on disk (%s): POST /v1/models/%s/download fetches it", m.ID, m.State, m.ID)}
	}
	d := m.Defaults
	pick := func(v *int, def, fallback int) {
		if *v == 0 {
			*v = def
		}
		if *v == 0 {
			*v = fallback
		}
	}
	pick(&req.Width, d.Width, 1024)
	pick(&req.Height, d.Height, 1024)
	pick(&req.Steps, d.Steps, 28)
	pick(&req.ClipSkip, d.ClipSkip, 2)
	pick(&req.Batch, 1, 1)
	if req.CFG == 0 {
		req.CFG = d.CFG
	}
	if req.CFG == 0 {
		req.CFG = 7
	}
	if req.RNG == "" {
		req.RNG = api.RNGA1111
	}
	if req.Sampler == "" {
		req.Sampler = d.Sampler
		if req.Scheduler == "" {
			req.Scheduler = d.Scheduler
		}
	}
	if req.Sampler == "" {
		req.Sampler = "euler_a"
	}
	if _, err := sampler.Lookup(req.Sampler, ""); err != nil {
		return &api.FieldError{Field: "sampler", Message: err.Error()}
	}
	spec, err := sampler.Lookup(req.Sampler, req.Scheduler)
	if err != nil {
		return &api.FieldError{Field: "scheduler", Message: err.Error()}
	}
	req.Sampler, req.Scheduler = spec.Name(), ""
	if req.Seed == -1 {
		// A1111 draws seeds below 2^32 - 2; so do we, so they paste back.
		req.Seed = rand.Int64N(4294967294)
	}
	return req.Validate()
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	req, err := api.DecodeJobRequest(r.Body)
	if err == nil {
		err = s.prepare(req)
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}
	j, err := s.q.submit(req, "")
	if err != nil {
		s.writeError(w, r, errorStatus(err), err)
		return
	}
	snap := s.q.snapshot(j)
	w.Header().Set("Location", "/v1/jobs/"+j.id)
	writeJSON(w, http.StatusAccepted, api.Submitted{ID: j.id, QueuePosition: snap.QueuePosition, Seed: req.Seed})
}

// jobOr404 finds the path's job or answers 404.
func (s *Server) jobOr404(w http.ResponseWriter, r *http.Request) (*job, bool) {
	id := r.PathValue("id")
	j, ok := s.q.get(id)
	if !ok {
		s.writeError(w, r, http.StatusNotFound, &api.FieldError{Field: "id", Message: fmt.Sprintf("job %q: %v", id, errNotFound)})
	}
	return j, ok
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.jobOr404(w, r); ok {
		writeJSON(w, http.StatusOK, s.q.snapshot(j))
	}
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobOr404(w, r)
	if !ok {
		return
	}
	if _, err := s.q.cancel(j.id, "cancelled by request"); err != nil {
		snap := s.q.snapshot(j)
		s.writeError(w, r, http.StatusConflict, fmt.Errorf("job %s already %s", j.id, snap.State))
		return
	}
	select {
	case <-j.done:
		writeJSON(w, http.StatusOK, s.q.snapshot(j))
	case <-time.After(s.cfg.CancelWait):
		writeJSON(w, http.StatusAccepted, s.q.snapshot(j))
	case <-r.Context().Done():
	}
}

func (s *Server) handleImage(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobOr404(w, r)
	if !ok {
		return
	}
	k, err := strconv.Atoi(r.PathValue("k"))
	if err != nil || k < 0 {
		s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "k", Message: fmt.Sprintf("image index must be a non-negative integer, got %q", r.PathValue("k"))})
		return
	}
	s.q.mu.Lock()
	var png []byte
	n, state := len(j.images), j.state
	if k < n {
		png = j.images[k]
	}
	batch := j.req.Batch
	s.q.mu.Unlock()
	if png == nil {
		if !state.Final() && k < batch {
			s.writeError(w, r, http.StatusConflict, &api.FieldError{Field: "k", Message: fmt.Sprintf("image %d is not ready: the job is %s", k, state)})
			return
		}
		s.writeError(w, r, http.StatusNotFound, &api.FieldError{Field: "k", Message: fmt.Sprintf("image %d does not exist: job %s has %d image(s)", k, j.id, n)})
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(png)))
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="pixery-%s-%d.png"`, j.id, k))
	w.Write(png)
}

// handleEvents streams a job's events as Server-Sent Events. Each event's
// id is its number in the job's log; a client that reconnects with
// Last-Event-ID gets the events after it. The stream ends after the job's
// final event.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobOr404(w, r)
	if !ok {
		return
	}
	var last int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "Last-Event-ID", Message: fmt.Sprintf("must be an event id (a non-negative integer), got %q", v)})
			return
		}
		last = n
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 1000\n\n")) {
		return
	}
	tick := time.NewTicker(s.cfg.KeepAlive)
	defer tick.Stop()
	var buf []byte
	for {
		evs, notify, final := s.q.eventsAfter(j, last)
		if len(evs) > 0 {
			buf = buf[:0]
			for _, ev := range evs {
				data, err := json.Marshal(ev)
				if err != nil {
					return
				}
				buf = fmt.Appendf(buf, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, data)
				last = ev.ID
			}
			if !write(buf) {
				return
			}
		}
		if final {
			return
		}
		select {
		case <-notify:
		case <-tick.C:
			if !write([]byte(": keep-alive\n\n")) {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// errorStatus picks the status of a queue error.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, errNotFound):
		return http.StatusNotFound
	case errors.Is(err, errFinished):
		return http.StatusConflict
	case errors.Is(err, errShuttingDown), errors.Is(err, errQueueFull):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
