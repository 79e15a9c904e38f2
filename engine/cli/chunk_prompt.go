package cli

import (
	"flag"
	"io"

	"github.com/pixery/pixery/engine/prompt"
	"github.com/pixery/pixery/engine/tokenizer"
)

func init() {
	Register(&Command{
		Name:    "chunk-prompt",
		Summary: "print a prompt's 77-token chunks and weights as JSON",
		Run:     runChunkPrompt,
	})
}

type promptChunkJSON struct {
	IDs     []int     `json:"ids"`
	Weights []float64 `json:"weights"`
}

// runChunkPrompt implements
//
//	pixery-engine chunk-prompt [--encoder 1|2] [--] TEXT...
//
// printing {"chunks":[{"ids":[...],"weights":[...]},...]}: each chunk's 77
// ids as that encoder receives them and the 77 attention weights, as A1111
// builds them. Like the pipeline, it first removes <lora:...> tags, which
// never reach the encoders (prompts without such tags are unaffected).
func runChunkPrompt(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chunk-prompt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	encoder := fs.Int("encoder", 1, "SDXL text encoder, 1 (pads with 49407) or 2 (zeros after the first EOS)")
	text, err := parseTextArgs(fs, args)
	if err != nil {
		return err
	}
	pad, err := encoderPad(*encoder)
	if err != nil {
		return err
	}
	clean, _, err := prompt.ExtractLoRAs(text)
	if err != nil {
		return err
	}
	tok, err := tokenizer.Default()
	if err != nil {
		return err
	}
	res, err := prompt.ChunkPrompt(tok, clean)
	if err != nil {
		return err
	}
	out := make([]promptChunkJSON, len(res.Chunks))
	for i := range res.Chunks {
		ids := res.Chunks[i].EncoderIDs(pad)
		out[i] = promptChunkJSON{IDs: ids[:], Weights: res.Chunks[i].Weights[:]}
	}
	return WriteJSON(stdout, struct {
		Chunks []promptChunkJSON `json:"chunks"`
	}{out})
}
