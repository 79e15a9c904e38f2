package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/server"
)

// modelsDir lays out a models folder holding the tiny golden checkpoint
// under each id, with a registry TOML that points at its config folder.
func modelsDir(t *testing.T, ids ...string) string { return modelsDirB(t, ids...) }

func envB(t testing.TB) *runtime.Env { return nntest.Env(t) }

func modelsDirB(t testing.TB, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	configs := nntest.Golden(t, "pipeline/configs")
	for _, id := range ids {
		if err := os.WriteFile(filepath.Join(dir, id+".safetensors"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		toml := fmt.Sprintf(`id = %q
display_name = "Tiny SDXL %s"
file = "%s.safetensors"
architecture = "sdxl"
config_dir = %q

[defaults]
cfg = 5.0
steps = 3
width = 192
height = 128
sampler = "euler_a"

[negative_prompt]
default = "lowres"

[prompt_guide]
quality_tags = ["masterpiece"]
style = "danbooru"
notes = "a tiny random model for tests"
`, id, id, id, configs)
		if err := os.WriteFile(filepath.Join(dir, id+".toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newService(t *testing.T, dir string, budget int64) *Service {
	t.Helper()
	s, err := New(Config{ModelsDir: dir, Env: nntest.Env(t), MemoryBudget: budget, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func serve(t *testing.T, b server.Backend) (string, *api.Client) {
	t.Helper()
	srv, err := server.New(b, server.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	url := "http://" + l.Addr().String()
	return url, api.NewClient(url, "")
}

// TestEndToEndJob submits a job to the real server backed by the real
// pipeline on the tiny checkpoint, follows its events and checks the PNG.
func TestEndToEndJob(t *testing.T) {
	s := newService(t, modelsDir(t, "tiny"), 0)
	_, c := serve(t, s)
	ctx := context.Background()
	ms, err := c.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tiny *api.Model
	for i := range ms {
		if ms[i].ID == "tiny" {
			tiny = &ms[i]
		}
	}
	if tiny == nil || tiny.State != api.ModelOnDisk || tiny.Defaults.Steps != 3 || len(ms) != 4 {
		t.Fatalf("models: %+v", ms)
	}
	sub, err := c.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, (red dress:1.2)", NegativePrompt: "lowres", Seed: 1234, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	steps, previews := 0, 0
	err = c.Events(ctx, sub.ID, func(e api.Event) error {
		types = append(types, string(e.Type))
		if e.Type == api.EventStep {
			steps++
			if len(e.Preview) > 0 {
				previews++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if steps != 3 || previews == 0 || types[len(types)-1] != "done" || !slices.Contains(types, "loading") || !slices.Contains(types, "image") {
		t.Fatalf("events %v (%d steps, %d previews)", types, steps, previews)
	}
	for k := 0; k < 2; k++ {
		raw, err := c.Image(ctx, sub.ID, k)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil || img.Bounds().Dx() != 192 || img.Bounds().Dy() != 128 {
			t.Fatalf("image %d: %v %v", k, err, img.Bounds())
		}
		md, err := pngmeta.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		r := md.Recipe
		if r == nil || r.Model != "tiny" || r.Seed != int64(1234+k) || r.Steps != 3 || r.Sampler != "euler_a" || len(r.ModelHash) != 10 {
			t.Fatalf("recipe %+v", r)
		}
		for _, want := range []string{"1girl, (red dress:1.2)\nNegative prompt: lowres\n", "Steps: 3", "Seed: " + fmt.Sprint(1234+k), "Size: 192x128", "Model hash: " + r.ModelHash, "Model: tiny"} {
			if !strings.Contains(md.Parameters, want) {
				t.Errorf("parameters lack %q:\n%s", want, md.Parameters)
			}
		}
	}
	h, err := c.Health(ctx)
	if err != nil || !slices.Equal(h.Loaded, []string{"tiny"}) || h.Provider != "CPU" {
		t.Fatalf("health %+v %v", h, err)
	}
}

// TestA1111Txt2img drives the A1111 route as SillyTavern does.
func TestA1111Txt2img(t *testing.T) {
	url, _ := serve(t, newService(t, modelsDir(t, "tiny"), 0))
	body := `{"prompt":"1girl, solo","negative_prompt":"lowres","sampler_name":"Euler a","scheduler":"Automatic","steps":2,"cfg_scale":5,"width":192,"height":128,"seed":77,"restore_faces":false,"override_settings":{"sd_model_checkpoint":"tiny"}}`
	resp, err := http.Post(url+"/sdapi/v1/txt2img", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Images []string `json:"images"`
		Info   string   `json:"info"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Images) != 1 {
		t.Fatalf("status %d, %v, %d images", resp.StatusCode, err, len(out.Images))
	}
	raw, err := base64.StdEncoding.DecodeString(out.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	md, err := pngmeta.Decode(bytes.NewReader(raw))
	if err != nil || !strings.Contains(md.Parameters, "Sampler: Euler a") || !strings.Contains(md.Parameters, "Seed: 77") {
		t.Fatalf("%v: %q", err, md.Parameters)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out.Info), &info); err != nil || info["seed"].(float64) != 77 {
		t.Fatalf("info %q: %v", out.Info, err)
	}
}

// TestResidentModelsLRU: within the budget both stay resident and a switch
// costs no load; over it, the least recently used goes first.
func TestResidentModelsLRU(t *testing.T) {
	dir := modelsDir(t, "a", "b", "c")
	ctx := context.Background()
	job := func(s *Service, id string) time.Duration {
		t0 := time.Now()
		loads := 0
		_, err := s.Generate(ctx, &api.JobRequest{Model: id, Prompt: "x", Width: 64, Height: 64, Steps: 1, CFG: 5, Sampler: "euler", Batch: 1, Seed: 1},
			func(p server.Progress) {
				if p.Stage == server.StageLoading {
					loads++
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		if loads > 1 {
			t.Fatalf("%d loading reports", loads)
		}
		return time.Since(t0)
	}
	// Each tiny model is estimated at 2×18 MB; a 80 MB budget holds two.
	s := newService(t, dir, 80e6)
	cold := job(s, "a")
	job(s, "b")
	warm := job(s, "a")
	if got := s.residentIDs(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("resident %v", got)
	}
	t.Logf("cold job %v, job on a resident model %v", cold, warm)
	job(s, "c") // evicts b, the least recently used
	if got := s.residentIDs(); !slices.Equal(got, []string{"c", "a"}) {
		t.Fatalf("after c: resident %v", got)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	s := newService(t, modelsDir(t, "tiny"), 0)
	cases := map[string]*api.JobRequest{
		"model":              {Model: "nope"},
		"loras[0].name":      {Model: "tiny", LoRAs: []api.LoRA{{Name: "ink", Scale: 1}}},
		"ip_adapter.adapter": {Model: "tiny", IPAdapter: &api.IPAdapter{Scale: 0.5}},
		"clip_skip":          {Model: "tiny", ClipSkip: 3},
		"rng":                {Model: "tiny", RNG: "mine"},
	}
	for field, req := range cases {
		err := s.Validate(req)
		fe, ok := err.(*api.FieldError)
		if !ok || fe.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
	if err := s.Validate(&api.JobRequest{Model: "tiny", ClipSkip: 2}); err != nil {
		t.Fatal(err)
	}
}

func TestCancelRunningJob(t *testing.T) {
	s := newService(t, modelsDir(t, "tiny"), 0)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := s.Generate(ctx, &api.JobRequest{Model: "tiny", Prompt: "x", Width: 192, Height: 128, Steps: 50, CFG: 5, Sampler: "euler_a", Batch: 1, Seed: 1},
		func(p server.Progress) {
			if p.Step == 2 {
				cancel()
			}
		})
	if err != context.Canceled {
		t.Fatalf("got %v", err)
	}
}
