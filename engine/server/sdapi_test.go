package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
)

// txt2imgAnswer is A1111's TextToImageResponse (modules/api/models.py):
// info is a JSON string, not an object.
type txt2imgAnswer struct {
	Images     []string       `json:"images"`
	Parameters map[string]any `json:"parameters"`
	Info       string         `json:"info"`
}

// a1111Info is the part of Processed.js() (modules/processing.py) clients read.
type a1111Info struct {
	Prompt      string   `json:"prompt"`
	AllSeeds    []int64  `json:"all_seeds"`
	Seed        int64    `json:"seed"`
	Infotexts   []string `json:"infotexts"`
	SamplerName string   `json:"sampler_name"`
	SDModelName string   `json:"sd_model_name"`
	SDModelHash string   `json:"sd_model_hash"`
	Width       int      `json:"width"`
	CFGScale    float64  `json:"cfg_scale"`
}

func (ts *testServer) post(path, body string, header ...string) (int, []byte) {
	return ts.do("POST", path, body, append([]string{"Content-Type", "application/json"}, header...)...)
}

// TestSillyTavern replays what SillyTavern's server does for its
// "SD Web UI (AUTOMATIC1111)" source (src/endpoints/stable-diffusion.js at
// ba6f7b7a, with the body built by generateAutoImage in
// public/scripts/extensions/stable-diffusion/index.js): ping, list,
// set-model (then poll progress until idle), generate.
func TestSillyTavern(t *testing.T) {
	fb := newFakeBackend()
	ts := newTestServer(t, fb)
	// SillyTavern always sends Basic auth built from its "user:pass"
	// setting, empty or not; without a token the server ignores it.
	auth := []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(":"))}

	// /ping: GET /sdapi/v1/options must be ok.
	if status, body := ts.do("GET", "/sdapi/v1/options", "", auth...); status != 200 {
		t.Fatalf("options: %d %s", status, body)
	}
	// /samplers, /schedulers: data.map(x => x.name).
	var samplers []struct{ Name string }
	ts.getJSON("/sdapi/v1/samplers", &samplers)
	var names []string
	for _, s := range samplers {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "Euler,Euler a,DPM++ 2M,DDIM" {
		t.Errorf("samplers %v", names)
	}
	var schedulers []struct{ Name, Label string }
	ts.getJSON("/sdapi/v1/schedulers", &schedulers)
	if len(schedulers) != 3 || schedulers[2].Name != "karras" || schedulers[0].Label != "Automatic" {
		t.Errorf("schedulers %+v", schedulers)
	}
	// /upscalers and /vaes (sd-vae) are listed on connect.
	var ups []struct{ Name string }
	ts.getJSON("/sdapi/v1/upscalers", &ups)
	if len(ups) != 1 || ups[0].Name != "None" {
		t.Errorf("upscalers %+v", ups)
	}
	var vaes []any
	ts.getJSON("/sdapi/v1/sd-vae", &vaes)
	// /models: data.map(x => ({value: x.title, text: x.title})).
	var models []struct{ Title, ModelName string }
	ts.getJSON("/sdapi/v1/sd-models", &models)
	if len(models) != 2 || models[0].Title != "animagine-xl-4.0.safetensors [6327eca98b]" || models[1].Title != "ponyDiffusionV6XL.safetensors" {
		t.Fatalf("sd-models %+v (the missing model must not be listed)", models)
	}
	// /set-model: POST options {sd_model_checkpoint: title}, then poll
	// progress until progress === 0 and job_count === 0.
	if status, body := ts.post("/sdapi/v1/options", `{"sd_model_checkpoint":"ponyDiffusionV6XL.safetensors"}`, auth...); status != 200 {
		t.Fatalf("set model: %d %s", status, body)
	}
	var prog struct {
		Progress float64
		State    map[string]any
	}
	ts.getJSON("/sdapi/v1/progress", &prog)
	if prog.Progress != 0 || prog.State["job_count"] != 0.0 {
		t.Errorf("idle progress %+v", prog)
	}
	// /get-model: data['sd_model_checkpoint'].
	var opts map[string]any
	ts.getJSON("/sdapi/v1/options", &opts)
	if opts["sd_model_checkpoint"] != "ponyDiffusionV6XL.safetensors" {
		t.Errorf("current model %v", opts["sd_model_checkpoint"])
	}

	// /generate: the extension's body plus the server's url and auth.
	body := `{
		"url": "http://127.0.0.1:7860", "auth": "",
		"prompt": "score_9, 1girl, smile", "negative_prompt": "lowres, bad anatomy",
		"sampler_name": "Euler a", "scheduler": "Automatic", "steps": 3, "cfg_scale": 7, "width": 64, "height": 72,
		"restore_faces": false, "enable_hr": false, "hr_upscaler": "Latent", "hr_scale": 2, "denoising_strength": 0.7,
		"hr_second_pass_steps": 0, "seed": 4242,
		"override_settings": {"CLIP_stop_at_last_layers": 1},
		"override_settings_restore_afterwards": true, "clip_skip": 1,
		"save_images": true, "send_images": true, "do_not_save_grid": false, "do_not_save_samples": false
	}`
	status, raw := ts.post("/sdapi/v1/txt2img", body, auth...)
	if status != 200 {
		t.Fatalf("txt2img: %d %s", status, raw)
	}
	var ans txt2imgAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		t.Fatal(err)
	}
	// SillyTavern reads data.images[0] as base64 PNG.
	if len(ans.Images) != 1 {
		t.Fatalf("%d images", len(ans.Images))
	}
	png, err := base64.StdEncoding.DecodeString(ans.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := seedOf(t, png); got != 4242 {
		t.Errorf("image seed %d", got)
	}
	m, err := pngmeta.Decode(bytes.NewReader(png))
	if err != nil || m.A1111 == nil || m.A1111.Prompt != "score_9, 1girl, smile" || m.A1111.Sampler != "Euler a" ||
		m.A1111.Model != "ponyDiffusionV6XL" || m.A1111.Width != 64 || m.A1111.Height != 72 {
		t.Errorf("image metadata %+v, %v", m, err)
	}
	ran := fb.jobsRun()[0]
	if ran.Model != "pony" || ran.Sampler != "euler_a" || ran.Steps != 3 || ran.CFG != 7 || ran.ClipSkip != 2 {
		t.Errorf("job %+v", ran)
	}
	var info a1111Info
	if err := json.Unmarshal([]byte(ans.Info), &info); err != nil {
		t.Fatalf("info is not a JSON string of an object: %v (%q)", err, ans.Info)
	}
	if info.Seed != 4242 || len(info.AllSeeds) != 1 || info.SamplerName != "Euler a" || info.SDModelName != "ponyDiffusionV6XL" ||
		len(info.Infotexts) != 1 || info.Infotexts[0] != m.Parameters || info.Width != 64 || info.CFGScale != 7 {
		t.Errorf("info %+v", info)
	}
	if ans.Parameters["prompt"] != "score_9, 1girl, smile" || ans.Parameters["seed"] != 4242.0 || ans.Parameters["steps"] != 3.0 {
		t.Errorf("parameters %v", ans.Parameters)
	}
}

// TestOpenWebUI replays Open WebUI's automatic1111 engine
// (backend/open_webui/routers/images.py): get_models reads title and
// model_name, set_image_model GETs the options and POSTs them all back with
// sd_model_checkpoint changed, and image_generations sends prompt,
// batch_size, width, height, steps, negative_prompt plus the admin's
// AUTOMATIC1111_PARAMS, then reads res['images'] and res['info'].
func TestOpenWebUI(t *testing.T) {
	fb := newFakeBackend()
	ts := newTestServer(t, fb)
	var models []struct {
		Title     string `json:"title"`
		ModelName string `json:"model_name"`
	}
	ts.getJSON("/sdapi/v1/sd-models", &models)
	if models[0].ModelName != "animagine-xl-4.0" {
		t.Errorf("model_name %q", models[0].ModelName)
	}
	var opts map[string]any
	ts.getJSON("/sdapi/v1/options", &opts)
	opts["sd_model_checkpoint"] = models[0].Title
	b, _ := json.Marshal(opts)
	if status, body := ts.post("/sdapi/v1/options", string(b), "authorization", ""); status != 200 {
		t.Fatalf("post options back: %d %s", status, body)
	}
	ts.getJSON("/sdapi/v1/options", &opts)
	if opts["sd_model_checkpoint"] != models[0].Title {
		t.Errorf("model after set: %v", opts["sd_model_checkpoint"])
	}

	body := `{"prompt": "a lighthouse at dusk", "batch_size": 2, "width": 512, "height": 512, "steps": 2,
		"negative_prompt": "blurry", "cfg_scale": 6.5, "sampler_name": "DPM++ 2M", "scheduler": "Karras", "n_iter": 2}`
	status, raw := ts.post("/sdapi/v1/txt2img", body)
	if status != 200 {
		t.Fatalf("txt2img: %d %s", status, raw)
	}
	var ans txt2imgAnswer
	json.Unmarshal(raw, &ans)
	var info a1111Info
	if err := json.Unmarshal([]byte(ans.Info), &info); err != nil {
		t.Fatal(err)
	}
	// n_iter 2 × batch 2: four images, seeds continuing from the first.
	if len(ans.Images) != 4 || len(info.AllSeeds) != 4 {
		t.Fatalf("%d images, seeds %v", len(ans.Images), info.AllSeeds)
	}
	for k, img := range ans.Images {
		png, _ := base64.StdEncoding.DecodeString(img)
		if got, want := seedOf(t, png), info.AllSeeds[0]+int64(k); got != want&0xffffff || info.AllSeeds[k] != want {
			t.Errorf("image %d: seed %d, want %d (all_seeds %v)", k, got, want, info.AllSeeds)
		}
	}
	runs := fb.jobsRun()
	if len(runs) != 2 || runs[0].Model != "animagine" || runs[0].Sampler != "dpmpp_2m_karras" || runs[0].Batch != 2 ||
		runs[1].Seed != runs[0].Seed+2 || runs[0].Width != 512 {
		t.Errorf("jobs %+v", runs)
	}
	if info.SDModelHash != "6327eca98b" || info.SamplerName != "DPM++ 2M" {
		t.Errorf("info %+v", info)
	}
}

func TestA1111ProgressAndInterrupt(t *testing.T) {
	fb := newFakeBackend()
	fb.Gate = make(chan struct{})
	fb.PreviewEvery = 1
	ts := newTestServer(t, fb)
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer)
	go func() {
		s, b := ts.post("/sdapi/v1/txt2img", `{"prompt": "x", "steps": 4, "n_iter": 2, "seed": 7}`)
		done <- answer{s, b}
	}()
	fb.Gate <- struct{}{}
	fb.Gate <- struct{}{}
	var prog struct {
		Progress     float64        `json:"progress"`
		ETA          float64        `json:"eta_relative"`
		State        map[string]any `json:"state"`
		CurrentImage *string        `json:"current_image"`
	}
	// Two of four steps of the first of two jobs: 0.01 + 2/4/2.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts.getJSON("/sdapi/v1/progress", &prog)
		if prog.State["sampling_step"] == 2.0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if prog.Progress != 0.26 || prog.State["job_count"] != 2.0 || prog.State["job_no"] != 0.0 || prog.State["sampling_steps"] != 4.0 {
		t.Errorf("progress %+v", prog)
	}
	if prog.ETA < 0 {
		t.Errorf("eta %v", prog.ETA)
	}
	if prog.CurrentImage == nil {
		t.Fatal("no current image")
	}
	if png, err := base64.StdEncoding.DecodeString(*prog.CurrentImage); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("current image is not a base64 PNG: %v", err)
	}
	ts.getJSON("/sdapi/v1/progress?skip_current_image=true", &prog)
	if prog.CurrentImage != nil {
		t.Error("current image sent despite skip_current_image")
	}

	// Interrupt stops the running job and the rest of its n_iter; the call
	// answers with what was finished: nothing here.
	if status, body := ts.post("/sdapi/v1/interrupt", ""); status != 200 || strings.TrimSpace(string(body)) != "{}" {
		t.Fatalf("interrupt: %d %s", status, body)
	}
	a := <-done
	if a.status != 200 {
		t.Fatalf("interrupted txt2img: %d %s", a.status, a.body)
	}
	var ans txt2imgAnswer
	json.Unmarshal(a.body, &ans)
	if len(ans.Images) != 0 {
		t.Errorf("%d images after an interrupt", len(ans.Images))
	}
	if n := len(fb.jobsRun()); n != 1 {
		t.Errorf("%d jobs ran; the second of the call should have been cancelled", n)
	}
	ts.getJSON("/sdapi/v1/progress", &prog)
	if prog.Progress != 0 || prog.State["job_count"] != 0.0 {
		t.Errorf("progress after interrupt %+v", prog)
	}
	// A client that goes away cancels its jobs.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/sdapi/v1/txt2img", strings.NewReader(`{"prompt": "y", "steps": 4}`))
	go func() {
		for len(fb.jobsRun()) < 2 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request survived its cancel")
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if st := ts.q.status(); st.running == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("job kept running after its client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = api.Version
}

func TestA1111RandnSource(t *testing.T) {
	fb := newFakeBackend()
	ts := newTestServer(t, fb)
	ts.post("/sdapi/v1/options", `{"randn_source": "CPU"}`)
	ts.post("/sdapi/v1/txt2img", `{"prompt": "a", "steps": 1}`)
	ts.post("/sdapi/v1/txt2img", `{"prompt": "b", "steps": 1, "override_settings": {"randn_source": "GPU"}}`)
	runs := fb.jobsRun()
	if len(runs) != 2 || runs[0].RNG != api.RNGComfy || runs[1].RNG != api.RNGA1111 {
		t.Errorf("rng of the runs: %+v", runs)
	}
	var opts map[string]any
	ts.getJSON("/sdapi/v1/options", &opts)
	if opts["randn_source"] != "CPU" {
		t.Errorf("options %v", opts)
	}
}
