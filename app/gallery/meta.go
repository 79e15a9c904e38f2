package gallery

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pixery/pixery/engine/pngmeta"
)

// maxIndexedText bounds the prompt and negative prompt kept in the index.
// Real prompts are a few KiB; pngmeta already bounds a text chunk to 16 MiB,
// and this keeps such a file from bloating the index.
const maxIndexedText = 256 << 10

// maxPixels bounds the images Thumbnail decodes (width × height), so that a
// PNG header claiming a gigantic size cannot make it allocate gigabytes.
const maxPixels = 100 << 20

// pngHeader holds what the first 33 bytes of a PNG say.
type pngHeader struct {
	width, height int
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// readHeader reads the PNG signature and IHDR chunk.
func readHeader(r io.Reader) (pngHeader, error) {
	var b [33]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return pngHeader{}, fmt.Errorf("not a PNG file: %d-byte header missing", len(b))
	}
	if !bytes.Equal(b[:8], pngSignature) {
		return pngHeader{}, fmt.Errorf("not a PNG file: bad signature")
	}
	if binary.BigEndian.Uint32(b[8:12]) != 13 || string(b[12:16]) != "IHDR" {
		return pngHeader{}, fmt.Errorf("not a PNG file: no IHDR chunk first")
	}
	w, h := binary.BigEndian.Uint32(b[16:20]), binary.BigEndian.Uint32(b[20:24])
	if w == 0 || h == 0 || w > 1<<31-1 || h > 1<<31-1 {
		return pngHeader{}, fmt.Errorf("PNG header: invalid size %dx%d", w, h)
	}
	return pngHeader{int(w), int(h)}, nil
}

// readItem reads the image file at p and describes it; id names it in the
// gallery. Notes lists metadata that was present but not understood. The
// error is non-nil when the file is not a readable PNG.
func readItem(p, id string) (it Item, notes []string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return Item{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Item{}, nil, err
	}
	if !fi.Mode().IsRegular() {
		return Item{}, nil, fmt.Errorf("not a regular file")
	}
	it, notes, err = describe(f, fi.Size())
	if err != nil {
		return Item{}, nil, err
	}
	it.ID, it.Path = id, p
	it.Size, it.ModTime = fi.Size(), fi.ModTime()
	return it, notes, nil
}

// describe reads a PNG's header and metadata.
func describe(r io.ReaderAt, size int64) (Item, []string, error) {
	stream, hdr, err := metadataStream(r, size)
	if err != nil {
		return Item{}, nil, err
	}
	m, err := pngmeta.Decode(bytes.NewReader(stream))
	if err != nil {
		return Item{}, nil, err
	}
	it := Item{Width: hdr.width, Height: hdr.height}
	var notes []string
	for _, p := range m.Problems {
		notes = append(notes, p.Error())
	}
	fillFromMetadata(&it, m)
	for _, s := range []*string{&it.Prompt, &it.Negative} {
		if len(*s) > maxIndexedText {
			notes = append(notes, fmt.Sprintf("prompt of %d bytes cut to %d for the index", len(*s), maxIndexedText))
			*s = truncateUTF8(*s, maxIndexedText)
		}
	}
	return it, notes, nil
}

// maxMetadata bounds the text chunks read from one file altogether: each
// is bounded by pngmeta.MaxTextChunk, but a hostile file could hold many.
const maxMetadata = 32 << 20

// headReadSize is how much of a file metadataStream reads at once first: a
// generated image's header and text chunks, in one read.
const headReadSize = 64 << 10

// metadataStream walks a PNG file's chunks and returns a PNG stream of its
// metadata alone: the signature, IHDR, the text chunks wherever they are,
// and IEND. The image data is skipped over, not read, so that indexing a
// 1.5 MB image reads a few KiB; the walk still checks that every chunk is
// whole and that the file ends with IEND, so truncated or garbled files are
// caught. pngmeta then checks the kept chunks' CRCs and decodes them.
func metadataStream(r io.ReaderAt, size int64) ([]byte, pngHeader, error) {
	head := make([]byte, min(size, headReadSize))
	if n, err := r.ReadAt(head, 0); n < len(head) {
		return nil, pngHeader{}, fmt.Errorf("read: %w", err)
	}
	hdr, err := readHeader(bytes.NewReader(head))
	if err != nil {
		return nil, hdr, err
	}
	readAt := func(b []byte, off int64) error {
		if off+int64(len(b)) <= int64(len(head)) {
			copy(b, head[off:])
			return nil
		}
		if _, err := r.ReadAt(b, off); err != nil {
			return err
		}
		return nil
	}
	out := append([]byte(nil), head[:8]...)
	sawData := false
	var h [8]byte
	for off := int64(8); ; {
		if off+12 > size {
			return nil, hdr, fmt.Errorf("png: truncated at byte %d, before IEND", off)
		}
		if err := readAt(h[:], off); err != nil {
			return nil, hdr, fmt.Errorf("read chunk at byte %d: %w", off, err)
		}
		length := int64(binary.BigEndian.Uint32(h[:4]))
		typ := string(h[4:])
		if length > 1<<31-1 {
			return nil, hdr, fmt.Errorf("png: chunk at byte %d: length %d exceeds 2^31-1", off, length)
		}
		for _, c := range h[4:] {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				return nil, hdr, fmt.Errorf("png: chunk at byte %d: invalid chunk type %q", off, typ)
			}
		}
		end := off + 12 + length
		if end > size {
			return nil, hdr, fmt.Errorf("png: %s chunk at byte %d: truncated (file ends at byte %d)", typ, off, size)
		}
		switch typ {
		case "IDAT":
			sawData = true
		case "IHDR", "IEND", "tEXt", "zTXt", "iTXt":
			if length > pngmeta.MaxTextChunk {
				return nil, hdr, fmt.Errorf("png: %s chunk at byte %d: %d bytes exceeds the %d-byte limit for text", typ, off, length, pngmeta.MaxTextChunk)
			}
			if int64(len(out))+12+length > maxMetadata {
				return nil, hdr, fmt.Errorf("png: text chunks exceed %d bytes in all", maxMetadata)
			}
			chunk := make([]byte, 12+length)
			if err := readAt(chunk, off); err != nil {
				return nil, hdr, fmt.Errorf("read %s chunk at byte %d: %w", typ, off, err)
			}
			out = append(out, chunk...)
		}
		if typ == "IEND" {
			if !sawData {
				return nil, hdr, errors.New("png: no image data (IDAT) before IEND")
			}
			return out, hdr, nil
		}
		off = end
	}
}

func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// fillFromMetadata copies what the chunks say into it, preferring pixery's
// recipe (the whole truth), then A1111 infotext, then ComfyUI's graph.
func fillFromMetadata(it *Item, m *pngmeta.Metadata) {
	switch {
	case m.Recipe != nil:
		r := m.Recipe
		it.Source = SourcePixery
		it.Prompt, it.Negative = r.Prompt, r.NegativePrompt
		it.Model, it.ModelHash = r.Model, r.ModelHash
		it.Seed, it.HasSeed = r.Seed, true
		it.Steps, it.CFG = r.Steps, r.CFG
		it.Sampler, it.Scheduler = r.Sampler, r.Scheduler
		it.ClipSkip, it.RNG = r.ClipSkip, r.RNG
		for _, l := range r.LoRAs {
			it.LoRAs = append(it.LoRAs, LoRA{Name: l.Name, Weight: l.Scale})
		}
		if r.IPAdapter != nil {
			it.RefSHA256, it.RefScale, it.IPAdapter = r.IPAdapter.ImageSHA256, r.IPAdapter.Scale, r.IPAdapter.Adapter
		}
	case m.A1111 != nil:
		p := m.A1111
		it.Source = SourceA1111
		it.Prompt, it.Negative = p.Prompt, p.NegativePrompt
		it.Model, it.ModelHash = p.Model, p.ModelHash
		if _, ok := p.Get("Seed"); ok {
			it.Seed, it.HasSeed = p.Seed, true
		}
		it.Steps, it.CFG = p.Steps, p.CFG
		it.Sampler, it.Scheduler = p.Sampler, p.ScheduleType
		it.ClipSkip, it.RNG = p.ClipSkip, p.RNG
		it.LoRAs = promptLoRAs(p.Prompt)
	case m.Comfy != nil:
		c := m.Comfy
		it.Source = SourceComfyUI
		it.Prompt, it.Negative = c.Prompt, c.NegativePrompt
		it.Model = modelStem(c.Model)
		it.Seed, it.HasSeed = c.Seed, true
		it.Steps, it.CFG = c.Steps, c.CFG
		it.Sampler, it.Scheduler = c.Sampler, c.Scheduler
		if s, ok := m.Get(pngmeta.KeyComfyPrompt); ok {
			it.LoRAs = comfyLoRAs(s)
		}
	default:
		it.Source = SourceUnknown
	}
}

// modelStem turns a checkpoint path ("sdxl/animagine-xl-3.1.safetensors")
// into the name A1111 shows ("animagine-xl-3.1").
func modelStem(p string) string {
	p = path.Base(strings.ReplaceAll(p, "\\", "/"))
	if p == "." || p == "/" {
		return ""
	}
	switch ext := strings.ToLower(path.Ext(p)); ext {
	case ".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft":
		p = p[:len(p)-len(ext)]
	}
	return p
}

// reLoRATag matches A1111's extra-network syntax <lora:name:weight> (and
// <lyco:…>); the weight may be missing, or followed by more arguments.
var reLoRATag = regexp.MustCompile(`<(?:lora|lyco):([^:<>]+)(?::([^:<>]*))?[^<>]*>`)

// promptLoRAs lists the LoRAs an A1111 prompt applies.
func promptLoRAs(prompt string) []LoRA {
	var out []LoRA
	for _, m := range reLoRATag.FindAllStringSubmatch(prompt, 64) {
		w := 1.0
		if m[2] != "" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(m[2]), 64); err == nil {
				w = f
			}
		}
		out = append(out, LoRA{Name: strings.TrimSpace(m[1]), Weight: w})
	}
	return out
}

// comfyLoRAs lists the LoRA loader nodes of a ComfyUI API-format graph, in
// node-id order. What pngmeta.ParseComfy extracts has no LoRAs, so this reads
// the graph again for them; a graph that does not parse has none.
func comfyLoRAs(graph string) []LoRA {
	var nodes map[string]struct {
		ClassType string                     `json:"class_type"`
		Inputs    map[string]json.RawMessage `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(graph), &nodes); err != nil {
		return nil
	}
	ids := make([]string, 0, len(nodes))
	for id, n := range nodes {
		if strings.Contains(strings.ToLower(n.ClassType), "loraloader") {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, errA := strconv.Atoi(ids[i])
		b, errB := strconv.Atoi(ids[j])
		if errA == nil && errB == nil {
			return a < b
		}
		return ids[i] < ids[j]
	})
	var out []LoRA
	for _, id := range ids {
		in := nodes[id].Inputs
		var name string
		if json.Unmarshal(in["lora_name"], &name) != nil || name == "" {
			continue // linked from another node, or missing
		}
		w := 1.0
		for _, k := range []string{"strength_model", "strength"} {
			var f float64
			if raw, ok := in[k]; ok && json.Unmarshal(raw, &f) == nil {
				w = f
				break
			}
		}
		out = append(out, LoRA{Name: modelStem(name), Weight: w})
	}
	return out
}

// mtimeNanos is how modification times are stored and compared.
func mtimeNanos(t time.Time) int64 { return t.UnixNano() }
