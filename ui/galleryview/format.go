package galleryview

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/pngmeta"
)

// captionExcerpt is how many characters of the prompt a caption shows when
// the image names no model or seed.
const captionExcerpt = 40

// countText says how many images there are: "1 image", "1,234 images".
func countText(n int) string {
	if n == 1 {
		return "1 image"
	}
	return groupDigits(n) + " images"
}

// groupDigits writes n with thousands separators.
func groupDigits(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// captionOf is a grid cell's caption: "model · seed", else the start of the
// prompt, else the file name.
func captionOf(it gallery.Item) string {
	var parts []string
	if it.Model != "" {
		parts = append(parts, it.Model)
	}
	if it.HasSeed {
		parts = append(parts, strconv.FormatInt(it.Seed, 10))
	}
	if len(parts) > 0 {
		return strings.Join(parts, " · ")
	}
	if p := strings.Join(strings.Fields(it.Prompt), " "); p != "" {
		return excerpt(p, captionExcerpt)
	}
	return path.Base(it.ID)
}

// fitCaption shortens a caption to n characters; of "model · seed" it
// keeps the seed whole.
func fitCaption(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if left, right, ok := strings.Cut(s, " · "); ok {
		if room := n - utf8.RuneCountInString(right) - 3; room >= 4 {
			return excerpt(left, room) + " · " + right
		}
	}
	return excerpt(s, n)
}

// excerpt cuts s to at most n characters, marking the cut.
func excerpt(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

func titleOf(it gallery.Item) string { return path.Base(it.ID) }

// sourceName names the program whose metadata an image carries.
func sourceName(s gallery.Source) string {
	switch s {
	case gallery.SourcePixery:
		return "pixery"
	case gallery.SourceA1111:
		return "A1111 / Forge"
	case gallery.SourceComfyUI:
		return "ComfyUI"
	default:
		return "no generation metadata"
	}
}

// metadataText is the detail panel's description of an image.
func metadataText(it gallery.Item) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	prompt := it.Prompt
	if prompt == "" {
		prompt = "(none)"
	}
	line("Prompt", prompt)
	line("Negative prompt", it.Negative)
	model := it.Model
	if it.ModelHash != "" {
		model += " [" + it.ModelHash + "]"
	}
	line("Model", strings.TrimSpace(model))
	if it.HasSeed {
		line("Seed", strconv.FormatInt(it.Seed, 10))
	}
	if it.Steps > 0 {
		line("Steps", strconv.Itoa(it.Steps))
	}
	if it.CFG > 0 {
		line("CFG", strconv.FormatFloat(it.CFG, 'g', -1, 64))
	}
	sampler := it.Sampler
	if it.Scheduler != "" {
		sampler += " (" + it.Scheduler + ")"
	}
	line("Sampler", strings.TrimSpace(sampler))
	if it.Width > 0 && it.Height > 0 {
		line("Size", sizeText(it.Width, it.Height))
	}
	var loras []string
	for _, l := range it.LoRAs {
		loras = append(loras, l.Name+" ("+strconv.FormatFloat(l.Weight, 'g', -1, 64)+")")
	}
	line("LoRAs", strings.Join(loras, ", "))
	if it.ClipSkip > 0 {
		line("Clip skip", strconv.Itoa(it.ClipSkip))
	}
	line("RNG", it.RNG)
	if it.RefSHA256 != "" {
		ref := "reference " + excerpt(it.RefSHA256, 13)
		if it.RefScale != 0 {
			ref += ", scale " + strconv.FormatFloat(it.RefScale, 'g', -1, 64)
		}
		if it.IPAdapter != "" {
			ref = it.IPAdapter + ", " + ref
		}
		line("IP-Adapter", ref)
	}
	line("Source", sourceName(it.Source))
	line("File", it.ID)
	if !it.ModTime.IsZero() {
		line("Date", it.ModTime.Local().Format("2006-01-02 15:04"))
	}
	return strings.TrimRight(b.String(), "\n")
}

// parametersOf is the text "Copy" puts on the clipboard: the A1111
// "parameters" chunk of the file when it has one, else the same format
// made from the indexed metadata (ComfyUI images, or an unreadable file,
// whose error is returned beside the text).
func parametersOf(it gallery.Item) (string, error) {
	f, err := os.Open(it.Path)
	if err == nil {
		chunks, rerr := pngmeta.ReadText(f)
		f.Close()
		err = rerr
		for _, c := range chunks {
			if c.Keyword == pngmeta.KeyParameters && strings.TrimSpace(c.Text) != "" {
				return c.Text, nil
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("read %s: %w", it.ID, err)
	}
	return formatParameters(it), err
}

// formatParameters writes an image's metadata as A1111 infotext.
func formatParameters(it gallery.Item) string {
	var fields []pngmeta.Field
	add := func(k, v string) {
		if v != "" {
			fields = append(fields, pngmeta.Field{Key: k, Value: v})
		}
	}
	if it.Steps > 0 {
		add("Steps", strconv.Itoa(it.Steps))
	}
	add("Sampler", it.Sampler)
	add("Schedule type", it.Scheduler)
	if it.CFG > 0 {
		add("CFG scale", strconv.FormatFloat(it.CFG, 'g', -1, 64))
	}
	if it.HasSeed {
		add("Seed", strconv.FormatInt(it.Seed, 10))
	}
	if it.Width > 0 && it.Height > 0 {
		add("Size", fmt.Sprintf("%dx%d", it.Width, it.Height))
	}
	add("Model hash", it.ModelHash)
	add("Model", it.Model)
	if it.ClipSkip > 0 {
		add("Clip skip", strconv.Itoa(it.ClipSkip))
	}
	// A1111 names LoRAs in the prompt; add those the prompt lacks (ComfyUI
	// loads them in the graph).
	prompt := it.Prompt
	for _, l := range it.LoRAs {
		if !strings.Contains(prompt, "<lora:"+l.Name+":") {
			prompt += " <lora:" + l.Name + ":" + strconv.FormatFloat(l.Weight, 'g', -1, 64) + ">"
		}
	}
	return pngmeta.FormatParameters(strings.TrimSpace(prompt), it.Negative, fields)
}

// sizeText writes a pixel size for the size filter: "832×1216".
func sizeText(w, h int) string { return strconv.Itoa(w) + "×" + strconv.Itoa(h) }

// parseSize reads sizeText's format back.
func parseSize(s string) (w, h int, ok bool) {
	a, b, found := strings.Cut(s, "×")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0, 0, false
	}
	return w, h, true
}

func sortedModels(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

// sortedSizes orders sizes by area, then width.
func sortedSizes(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b string) int {
		aw, ah, _ := parseSize(a)
		bw, bh, _ := parseSize(b)
		if d := aw*ah - bw*bh; d != 0 {
			return d
		}
		return aw - bw
	})
	return out
}

// folderURL is the file:// URL of the folder holding a file.
func folderURL(file string) *url.URL {
	p := filepath.ToSlash(filepath.Dir(file))
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/x → /C:/x
	}
	return &url.URL{Scheme: "file", Path: p}
}

// importSummary says what an import did: "12 imported, 1 skipped:
// notes.txt: not a PNG file: bad signature".
func importSummary(res gallery.ImportResult) string {
	n, bad := len(res.Items), len(res.Problems)
	if n == 0 && bad == 0 {
		return "Nothing imported: no PNG images found"
	}
	s := groupDigits(n) + " imported"
	if bad > 0 {
		p := res.Problems[0]
		s += fmt.Sprintf(", %s skipped: %s: %s", groupDigits(bad), filepath.Base(p.ID), p.Err)
		if bad > 1 {
			s += fmt.Sprintf(" (and %s more)", groupDigits(bad-1))
		}
	}
	return s
}

// changeSummary says what other programs changed in the folder.
func changeSummary(res gallery.SyncResult) string {
	var parts []string
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return groupDigits(n) + " " + many
	}
	if n := len(res.Added); n > 0 {
		parts = append(parts, plural(n, "image", "images")+" added")
	}
	if n := len(res.Removed); n > 0 {
		parts = append(parts, plural(n, "image", "images")+" removed")
	}
	if n := len(res.Updated); n > 0 {
		parts = append(parts, plural(n, "image", "images")+" changed")
	}
	if len(parts) == 0 {
		return ""
	}
	return "Gallery folder: " + strings.Join(parts, ", ")
}
