package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixery/pixery/app/enginetest"
	"github.com/pixery/pixery/app/settings"
	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/sdxl/ipadapter/ipadaptertest"
	"github.com/pixery/pixery/engine/sdxl/lora/loratest"
)

// appEnv is a settings folder pointing at a real engine, with the caches
// and the gallery in temporary folders.
type appEnv struct {
	config, gallery, models string
	srv                     *enginetest.Server
}

func newAppEnv(t *testing.T, models ...enginetest.Model) *appEnv {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(tmp, "cache"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(tmp, "state"))
	t.Setenv("PIXERY_CONFIG", "")
	t.Setenv(EnvToken, "")
	if len(models) == 0 {
		models = []enginetest.Model{{ID: "tiny"}}
	}
	e := &appEnv{config: filepath.Join(tmp, "config"), gallery: filepath.Join(tmp, "Pictures", "pixery")}
	e.models = enginetest.ModelsDirWith(t, models...)
	e.srv = enginetest.Start(t, e.models)
	s := settings.Defaults()
	s.ServerURL, s.Token, s.GalleryDir, s.ModelsDir = e.srv.URL, e.srv.Token, e.gallery, e.models
	if err := s.Save(e.config); err != nil {
		t.Fatal(err)
	}
	return e
}

// galleryPNGs lists the PNG files in the gallery folder.
func (e *appEnv) galleryPNGs(t *testing.T) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(e.gallery, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".png") {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func readRecipe(t *testing.T, path string) (*pngmeta.Metadata, image.Config) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	md, err := pngmeta.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return md, cfg
}

func TestGenerateSearchAndModels(t *testing.T) {
	env := newAppEnv(t, enginetest.Model{ID: "tiny", Notes: "start with 1girl or 1boy", Negative: "lowres, bad hands"},
		enginetest.Model{ID: "other", QualityTags: []string{"score_9", "score_8_up"}})
	out := filepath.Join(t.TempDir(), "out.png")
	prompt := "1girl, crimson hair, lighthouse"

	code, stdout, stderr := pixery(t, "", "generate", "--config", env.config, "-p", prompt, "-m", "tiny",
		"-n", "2", "--seed", "4242", "--negative", "blurry", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	files := env.galleryPNGs(t)
	if len(files) != 2 || len(lines) != 4 {
		t.Fatalf("gallery %v, stdout %q", files, lines)
	}
	// stdout: the two gallery files, then the two -o copies.
	for i, want := range []string{lines[0], lines[1]} {
		if !strings.HasPrefix(want, env.gallery+string(filepath.Separator)) {
			t.Errorf("line %d %q is not in the gallery %s", i, want, env.gallery)
		}
	}
	outs := []string{out, filepath.Join(filepath.Dir(out), "out-1.png")}
	if lines[2] != outs[0] || lines[3] != outs[1] {
		t.Errorf("-o lines %q, want %q", lines[2:], outs)
	}
	for i := range 2 {
		g, err1 := os.ReadFile(lines[i])
		o, err2 := os.ReadFile(outs[i])
		if err1 != nil || err2 != nil || !bytes.Equal(g, o) {
			t.Errorf("image %d: -o copy differs from the gallery file (%v, %v)", i, err1, err2)
		}
		md, cfg := readRecipe(t, lines[i])
		r := md.Recipe
		if r == nil {
			t.Fatalf("%s has no pixery recipe", lines[i])
		}
		// The engine filled in the model's defaults (192x128, 3 steps).
		if r.Prompt != prompt || r.NegativePrompt != "blurry" || r.Model != "tiny" || r.Seed != 4242+int64(i) ||
			r.Steps != 3 || cfg.Width != 192 || cfg.Height != 128 {
			t.Errorf("image %d recipe %+v, size %dx%d", i, r, cfg.Width, cfg.Height)
		}
		if !strings.Contains(md.Parameters, prompt) {
			t.Errorf("A1111 parameters lack the prompt: %q", md.Parameters)
		}
	}
	for _, want := range []string{"job ", "step 3/3", "done: 2 image(s), seed 4242, 4243"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}

	// The gallery finds them by prompt words, with model, seed and size.
	code, stdout, _ = pixery(t, "", "gallery", "search", "crimson", "lighthouse", "--config", env.config, "--limit", "5")
	if code != 0 || strings.Count(stdout, "\n") != 2 {
		t.Fatalf("search: exit %d, %q", code, stdout)
	}
	for i := range 2 {
		if !strings.Contains(stdout, lines[i]) {
			t.Errorf("search lacks %s", lines[i])
		}
	}
	for _, want := range []string{"tiny", "4242", "4243", "192x128", "1girl, crimson hair"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("search output lacks %q:\n%s", want, stdout)
		}
	}
	for _, q := range [][]string{{"crimson", "-lighthouse"}, {"crimson", "--model", "other"}, {"teal"}} {
		code, stdout, _ = pixery(t, "", append([]string{"gallery", "search", "--config", env.config}, q...)...)
		if code != 0 || stdout != "" {
			t.Errorf("search %q: exit %d, found %q", q, code, stdout)
		}
	}
	code, stdout, _ = pixery(t, "", "gallery", "search", "--config", env.config, "--limit", "1")
	if code != 0 || strings.Count(stdout, "\n") != 1 {
		t.Errorf("--limit 1: exit %d, %q", code, stdout)
	}

	// sync after another program dropped a copy in; import adds a file.
	if err := os.WriteFile(filepath.Join(env.gallery, "dropped.png"), mustRead(t, out), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = pixery(t, "", "gallery", "sync", "--config", env.config)
	if code != 0 || !strings.Contains(stdout, "1 added, 0 updated, 0 removed, 2 unchanged") {
		t.Errorf("sync: exit %d, %q", code, stdout)
	}
	ext := filepath.Join(t.TempDir(), "elsewhere.png")
	if err := os.WriteFile(ext, mustRead(t, outs[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	notPNG := filepath.Join(t.TempDir(), "notes.png")
	os.WriteFile(notPNG, []byte("not an image"), 0o644)
	code, stdout, stderr = pixery(t, "", "gallery", "import", "--config", env.config, ext, notPNG)
	if code != 1 || !strings.Contains(stdout, filepath.Join(env.gallery, "imported", "elsewhere.png")) ||
		!strings.Contains(stderr, "notes.png") || !strings.Contains(stderr, "1 of 2 files not imported") {
		t.Errorf("import: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// models: a row per model with its defaults, then its guide.
	code, stdout, _ = pixery(t, "", "models", "--config", env.config)
	if code != 0 {
		t.Fatalf("models: exit %d", code)
	}
	for _, want := range []string{
		"ID", "tiny", "Tiny SDXL tiny", "on disk", "192x128, 3 steps, CFG 5, euler_a",
		"quality tags: masterpiece, best quality", "style:", "danbooru", "notes:", "start with 1girl or 1boy",
		"negative:", "lowres, bad hands", "score_9, score_8_up",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("models output lacks %q:\n%s", want, stdout)
		}
	}
	// Each guide follows its own model's row.
	ti, oi := strings.Index(stdout, "Tiny SDXL tiny"), strings.Index(stdout, "Tiny SDXL other")
	si := strings.Index(stdout, "score_9")
	if oi < 0 || ti < 0 || si < oi || (ti > oi && si > ti) {
		t.Errorf("guide not under its model:\n%s", stdout)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tripwire is a loopback listener that counts connections: a server URL for
// commands that must fail before they reach any engine.
func tripwire(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return "http://" + l.Addr().String(), &n
}

func TestGenerateRejectsBeforeSubmitting(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(cfg, "cache"))
	s := settings.Defaults()
	s.GalleryDir = filepath.Join(cfg, "gallery")
	if err := s.Save(cfg); err != nil {
		t.Fatal(err)
	}
	url, hits := tripwire(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, not an image"), 0o644)
	fakePNG := filepath.Join(dir, "fake.png")
	os.WriteFile(fakePNG, []byte("\x89PNG\r\n\x1a\nbroken"), 0o644)
	good := filepath.Join(dir, "ref.png")
	writePNG(t, good, 32, 32)

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"size not WxH", []string{"--size", "big"}, `--size "big": want WIDTHxHEIGHT`},
		{"size not multiple of 8", []string{"--size", "830x1216"}, "multiple of 8 (such as 824x1216)"},
		{"size too small", []string{"--size", "32x64"}, "64 to 4096 pixels"},
		{"too many pixels", []string{"--size", "4096x4096"}, "more than the 4194304"},
		{"ref missing", []string{"--ref", filepath.Join(dir, "nope.png")}, "no such file"},
		{"ref not an image", []string{"--ref", text}, "notes.txt: not a PNG, JPEG or WebP image"},
		{"ref truncated png", []string{"--ref", fakePNG}, "fake.png: not a PNG, JPEG or WebP image"},
		{"ref folder", []string{"--ref", dir}, "is a folder"},
		{"ref scale range", []string{"--ref", good, "--ref-scale", "5"}, "--ref-scale 5: want 0 to 2"},
		{"ref scale alone", []string{"--ref-scale", "0.5"}, "--ref-scale needs --ref"},
		{"lora weight", []string{"--lora", "detail:lots"}, "want NAME:WEIGHT"},
		{"lora empty name", []string{"--lora", ":0.5"}, "LoRA name is empty"},
		{"count", []string{"-n", "0"}, "-n 0: want 1 to 16"},
		{"steps", []string{"--steps", "500"}, "--steps 500"},
		{"cfg", []string{"--cfg", "99"}, "--cfg 99"},
		{"no model", []string{"-m", ""}, "-m MODEL is required"},
		{"no prompt", []string{"-p", " "}, "-p PROMPT is required"},
		{"stray argument", []string{"red", "hair"}, `unexpected argument "red"`},
		{"-o in missing folder", []string{"-o", filepath.Join(dir, "no", "such", "out.png")}, "no such file"},
		{"server and local", []string{"--local"}, "--server and --local exclude each other"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"generate", "--config", cfg, "--server", url, "-p", "1girl", "-m", "tiny"}, c.args...)
			code, stdout, stderr := pixery(t, "", args...)
			if code == 0 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want an error containing %q", code, stderr, c.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the engine was contacted %d times", n)
	}
	if _, err := os.Stat(s.GalleryDir); !os.IsNotExist(err) {
		t.Errorf("gallery folder created: %v", err)
	}
}

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	img.Set(0, 0, color.White)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateEngineRefusals(t *testing.T) {
	env := newAppEnv(t)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"missing LoRA", []string{"--lora", "ink:0.8"}, []string{`LoRA "ink" is not on the engine`, "it has: none"}},
		{"unknown model", []string{"-m", "nosuch"}, []string{`model "nosuch" is not on the engine`, "it has: tiny"}},
		{"model not downloaded", []string{"-m", "pony"}, []string{`model "pony" is not downloaded`, "ready: tiny"}},
		{"unknown sampler", []string{"--sampler", "warp_drive"}, []string{"warp_drive"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"generate", "--config", env.config, "-p", "1girl", "-m", "tiny"}, c.args...)
			code, stdout, stderr := pixery(t, "", args...)
			if code == 0 || stdout != "" {
				t.Errorf("exit %d, stdout %q", code, stdout)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
	if files := env.galleryPNGs(t); len(files) != 0 {
		t.Errorf("images saved: %v", files)
	}
	h, err := env.srv.Engine.Health(context.Background())
	if err != nil || h.Queued != 0 || h.Running != "" {
		t.Errorf("engine busy after refusals: %+v %v", h, err)
	}

	// Settings that do not parse stop the command with file and line.
	os.WriteFile(filepath.Join(env.config, settings.SettingsFile), []byte("mode = \"remote\"\nserver_url = nope\n"), 0o644)
	code, _, stderr := pixery(t, "", "generate", "--config", env.config, "-p", "1girl", "-m", "tiny")
	if code == 0 || !strings.Contains(stderr, settings.SettingsFile+":2:") {
		t.Errorf("malformed settings: exit %d, %q", code, stderr)
	}
}

// stepTrigger calls fn once, when the progress output first shows a step.
type stepTrigger struct {
	mu   sync.Mutex
	b    strings.Builder
	once sync.Once
	fn   func()
}

func (s *stepTrigger) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	hit := strings.Contains(s.b.String(), "step ")
	s.mu.Unlock()
	if hit {
		s.once.Do(s.fn)
	}
	return len(p), nil
}

func (s *stepTrigger) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Ctrl+C (the command's context ending) cancels the job on the engine.
func TestGenerateCancel(t *testing.T) {
	env := newAppEnv(t)
	ctx, interrupt := context.WithCancel(context.Background())
	old := runContext
	runContext = func() (context.Context, context.CancelFunc) { return ctx, interrupt }
	defer func() { runContext = old }()

	errw := &stepTrigger{fn: interrupt}
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"generate", "--config", env.config, "-p", "1girl", "-m", "tiny", "--steps", "150", "--seed", "7"}, &out, errw)
	}()
	var code int
	select {
	case code = <-done:
	case <-time.After(120 * time.Second):
		t.Fatal("generate did not return after the interrupt")
	}
	stderr := errw.String()
	t.Logf("stderr:\n%s", stderr)
	if code == 0 || !strings.Contains(stderr, "cancelled job") || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
	id := between(stderr, "job ", " on ")
	job, err := env.srv.Engine.Job(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != api.StateCancelled || job.Step >= 150 {
		t.Errorf("engine's job %s: %+v", id, job)
	}
	if files := env.galleryPNGs(t); len(files) != 0 {
		t.Errorf("images saved: %v", files)
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}

// Local mode runs the engine in this process on the settings' models folder.
func TestGenerateLocal(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(tmp, "cache"))
	s := settings.Defaults()
	s.Mode, s.Provider = settings.ModeLocal, settings.ProviderCPU
	s.ModelsDir = enginetest.ModelsDir(t, "tiny")
	s.GalleryDir = filepath.Join(tmp, "gallery")
	s.ServerURL = "http://192.0.2.1:9" // must not be used
	cfg := filepath.Join(tmp, "config")
	if err := s.Save(cfg); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := pixery(t, "", "generate", "--config", cfg, "-p", "1boy, harbour", "-m", "tiny", "--size", "128x128", "--steps", "2", "--seed", "11")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	path := strings.TrimSpace(stdout)
	md, c := readRecipe(t, path)
	if !strings.HasPrefix(path, s.GalleryDir) || md.Recipe == nil || md.Recipe.Prompt != "1boy, harbour" || md.Recipe.Steps != 2 || c.Width != 128 {
		t.Errorf("%s: %+v %dx%d", path, md.Recipe, c.Width, c.Height)
	}
	if !strings.Contains(stderr, "local") || !strings.Contains(stderr, "CPU") {
		t.Errorf("stderr does not say the engine is local on CPU: %q", stderr)
	}
}

// addTinyLoRA writes a kohya-format LoRA (rank 4, alpha 2, random factors)
// for a few layers of the tiny checkpoint into modelsDir/loras/name.safetensors.
func addTinyLoRA(t *testing.T, modelsDir, name string) {
	t.Helper()
	loratest.WriteTiny(t, filepath.Join(modelsDir, "loras", name+".safetensors"), rand.New(rand.NewPCG(5, 6)), 4)
}

// --lora applies a LoRA the engine has, and the image's metadata says so.
func TestGenerateWithLoRA(t *testing.T) {
	env := newAppEnv(t)
	addTinyLoRA(t, env.models, "ink")
	if err := env.srv.Service.Rescan(); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) string {
		t.Helper()
		args := append([]string{"generate", "--config", env.config, "-q", "-p", "1girl, ink", "-m", "tiny", "--seed", "3", "--steps", "2", "--size", "64x64"}, extra...)
		code, stdout, stderr := pixery(t, "", args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if stderr != "" {
			t.Errorf("-q still printed %q", stderr)
		}
		return strings.TrimSpace(stdout)
	}
	plain := run()
	with := run("--lora", "ink:0.8")
	md, _ := readRecipe(t, with)
	if l := md.Recipe.LoRAs; len(l) != 1 || l[0].Name != "ink" || l[0].Scale != 0.8 {
		t.Errorf("recipe LoRAs %+v", l)
	}
	a, _ := png.Decode(bytes.NewReader(mustRead(t, plain)))
	b, _ := png.Decode(bytes.NewReader(mustRead(t, with)))
	if a == nil || b == nil || a.Bounds() != b.Bounds() {
		t.Fatalf("images %v %v", a, b)
	}
	same := true
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y && same; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				same = false
				break
			}
		}
	}
	if same {
		t.Error("the LoRA changed nothing in the image")
	}
}

// --ref sends a reference image through the engine's IP-Adapter: the image's
// recipe names the adapter, the scale and the reference's SHA-256.
func TestGenerateWithReference(t *testing.T) {
	env := newAppEnv(t)
	ipadaptertest.WriteTiny(t, env.models)
	if err := env.srv.Service.Rescan(); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(t.TempDir(), "ref.png")
	writePNG(t, ref, 96, 64)
	code, stdout, stderr := pixery(t, "", "generate", "--config", env.config, "-q", "-p", "1girl", "-m", "tiny", "--steps", "2", "--size", "64x64", "--ref", ref, "--ref-scale", "0.7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	md, _ := readRecipe(t, strings.TrimSpace(stdout))
	sum := sha256.Sum256(mustRead(t, ref))
	ip := md.Recipe.IPAdapter
	if ip == nil || ip.Adapter != ipadaptertest.AdapterName || ip.Scale != 0.7 || ip.ImageSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("recipe ip_adapter %+v; want %s at 0.7 with sha256 %x", ip, ipadaptertest.AdapterName, sum)
	}
}
