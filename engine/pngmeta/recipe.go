package pngmeta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/pixery/pixery/engine/sampler"
)

// Chunk keywords.
const (
	// KeyParameters is A1111's infotext chunk.
	KeyParameters = "parameters"
	// KeyRecipe is pixery's chunk: the Recipe as JSON.
	KeyRecipe = "pixery"
	// KeyComfyPrompt and KeyComfyWorkflow are ComfyUI's chunks: the API-format
	// graph that ran and the editor's workflow.
	KeyComfyPrompt   = "prompt"
	KeyComfyWorkflow = "workflow"
)

// RecipeVersion is the version of the Recipe JSON written by this package.
const RecipeVersion = 1

// RNG names, as in the engine's job requests.
const (
	// RNGA1111 is A1111's default noise: its emulation of torch's CUDA
	// generator (A1111 writes no "RNG" field for it).
	RNGA1111 = "a1111"
	// RNGComfy is torch's CPU generator, ComfyUI's noise and A1111's "CPU"
	// RNG setting.
	RNGComfy = "comfy"
)

// Recipe is everything needed to make an image again. It is stored as JSON
// in the pixery chunk; Parameters renders the A1111 view of it.
type Recipe struct {
	// Version is RecipeVersion when written by this package.
	Version int `json:"version"`
	// Generator names the program and version, e.g. "pixery 0.1.0"; it is
	// A1111's "Version" field.
	Generator string `json:"generator,omitempty"`

	// Model is the registry id; ModelFile the checkpoint's file name.
	Model     string `json:"model"`
	ModelFile string `json:"model_file,omitempty"`
	// ModelHash is A1111's AutoV2 hash (first 10 hex digits of the file's
	// SHA-256); ModelSHA256 the whole digest when known.
	ModelHash   string `json:"model_hash,omitempty"`
	ModelSHA256 string `json:"model_sha256,omitempty"`
	// Prediction is "epsilon" or "v_prediction" when known.
	Prediction string `json:"prediction,omitempty"`

	Prompt         string  `json:"prompt"`
	NegativePrompt string  `json:"negative_prompt"`
	Width          int     `json:"width"`
	Height         int     `json:"height"`
	Steps          int     `json:"steps"`
	CFG            float64 `json:"cfg"`
	// Sampler is the engine's sampler name ("euler_a", "dpmpp_2m_karras");
	// Scheduler an A1111 schedule type ("Karras") when one was given apart.
	Sampler   string `json:"sampler"`
	Scheduler string `json:"scheduler,omitempty"`
	// Seed is this image's seed: a batch's images have seeds s, s+1, ….
	Seed int64 `json:"seed"`
	// RNG is RNGA1111 or RNGComfy.
	RNG string `json:"rng"`
	// ClipSkip counts as A1111 does (2 = penultimate layer).
	ClipSkip int `json:"clip_skip,omitempty"`
	// BatchIndex is the image's place in its batch, BatchSize the batch's size.
	BatchIndex int `json:"batch_index,omitempty"`
	BatchSize  int `json:"batch_size,omitempty"`

	LoRAs     []LoRA     `json:"loras,omitempty"`
	IPAdapter *IPAdapter `json:"ip_adapter,omitempty"`
}

// LoRA is one LoRA applied to the model.
type LoRA struct {
	Name  string  `json:"name"`
	Scale float64 `json:"scale"`
	// Hash is A1111's short LoRA hash (see LoRAHash), when known.
	Hash string `json:"hash,omitempty"`
}

// IPAdapter records the image prompt.
type IPAdapter struct {
	Adapter string  `json:"adapter"`
	Scale   float64 `json:"scale"`
	// ImageSHA256 identifies the reference image, which is not embedded.
	ImageSHA256 string `json:"image_sha256,omitempty"`
}

// formatNumber writes a float as users type it: 5, 5.5, 0.75.
func formatNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// a1111Sampler gives A1111's sampler and schedule-type labels for an engine
// sampler name; unknown names are passed through as they are.
func a1111Sampler(name, scheduler string) (string, string) {
	spec, err := sampler.Lookup(name, scheduler)
	if err != nil {
		return name, scheduler
	}
	return spec.A1111()
}

// Parameters renders the recipe as A1111's infotext: the prompt, a
// "Negative prompt:" line when there is one, then one line of "Key: value"
// pairs in A1111's order, values quoted as A1111 quotes them.
func (r *Recipe) Parameters() string {
	var fields []Field
	add := func(k, v string) {
		if v != "" {
			fields = append(fields, Field{k, v})
		}
	}
	samplerName, schedule := a1111Sampler(r.Sampler, r.Scheduler)
	add("Steps", strconv.Itoa(r.Steps))
	add("Sampler", samplerName)
	add("Schedule type", schedule)
	add("CFG scale", formatNumber(r.CFG))
	add("Seed", strconv.FormatInt(r.Seed, 10))
	add("Size", fmt.Sprintf("%dx%d", r.Width, r.Height))
	add("Model hash", r.ModelHash)
	// A1111 names the model by its checkpoint file's stem.
	model := r.Model
	if r.ModelFile != "" {
		model = strings.TrimSuffix(filepath.Base(r.ModelFile), filepath.Ext(r.ModelFile))
	}
	add("Model", model)
	if r.ClipSkip > 1 {
		add("Clip skip", strconv.Itoa(r.ClipSkip))
	}
	if r.RNG == RNGComfy {
		add("RNG", "CPU")
	}
	var loraHashes []string
	for _, l := range r.LoRAs {
		if l.Hash != "" {
			// A1111 drops the separators from the name so the list parses back.
			name := strings.NewReplacer(":", "", ",", "").Replace(l.Name)
			loraHashes = append(loraHashes, name+": "+l.Hash)
		}
	}
	add("Lora hashes", strings.Join(loraHashes, ", "))
	add("Version", r.Generator)
	return FormatParameters(r.Prompt, r.NegativePrompt, fields)
}

// FormatParameters assembles infotext as A1111's create_infotext does.
func FormatParameters(prompt, negative string, fields []Field) string {
	var b strings.Builder
	b.WriteString(prompt)
	if negative != "" {
		b.WriteString("\nNegative prompt: ")
		b.WriteString(negative)
	}
	b.WriteByte('\n')
	for i, f := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		if f.Key == f.Value {
			b.WriteString(f.Key)
			continue
		}
		b.WriteString(f.Key)
		b.WriteString(": ")
		b.WriteString(quote(f.Value))
	}
	return strings.TrimSpace(b.String())
}

// quote is A1111's infotext_utils.quote: a value holding a comma, colon or
// newline is written as a JSON string, as Python's json.dumps with
// ensure_ascii=False writes it.
func quote(s string) string {
	if !strings.ContainsAny(s, ",:\n") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Chunks returns the two text chunks that describe an image made from r.
func (r *Recipe) Chunks() ([]TextChunk, error) {
	rc := *r
	if rc.Version == 0 {
		rc.Version = RecipeVersion
	}
	js, err := json.Marshal(&rc)
	if err != nil {
		return nil, fmt.Errorf("pngmeta: encode recipe: %w", err)
	}
	return []TextChunk{{KeyParameters, r.Parameters()}, {KeyRecipe, string(js)}}, nil
}

var encoderPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() *png.EncoderBuffer {
	v, _ := b.p.Get().(*png.EncoderBuffer)
	return v
}
func (b *bufferPool) Put(e *png.EncoderBuffer) { b.p.Put(e) }

// Encode writes img as a PNG carrying r's A1111 parameters chunk and pixery
// recipe chunk, both ahead of the image data. An opaque image is written as
// 8-bit RGB.
func Encode(w io.Writer, img image.Image, r *Recipe) error {
	b, err := EncodeBytes(img, r)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// EncodeBytes is Encode into a new byte slice.
func EncodeBytes(img image.Image, r *Recipe) ([]byte, error) {
	if img == nil {
		return nil, fmt.Errorf("pngmeta: encode: nil image")
	}
	chunks, err := r.Chunks()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	bnd := img.Bounds()
	buf.Grow(bnd.Dx()*bnd.Dy()*3/2 + 1024)
	enc := png.Encoder{CompressionLevel: png.DefaultCompression, BufferPool: encoderPool}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("pngmeta: encode %dx%d image: %w", bnd.Dx(), bnd.Dy(), err)
	}
	// The recipe is JSON in UTF-8: always iTXt, so that no reader has to
	// guess at Latin-1.
	return insertText(buf.Bytes(), chunks, map[string]bool{KeyRecipe: true})
}
