package prompt

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pixery/pixery/engine/tokenizer"
)

func addGoldenSeeds(f *testing.F) {
	g := loadGolden(f)
	for _, c := range g.Attention {
		f.Add(c.Prompt)
	}
	for _, c := range g.Multicond {
		f.Add(c.Prompt)
	}
	for _, c := range g.Chunking {
		f.Add(c.Prompt)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzParse checks ParseAttention and SplitAND: no panic, an error for
// invalid UTF-8, merged and finite weights, and on ASCII input the same
// result as the regexp transcription of A1111.
func FuzzParse(f *testing.F) {
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, text string) {
		parts, err := ParseAttention(text)
		subs, andErr := SplitAND(text)
		if !utf8.ValidString(text) {
			if !errors.Is(err, ErrInvalidUTF8) || !errors.Is(andErr, ErrInvalidUTF8) {
				t.Fatalf("invalid UTF-8 %q: errors %v, %v", text, err, andErr)
			}
			return
		}
		if err == nil {
			if len(parts) == 0 {
				t.Fatal("no parts")
			}
			for i, p := range parts {
				if math.IsInf(p.Weight, 0) || math.IsNaN(p.Weight) {
					t.Fatalf("part %d %q has weight %v", i, p.Text, p.Weight)
				}
				if i > 0 && parts[i-1].Weight == p.Weight {
					t.Fatalf("parts %d and %d not merged: %v", i-1, i, parts)
				}
			}
		}
		if andErr == nil && (len(subs) > strings.Count(text, "AND")+1 || len(subs) == 0) {
			t.Fatalf("SplitAND(%q) = %v", text, subs)
		}
		if isASCII(text) {
			want, ok := refParseAttention(text)
			nonFinite := false
			for _, p := range want {
				nonFinite = nonFinite || math.IsInf(p.Weight, 0) || math.IsNaN(p.Weight)
			}
			if ok && nonFinite {
				if err == nil {
					t.Fatalf("ParseAttention(%q) = %v, reference has non-finite weights %v", text, parts, want)
				}
				return
			}
			checkAgainstReference(t, text)
		}
	})
}

// FuzzChunk checks that any prompt either fails cleanly or gives chunks
// satisfying checkChunks.
func FuzzChunk(f *testing.F) {
	addGoldenSeeds(f)
	tok, err := tokenizer.Default()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		parts, err := ParseAttention(text)
		res, chunkErr := ChunkPrompt(tok, text)
		if (err == nil) != (chunkErr == nil) {
			t.Fatalf("ParseAttention error %v but ChunkPrompt error %v", err, chunkErr)
		}
		if err != nil {
			return
		}
		checkChunks(t, tok, parts, res)
	})
}

// FuzzExtractLoRAs checks that extraction never panics, never leaves a
// LoRA tag behind and only returns finite scales and non-empty names.
func FuzzExtractLoRAs(f *testing.F) {
	for _, s := range []string{"a <lora:x:0.8>, b", "<lyco:y>", "<lora:>", "<lora:a:te=1:unet=1>", "<x:y:z>", "<<lora:a:1>>"} {
		f.Add(s)
	}
	addGoldenSeeds(f)
	f.Fuzz(func(t *testing.T, text string) {
		clean, loras, err := ExtractLoRAs(text)
		if err != nil {
			if !utf8.ValidString(text) && !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("invalid UTF-8: %v", err)
			}
			return
		}
		if strings.Contains(clean, "<lora:") || strings.Contains(clean, "<lyco:") || len(clean) > len(text) {
			t.Fatalf("ExtractLoRAs(%q) left %q", text, clean)
		}
		for _, l := range loras {
			if l.Name == "" || math.IsInf(l.Scale, 0) || math.IsNaN(l.Scale) {
				t.Fatalf("ExtractLoRAs(%q): bad ref %+v", text, l)
			}
		}
	})
}
