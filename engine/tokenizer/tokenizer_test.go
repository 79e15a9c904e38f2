package tokenizer

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type goldenCase struct {
	Name     string   `json:"name"`
	Prompt   string   `json:"prompt"`
	BPE      []string `json:"bpe_tokens"`
	IDs      []int    `json:"ids"`
	NTokens  int      `json:"n_tokens"`
	Trunc    bool     `json:"truncated"`
	Input1   []int    `json:"input_ids_tokenizer1"`
	Input2   []int    `json:"input_ids_tokenizer2"`
	SameOpen bool     `json:"same_as_openai"`
}

type goldenFile struct {
	BOS    int          `json:"bos_id"`
	EOS    int          `json:"eos_id"`
	Pad1   int          `json:"tokenizer1_pad_id"`
	Pad2   int          `json:"tokenizer2_pad_id"`
	MaxLen int          `json:"max_length"`
	NCases int          `json:"n_cases"`
	Cases  []goldenCase `json:"cases"`
}

func loadGolden(t testing.TB) goldenFile {
	t.Helper()
	b, err := os.ReadFile("../../testdata/golden/tokenizer.json")
	if err != nil {
		t.Fatalf("read golden: %v", err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("parse golden: %v", err)
	}
	if len(g.Cases) != g.NCases || g.NCases != 61 {
		t.Fatalf("golden has %d cases (n_cases %d), want 61", len(g.Cases), g.NCases)
	}
	return g
}

func newTok(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestConstantsMatchGolden(t *testing.T) {
	g := loadGolden(t)
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"BOS", BOS, g.BOS}, {"EOS", EOS, g.EOS}, {"PadEncoder1", PadEncoder1, g.Pad1},
		{"PadEncoder2", PadEncoder2, g.Pad2}, {"ContextLen", ContextLen, g.MaxLen},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, golden says %d", c.name, c.got, c.want)
		}
	}
}

func TestGolden(t *testing.T) {
	g := loadGolden(t)
	tok := newTok(t)
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			ids, err := tok.Encode(c.Prompt)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, c.IDs) {
				t.Fatalf("ids\n got %v\nwant %v", ids, c.IDs)
			}
			if len(ids) != c.NTokens || (len(ids) > MaxTokens) != c.Trunc {
				t.Errorf("n_tokens/truncated: got %d, golden %d/%v", len(ids), c.NTokens, c.Trunc)
			}
			strs := make([]string, len(ids))
			for i, id := range ids {
				strs[i], _ = tok.Token(id)
			}
			if !slices.Equal(strs, c.BPE) {
				t.Errorf("bpe tokens\n got %q\nwant %q", strs, c.BPE)
			}
			for _, e := range []struct {
				pad  int
				want []int
			}{{PadEncoder1, c.Input1}, {PadEncoder2, c.Input2}} {
				got, err := tok.EncodeForEncoder(c.Prompt, e.pad)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got[:], e.want) {
					t.Errorf("pad %d:\n got %v\nwant %v", e.pad, got, e.want)
				}
			}
			// A second pass hits the warm cache and must agree.
			again, _ := tok.Encode(c.Prompt)
			if !slices.Equal(again, ids) {
				t.Errorf("warm cache gives %v, cold gave %v", again, ids)
			}
		})
	}
}

// refVocab is an independent, string-based reading of the vocabulary file,
// used to check the id-based tables and the fast BPE against a plain
// transcription of the reference's bpe().
type refVocab struct {
	byteChar map[byte]string
	ranks    map[[2]string]int
	encoder  map[string]int
}

var (
	refOnce sync.Once
	ref     *refVocab
	refErr  error
)

func loadRef(t testing.TB) *refVocab {
	t.Helper()
	refOnce.Do(func() {
		f, err := os.Open("bpe_simple_vocab_16e6.txt.gz")
		if err != nil {
			refErr = err
			return
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			refErr = err
			return
		}
		sc := bufio.NewScanner(zr)
		var lines []string
		for sc.Scan() && len(lines) < 49152-256-2+1 {
			lines = append(lines, sc.Text())
		}
		merges := lines[1:]
		r := &refVocab{byteChar: map[byte]string{}, ranks: map[[2]string]int{}, encoder: map[string]int{}}
		// bytes_to_unicode, written out as the reference does it.
		var bs []int
		for b := int('!'); b <= '~'; b++ {
			bs = append(bs, b)
		}
		for b := 0xA1; b <= 0xAC; b++ {
			bs = append(bs, b)
		}
		for b := 0xAE; b <= 0xFF; b++ {
			bs = append(bs, b)
		}
		cs := slices.Clone(bs)
		printable := len(bs)
		extra := 0
		for b := 0; b < 256; b++ {
			if !slices.Contains(bs[:printable], b) {
				bs = append(bs, b)
				cs = append(cs, 256+extra)
				extra++
			}
		}
		var vocab []string
		for i, b := range bs {
			r.byteChar[byte(b)] = string(rune(cs[i]))
			vocab = append(vocab, string(rune(cs[i])))
		}
		for _, v := range vocab[:256] {
			vocab = append(vocab, v+"</w>")
		}
		for i, m := range merges {
			p := strings.Split(m, " ")
			r.ranks[[2]string{p[0], p[1]}] = i
			vocab = append(vocab, p[0]+p[1])
		}
		vocab = append(vocab, "<|startoftext|>", "<|endoftext|>")
		for i, v := range vocab {
			r.encoder[v] = i
		}
		ref = r
	})
	if refErr != nil {
		t.Fatal(refErr)
	}
	return ref
}

// bpe is a transcription of the reference's bpe() on strings.
func (r *refVocab) bpe(token string) []int {
	var word []string
	for i := 0; i < len(token); i++ {
		word = append(word, r.byteChar[token[i]])
	}
	word[len(word)-1] += "</w>"
	for len(word) > 1 {
		best, found := 0, false
		var bigram [2]string
		for i := 0; i+1 < len(word); i++ {
			if rk, ok := r.ranks[[2]string{word[i], word[i+1]}]; ok && (!found || rk < best) {
				best, found, bigram = rk, true, [2]string{word[i], word[i+1]}
			}
		}
		if !found {
			break
		}
		var nw []string
		for i := 0; i < len(word); {
			j := slices.Index(word[i:], bigram[0])
			if j < 0 {
				nw = append(nw, word[i:]...)
				break
			}
			nw = append(nw, word[i:i+j]...)
			i += j
			if i < len(word)-1 && word[i+1] == bigram[1] {
				nw = append(nw, bigram[0]+bigram[1])
				i += 2
			} else {
				nw = append(nw, word[i])
				i++
			}
		}
		word = nw
	}
	ids := make([]int, len(word))
	for i, w := range word {
		ids[i] = r.encoder[w]
	}
	return ids
}

func toInts(s []int32) []int {
	out := make([]int, len(s))
	for i, v := range s {
		out[i] = int(v)
	}
	return out
}

// TestBPEAgainstReference runs both merge strategies (direct and heap) on
// random words with many repeated symbols, where merge order matters most,
// and compares them with the string transcription.
func TestBPEAgainstReference(t *testing.T) {
	r := loadRef(t)
	tok := newTok(t)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabets := []string{"ab", "aeiou", "lo", "xyz", "abcdefghijklmnopqrstuvwxyz", "01", "!.,", "eéè"}
	for n := 0; n < 600; n++ {
		alpha := []rune(alphabets[n%len(alphabets)])
		size := 1 + rng.IntN(120)
		var b strings.Builder
		for b.Len() < size {
			b.WriteRune(alpha[rng.IntN(len(alpha))])
		}
		word := b.String()
		want := r.bpe(word)
		syms := func() []int32 {
			s := make([]int32, len(word))
			for i := 0; i < len(word); i++ {
				s[i] = tok.v.byteSym[word[i]]
			}
			s[len(s)-1] = tok.v.byteEnd[word[len(word)-1]]
			return s
		}
		if got := toInts(tok.v.mergeNaive(syms())); !slices.Equal(got, want) {
			t.Fatalf("naive bpe(%q) = %v, reference %v", word, got, want)
		}
		if got := toInts(tok.v.mergeHeap(syms())); !slices.Equal(got, want) {
			t.Fatalf("heap bpe(%q) = %v, reference %v", word, got, want)
		}
	}
}

func TestVocabTablesAgainstReference(t *testing.T) {
	r := loadRef(t)
	tok := newTok(t)
	if len(tok.v.tokens) != len(r.encoder) || len(r.encoder) != VocabSize {
		t.Fatalf("vocab sizes: %d vs reference %d", len(tok.v.tokens), len(r.encoder))
	}
	for s, id := range r.encoder {
		if got, ok := tok.Token(id); !ok || got != s {
			t.Fatalf("Token(%d) = %q, reference %q", id, got, s)
		}
	}
	for b := 0; b < 256; b++ {
		if got, want := int(tok.v.byteSym[b]), r.encoder[r.byteChar[byte(b)]]; got != want {
			t.Fatalf("byte %#x: id %d, reference %d", b, got, want)
		}
	}
	if _, ok := tok.Token(VocabSize); ok {
		t.Error("Token(VocabSize) should be out of range")
	}
	if _, ok := tok.Token(-1); ok {
		t.Error("Token(-1) should be out of range")
	}
}

// TestTextPathEquivalences checks cleaning, lowercasing and pre-tokenizer
// rules by pairs of inputs that the reference treats the same (or, for the
// special tokens, by what a single pre-token must encode to).
func TestTextPathEquivalences(t *testing.T) {
	r := loadRef(t)
	tok := newTok(t)
	enc := func(s string) []int {
		t.Helper()
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		return ids
	}
	same := []struct{ why, a, b string }{
		{"NUL and U+FFFD are dropped", "a\x00b\uFFFDc", "abc"},
		{"Cc, Cf, Co and unassigned are dropped", "a\x07\u200b\uE000\U000E0001\u0378b", "ab"},
		{"DEL, VT and FF are controls, not whitespace", "a\x7f\x0b\x0cb", "ab"},
		{"whitespace runs collapse", " \t a \r\n\u3000\u00a0b\u2003 ", "a b"},
		{"line/paragraph separators split words", "a\u2028b\u2029c", "a b c"},
		{"CJK ideographs are spaced", "a中b", "a 中 b"},
		{"compatibility ideographs are spaced", "a\uF900b", "a \uF900 b"},
		{"kana is not spaced", "あい", "あい"},
		{"NFC composes", "e\u0301", "\u00e9"},
		{"lowercase", "HeLLo WORLD", "hello world"},
		{"dotted capital I lowers to i + U+0307", "İ", "i\u0307"},
		{"final sigma", "ΟΔΟΣ", "οδος"},
		{"final sigma before case-ignorables", "ΑΣ'", "ας'"},
		{"medial sigma", "ΑΣΑ", "ασα"},
		{"lone sigma is not final", "Σ", "σ"},
		{"contractions are case-insensitive", "IT'S", "it's"},
		{"U+0345 matches no regex alternative", "a\u0345b!\u0345?", "a b! ?"},
	}
	for _, c := range same {
		if a, b := enc(c.a), enc(c.b); !slices.Equal(a, b) {
			t.Errorf("%s: Encode(%q) = %v, Encode(%q) = %v", c.why, c.a, a, c.b, b)
		}
	}
	differ := []struct{ why, a, b string }{
		{"ideographic spacing stops at the block edge", "aあb", "a あ b"},
		{"sigma after a non-cased letter is medial", "1Σ", "1ς"},
	}
	for _, c := range differ {
		if a, b := enc(c.a), enc(c.b); slices.Equal(a, b) {
			t.Errorf("%s: Encode(%q) and Encode(%q) should differ, both %v", c.why, c.a, c.b, a)
		}
	}
	single := []struct{ why, in, pretoken string }{
		{"'ſ matches 's case-insensitively", "'ſ", "'ſ"},
		{"<|ſtartoftext|> matches the special pattern but is not the cache key", "<|ſtartoftext|>", "<|ſtartoftext|>"},
		{"punctuation runs", "!?.", "!?."},
		{"letter runs include non-Latin letters", "ñandú", "ñandú"},
	}
	for _, c := range single {
		if got, want := enc(c.in), r.bpe(c.pretoken); !slices.Equal(got, want) {
			t.Errorf("%s: Encode(%q) = %v, want BPE of one pre-token %v", c.why, c.in, got, want)
		}
	}
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"<|startoftext|>", []int{BOS}},
		{"<|endoftext|>", []int{EOS}},
		{"<|ENDOFTEXT|>", []int{EOS}},
	} {
		if got := enc(c.in); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	// Each digit is its own pre-token.
	if got, want := enc("123"), append(append(r.bpe("1"), r.bpe("2")...), r.bpe("3")...); !slices.Equal(got, want) {
		t.Errorf("Encode(123) = %v, want %v", got, want)
	}
}

func TestInvalidUTF8(t *testing.T) {
	tok := newTok(t)
	for _, s := range []string{"\xff", "abc\xc3", "a\xed\xa0\x80b" /* surrogate */, "\xc0\xaf"} {
		if _, err := tok.Encode(s); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("Encode(%q): err = %v, want ErrInvalidUTF8", s, err)
		}
		if _, err := tok.EncodeForEncoder(s, PadEncoder1); !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("EncodeForEncoder(%q): err = %v, want ErrInvalidUTF8", s, err)
		}
	}
}

func TestWrapTruncatesAndPads(t *testing.T) {
	for _, n := range []int{0, 1, MaxTokens - 1, MaxTokens, MaxTokens + 1, 500} {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = 1000 + i
		}
		for _, pad := range []int{PadEncoder1, PadEncoder2} {
			out := Wrap(ids, pad)
			kept := min(n, MaxTokens)
			if out[0] != BOS || out[kept+1] != EOS || !slices.Equal(out[1:kept+1], ids[:kept]) {
				t.Fatalf("n=%d pad=%d: bad frame %v", n, pad, out)
			}
			for i := kept + 2; i < ContextLen; i++ {
				if out[i] != pad {
					t.Fatalf("n=%d pad=%d: out[%d] = %d", n, pad, i, out[i])
				}
			}
		}
	}
}

// TestLargeInputsAreFast guards against quadratic behaviour: a 1 MB prompt
// of one word, of many distinct words and of punctuation.
func TestLargeInputsAreFast(t *testing.T) {
	tok := newTok(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var words strings.Builder
	for words.Len() < 1<<20 {
		n := 2 + rng.IntN(10)
		for i := 0; i < n; i++ {
			words.WriteByte(byte('a' + rng.IntN(26)))
		}
		words.WriteString(", ")
	}
	for _, c := range []struct{ name, text string }{
		{"one word", strings.Repeat("ab", 1<<19)},
		{"random letters", func() string {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte('a' + rng.IntN(26))
			}
			return string(b)
		}()},
		{"many words", words.String()},
		{"punctuation", strings.Repeat("!?", 1<<19)},
		{"CJK", strings.Repeat("中", 1<<18)},
		{"NUL bytes", strings.Repeat("\x00", 1<<20)},
	} {
		start := time.Now()
		ids, err := tok.Encode(c.text)
		d := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		t.Logf("%s: %d bytes -> %d ids in %v", c.name, len(c.text), len(ids), d)
		if d > time.Minute { // a hang guard, not a speed test
			t.Errorf("%s took %v", c.name, d)
		}
		for _, id := range ids {
			if id < 0 || id >= VocabSize {
				t.Fatalf("%s: id %d out of range", c.name, id)
			}
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	g := loadGolden(t)
	tok := newTok(t)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range g.Cases {
				c := g.Cases[(i+w*7)%len(g.Cases)]
				ids, err := tok.Encode(c.Prompt)
				if err != nil || !slices.Equal(ids, c.IDs) {
					errs <- c.Name
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for name := range errs {
		t.Errorf("concurrent Encode of %s disagrees with golden", name)
	}
}
