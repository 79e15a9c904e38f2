package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/pixery/pixery/engine/tokenizer"
)

func init() {
	Register(&Command{
		Name:    "tokenize",
		Summary: "print the CLIP token ids of a text as JSON",
		Run:     runTokenize,
	})
}

// runTokenize implements
//
//	pixery-engine tokenize [--encoder 1|2] [--no-pad] [--] TEXT...
//
// printing {"ids":[...]}: the 77 ids SDXL's encoder 1 or 2 receives (BOS, at
// most 75 tokens, EOS, padding with 49407 or 0), or with --no-pad the BPE ids
// alone. The arguments after the flags are joined with spaces; use "--"
// before a text that starts with "-".
func runTokenize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	encoder := fs.Int("encoder", 1, "SDXL text encoder, 1 (pads with 49407) or 2 (pads with 0)")
	noPad := fs.Bool("no-pad", false, "print the BPE ids only: no BOS, EOS, truncation or padding")
	text, err := parseTextArgs(fs, args)
	if err != nil {
		return err
	}
	pad, err := encoderPad(*encoder)
	if err != nil {
		return err
	}
	tok, err := tokenizer.Default()
	if err != nil {
		return err
	}
	var ids []int
	if *noPad {
		ids, err = tok.Encode(text)
	} else {
		var framed [tokenizer.ContextLen]int
		framed, err = tok.EncodeForEncoder(text, pad)
		ids = framed[:]
	}
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []int{} // print [] rather than null for an empty text
	}
	return WriteJSON(stdout, struct {
		IDs []int `json:"ids"`
	}{ids})
}

// parseTextArgs parses the flags and joins the remaining arguments into the
// prompt text, which must be given (it may be the empty string "").
func parseTextArgs(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() == 0 {
		return "", fmt.Errorf("%w: missing TEXT (pass \"\" for an empty prompt)", ErrUsage)
	}
	return strings.Join(fs.Args(), " "), nil
}

// encoderPad returns the padding id of SDXL text encoder n.
func encoderPad(n int) (int, error) {
	switch n {
	case 1:
		return tokenizer.PadEncoder1, nil
	case 2:
		return tokenizer.PadEncoder2, nil
	}
	return 0, fmt.Errorf("%w: --encoder %d: want 1 or 2", ErrUsage, n)
}
