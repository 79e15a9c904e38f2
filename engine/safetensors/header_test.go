package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// build makes a file image: the 8-byte length of hdr, hdr, then dataLen
// zero bytes.
func build(hdr string, dataLen int) []byte {
	b := make([]byte, 8, 8+len(hdr)+dataLen)
	binary.LittleEndian.PutUint64(b, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, make([]byte, dataLen)...)
}

// withLength makes a file image whose length field says n whatever follows.
func withLength(n uint64, rest string) []byte {
	b := make([]byte, 8, 8+len(rest))
	binary.LittleEndian.PutUint64(b, n)
	return append(b, rest...)
}

func parseBytes(b []byte) (*File, error) {
	return ParseHeader(bytes.NewReader(b), int64(len(b)))
}

const okEntry = `"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`

// malformedCases are files ParseHeader must refuse; they also seed the fuzzer.
var malformedCases = []struct {
	name   string
	file   []byte
	tensor string // tensor the error must name ("" for none)
	want   string // substring of the error
}{
	{"empty file", nil, "", "too short"},
	{"seven bytes", []byte{2, 0, 0, 0, 0, 0, 0}, "", "too short"},
	{"zero header length", withLength(0, "{}"), "", "too short for a JSON object"},
	{"header length past the file", withLength(100, "{}"), "", "exceeds the 2 bytes after"},
	{"huge header length", withLength(1<<63, "{}"), "", "exceeds the 104857600-byte limit"},
	{"header length just over the limit", withLength(MaxHeaderLen+1, "{}"), "", "limit"},
	{"truncated JSON", build(`{"a":{"dtype":"F32","shape":[2]`, 8), "a", "ends early"},
	{"truncated JSON, no entries", build(`{ `, 0), "", "ends early"},
	{"bad JSON", build(`{"a":}`, 0), "a", "bad header JSON"},
	{"bad JSON in entry", build(`{"a":{"dtype" "F32"}}`, 0), "a", "bad header JSON"},
	{"non-object header", build(`[1,2]`, 0), "", "does not start with '{'"},
	{"leading space", build(` {}`, 0), "", "does not start with '{'"},
	{"two objects", build(`{}{}`, 0), "", "an object after the header object"},
	{"trailing garbage", build(`{} x`, 0), "", "bad header JSON"},
	{"trailing NUL padding", build("{}\x00\x00", 0), "", "bad header JSON"},
	{"invalid UTF-8", build("{\"\xff\":1}", 0), "", "UTF-8"},
	{"entry not an object", build(`{"a":[1]}`, 0), "a", "entry is an array"},
	{"entry null", build(`{"a":null}`, 0), "a", "entry is null"},
	{"missing dtype", build(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, 8), "a", "missing dtype"},
	{"missing shape", build(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, 8), "a", "missing shape"},
	{"missing data_offsets", build(`{"a":{"dtype":"F32","shape":[2]}}`, 8), "a", "missing data_offsets"},
	{"unknown dtype", build(`{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}`, 8), "a", `unknown or unsupported dtype "F17"`},
	{"sub-byte dtype", build(`{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, 8), "a", `dtype "F4"`},
	{"lower-case dtype", build(`{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}`, 8), "a", `dtype "f32"`},
	{"dtype a number", build(`{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, 8), "a", "dtype is a number"},
	{"negative shape", build(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8), "a", "negative"},
	{"minus zero shape", build(`{"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}`, 8), "a", "negative"},
	{"fractional shape", build(`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, 8), "a", "not an integer"},
	{"exponent shape", build(`{"a":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}}`, 8), "a", "not an integer"},
	{"string in shape", build(`{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, 8), "a", "shape holds a string"},
	{"shape not an array", build(`{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, 8), "a", `shape is a number, want "["`},
	{"nested shape", build(`{"a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}}`, 8), "a", "shape holds an array"},
	{"dimension past int64", build(`{"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}}`, 8), "a", "too large"},
	{"element count overflow", build(`{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, 8), "a", "more than 2^63 elements"},
	{"byte count overflow", build(`{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}}`, 8), "a", "more than 2^63 bytes"},
	{"overflow hidden by a zero", build(`{"a":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}`, 8), "a", "more than 2^63 elements"},
	{"three offsets", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}`, 16), "a", "more than 2 values"},
	{"one offset", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`, 16), "a", "has 1 values, want 2"},
	{"negative offset", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, 16), "a", "negative"},
	{"offsets reversed", build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, 16), "a", "end before they begin"},
	{"offsets past EOF", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 8), "a", "past the end of the 8-byte data section"},
	{"offsets far past EOF", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775800,9223372036854775807]}}`, 8), "a", "past the end"},
	{"wrong length for dtype", build(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, 8), "a", "needs 4 bytes but data_offsets [0, 8] hold 8"},
	{"wrong length for shape", build(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 16), "a", "needs 12 bytes"},
	{"overlap", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 16), "b", `overlap those of "a"`},
	{"aliasing", build(`{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, 8), "a", `overlap those of "b"`},
	{"overlap across a gap", build(`{"a":{"dtype":"U8","shape":[100],"data_offsets":[0,100]},"b":{"dtype":"U8","shape":[1],"data_offsets":[50,51]},"c":{"dtype":"U8","shape":[1],"data_offsets":[99,100]}}`, 100), "b", "overlap"},
	{"duplicate tensor", build(`{`+okEntry+`,`+okEntry+`}`, 16), "a", "duplicate key"},
	{"duplicate field", build(`{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, 8), "a", `duplicate field "dtype"`},
	{"duplicate unknown field", build(`{"a":{"x":1,"x":2,"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), "a", `duplicate field "x"`},
	{"duplicate metadata", build(`{"__metadata__":{},"__metadata__":{}}`, 0), "__metadata__", "duplicate key"},
	{"duplicate metadata key", build(`{"__metadata__":{"k":"1","k":"2"}}`, 0), "", `duplicate key "k" in __metadata__`},
	{"metadata a string", build(`{"__metadata__":"pt"}`, 0), "", "__metadata__ is a string"},
	{"metadata value a number", build(`{"__metadata__":{"epoch":3}}`, 0), "", `value for key "epoch" is a number`},
	{"metadata value an object", build(`{"__metadata__":{"cfg":{"a":"b"}}}`, 0), "", `value for key "cfg" is an object`},
	{"metadata value null", build(`{"__metadata__":{"k":null}}`, 0), "", `value for key "k" is null`},
}

func TestMalformedHeaders(t *testing.T) {
	for _, c := range malformedCases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseBytes(c.file)
			if err == nil {
				t.Fatalf("accepted: %d tensors", f.Len())
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if fe.Tensor != c.tensor || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q (tensor %q), want tensor %q and %q", err, fe.Tensor, c.tensor, c.want)
			}
		})
	}
}

// TestHeaderTruncatedByReader: the file claims more than the reader gives.
func TestHeaderTruncatedByReader(t *testing.T) {
	b := build(`{`+okEntry+`}`, 8)
	_, err := ParseHeader(bytes.NewReader(b[:20]), int64(len(b)))
	if err == nil || !strings.Contains(err.Error(), "read header") {
		t.Errorf("got %v", err)
	}
}

func TestAcceptedHeaders(t *testing.T) {
	cases := []struct {
		name   string
		file   []byte
		unused int64
		check  func(t *testing.T, f *File)
	}{
		{"empty object", build(`{}`, 0), 0, func(t *testing.T, f *File) {
			if f.Len() != 0 || f.Metadata != nil {
				t.Errorf("%d tensors, metadata %v", f.Len(), f.Metadata)
			}
		}},
		{"padding and newlines", build("{\n"+okEntry+"\n}    \n\t", 8), 0, nil},
		{"scalar", build(`{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}`, 8), 0, func(t *testing.T, f *File) {
			s, _ := f.Tensor("s")
			if s.NumElements() != 1 || s.Shape == nil || len(s.Shape) != 0 {
				t.Errorf("scalar %+v: %d elements", s, s.NumElements())
			}
		}},
		{"empty tensors", build(`{"e":{"dtype":"F32","shape":[3,0],"data_offsets":[4,4]},"f":{"dtype":"I8","shape":[0],"data_offsets":[4,4]},`+okEntry+`}`, 8), 0, func(t *testing.T, f *File) {
			e, _ := f.Tensor("e")
			if e.NumElements() != 0 || e.Length != 0 || e.Offset != f.DataOffset()+4 {
				t.Errorf("empty tensor %+v", e)
			}
		}},
		{"gaps are allowed", build(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[10,12]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 20), 16, func(t *testing.T, f *File) {
			ts := f.Tensors()
			if ts[0].Name != "a" || ts[1].Name != "b" {
				t.Errorf("Tensors not in data order: %s %s", ts[0].Name, ts[1].Name)
			}
		}},
		{"metadata null", build(`{"__metadata__":null,`+okEntry+`}`, 8), 0, func(t *testing.T, f *File) {
			if f.Metadata != nil {
				t.Errorf("metadata %v", f.Metadata)
			}
		}},
		{"metadata and escapes", build(`{"__metadata__":{"format":"pt","q\"\u00e9":"\n"},"na\u006de":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`, 4), 0, func(t *testing.T, f *File) {
			if f.Metadata["format"] != "pt" || f.Metadata["q\"é"] != "\n" {
				t.Errorf("metadata %q", f.Metadata)
			}
			if !slices.Equal(f.Names(), []string{"name"}) {
				t.Errorf("names %q", f.Names())
			}
		}},
		{"unknown fields ignored", build(`{"a":{"extra":{"x":[1,{"y":null}]},"dtype":"F32","shape":[2],"data_offsets":[0,8],"more":true}}`, 8), 0, nil},
		{"every known dtype", build(`{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"c":{"dtype":"U64","shape":[1],"data_offsets":[16,24]},"d":{"dtype":"C64","shape":[1],"data_offsets":[24,32]},"e":{"dtype":"I32","shape":[1],"data_offsets":[32,36]},"f":{"dtype":"U32","shape":[1],"data_offsets":[36,40]},"g":{"dtype":"F16","shape":[1],"data_offsets":[40,42]},"h":{"dtype":"I16","shape":[1],"data_offsets":[42,44]},"i":{"dtype":"U16","shape":[1],"data_offsets":[44,46]},"j":{"dtype":"I8","shape":[1],"data_offsets":[46,47]},"k":{"dtype":"U8","shape":[1],"data_offsets":[47,48]},"l":{"dtype":"BOOL","shape":[1],"data_offsets":[48,49]},"m":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[49,50]},"n":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[50,51]},"o":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[51,52]}}`, 52), 0, nil},
		{"trailing data after tensors", build(`{`+okEntry+`}`, 20), 12, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseBytes(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if f.UnusedBytes != c.unused {
				t.Errorf("UnusedBytes = %d, want %d", f.UnusedBytes, c.unused)
			}
			for _, tt := range f.Tensors() {
				if tt.Offset < f.DataOffset() || tt.Offset+tt.Length > f.Size {
					t.Errorf("%s outside the data section: %+v", tt.Name, tt)
				}
			}
			if c.check != nil {
				c.check(t, f)
			}
		})
	}
}

// TestMalformedFileOnDisk: Open wraps header errors with the path and keeps
// the *FormatError reachable.
func TestMalformedFileOnDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "evil.safetensors")
	if err := os.WriteFile(p, build(`{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}`, 16), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(p)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Tensor != "w" || !strings.Contains(err.Error(), p) {
		t.Errorf("got %v", err)
	}
}

func TestNumElements(t *testing.T) {
	for _, c := range []struct {
		shape []int64
		want  int64
	}{
		{nil, 1},
		{[]int64{}, 1},
		{[]int64{2, 3, 4}, 24},
		{[]int64{5, 0, 7}, 0},
		{[]int64{-1}, -1},
		{[]int64{1 << 32, 1 << 32}, -1},
	} {
		tt := Tensor{Shape: c.shape}
		if got := tt.NumElements(); got != c.want {
			t.Errorf("NumElements(%v) = %d, want %d", c.shape, got, c.want)
		}
	}
}

// TestSDXLSizedHeader parses a header with every tensor of a full SDXL
// checkpoint (built from testdata/sdxl/checkpoint-keys.tsv, F16, 6.9 GB of
// virtual data) and checks that every row comes back at its place.
func TestSDXLSizedHeader(t *testing.T) {
	img, rows := sdxlHeaderImage(t)
	f, err := ParseHeader(img, img.size)
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != rows || f.UnusedBytes != 0 {
		t.Fatalf("%d tensors (want %d), %d unused bytes", f.Len(), rows, f.UnusedBytes)
	}
	var elems int64
	for _, tt := range f.Tensors() {
		elems += tt.NumElements()
	}
	if 2*elems != f.Size-f.DataOffset() {
		t.Errorf("%d elements in a %d-byte data section", elems, f.Size-f.DataOffset())
	}
	t.Logf("%d tensors, header %d bytes, %d elements, data %d bytes", f.Len(), f.HeaderLen, elems, f.Size-f.DataOffset())
}
