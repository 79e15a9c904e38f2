package prompt

import (
	"fmt"

	"github.com/pixery/pixery/engine/tokenizer"
)

// Chunking parameters of A1111's tokenize_line.
const (
	ChunkLen       = tokenizer.MaxTokens // prompt tokens per chunk
	CommaBacktrack = 20                  // opts.comma_padding_backtrack
)

// MaxChunks bounds the memory a hostile prompt can take: a megabyte of
// "BREAK " would otherwise make 175k chunks, while a megabyte of ordinary tags
// needs about 5000.
const MaxChunks = 8192

// Chunk is one 77-token window of a prompt, as A1111 feeds it to an encoder.
type Chunk struct {
	// Tokens is BOS, up to 75 prompt tokens, EOS padding, and EOS.
	Tokens [tokenizer.ContextLen]int
	// Weights holds each token's attention weight; BOS, EOS and padding
	// have weight 1.
	Weights [tokenizer.ContextLen]float64
	// Len is the number of prompt tokens, at Tokens[1 : 1+Len].
	Len int
}

// EncoderIDs returns the ids for an encoder whose padding id is padID. For
// tokenizer.PadEncoder2 every position after the first EOS becomes padID, as
// A1111's OpenCLIP embedder does; for tokenizer.PadEncoder1 (which is EOS)
// the tokens are returned unchanged.
func (c *Chunk) EncoderIDs(padID int) [tokenizer.ContextLen]int {
	ids := c.Tokens
	if padID == tokenizer.EOS {
		return ids
	}
	for i, id := range ids {
		if id == tokenizer.EOS {
			for j := i + 1; j < len(ids); j++ {
				ids[j] = padID
			}
			break
		}
	}
	return ids
}

// Chunked is a prompt cut into chunks.
type Chunked struct {
	Chunks []Chunk
	// TokenCount is A1111's token count: 75 for every chunk but the last,
	// plus the tokens of the last.
	TokenCount int
}

// ChunkPrompt parses text with ParseAttention and cuts it into chunks with
// ChunkParts.
func ChunkPrompt(tok *tokenizer.Tokenizer, text string) (*Chunked, error) {
	parts, err := ParseAttention(text)
	if err != nil {
		return nil, err
	}
	return ChunkParts(tok, parts)
}

// ChunkParts is A1111's tokenize_line (chunk length 75, comma backtrack 20,
// no textual-inversion embeddings): each part is tokenized on its own and its
// tokens get the part's weight; a BREAK closes the current chunk; when a chunk
// is full and the last comma is at most 20 tokens back, the tokens after that
// comma move to the next chunk. There is always at least one chunk, and an
// error for more than MaxChunks (or for text that is not valid UTF-8).
func ChunkParts(tok *tokenizer.Tokenizer, parts []Part) (*Chunked, error) {
	commaIDs, err := tok.Encode(",")
	if err != nil || len(commaIDs) != 1 {
		return nil, fmt.Errorf("chunk prompt: comma is not a single token (%v, %v)", commaIDs, err)
	}
	comma := commaIDs[0]

	var (
		out       Chunked
		tokens    = make([]int, 0, ChunkLen)
		weights   = make([]float64, 0, ChunkLen)
		lastComma = -1
		ids       []int
	)
	next := func(isLast bool) error {
		if len(out.Chunks) >= MaxChunks {
			return fmt.Errorf("chunk prompt: more than %d chunks of %d tokens", MaxChunks, ChunkLen)
		}
		if isLast {
			out.TokenCount += len(tokens)
		} else {
			out.TokenCount += ChunkLen
		}
		c := Chunk{Len: len(tokens)}
		c.Tokens[0], c.Weights[0] = tokenizer.BOS, 1
		for i := range ChunkLen {
			if i < len(tokens) {
				c.Tokens[i+1], c.Weights[i+1] = tokens[i], weights[i]
			} else {
				c.Tokens[i+1], c.Weights[i+1] = tokenizer.EOS, 1
			}
		}
		c.Tokens[ChunkLen+1], c.Weights[ChunkLen+1] = tokenizer.EOS, 1
		out.Chunks = append(out.Chunks, c)
		tokens, weights = tokens[:0], weights[:0]
		lastComma = -1
		return nil
	}
	for _, p := range parts {
		if p.IsBreak() {
			if err := next(false); err != nil {
				return nil, err
			}
			continue
		}
		ids, err = tok.AppendEncode(ids[:0], p.Text)
		if err != nil {
			return nil, fmt.Errorf("chunk prompt: %w", err)
		}
		for _, id := range ids {
			if id == comma {
				lastComma = len(tokens)
			} else if len(tokens) == ChunkLen && lastComma != -1 && len(tokens)-lastComma <= CommaBacktrack {
				cut := lastComma + 1
				relocT := append([]int(nil), tokens[cut:]...)
				relocW := append([]float64(nil), weights[cut:]...)
				tokens, weights = tokens[:cut], weights[:cut]
				if err := next(false); err != nil {
					return nil, err
				}
				tokens, weights = append(tokens, relocT...), append(weights, relocW...)
			}
			if len(tokens) == ChunkLen {
				if err := next(false); err != nil {
					return nil, err
				}
			}
			tokens, weights = append(tokens, id), append(weights, p.Weight)
		}
	}
	if len(tokens) > 0 || len(out.Chunks) == 0 {
		if err := next(true); err != nil {
			return nil, err
		}
	}
	return &out, nil
}
