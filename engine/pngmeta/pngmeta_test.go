package pngmeta

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"reflect"
	"strings"
	"testing"
	"time"
)

// gradient is a deterministic test picture whose pixels depend on position
// and a seed, so that a wrong row or channel order shows.
func gradient(w, h int, seed int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, color.RGBA{uint8(x*255/max(w-1, 1) + seed), uint8(y * 255 / max(h-1, 1)), uint8((x + y + seed*7) % 256), 255})
		}
	}
	return img
}

func sampleRecipe() *Recipe {
	return &Recipe{
		Generator:      "pixery 0.1.0",
		Model:          "animagine",
		ModelFile:      "animagine-xl-4.0.safetensors",
		ModelHash:      "6327eca98b",
		Prompt:         "1girl, solo, (masterpiece:1.2), smile\nsecond line: with a colon",
		NegativePrompt: "lowres, bad anatomy",
		Width:          832,
		Height:         1216,
		Steps:          28,
		CFG:            5,
		Sampler:        "euler_a",
		Seed:           123,
		RNG:            RNGA1111,
		ClipSkip:       2,
		LoRAs: []LoRA{
			{Name: "detail, tweaker", Scale: 0.8, Hash: "0123456789ab"},
			{Name: "style:v2", Scale: 1, Hash: "ba9876543210"},
		},
		IPAdapter: &IPAdapter{Adapter: "ip-adapter-plus_sdxl_vit-h", Scale: 0.6, ImageSHA256: strings.Repeat("ab", 32)},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Recipe)
		utf8   bool // parameters must be an iTXt chunk
	}{
		{"latin1", func(*Recipe) {}, false},
		{"accented latin1", func(r *Recipe) { r.Prompt = "café, crème brûlée" }, false},
		{"unicode prompt", func(r *Recipe) { r.Prompt = "少女, 🌸 cherry blossoms"; r.NegativePrompt = "低品質" }, true},
		{"comfy rng, no negative, dpm karras", func(r *Recipe) {
			r.RNG, r.NegativePrompt, r.Sampler, r.ClipSkip = RNGComfy, "", "dpmpp_2m_karras", 1
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := sampleRecipe()
			tc.mutate(rc)
			img := gradient(40, 24, 3)
			b, err := EncodeBytes(img, rc)
			if err != nil {
				t.Fatal(err)
			}

			// The pixels survive.
			got, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("image/png cannot read the result: %v", err)
			}
			for y := 0; y < 24; y++ {
				for x := 0; x < 40; x++ {
					r1, g1, b1, _ := got.At(x, y).RGBA()
					r2, g2, b2, _ := img.At(x, y).RGBA()
					if r1 != r2 || g1 != g2 || b1 != b2 {
						t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, got.At(x, y), img.At(x, y))
					}
				}
			}

			// Both chunks come before the image data, with the right types.
			types := chunkTypes(t, b)
			idat := indexOf(types, "IDAT")
			if idat < 0 || types[0] != "IHDR" || types[len(types)-1] != "IEND" {
				t.Fatalf("chunk order %v", types)
			}
			wantParam := "tEXt"
			if tc.utf8 {
				wantParam = "iTXt"
			}
			if types[1] != wantParam || types[2] != "iTXt" || idat != 3 {
				t.Errorf("chunks %v: want IHDR, %s parameters, iTXt recipe, IDAT…", types, wantParam)
			}

			m, err := Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Problems) > 0 {
				t.Fatalf("problems: %v", m.Problems)
			}
			want := *rc
			want.Version = RecipeVersion
			if !reflect.DeepEqual(m.Recipe, &want) {
				t.Errorf("recipe round trip:\n got %+v\nwant %+v", m.Recipe, &want)
			}
			if m.Parameters != rc.Parameters() {
				t.Errorf("parameters chunk %q, want %q", m.Parameters, rc.Parameters())
			}
			p := m.A1111
			samplerName, schedule := a1111Sampler(rc.Sampler, rc.Scheduler)
			if p.Prompt != rc.Prompt || p.NegativePrompt != rc.NegativePrompt || p.Steps != rc.Steps ||
				p.Sampler != samplerName || p.ScheduleType != schedule || p.CFG != rc.CFG || p.Seed != rc.Seed ||
				p.Width != rc.Width || p.Height != rc.Height || p.ModelHash != rc.ModelHash ||
				p.Model != "animagine-xl-4.0" || p.Version != rc.Generator {
				t.Errorf("parsed infotext %+v does not match recipe %+v", p, rc)
			}
			if want := max(rc.ClipSkip, 1); p.ClipSkip != want {
				t.Errorf("clip skip %d, want %d", p.ClipSkip, want)
			}
			if wantRNG := map[string]string{RNGA1111: "", RNGComfy: "CPU"}[rc.RNG]; p.RNG != wantRNG {
				t.Errorf("RNG %q, want %q", p.RNG, wantRNG)
			}
			wantLoRA := []LoRAHashEntry{{"detail tweaker", "0123456789ab"}, {"stylev2", "ba9876543210"}}
			if !reflect.DeepEqual(p.LoRAHashes, wantLoRA) {
				t.Errorf("lora hashes %+v, want %+v", p.LoRAHashes, wantLoRA)
			}
		})
	}
}

// TestParametersFormat checks the A1111 layout the task and A1111's
// create_infotext prescribe: prompt, "Negative prompt: …", then the pairs in
// A1111's order, a value holding a comma, colon or newline quoted as JSON.
func TestParametersFormat(t *testing.T) {
	rc := sampleRecipe()
	s := rc.Parameters()
	lines := strings.Split(s, "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines (2 prompt, negative, params), got %d: %q", len(lines), s)
	}
	if lines[0]+"\n"+lines[1] != rc.Prompt || lines[2] != "Negative prompt: "+rc.NegativePrompt {
		t.Errorf("prompt lines %q", lines[:3])
	}
	want := `Steps: 28, Sampler: Euler a, Schedule type: Uniform, CFG scale: 5, Seed: 123, Size: 832x1216, ` +
		`Model hash: 6327eca98b, Model: animagine-xl-4.0, Clip skip: 2, ` +
		`Lora hashes: "detail tweaker: 0123456789ab, stylev2: ba9876543210", Version: pixery 0.1.0`
	if lines[3] != want {
		t.Errorf("parameter line\n got %s\nwant %s", lines[3], want)
	}
	// Python's json.dumps(ensure_ascii=False) escapes only quotes, backslashes
	// and control characters.
	for in, want := range map[string]string{
		"plain":            "plain",
		"a, b":             `"a, b"`,
		"k: v":             `"k: v"`,
		"line\nbreak":      `"line\nbreak"`,
		`say "hi", \ ok`:   `"say \"hi\", \\ ok"`,
		"tab\t,é漢":         `"tab\t,é漢"`,
		"ctl\x01,":         `"ctl\u0001,"`,
		"<html>&, no esc":  `"<html>&, no esc"`,
		"\u2028 sep, keep": "\"\u2028 sep, keep\"",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
		if got := unquote(quote(in)); got != in {
			t.Errorf("unquote(quote(%q)) = %q", in, got)
		}
	}
}

func TestParseParametersHandMade(t *testing.T) {
	// Typical A1111 1.10 output for an SDXL image with a LoRA and hires fix,
	// written by hand in A1111's format.
	a1111 := "masterpiece, 1girl, <lora:add-detail-xl:0.8>,\nblue sky\n" +
		"Negative prompt: lowres, (worst quality:1.4),\nbad hands\n" +
		`Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3829105530, Size: 1024x1536, ` +
		`Model hash: 6327eca98b, Model: animagine-xl-4.0, Denoising strength: 0.4, Clip skip: 2, ` +
		`Hires upscale: 1.5, Hires upscaler: R-ESRGAN 4x+ Anime6B, Lora hashes: "add-detail-xl: 9c783c8ce46c", ` +
		`TI hashes: "easynegative: c74b4e810b03, verybad: 0d2a9c2a1e3f", Version: v1.10.1`
	p, err := ParseParameters(a1111)
	if err != nil {
		t.Fatal(err)
	}
	if p.Prompt != "masterpiece, 1girl, <lora:add-detail-xl:0.8>,\nblue sky" ||
		p.NegativePrompt != "lowres, (worst quality:1.4),\nbad hands" {
		t.Errorf("prompt %q negative %q", p.Prompt, p.NegativePrompt)
	}
	if p.Steps != 30 || p.Sampler != "DPM++ 2M" || p.ScheduleType != "Karras" || p.CFG != 6.5 || p.Seed != 3829105530 ||
		p.Width != 1024 || p.Height != 1536 || p.ModelHash != "6327eca98b" || p.Model != "animagine-xl-4.0" ||
		p.ClipSkip != 2 || p.Version != "v1.10.1" {
		t.Errorf("fields %+v", p)
	}
	if !reflect.DeepEqual(p.LoRAHashes, []LoRAHashEntry{{"add-detail-xl", "9c783c8ce46c"}}) {
		t.Errorf("lora hashes %+v", p.LoRAHashes)
	}
	if v, _ := p.Get("TI hashes"); v != "easynegative: c74b4e810b03, verybad: 0d2a9c2a1e3f" {
		t.Errorf("TI hashes %q", v)
	}
	if v, _ := p.Get("Hires upscaler"); v != "R-ESRGAN 4x+ Anime6B" {
		t.Errorf("Hires upscaler %q", v)
	}
	if len(p.Fields) != 15 {
		t.Errorf("%d fields, want 15: %+v", len(p.Fields), p.Fields)
	}

	// Forge writes the same layout with its own keys.
	forge := "a cat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, " +
		"Seed: 42, Size: 896x1152, Model hash: 0123456789, Model: flux1-dev, Module 1: ae, Version: f2.0.1v1.10.1-previous-313"
	if p, err := ParseParameters(forge); err != nil || p.Prompt != "a cat" || p.NegativePrompt != "" || p.Seed != 42 ||
		p.CFG != 1 || p.ClipSkip != 1 {
		t.Errorf("forge: %+v, %v", p, err)
	} else if v, _ := p.Get("Distilled CFG Scale"); v != "3.5" {
		t.Errorf("forge distilled cfg %q", v)
	}

	// A prompt alone (fewer than three pairs on the last line) is all prompt.
	if p, err := ParseParameters("just a prompt, with: one colon"); err != nil || p.Prompt != "just a prompt, with: one colon" || len(p.Fields) != 0 {
		t.Errorf("prompt only: %+v, %v", p, err)
	}

	// A malformed known field: an error naming it, the rest still read.
	p, err = ParseParameters("x\nSteps: many, Sampler: Euler, Seed: 7, Size: 12")
	if err == nil || !strings.Contains(err.Error(), `"Steps"`) || !strings.Contains(err.Error(), `"Size"`) {
		t.Errorf("want an error naming Steps and Size, got %v", err)
	}
	if p == nil || p.Sampler != "Euler" || p.Seed != 7 || p.Steps != 0 {
		t.Errorf("partial result %+v", p)
	}
	for _, bad := range []string{"", "   \n  ", "\xff\xfe", strings.Repeat("a", MaxParametersLength+1)} {
		if p, err := ParseParameters(bad); err == nil || p != nil {
			t.Errorf("ParseParameters(%.20q) = %v, %v; want nil, error", bad, p, err)
		}
	}
}

// comfyPrompt is an API-format graph as ComfyUI's default SDXL workflow
// saves it, with the seed fed by a primitive node and a seed beyond 2^53.
const comfyPrompt = `{
 "3": {"class_type": "KSampler", "inputs": {"seed": ["10", 0], "steps": 25, "cfg": 7.5,
   "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1,
   "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ponyDiffusionV6XL.safetensors"}},
 "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "score_9, score_8_up, 1girl", "clip": ["4", 1]}},
 "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "score_4, blurry", "clip": ["4", 1]}},
 "10": {"class_type": "PrimitiveNode", "inputs": {"value": 18446744073709551615}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
}`

// comfyWorkflow is the editor's form of a similar graph.
const comfyWorkflow = `{"last_node_id": 9, "last_link_id": 9,
 "nodes": [
  {"id": 3, "type": "KSampler", "inputs": [{"name": "model", "type": "MODEL", "link": 1},
     {"name": "positive", "type": "CONDITIONING", "link": 4}, {"name": "negative", "type": "CONDITIONING", "link": 6},
     {"name": "latent_image", "type": "LATENT", "link": 2}],
   "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]},
  {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sd_xl_base_1.0.safetensors"]},
  {"id": 5, "type": "EmptyLatentImage", "widgets_values": [1024, 1024, 1]},
  {"id": 6, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 3}], "widgets_values": ["beautiful scenery nature glass bottle"]},
  {"id": 7, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 5}], "widgets_values": ["text, watermark"]},
  {"id": 11, "type": "ConditioningCombine", "inputs": [{"name": "conditioning_1", "link": 7}]},
  {"id": "12", "type": "Note", "widgets_values": [{"anything": [1, 2]}]}
 ],
 "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
   [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 6, 0, 11, 0, "CONDITIONING"]]}`

func TestParseComfy(t *testing.T) {
	c, err := ParseComfy(comfyPrompt, comfyWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	want := &Comfy{Prompt: "score_9, score_8_up, 1girl", NegativePrompt: "score_4, blurry", Seed: -1, Steps: 25, CFG: 7.5,
		Sampler: "dpmpp_2m", Scheduler: "karras", Denoise: 1, Model: "ponyDiffusionV6XL.safetensors", Width: 832, Height: 1216,
		Source: KeyComfyPrompt}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("from prompt:\n got %+v\nwant %+v", c, want)
	}

	// The workflow alone (the prompt chunk missing or broken).
	for _, prompt := range []string{"", "{not json", `{"1": {"class_type": "SaveImage", "inputs": {}}}`} {
		c, err := ParseComfy(prompt, comfyWorkflow)
		if err != nil {
			t.Fatalf("prompt %q: %v", prompt, err)
		}
		want := &Comfy{Prompt: "beautiful scenery nature glass bottle", NegativePrompt: "text, watermark", Seed: 156680208700286,
			Steps: 20, CFG: 8, Sampler: "euler", Scheduler: "normal", Denoise: 1, Model: "sd_xl_base_1.0.safetensors",
			Width: 1024, Height: 1024, Source: KeyComfyWorkflow}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("from workflow:\n got %+v\nwant %+v", c, want)
		}
	}

	for _, tc := range []struct{ prompt, workflow string }{
		{"", ""},
		{"[1,2]", ""},
		{`{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "x"}}}`, ""},
		{"", `{"nodes": "nope"}`},
		{"", `{"nodes": [{"id": 1, "type": "SaveImage"}]}`},
		{"null", "null"},
	} {
		if c, err := ParseComfy(tc.prompt, tc.workflow); err == nil {
			t.Errorf("ParseComfy(%q, %q) = %+v, want error", tc.prompt, tc.workflow, c)
		}
	}

	// A cycle through conditioning nodes ends at the depth bound.
	cyclic := `{"1": {"class_type": "KSampler", "inputs": {"seed": ["2", 0], "positive": ["2", 0]}},
	            "2": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["2", 0], "seed": ["2", 0]}}}`
	if c, err := ParseComfy(cyclic, ""); err != nil || c.Prompt != "" || c.Seed != 0 {
		t.Errorf("cyclic graph: %+v, %v", c, err)
	}

	// A chain where every node links to the next through every input it
	// could follow: visiting each node once keeps this linear, where
	// following every path would take 5^depth steps.
	var sb strings.Builder
	sb.WriteString(`{"1": {"class_type": "KSampler", "inputs": {"seed": ["2", 0], "positive": ["2", 0], "negative": ["2", 0]}}`)
	for i := 2; i < 200; i++ {
		fmt.Fprintf(&sb, `, "%d": {"class_type": "X", "inputs": {`, i)
		for j, k := range append([]string{"conditioning", "conditioning_1", "conditioning_to", "positive", "cond"}, valueInputs...) {
			if j > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, `"%s": ["%d", 0]`, k, i+1)
		}
		sb.WriteString("}}")
	}
	sb.WriteString("}")
	start := time.Now()
	if _, err := ParseComfy(sb.String(), ""); err != nil {
		t.Fatal(err)
	}
	// A hang guard (the old cyclic-graph bug was exponential), not a speed
	// test: the benchmarks measure speed.
	if d := time.Since(start); d > time.Minute {
		t.Errorf("chain of 200 nodes took %v", d)
	}
}

// pngWith builds a small PNG with the given raw chunks inserted after IHDR.
func pngWith(t testing.TB, extra ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(8, 8, 0)); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	out := append([]byte{}, b[:33]...)
	for _, c := range extra {
		out = append(out, c...)
	}
	return append(out, b[33:]...)
}

func rawChunk(typ string, data []byte) []byte { return appendChunk(nil, typ, data) }

func zlibBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestDecodeHandMadePNGs(t *testing.T) {
	// An A1111 PNG: PIL writes a tEXt chunk in Latin-1.
	infotext := "caf\xe9 terrace\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"
	b := pngWith(t, rawChunk("tEXt", []byte("parameters\x00"+infotext)))
	m, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.A1111 == nil || m.A1111.Prompt != "café terrace" || m.A1111.Steps != 20 || m.Recipe != nil || m.Comfy != nil {
		t.Errorf("A1111 png: %+v / %+v", m, m.A1111)
	}

	// A ComfyUI PNG: prompt and workflow as tEXt, plus a compressed iTXt and
	// a zTXt that other tools write.
	b = pngWith(t,
		rawChunk("tEXt", []byte("prompt\x00"+comfyPrompt)),
		rawChunk("tEXt", []byte("workflow\x00"+comfyWorkflow)),
		rawChunk("iTXt", append([]byte("Comment\x00\x01\x00en\x00Kommentar\x00"), zlibBytes([]byte("größer"))...)),
		rawChunk("zTXt", append([]byte("Author\x00\x00"), zlibBytes([]byte("Jos\xe9"))...)),
	)
	m, err = Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.Comfy == nil || m.Comfy.Prompt != "score_9, score_8_up, 1girl" || m.Comfy.Steps != 25 || m.A1111 != nil {
		t.Errorf("comfy png: %+v", m)
	}
	if v, _ := m.Get("Comment"); v != "größer" {
		t.Errorf("iTXt Comment = %q", v)
	}
	if v, _ := m.Get("Author"); v != "José" {
		t.Errorf("zTXt Author = %q", v)
	}

	// Chunks that parse as PNG but whose content is wrong are Problems.
	b = pngWith(t, rawChunk("tEXt", []byte("pixery\x00{broken")), rawChunk("tEXt", []byte("prompt\x00[]")))
	m, err = Decode(bytes.NewReader(b))
	if err != nil || m.Recipe != nil || m.Comfy != nil || len(m.Problems) != 2 {
		t.Errorf("broken chunks: %+v, %v", m, err)
	}
}

func TestReadTextMalformed(t *testing.T) {
	good := pngWith(t)
	withCRC := func(b []byte, at int) []byte {
		c := append([]byte{}, b...)
		c[at] ^= 0xff
		return c
	}
	bomb := rawChunk("zTXt", append([]byte("k\x00\x00"), zlibBytes(make([]byte, MaxInflatedText+1))...))
	hugeLen := binary.BigEndian.AppendUint32(nil, 1<<31)
	hugeLen = append(hugeLen, "tEXt"...)
	textTooBig := binary.BigEndian.AppendUint32(nil, MaxTextChunk+1)
	textTooBig = append(textTooBig, "tEXt"...)
	notIHDRFirst := append(append([]byte{}, pngSignature...), rawChunk("tEXt", []byte("a\x00b"))...)
	badType := rawChunk("tE1t", []byte("a\x00b"))
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"empty", nil},
		{"bad signature", append([]byte("GIF89a.."), good[8:]...)},
		{"truncated", good[:len(good)-6]},
		{"no IEND", good[:len(good)-12]},
		{"CRC mismatch in IHDR", withCRC(good, 30)},
		{"CRC mismatch in IDAT", withCRC(good, 45)},
		{"tEXt without NUL", pngWith(t, rawChunk("tEXt", []byte("parameters")))},
		{"empty keyword", pngWith(t, rawChunk("tEXt", []byte("\x00text")))},
		{"keyword too long", pngWith(t, rawChunk("tEXt", []byte(strings.Repeat("k", 80)+"\x00text")))},
		{"zTXt bad method", pngWith(t, rawChunk("zTXt", []byte("k\x00\x05abc")))},
		{"zTXt not zlib", pngWith(t, rawChunk("zTXt", []byte("k\x00\x00not zlib")))},
		{"zTXt bomb", pngWith(t, bomb)},
		{"iTXt bad flag", pngWith(t, rawChunk("iTXt", []byte("k\x00\x02\x00\x00\x00x")))},
		{"iTXt unterminated", pngWith(t, rawChunk("iTXt", []byte("k\x00\x00\x00en")))},
		{"iTXt not UTF-8", pngWith(t, rawChunk("iTXt", []byte("k\x00\x00\x00\x00\x00\xff\xfe")))},
		{"length over 2^31", pngWith(t, hugeLen)},
		{"text chunk over limit", pngWith(t, textTooBig)},
		{"first chunk not IHDR", notIHDRFirst},
		{"invalid chunk type", pngWith(t, badType)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadText(bytes.NewReader(tc.file))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("want *FormatError, got %v", err)
			}
			t.Log(err)
		})
	}
	if _, err := InsertText([]byte("not a png"), TextChunk{"a", "b"}); err == nil {
		t.Error("InsertText on non-PNG succeeded")
	}
	if _, err := InsertText(good, TextChunk{"", "b"}); err == nil {
		t.Error("InsertText with an empty keyword succeeded")
	}
	if _, err := InsertText(good, TextChunk{"ключ", "b"}); err == nil {
		t.Error("InsertText with a non-Latin-1 keyword succeeded")
	}
}

func chunkTypes(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for off := 8; off+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		out = append(out, string(b[off+4:off+8]))
		if crc32.ChecksumIEEE(b[off+4:off+8+n]) != binary.BigEndian.Uint32(b[off+8+n:]) {
			t.Fatalf("bad CRC in %s", b[off+4:off+8])
		}
		off += 12 + n
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
