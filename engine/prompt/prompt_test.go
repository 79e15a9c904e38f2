package prompt

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/tokenizer"
)

// checkChunks asserts the invariants every chunking result must satisfy and
// that the chunks hold exactly the tokens of the parts, in order, with their
// weights (so the comma backtrack moves tokens but never loses them).
func checkChunks(t *testing.T, tok *tokenizer.Tokenizer, parts []Part, res *Chunked) {
	t.Helper()
	if len(res.Chunks) == 0 {
		t.Fatal("no chunks")
	}
	var wantIDs, gotIDs []int
	var wantW, gotW []float64
	for _, p := range parts {
		if p.IsBreak() {
			continue
		}
		ids, err := tok.Encode(p.Text)
		if err != nil {
			t.Fatal(err)
		}
		wantIDs = append(wantIDs, ids...)
		for range ids {
			wantW = append(wantW, p.Weight)
		}
	}
	for ci := range res.Chunks {
		c := &res.Chunks[ci]
		if c.Len < 0 || c.Len > ChunkLen {
			t.Fatalf("chunk %d: Len %d", ci, c.Len)
		}
		if c.Tokens[0] != tokenizer.BOS || c.Tokens[tokenizer.ContextLen-1] != tokenizer.EOS ||
			c.Weights[0] != 1 || c.Weights[tokenizer.ContextLen-1] != 1 {
			t.Fatalf("chunk %d: bad frame %v %v", ci, c.Tokens, c.Weights)
		}
		for i := 1 + c.Len; i < tokenizer.ContextLen-1; i++ {
			if c.Tokens[i] != tokenizer.EOS || c.Weights[i] != 1 {
				t.Fatalf("chunk %d: padding at %d is %d/%v", ci, i, c.Tokens[i], c.Weights[i])
			}
		}
		for i, id := range c.Tokens {
			if id < 0 || id >= tokenizer.VocabSize || math.IsNaN(c.Weights[i]) || math.IsInf(c.Weights[i], 0) {
				t.Fatalf("chunk %d: token %d = %d weight %v", ci, i, id, c.Weights[i])
			}
		}
		gotIDs = append(gotIDs, c.Tokens[1:1+c.Len]...)
		gotW = append(gotW, c.Weights[1:1+c.Len]...)
		e2 := c.EncoderIDs(tokenizer.PadEncoder2)
		first := slices.Index(c.Tokens[:], tokenizer.EOS)
		if !slices.Equal(e2[:first+1], c.Tokens[:first+1]) || slices.ContainsFunc(e2[first+1:], func(id int) bool { return id != 0 }) {
			t.Fatalf("chunk %d: encoder 2 ids %v from %v", ci, e2, c.Tokens)
		}
		if e1 := c.EncoderIDs(tokenizer.PadEncoder1); e1 != c.Tokens {
			t.Fatalf("chunk %d: encoder 1 ids differ from tokens", ci)
		}
	}
	if !slices.Equal(gotIDs, wantIDs) || !slices.Equal(gotW, wantW) {
		t.Fatalf("chunk contents differ from the parts' tokens:\n got %v %v\nwant %v %v", gotIDs, gotW, wantIDs, wantW)
	}
	n := len(res.Chunks)
	if res.TokenCount != ChunkLen*(n-1)+res.Chunks[n-1].Len && res.TokenCount != ChunkLen*n {
		t.Fatalf("token count %d for %d chunks (last has %d)", res.TokenCount, n, res.Chunks[n-1].Len)
	}
}

func TestChunkInvariantsRandom(t *testing.T) {
	tok := newTok(t)
	rng := rand.New(rand.NewPCG(9, 10))
	tags := []string{"1girl", "solo", "long hair", "(masterpiece:1.2)", "[blurry]", "BREAK", ",", ", ", "cat cat cat",
		"((best quality))", "score_9", "日本語", "é", "a,b,c,d", "\\(x\\)", "(unclosed", "]"}
	for range 300 {
		var b strings.Builder
		for range rng.IntN(120) {
			b.WriteString(tags[rng.IntN(len(tags))])
			b.WriteByte(' ')
		}
		parts, err := ParseAttention(b.String())
		if err != nil {
			t.Fatal(err)
		}
		res, err := ChunkParts(tok, parts)
		if err != nil {
			t.Fatal(err)
		}
		checkChunks(t, tok, parts, res)
	}
}

// A BREAK inside brackets has a weight other than -1, so the chunker treats
// it as the word "break" with that weight, exactly as A1111 does.
func TestWeightedBreakIsText(t *testing.T) {
	tok := newTok(t)
	res, err := ChunkPrompt(tok, "(a BREAK b:1.2)")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(res.Chunks))
	}
	brk, _ := tok.Encode("BREAK")
	c := res.Chunks[0]
	k := slices.Index(c.Tokens[:], brk[0])
	if k < 0 || c.Weights[k] != -1*1.2 {
		t.Fatalf("no BREAK token weighted -1.2 in %v %v", c.Tokens, c.Weights)
	}
	res, err = ChunkPrompt(tok, "a BREAK b")
	if err != nil || len(res.Chunks) != 2 {
		t.Fatalf("plain BREAK: %v chunks, err %v", len(res.Chunks), err)
	}
}

func TestBadInput(t *testing.T) {
	tok := newTok(t)
	var tags strings.Builder
	for i := 0; tags.Len() < 1<<20; i++ {
		tags.WriteString([]string{"1girl, ", "(solo:1.1), ", "[long hair], ", "looking at viewer, ", "((smile)), "}[i%5])
		if i%500 == 499 {
			tags.WriteString("BREAK ")
		}
	}
	cases := []struct {
		name    string
		text    string
		wantErr bool
	}{
		{"empty", "", false},
		{"NUL bytes", "a\x00b\x00(c\x00:1.2)", false},
		{"invalid UTF-8", "(cat:1.2) \xff\xfe", true},
		{"truncated UTF-8", "日本\xe8", true},
		{"unparsable weight", "(a:1.2.3)", true},
		{"dot weight", "(a:.)", true},
		{"huge weight", "(a:" + strings.Repeat("9", 400) + ")", true},
		{"100k nested open", strings.Repeat("(", 100000) + "x", true},
		{"100k nested closed", strings.Repeat("(", 100000) + "x" + strings.Repeat(")", 100000), true},
		{"100k nested square", strings.Repeat("[", 100000) + "x", false},
		{"100k unbalanced close", strings.Repeat(")", 100000) + "x", false},
		{"quadratic nesting", strings.Repeat("(a", 300000), true},
		{"1 MB of backslashes", strings.Repeat(`\`, 1<<20), false},
		{"1 MB of tags", tags.String(), false},
		{"1 MB of BREAK", strings.Repeat("BREAK ", 1<<20/6), false}, // parses; chunking it fails
		{"1 MB of one word", strings.Repeat("x", 1<<20), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			parts, err := ParseAttention(c.text)
			if (err != nil) != c.wantErr {
				t.Fatalf("ParseAttention error = %v, want error %v", err, c.wantErr)
			}
			if err == nil {
				res, err := ChunkParts(tok, parts)
				if strings.Contains(c.name, "BREAK") {
					if err == nil {
						t.Fatalf("%d chunks, want an error above %d", len(res.Chunks), MaxChunks)
					}
					t.Logf("chunk error: %v", err)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(c.text) < 1<<16 {
					checkChunks(t, tok, parts, res)
				}
				t.Logf("%d parts, %d chunks", len(parts), len(res.Chunks))
			} else {
				t.Logf("error: %v", err)
				if _, err := ChunkPrompt(tok, c.text); err == nil {
					t.Error("ChunkPrompt accepts what ParseAttention rejects")
				}
			}
			_, andErr := SplitAND(c.text)
			_, _, loraErr := ExtractLoRAs(c.text)
			if strings.Contains(c.name, "UTF-8") {
				for _, e := range []error{err, andErr, loraErr} {
					if !errors.Is(e, ErrInvalidUTF8) {
						t.Errorf("error %v, want ErrInvalidUTF8", e)
					}
				}
			}
			// Bounded time is the test binary's timeout; timings are
			// measured by the benchmarks, never asserted.
			t.Logf("took %v", time.Since(start))
		})
	}
}

// NUL is ordinary text to the parser and dropped by the tokenizer.
func TestNULIsDroppedByTokenizer(t *testing.T) {
	tok := newTok(t)
	a, err := ChunkPrompt(tok, "a\x00b, (c\x00:1.2)")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ChunkPrompt(tok, "ab, (c:1.2)")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(a.Chunks, b.Chunks, func(x, y Chunk) bool { return x == y }) {
		t.Errorf("NUL bytes change the chunks:\n%v\n%v", a.Chunks, b.Chunks)
	}
}

func TestDigitValue(t *testing.T) {
	// Every maximal run of Nd code points must be whole sets of ten, which
	// is what digitValue relies on.
	runStart := rune(-1)
	for r := rune(0); r <= 0x10FFFF+1; r++ {
		if r <= 0x10FFFF && isDigit(r) {
			if runStart < 0 {
				runStart = r
			}
			continue
		}
		if runStart >= 0 {
			if (r-runStart)%10 != 0 {
				t.Errorf("digit run %U..%U is not whole sets of ten", runStart, r-1)
			}
			runStart = -1
		}
	}
	for _, c := range []struct {
		s    string
		want float64
	}{{"١.٥", 1.5}, {"+٣", 3}, {"𝟗", 9}, {"-0.25", -0.25}, {"1.", 1}, {".5", 0.5}} {
		if got, ok := parsePyFloat(c.s); !ok || got != c.want {
			t.Errorf("parsePyFloat(%q) = %v, %v; want %v", c.s, got, ok, c.want)
		}
	}
	for _, s := range []string{".", "+", "1.2.3", "--1", ""} {
		if _, ok := parsePyFloat(s); ok {
			t.Errorf("parsePyFloat(%q) accepted", s)
		}
	}
}
