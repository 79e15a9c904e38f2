package server

import (
	"context"
	"image"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
)

// Backend is the engine behind the server: the txt2img pipeline with its
// model registry and memory. The server owns the queue (one job at a time,
// FIFO), the events, the results and the HTTP side; the backend only runs
// what it is given.
type Backend interface {
	// Models lists the registry entries with their state on this host.
	Models() []api.Model
	// LoRAs and IPAdapters list the files on this host.
	LoRAs() []api.FileInfo
	IPAdapters() []api.FileInfo
	// Health reports the device, execution provider, resident models and
	// memory; the server fills in the version and the queue.
	Health() api.Health

	// Validate checks what only the engine knows, on a request whose
	// defaults the server has filled in and whose sampler it has resolved:
	// that the model, the LoRAs and the IP-Adapter exist and fit each other.
	// A problem is a *api.FieldError naming the field ("model",
	// "loras[1].name", "ip_adapter.adapter").
	Validate(job *api.JobRequest) error

	// Generate runs one job to completion and returns one Result per image
	// of the batch, in order. It calls progress from its own goroutine for
	// each step (a Preview every few steps, as it sees fit) and once with
	// StageLoading before loading a model that is not resident. It must
	// return promptly once ctx is cancelled, with ctx's error (and the
	// images it finished, if any).
	Generate(ctx context.Context, job *api.JobRequest, progress func(Progress)) ([]Result, error)

	// Download fetches a model's file into the models folder, calling
	// progress as bytes arrive (total is 0 when unknown). An unknown id is
	// a *api.FieldError on "id".
	Download(ctx context.Context, id string, progress func(done, total int64)) error
}

// Stage is what a job is doing when it reports progress.
type Stage int

// The stages of a job.
const (
	// StageSampling: a denoising step finished (Step of Steps).
	StageSampling Stage = iota
	// StageLoading: Model is being loaded.
	StageLoading
)

// Progress is one report from Generate.
type Progress struct {
	Stage Stage
	// Model is the model being loaded (StageLoading).
	Model string
	// Step counts finished steps from 1; Steps is the total.
	Step, Steps int
	// Preview, when not nil, is a small picture of the image so far (the
	// server sends it as a JPEG; keep it around the latent's size).
	Preview image.Image
}

// Result is one finished image. The server writes it as a PNG whose
// metadata comes from Recipe (pngmeta.Encode), so every image carries the
// A1111 parameters chunk and the pixery recipe chunk.
type Result struct {
	Image  image.Image
	Recipe pngmeta.Recipe
}

// NewBackend makes the engine's backend for a models folder. The pipeline
// sets it (from the package that links it into pixery-engine); while it is
// nil, `pixery-engine serve` refuses to start.
var NewBackend func(modelsDir string) (Backend, error)
