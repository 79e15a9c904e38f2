package pngmeta

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Field is one "Key: value" pair of infotext, the value unquoted.
type Field struct {
	Key   string
	Value string
}

// LoRAHashEntry is one "name: hash" pair of the "Lora hashes" field.
type LoRAHashEntry struct {
	Name string
	Hash string
}

// Parameters is A1111/Forge infotext taken apart. The typed fields are
// filled from the well-known keys; every pair, known or not, is in Fields
// in the order written.
type Parameters struct {
	Prompt         string
	NegativePrompt string
	Fields         []Field

	Steps        int
	Sampler      string
	ScheduleType string
	CFG          float64
	Seed         int64
	Width        int
	Height       int
	ModelHash    string
	Model        string
	// ClipSkip is 1 when the text has no "Clip skip" (A1111's reading).
	ClipSkip   int
	RNG        string
	LoRAHashes []LoRAHashEntry
	Version    string
}

// Get returns the value of the first field named key.
func (p *Parameters) Get(key string) (string, bool) {
	for _, f := range p.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// reParam is A1111's re_param: a key of word characters, spaces, dashes and
// slashes, a colon, then a quoted string or anything up to the next comma.
// RE2 runs it in linear time, whatever the input.
var reParam = regexp.MustCompile(`\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`)

var reSize = regexp.MustCompile(`^(\d+)x(\d+)$`)

// MaxParametersLength bounds the infotext ParseParameters accepts.
const MaxParametersLength = 1 << 20

// ParseParameters reads infotext as A1111's parse_generation_parameters
// does: the last line holds the parameters when at least three "Key: value"
// pairs are found in it; lines before it are the prompt, and from a line
// starting with "Negative prompt:" on, the negative prompt.
//
// The result is filled as far as the text allows. The error is non-nil when
// the text is empty, too long or not UTF-8 (result nil), or when a
// well-known field has a value of the wrong form (result non-nil, the field
// left at its zero value, the raw value still in Fields).
func ParseParameters(s string) (*Parameters, error) {
	if len(s) > MaxParametersLength {
		return nil, fmt.Errorf("infotext: %d bytes exceeds the %d-byte limit", len(s), MaxParametersLength)
	}
	if !utf8.ValidString(s) {
		return nil, errors.New("infotext: not valid UTF-8")
	}
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	if s == "" {
		return nil, errors.New("infotext: empty")
	}
	lines := strings.Split(s, "\n")
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	matches := reParam.FindAllStringSubmatch(last, -1)
	if len(matches) < 3 {
		lines = append(lines, last)
		matches = nil
	}
	p := &Parameters{ClipSkip: 1}
	negative := false
	var prompt, neg []string
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "Negative prompt:"); ok {
			negative = true
			line = strings.TrimSpace(rest)
		}
		if negative {
			neg = append(neg, line)
		} else {
			prompt = append(prompt, line)
		}
	}
	p.Prompt = strings.Join(prompt, "\n")
	p.NegativePrompt = strings.Join(neg, "\n")

	var errs []error
	for _, m := range matches {
		k, v := m[1], m[2]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = unquote(v)
		}
		p.Fields = append(p.Fields, Field{k, v})
		if err := p.setKnown(k, strings.TrimSpace(v)); err != nil {
			errs = append(errs, fmt.Errorf("infotext field %q: %w", k, err))
		}
	}
	return p, errors.Join(errs...)
}

// unquote is A1111's: a JSON string when it parses as one, else as it is.
func unquote(v string) string {
	var s string
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return v
	}
	return s
}

func (p *Parameters) setKnown(k, v string) error {
	var err error
	switch k {
	case "Steps":
		p.Steps, err = parseInt(v, 1, 10000)
	case "Sampler":
		p.Sampler = v
	case "Schedule type":
		p.ScheduleType = v
	case "CFG scale":
		p.CFG, err = strconv.ParseFloat(v, 64)
		if err == nil && (p.CFG != p.CFG || p.CFG < -1000 || p.CFG > 1000) {
			p.CFG, err = 0, fmt.Errorf("value %q out of range", v)
		}
	case "Seed":
		p.Seed, err = strconv.ParseInt(v, 10, 64)
		if err != nil {
			// A1111 seeds are unsigned 32-bit, but some tools write larger ones.
			var u uint64
			if u, err = strconv.ParseUint(v, 10, 64); err == nil {
				p.Seed = int64(u)
			}
		}
	case "Size":
		m := reSize.FindStringSubmatch(v)
		if m == nil {
			return fmt.Errorf("want WIDTHxHEIGHT, got %q", v)
		}
		if p.Width, err = parseInt(m[1], 1, 1<<20); err == nil {
			p.Height, err = parseInt(m[2], 1, 1<<20)
		}
		if err != nil {
			p.Width, p.Height = 0, 0
		}
	case "Model hash":
		p.ModelHash = v
	case "Model":
		p.Model = v
	case "Clip skip":
		p.ClipSkip, err = parseInt(v, 1, 1000)
		if err != nil {
			p.ClipSkip = 1
		}
	case "RNG":
		p.RNG = v
	case "Lora hashes":
		p.LoRAHashes, err = parseLoRAHashes(v)
	case "Version":
		p.Version = v
	}
	return err
}

func parseInt(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %q", v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("value %d outside %d..%d", n, lo, hi)
	}
	return n, nil
}

func parseLoRAHashes(v string) ([]LoRAHashEntry, error) {
	var out []LoRAHashEntry
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, hash, ok := strings.Cut(part, ":")
		if !ok {
			return out, fmt.Errorf("want name: hash, got %q", part)
		}
		out = append(out, LoRAHashEntry{strings.TrimSpace(name), strings.TrimSpace(hash)})
	}
	return out, nil
}
