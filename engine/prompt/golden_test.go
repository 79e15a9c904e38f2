package prompt

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/pixery/pixery/engine/tokenizer"
)

// goldenPart decodes a JSON pair [text, weight].
type goldenPart struct {
	Text   string
	Weight float64
}

func (g *goldenPart) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 2 {
		return fmt.Errorf("want [text, weight], got %s", b)
	}
	if err := json.Unmarshal(raw[0], &g.Text); err != nil {
		return err
	}
	return json.Unmarshal(raw[1], &g.Weight)
}

type goldenChunk struct {
	Tokens      []int     `json:"tokens"`
	Multipliers []float64 `json:"multipliers"`
	Enc1        []int     `json:"encoder_input_tokenizer1"`
	Enc2        []int     `json:"encoder_input_tokenizer2"`
}

type goldenWeighting struct {
	CommaToken int `json:"comma_token"`
	Backtrack  int `json:"comma_padding_backtrack"`
	ChunkLen   int `json:"chunk_length"`
	Attention  []struct {
		Prompt string       `json:"prompt"`
		Parsed []goldenPart `json:"parsed"`
	} `json:"attention"`
	Multicond []struct {
		Prompt     string       `json:"prompt"`
		Subprompts []goldenPart `json:"subprompts"`
	} `json:"multicond"`
	Chunking []struct {
		Name       string        `json:"name"`
		Prompt     string        `json:"prompt"`
		Parsed     []goldenPart  `json:"parsed"`
		TokenCount int           `json:"token_count"`
		Chunks     []goldenChunk `json:"chunks"`
	} `json:"chunking"`
}

func loadGolden(t testing.TB) goldenWeighting {
	t.Helper()
	b, err := os.ReadFile("../../testdata/golden/prompt-weighting.json")
	if err != nil {
		t.Fatalf("read golden: %v", err)
	}
	var g goldenWeighting
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("parse golden: %v", err)
	}
	if len(g.Attention) != 49 || len(g.Multicond) != 6 || len(g.Chunking) != 9 {
		t.Fatalf("golden has %d/%d/%d cases, want 49/6/9", len(g.Attention), len(g.Multicond), len(g.Chunking))
	}
	return g
}

func newTok(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.New()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// samePartsExact compares texts and float64 weights bit for bit: A1111's
// weights are products in a fixed order, and the order is part of parity.
func samePartsExact(got []Part, want []goldenPart) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Text != want[i].Text || got[i].Weight != want[i].Weight {
			return false
		}
	}
	return true
}

func TestGoldenConstants(t *testing.T) {
	g := loadGolden(t)
	ids, err := newTok(t).Encode(",")
	if err != nil || len(ids) != 1 || ids[0] != g.CommaToken {
		t.Errorf("comma encodes to %v (%v), golden comma_token %d", ids, err, g.CommaToken)
	}
	if CommaBacktrack != g.Backtrack || ChunkLen != g.ChunkLen {
		t.Errorf("CommaBacktrack %d, ChunkLen %d; golden %d, %d", CommaBacktrack, ChunkLen, g.Backtrack, g.ChunkLen)
	}
}

func TestGoldenAttention(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Attention {
		got, err := ParseAttention(c.Prompt)
		if err != nil {
			t.Errorf("ParseAttention(%q): %v", c.Prompt, err)
			continue
		}
		if !samePartsExact(got, c.Parsed) {
			t.Errorf("ParseAttention(%q)\n got %v\nwant %v", c.Prompt, got, c.Parsed)
		}
	}
}

func TestGoldenMulticond(t *testing.T) {
	g := loadGolden(t)
	for _, c := range g.Multicond {
		got, err := SplitAND(c.Prompt)
		if err != nil {
			t.Errorf("SplitAND(%q): %v", c.Prompt, err)
			continue
		}
		parts := make([]Part, len(got))
		for i, s := range got {
			parts[i] = Part(s)
		}
		if !samePartsExact(parts, c.Subprompts) {
			t.Errorf("SplitAND(%q)\n got %v\nwant %v", c.Prompt, got, c.Subprompts)
		}
	}
}

func TestGoldenChunking(t *testing.T) {
	g := loadGolden(t)
	tok := newTok(t)
	for _, c := range g.Chunking {
		t.Run(c.Name, func(t *testing.T) {
			parts, err := ParseAttention(c.Prompt)
			if err != nil {
				t.Fatal(err)
			}
			if !samePartsExact(parts, c.Parsed) {
				t.Fatalf("parsed\n got %v\nwant %v", parts, c.Parsed)
			}
			res, err := ChunkPrompt(tok, c.Prompt)
			if err != nil {
				t.Fatal(err)
			}
			if res.TokenCount != c.TokenCount {
				t.Errorf("token count %d, want %d", res.TokenCount, c.TokenCount)
			}
			if len(res.Chunks) != len(c.Chunks) {
				t.Fatalf("%d chunks, want %d", len(res.Chunks), len(c.Chunks))
			}
			for i, want := range c.Chunks {
				got := &res.Chunks[i]
				if !slices.Equal(got.Tokens[:], want.Tokens) {
					t.Errorf("chunk %d tokens\n got %v\nwant %v", i, got.Tokens, want.Tokens)
				}
				if !slices.Equal(got.Weights[:], want.Multipliers) {
					t.Errorf("chunk %d weights\n got %v\nwant %v", i, got.Weights, want.Multipliers)
				}
				if e1 := got.EncoderIDs(tokenizer.PadEncoder1); !slices.Equal(e1[:], want.Enc1) {
					t.Errorf("chunk %d encoder 1 ids\n got %v\nwant %v", i, e1, want.Enc1)
				}
				if e2 := got.EncoderIDs(tokenizer.PadEncoder2); !slices.Equal(e2[:], want.Enc2) {
					t.Errorf("chunk %d encoder 2 ids\n got %v\nwant %v", i, e2, want.Enc2)
				}
			}
		})
	}
}
