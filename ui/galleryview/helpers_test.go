package galleryview

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/pngmeta"
)

// The tests write real PNG files with the metadata each program writes, in
// a real gallery folder indexed by a real gallery.Store. A1111 and ComfyUI
// chunks are assembled by hand here (as those programs write them), pixery's
// with engine/pngmeta, the writer the engine uses.

// chunk is a raw PNG text chunk to insert after IHDR.
type chunk struct {
	typ  string
	data []byte
}

func tEXt(key, text string) chunk {
	return chunk{typ: "tEXt", data: append(append([]byte(key), 0), text...)}
}

// solid is a w×h image of one colour, so a thumbnail's colour tells which
// image it shows.
func solid(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for p := 0; p < len(img.Pix); p += 4 {
		img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = c.R, c.G, c.B, 255
	}
	return img
}

// encodePNG encodes img and inserts chunks right after IHDR.
func encodePNG(t testing.TB, img image.Image, chunks ...chunk) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	const ihdrEnd = 8 + 12 + 13
	out := append([]byte(nil), b[:ihdrEnd]...)
	for _, c := range chunks {
		out = binary.BigEndian.AppendUint32(out, uint32(len(c.data)))
		start := len(out)
		out = append(out, c.typ...)
		out = append(out, c.data...)
		out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[start:]))
	}
	return append(out, b[ihdrEnd:]...)
}

// writeAt writes a file below dir (creating folders) with the given time.
func writeAt(t testing.TB, dir, rel string, data []byte, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// a1111Text is A1111/Forge infotext.
func a1111Text(prompt, negative string, steps int, sampler, schedule string, cfg float64, seed int64, w, h int, model string) string {
	return fmt.Sprintf("%s\nNegative prompt: %s\nSteps: %d, Sampler: %s, Schedule type: %s, CFG scale: %g, Seed: %d, Size: %dx%d, Model hash: 0123456789, Model: %s, Version: v1.10.1",
		prompt, negative, steps, sampler, schedule, cfg, seed, w, h, model)
}

// comfyPrompt is a ComfyUI API-format graph: checkpoint → LoRA → KSampler.
func comfyPrompt(t testing.TB, prompt, negative, model string, seed int64, steps int, cfg float64, sampler, scheduler string, w, h int, lora string, loraWeight float64) string {
	nodes := map[string]any{
		"3": map[string]any{"class_type": "KSampler", "inputs": map[string]any{
			"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler, "denoise": 1,
			"model": []any{"10", 0}, "positive": []any{"6", 0}, "negative": []any{"7", 0}, "latent_image": []any{"5", 0},
		}},
		"4":  map[string]any{"class_type": "CheckpointLoaderSimple", "inputs": map[string]any{"ckpt_name": "sdxl/" + model + ".safetensors"}},
		"5":  map[string]any{"class_type": "EmptyLatentImage", "inputs": map[string]any{"width": w, "height": h, "batch_size": 1}},
		"6":  map[string]any{"class_type": "CLIPTextEncode", "inputs": map[string]any{"text": prompt, "clip": []any{"10", 1}}},
		"7":  map[string]any{"class_type": "CLIPTextEncode", "inputs": map[string]any{"text": negative, "clip": []any{"10", 1}}},
		"10": map[string]any{"class_type": "LoraLoader", "inputs": map[string]any{"lora_name": "styles/" + lora + ".safetensors", "strength_model": loraWeight, "strength_clip": 1.0, "model": []any{"4", 0}, "clip": []any{"4", 1}}},
	}
	b, err := json.Marshal(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fixture describes one image of the test gallery.
type fixture struct {
	id      string
	caption string
	color   color.RGBA
	w, h    int
	today   bool
}

// The test gallery, oldest first. Two images are from today, three from a
// month ago; the A1111 image is landscape, the others portrait.
var (
	fxPixery = fixture{id: "2025-01-01/100000-1234.png", caption: "animagine-xl-4.0 · 1234", color: color.RGBA{220, 30, 30, 255}, w: 64, h: 96}
	fxPony   = fixture{id: "2025-01-01/100100-42.png", caption: "ponyDiffusionV6XL · 42", color: color.RGBA{30, 200, 40, 255}, w: 64, h: 96}
	fxA1111  = fixture{id: "a1111/00012-777.png", caption: "juggernautXL_v9 · 777", color: color.RGBA{30, 40, 220, 255}, w: 96, h: 64}
	fxComfy  = fixture{id: "comfy/ComfyUI_00001_.png", caption: "noobai-xl-1.1 · 99", color: color.RGBA{230, 220, 30, 255}, w: 64, h: 96, today: true}
	fxPlain  = fixture{id: "misc/screenshot.png", caption: "screenshot.png", color: color.RGBA{200, 40, 200, 255}, w: 64, h: 96, today: true}

	fixtures = []fixture{fxPixery, fxPony, fxA1111, fxComfy, fxPlain}
)

const a1111Prompt = "photo of a cat on a beach, golden hour"

func a1111Params() string {
	return a1111Text(a1111Prompt, "blurry, lowres", 30, "DPM++ 2M", "Karras", 7, 777, 96, 64, "juggernautXL_v9")
}

// fixtureData encodes a fixture's PNG with its program's metadata.
func fixtureData(t testing.TB, f fixture) []byte {
	t.Helper()
	img := solid(f.w, f.h, f.color)
	switch f.id {
	case fxPixery.id, fxPony.id:
		rc := &pngmeta.Recipe{Model: "animagine-xl-4.0", Prompt: "1girl, long hair, castle, night sky", NegativePrompt: "lowres, bad anatomy",
			Width: f.w, Height: f.h, Steps: 28, CFG: 5, Sampler: "dpmpp_2m_karras", Seed: 1234, RNG: pngmeta.RNGA1111, Generator: "pixery 0.1.0",
			LoRAs: []pngmeta.LoRA{{Name: "add_detail", Scale: 0.6}}}
		if f.id == fxPony.id {
			rc = &pngmeta.Recipe{Model: "ponyDiffusionV6XL", Prompt: "score_9, 1boy, sword, forest", NegativePrompt: "score_4",
				Width: f.w, Height: f.h, Steps: 25, CFG: 7, Sampler: "euler_a", Seed: 42, RNG: pngmeta.RNGA1111, Generator: "pixery 0.1.0"}
		}
		data, err := pngmeta.EncodeBytes(img, rc)
		if err != nil {
			t.Fatal(err)
		}
		return data
	case fxA1111.id:
		return encodePNG(t, img, tEXt("parameters", a1111Params()))
	case fxComfy.id:
		return encodePNG(t, img, tEXt("prompt", comfyPrompt(t, "1girl, witch hat, night, moon", "worst quality", "noobai-xl-1.1",
			99, 24, 5.5, "euler_ancestral", "normal", f.w, f.h, "detail_slider", 0.8)))
	default:
		return encodePNG(t, img)
	}
}

// newGallery writes the fixtures into a new gallery folder and indexes
// them.
func newGallery(t testing.TB) (*gallery.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gallery")
	old := time.Now().Add(-30 * 24 * time.Hour)
	now := time.Now()
	for i, f := range fixtures {
		mt := old.Add(time.Duration(i) * time.Minute)
		if f.today {
			// Today's images are stamped now (never before midnight), a
			// second apart so that their order is fixed.
			mt = now.Add(time.Duration(i) * time.Second)
		}
		writeAt(t, dir, f.id, fixtureData(t, f), mt)
	}
	s, err := gallery.Open(dir, filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	res, err := s.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != len(fixtures) {
		t.Fatalf("indexed %d of %d fixtures: %+v", len(res.Added), len(fixtures), res.Problems)
	}
	return s, dir
}

// harness is a view in a test window over a real gallery, with what its
// callbacks received.
type harness struct {
	v      *View
	w      fyne.Window
	store  *gallery.Store
	dir    string
	q      *UIQueue
	reused []gallery.Request
	refs   []string
	opened []string
}

func newHarness(t *testing.T, watch time.Duration) *harness {
	t.Helper()
	test.NewTempApp(t)
	s, dir := newGallery(t)
	h := &harness{store: s, dir: dir, q: &UIQueue{}}
	h.v = New(Deps{
		Store:            s,
		OnReuse:          func(r gallery.Request) { h.reused = append(h.reused, r) },
		OnUseAsReference: func(p string) { h.refs = append(h.refs, p) },
		WatchInterval:    watch,
		Do:               h.q.Do,
	})
	h.v.OpenURL = func(u *url.URL) error {
		h.opened = append(h.opened, u.String())
		return nil
	}
	h.w = test.NewTempWindow(t, h.v.Content())
	// Registered after the window so that it runs first: the view's
	// goroutines end before the window and the app go.
	t.Cleanup(h.v.Close)
	h.w.Resize(fyne.NewSize(1100, 750))
	h.idle(t)
	return h
}

// idle waits for the view's background work and applies its results (a
// generous hang guard).
func (h *harness) idle(t testing.TB) {
	t.Helper()
	if !h.q.Settle(h.v, 60*time.Second) {
		t.Fatal("the view was still busy after 60 s")
	}
}

// cells returns the grid cells on screen, by index.
func (h *harness) cells() map[int]*cell {
	out := map[int]*cell{}
	for _, o := range test.LaidOutObjects(h.v.grid) {
		c, ok := o.(*cell)
		if !ok || !c.Visible() {
			continue
		}
		h.v.mu.Lock()
		i := c.index
		h.v.mu.Unlock()
		out[i] = c
	}
	return out
}

// captions returns the captions on screen in grid order.
func (h *harness) captions() []string {
	cells := h.cells()
	var out []string
	for i := range h.v.Grid.Length() {
		if c, ok := cells[i]; ok {
			out = append(out, c.full)
		}
	}
	return out
}

// cellFor finds the cell on screen with a caption.
func (h *harness) cellFor(t testing.TB, caption string) (int, *cell) {
	t.Helper()
	for i, c := range h.cells() {
		if c.full == caption {
			return i, c
		}
	}
	t.Fatalf("no cell captioned %q on screen; captions: %q", caption, h.captions())
	return -1, nil
}

// count is the number of results the view holds, read safely while its
// goroutines may be working.
func (h *harness) count() int {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	return h.v.count
}

// waitFor polls cond, running the UI queue meanwhile (a generous hang
// guard, not a timing assertion).
func (h *harness) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for h.q.Run(); !cond(); h.q.Run() {
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: still waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// near reports whether two colours differ by at most tol in every channel
// (thumbnails are JPEG).
func near(a, b color.Color, tol int) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	d := func(x, y uint32) bool { return abs(int(x>>8)-int(y>>8)) <= tol }
	return d(ar, br) && d(ag, bg) && d(ab, bb)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasAll(t testing.TB, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("missing %q in:\n%s", p, text)
		}
	}
}
