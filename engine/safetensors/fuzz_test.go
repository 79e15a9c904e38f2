package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"slices"
	"sort"
	"testing"
)

// zeroTail is a file image of size bytes: data, then zeros. It lets the
// fuzzer describe a large file (a real checkpoint's header followed by its
// data section) without materialising the data.
type zeroTail struct {
	data []byte
	size int64
}

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= z.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := z.size - off; int64(n) > rest {
		n = int(rest)
	}
	c := 0
	if off < int64(len(z.data)) {
		c = copy(p[:n], z.data[off:])
	}
	clear(p[c:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzParseHeader feeds arbitrary bytes, followed by extra zero bytes, to
// ParseHeader. It must never panic; every refusal must be a *FormatError
// (the reader cannot fail); every accepted header must satisfy the
// invariants the package promises, and must survive being written out again
// by the Writer's header encoder and parsed back unchanged.
//
// The seed corpus in testdata/fuzz/FuzzParseHeader holds the real headers
// (first 8+N bytes) of golden files with extra set to their data size; it
// was written once from ../../testdata/golden with a throwaway program that
// printed each as `[]byte(%q)` and `uint32(%d)`.
func FuzzParseHeader(f *testing.F) {
	for _, c := range malformedCases {
		f.Add(c.file, uint32(0))
	}
	f.Add(build(`{`+okEntry+`}`, 8), uint32(0))
	f.Add(build(`{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]},`+okEntry+`}`, 0), uint32(64))
	f.Add(build(`{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F16","shape":[0],"data_offsets":[8,8]}}`, 8), uint32(1))

	f.Fuzz(func(t *testing.T, data []byte, extra uint32) {
		size := int64(len(data)) + int64(extra)
		src := zeroTail{data, size}
		file, err := ParseHeader(src, size)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FormatError: %v", err)
			}
			return
		}
		checkInvariants(t, file)

		// Re-encode with the same relative offsets and parse again.
		var entries []entry
		for _, tt := range file.Tensors() {
			begin := tt.Offset - file.DataOffset()
			entries = append(entries, entry{tt.Name, tt.DType, tt.Shape, begin, begin + tt.Length})
		}
		hdr := marshalHeader(entries, file.Metadata)
		dataSize := file.Size - file.DataOffset()
		img := make([]byte, 8, 8+len(hdr))
		binary.LittleEndian.PutUint64(img, uint64(len(hdr)))
		img = append(img, hdr...)
		again, err := ParseHeader(zeroTail{img, int64(len(img)) + dataSize}, int64(len(img))+dataSize)
		if err != nil {
			t.Fatalf("re-encoded header refused: %v\n%s", err, hdr)
		}
		if !maps.Equal(again.Metadata, file.Metadata) || (again.Metadata == nil) != (file.Metadata == nil) {
			t.Fatalf("metadata %q became %q", file.Metadata, again.Metadata)
		}
		if again.Len() != file.Len() || again.UnusedBytes != file.UnusedBytes {
			t.Fatalf("%d tensors / %d unused became %d / %d", file.Len(), file.UnusedBytes, again.Len(), again.UnusedBytes)
		}
		shift := again.DataOffset() - file.DataOffset()
		for _, name := range file.Names() {
			a, _ := file.Tensor(name)
			b, ok := again.Tensor(name)
			if !ok || a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || a.Length != b.Length || a.Offset+shift != b.Offset {
				t.Fatalf("%q: %+v became %+v", name, a, b)
			}
		}

		// Reading the first tensor reads exactly its bytes of the image.
		if ts := file.Tensors(); len(ts) > 0 && ts[0].Length <= 1<<20 {
			raw, err := file.ReadRaw(ts[0].Name)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, ts[0].Length)
			src.ReadAt(want, ts[0].Offset)
			if !bytes.Equal(raw, want) {
				t.Fatalf("ReadRaw(%q) differs from the file", ts[0].Name)
			}
		}
	})
}

func checkInvariants(t *testing.T, f *File) {
	t.Helper()
	if f.HeaderLen < 2 || f.HeaderLen > MaxHeaderLen || f.DataOffset() > f.Size {
		t.Fatalf("header length %d in a %d-byte file", f.HeaderLen, f.Size)
	}
	names := f.Names()
	if len(names) != f.Len() || !sort.StringsAreSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Fatalf("names not sorted and unique: %q", names)
	}
	var used, end int64
	for i, tt := range f.Tensors() {
		if got, ok := f.Tensor(tt.Name); !ok || got != tt {
			t.Fatalf("%q: Tensor and Tensors disagree", tt.Name)
		}
		n := tt.NumElements()
		if n < 0 || tt.Length != n*int64(tt.DType.Size()) || tt.DType.Size() == 0 {
			t.Fatalf("%q: %d elements of %s in %d bytes", tt.Name, n, tt.DType, tt.Length)
		}
		if tt.Offset < f.DataOffset() || tt.Length < 0 || tt.Offset > f.Size-tt.Length {
			t.Fatalf("%q: [%d, +%d) outside the data section [%d, %d)", tt.Name, tt.Offset, tt.Length, f.DataOffset(), f.Size)
		}
		if tt.Length > 0 {
			if i > 0 && tt.Offset < end {
				t.Fatalf("%q overlaps an earlier tensor", tt.Name)
			}
			end = tt.Offset + tt.Length
		}
		used += tt.Length
	}
	if f.UnusedBytes != f.Size-f.DataOffset()-used || f.UnusedBytes < 0 {
		t.Fatalf("UnusedBytes %d, want %d", f.UnusedBytes, f.Size-f.DataOffset()-used)
	}
}
