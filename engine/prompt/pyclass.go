package prompt

import (
	"strconv"
	"strings"
	"unicode"
)

// The A1111 parser is built on Python's re module with str patterns, whose
// classes are Unicode-aware. These helpers give \s, \w and \d that meaning.

// isSpace is Python's \s (str.isspace): Unicode White_Space plus the
// information separators U+001C..U+001F.
func isSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1C && r <= 0x1F)
}

// isWord is Python's \w: letters, numbers and underscore.
func isWord(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

// isDigit is Python's \d: any decimal digit (category Nd).
func isDigit(r rune) bool {
	return unicode.IsDigit(r)
}

// digitValue returns the value of a decimal digit (category Nd). Unicode
// encodes every decimal digit set as ten consecutive code points from zero,
// and adjacent sets abut only at multiples of ten from the start of the run.
func digitValue(r rune) int {
	if r >= '0' && r <= '9' {
		return int(r - '0')
	}
	start := r
	for unicode.IsDigit(start - 1) {
		start--
	}
	return int(r-start) % 10
}

// parsePyFloat converts a string of [+-] . and decimal digits the way
// Python's float() does, accepting digits of any script. ok is false where
// Python would raise ValueError; non-finite results are returned as they are.
func parsePyFloat(s string) (f float64, ok bool) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '+' || r == '-' || r == '.':
			b.WriteRune(r)
		case isDigit(r):
			b.WriteByte(byte('0' + digitValue(r)))
		default:
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(b.String(), 64)
	if err != nil {
		// A range error still carries Python's value (±Inf or 0).
		if ne, isNum := err.(*strconv.NumError); isNum && ne.Err == strconv.ErrRange {
			return f, true
		}
		return 0, false
	}
	return f, true
}
