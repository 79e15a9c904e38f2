package prompt

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// LoRARef is a LoRA requested in a prompt with A1111's extra-network syntax.
type LoRARef struct {
	Name  string
	Scale float64
}

// ExtractLoRAs removes A1111 extra-network tags <kind:args> from text and
// returns the LoRAs they name, in order. It must run before ParseAttention,
// as in A1111, so that the tags never reach the tokenizer.
//
// A tag is what A1111's regex <(\w+):([^>]+)> matches; it is replaced by
// nothing. For kinds "lora" and "lyco" the arguments are name[:te[:unet]]
// with optional named te=, unet=; the scale defaults to 1. Errors name the
// offending tag: another kind (A1111 would ignore it silently), an empty
// name, a scale that is not a finite number, different text-encoder and UNet
// scales or a dyn= dimension (not supported), and a "<lora:" or "<lyco:"
// left that is not a complete tag, such as "<lora:>" or an unclosed one.
func ExtractLoRAs(text string) (clean string, loras []LoRARef, err error) {
	if !utf8.ValidString(text) {
		return "", nil, fmt.Errorf("extract LoRA tags: %w", ErrInvalidUTF8)
	}
	var b strings.Builder
	last := 0
	gt := newByteFinder(text, '>')
	for i := 0; i < len(text); {
		lt := strings.IndexByte(text[i:], '<')
		if lt < 0 {
			break
		}
		lt += i
		j := lt + 1
		for j < len(text) {
			r, size := utf8.DecodeRuneInString(text[j:])
			if !isWord(r) {
				break
			}
			j += size
		}
		if j == lt+1 || j >= len(text) || text[j] != ':' {
			i = lt + 1
			continue
		}
		end := gt.next(j + 1)
		if end < 0 {
			break // no '>' left, so no later tag can close either
		}
		if end == j+1 {
			i = lt + 1 // [^>]+ needs at least one character
			continue
		}
		tag := text[lt : end+1]
		kind, args := text[lt+1:j], text[j+1:end]
		if kind != "lora" && kind != "lyco" {
			return "", nil, fmt.Errorf("extract LoRA tags: unsupported extra network %q (only lora and lyco are)", clip(tag))
		}
		ref, err := parseLoRAArgs(args)
		if err != nil {
			return "", nil, fmt.Errorf("extract LoRA tags: %q: %w", clip(tag), err)
		}
		loras = append(loras, ref)
		b.WriteString(text[last:lt])
		last = end + 1
		i = end + 1
	}
	b.WriteString(text[last:])
	clean = b.String()
	for _, open := range []string{"<lora:", "<lyco:"} {
		if k := strings.Index(clean, open); k >= 0 {
			return "", nil, fmt.Errorf("extract LoRA tags: malformed tag %q (want <%s:name> or <%s:name:scale>)",
				clip(clean[k:]), open[1:5], open[1:5])
		}
	}
	return clean, loras, nil
}

// parseLoRAArgs reads "name[:te[:unet]]" with named te=, unet=, dyn= items,
// as A1111's ExtraNetworkParams and the Lora extension do.
func parseLoRAArgs(args string) (LoRARef, error) {
	var positional []string
	named := map[string]string{}
	for _, item := range strings.Split(args, ":") {
		if k, v, ok := strings.Cut(item, "="); ok {
			named[k] = v
		} else {
			positional = append(positional, item)
		}
	}
	if len(positional) == 0 || positional[0] == "" {
		return LoRARef{}, fmt.Errorf("missing LoRA name")
	}
	ref := LoRARef{Name: positional[0], Scale: 1}
	te := ""
	if len(positional) > 1 {
		te = positional[1]
	}
	if v, ok := named["te"]; ok {
		te = v
	}
	if te != "" {
		s, err := parseScale(te)
		if err != nil {
			return LoRARef{}, err
		}
		ref.Scale = s
	}
	unet := ""
	if len(positional) > 2 {
		unet = positional[2]
	}
	if v, ok := named["unet"]; ok {
		unet = v
	}
	if unet != "" {
		s, err := parseScale(unet)
		if err != nil {
			return LoRARef{}, err
		}
		if s != ref.Scale {
			return LoRARef{}, fmt.Errorf("separate text-encoder (%g) and UNet (%g) scales are not supported", ref.Scale, s)
		}
	}
	if len(positional) > 3 || named["dyn"] != "" {
		return LoRARef{}, fmt.Errorf("dyn (LoRA rank) is not supported")
	}
	return ref, nil
}

func parseScale(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if strings.ContainsAny(t, "xX_") { // Go-only syntax: hex floats, digit separators
		return 0, fmt.Errorf("scale %q is not a number", s)
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("scale %q is not a finite number", s)
	}
	return f, nil
}

// byteFinder answers "next occurrence of c at or after i" for increasing i in
// linear total time, so that scanning many '<' stays linear.
type byteFinder struct {
	s    string
	c    byte
	from int // position of the last search, or -1
	at   int // first occurrence at or after from, or -1
}

func newByteFinder(s string, c byte) *byteFinder {
	return &byteFinder{s: s, c: c, from: -1, at: -1}
}

func (f *byteFinder) next(i int) int {
	// The cached answer holds for i in [from, at], or for every i >= from
	// when there is no occurrence at all.
	if f.from >= 0 && i >= f.from && (f.at < 0 || f.at >= i) {
		return f.at
	}
	f.from = i
	if k := strings.IndexByte(f.s[i:], f.c); k >= 0 {
		f.at = i + k
	} else {
		f.at = -1
	}
	return f.at
}
