package prompt

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Reference transcriptions of A1111's parser built on Go's regexp package.
// Go's \s, \b and \d are ASCII-only, so these agree with Python's re only on
// ASCII input; \s is spelled out as Python's ASCII whitespace set.
const pySpaceASCII = `[\t\n\v\f\r\x1c-\x1f ]`

var (
	refAttention = regexp.MustCompile(`\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|\]|[^\\()\[\]:]+|:`)
	refBreak     = regexp.MustCompile(pySpaceASCII + `*\bBREAK\b` + pySpaceASCII + `*`)
	refAND       = regexp.MustCompile(`\bAND\b`)
	refWeight    = regexp.MustCompile(`^((?:` + pySpaceASCII + `|.)*?)(?:` + pySpaceASCII + `*:` + pySpaceASCII +
		`*([-+]?(?:\d+\.?|\d*\.\d+)))?` + pySpaceASCII + `*$`)
)

// refParseAttention transcribes parse_prompt_attention line by line. ok is
// false where Python's float() would raise.
func refParseAttention(text string) (res []Part, ok bool) {
	var round, square []int
	multiply := func(start int, m float64) {
		for p := start; p < len(res); p++ {
			res[p].Weight *= m
		}
	}
	roundM := 1.1
	squareM := 1 / roundM
	for _, m := range refAttention.FindAllStringSubmatchIndex(text, -1) {
		s := text[m[0]:m[1]]
		hasWeight := m[2] >= 0
		switch {
		case strings.HasPrefix(s, `\`):
			res = append(res, Part{s[1:], 1})
		case s == "(":
			round = append(round, len(res))
		case s == "[":
			square = append(square, len(res))
		case hasWeight && len(round) > 0:
			start := round[len(round)-1]
			round = round[:len(round)-1]
			w, err := strconv.ParseFloat(text[m[2]:m[3]], 64)
			if err != nil {
				return nil, false
			}
			multiply(start, w)
		case s == ")" && len(round) > 0:
			start := round[len(round)-1]
			round = round[:len(round)-1]
			multiply(start, roundM)
		case s == "]" && len(square) > 0:
			start := square[len(square)-1]
			square = square[:len(square)-1]
			multiply(start, squareM)
		default:
			for i, part := range refBreak.Split(s, -1) {
				if i > 0 {
					res = append(res, Part{"BREAK", -1})
				}
				res = append(res, Part{part, 1})
			}
		}
	}
	for _, pos := range round {
		multiply(pos, roundM)
	}
	for _, pos := range square {
		multiply(pos, squareM)
	}
	if len(res) == 0 {
		res = []Part{{"", 1}}
	}
	for i := 0; i+1 < len(res); {
		if res[i].Weight == res[i+1].Weight {
			res[i].Text += res[i+1].Text
			res = append(res[:i+1], res[i+2:]...)
		} else {
			i++
		}
	}
	return res, true
}

func refSplitAND(text string) []SubPrompt {
	var out []SubPrompt
	for _, s := range refAND.Split(text, -1) {
		m := refWeight.FindStringSubmatchIndex(s)
		w := 1.0
		if m[4] >= 0 {
			w, _ = strconv.ParseFloat(s[m[4]:m[5]], 64)
		}
		out = append(out, SubPrompt{s[m[2]:m[3]], w})
	}
	return out
}

// randomPrompt builds ASCII prompts from pieces that exercise every branch.
func randomPrompt(rng *rand.Rand) string {
	pieces := []string{"a", "cat", " ", "  ", "(", ")", "[", "]", ":", "1", ".", "2", "0", "+", "-",
		`\`, `\(`, `\)`, `\[`, `\]`, `\\`, "BREAK", " BREAK ", "BREAKfast", "_BREAK", "AND", " AND ", "ANDx",
		",", "\t", "\n", "\x0b", "\x1c", ":1.5)", ":0.5)", ":.7)", ":1.)", ":-1)", ":1.2.3)", ":.)", "x:2", " : 3",
		":+2.5", "|", "<lora:x:1>"}
	n := rng.IntN(24)
	var b strings.Builder
	for range n {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

func sameParts(a, b []Part) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkAgainstReference compares ParseAttention and SplitAND with the
// regexp transcriptions on an ASCII prompt.
func checkAgainstReference(t *testing.T, text string) {
	t.Helper()
	want, ok := refParseAttention(text)
	got, err := ParseAttention(text)
	switch {
	case !ok && err == nil:
		t.Errorf("ParseAttention(%q) = %v, reference raises", text, got)
	case ok && err != nil:
		t.Errorf("ParseAttention(%q): %v, reference gives %v", text, err, want)
	case ok && !sameParts(got, want):
		t.Errorf("ParseAttention(%q)\n got %v\nwant %v", text, got, want)
	}
	gotAND, err := SplitAND(text)
	if err != nil {
		t.Errorf("SplitAND(%q): %v", text, err)
	} else if wantAND := refSplitAND(text); len(gotAND) != len(wantAND) || !sameSub(gotAND, wantAND) {
		t.Errorf("SplitAND(%q)\n got %v\nwant %v", text, gotAND, wantAND)
	}
}

func sameSub(a, b []SubPrompt) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		checkAgainstReference(t, randomPrompt(rng))
		if t.Failed() {
			return
		}
	}
}
