// Package pngmeta writes and reads the generation metadata that travels
// inside a PNG: A1111's "parameters" text chunk (which Civitai, A1111, Forge
// and most image tools read) and pixery's own "pixery" chunk holding the full
// recipe as JSON. It also understands what other tools write, A1111/Forge
// infotext and ComfyUI's "prompt"/"workflow" JSON, so that the gallery can
// index images it did not make. Every reader treats its input as untrusted:
// malformed data gives an error, never a panic.
package pngmeta

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf8"
)

// pngSignature starts every PNG file.
var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// Limits on what the reader accepts. A text chunk is metadata, so these are
// generous for real files and small enough that a hostile file cannot make
// the reader allocate without bound.
const (
	// MaxTextChunk is the largest tEXt/zTXt/iTXt chunk read (stored size).
	MaxTextChunk = 16 << 20
	// MaxInflatedText bounds one decompressed zTXt/iTXt text.
	MaxInflatedText = 16 << 20
	// maxChunkLength is PNG's own limit on a chunk's length field.
	maxChunkLength = 1<<31 - 1
)

// TextChunk is one tEXt, zTXt or iTXt chunk, its text decoded to UTF-8.
type TextChunk struct {
	Keyword string
	Text    string
}

// FormatError reports a malformed PNG or text chunk.
type FormatError struct {
	// Chunk is the chunk type ("tEXt", "IHDR", …), empty for the file as a whole.
	Chunk string
	// Offset is the byte offset of the chunk (or of the problem) in the file.
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	if e.Chunk == "" {
		return fmt.Sprintf("png: %s (at byte %d)", e.Msg, e.Offset)
	}
	return fmt.Sprintf("png: %s chunk at byte %d: %s", e.Chunk, e.Offset, e.Msg)
}

// ReadText reads a whole PNG stream and returns its text chunks in file
// order. Every chunk's CRC is checked; the stream must end with IEND.
func ReadText(r io.Reader) ([]TextChunk, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	sig := make([]byte, len(pngSignature))
	if _, err := io.ReadFull(br, sig); err != nil {
		return nil, &FormatError{Msg: "not a PNG file: too short for the signature"}
	}
	if !bytes.Equal(sig, pngSignature) {
		return nil, &FormatError{Msg: "not a PNG file: bad signature"}
	}
	var (
		out    []TextChunk
		off    = int64(len(pngSignature))
		head   [8]byte
		sumBuf [4]byte
		first  = true
	)
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return nil, &FormatError{Offset: off, Msg: "truncated before IEND"}
		}
		length := binary.BigEndian.Uint32(head[:4])
		typ := string(head[4:8])
		if length > maxChunkLength {
			return nil, &FormatError{Chunk: printableType(typ), Offset: off, Msg: fmt.Sprintf("length %d exceeds 2^31-1", length)}
		}
		if !validChunkType(head[4:8]) {
			return nil, &FormatError{Chunk: printableType(typ), Offset: off, Msg: "invalid chunk type"}
		}
		if first && typ != "IHDR" {
			return nil, &FormatError{Chunk: typ, Offset: off, Msg: "first chunk is not IHDR"}
		}
		first = false
		crc := crc32.NewIEEE()
		crc.Write(head[4:8])
		var data []byte
		isText := typ == "tEXt" || typ == "zTXt" || typ == "iTXt"
		if isText {
			if length > MaxTextChunk {
				return nil, &FormatError{Chunk: typ, Offset: off, Msg: fmt.Sprintf("%d bytes exceeds the %d-byte limit for text", length, MaxTextChunk)}
			}
			data = make([]byte, length)
			if _, err := io.ReadFull(br, data); err != nil {
				return nil, &FormatError{Chunk: typ, Offset: off, Msg: "truncated chunk data"}
			}
			crc.Write(data)
		} else if n, err := io.CopyN(crc, br, int64(length)); err != nil || n != int64(length) {
			return nil, &FormatError{Chunk: typ, Offset: off, Msg: "truncated chunk data"}
		}
		if _, err := io.ReadFull(br, sumBuf[:]); err != nil {
			return nil, &FormatError{Chunk: typ, Offset: off, Msg: "truncated CRC"}
		}
		if binary.BigEndian.Uint32(sumBuf[:]) != crc.Sum32() {
			return nil, &FormatError{Chunk: typ, Offset: off, Msg: "CRC mismatch"}
		}
		if isText {
			tc, err := parseTextChunk(typ, data)
			if err != nil {
				return nil, &FormatError{Chunk: typ, Offset: off, Msg: err.Error()}
			}
			out = append(out, tc)
		}
		off += 12 + int64(length)
		if typ == "IEND" {
			return out, nil
		}
	}
}

func validChunkType(b []byte) bool {
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func printableType(t string) string { return fmt.Sprintf("%q", t) }

// parseTextChunk decodes the body of a tEXt, zTXt or iTXt chunk.
func parseTextChunk(typ string, data []byte) (TextChunk, error) {
	k := bytes.IndexByte(data, 0)
	if k < 0 {
		return TextChunk{}, errors.New("no NUL after the keyword")
	}
	if k == 0 || k > 79 {
		return TextChunk{}, fmt.Errorf("keyword length %d is outside 1..79", k)
	}
	keyword := latin1ToUTF8(data[:k])
	rest := data[k+1:]
	switch typ {
	case "tEXt":
		return TextChunk{keyword, latin1ToUTF8(rest)}, nil
	case "zTXt":
		if len(rest) < 1 {
			return TextChunk{}, errors.New("missing compression method")
		}
		if rest[0] != 0 {
			return TextChunk{}, fmt.Errorf("unknown compression method %d", rest[0])
		}
		text, err := inflate(rest[1:])
		if err != nil {
			return TextChunk{}, err
		}
		return TextChunk{keyword, latin1ToUTF8(text)}, nil
	default: // iTXt
		if len(rest) < 2 {
			return TextChunk{}, errors.New("missing compression flag and method")
		}
		flag, method := rest[0], rest[1]
		rest = rest[2:]
		// Language tag and translated keyword, each NUL-terminated.
		for i := 0; i < 2; i++ {
			j := bytes.IndexByte(rest, 0)
			if j < 0 {
				return TextChunk{}, errors.New("unterminated language tag or translated keyword")
			}
			rest = rest[j+1:]
		}
		text := rest
		switch flag {
		case 0:
		case 1:
			if method != 0 {
				return TextChunk{}, fmt.Errorf("unknown compression method %d", method)
			}
			var err error
			if text, err = inflate(text); err != nil {
				return TextChunk{}, err
			}
		default:
			return TextChunk{}, fmt.Errorf("invalid compression flag %d", flag)
		}
		if !utf8.Valid(text) {
			return TextChunk{}, errors.New("iTXt text is not valid UTF-8")
		}
		return TextChunk{keyword, string(text)}, nil
	}
}

func inflate(b []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("compressed text: %w", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, MaxInflatedText+1))
	if err != nil {
		return nil, fmt.Errorf("compressed text: %w", err)
	}
	if len(out) > MaxInflatedText {
		return nil, fmt.Errorf("compressed text inflates beyond %d bytes", MaxInflatedText)
	}
	return out, nil
}

func latin1ToUTF8(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// latin1 returns s encoded as Latin-1 and true, or false when s holds a
// character outside Latin-1 (or a NUL, which tEXt cannot carry).
func latin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r == 0 || r > 0xFF || r == utf8.RuneError {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

// appendChunk appends one PNG chunk (length, type, data, CRC) to dst.
func appendChunk(dst []byte, typ string, data []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
	start := len(dst)
	dst = append(dst, typ...)
	dst = append(dst, data...)
	return binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:]))
}

// textChunkBytes encodes c as A1111 (through PIL) does: tEXt when the text
// fits Latin-1, otherwise an uncompressed iTXt in UTF-8.
func textChunkBytes(dst []byte, c TextChunk, forceUTF8 bool) ([]byte, error) {
	kw, ok := latin1(c.Keyword)
	if !ok || len(kw) == 0 || len(kw) > 79 {
		return nil, fmt.Errorf("png text keyword %q must be 1..79 Latin-1 characters", c.Keyword)
	}
	if !forceUTF8 {
		if t, ok := latin1(c.Text); ok {
			body := make([]byte, 0, len(kw)+1+len(t))
			body = append(append(append(body, kw...), 0), t...)
			return appendChunk(dst, "tEXt", body), nil
		}
	}
	if !utf8.ValidString(c.Text) {
		return nil, fmt.Errorf("png text %q is not valid UTF-8", c.Keyword)
	}
	body := make([]byte, 0, len(kw)+5+len(c.Text))
	body = append(body, kw...)
	body = append(body, 0, 0, 0, 0, 0) // NUL, no compression, method 0, empty language, empty translation
	body = append(body, c.Text...)
	return appendChunk(dst, "iTXt", body), nil
}

// InsertText returns a copy of the PNG file png with the given text chunks
// placed right after IHDR, ahead of the image data, where readers that stop
// at the first IDAT still find them.
func InsertText(png []byte, chunks ...TextChunk) ([]byte, error) {
	return insertText(png, chunks, nil)
}

func insertText(png []byte, chunks []TextChunk, utf8Keys map[string]bool) ([]byte, error) {
	const ihdrEnd = 8 + 12 + 13
	if len(png) < ihdrEnd || !bytes.Equal(png[:8], pngSignature) || string(png[12:16]) != "IHDR" ||
		binary.BigEndian.Uint32(png[8:12]) != 13 {
		return nil, &FormatError{Msg: "not a PNG that starts with a 13-byte IHDR"}
	}
	out := make([]byte, 0, len(png)+256)
	out = append(out, png[:ihdrEnd]...)
	var err error
	for _, c := range chunks {
		if out, err = textChunkBytes(out, c, utf8Keys[c.Keyword]); err != nil {
			return nil, err
		}
	}
	return append(out, png[ihdrEnd:]...), nil
}
