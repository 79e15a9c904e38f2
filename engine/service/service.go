// Package service is the engine behind pixery-engine's HTTP server and the
// desktop app's local mode: the model registry and the models folder, the
// models resident in memory (least recently used first out, within a
// budget), downloads, and the txt2img pipeline. It implements
// server.Backend.
package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/engine/pipeline"
	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/prompt"
	"github.com/pixery/pixery/engine/registry"
	"github.com/pixery/pixery/engine/rng"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/sampler"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/clipvision"
	"github.com/pixery/pixery/engine/sdxl/ipadapter"
	"github.com/pixery/pixery/engine/sdxl/lora"
	"github.com/pixery/pixery/engine/server"
)

// Config sets up a Service.
type Config struct {
	// ModelsDir holds checkpoints, loras/, ip-adapters/ and extra TOMLs.
	ModelsDir string
	Env       *runtime.Env
	// MemoryBudget bounds the estimated memory of resident models in
	// bytes; 0 means 75% of the machine's memory on CPU, 90% of a GPU's
	// would need the driver, so on GPUs it is 0 = one model at a time
	// unless set.
	MemoryBudget int64
	// Threads is the CPU intra-op thread count (0: all cores).
	Threads int
	// PreviewEvery sends a preview every k steps (0: every 2).
	PreviewEvery int
	// Download fetches model files; nil means download.NewClient().
	Download *download.Client
	// Logf receives problems worth telling the operator (broken TOMLs).
	Logf func(format string, args ...any)
}

// Service implements server.Backend.
type Service struct {
	cfg    Config
	hasher *pngmeta.Hasher

	mu        sync.Mutex
	reg       *registry.Registry
	inv       registry.Inventory
	problems  []registry.Problem
	resident  []*resident // most recently used first
	downloads map[string]*dlState
	loading   sync.Mutex // one load at a time
	adapters  map[string]*ipadapter.Model
	loras     map[string]*lora.File // by path and model
}

type resident struct {
	id    string
	model *pipeline.Model
	bytes int64
}

type dlState struct {
	done, total int64
	err         error
	active      bool
}

var _ server.Backend = (*Service)(nil)

// New reads the registry (embedded plus the models folder's TOMLs) and
// scans the folder. Broken TOMLs are logged and skipped.
func New(cfg Config) (*Service, error) {
	if cfg.Env == nil {
		return nil, errors.New("service: no runtime")
	}
	if cfg.ModelsDir == "" {
		return nil, errors.New("service: no models folder")
	}
	if err := os.MkdirAll(cfg.ModelsDir, 0o755); err != nil {
		return nil, fmt.Errorf("models folder: %w", err)
	}
	if cfg.PreviewEvery == 0 {
		cfg.PreviewEvery = 2
	}
	if cfg.Download == nil {
		cfg.Download = download.NewClient()
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.MemoryBudget == 0 && cfg.Env.Provider == runtime.CPU {
		cfg.MemoryBudget = totalMemory() * 3 / 4
	}
	s := &Service{cfg: cfg, hasher: pngmeta.NewHasher(), downloads: map[string]*dlState{}, adapters: map[string]*ipadapter.Model{}, loras: map[string]*lora.File{}}
	if err := s.Rescan(); err != nil {
		return nil, err
	}
	return s, nil
}

// Rescan reloads the registry and rescans the models folder, so files
// dropped in while the engine runs are offered.
func (s *Service) Rescan() error {
	reg, problems := registry.LoadAll(s.cfg.ModelsDir)
	inv, err := registry.Scan(s.cfg.ModelsDir)
	if err != nil {
		return err
	}
	problems = append(problems, reg.AddDiscovered(inv)...)
	for _, p := range problems {
		s.cfg.Logf("registry: %v", p)
	}
	s.mu.Lock()
	s.reg, s.inv, s.problems = reg, inv, problems
	s.mu.Unlock()
	return nil
}

// Problems returns what was wrong with the registry files.
func (s *Service) Problems() []registry.Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]registry.Problem(nil), s.problems...)
}

// Models lists the registry with each model's state.
func (s *Service) Models() []api.Model {
	s.Rescan() // cheap: a directory listing and a few small files
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.Model
	for _, m := range s.reg.List() {
		am := api.Model{
			ID: m.ID, DisplayName: m.DisplayName, File: m.File, Source: m.Source, Architecture: m.Architecture,
			Prediction: m.Prediction, NegativePrompt: m.NegativePrompt.Default, SHA256: m.SHA256, Discovered: m.Discovered,
			Defaults: api.ModelDefaults{CFG: m.Defaults.CFG, Steps: m.Defaults.Steps, Width: m.Defaults.Width, Height: m.Defaults.Height,
				Sampler: m.Defaults.Sampler, Scheduler: m.Defaults.Scheduler, ClipSkip: m.Defaults.ClipSkip},
			PromptGuide: api.PromptGuide{QualityTags: m.PromptGuide.QualityTags, Style: m.PromptGuide.Style, Notes: m.PromptGuide.Notes,
				Prefix: m.PromptGuide.Prefix, Example: m.PromptGuide.Example},
			State: api.ModelMissing,
		}
		st := registry.StateOf(s.cfg.ModelsDir, m)
		if st.State == "on_disk" {
			am.State, am.Size = api.ModelOnDisk, st.Size
		}
		if d := s.downloads[m.ID]; d != nil {
			if d.active {
				am.State = api.ModelDownloading
				if d.total > 0 {
					am.Progress = float64(d.done) / float64(d.total)
				}
			} else if d.err != nil {
				am.Error = d.err.Error()
			}
		}
		for _, r := range s.resident {
			if r.id == m.ID {
				am.State = api.ModelLoaded
			}
		}
		out = append(out, am)
	}
	return out
}

func (s *Service) files(list []registry.FileInfo) []api.FileInfo {
	out := []api.FileInfo{}
	for _, f := range list {
		fi := api.FileInfo{Name: f.Name, File: filepath.Base(f.Path), Size: f.Size, Modified: f.ModTime}
		out = append(out, fi)
	}
	return out
}

// LoRAs lists the LoRA files in the models folder.
func (s *Service) LoRAs() []api.FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files(s.inv.LoRAs)
}

// IPAdapters lists the IP-Adapter files in the models folder.
func (s *Service) IPAdapters() []api.FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files(s.inv.IPAdapters)
}

// Health reports the device and the resident models.
func (s *Service) Health() api.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := api.Health{Device: "CPU", Provider: strings.ToUpper(string(s.cfg.Env.Provider)), Loaded: []string{}}
	if s.cfg.Env.Provider == runtime.CUDA {
		h.Device = "CUDA GPU"
	}
	for _, r := range s.resident {
		h.Loaded = append(h.Loaded, r.id)
	}
	if s.cfg.Env.Provider == runtime.CPU {
		h.FreeMemory, h.TotalMemory = availableMemory(), totalMemory()
	}
	return h
}

// Validate checks what the registry knows: the model exists, and features
// this engine does not run yet are refused by name.
func (s *Service) Validate(job *api.JobRequest) error {
	s.mu.Lock()
	_, err := s.reg.Resolve(job.Model)
	s.mu.Unlock()
	if err != nil {
		return &api.FieldError{Field: "model", Message: err.Error()}
	}
	_, tags, err := prompt.ExtractLoRAs(job.Prompt)
	if err != nil {
		return &api.FieldError{Field: "prompt", Message: err.Error()}
	}
	for i, l := range job.LoRAs {
		if _, err := s.loraPath(l.Name); err != nil {
			return &api.FieldError{Field: fmt.Sprintf("loras[%d].name", i), Message: err.Error()}
		}
	}
	for _, t := range tags {
		if _, err := s.loraPath(t.Name); err != nil {
			return &api.FieldError{Field: "prompt", Message: fmt.Sprintf("<lora:%s>: %v", t.Name, err)}
		}
	}
	if job.IPAdapter != nil {
		if _, err := s.adapterPath(job.IPAdapter.Adapter); err != nil {
			return &api.FieldError{Field: "ip_adapter.adapter", Message: err.Error()}
		}
		if _, err := clipvision.DecodeImage(job.IPAdapter.Image); err != nil {
			return &api.FieldError{Field: "ip_adapter.image", Message: err.Error()}
		}
		if sc := job.IPAdapter.Scale; sc < 0 || sc > 5 {
			return &api.FieldError{Field: "ip_adapter.scale", Message: fmt.Sprintf("scale %g: want 0..5", sc)}
		}
	}
	if job.ClipSkip != 0 && job.ClipSkip != 2 {
		return &api.FieldError{Field: "clip_skip", Message: fmt.Sprintf("clip skip %d: SDXL always uses the penultimate layer (clip skip 2), as A1111 and ComfyUI do", job.ClipSkip)}
	}
	if job.RNG != "" && job.RNG != api.RNGA1111 && job.RNG != api.RNGComfy {
		return &api.FieldError{Field: "rng", Message: fmt.Sprintf("unknown rng %q (want %s or %s)", job.RNG, api.RNGA1111, api.RNGComfy)}
	}
	return nil
}

// model returns the resident model for id, loading it (and evicting the
// least recently used models to stay within the budget) when needed.
func (s *Service) model(ctx context.Context, m *registry.Model, progress func(server.Progress)) (*pipeline.Model, error) {
	s.loading.Lock()
	defer s.loading.Unlock()
	s.mu.Lock()
	for i, r := range s.resident {
		if r.id == m.ID {
			// Move to the front: most recently used.
			copy(s.resident[1:i+1], s.resident[:i])
			s.resident[0] = r
			s.mu.Unlock()
			return r.model, nil
		}
	}
	s.mu.Unlock()
	if progress != nil {
		progress(server.Progress{Stage: server.StageLoading, Model: m.ID})
	}
	path := filepath.Join(s.cfg.ModelsDir, m.File)
	if m.Discovered {
		path = m.Origin
	}
	// Every model gets LoRA slots, so a job's LoRA set (or none) is a
	// change of inputs, never a new session.
	opts := pipeline.LoadOptions{Float16: s.cfg.Env.PreferredFloat16(), Threads: s.cfg.Threads, LoRA: true}
	if m.ConfigDir != "" {
		cfg, err := sdxl.LoadConfigDir(m.ConfigDir)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.ID, err)
		}
		opts.Configs = &cfg
	}
	need := s.estimate(path)
	s.evict(need)
	pm, err := pipeline.Load(ctx, s.cfg.Env, path, opts)
	if err != nil && s.evictAll() > 0 {
		// Out of memory is the likely cause when others were resident:
		// free everything and try once more, so no restart is ever needed.
		pm, err = pipeline.Load(ctx, s.cfg.Env, path, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", m.ID, err)
	}
	s.mu.Lock()
	s.resident = append([]*resident{{id: m.ID, model: pm, bytes: need}}, s.resident...)
	s.mu.Unlock()
	return pm, nil
}

// estimate guesses a model's resident size: its parameters in the compute
// precision (float32 on CPU: ONNX Runtime casts f16 weights up).
func (s *Service) estimate(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if s.cfg.Env.Provider == runtime.CPU {
		return st.Size() * 2 // f16 files; f32 files are overestimated, which is safe
	}
	return st.Size()
}

// evict frees least recently used models until need more bytes fit.
func (s *Service) evict(need int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	budget := s.cfg.MemoryBudget
	for len(s.resident) > 0 {
		var used int64
		for _, r := range s.resident {
			used += r.bytes
		}
		if budget > 0 && used+need <= budget {
			return
		}
		last := s.resident[len(s.resident)-1]
		s.resident = s.resident[:len(s.resident)-1]
		last.model.Close()
	}
}

func (s *Service) evictAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.adapters {
		a.Close()
		delete(s.adapters, k)
	}
	n := len(s.resident)
	for _, r := range s.resident {
		r.model.Close()
	}
	s.resident = nil
	return n
}

// Close frees every resident model.
func (s *Service) Close() error { s.evictAll(); return nil }

// Generate runs one job.
func (s *Service) Generate(ctx context.Context, job *api.JobRequest, progress func(server.Progress)) ([]server.Result, error) {
	s.mu.Lock()
	m, err := s.reg.Resolve(job.Model)
	s.mu.Unlock()
	if err != nil {
		return nil, &api.FieldError{Field: "model", Message: err.Error()}
	}
	pm, err := s.model(ctx, m, progress)
	if err != nil {
		return nil, err
	}
	kind := rng.A1111
	if job.RNG == api.RNGComfy {
		kind = rng.Comfy
	}
	batch := max(job.Batch, 1)
	req := pipeline.Request{
		Prompt: job.Prompt, NegativePrompt: job.NegativePrompt,
		Width: job.Width, Height: job.Height, Steps: job.Steps, CFG: job.CFG,
		Sampler: job.Sampler, Scheduler: job.Scheduler, Seed: uint64(job.Seed), Batch: batch, RNG: kind,
		// Users compare seeds with A1111 and ComfyUI, which both run
		// k-diffusion's samplers.
		Variant:      sampler.A1111,
		PreviewEvery: s.cfg.PreviewEvery,
	}
	// A1111's <lora:name:w> tags in the prompt are applied and removed from
	// the text the encoders see, as A1111 does.
	clean, tags, err := prompt.ExtractLoRAs(job.Prompt)
	if err != nil {
		return nil, &api.FieldError{Field: "prompt", Message: err.Error()}
	}
	req.Prompt = clean
	wanted := append([]api.LoRA(nil), job.LoRAs...)
	for _, t := range tags {
		wanted = append(wanted, api.LoRA{Name: t.Name, Scale: t.Scale})
	}
	var loraRecipe []pngmeta.LoRA
	for _, l := range wanted {
		f, err := s.openLoRA(m.ID, pm, l.Name)
		if err != nil {
			return nil, err
		}
		req.LoRAs = append(req.LoRAs, lora.Applied{File: f, Scale: l.Scale, Name: l.Name})
		hash, _ := s.hasher.AutoV3(f.Path)
		loraRecipe = append(loraRecipe, pngmeta.LoRA{Name: l.Name, Scale: l.Scale, Hash: hash})
	}
	var ipRecipe *pngmeta.IPAdapter
	if ip := job.IPAdapter; ip != nil {
		cond, name, err := s.encodeReference(ctx, m.ID, pm, ip)
		if err != nil {
			return nil, err
		}
		req.IPAdapter, req.IPScale = cond, ip.Scale
		if req.IPScale == 0 {
			req.IPScale = 1 // the API's 0 means the default weight
		}
		ipRecipe = &pngmeta.IPAdapter{Adapter: name, Scale: req.IPScale, ImageSHA256: cond.ImageSHA256}
	}
	if pm.Info.Prediction == sdxl.VPrediction && pm.Info.ZeroTerminalSNR {
		req.CFGRescale = 0.7 // what NoobAI's v-pred model card recommends
	}
	res, err := pm.Generate(ctx, req, func(p pipeline.Progress) {
		if progress != nil {
			progress(server.Progress{Stage: server.StageSampling, Step: p.Step, Steps: p.Steps, Preview: p.Preview})
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	hash, _ := s.hasher.AutoV2(pm.Path)
	var out []server.Result
	for _, img := range res.Images {
		out = append(out, server.Result{Image: img.RGB, Recipe: pngmeta.Recipe{
			Version: pngmeta.RecipeVersion, Generator: "pixery " + api.Version,
			Model: m.ID, ModelFile: m.File, ModelHash: hash, Prediction: string(pm.Info.Prediction),
			Prompt: job.Prompt, NegativePrompt: job.NegativePrompt, Width: job.Width, Height: job.Height,
			Steps: job.Steps, CFG: job.CFG, Sampler: job.Sampler, Scheduler: job.Scheduler,
			Seed: int64(img.Seed), RNG: string(job.RNG), ClipSkip: job.ClipSkip,
			BatchIndex: img.Index, BatchSize: batch, IPAdapter: ipRecipe, LoRAs: loraRecipe,
		}})
	}
	return out, nil
}

// loraPath finds a LoRA file by its name in /v1/loras (A1111's name: the
// file name without extension, with its sub-folder).
func (s *Service) loraPath(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, f := range s.inv.LoRAs {
		if f.Name == name || filepath.Base(f.Path) == name {
			return f.Path, nil
		}
		names = append(names, f.Name)
	}
	return "", fmt.Errorf("unknown LoRA %q (have: %s)", name, strings.Join(names, ", "))
}

// openLoRA reads a LoRA for a model's architecture, keeping it in memory
// for later jobs.
func (s *Service) openLoRA(modelID string, pm *pipeline.Model, name string) (*lora.File, error) {
	path, err := s.loraPath(name)
	if err != nil {
		return nil, &api.FieldError{Field: "loras", Message: err.Error()}
	}
	key := path + "\x00" + modelID
	s.mu.Lock()
	f := s.loras[key]
	s.mu.Unlock()
	if f != nil {
		return f, nil
	}
	f, err = pm.OpenLoRA(path)
	if err != nil {
		return nil, &api.FieldError{Field: "loras", Message: fmt.Sprintf("LoRA %q: %v", name, err)}
	}
	if len(f.Unmatched) > 0 {
		s.cfg.Logf("LoRA %s: %d tensors match no layer of %s and are not applied: %s", name, len(f.Unmatched), modelID, strings.Join(f.Unmatched[:min(5, len(f.Unmatched))], ", "))
	}
	s.mu.Lock()
	s.loras[key] = f
	s.mu.Unlock()
	return f, nil
}

// adapterPath finds an IP-Adapter file by its name in /v1/ip-adapters;
// an empty name picks the only (or first) adapter on disk.
func (s *Service) adapterPath(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, f := range s.inv.IPAdapters {
		if name == "" || f.Name == name || filepath.Base(f.Path) == name {
			return f.Path, nil
		}
		names = append(names, f.Name)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no IP-Adapter in %s", filepath.Join(s.cfg.ModelsDir, registry.IPAdapterDir))
	}
	return "", fmt.Errorf("unknown IP-Adapter %q (have: %s)", name, strings.Join(names, ", "))
}

// encodeReference loads the adapter (kept resident, keyed by adapter and
// model, since its projection is sized for that UNet) and encodes the
// reference image.
func (s *Service) encodeReference(ctx context.Context, modelID string, pm *pipeline.Model, ip *api.IPAdapter) (*ipadapter.Conditioning, string, error) {
	path, err := s.adapterPath(ip.Adapter)
	if err != nil {
		return nil, "", &api.FieldError{Field: "ip_adapter.adapter", Message: err.Error()}
	}
	key := path + "\x00" + modelID
	s.mu.Lock()
	am := s.adapters[key]
	s.mu.Unlock()
	if am == nil {
		enc, err := ipadapter.FindEncoderIn(s.cfg.ModelsDir, path)
		if err != nil {
			return nil, "", fmt.Errorf("ip-adapter %s: %w", filepath.Base(path), err)
		}
		am, err = ipadapter.Load(s.cfg.Env, path, enc, ipadapter.Options{UNet: pm.Configs.UNet, Float16: s.cfg.Env.PreferredFloat16(), Threads: s.cfg.Threads})
		if err != nil {
			return nil, "", fmt.Errorf("ip-adapter %s: %w", filepath.Base(path), err)
		}
		s.mu.Lock()
		s.adapters[key] = am
		s.mu.Unlock()
	}
	cond, err := am.EncodeImage(ctx, ip.Image)
	if err != nil {
		return nil, "", &api.FieldError{Field: "ip_adapter.image", Message: err.Error()}
	}
	return cond, strings.TrimSuffix(filepath.Base(path), ".safetensors"), nil
}

// Download fetches a model's file into the models folder.
func (s *Service) Download(ctx context.Context, id string, progress func(done, total int64)) error {
	s.mu.Lock()
	m, err := s.reg.Resolve(id)
	if err != nil {
		s.mu.Unlock()
		return &api.FieldError{Field: "id", Message: err.Error()}
	}
	if m.Source == "" {
		s.mu.Unlock()
		return &api.FieldError{Field: "id", Message: fmt.Sprintf("model %q has no download source", id)}
	}
	st := &dlState{active: true}
	s.downloads[m.ID] = st
	s.mu.Unlock()
	_, err = s.cfg.Download.Download(ctx, download.Request{
		Source: m.Source, File: m.File, Dest: filepath.Join(s.cfg.ModelsDir, m.File), SHA256: m.SHA256,
		Progress: func(p download.Progress) {
			s.mu.Lock()
			st.done, st.total = p.Done, p.Total
			s.mu.Unlock()
			if progress != nil {
				progress(p.Done, p.Total)
			}
		},
	})
	s.mu.Lock()
	st.active, st.err = false, err
	s.mu.Unlock()
	return err
}

// meminfo reads a field of /proc/meminfo in bytes (0 when unavailable).
func meminfo(field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func totalMemory() int64     { return meminfo("MemTotal") }
func availableMemory() int64 { return meminfo("MemAvailable") }

// resident IDs sorted, for tests.
func (s *Service) residentIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, r := range s.resident {
		ids = append(ids, r.id)
	}
	return ids
}
