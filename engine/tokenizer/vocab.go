package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"strings"
	"sync"
)

// The BPE merges of openai/CLIP (MIT licence, see LICENSE-openai-CLIP next to
// this file; the notice must travel with every copy, embedded ones included).
//
//go:embed bpe_simple_vocab_16e6.txt.gz
var vocabGz []byte

// numMerges is the number of merge lines CLIP uses: lines [1 : 49152-256-2+1]
// of the file, that is everything after the header up to that bound.
const numMerges = 49152 - 256 - 2

// vocab is the immutable part of the tokenizer, shared by every Tokenizer.
type vocab struct {
	// byteSym[b] is the id of byte b as a symbol inside a word, byteEnd[b]
	// the id of the same byte as the last symbol, with "</w>" appended.
	byteSym, byteEnd [256]int32
	// merges maps a pair of symbol ids to the merge's rank and result id.
	merges map[uint64]merge
	// tokens[id] is the vocabulary string of id (byte-level characters).
	tokens []string
}

type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

var (
	sharedOnce  sync.Once
	sharedVocab *vocab
	sharedErr   error
)

// loadVocab parses the embedded vocabulary once; later calls are free.
func loadVocab() (*vocab, error) {
	sharedOnce.Do(func() {
		sharedVocab, sharedErr = parseVocab(vocabGz)
		if sharedErr != nil {
			sharedErr = fmt.Errorf("load embedded CLIP vocabulary: %w", sharedErr)
		}
	})
	return sharedVocab, sharedErr
}

// bytesToUnicode returns CLIP's reversible byte→character table in the order
// that defines ids 0..255: the printable Latin-1 bytes first, in byte order,
// then the remaining bytes mapped to U+0100 onward.
func bytesToUnicode() (order [256]byte, chars [256]rune) {
	var seen [256]bool
	n := 0
	add := func(b byte, r rune) {
		order[n], chars[n] = b, r
		seen[b] = true
		n++
	}
	for _, rg := range [][2]int{{'!', '~'}, {0xA1, 0xAC}, {0xAE, 0xFF}} {
		for b := rg[0]; b <= rg[1]; b++ {
			add(byte(b), rune(b))
		}
	}
	extra := 0
	for b := 0; b < 256; b++ {
		if !seen[b] {
			add(byte(b), rune(256+extra))
			extra++
		}
	}
	return order, chars
}

func parseVocab(gz []byte) (*vocab, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("missing header line: %v", sc.Err())
	}
	pairs := make([][2]string, 0, numMerges)
	for len(pairs) < numMerges && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("merge line %d: want two symbols, got %q", len(pairs)+2, sc.Text())
		}
		pairs = append(pairs, [2]string{f[0], f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(pairs) != numMerges {
		return nil, fmt.Errorf("got %d merges, want %d", len(pairs), numMerges)
	}

	v := &vocab{tokens: make([]string, 0, VocabSize)}
	order, chars := bytesToUnicode()
	for _, c := range chars {
		v.tokens = append(v.tokens, string(c))
	}
	for _, c := range chars {
		v.tokens = append(v.tokens, string(c)+"</w>")
	}
	for _, p := range pairs {
		v.tokens = append(v.tokens, p[0]+p[1])
	}
	v.tokens = append(v.tokens, "<|startoftext|>", "<|endoftext|>")
	if len(v.tokens) != VocabSize {
		return nil, fmt.Errorf("vocabulary has %d entries, want %d", len(v.tokens), VocabSize)
	}

	// Like the reference's dict(zip(vocab, range(n))), a string that occurs
	// twice maps to its last id, so symbols are identified by that id.
	ids := make(map[string]int32, VocabSize)
	for i, t := range v.tokens {
		ids[t] = int32(i)
	}
	for i, b := range order {
		v.byteSym[b] = ids[v.tokens[i]]
		v.byteEnd[b] = ids[v.tokens[i+256]]
	}
	v.merges = make(map[uint64]merge, len(pairs))
	for r, p := range pairs {
		a, okA := ids[p[0]]
		b, okB := ids[p[1]]
		if !okA || !okB {
			// A pair of strings that are not symbols can never be adjacent.
			continue
		}
		v.merges[pairKey(a, b)] = merge{rank: int32(r), id: ids[p[0]+p[1]]}
	}
	return v, nil
}
