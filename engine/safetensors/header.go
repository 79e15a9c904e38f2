// Package safetensors reads and writes the safetensors tensor file format
// (huggingface/safetensors): an 8-byte little-endian header length N, N bytes
// of a UTF-8 JSON header, then the data section. The header maps each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]}, with offsets
// relative to the start of the data section; the optional key "__metadata__"
// holds a string-to-string map.
//
// Checkpoints come from the internet, so the reader treats every file as
// hostile. Open and ParseHeader read the header only, check every number in
// it before using it, and report a *FormatError naming the tensor and the
// problem; they never panic, never read outside the file and never allocate
// more than the (bounded) header size plus what the header's own entries
// need. The checks are:
//   - the header length is at most MaxHeaderLen and fits in the file;
//   - the header is valid UTF-8 and starts with '{' (the format requires it);
//     trailing JSON whitespace is allowed (writers pad with spaces);
//   - the header is one JSON object with no duplicate keys, at any level
//     (encoding/json would silently keep the last one, letting two readers of
//     the same file see different tensors);
//   - each tensor has a known dtype, a shape of non-negative integers and two
//     data_offsets begin ≤ end, all fitting in int64, with
//     product(shape) × dtype size == end − begin, computed with overflow checks;
//   - every tensor lies inside the data section, and no two tensors share a
//     byte;
//   - "__metadata__", if present and not null, maps strings to strings.
//
// The format's README also says that the data section must be entirely
// indexed, without holes. pixery accepts holes (unused bytes between or after
// tensors) and only reports them in File.UnusedBytes: they are harmless to a
// reader that addresses tensors by offset, and refusing them would reject
// files that tools pad for alignment. Overlapping tensors are rejected,
// because writing one tensor would then change another. Unknown fields inside
// a tensor entry are ignored (after the duplicate-key check) so that future
// additions to the format do not break old readers.
//
// Files written by this package (Create, WriteFile) are always fully indexed
// and pad the header with spaces so that the data section starts at a
// multiple of 8 bytes.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxHeaderLen bounds the JSON header, as the reference implementation does
// (100 MB). A full SDXL checkpoint's header is about 250 kB.
const MaxHeaderLen = 100 << 20

// metadataKey is the reserved header key for free-form metadata.
const metadataKey = "__metadata__"

// FormatError reports a malformed or hostile safetensors header.
type FormatError struct {
	Tensor  string // the tensor concerned; empty for the file as a whole
	Problem string
}

func (e *FormatError) Error() string {
	if e.Tensor == "" {
		return "invalid safetensors header: " + e.Problem
	}
	return fmt.Sprintf("invalid safetensors header: tensor %q: %s", e.Tensor, e.Problem)
}

func formatErr(tensor, format string, args ...any) error {
	return &FormatError{Tensor: tensor, Problem: fmt.Sprintf(format, args...)}
}

// Tensor describes one tensor of a file.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	// Offset is the absolute byte offset of the data in the file:
	// 8 + header length + data_offsets[0]. It is what ONNX external data
	// calls "offset".
	Offset int64
	// Length is the size of the data in bytes.
	Length int64
}

// NumElements returns the product of the shape (1 for a scalar), or -1 if a
// dimension is negative or the product overflows int64. Tensors from
// ParseHeader have been checked, so for them it is never -1.
func (t *Tensor) NumElements() int64 {
	n, err := numElements(t.Shape)
	if err != nil {
		return -1
	}
	return n
}

// numElements multiplies the dimensions, refusing negative ones and overflow.
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v has more than 2^63 elements", shape)
		}
		n *= d
	}
	return n, nil
}

// byteLength returns the data size of a tensor of this type and shape.
func byteLength(dt DType, shape []int64) (int64, error) {
	size := int64(dt.Size())
	if size == 0 {
		return 0, fmt.Errorf("unknown or unsupported dtype %q", string(dt))
	}
	n, err := numElements(shape)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/size {
		return 0, fmt.Errorf("shape %v of %s is more than 2^63 bytes", shape, dt)
	}
	return n * size, nil
}

// File is the parsed header of a safetensors file. It holds no open file:
// the Read methods open the file again for each call.
type File struct {
	Path      string            // the path given to Open
	RealPath  string            // absolute path with symlinks resolved, as ONNX Runtime wants it
	Size      int64             // file size in bytes
	HeaderLen int64             // length of the JSON header (N)
	Metadata  map[string]string // "__metadata__"; nil when absent
	// UnusedBytes counts the bytes of the data section that no tensor
	// covers. The format asks for 0; pixery tolerates more (see the package
	// documentation).
	UnusedBytes int64

	tensors  map[string]*Tensor
	names    []string  // sorted
	byOffset []*Tensor // in data order
	// src, when set, is the reader ParseHeader was given; reads go through
	// it instead of reopening RealPath.
	src io.ReaderAt
	// modTime is the modification time seen by Open, to notice a file
	// replaced between Open and a read.
	modTime time.Time
}

// DataOffset returns the absolute offset of the data section, 8 + HeaderLen.
func (f *File) DataOffset() int64 { return 8 + f.HeaderLen }

// Tensor returns the named tensor. The result is shared: do not modify it.
func (f *File) Tensor(name string) (*Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Names returns the tensor names in sorted order (a fresh slice).
func (f *File) Names() []string { return slices.Clone(f.names) }

// Len returns the number of tensors.
func (f *File) Len() int { return len(f.names) }

// Tensors returns the tensors in the order of their data in the file (a
// fresh slice of shared tensors: do not modify them).
func (f *File) Tensors() []*Tensor { return slices.Clone(f.byOffset) }

// Open reads and validates the header of the safetensors file at path. It
// does not keep the file open.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("open safetensors %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open safetensors %s: not a regular file", path)
	}
	f, err := ParseHeader(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("open safetensors %s: %w", path, err)
	}
	f.src = nil
	f.modTime = st.ModTime()
	f.Path = path
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("open safetensors %s: resolve path: %w", path, err)
	}
	f.RealPath = abs
	return f, nil
}

// ParseHeader reads and validates the header of a safetensors file of size
// bytes read through r. The returned File reads tensor data through r, so r
// must stay usable while the File is. Malformed input gives a *FormatError.
func ParseHeader(r io.ReaderAt, size int64) (*File, error) {
	if size < 8 {
		return nil, formatErr("", "file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if err := readFull(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("read header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	switch {
	case n > MaxHeaderLen:
		return nil, formatErr("", "header length %d exceeds the %d-byte limit", n, MaxHeaderLen)
	case n > uint64(size-8):
		return nil, formatErr("", "header length %d exceeds the %d bytes after the length field", n, size-8)
	case n < 2:
		return nil, formatErr("", "header length %d is too short for a JSON object", n)
	}
	hdr := make([]byte, n)
	if err := readFull(r, hdr, 8); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	f, err := parseJSON(hdr, size-8-int64(n))
	if err != nil {
		return nil, err
	}
	f.Size = size
	f.HeaderLen = int64(n)
	f.src = r
	for _, t := range f.byOffset {
		t.Offset += 8 + f.HeaderLen
	}
	return f, nil
}

// readFull reads len(p) bytes at off; io.ReaderAt may report io.EOF together
// with a complete read, which is success.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// entry is one tensor as read from the header, before validation; begin
// and end are relative to the data section.
type entry struct {
	name       string
	dtype      DType
	shape      []int64
	begin, end int64
}

// parseJSON parses and validates the header JSON. dataSize is the length of
// the data section. Tensor offsets in the result are relative to the data
// section.
func parseJSON(hdr []byte, dataSize int64) (*File, error) {
	if hdr[0] != '{' {
		return nil, formatErr("", "header does not start with '{' (starts with %q)", hdr[0])
	}
	if !utf8.Valid(hdr) {
		return nil, formatErr("", "header is not valid UTF-8")
	}
	p := &parser{dec: json.NewDecoder(bytes.NewReader(hdr))}
	p.dec.UseNumber()
	f := &File{tensors: map[string]*Tensor{}}
	if err := p.delim('{', "", "the header"); err != nil {
		return nil, err
	}
	var entries []entry
	seen := map[string]bool{}
	for p.dec.More() {
		key, err := p.key("")
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, formatErr(key, "duplicate key in header")
		}
		seen[key] = true
		if key == metadataKey {
			if f.Metadata, err = p.metadata(); err != nil {
				return nil, err
			}
			continue
		}
		e, err := p.entry(key)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	if err := p.delim('}', "", "the header"); err != nil {
		return nil, err
	}
	// Only whitespace may follow the object (writers pad with spaces).
	if tok, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, p.syntax("", err)
		}
		return nil, formatErr("", "found %s after the header object", describe(tok))
	}
	if err := validate(f, entries, dataSize); err != nil {
		return nil, err
	}
	return f, nil
}

// validate checks sizes and placement and fills f's tensor tables.
func validate(f *File, entries []entry, dataSize int64) error {
	var used int64
	for _, e := range entries {
		want, err := byteLength(e.dtype, e.shape)
		if err != nil {
			return formatErr(e.name, "%v", err)
		}
		if e.begin > e.end {
			return formatErr(e.name, "data_offsets [%d, %d] end before they begin", e.begin, e.end)
		}
		if e.end > dataSize {
			return formatErr(e.name, "data_offsets [%d, %d] run past the end of the %d-byte data section", e.begin, e.end, dataSize)
		}
		if got := e.end - e.begin; got != want {
			return formatErr(e.name, "shape %v of %s needs %d bytes but data_offsets [%d, %d] hold %d", e.shape, e.dtype, want, e.begin, e.end, got)
		}
		t := &Tensor{Name: e.name, DType: e.dtype, Shape: e.shape, Offset: e.begin, Length: want}
		f.tensors[e.name] = t
		f.names = append(f.names, e.name)
		f.byOffset = append(f.byOffset, t)
		used += want
	}
	sort.Strings(f.names)
	sort.SliceStable(f.byOffset, func(i, j int) bool {
		a, b := f.byOffset[i], f.byOffset[j]
		if a.Offset != b.Offset {
			return a.Offset < b.Offset
		}
		return a.Length < b.Length
	})
	// With tensors sorted by start, a tensor overlaps an earlier one exactly
	// when it starts before the furthest end seen so far. Empty tensors hold
	// no bytes and cannot overlap anything.
	var last *Tensor
	for _, t := range f.byOffset {
		if t.Length == 0 {
			continue
		}
		if last != nil && t.Offset < last.Offset+last.Length {
			return formatErr(t.Name, "data_offsets [%d, %d] overlap those of %q [%d, %d]",
				t.Offset, t.Offset+t.Length, last.Name, last.Offset, last.Offset+last.Length)
		}
		last = t
	}
	f.UnusedBytes = dataSize - used
	return nil
}

// parser walks the header token by token, which is the only way
// encoding/json offers to see duplicate keys.
type parser struct {
	dec *json.Decoder
}

func (p *parser) token(tensor string) (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(tensor, err)
	}
	return tok, nil
}

func (p *parser) syntax(tensor string, err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErr(tensor, "header JSON ends early")
	}
	return formatErr(tensor, "bad header JSON near byte %d: %v", p.dec.InputOffset(), err)
}

// delim reads the delimiter d, describing what should be there as what.
func (p *parser) delim(d json.Delim, tensor, what string) error {
	tok, err := p.token(tensor)
	if err != nil {
		return err
	}
	if tok != d {
		return formatErr(tensor, "%s is %s, want %q", what, describe(tok), string(d))
	}
	return nil
}

func (p *parser) key(tensor string) (string, error) {
	tok, err := p.token(tensor)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok { // cannot happen with a well-formed decoder, but never trust
		return "", formatErr(tensor, "object key is %s", describe(tok))
	}
	return s, nil
}

// describe names a token's kind for error messages.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", tok)
}

func (p *parser) metadata() (map[string]string, error) {
	tok, err := p.token(metadataKey)
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil // "__metadata__": null means none
	}
	if tok != json.Delim('{') {
		return nil, formatErr("", "%s is %s, want an object of strings", metadataKey, describe(tok))
	}
	m := map[string]string{}
	for p.dec.More() {
		k, err := p.key(metadataKey)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, formatErr("", "duplicate key %q in %s", k, metadataKey)
		}
		tok, err := p.token(metadataKey)
		if err != nil {
			return nil, err
		}
		v, ok := tok.(string)
		if !ok {
			return nil, formatErr("", "%s value for key %q is %s, want a string", metadataKey, k, describe(tok))
		}
		m[k] = v
	}
	if err := p.delim('}', "", metadataKey+" end"); err != nil {
		return nil, err
	}
	return m, nil
}

func (p *parser) entry(name string) (entry, error) {
	e := entry{name: name}
	tok, err := p.token(name)
	if err != nil {
		return e, err
	}
	if tok != json.Delim('{') {
		return e, formatErr(name, "entry is %s, want an object", describe(tok))
	}
	var haveDType, haveShape, haveOffsets bool
	seen := map[string]bool{}
	for p.dec.More() {
		k, err := p.key(name)
		if err != nil {
			return e, err
		}
		if seen[k] {
			return e, formatErr(name, "duplicate field %q", k)
		}
		seen[k] = true
		switch k {
		case "dtype":
			tok, err := p.token(name)
			if err != nil {
				return e, err
			}
			s, ok := tok.(string)
			if !ok {
				return e, formatErr(name, "dtype is %s, want a string", describe(tok))
			}
			e.dtype, haveDType = DType(s), true
		case "shape":
			if e.shape, err = p.ints(name, "shape", -1); err != nil {
				return e, err
			}
			haveShape = true
		case "data_offsets":
			off, err := p.ints(name, "data_offsets", 2)
			if err != nil {
				return e, err
			}
			e.begin, e.end, haveOffsets = off[0], off[1], true
		default:
			if err := p.skip(name); err != nil {
				return e, err
			}
		}
	}
	if err := p.delim('}', name, "entry end"); err != nil {
		return e, err
	}
	switch {
	case !haveDType:
		return e, formatErr(name, "missing dtype")
	case !haveShape:
		return e, formatErr(name, "missing shape")
	case !haveOffsets:
		return e, formatErr(name, "missing data_offsets")
	}
	return e, nil
}

// ints reads an array of non-negative integers that fit in int64; want is
// the required length, or -1 for any.
func (p *parser) ints(name, field string, want int) ([]int64, error) {
	if err := p.delim('[', name, field); err != nil {
		return nil, err
	}
	v := []int64{} // a scalar's shape is [], not nil
	for p.dec.More() {
		tok, err := p.token(name)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, formatErr(name, "%s holds %s, want integers", field, describe(tok))
		}
		// ParseInt accepts only plain decimal integers: "1.0" and "1e3" are
		// refused, as the reference implementation refuses them.
		x, err := strconv.ParseInt(num.String(), 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, formatErr(name, "%s value %s is too large", field, num)
			}
			return nil, formatErr(name, "%s value %s is not an integer", field, num)
		}
		if x < 0 || strings.HasPrefix(num.String(), "-") {
			return nil, formatErr(name, "%s value %s is negative", field, num)
		}
		v = append(v, x)
		if want >= 0 && len(v) > want {
			return nil, formatErr(name, "%s has more than %d values", field, want)
		}
	}
	if err := p.delim(']', name, field+" end"); err != nil {
		return nil, err
	}
	if want >= 0 && len(v) != want {
		return nil, formatErr(name, "%s has %d values, want %d", field, len(v), want)
	}
	return v, nil
}

// skip consumes one value of any kind: the value of an unknown field, which
// affects no tensor and so is not inspected further.
func (p *parser) skip(name string) error {
	depth := 0
	for {
		tok, err := p.token(name)
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}
