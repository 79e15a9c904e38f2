package safetensors

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/fp16"
)

func mustEncode(t *testing.T, dt DType, v []float32) []byte {
	t.Helper()
	b, err := EncodeFloat32(dt, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dirEntries lists a folder, to catch leftover temporary files.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	vals := make([]float32, 6*5)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64() * 10)
	}
	vals[0], vals[1], vals[2] = float32(math.Inf(1)), 1e-7, -65520 // Inf, f16 subnormal, f16 overflow tie
	ids := []int64{49406, 320, -5, 49407, 0, math.MaxInt32}
	ids64 := []int64{math.MinInt64, -1, 0, math.MaxInt64}
	i32, err := EncodeInt64(I32, ids)
	if err != nil {
		t.Fatal(err)
	}
	i64, _ := EncodeInt64(I64, ids64)
	tensors := []Named{
		{"f32", F32, []int64{6, 5}, mustEncode(t, F32, vals)},
		{"f16", F16, []int64{6, 5}, mustEncode(t, F16, vals)},
		{"bf16", BF16, []int64{5, 6}, mustEncode(t, BF16, vals)},
		{"f64", F64, []int64{30}, mustEncode(t, F64, vals)},
		{"ids32", I32, []int64{2, 3}, i32},
		{"ids64", I64, []int64{4}, i64},
		{"mask", Bool, []int64{3}, []byte{0, 1, 1}},
		{"empty", F16, []int64{0, 4}, nil},
		{"scalar", F32, []int64{}, mustEncode(t, F32, []float32{801})},
		{`odd "name"\ é` + "\x01", U8, []int64{1}, []byte{9}},
	}
	meta := map[string]string{"format": "pt", "config": `{"a": [1, "x"]}`, "ü\n": "\t"}
	p := filepath.Join(t.TempDir(), "rt.safetensors")
	if err := WriteFile(p, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	_, plain, plainMeta := independentHeader(t, raw)
	if len(plain) != len(tensors) || !maps.Equal(plainMeta, meta) || !maps.Equal(f.Metadata, meta) {
		t.Errorf("plain JSON sees %d tensors, metadata %q; parser %q", len(plain), plainMeta, f.Metadata)
	}
	if f.DataOffset()%8 != 0 || f.UnusedBytes != 0 {
		t.Errorf("data offset %d, unused %d", f.DataOffset(), f.UnusedBytes)
	}
	// Tensors are in the given order with no gaps.
	pos := f.DataOffset()
	for i, tt := range f.Tensors() {
		if tt.Name != tensors[i].Name || tt.Offset != pos || tt.DType != tensors[i].DType || !slices.Equal(tt.Shape, tensors[i].Shape) {
			t.Errorf("tensor %d: %+v, want %s at %d", i, tt, tensors[i].Name, pos)
		}
		got, err := f.ReadRaw(tt.Name)
		if err != nil || !bytes.Equal(got, tensors[i].Data) {
			t.Errorf("%q: raw data differs (%v)", tt.Name, err)
		}
		pos += tt.Length
	}
	if pos != f.Size {
		t.Errorf("data ends at %d, file is %d", pos, f.Size)
	}

	for _, c := range []struct {
		name string
		want func(float32) float32
	}{
		{"f32", func(x float32) float32 { return x }},
		{"f64", func(x float32) float32 { return x }},
		{"f16", func(x float32) float32 { return fp16.ToFloat32(fp16.FromFloat32(x)) }},
		{"bf16", func(x float32) float32 { return fp16.BF16ToFloat32(fp16.BF16FromFloat32(x)) }},
	} {
		got, err := f.ReadFloat32(c.name)
		if err != nil {
			t.Fatal(err)
		}
		var maxRel float64
		for i, x := range vals {
			if math.Float32bits(got[i]) != math.Float32bits(c.want(x)) {
				t.Fatalf("%s[%d] = %g, want %g", c.name, i, got[i], c.want(x))
			}
			// Relative error is meaningful in the normal range only.
			if math.Abs(float64(x)) >= 1e-4 && !math.IsInf(float64(x), 0) && !math.IsInf(float64(got[i]), 0) {
				maxRel = max(maxRel, math.Abs(float64(got[i]-x)/float64(x)))
			}
		}
		t.Logf("%s: max relative rounding error %.3g (|x| ≥ 1e-4)", c.name, maxRel)
	}
	if v, _ := f.ReadFloat32("f16"); !math.IsInf(float64(v[2]), -1) {
		t.Errorf("-65520 as F16 reads %g, want -Inf (a tie between 65504 and 2^16 rounds to even, Inf)", v[2])
	}
	for name, want := range map[string][]int64{"ids32": ids, "ids64": ids64, "mask": {0, 1, 1}} {
		got, err := f.ReadInt64(name)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s = %v (%v), want %v", name, got, err, want)
		}
	}
	if v, err := f.ReadFloat32("scalar"); err != nil || len(v) != 1 || v[0] != 801 {
		t.Errorf("scalar = %v %v", v, err)
	}
	if v, err := f.ReadFloat32("empty"); err != nil || len(v) != 0 {
		t.Errorf("empty = %v %v", v, err)
	}
	if _, err := f.ReadInt64("f32"); err == nil {
		t.Error("ReadInt64 of F32 succeeded")
	}
	if got := dirEntries(t, filepath.Dir(p)); !slices.Equal(got, []string{"rt.safetensors"}) {
		t.Errorf("folder holds %v", got)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
}

// TestWriterFailuresLeaveNoFile: misuse, abort or an incomplete file never
// produce the final name, never leave temporary files, and never damage an
// existing file of that name.
func TestWriterFailuresLeaveNoFile(t *testing.T) {
	specs := []Spec{{"a", F32, []int64{2}}, {"b", U8, []int64{3}}}
	a := mustEncode(t, F32, []float32{1, 2})
	cases := []struct {
		name string
		run  func(w *Writer) error // returns the error the case must produce
		want string
	}{
		{"abort", func(w *Writer) error { w.Write("a", a); w.Abort(); return w.Close() }, "aborted"},
		{"nothing written", func(w *Writer) error { return w.Close() }, `tensor "a" not written (0 of 8 bytes; 0 of 2 tensors done)`},
		{"one missing", func(w *Writer) error { w.Write("a", a); return w.Close() }, `tensor "b" not written`},
		{"partly written", func(w *Writer) error { w.Write("a", a); w.WritePart("b", []byte{1}); return w.Close() }, "1 of 3 bytes"},
		{"wrong order", func(w *Writer) error { return w.Write("b", []byte{1, 2, 3}) }, `expected "a" next`},
		{"unknown name", func(w *Writer) error { return w.Write("zz", nil) }, `expected "a" next`},
		{"short data", func(w *Writer) error { return w.Write("a", a[:7]) }, "got 7 bytes, want 8"},
		{"long data", func(w *Writer) error { return w.Write("a", append(a, 0)) }, "got 9 bytes, want 8"},
		{"part too long", func(w *Writer) error { w.WritePart("a", a[:4]); return w.WritePart("a", a) }, "would exceed"},
		{"Write after WritePart", func(w *Writer) error { w.WritePart("a", a[:4]); return w.Write("a", a) }, "already written with WritePart"},
		{"too many", func(w *Writer) error { w.Write("a", a); w.Write("b", []byte{1, 2, 3}); return w.Write("c", nil) }, "all tensors already written"},
		{"error is sticky", func(w *Writer) error {
			w.Write("b", nil)
			w.Write("a", a)
			w.Write("b", []byte{1, 2, 3})
			return w.Close()
		}, `expected "a" next`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "x.safetensors")
			os.WriteFile(p, []byte("previous"), 0o644)
			w, err := Create(p, specs, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = c.run(w)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if cerr := w.Close(); cerr == nil {
				t.Errorf("Close succeeded after %v", err)
			}
			w.Abort()
			if got := dirEntries(t, dir); !slices.Equal(got, []string{"x.safetensors"}) {
				t.Errorf("folder holds %v", got)
			}
			if b, _ := os.ReadFile(p); string(b) != "previous" {
				t.Errorf("existing file changed to %q", b)
			}
		})
	}
}

// TestWriterReplacesAtomically: until Close the final name keeps its old
// content; afterwards it holds the new file.
func TestWriterReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	os.WriteFile(p, []byte("previous"), 0o644)
	w, err := Create(p, []Spec{{"a", U8, []int64{2}}, {"e", F32, []int64{0}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("a", []byte{4, 5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("e", nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "previous" {
		t.Errorf("final name changed before Close: %q", b)
	}
	if len(dirEntries(t, dir)) != 2 {
		t.Errorf("expected the temporary file beside the target: %v", dirEntries(t, dir))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	w.Abort() // no effect after Close
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := f.ReadRaw("a"); !bytes.Equal(b, []byte{4, 5}) {
		t.Errorf("a = %v", b)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"x.safetensors"}) {
		t.Errorf("folder holds %v", got)
	}
}

func TestCreateRejectsBadSpecs(t *testing.T) {
	big := int64(1) << 40
	cases := []struct {
		name  string
		specs []Spec
		meta  map[string]string
		want  string
	}{
		{"empty name", []Spec{{"", F32, []int64{1}}}, nil, "empty name"},
		{"reserved name", []Spec{{"__metadata__", F32, []int64{1}}}, nil, "reserved"},
		{"duplicate", []Spec{{"a", F32, []int64{1}}, {"a", F16, []int64{1}}}, nil, `"a" listed twice`},
		{"unknown dtype", []Spec{{"a", "F12", []int64{1}}}, nil, `dtype "F12"`},
		{"negative dim", []Spec{{"a", F32, []int64{2, -1}}}, nil, "negative dimension"},
		{"overflow", []Spec{{"a", F64, []int64{big, big}}}, nil, "more than 2^63"},
		{"total overflow", []Spec{{"a", U8, []int64{1 << 62}}, {"b", U8, []int64{1 << 62}}, {"c", U8, []int64{1 << 62}}}, nil, "larger than 2^63"},
		{"bad UTF-8 name", []Spec{{"a\xff", F32, []int64{1}}}, nil, "UTF-8"},
		{"bad UTF-8 metadata", []Spec{{"a", F32, []int64{1}}}, map[string]string{"k": "\xfe"}, "UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := Create(filepath.Join(dir, "x.safetensors"), c.specs, c.meta)
			if err == nil {
				w.Abort()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if got := dirEntries(t, dir); len(got) != 0 {
				t.Errorf("folder holds %v", got)
			}
		})
	}
	if _, err := Create(filepath.Join(t.TempDir(), "no", "such", "dir", "x"), nil, nil); err == nil {
		t.Error("Create in a missing folder succeeded")
	}
	if _, err := EncodeInt64(I32, []int64{1 << 31}); err == nil {
		t.Error("EncodeInt64 I32 overflow accepted")
	}
	if _, err := EncodeFloat32(I8, []float32{1}); err == nil {
		t.Error("EncodeFloat32 I8 accepted")
	}
}

// TestWriterStreams writes a 64 MiB file in 1 MiB pieces and checks that the
// Writer allocated far less than the file size, that the offsets it announced
// are those of the file, and that the data came through intact.
func TestWriterStreams(t *testing.T) {
	const chunk = 1 << 20
	specs := []Spec{
		{"big.0", F16, []int64{16 << 20}},
		{"small", F32, []int64{3}},
		{"big.1", BF16, []int64{4096, 4096}},
	}
	p := filepath.Join(t.TempDir(), "big.safetensors")
	fill := func(buf []byte, seed uint64) {
		for i := range buf {
			buf[i] = byte(seed*131 + uint64(i)*7 + uint64(i>>12))
		}
	}
	buf := make([]byte, chunk)
	want := map[string][32]byte{}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	w, err := Create(p, specs, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	announced := w.Tensors()
	for _, tt := range announced {
		h := sha256.New()
		for done, k := int64(0), uint64(0); done < tt.Length; k++ {
			n := min(int64(chunk), tt.Length-done)
			fill(buf[:n], k+uint64(len(tt.Name)))
			h.Write(buf[:n])
			if err := w.WritePart(tt.Name, buf[:n]); err != nil {
				t.Fatal(err)
			}
			done += n
		}
		want[tt.Name] = [32]byte(h.Sum(nil))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms1)
	alloc := ms1.TotalAlloc - ms0.TotalAlloc
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB; the Writer allocated %.2f MiB", f.Size>>20, float64(alloc)/(1<<20))
	if f.Size < 64<<20 || alloc > 4<<20 {
		t.Errorf("file %d bytes, allocated %d bytes: not streaming", f.Size, alloc)
	}
	for _, a := range announced {
		tt, ok := f.Tensor(a.Name)
		if !ok || tt.Offset != a.Offset || tt.Length != a.Length {
			t.Fatalf("%s: announced %+v, file has %+v", a.Name, a, tt)
		}
		raw, err := f.ReadRaw(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(raw) != want[a.Name] {
			t.Errorf("%s: data differs", a.Name)
		}
	}
	if w.HeaderLen() != f.HeaderLen {
		t.Errorf("HeaderLen %d vs %d", w.HeaderLen(), f.HeaderLen)
	}
}
