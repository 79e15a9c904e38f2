// Package prompt implements AUTOMATIC1111's prompt syntax for SDXL: attention
// weights ((a), [a], (a:1.3), escapes, BREAK), the AND split, the extra-network
// tags <lora:name:w>, the cut of a prompt into 75-token chunks with per-token
// weights, and the application of those weights to encoder outputs.
//
// It transcribes modules/prompt_parser.py and modules/sd_hijack_clip.py of
// stable-diffusion-webui, including their quirks, so that a prompt gives the
// same token ids and weights as in A1111. Where A1111 would raise an
// exception (an unparsable weight such as "(a:1.2.3)"), this package returns
// an error; it also returns errors where A1111 would silently compute
// infinite weights or would take unbounded time.
package prompt

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/pixery/pixery/engine/tokenizer"
)

// Part is a run of prompt text with its attention weight. A BREAK keyword is
// the Part {"BREAK", -1}.
type Part struct {
	Text   string
	Weight float64
}

// IsBreak reports whether p is a BREAK marker. Like A1111 it tests the pair
// ("BREAK", -1) only, so a BREAK inside brackets, whose weight has been
// multiplied, is ordinary text to the chunker.
func (p Part) IsBreak() bool { return p.Text == "BREAK" && p.Weight == -1 }

// ErrInvalidUTF8 is returned (wrapped) for a prompt that is not valid UTF-8.
// Invalid bytes are rejected, not replaced, so a broken client is noticed.
// It is the tokenizer's error, so errors.Is matches either.
var ErrInvalidUTF8 = tokenizer.ErrInvalidUTF8

// Bracket multipliers as A1111 computes them at run time in float64 (a Go
// constant expression would round 1/1.1 differently).
var (
	roundMultiplier  = 1.1
	squareMultiplier = 1 / roundMultiplier
)

// maxWeightUpdates bounds the work of A1111's algorithm, which multiplies
// every part after an opening bracket when it closes: quadratic for input
// like "(a(a(a(a...". Real prompts need a few hundred updates.
const maxWeightUpdates = 1 << 22

// ParseAttention is A1111's parse_prompt_attention: it splits text into runs
// with weights. "(x)" multiplies by 1.1, "[x]" divides by 1.1, "(x:w)"
// multiplies by w; brackets left open apply to the end; \( \) \[ \] \\ are
// literal characters; BREAK (as a whole word) becomes {"BREAK", -1}; adjacent
// runs with equal weights are merged. An empty prompt gives [{"", 1}].
//
// Errors: invalid UTF-8, a weight Python's float() rejects, a non-finite
// weight (too many nested brackets or a huge number), and prompts whose
// nesting would need more than about 4 million weight updates.
func ParseAttention(text string) ([]Part, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("parse prompt: %w", ErrInvalidUTF8)
	}
	p := attentionParser{budget: maxWeightUpdates}
	if err := p.run(text); err != nil {
		return nil, fmt.Errorf("parse prompt: %w", err)
	}
	res := p.res
	if len(res) == 0 {
		res = []Part{{"", 1}}
	}
	for _, r := range res {
		if math.IsInf(r.Weight, 0) || math.IsNaN(r.Weight) {
			return nil, fmt.Errorf("parse prompt: weight of %q is %v (too many nested brackets or a huge weight)", clip(r.Text), r.Weight)
		}
	}
	return mergeEqual(res), nil
}

type attentionParser struct {
	res           []Part
	round, square []int
	budget        int
}

func (p *attentionParser) multiply(start int, m float64) error {
	p.budget -= len(p.res) - start
	if p.budget < 0 {
		return errors.New("brackets nest too deeply to evaluate")
	}
	for i := start; i < len(p.res); i++ {
		p.res[i].Weight *= m
	}
	return nil
}

func pop(s *[]int) int {
	v := (*s)[len(*s)-1]
	*s = (*s)[:len(*s)-1]
	return v
}

// run scans text with the alternatives of A1111's re_attention, in order:
//
//	\\\( | \\\) | \\\[ | \\] | \\\\ | \\ | \( | \[ | :([+-]?[.\d]+)\) | \) | ] | [^\\()\[\]:]+ | :
//
// (At the pinned A1111 commit the weight pattern allows no spaces; later
// versions accept "(a: 1.2)".)
func (p *attentionParser) run(text string) error {
	for i := 0; i < len(text); {
		switch c := text[i]; c {
		case '\\':
			if i+1 < len(text) && strings.IndexByte(`()[]\`, text[i+1]) >= 0 {
				p.res = append(p.res, Part{text[i+1 : i+2], 1})
				i += 2
			} else {
				// A lone backslash is dropped but still leaves an empty run.
				p.res = append(p.res, Part{"", 1})
				i++
			}
		case '(':
			p.round = append(p.round, len(p.res))
			i++
		case '[':
			p.square = append(p.square, len(p.res))
			i++
		case ':':
			n, weight := matchWeight(text[i:])
			switch {
			case n > 0 && len(p.round) > 0:
				w, ok := parsePyFloat(weight)
				if !ok {
					return fmt.Errorf("invalid weight %q", weight)
				}
				if err := p.multiply(pop(&p.round), w); err != nil {
					return err
				}
				i += n
			case n > 0:
				p.addText(text[i : i+n])
				i += n
			default:
				p.addText(":")
				i++
			}
		case ')', ']':
			stack, m := &p.round, roundMultiplier
			if c == ']' {
				stack, m = &p.square, squareMultiplier
			}
			if len(*stack) > 0 {
				if err := p.multiply(pop(stack), m); err != nil {
					return err
				}
			} else {
				p.addText(text[i : i+1])
			}
			i++
		default:
			j := i + 1
			for j < len(text) && strings.IndexByte(`\()[]:`, text[j]) < 0 {
				j++
			}
			p.addText(text[i:j])
			i = j
		}
	}
	// Brackets left open apply to the end, oldest first.
	for _, pos := range p.round {
		if err := p.multiply(pos, roundMultiplier); err != nil {
			return err
		}
	}
	for _, pos := range p.square {
		if err := p.multiply(pos, squareMultiplier); err != nil {
			return err
		}
	}
	return nil
}

// addText appends plain text, split at BREAK keywords.
func (p *attentionParser) addText(s string) {
	for k, part := range splitBreak(s) {
		if k > 0 {
			p.res = append(p.res, Part{"BREAK", -1})
		}
		p.res = append(p.res, Part{part, 1})
	}
}

// matchWeight matches :([+-]?[.\d]+)\) at the start of s (which begins with
// ':'). It returns the match length and the weight text, or 0.
func matchWeight(s string) (n int, weight string) {
	i := 1
	start := i
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := i
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != '.' && !isDigit(r) {
			break
		}
		i += size
	}
	if i == digits {
		return 0, ""
	}
	end := i
	if i >= len(s) || s[i] != ')' {
		return 0, ""
	}
	return i + 1, s[start:end]
}

// skipSpace returns the index of the first non-\s rune of s at or after i.
func skipSpace(s string, i int) int {
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !isSpace(r) {
			break
		}
		i += size
	}
	return i
}

// splitBreak is re.split(r"\s*\bBREAK\b\s*", s).
func splitBreak(s string) []string {
	var parts []string
	last := 0 // end of the previous match
	for from := 0; ; {
		k := strings.Index(s[from:], "BREAK")
		if k < 0 {
			break
		}
		k += from
		end := k + len("BREAK")
		if !wordBoundaryBefore(s, k) || !wordBoundaryAfter(s, end) {
			from = k + 1
			continue
		}
		lo := k
		for lo > last {
			r, size := utf8.DecodeLastRuneInString(s[last:lo])
			if !isSpace(r) {
				break
			}
			lo -= size
		}
		hi := skipSpace(s, end)
		parts = append(parts, s[last:lo])
		last, from = hi, hi
	}
	return append(parts, s[last:])
}

// wordBoundaryBefore reports a \b at index k of s, where s[k] is a word
// character: the rune before it must not be one.
func wordBoundaryBefore(s string, k int) bool {
	if k == 0 {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:k])
	return !isWord(r)
}

// wordBoundaryAfter reports a \b at index k of s, where s[k-1] is a word
// character: the rune at k must not be one.
func wordBoundaryAfter(s string, k int) bool {
	if k >= len(s) {
		return true
	}
	r, _ := utf8.DecodeRuneInString(s[k:])
	return !isWord(r)
}

// mergeEqual joins adjacent runs with equal weights, as A1111 does last.
func mergeEqual(res []Part) []Part {
	out := make([]Part, 0, len(res))
	for i := 0; i < len(res); {
		j := i + 1
		for j < len(res) && res[j].Weight == res[i].Weight {
			j++
		}
		if j == i+1 {
			out = append(out, res[i])
		} else {
			var b strings.Builder
			for _, r := range res[i:j] {
				b.WriteString(r.Text)
			}
			out = append(out, Part{b.String(), res[i].Weight})
		}
		i = j
	}
	return out
}

// clip shortens s for an error message.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
