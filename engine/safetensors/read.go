package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/pixery/pixery/engine/fp16"
)

// lookup returns the named tensor or an error naming it.
func (f *File) lookup(name string) (*Tensor, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("tensor %q not found in %s", name, f.describe())
	}
	return t, nil
}

func (f *File) describe() string {
	if f.Path != "" {
		return f.Path
	}
	return "safetensors data"
}

// ReadRaw returns the bytes of the named tensor, exactly as stored
// (little-endian).
func (f *File) ReadRaw(name string) ([]byte, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if t.Length > math.MaxInt {
		return nil, fmt.Errorf("read tensor %q: %d bytes do not fit in memory", name, t.Length)
	}
	buf := make([]byte, t.Length)
	if err := f.readAt(buf, t.Offset); err != nil {
		return nil, fmt.Errorf("read tensor %q: %w", name, err)
	}
	return buf, nil
}

// readAt fills p from the absolute offset off, reopening the file when the
// File came from Open.
func (f *File) readAt(p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if f.src != nil {
		return readFull(f.src, p, off)
	}
	fh, err := os.Open(f.RealPath)
	if err != nil {
		return err
	}
	defer fh.Close()
	// The header was validated against the file seen by Open; a file that
	// has since been replaced or truncated could give other data.
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	if st.Size() != f.Size || !st.ModTime().Equal(f.modTime) {
		return fmt.Errorf("%s changed since its header was read (%d bytes, now %d; modified %v, now %v)",
			f.RealPath, f.Size, st.Size(), f.modTime, st.ModTime())
	}
	return readFull(fh, p, off)
}

// ReadFloat32 returns the named tensor converted to float32. F32, F16 and
// BF16 convert exactly; F64 rounds to nearest. Other types are an error.
func (f *File) ReadFloat32(name string) ([]float32, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !t.DType.IsFloat() {
		return nil, fmt.Errorf("read tensor %q as float32: dtype is %s", name, t.DType)
	}
	raw, err := f.ReadRaw(name)
	if err != nil {
		return nil, err
	}
	return DecodeFloat32(t.DType, raw)
}

// DecodeFloat32 converts little-endian data of a floating-point dtype to
// float32 (see ReadFloat32).
func DecodeFloat32(dt DType, raw []byte) ([]float32, error) {
	size := dt.Size()
	if !dt.IsFloat() {
		return nil, fmt.Errorf("decode %s as float32: not a floating-point type", dt)
	}
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("decode %s: %d bytes is not a whole number of elements", dt, len(raw))
	}
	out := make([]float32, len(raw)/size)
	switch dt {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case F16:
		fp16.DecodeF16(out, raw)
	case BF16:
		fp16.DecodeBF16(out, raw)
	}
	return out, nil
}

// ReadInt64 returns the named tensor converted to int64. It accepts the
// integer types and BOOL; a U64 value above the int64 range is an error.
func (f *File) ReadInt64(name string) ([]int64, error) {
	t, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case I64, I32, I16, I8, U64, U32, U16, U8, Bool:
	default:
		return nil, fmt.Errorf("read tensor %q as int64: dtype is %s", name, t.DType)
	}
	raw, err := f.ReadRaw(name)
	if err != nil {
		return nil, err
	}
	out := make([]int64, t.NumElements())
	le := binary.LittleEndian
	for i := range out {
		switch t.DType {
		case I64:
			out[i] = int64(le.Uint64(raw[8*i:]))
		case U64:
			v := le.Uint64(raw[8*i:])
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("read tensor %q: element %d = %d does not fit in int64", name, i, v)
			}
			out[i] = int64(v)
		case I32:
			out[i] = int64(int32(le.Uint32(raw[4*i:])))
		case U32:
			out[i] = int64(le.Uint32(raw[4*i:]))
		case I16:
			out[i] = int64(int16(le.Uint16(raw[2*i:])))
		case U16:
			out[i] = int64(le.Uint16(raw[2*i:]))
		case I8:
			out[i] = int64(int8(raw[i]))
		case U8, Bool:
			out[i] = int64(raw[i])
		}
	}
	return out, nil
}
