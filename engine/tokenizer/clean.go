package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// cleanWords runs the text path of Hugging Face's CLIPTokenizer when ftfy is
// not installed: BasicTokenizer(strip_accents=False, do_split_on_punc=False).
// It returns the lowercased words that the reference joins with single spaces.
// Since the CLIP regex never matches across a space, tokenizing each word on
// its own gives the same tokens as tokenizing the joined string.
func cleanWords(text string) []string {
	s := cleanChars(text)
	if !isASCII(s) && !norm.NFC.IsNormalString(s) {
		s = norm.NFC.String(s)
	}
	words := strings.FieldsFunc(s, pyIsSpace)
	for i, w := range words {
		words[i] = pyLower(w)
	}
	return words
}

// cleanChars drops U+0000, U+FFFD and control/format/unassigned characters
// (category C*, but not \t \n \r), maps whitespace (\t \n \r, space and Zs)
// to a space, and puts spaces around CJK ideographs, as BasicTokenizer's
// _clean_text and _tokenize_chinese_chars do.
func cleanChars(text string) string {
	if isASCII(text) {
		clean := true
		for i := 0; i < len(text); i++ {
			if c := text[i]; c < 0x20 || c == 0x7f {
				clean = false
				break
			}
		}
		if clean {
			return text
		}
	}
	var b strings.Builder
	b.Grow(len(text))
	for _, r := range text {
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r < 0x80:
			if r >= 0x20 && r != 0x7f {
				b.WriteByte(byte(r))
			}
		case r == utf8.RuneError || isOther(r):
			// U+FFFD and category C* are dropped.
		case unicode.Is(unicode.Zs, r):
			b.WriteByte(' ')
		case isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isOther reports whether Python's unicodedata.category(r) starts with "C":
// Cc, Cf, Cs, Co, or Cn (unassigned, which Go has no table for).
func isOther(r rune) bool {
	if unicode.Is(unicode.C, r) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// isCJK is BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks
// (not Hiragana, Katakana or Hangul, which are written with spaces).
func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) ||
		(r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) ||
		(r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0x2F800 && r <= 0x2FA1F)
}

// pyIsSpace is Python's str.isspace: Unicode White_Space plus the
// information separators U+001C..U+001F (bidi class B or S).
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1C && r <= 0x1F)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// pyLower is Python's str.lower: the simple lowercase mapping, except U+0130
// (İ → "i̇", its unconditional special casing) and the context-dependent final
// sigma (Σ → ς at the end of a word).
func pyLower(w string) string {
	if isASCII(w) {
		for i := 0; i < len(w); i++ {
			if c := w[i]; c >= 'A' && c <= 'Z' {
				return strings.ToLower(w)
			}
		}
		return w
	}
	rs := []rune(w)
	var b strings.Builder
	b.Grow(len(w) + 8)
	for i, r := range rs {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3A3:
			if isFinalSigma(rs, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// isFinalSigma is the Unicode Final_Sigma condition as CPython evaluates it:
// a cased letter before i (skipping case-ignorables) and no cased letter after
// it (skipping case-ignorables). Each scan stops at the first character that
// is not case-ignorable, so a word is scanned in linear total time.
func isFinalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	k := i + 1
	for k < len(rs) && isCaseIgnorable(rs[k]) {
		k++
	}
	return k == len(rs) || !isCased(rs[k])
}

// isCased is the derived property Cased: Lowercase, Uppercase or Lt.
func isCased(r rune) bool {
	return unicode.IsLower(r) || unicode.IsUpper(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// isCaseIgnorable is the derived property Case_Ignorable: Mn, Me, Cf, Lm, Sk,
// or Word_Break MidLetter, MidNumLet or Single_Quote (listed by hand because
// Go's unicode package has no Word_Break tables).
func isCaseIgnorable(r rune) bool {
	switch r {
	case 0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024,
		0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
