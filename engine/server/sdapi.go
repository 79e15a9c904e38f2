package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/sampler"
)

// The A1111-compatible routes follow AUTOMATIC1111's modules/api/api.py and
// models.py (1.10): the request fields SillyTavern
// (src/endpoints/stable-diffusion.js, public/scripts/extensions/stable-diffusion)
// and Open WebUI (backend/open_webui/routers/images.py) send, and the answer
// shapes they read. Unknown request fields are ignored, as A1111's pydantic
// models ignore them: SillyTavern forwards its own "url" and "auth" with
// every txt2img body.

// a1111Title is the model's A1111 checkpoint title: "file.safetensors [hash]".
func a1111Title(m api.Model) string {
	if m.Hash != "" {
		return m.File + " [" + m.Hash + "]"
	}
	return m.File
}

func fileStem(f string) string { return strings.TrimSuffix(f, filepath.Ext(f)) }

var reTitleHash = regexp.MustCompile(`^(.*?)\s*\[([0-9a-fA-F]{8,64})\]$`)

// resolveA1111Model finds a model by any name an A1111 client may send: the
// title (with or without its hash), the file name, its stem, the registry
// id, or the short hash alone.
func resolveA1111Model(ms []api.Model, name string) *api.Model {
	name = strings.TrimSpace(name)
	base, hash := name, ""
	if m := reTitleHash.FindStringSubmatch(name); m != nil {
		base, hash = m[1], strings.ToLower(m[2])
	}
	for i := range ms {
		m := &ms[i]
		if name == a1111Title(*m) || base == m.File || base == fileStem(m.File) || base == m.ID ||
			(hash != "" && base == "" && strings.HasPrefix(m.SHA256, hash)) || (m.Hash != "" && name == m.Hash) {
			return m
		}
	}
	return nil
}

func (s *Server) handleGetOptions(w http.ResponseWriter, r *http.Request) {
	ms := s.models()
	s.mu.Lock()
	opts := make(map[string]any, len(s.options)+8)
	for k, v := range s.options {
		opts[k] = v
	}
	randn := s.randnSource
	s.mu.Unlock()
	title, hash := "", any(nil)
	if m := findModel(ms, s.currentModel(ms)); m != nil {
		title = a1111Title(*m)
		if m.Hash != "" {
			hash = m.SHA256
		}
	}
	opts["sd_model_checkpoint"] = title
	opts["sd_checkpoint_hash"] = hash
	opts["randn_source"] = randn
	opts["samples_format"] = "png"
	opts["sd_vae"] = "Automatic"
	if _, ok := opts["CLIP_stop_at_last_layers"]; !ok {
		opts["CLIP_stop_at_last_layers"] = 1
	}
	writeJSON(w, http.StatusOK, opts)
}

// handleSetOptions applies sd_model_checkpoint (the default model from then
// on) and randn_source ("GPU" = A1111 noise, "CPU" = torch CPU noise, as
// ComfyUI's); other keys are kept and returned by GET, since Open WebUI
// posts back the whole set it read.
func (s *Server) handleSetOptions(w http.ResponseWriter, r *http.Request) {
	var req map[string]json.RawMessage
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&req); err != nil {
		s.writeError(w, r, http.StatusBadRequest, api.JSONError(err))
		return
	}
	if req == nil {
		s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "body", Message: "want a JSON object of options"})
		return
	}
	var modelID, randn string
	if raw, ok := req["sd_model_checkpoint"]; ok {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "sd_model_checkpoint", Message: "must be a string"})
			return
		}
		ms := s.models()
		m := resolveA1111Model(ms, name)
		if m == nil {
			s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "sd_model_checkpoint", Message: fmt.Sprintf("model %q not found (known: %s)", name, modelIDs(ms))})
			return
		}
		if m.State != api.ModelOnDisk && m.State != api.ModelLoaded {
			s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "sd_model_checkpoint", Message: fmt.Sprintf("model %q is not on disk (%s)", m.ID, m.State)})
			return
		}
		modelID = m.ID
	}
	if raw, ok := req["randn_source"]; ok {
		if err := json.Unmarshal(raw, &randn); err != nil || (randn != "GPU" && randn != "CPU") {
			s.writeError(w, r, http.StatusBadRequest, &api.FieldError{Field: "randn_source", Message: `must be "GPU" (A1111 noise) or "CPU" (torch CPU noise)`})
			return
		}
	}
	s.mu.Lock()
	if modelID != "" {
		s.defaultModel = modelID
	}
	if randn != "" {
		s.randnSource = randn
	}
	for k, v := range req {
		switch k {
		case "sd_model_checkpoint", "sd_checkpoint_hash", "randn_source", "samples_format", "sd_vae":
		default:
			s.options[k] = v
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("null\n")) // A1111's set_config returns nothing
}

type sdModelItem struct {
	Title     string  `json:"title"`
	ModelName string  `json:"model_name"`
	Hash      *string `json:"hash"`
	SHA256    *string `json:"sha256"`
	Filename  string  `json:"filename"`
	Config    *string `json:"config"`
}

func (s *Server) handleSDModels(w http.ResponseWriter, r *http.Request) {
	out := []sdModelItem{}
	for _, m := range s.models() {
		if m.State != api.ModelOnDisk && m.State != api.ModelLoaded {
			continue
		}
		it := sdModelItem{Title: a1111Title(m), ModelName: fileStem(m.File), Filename: m.File}
		if m.Hash != "" {
			it.Hash = &m.Hash
		}
		if m.SHA256 != "" {
			it.SHA256 = &m.SHA256
		}
		out = append(out, it)
	}
	writeJSON(w, http.StatusOK, out)
}

type samplerItem struct {
	Name    string            `json:"name"`
	Aliases []string          `json:"aliases"`
	Options map[string]string `json:"options"`
}

// handleSamplers lists the engine's samplers under A1111's names, with the
// engine's own names (and A1111's k_ aliases) as aliases.
func (s *Server) handleSamplers(w http.ResponseWriter, r *http.Request) {
	var out []samplerItem
	index := map[string]int{}
	kAlias := map[string][]string{
		"Euler a":  {"k_euler_a", "k_euler_ancestral"},
		"Euler":    {"k_euler"},
		"DPM++ 2M": {"k_dpmpp_2m"},
	}
	for _, spec := range sampler.All() {
		name, _ := spec.A1111()
		i, ok := index[name]
		if !ok {
			i = len(out)
			index[name] = i
			it := samplerItem{Name: name, Aliases: append([]string{}, kAlias[name]...), Options: map[string]string{}}
			if name == "DPM++ 2M" {
				it.Options["scheduler"] = "karras" // A1111 1.9+'s default for it
			}
			out = append(out, it)
		}
		out[i].Aliases = append(out[i].Aliases, spec.Name())
	}
	writeJSON(w, http.StatusOK, out)
}

type schedulerItem struct {
	Name           string   `json:"name"`
	Label          string   `json:"label"`
	Aliases        []string `json:"aliases"`
	DefaultRho     float64  `json:"default_rho"`
	NeedInnerModel bool     `json:"need_inner_model"`
}

// handleSchedulers lists the schedule types the engine has, as A1111's
// modules/sd_schedulers.py describes them.
func (s *Server) handleSchedulers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []schedulerItem{
		{Name: "automatic", Label: "Automatic", DefaultRho: -1},
		{Name: "uniform", Label: "Uniform", DefaultRho: -1, NeedInnerModel: true},
		{Name: "karras", Label: "Karras", DefaultRho: 7},
	})
}

func (s *Server) handleEmptyList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []any{})
}

// handleUpscalers answers with A1111's "None" entry only: SillyTavern lists
// upscalers when it connects.
func (s *Server) handleUpscalers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]any{{"name": "None", "model_name": nil, "model_path": nil, "model_url": nil, "scale": 4}})
}

// a1111Txt2Img holds the txt2img fields pixery acts on.
type a1111Txt2Img struct {
	Prompt           *string                    `json:"prompt"`
	NegativePrompt   *string                    `json:"negative_prompt"`
	Seed             *int64                     `json:"seed"`
	SamplerName      *string                    `json:"sampler_name"`
	SamplerIndex     *string                    `json:"sampler_index"`
	Scheduler        *string                    `json:"scheduler"`
	BatchSize        *int                       `json:"batch_size"`
	NIter            *int                       `json:"n_iter"`
	Steps            *int                       `json:"steps"`
	CFGScale         *float64                   `json:"cfg_scale"`
	Width            *int                       `json:"width"`
	Height           *int                       `json:"height"`
	EnableHR         *bool                      `json:"enable_hr"`
	SendImages       *bool                      `json:"send_images"`
	OverrideSettings map[string]json.RawMessage `json:"override_settings"`
}

// a1111Field renames the engine's request fields to A1111's in errors.
var a1111Field = map[string]string{
	"model": "override_settings.sd_model_checkpoint", "cfg": "cfg_scale", "sampler": "sampler_name",
	"batch": "batch_size", "rng": "override_settings.randn_source",
}

const maxNIter = 16

func (s *Server) handleTxt2Img(w http.ResponseWriter, r *http.Request) {
	var in a1111Txt2Img
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		s.writeError(w, r, http.StatusBadRequest, api.JSONError(err))
		return
	}
	req, nIter, err := s.txt2imgRequest(&in)
	if err == nil {
		err = s.prepare(req)
	}
	if err != nil {
		var fe *api.FieldError
		if errors.As(err, &fe) {
			if name, ok := a1111Field[fe.Field]; ok {
				err = &api.FieldError{Field: name, Message: fe.Message}
			}
		}
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}

	// n_iter batches run one after another with seeds continuing, as A1111's
	// process_images does: image k of the call has seed + k.
	group := newJobID()
	jobs := make([]*job, 0, nIter)
	cancelAll := func(why string) {
		for _, j := range jobs {
			s.q.cancel(j.id, why)
		}
	}
	for i := 0; i < nIter; i++ {
		ri := *req
		ri.Seed = req.Seed + int64(i*req.Batch)
		j, err := s.q.submit(&ri, group)
		if err != nil {
			cancelAll("request failed")
			s.writeError(w, r, errorStatus(err), err)
			return
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-r.Context().Done():
			cancelAll("client went away")
			return
		}
	}

	var (
		images    = []string{}
		infotexts []string
		seeds     []int64
		prompts   []string
		negs      []string
		failure   string
	)
	s.q.mu.Lock()
	for _, j := range jobs {
		if j.state == api.StateFailed && failure == "" {
			failure = j.errMsg
		}
		for k, png := range j.images {
			if in.SendImages == nil || *in.SendImages {
				images = append(images, base64.StdEncoding.EncodeToString(png))
			}
			rc := j.recipes[k]
			infotexts = append(infotexts, rc.Parameters())
			seeds = append(seeds, rc.Seed)
			prompts = append(prompts, rc.Prompt)
			negs = append(negs, rc.NegativePrompt)
		}
	}
	s.q.mu.Unlock()
	if failure != "" {
		s.writeError(w, r, http.StatusInternalServerError, errors.New(failure))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"images":     images,
		"parameters": s.txt2imgParameters(&in, req, nIter),
		"info":       s.txt2imgInfo(req, infotexts, seeds, prompts, negs),
	})
}

// txt2imgRequest maps A1111's fields onto a job request.
func (s *Server) txt2imgRequest(in *a1111Txt2Img) (*api.JobRequest, int, error) {
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	num := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	req := &api.JobRequest{
		Prompt: str(in.Prompt), NegativePrompt: str(in.NegativePrompt), Seed: -1,
		Sampler: str(in.SamplerName), Scheduler: str(in.Scheduler),
		Width: num(in.Width), Height: num(in.Height), Steps: num(in.Steps), Batch: num(in.BatchSize),
	}
	if req.Sampler == "" {
		req.Sampler = str(in.SamplerIndex)
	}
	if in.Seed != nil {
		req.Seed = *in.Seed
	}
	if in.CFGScale != nil {
		req.CFG = *in.CFGScale
	}
	explicit := []struct {
		field string
		set   bool
		val   int
		lo    int
	}{
		{"width", in.Width != nil, req.Width, api.MinSize},
		{"height", in.Height != nil, req.Height, api.MinSize},
		{"steps", in.Steps != nil, req.Steps, api.MinSteps},
		{"batch_size", in.BatchSize != nil, req.Batch, 1},
	}
	for _, e := range explicit {
		if e.set && e.val < e.lo {
			return nil, 0, &api.FieldError{Field: e.field, Message: fmt.Sprintf("must be at least %d, got %d", e.lo, e.val)}
		}
	}
	if in.CFGScale != nil && *in.CFGScale < api.MinCFG {
		return nil, 0, &api.FieldError{Field: "cfg_scale", Message: fmt.Sprintf("must be between %g and %g, got %g", api.MinCFG, api.MaxCFG, *in.CFGScale)}
	}
	nIter := 1
	if in.NIter != nil {
		nIter = *in.NIter
	}
	if nIter < 1 || nIter > maxNIter {
		return nil, 0, &api.FieldError{Field: "n_iter", Message: fmt.Sprintf("must be between 1 and %d, got %d", maxNIter, nIter)}
	}
	if in.EnableHR != nil && *in.EnableHR {
		return nil, 0, &api.FieldError{Field: "enable_hr", Message: "hires fix is not supported by pixery-engine; generate at the final size instead"}
	}
	s.mu.Lock()
	if s.randnSource == "CPU" {
		req.RNG = api.RNGComfy
	}
	s.mu.Unlock()
	// override_settings: the checkpoint and the noise source apply; clip
	// skip is left to the model, as A1111 leaves it for SDXL (its
	// sdxl_clip_l_skip option is off by default), and the rest is ignored.
	if raw, ok := in.OverrideSettings["sd_model_checkpoint"]; ok && string(raw) != "null" {
		var name string
		if err := json.Unmarshal(raw, &name); err != nil {
			return nil, 0, &api.FieldError{Field: "override_settings.sd_model_checkpoint", Message: "must be a string"}
		}
		if name != "" {
			ms := s.models()
			m := resolveA1111Model(ms, name)
			if m == nil {
				return nil, 0, &api.FieldError{Field: "override_settings.sd_model_checkpoint", Message: fmt.Sprintf("model %q not found (known: %s)", name, modelIDs(ms))}
			}
			req.Model = m.ID
		}
	}
	if raw, ok := in.OverrideSettings["randn_source"]; ok && string(raw) != "null" {
		var v string
		json.Unmarshal(raw, &v)
		switch v {
		case "GPU":
			req.RNG = api.RNGA1111
		case "CPU":
			req.RNG = api.RNGComfy
		default:
			return nil, 0, &api.FieldError{Field: "override_settings.randn_source", Message: `must be "GPU" or "CPU"`}
		}
	}
	return req, nIter, nil
}

// txt2imgParameters echoes the request as A1111 does (vars(txt2imgreq)),
// with the values that were used.
func (s *Server) txt2imgParameters(in *a1111Txt2Img, req *api.JobRequest, nIter int) map[string]any {
	samplerName, schedule := a1111SamplerNames(req.Sampler)
	requestedSeed := int64(-1)
	if in.Seed != nil {
		requestedSeed = *in.Seed
	}
	send := in.SendImages == nil || *in.SendImages
	overrides := in.OverrideSettings
	if overrides == nil {
		overrides = map[string]json.RawMessage{}
	}
	return map[string]any{
		"prompt": req.Prompt, "negative_prompt": req.NegativePrompt, "seed": requestedSeed,
		"sampler_name": samplerName, "scheduler": schedule, "batch_size": req.Batch, "n_iter": nIter,
		"steps": req.Steps, "cfg_scale": req.CFG, "width": req.Width, "height": req.Height,
		"override_settings": overrides, "send_images": send, "save_images": false,
	}
}

func a1111SamplerNames(name string) (string, string) {
	spec, err := sampler.Lookup(name, "")
	if err != nil {
		return name, "Automatic"
	}
	return spec.A1111()
}

// txt2imgInfo is A1111's Processed.js(): a JSON *string*.
func (s *Server) txt2imgInfo(req *api.JobRequest, infotexts []string, seeds []int64, prompts, negs []string) string {
	samplerName, _ := a1111SamplerNames(req.Sampler)
	var modelName, modelHash any
	if m := findModel(s.models(), req.Model); m != nil {
		modelName = fileStem(m.File)
		if m.Hash != "" {
			modelHash = m.Hash
		}
	}
	first := func(v []string) string {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	seed := req.Seed
	if len(seeds) > 0 {
		seed = seeds[0]
	}
	subseeds := make([]int64, len(seeds))
	for i := range subseeds {
		subseeds[i] = -1
	}
	info := map[string]any{
		"prompt": first(prompts), "all_prompts": nonNil(prompts),
		"negative_prompt": first(negs), "all_negative_prompts": nonNil(negs),
		"seed": seed, "all_seeds": nonNil(seeds), "subseed": -1, "all_subseeds": subseeds, "subseed_strength": 0,
		"width": req.Width, "height": req.Height, "sampler_name": samplerName, "cfg_scale": req.CFG,
		"steps": req.Steps, "batch_size": req.Batch, "restore_faces": false, "face_restoration_model": nil,
		"sd_model_name": modelName, "sd_model_hash": modelHash, "sd_vae_name": nil, "sd_vae_hash": nil,
		"seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": 0,
		"extra_generation_params": map[string]any{}, "index_of_first_image": 0, "infotexts": nonNil(infotexts),
		"styles": []string{}, "job_timestamp": time.Now().Format("20060102150405"), "clip_skip": req.ClipSkip,
		"is_using_inpainting_conditioning": false, "version": "pixery " + api.Version,
	}
	b, _ := json.Marshal(info)
	return string(b)
}

// handleProgress is A1111's /sdapi/v1/progress for the running job.
func (s *Server) handleProgress(w http.ResponseWriter, r *http.Request) {
	st := s.q.status()
	state := map[string]any{
		"skipped": false, "interrupted": false, "stopping_generation": false, "job": "",
		"job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
	}
	out := map[string]any{"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": nil, "textinfo": nil}
	if st.running == nil {
		writeJSON(w, http.StatusOK, out)
		return
	}
	job := st.running
	count, no := max(st.groupLen, 1), st.groupNo
	state["job"] = "txt2img"
	state["job_count"], state["job_no"] = count, no
	state["job_timestamp"] = st.started.Format("20060102150405")
	state["sampling_step"], state["sampling_steps"] = job.Step, job.Steps
	// A1111's arithmetic: 0.01 to avoid dividing by zero, the finished jobs
	// of the call, and the running job's share.
	progress := 0.01 + float64(no)/float64(count)
	if job.Steps > 0 {
		progress += float64(job.Step) / float64(job.Steps) / float64(count)
	}
	// The time left: the running job's pace, for it and the call's jobs after it.
	elapsed := time.Since(st.started).Seconds()
	eta := 0.0
	if job.Steps > 0 && job.Step > 0 {
		per := elapsed * float64(job.Steps) / float64(job.Step)
		eta = per - elapsed + per*float64(count-no-1)
	}
	out["eta_relative"] = eta
	out["progress"] = min(progress, 1)
	if st.preview != nil && r.URL.Query().Get("skip_current_image") != "true" {
		var buf bytes.Buffer
		if png.Encode(&buf, st.preview) == nil {
			out["current_image"] = base64.StdEncoding.EncodeToString(buf.Bytes())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleInterrupt(w http.ResponseWriter, r *http.Request) {
	s.q.interrupt()
	writeJSON(w, http.StatusOK, map[string]any{})
}
