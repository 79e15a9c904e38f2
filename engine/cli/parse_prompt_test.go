package cli

import (
	"encoding/json"
	"os"
	"testing"
)

type promptGolden struct {
	Attention []struct {
		Prompt string   `json:"prompt"`
		Parsed [][2]any `json:"parsed"`
	} `json:"attention"`
	Chunking []struct {
		Name   string `json:"name"`
		Prompt string `json:"prompt"`
		Chunks []struct {
			Multipliers []float64 `json:"multipliers"`
			Enc1        []int     `json:"encoder_input_tokenizer1"`
			Enc2        []int     `json:"encoder_input_tokenizer2"`
		} `json:"chunks"`
	} `json:"chunking"`
}

func loadPromptGolden(t *testing.T) promptGolden {
	t.Helper()
	b, err := os.ReadFile("../../testdata/golden/prompt-weighting.json")
	if err != nil {
		t.Fatal(err)
	}
	var g promptGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Attention) != 49 || len(g.Chunking) != 9 {
		t.Fatalf("golden has %d attention and %d chunking cases, want 49 and 9", len(g.Attention), len(g.Chunking))
	}
	return g
}

func TestParsePromptGolden(t *testing.T) {
	for _, c := range loadPromptGolden(t).Attention {
		code, stdout, stderr := execPixery("parse-prompt", "--", c.Prompt)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", c.Prompt, code, stderr)
		}
		var got struct {
			Parts [][2]any `json:"parts"`
		}
		decodeOneLine(t, stdout, &got)
		if len(got.Parts) != len(c.Parsed) {
			t.Errorf("%q:\n got %v\nwant %v", c.Prompt, got.Parts, c.Parsed)
			continue
		}
		for i := range got.Parts {
			// JSON numbers round-trip float64 exactly, so equality is exact.
			if got.Parts[i] != c.Parsed[i] {
				t.Errorf("%q part %d: got %v, want %v", c.Prompt, i, got.Parts[i], c.Parsed[i])
			}
		}
	}
}
