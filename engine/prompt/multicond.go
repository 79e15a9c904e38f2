package prompt

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// SubPrompt is one AND-separated part of a prompt with its weight.
type SubPrompt struct {
	Text   string
	Weight float64
}

// SplitAND is A1111's get_multicond_prompt_list for one prompt: it splits at
// the word AND (case-sensitive, whole word) and reads an optional trailing
// ":weight" from each part, which defaults to 1. The text keeps its leading
// whitespace and loses its trailing whitespace. Only the parsing of
// composable diffusion is provided; errors are for invalid UTF-8 and
// non-finite weights.
func SplitAND(text string) ([]SubPrompt, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("split prompt at AND: %w", ErrInvalidUTF8)
	}
	var out []SubPrompt
	for _, s := range splitAND(text) {
		sp := subPromptWeight(s)
		if math.IsInf(sp.Weight, 0) || math.IsNaN(sp.Weight) {
			return nil, fmt.Errorf("split prompt at AND: weight of %q is %v", clip(sp.Text), sp.Weight)
		}
		out = append(out, sp)
	}
	return out, nil
}

// splitAND is re.split(r"\bAND\b", s).
func splitAND(s string) []string {
	var parts []string
	last := 0
	for from := 0; ; {
		k := strings.Index(s[from:], "AND")
		if k < 0 {
			break
		}
		k += from
		end := k + len("AND")
		if wordBoundaryBefore(s, k) && wordBoundaryAfter(s, end) {
			parts = append(parts, s[last:k])
			last = end
			from = end
		} else {
			from = k + 1
		}
	}
	return append(parts, s[last:])
}

// subPromptWeight applies A1111's
//
//	^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$
//
// The text is lazy, so it is the shortest prefix after which only
// "\s*:\s*number\s*" or "\s*" remains.
func subPromptWeight(s string) SubPrompt {
	t := trimRightSpace(s)
	// The number is the maximal run of digits and dots at the end: the rune
	// before it must be a sign, \s or ':', none of which can be in the run.
	i := len(t)
	dots, digits := 0, 0
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(t[:i])
		if r == '.' {
			dots++
		} else if isDigit(r) {
			digits++
		} else {
			break
		}
		i -= size
	}
	if digits == 0 || dots > 1 {
		return SubPrompt{t, 1}
	}
	num := i
	if i > 0 && (t[i-1] == '+' || t[i-1] == '-') {
		i--
		num = i
	}
	colon := trimRightSpaceEnd(t[:i])
	if colon == 0 || t[colon-1] != ':' {
		return SubPrompt{t, 1}
	}
	w, ok := parsePyFloat(t[num:])
	if !ok {
		// Unreachable for the shapes above; keep the text as the regex would
		// not have matched a weight.
		return SubPrompt{t, 1}
	}
	return SubPrompt{trimRightSpace(t[:colon-1]), w}
}

func trimRightSpace(s string) string { return s[:trimRightSpaceEnd(s)] }

// trimRightSpaceEnd returns the length of s without its trailing \s runes.
func trimRightSpaceEnd(s string) int {
	i := len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if !isSpace(r) {
			break
		}
		i -= size
	}
	return i
}
