package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/api"
)

// TestBadRequests sends malformed and invalid requests to every kind of
// route: each gets a 4xx JSON error naming the field at fault, and the
// server stays up.
func TestBadRequests(t *testing.T) {
	fb := newFakeBackend()
	ts := newTestServer(t, fb)
	done, err := ts.Client.Submit(context.Background(), &api.JobRequest{Model: "pony", Seed: 1, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	ts.waitState(done.ID, api.StateDone)

	var pngBuf bytes.Buffer
	png.Encode(&pngBuf, seedImage(16, 16, 1))
	goodImage := base64.StdEncoding.EncodeToString(pngBuf.Bytes())
	gif := base64.StdEncoding.EncodeToString([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	notImage := base64.StdEncoding.EncodeToString([]byte("hello, this is not an image at all"))
	huge := `{"prompt": "` + strings.Repeat("a", 33<<20) + `"}`

	cases := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		field                    string
	}{
		// POST /v1/jobs: syntax and types.
		{"malformed JSON", "POST", "/v1/jobs", `{"prompt": "a",`, nil, 400, "body"},
		{"empty body", "POST", "/v1/jobs", ``, nil, 400, "body"},
		{"not an object", "POST", "/v1/jobs", `[1, 2]`, nil, 400, "body"},
		{"trailing data", "POST", "/v1/jobs", `{"prompt": "a"} {"prompt": "b"}`, nil, 400, "body"},
		{"unknown field", "POST", "/v1/jobs", `{"prompt": "a", "guidance": 5}`, nil, 400, "guidance"},
		{"prompt not a string", "POST", "/v1/jobs", `{"prompt": 5}`, nil, 400, "prompt"},
		{"prompt with NUL", "POST", "/v1/jobs", `{"prompt": "a\u0000b"}`, nil, 400, "prompt"},
		{"width as string", "POST", "/v1/jobs", `{"width": "832"}`, nil, 400, "width"},
		{"steps fractional", "POST", "/v1/jobs", `{"steps": 2.5}`, nil, 400, "steps"},
		{"seed as string", "POST", "/v1/jobs", `{"seed": "lucky"}`, nil, 400, "seed"},
		{"loras not a list", "POST", "/v1/jobs", `{"loras": "add-detail-xl"}`, nil, 400, "loras"},
		{"oversized body", "POST", "/v1/jobs", huge, nil, 413, "body"},
		// Bounds.
		{"width not multiple of 8", "POST", "/v1/jobs", `{"width": 1001}`, nil, 400, "width"},
		{"width too small", "POST", "/v1/jobs", `{"width": 32}`, nil, 400, "width"},
		{"width zero", "POST", "/v1/jobs", `{"width": 0}`, nil, 400, "width"},
		{"height too large", "POST", "/v1/jobs", `{"height": 8192}`, nil, 400, "height"},
		{"pixel budget", "POST", "/v1/jobs", `{"width": 4096, "height": 4096}`, nil, 400, "width"},
		{"steps zero", "POST", "/v1/jobs", `{"steps": 0}`, nil, 400, "steps"},
		{"steps too many", "POST", "/v1/jobs", `{"steps": 151}`, nil, 400, "steps"},
		{"batch zero", "POST", "/v1/jobs", `{"batch": 0}`, nil, 400, "batch"},
		{"batch too large", "POST", "/v1/jobs", `{"batch": 17}`, nil, 400, "batch"},
		{"cfg too low", "POST", "/v1/jobs", `{"cfg": 0.5}`, nil, 400, "cfg"},
		{"cfg too high", "POST", "/v1/jobs", `{"cfg": 31}`, nil, 400, "cfg"},
		{"seed negative", "POST", "/v1/jobs", `{"seed": -2}`, nil, 400, "seed"},
		{"clip skip", "POST", "/v1/jobs", `{"clip_skip": 13}`, nil, 400, "clip_skip"},
		{"rng", "POST", "/v1/jobs", `{"rng": "cuda"}`, nil, 400, "rng"},
		// What only the engine knows.
		{"unknown model", "POST", "/v1/jobs", `{"model": "sd15"}`, nil, 400, "model"},
		{"model not on disk", "POST", "/v1/jobs", `{"model": "noobai"}`, nil, 400, "model"},
		{"unknown sampler", "POST", "/v1/jobs", `{"sampler": "heun"}`, nil, 400, "sampler"},
		{"unknown scheduler", "POST", "/v1/jobs", `{"scheduler": "exponential"}`, nil, 400, "scheduler"},
		{"ddim with karras", "POST", "/v1/jobs", `{"sampler": "ddim", "scheduler": "karras"}`, nil, 400, "scheduler"},
		{"unknown LoRA", "POST", "/v1/jobs", `{"loras": [{"name": "add-detail-xl"}, {"name": "nope"}]}`, nil, 400, "loras[1].name"},
		{"LoRA without name", "POST", "/v1/jobs", `{"loras": [{"scale": 1}]}`, nil, 400, "loras[0].name"},
		{"LoRA twice", "POST", "/v1/jobs", `{"loras": [{"name": "add-detail-xl"}, {"name": "add-detail-xl"}]}`, nil, 400, "loras[1].name"},
		{"LoRA scale", "POST", "/v1/jobs", `{"loras": [{"name": "add-detail-xl", "scale": 50}]}`, nil, 400, "loras[0].scale"},
		{"unknown LoRA field", "POST", "/v1/jobs", `{"loras": [{"name": "add-detail-xl", "weight": 1}]}`, nil, 400, "weight"},
		// IP-Adapter images.
		{"ip image missing", "POST", "/v1/jobs", `{"ip_adapter": {"scale": 0.5}}`, nil, 400, "ip_adapter.image"},
		{"ip image bad base64", "POST", "/v1/jobs", `{"ip_adapter": {"image": "!!!not base64***"}}`, nil, 400, "ip_adapter.image"},
		{"ip image not an image", "POST", "/v1/jobs", `{"ip_adapter": {"image": "` + notImage + `"}}`, nil, 400, "ip_adapter.image"},
		{"ip image GIF", "POST", "/v1/jobs", `{"ip_adapter": {"image": "` + gif + `"}}`, nil, 400, "ip_adapter.image"},
		{"ip image truncated PNG", "POST", "/v1/jobs", `{"ip_adapter": {"image": "` + goodImage[:24] + `"}}`, nil, 400, "ip_adapter.image"},
		{"ip scale", "POST", "/v1/jobs", `{"ip_adapter": {"image": "` + goodImage + `", "scale": 3}}`, nil, 400, "ip_adapter.scale"},
		{"unknown ip adapter", "POST", "/v1/jobs", `{"ip_adapter": {"image": "data:image/png;base64,` + goodImage + `", "adapter": "nope"}}`, nil, 400, "ip_adapter.adapter"},
		// Routes, methods, ids.
		{"wrong method on jobs", "PUT", "/v1/jobs", `{}`, nil, 405, ""},
		{"GET on submit route", "GET", "/v1/jobs", ``, nil, 405, ""},
		{"wrong method on health", "DELETE", "/v1/health", ``, nil, 405, ""},
		{"wrong method on txt2img", "GET", "/sdapi/v1/txt2img", ``, nil, 405, ""},
		{"unknown route", "GET", "/v1/nope", ``, nil, 404, ""},
		{"unknown job", "GET", "/v1/jobs/0000000000000000", ``, nil, 404, "id"},
		{"unknown job events", "GET", "/v1/jobs/0000000000000000/events", ``, nil, 404, "id"},
		{"unknown job cancel", "DELETE", "/v1/jobs/0000000000000000", ``, nil, 404, "id"},
		{"finished job cancel", "DELETE", "/v1/jobs/" + done.ID, ``, nil, 409, ""},
		{"image index not a number", "GET", "/v1/jobs/" + done.ID + "/images/first", ``, nil, 400, "k"},
		{"image index negative", "GET", "/v1/jobs/" + done.ID + "/images/-1", ``, nil, 400, "k"},
		{"image index out of range", "GET", "/v1/jobs/" + done.ID + "/images/5", ``, nil, 404, "k"},
		{"bad Last-Event-ID", "GET", "/v1/jobs/" + done.ID + "/events", ``, []string{"Last-Event-ID", "abc"}, 400, "Last-Event-ID"},
		{"download unknown model", "POST", "/v1/models/sd15/download", ``, nil, 404, "id"},
		// The A1111 routes.
		{"txt2img malformed", "POST", "/sdapi/v1/txt2img", `prompt=cat`, nil, 400, "body"},
		{"txt2img steps type", "POST", "/sdapi/v1/txt2img", `{"steps": "many"}`, nil, 400, "steps"},
		{"txt2img width", "POST", "/sdapi/v1/txt2img", `{"width": 100}`, nil, 400, "width"},
		{"txt2img cfg", "POST", "/sdapi/v1/txt2img", `{"cfg_scale": 100}`, nil, 400, "cfg_scale"},
		{"txt2img sampler", "POST", "/sdapi/v1/txt2img", `{"sampler_name": "LMS"}`, nil, 400, "sampler_name"},
		{"txt2img batch", "POST", "/sdapi/v1/txt2img", `{"batch_size": 64}`, nil, 400, "batch_size"},
		{"txt2img n_iter", "POST", "/sdapi/v1/txt2img", `{"n_iter": 0}`, nil, 400, "n_iter"},
		{"txt2img hires", "POST", "/sdapi/v1/txt2img", `{"enable_hr": true}`, nil, 400, "enable_hr"},
		{"txt2img model", "POST", "/sdapi/v1/txt2img", `{"override_settings": {"sd_model_checkpoint": "nope.safetensors"}}`, nil, 400, "override_settings.sd_model_checkpoint"},
		{"txt2img randn", "POST", "/sdapi/v1/txt2img", `{"override_settings": {"randn_source": "NV"}}`, nil, 400, "override_settings.randn_source"},
		{"options not an object", "POST", "/sdapi/v1/options", `[1]`, nil, 400, "body"},
		{"options unknown model", "POST", "/sdapi/v1/options", `{"sd_model_checkpoint": "nope"}`, nil, 400, "sd_model_checkpoint"},
		{"options model type", "POST", "/sdapi/v1/options", `{"sd_model_checkpoint": 3}`, nil, 400, "sd_model_checkpoint"},
		{"options randn", "POST", "/sdapi/v1/options", `{"randn_source": "NV"}`, nil, 400, "randn_source"},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := ts.do(tc.method, tc.path, tc.body, tc.header...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %.300s", status, tc.status, body)
			}
			var e api.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("body is not a JSON error: %.300s", body)
			}
			if e.Field != tc.field {
				t.Errorf("field %q, want %q (%s)", e.Field, tc.field, e.Error)
			}
			if tc.field != "" && (!strings.HasPrefix(e.Error, tc.field+": ") || e.Message == "") {
				t.Errorf("error %q does not start with the field", e.Error)
			}
			if strings.HasPrefix(tc.path, "/sdapi/") && e.Detail != e.Error {
				t.Errorf("A1111 route without detail: %+v", e)
			}
			t.Logf("%d %s", status, e.Error)
		})
	}
	// Still up, and still working.
	if h, err := ts.Client.Health(context.Background()); err != nil || h.Version != api.Version {
		t.Fatalf("health after the bad requests: %+v, %v", h, err)
	}
	sub, err := ts.Client.Submit(context.Background(), &api.JobRequest{Model: "pony", Seed: 2, Steps: 1,
		IPAdapter: &api.IPAdapter{Image: pngBuf.Bytes(), Scale: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	ts.waitState(sub.ID, api.StateDone)
	if n := len(fb.jobsRun()); n != 2 {
		t.Errorf("the backend ran %d jobs; only the two valid ones should have reached it", n)
	}
	if status, _ := ts.do("GET", "/v1/jobs/"+done.ID+"/images/0", ""); status != http.StatusOK {
		t.Errorf("image fetch: %d", status)
	}
}
