package gallery

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chunk is a raw PNG chunk to insert after IHDR. The tests build chunks
// themselves, independently of pngmeta, so that what the gallery reads is
// checked against bytes written another way.
type chunk struct {
	typ  string
	data []byte
	// badCRC writes a wrong checksum.
	badCRC bool
}

func tEXt(key, text string) chunk {
	return chunk{typ: "tEXt", data: append(append([]byte(key), 0), text...)}
}

func iTXt(key, text string) chunk {
	d := append([]byte(key), 0, 0, 0, 0, 0)
	return chunk{typ: "iTXt", data: append(d, text...)}
}

func zTXt(key, text string) chunk {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	zw.Write([]byte(text))
	zw.Close()
	d := append([]byte(key), 0, 0)
	return chunk{typ: "zTXt", data: append(d, b.Bytes()...)}
}

// testImage is a w×h opaque image whose pixels depend on seed.
func testImage(w, h int, seed int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, color.RGBA{uint8(x*255/max(w-1, 1) + seed), uint8(y * 255 / max(h-1, 1)), uint8(seed * 37), 255})
		}
	}
	return img
}

// encodePNG encodes img with image/png and inserts chunks right after IHDR.
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
		sum := crc32.ChecksumIEEE(out[start:])
		if c.badCRC {
			sum++
		}
		out = binary.BigEndian.AppendUint32(out, sum)
	}
	return append(out, b[ihdrEnd:]...)
}

func makePNG(t testing.TB, w, h, seed int, chunks ...chunk) []byte {
	return encodePNG(t, testImage(w, h, seed), chunks...)
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

// recipeJSON writes pixery's recipe chunk as JSON by hand (the field names
// of engine/pngmeta's Recipe).
func recipeJSON(t testing.TB, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// meta is what a generated test image says, in a form the tests compare
// Items against.
type meta struct {
	prompt, negative, model string
	seed                    int64
	steps                   int
	cfg                     float64
	sampler, scheduler      string
	loras                   []LoRA
}

// a1111Params writes A1111 infotext for m.
func a1111Params(m meta, w, h int, extra string) string {
	var b strings.Builder
	b.WriteString(m.prompt)
	if m.negative != "" {
		b.WriteString("\nNegative prompt: " + m.negative)
	}
	fmt.Fprintf(&b, "\nSteps: %d, Sampler: %s", m.steps, m.sampler)
	if m.scheduler != "" {
		fmt.Fprintf(&b, ", Schedule type: %s", m.scheduler)
	}
	fmt.Fprintf(&b, ", CFG scale: %g, Seed: %d, Size: %dx%d, Model hash: 0123456789, Model: %s%s", m.cfg, m.seed, w, h, m.model, extra)
	return b.String()
}

// pixeryChunks writes pixery's chunks for m: the recipe as iTXt, and the
// A1111 view of it as tEXt, as the engine does.
func pixeryChunks(t testing.TB, m meta, w, h int, extra map[string]any) []chunk {
	fields := map[string]any{
		"version": 1, "model": m.model, "prompt": m.prompt, "negative_prompt": m.negative,
		"width": w, "height": h, "steps": m.steps, "cfg": m.cfg, "sampler": m.sampler,
		"seed": m.seed, "rng": "a1111",
	}
	if m.scheduler != "" {
		fields["scheduler"] = m.scheduler
	}
	var loras []map[string]any
	for _, l := range m.loras {
		loras = append(loras, map[string]any{"name": l.Name, "scale": l.Weight})
	}
	if loras != nil {
		fields["loras"] = loras
	}
	for k, v := range extra {
		fields[k] = v
	}
	return []chunk{
		tEXt("parameters", a1111Params(m, w, h, "")),
		iTXt("pixery", recipeJSON(t, fields)),
	}
}

// comfyGraph writes a ComfyUI API-format graph for m, with a LoRA loader
// between the checkpoint and the sampler when m has a LoRA.
func comfyGraph(t testing.TB, m meta, w, h int) string {
	nodes := map[string]any{
		"3": map[string]any{"class_type": "KSampler", "inputs": map[string]any{
			"seed": m.seed, "steps": m.steps, "cfg": m.cfg, "sampler_name": m.sampler, "scheduler": m.scheduler,
			"denoise": 1, "model": []any{"10", 0}, "positive": []any{"6", 0}, "negative": []any{"7", 0}, "latent_image": []any{"5", 0},
		}},
		"4": map[string]any{"class_type": "CheckpointLoaderSimple", "inputs": map[string]any{"ckpt_name": "sdxl/" + m.model + ".safetensors"}},
		"5": map[string]any{"class_type": "EmptyLatentImage", "inputs": map[string]any{"width": w, "height": h, "batch_size": 1}},
		"6": map[string]any{"class_type": "CLIPTextEncode", "inputs": map[string]any{"text": m.prompt, "clip": []any{"10", 1}}},
		"7": map[string]any{"class_type": "CLIPTextEncode", "inputs": map[string]any{"text": m.negative, "clip": []any{"10", 1}}},
	}
	if len(m.loras) > 0 {
		nodes["10"] = map[string]any{"class_type": "LoraLoader", "inputs": map[string]any{
			"lora_name": "styles/" + m.loras[0].Name + ".safetensors", "strength_model": m.loras[0].Weight, "strength_clip": 1.0,
			"model": []any{"4", 0}, "clip": []any{"4", 1},
		}}
	} else {
		nodes["10"] = map[string]any{"class_type": "Reroute", "inputs": map[string]any{"input": []any{"4", 0}}}
	}
	return recipeJSON(t, nodes)
}

func openStore(t testing.TB) (*Store, string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gallery")
	cache := filepath.Join(t.TempDir(), "cache")
	s, err := Open(dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir, cache
}

func ids(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// trimEnd cuts n bytes off the end of a file: a download or copy that
// stopped early.
func trimEnd(b []byte, n int) []byte { return b[:len(b)-n] }

// checkFTS runs FTS5's integrity check, which compares the full-text index
// with the prompts in the items table.
func checkFTS(t testing.TB, s *Store) {
	t.Helper()
	if _, err := s.db.Exec("INSERT INTO items_fts(items_fts, rank) VALUES ('integrity-check', 1)"); err != nil {
		t.Errorf("full-text index out of step with the items: %v", err)
	}
}
