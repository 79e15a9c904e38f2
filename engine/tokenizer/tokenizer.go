// Package tokenizer turns prompt text into CLIP token ids, the input of both
// SDXL text encoders. It is CLIP's byte-level BPE with the openai/CLIP
// vocabulary embedded in the binary, and it reproduces the slow Hugging Face
// CLIPTokenizer used by diffusers when ftfy is not installed: text cleaning by
// BasicTokenizer, lowercasing, the CLIP pre-tokenizer regex, then BPE.
//
// Known, deliberate limits of the parity: Go's Unicode tables are version 15.0
// while the reference (Python 3.11) uses 14.0, so characters first assigned in
// 15.0 are kept here where the reference drops them as unassigned; and a
// literal "<|startoftext|>" or "<|endoftext|>" in the text becomes BOS or EOS
// without Hugging Face's added-token splitting around it.
package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Token ids and sizes shared by both SDXL text encoders.
const (
	BOS         = 49406 // <|startoftext|>
	EOS         = 49407 // <|endoftext|>
	PadEncoder1 = EOS   // SDXL tokenizer (CLIP ViT-L) pads with EOS
	PadEncoder2 = 0     // SDXL tokenizer_2 (OpenCLIP bigG) pads with "!"
	ContextLen  = 77    // ids fed to an encoder: BOS, up to 75 tokens, EOS, padding
	MaxTokens   = ContextLen - 2
	VocabSize   = 49408
)

// cacheLimit bounds the BPE cache; a prompt with more distinct words than
// this just clears it, which costs a little speed and no memory growth.
const (
	cacheLimit     = 1 << 14
	cacheMaxKeyLen = 64
)

// Tokenizer encodes text to CLIP token ids. It is safe for concurrent use.
type Tokenizer struct {
	v *vocab

	mu    sync.RWMutex
	cache map[string][]int32
}

// New returns a tokenizer with an empty BPE cache. The vocabulary is parsed on
// the first call only and shared by all tokenizers.
func New() (*Tokenizer, error) {
	v, err := loadVocab()
	if err != nil {
		return nil, err
	}
	return &Tokenizer{v: v, cache: make(map[string][]int32)}, nil
}

var (
	defaultOnce sync.Once
	defaultTok  *Tokenizer
	defaultErr  error
)

// Default returns a tokenizer shared by the whole process.
func Default() (*Tokenizer, error) {
	defaultOnce.Do(func() { defaultTok, defaultErr = New() })
	return defaultTok, defaultErr
}

// Token returns the vocabulary string of id (in CLIP's byte-level alphabet,
// with "</w>" marking the end of a word), and false if id is out of range.
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.v.tokens) {
		return "", false
	}
	return t.v.tokens[id], true
}

// ErrInvalidUTF8 is returned (wrapped) for text that is not valid UTF-8.
// Invalid bytes are rejected rather than replaced: a prompt is user text, and
// silently dropping bytes (which is what replacing them with U+FFFD and then
// cleaning would amount to) would hide a broken client.
var ErrInvalidUTF8 = errors.New("text is not valid UTF-8")

// Encode returns the BPE token ids of text, without BOS, EOS, padding or
// truncation. The only error is for text that is not valid UTF-8.
func (t *Tokenizer) Encode(text string) ([]int, error) {
	return t.AppendEncode(nil, text)
}

// AppendEncode is Encode appending to ids, to spare allocations.
func (t *Tokenizer) AppendEncode(ids []int, text string) ([]int, error) {
	if !utf8.ValidString(text) {
		return ids, invalidUTF8(text)
	}
	for _, w := range cleanWords(text) {
		ids = t.appendWord(ids, w)
	}
	return ids, nil
}

func invalidUTF8(text string) error {
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("%w: bad byte 0x%02x at offset %d", ErrInvalidUTF8, text[i], i)
		}
		i += size
	}
	return ErrInvalidUTF8
}

// EncodeForEncoder returns the ContextLen ids an SDXL text encoder gets for
// text, as the diffusers tokenizers produce them with padding="max_length",
// truncation=True: BOS, the first MaxTokens BPE ids, EOS, then padID.
// Use PadEncoder1 or PadEncoder2.
func (t *Tokenizer) EncodeForEncoder(text string, padID int) ([ContextLen]int, error) {
	ids, err := t.Encode(text)
	if err != nil {
		return [ContextLen]int{}, err
	}
	return Wrap(ids, padID), nil
}

// Wrap truncates ids to MaxTokens and frames them as BOS, ids, EOS, padding.
func Wrap(ids []int, padID int) [ContextLen]int {
	var out [ContextLen]int
	if len(ids) > MaxTokens {
		ids = ids[:MaxTokens]
	}
	out[0] = BOS
	n := 1 + copy(out[1:], ids)
	out[n] = EOS
	for i := n + 1; i < ContextLen; i++ {
		out[i] = padID
	}
	return out
}

// appendWord applies the CLIP pre-tokenizer regex
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// (case-insensitive) to one cleaned, lowercased word and BPE-encodes each match.
// The word holds no whitespace, so the last alternative never stops at one.
func (t *Tokenizer) appendWord(ids []int, w string) []int {
	for i := 0; i < len(w); {
		if strings.HasPrefix(w[i:], ypogegrammeni) {
			i += len(ypogegrammeni)
			continue
		}
		n := matchLen(w[i:])
		ids = t.appendToken(ids, w[i:i+n])
		i += n
	}
	return ids
}

// ypogegrammeni (U+0345, a combining mark) matches no alternative of the
// case-insensitive regex: it is not a letter, but its case folding (U+03B9)
// is, which excludes it from the negated class. The reference skips it like
// whitespace.
const ypogegrammeni = "\u0345"

// matchLen returns the byte length of the regex match at the start of s.
func matchLen(s string) int {
	r, size := utf8.DecodeRuneInString(s)
	switch r {
	case '<':
		if n := matchFold(s, "<|startoftext|>"); n > 0 {
			return n
		}
		if n := matchFold(s, "<|endoftext|>"); n > 0 {
			return n
		}
	case '\'':
		for _, c := range [...]string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
			if n := matchFold(s, c); n > 0 {
				return n
			}
		}
	}
	switch {
	case unicode.IsLetter(r):
		n := size
		for n < len(s) {
			r, sz := utf8.DecodeRuneInString(s[n:])
			if !unicode.IsLetter(r) {
				break
			}
			n += sz
		}
		return n
	case unicode.IsNumber(r):
		return size
	}
	n := size
	for n < len(s) {
		r, sz := utf8.DecodeRuneInString(s[n:])
		if unicode.IsLetter(r) || unicode.IsNumber(r) || pyIsSpace(r) || r == 0x345 {
			break
		}
		n += sz
	}
	return n
}

// matchFold reports the byte length of the prefix of s that matches the ASCII
// literal pat case-insensitively, or 0. The text is already lowercase, so the
// only case-insensitive match left is U+017F (ſ), whose simple case folding
// is "s".
func matchFold(s, pat string) int {
	n := 0
	for i := 0; i < len(pat); i++ {
		if n >= len(s) {
			return 0
		}
		if s[n] == pat[i] {
			n++
			continue
		}
		if pat[i] == 's' && len(s) >= n+2 && s[n] == 0xC5 && s[n+1] == 0xBF {
			n += 2
			continue
		}
		return 0
	}
	return n
}

// appendToken BPE-encodes one regex match.
func (t *Tokenizer) appendToken(ids []int, tok string) []int {
	// The reference seeds its BPE cache with the two special strings, so only
	// their exact spelling maps to the special ids.
	switch tok {
	case "<|startoftext|>":
		return append(ids, BOS)
	case "<|endoftext|>":
		return append(ids, EOS)
	}
	if len(tok) == 1 {
		return append(ids, int(t.v.byteEnd[tok[0]]))
	}
	cacheable := len(tok) <= cacheMaxKeyLen
	if cacheable {
		t.mu.RLock()
		cached, ok := t.cache[tok]
		t.mu.RUnlock()
		if ok {
			for _, id := range cached {
				ids = append(ids, int(id))
			}
			return ids
		}
	}
	syms := t.v.bpe(tok)
	for _, id := range syms {
		ids = append(ids, int(id))
	}
	if cacheable {
		t.mu.Lock()
		if len(t.cache) >= cacheLimit {
			clear(t.cache)
		}
		t.cache[tok] = syms
		t.mu.Unlock()
	}
	return ids
}
