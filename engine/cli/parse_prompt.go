package cli

import (
	"flag"
	"io"

	"github.com/pixery/pixery/engine/prompt"
)

func init() {
	Register(&Command{
		Name:    "parse-prompt",
		Summary: "print A1111's attention parse of a prompt as JSON",
		Run:     runParsePrompt,
	})
}

// runParsePrompt implements
//
//	pixery-engine parse-prompt [--] TEXT...
//
// printing {"parts":[["text",1.1],...]}, the output of A1111's
// parse_prompt_attention, with ["BREAK",-1] for a BREAK.
func runParsePrompt(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("parse-prompt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	text, err := parseTextArgs(fs, args)
	if err != nil {
		return err
	}
	parts, err := prompt.ParseAttention(text)
	if err != nil {
		return err
	}
	out := make([][2]any, len(parts))
	for i, p := range parts {
		out[i] = [2]any{p.Text, p.Weight}
	}
	return WriteJSON(stdout, struct {
		Parts [][2]any `json:"parts"`
	}{out})
}
