// Package api holds the types of pixery-engine's HTTP API and a Go client
// for it. The server (engine/server), the pixery-engine CLI and the desktop
// app all speak through these types, so a change here is a change of the
// wire format.
package api

import (
	"encoding/json"
	"time"
)

// Version is the engine's version, reported by /v1/health and written into
// every image's metadata.
const Version = "0.1.0"

// JobState is where a job is in its life.
type JobState string

// The states of a job. Done, Failed and Cancelled are final.
const (
	StateQueued    JobState = "queued"
	StateLoading   JobState = "loading"
	StateRunning   JobState = "running"
	StateDone      JobState = "done"
	StateFailed    JobState = "failed"
	StateCancelled JobState = "cancelled"
)

// Final reports whether the job will not change any more.
func (s JobState) Final() bool {
	return s == StateDone || s == StateFailed || s == StateCancelled
}

// RNG names the noise generator a job uses.
const (
	// RNGA1111 is A1111's default: its emulation of torch's CUDA generator.
	RNGA1111 = "a1111"
	// RNGComfy is torch's CPU generator, as ComfyUI uses (A1111's "CPU").
	RNGComfy = "comfy"
)

// LoRA is a LoRA to apply, by its name in /v1/loras.
type LoRA struct {
	Name  string  `json:"name"`
	Scale float64 `json:"scale"`
}

// IPAdapter is an image prompt.
type IPAdapter struct {
	// Image is a PNG, JPEG or WebP file; base64 in JSON.
	Image []byte `json:"image"`
	// Scale weighs the image prompt; 0 means 1.
	Scale float64 `json:"scale,omitempty"`
	// Adapter names the adapter in /v1/ip-adapters; empty means the
	// engine's default one.
	Adapter string `json:"adapter,omitempty"`
}

// JobRequest asks for images. In JSON, a field left out takes the model's
// default (registry defaults: size, steps, CFG, sampler, clip skip); Seed
// left out, or -1, means a random seed. In Go, the zero value of those
// fields means the same, except Seed: set it to -1 for a random seed.
type JobRequest struct {
	// Model is a registry id from /v1/models; empty means the engine's
	// current default model.
	Model          string `json:"model,omitempty"`
	Prompt         string `json:"prompt"`
	NegativePrompt string `json:"negative_prompt,omitempty"`
	// Width and Height are multiples of 8 within [MinSize, MaxSize], with
	// Width×Height at most MaxPixels.
	Width  int     `json:"width,omitempty"`
	Height int     `json:"height,omitempty"`
	Steps  int     `json:"steps,omitempty"`
	CFG    float64 `json:"cfg,omitempty"`
	// Sampler is an engine name ("euler_a", "dpmpp_2m_karras") or an A1111
	// name ("Euler a", "DPM++ 2M"); Scheduler an A1111 schedule type
	// ("Automatic", "Karras", "Uniform"). The server rewrites both to the
	// engine's canonical sampler name before a job runs.
	Sampler   string `json:"sampler,omitempty"`
	Scheduler string `json:"scheduler,omitempty"`
	// Seed of the first image; image k of a batch uses Seed+k.
	Seed int64 `json:"seed"`
	// Batch is the number of images, 1 when zero.
	Batch int `json:"batch,omitempty"`
	// RNG is RNGA1111 (the default) or RNGComfy.
	RNG string `json:"rng,omitempty"`
	// ClipSkip counts as A1111 does (2 = penultimate layer).
	ClipSkip  int        `json:"clip_skip,omitempty"`
	LoRAs     []LoRA     `json:"loras,omitempty"`
	IPAdapter *IPAdapter `json:"ip_adapter,omitempty"`
}

// Submitted answers POST /v1/jobs.
type Submitted struct {
	ID string `json:"id"`
	// QueuePosition counts the jobs ahead of this one, the running one
	// included: 0 means it starts now.
	QueuePosition int `json:"queue_position"`
	// Seed is the job's first seed, drawn by the server when the request
	// asked for a random one.
	Seed int64 `json:"seed"`
}

// Job is a job's state, as GET /v1/jobs/{id} returns it.
type Job struct {
	ID            string   `json:"id"`
	State         JobState `json:"state"`
	Model         string   `json:"model"`
	Step          int      `json:"step"`
	Steps         int      `json:"steps"`
	QueuePosition int      `json:"queue_position"`
	// Images are the URLs (paths on the server) of the finished images.
	Images []string `json:"images"`
	// Seeds holds each image's seed, in the order of Images.
	Seeds    []int64    `json:"seeds,omitempty"`
	Error    string     `json:"error,omitempty"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
}

// EventType names a Server-Sent Event of a job's stream.
type EventType string

// The events of a job. Done, Error and Cancelled end the stream.
const (
	EventQueued    EventType = "queued"    // Position
	EventLoading   EventType = "loading"   // Model
	EventStep      EventType = "step"      // Step, Steps, Preview (every few steps)
	EventImage     EventType = "image"     // Index, URL, Seed
	EventDone      EventType = "done"      //
	EventError     EventType = "error"     // Message
	EventCancelled EventType = "cancelled" // Message
)

// Final reports whether the event ends its job's stream.
func (t EventType) Final() bool {
	return t == EventDone || t == EventError || t == EventCancelled
}

// Event is one Server-Sent Event of a job. Its SSE id is ID, its SSE event
// name Type, and its data the JSON of the fields that belong to Type.
type Event struct {
	// ID increases by one with each event of a job, from 1.
	ID   int64     `json:"id"`
	Type EventType `json:"type"`
	// Position: the queued event's count of jobs ahead.
	Position int `json:"position,omitempty"`
	// Model: the model being loaded.
	Model string `json:"model,omitempty"`
	// Step (1-based) and Steps of a step event, named i and n in JSON.
	Step  int `json:"i,omitempty"`
	Steps int `json:"n,omitempty"`
	// Preview is a small JPEG of the image so far (base64 in JSON).
	Preview []byte `json:"preview,omitempty"`
	// Index, URL and Seed of an image event.
	Index int    `json:"index,omitempty"`
	URL   string `json:"url,omitempty"`
	Seed  int64  `json:"seed,omitempty"`
	// Message of an error or cancelled event.
	Message string `json:"message,omitempty"`
}

// MarshalJSON writes exactly the fields of the event's type, so that a zero
// position, index or seed is sent rather than dropped.
func (e Event) MarshalJSON() ([]byte, error) {
	m := map[string]any{"id": e.ID, "type": e.Type}
	switch e.Type {
	case EventQueued:
		m["position"] = e.Position
	case EventLoading:
		m["model"] = e.Model
	case EventStep:
		m["i"], m["n"] = e.Step, e.Steps
		if len(e.Preview) > 0 {
			m["preview"] = e.Preview
		}
	case EventImage:
		m["index"], m["url"], m["seed"] = e.Index, e.URL, e.Seed
	case EventError, EventCancelled:
		m["message"] = e.Message
	}
	return json.Marshal(m)
}

// ModelState says where a model is.
type ModelState string

// The states of a model.
const (
	ModelMissing     ModelState = "missing"
	ModelDownloading ModelState = "downloading"
	ModelOnDisk      ModelState = "on_disk"
	ModelLoaded      ModelState = "loaded"
)

// ModelDefaults are the settings a model is used with unless a request says
// otherwise.
type ModelDefaults struct {
	CFG       float64 `json:"cfg"`
	Steps     int     `json:"steps"`
	Width     int     `json:"width"`
	Height    int     `json:"height"`
	Sampler   string  `json:"sampler"`
	Scheduler string  `json:"scheduler,omitempty"`
	ClipSkip  int     `json:"clip_skip,omitempty"`
}

// PromptGuide tells users how a model wants its prompts.
type PromptGuide struct {
	QualityTags []string `json:"quality_tags,omitempty"`
	Style       string   `json:"style,omitempty"`
	Notes       string   `json:"notes,omitempty"`
	Prefix      string   `json:"prefix,omitempty"`
	Example     string   `json:"example,omitempty"`
}

// Model is a registry entry with its state on this engine.
type Model struct {
	ID           string        `json:"id"`
	DisplayName  string        `json:"display_name"`
	File         string        `json:"file"`
	Source       string        `json:"source,omitempty"`
	Architecture string        `json:"architecture"`
	Prediction   string        `json:"prediction,omitempty"`
	Defaults     ModelDefaults `json:"defaults"`
	// NegativePrompt is the negative prompt offered with the model; the
	// engine does not add it to requests by itself.
	NegativePrompt string      `json:"negative_prompt,omitempty"`
	PromptGuide    PromptGuide `json:"prompt_guide"`
	State          ModelState  `json:"state"`
	// Progress is the fraction downloaded, while State is downloading.
	Progress float64 `json:"progress,omitempty"`
	// Error is why the last download failed.
	Error string `json:"error,omitempty"`
	// Size is the file's size in bytes when it is on disk.
	Size int64 `json:"size,omitempty"`
	// SHA256 is the file's digest when known; Hash A1111's AutoV2 short hash.
	SHA256 string `json:"sha256,omitempty"`
	Hash   string `json:"hash,omitempty"`
	// Discovered marks a checkpoint found on disk that no registry entry names.
	Discovered bool `json:"discovered,omitempty"`
}

// FileInfo is a LoRA or IP-Adapter file on the engine's host.
type FileInfo struct {
	// Name is what requests use; File the file's name in its folder.
	Name     string    `json:"name"`
	File     string    `json:"file"`
	Size     int64     `json:"size"`
	Hash     string    `json:"hash,omitempty"`
	Modified time.Time `json:"modified,omitzero"`
}

// Health is the engine's state, GET /v1/health.
type Health struct {
	Version string `json:"version"`
	// Device is what runs the networks ("NVIDIA H100 80GB", "CPU");
	// Provider the ONNX Runtime execution provider ("CUDA", "CPU").
	Device   string `json:"device"`
	Provider string `json:"provider"`
	// Loaded lists the resident models, most recently used first.
	Loaded []string `json:"loaded_models"`
	// FreeMemory and TotalMemory are the device's memory in bytes (0 when
	// unknown).
	FreeMemory  int64 `json:"free_memory"`
	TotalMemory int64 `json:"total_memory,omitempty"`
	// Queued counts the jobs waiting; Running is the running job's id.
	Queued  int    `json:"queued"`
	Running string `json:"running,omitempty"`
}

// FieldError is a request that is wrong in one field. It is the body of the
// server's 4xx answers (with Error, the two joined, for generic clients).
type FieldError struct {
	// Field is the JSON field ("width", "loras[1].name", "ip_adapter.image"),
	// "body" for the request as a whole, or a header or path parameter.
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
	// Detail repeats Error on the A1111-compatible routes, where clients
	// read FastAPI's "detail".
	Detail string `json:"detail,omitempty"`
}

// ModelList is GET /v1/models' body.
type ModelList struct {
	Models []Model `json:"models"`
}

// FileList is GET /v1/loras' and /v1/ip-adapters' body.
type FileList struct {
	Files []FileInfo `json:"files"`
}
