// Package engine is the desktop app's one way to reach an image engine: the
// Engine interface, with a remote implementation (the HTTP client of
// pixery-engine, through the SSH tunnel or any Server URL) and a local one
// (the engine package running in this process). The UI, the job queue and the
// CLI only ever see the interface.
package engine

import (
	"context"

	"github.com/pixery/pixery/engine/api"
)

// Engine lists what an engine offers, runs jobs and hands back their images.
// Its methods are safe for concurrent use.
type Engine interface {
	// Health reports the engine's device, execution provider and queue.
	Health(ctx context.Context) (*api.Health, error)
	// Models lists the registry entries with their defaults, negative
	// prompt, prompt guide and state on the engine's host.
	Models(ctx context.Context) ([]api.Model, error)
	// DownloadModel starts fetching a registry model's file on the host.
	DownloadModel(ctx context.Context, id string) (*api.Model, error)
	// LoRAs and IPAdapters list the files on the engine's host.
	LoRAs(ctx context.Context) ([]api.FileInfo, error)
	IPAdapters(ctx context.Context) ([]api.FileInfo, error)

	// Submit queues a job; the engine fills in the model's defaults.
	Submit(ctx context.Context, req *api.JobRequest) (*api.Submitted, error)
	// Job returns a job's state and its finished images' URLs.
	Job(ctx context.Context, id string) (*api.Job, error)
	// Events streams a job's events to fn, in order and each once, until
	// the job's final event; a dropped connection is resumed where it
	// stopped (api.Client.Events). fn returning api.ErrStop ends it quietly.
	Events(ctx context.Context, id string, fn func(api.Event) error) error
	// Cancel cancels a queued or running job.
	Cancel(ctx context.Context, id string) (*api.Job, error)
	// Image returns the k-th image of a finished job as PNG bytes with the
	// generation metadata inside.
	Image(ctx context.Context, id string, k int) ([]byte, error)

	// Describe says in a few words which engine this is, for the status
	// bar ("http://localhost:8000", "local · CPU").
	Describe() string
	// Close releases what the engine holds (a local engine's models and
	// server). A remote engine's Close does nothing to the server.
	Close() error
}

// Remote returns the engine served at baseURL ("http://localhost:8000"),
// sending token as a bearer token when not empty. A malformed URL makes every
// call fail with a clear error naming it.
func Remote(baseURL, token string) Engine {
	return &remoteEngine{Client: api.NewClient(baseURL, token), url: baseURL}
}

// remoteEngine is api.Client plus the two methods the interface adds.
type remoteEngine struct {
	*api.Client
	url string
}

func (r *remoteEngine) Describe() string { return r.url }
func (r *remoteEngine) Close() error     { return nil }

var _ Engine = (*remoteEngine)(nil)
