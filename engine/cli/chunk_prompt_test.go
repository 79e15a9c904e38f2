package cli

import (
	"slices"
	"testing"
)

func TestChunkPromptGolden(t *testing.T) {
	for _, c := range loadPromptGolden(t).Chunking {
		for _, enc := range []string{"1", "2"} {
			code, stdout, stderr := execPixery("chunk-prompt", "--encoder", enc, "--", c.Prompt)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", c.Name, code, stderr)
			}
			var got struct {
				Chunks []struct {
					IDs     []int     `json:"ids"`
					Weights []float64 `json:"weights"`
				} `json:"chunks"`
			}
			decodeOneLine(t, stdout, &got)
			if len(got.Chunks) != len(c.Chunks) {
				t.Fatalf("%s encoder %s: %d chunks, want %d", c.Name, enc, len(got.Chunks), len(c.Chunks))
			}
			for i, want := range c.Chunks {
				wantIDs := want.Enc1
				if enc == "2" {
					wantIDs = want.Enc2
				}
				if !slices.Equal(got.Chunks[i].IDs, wantIDs) || !slices.Equal(got.Chunks[i].Weights, want.Multipliers) {
					t.Errorf("%s encoder %s chunk %d:\n got %v %v\nwant %v %v", c.Name, enc, i,
						got.Chunks[i].IDs, got.Chunks[i].Weights, wantIDs, want.Multipliers)
				}
			}
		}
	}
}

// The pipeline never sends LoRA tags to the encoders, so neither does
// chunk-prompt: a prompt with a tag chunks like the prompt without it.
func TestChunkPromptRemovesLoRATags(t *testing.T) {
	_, with, errWith := execPixery("chunk-prompt", "1girl, <lora:style:0.7>solo")
	_, without, errWithout := execPixery("chunk-prompt", "1girl, solo")
	if with != without || with == "" {
		t.Errorf("with tag: %q %q\nwithout: %q %q", with, errWith, without, errWithout)
	}
}
