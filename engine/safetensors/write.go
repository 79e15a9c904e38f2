package safetensors

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/pixery/pixery/engine/fp16"
)

// Spec declares one tensor to be written.
type Spec struct {
	Name  string
	DType DType
	Shape []int64
}

// Writer streams a safetensors file to disk. The header is computed from the
// specs up front, so data goes straight to the file with no whole-file
// buffer, and files of many gigabytes need only the memory of one write.
//
// The file is written under a temporary name in the destination folder and
// renamed into place by Close after an fsync, so a file with the final name
// is always complete. A Writer is not safe for concurrent use.
type Writer struct {
	path    string
	tmp     *os.File
	bw      *bufio.Writer
	tensors []Tensor // absolute offsets
	hdrLen  int64
	next    int   // index of the tensor being written
	done    int64 // bytes of tensors[next] written so far
	err     error // first error; the Writer is unusable after it
	closed  bool
}

// Create starts writing a safetensors file holding the given tensors, in the
// given order and with no gaps between them, and the given metadata (which
// may be nil). Names must be unique, non-empty, valid UTF-8 and not
// "__metadata__". Call Write (or WritePart) for each tensor in order, then
// Close; call Abort to give up.
func Create(path string, specs []Spec, metadata map[string]string) (*Writer, error) {
	hdr, tensors, err := buildHeader(specs, metadata)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	w := &Writer{
		path:    path,
		tmp:     tmp,
		bw:      bufio.NewWriterSize(tmp, 1<<20),
		tensors: tensors,
		hdrLen:  int64(len(hdr)),
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	if _, err := w.bw.Write(lenBuf[:]); err != nil {
		w.Abort()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := w.bw.Write(hdr); err != nil {
		w.Abort()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return w, nil
}

// buildHeader validates the specs and returns the padded JSON header and the
// tensors with their absolute offsets.
func buildHeader(specs []Spec, metadata map[string]string) ([]byte, []Tensor, error) {
	entries := make([]entry, len(specs))
	seen := make(map[string]bool, len(specs))
	var pos int64
	for i, s := range specs {
		switch {
		case s.Name == "":
			return nil, nil, fmt.Errorf("tensor %d has an empty name", i)
		case s.Name == metadataKey:
			return nil, nil, fmt.Errorf("tensor name %q is reserved", s.Name)
		case !utf8.ValidString(s.Name):
			return nil, nil, fmt.Errorf("tensor name %q is not valid UTF-8", s.Name)
		case seen[s.Name]:
			return nil, nil, fmt.Errorf("tensor %q listed twice", s.Name)
		}
		seen[s.Name] = true
		n, err := byteLength(s.DType, s.Shape)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", s.Name, err)
		}
		if pos > math.MaxInt64-n {
			return nil, nil, fmt.Errorf("tensor %q: data larger than 2^63 bytes", s.Name)
		}
		entries[i] = entry{name: s.Name, dtype: s.DType, shape: slices.Clone(s.Shape), begin: pos, end: pos + n}
		pos += n
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("metadata %q is not valid UTF-8", k)
		}
	}
	hdr := marshalHeader(entries, metadata)
	if len(hdr) > MaxHeaderLen {
		return nil, nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit", len(hdr), MaxHeaderLen)
	}
	tensors := make([]Tensor, len(entries))
	base := 8 + int64(len(hdr))
	if pos > math.MaxInt64-base {
		return nil, nil, fmt.Errorf("data larger than 2^63 bytes")
	}
	for i, e := range entries {
		tensors[i] = Tensor{Name: e.name, DType: e.dtype, Shape: e.shape, Offset: base + e.begin, Length: e.end - e.begin}
	}
	return hdr, tensors, nil
}

// marshalHeader writes the header JSON: metadata first (keys sorted), then
// the entries in the order given, padded with spaces so that the data
// section starts at a multiple of 8 bytes. Offsets are written as given
// (relative to the data section).
func marshalHeader(entries []entry, metadata map[string]string) []byte {
	b := []byte{'{'}
	if metadata != nil {
		b = appendString(b, metadataKey)
		b = append(b, ":{"...)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, metadata[k])
		}
		b = append(b, '}')
	}
	for i, e := range entries {
		if i > 0 || metadata != nil {
			b = append(b, ',')
		}
		b = appendString(b, e.name)
		b = append(b, `:{"dtype":`...)
		b = appendString(b, string(e.dtype))
		b = append(b, `,"shape":[`...)
		for j, d := range e.shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, e.begin, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, e.end, 10)
		b = append(b, "]}"...)
	}
	b = append(b, '}')
	for (8+len(b))%8 != 0 {
		b = append(b, ' ')
	}
	return b
}

// appendString appends s as a JSON string. s must be valid UTF-8. Only what
// JSON requires is escaped, so names stay readable in the header.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Tensors returns the tensors being written, with the absolute offsets they
// will have in the file.
func (w *Writer) Tensors() []Tensor {
	out := slices.Clone(w.tensors)
	for i := range out {
		out[i].Shape = slices.Clone(out[i].Shape)
	}
	return out
}

// HeaderLen returns the length of the JSON header being written.
func (w *Writer) HeaderLen() int64 { return w.hdrLen }

// Write writes the whole data of the named tensor, which must be the next
// one in the specs' order, with exactly its length in bytes. Every tensor
// needs its call, an empty one included (with no data).
func (w *Writer) Write(name string, data []byte) error {
	if err := w.check(name); err != nil {
		return err
	}
	t := &w.tensors[w.next]
	if w.done != 0 {
		return w.fail(fmt.Errorf("write tensor %q: %d bytes already written with WritePart", name, w.done))
	}
	if int64(len(data)) != t.Length {
		return w.fail(fmt.Errorf("write tensor %q: got %d bytes, want %d", name, len(data), t.Length))
	}
	return w.WritePart(name, data)
}

// WritePart writes the next piece of the named tensor's data, so that a
// large tensor can be produced in chunks. Once its length is reached the
// Writer moves on to the next tensor.
func (w *Writer) WritePart(name string, data []byte) error {
	if err := w.check(name); err != nil {
		return err
	}
	t := &w.tensors[w.next]
	if int64(len(data)) > t.Length-w.done {
		return w.fail(fmt.Errorf("write tensor %q: %d more bytes would exceed its %d", name, len(data), t.Length))
	}
	if _, err := w.bw.Write(data); err != nil {
		return w.fail(fmt.Errorf("write tensor %q: %w", name, err))
	}
	w.done += int64(len(data))
	if w.done == t.Length {
		w.next++
		w.done = 0
	}
	return nil
}

// check verifies that name is the tensor expected next.
func (w *Writer) check(name string) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("write %s: writer closed", w.path)
	}
	if w.next < len(w.tensors) && w.tensors[w.next].Name == name {
		return nil
	}
	if w.next >= len(w.tensors) {
		return w.fail(fmt.Errorf("write tensor %q: all tensors already written", name))
	}
	return w.fail(fmt.Errorf("write tensor %q: expected %q next", name, w.tensors[w.next].Name))
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("%s: %w", w.path, err)
	}
	return w.err
}

// Close checks that every tensor was written in full, flushes and fsyncs the
// file and renames it to its final name. On any error the temporary file is
// removed and nothing appears under the final name.
func (w *Writer) Close() error {
	if w.closed {
		if w.err != nil {
			return w.err
		}
		return nil
	}
	if w.err == nil && w.next < len(w.tensors) {
		t := w.tensors[w.next]
		w.fail(fmt.Errorf("close: tensor %q not written (%d of %d bytes; %d of %d tensors done)",
			t.Name, w.done, t.Length, w.next, len(w.tensors)))
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	w.closed = true
	tmpName := w.tmp.Name()
	err := w.bw.Flush()
	if err == nil {
		err = w.tmp.Sync()
	}
	if cerr := w.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// CreateTemp makes the file private; a checkpoint is ordinary data.
		err = os.Chmod(tmpName, 0o644)
	}
	if err == nil {
		err = os.Rename(tmpName, w.path)
	}
	if err != nil {
		os.Remove(tmpName)
		w.err = fmt.Errorf("close %s: %w", w.path, err)
		return w.err
	}
	syncDir(filepath.Dir(w.path))
	return nil
}

// syncDir makes the rename durable where the system allows it. Some systems
// (Windows) cannot open a folder for syncing; the file's own data is already
// synced, so failure here is not reported.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// Abort stops writing and removes the temporary file. It does nothing after
// a successful Close, and may be called more than once.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	if w.err == nil {
		w.err = fmt.Errorf("write %s: aborted", w.path)
	}
	name := w.tmp.Name()
	w.tmp.Close()
	os.Remove(name)
}

// Named is a tensor with its data, for WriteFile.
type Named struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte // little-endian, exactly the size the dtype and shape need
}

// WriteFile writes a whole safetensors file at once (atomically, as Create
// does), with the tensors in the given order. It suits small files; stream
// large ones with Create.
func WriteFile(path string, tensors []Named, metadata map[string]string) error {
	specs := make([]Spec, len(tensors))
	for i, t := range tensors {
		specs[i] = Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	w, err := Create(path, specs, metadata)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// EncodeFloat32 converts values to little-endian data of a floating-point
// dtype: F32 and F64 exactly, F16 and BF16 rounded to nearest even.
func EncodeFloat32(dt DType, v []float32) ([]byte, error) {
	if !dt.IsFloat() {
		return nil, fmt.Errorf("encode float32 as %s: not a floating-point type", dt)
	}
	out := make([]byte, len(v)*dt.Size())
	switch dt {
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case F64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(float64(x)))
		}
	case F16:
		fp16.EncodeF16(out, v)
	case BF16:
		fp16.EncodeBF16(out, v)
	}
	return out, nil
}

// EncodeInt64 converts values to little-endian data of dtype I64 or I32 (an
// I32 value out of range is an error).
func EncodeInt64(dt DType, v []int64) ([]byte, error) {
	switch dt {
	case I64:
		out := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
		}
		return out, nil
	case I32:
		out := make([]byte, 4*len(v))
		for i, x := range v {
			if x < math.MinInt32 || x > math.MaxInt32 {
				return nil, fmt.Errorf("encode int64 as I32: element %d = %d out of range", i, x)
			}
			binary.LittleEndian.PutUint32(out[4*i:], uint32(int32(x)))
		}
		return out, nil
	}
	return nil, fmt.Errorf("encode int64 as %s: unsupported (I64 or I32)", dt)
}
