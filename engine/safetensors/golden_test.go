package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const goldenDir = "../../testdata/golden"

func golden(name string) string { return filepath.Join(goldenDir, name) }

// loadJSON decodes a golden description file into v.
func loadJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(golden(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// independentHeader parses a file's header with plain encoding/json, as a
// cross-check of the validating parser on files known to be well formed.
func independentHeader(t *testing.T, raw []byte) (n int64, entries map[string]struct {
	DType   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Offsets []int64 `json:"data_offsets"`
}, meta map[string]string) {
	t.Helper()
	n = int64(binary.LittleEndian.Uint64(raw))
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &m); err != nil {
		t.Fatal(err)
	}
	entries = map[string]struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}{}
	for k, v := range m {
		if k == "__metadata__" {
			if err := json.Unmarshal(v, &meta); err != nil {
				t.Fatal(err)
			}
			continue
		}
		e := entries[k]
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		entries[k] = e
	}
	return n, entries, meta
}

// TestGoldenFilesAgreeWithPlainJSON opens every golden safetensors file and
// checks each tensor against an independent encoding/json reading of the
// header, and each tensor's bytes against the file read whole.
func TestGoldenFilesAgreeWithPlainJSON(t *testing.T) {
	paths, err := filepath.Glob(golden("*.safetensors"))
	if err != nil || len(paths) < 6 {
		t.Fatalf("golden files: %v %v", paths, err)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			n, entries, meta := independentHeader(t, raw)
			if f.HeaderLen != n || f.Size != int64(len(raw)) {
				t.Errorf("HeaderLen %d Size %d, want %d %d", f.HeaderLen, f.Size, n, len(raw))
			}
			// The golden README: headers are padded to a multiple of 8, the
			// data has no gaps, and the UNet/VAE files' metadata says
			// format "pt" (the text-encoder files are described elsewhere).
			if f.DataOffset()%8 != 0 {
				t.Errorf("data offset %d not a multiple of 8", f.DataOffset())
			}
			if f.UnusedBytes != 0 {
				t.Errorf("UnusedBytes = %d, want 0", f.UnusedBytes)
			}
			isText := strings.HasPrefix(filepath.Base(p), "text-encoders")
			if !maps.Equal(f.Metadata, meta) || (!isText && f.Metadata["format"] != "pt") {
				t.Errorf("metadata %v, plain JSON gives %v", f.Metadata, meta)
			}
			if f.Len() != len(entries) {
				t.Fatalf("%d tensors, plain JSON gives %d", f.Len(), len(entries))
			}
			names := f.Names()
			if !sort.StringsAreSorted(names) {
				t.Error("Names not sorted")
			}
			for _, name := range names {
				tt, _ := f.Tensor(name)
				e, ok := entries[name]
				if !ok {
					t.Fatalf("%q not in plain JSON", name)
				}
				if string(tt.DType) != e.DType || !slices.Equal(tt.Shape, e.Shape) ||
					tt.Offset != 8+n+e.Offsets[0] || tt.Length != e.Offsets[1]-e.Offsets[0] {
					t.Fatalf("%q: got %+v, plain JSON %+v", name, tt, e)
				}
				got, err := f.ReadRaw(name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, raw[tt.Offset:tt.Offset+tt.Length]) {
					t.Fatalf("%q: ReadRaw differs from the file bytes", name)
				}
			}
			if f.RealPath == "" || !filepath.IsAbs(f.RealPath) {
				t.Errorf("RealPath %q", f.RealPath)
			}
		})
	}
}

// TestGoldenWeightFiles checks counts, parameter totals, dtypes and names
// against the golden JSON descriptions.
func TestGoldenWeightFiles(t *testing.T) {
	for _, desc := range []string{"unet-tiny.json", "vae-tiny.json", "unet-tiny-ipadapter.json"} {
		t.Run(desc, func(t *testing.T) {
			var d struct {
				WeightsFile   string `json:"weights_file"`
				NumTensors    int    `json:"num_weight_tensors"`
				NumParameters int64  `json:"num_parameters"`
				DType         string `json:"dtype"`
				Naming        struct {
					DiffusersToSgm map[string]string `json:"diffusers_to_sgm"`
				} `json:"naming"`
			}
			loadJSON(t, desc, &d)
			f, err := Open(golden(d.WeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			if f.Len() != d.NumTensors {
				t.Errorf("%d tensors, want %d", f.Len(), d.NumTensors)
			}
			var params int64
			for _, tt := range f.Tensors() {
				params += tt.NumElements()
				if d.DType != "" && string(tt.DType) != d.DType {
					t.Errorf("%s: dtype %s, want %s", tt.Name, tt.DType, d.DType)
				}
			}
			if d.NumParameters != 0 && params != d.NumParameters {
				t.Errorf("%d parameters, want %d", params, d.NumParameters)
			}
			if m := d.Naming.DiffusersToSgm; m != nil {
				var want []string
				for _, v := range m {
					want = append(want, v)
				}
				sort.Strings(want)
				if !slices.Equal(f.Names(), want) {
					t.Errorf("names differ from the golden name table (%d vs %d)", f.Len(), len(want))
				}
			}
			t.Logf("%s: %d tensors, %d parameters, header %d bytes", d.WeightsFile, f.Len(), params, f.HeaderLen)
		})
	}
}

func TestGoldenTextEncoders(t *testing.T) {
	var d struct {
		WeightKeys map[string][]int64 `json:"weight_keys"`
		IOTensors  map[string]struct {
			Shape []int64 `json:"shape"`
			DType string  `json:"dtype"`
		} `json:"io_tensors"`
		Prompts []struct {
			Name string `json:"name"`
		} `json:"prompts"`
	}
	loadJSON(t, "text-encoders-tiny.json", &d)
	f, err := Open(golden("text-encoders-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != len(d.WeightKeys) {
		t.Errorf("%d tensors, want %d", f.Len(), len(d.WeightKeys))
	}
	for name, shape := range d.WeightKeys {
		tt, ok := f.Tensor(name)
		if !ok || !slices.Equal(tt.Shape, shape) || tt.DType != F32 {
			t.Errorf("%s: got %+v, want F32 %v", name, tt, shape)
		}
	}
	// The io file: shapes and dtypes from the description, and the token
	// ids equal to the tokenizer golden cases of the same prompts.
	io, err := Open(golden("text-encoders-tiny-io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	dtypes := map[string]DType{"int64": I64, "float32": F32}
	for name, want := range d.IOTensors {
		tt, ok := io.Tensor(name)
		if !ok || !slices.Equal(tt.Shape, want.Shape) || tt.DType != dtypes[want.DType] {
			t.Errorf("%s: got %+v, want %s %v", name, tt, want.DType, want.Shape)
		}
	}
	type tokCase struct {
		Name string  `json:"name"`
		IDs1 []int64 `json:"input_ids_tokenizer1"`
		IDs2 []int64 `json:"input_ids_tokenizer2"`
	}
	var tok struct {
		Cases []tokCase `json:"cases"`
	}
	loadJSON(t, "tokenizer.json", &tok)
	for key, pick := range map[string]func(i int) []int64{
		"input_ids_1": func(i int) []int64 { return tok.Cases[i].IDs1 },
		"input_ids_2": func(i int) []int64 { return tok.Cases[i].IDs2 },
	} {
		ids, err := io.ReadInt64(key)
		if err != nil {
			t.Fatal(err)
		}
		var want []int64
		for _, p := range d.Prompts {
			i := slices.IndexFunc(tok.Cases, func(c tokCase) bool { return c.Name == p.Name })
			if i < 0 {
				t.Fatalf("prompt %q not in tokenizer.json", p.Name)
			}
			want = append(want, pick(i)...)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s = %v, want %v", key, ids, want)
		}
	}
	if _, err := io.ReadFloat32("input_ids_1"); err == nil || !strings.Contains(err.Error(), "I64") {
		t.Errorf("ReadFloat32 of an I64 tensor: %v", err)
	}
}

// TestGoldenUNetIO reads the UNet io file: every described tensor has its
// shape and dtype, and the values the description spells out are read back.
func TestGoldenUNetIO(t *testing.T) {
	var d struct {
		IO map[string]struct {
			Shape []int64 `json:"shape"`
			DType string  `json:"dtype"`
			Value any     `json:"value"`
		} `json:"io"`
	}
	loadJSON(t, "unet-tiny.json", &d)
	f, err := Open(golden("unet-tiny-io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != len(d.IO) {
		t.Errorf("%d tensors, want %d", f.Len(), len(d.IO))
	}
	checked := 0
	for name, want := range d.IO {
		tt, ok := f.Tensor(name)
		if !ok || !slices.Equal(tt.Shape, want.Shape) || string(tt.DType) != want.DType {
			t.Errorf("%s: got %+v, want %s %v", name, tt, want.DType, want.Shape)
			continue
		}
		got, err := f.ReadFloat32(name)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != tt.NumElements() {
			t.Fatalf("%s: %d values for %d elements", name, len(got), tt.NumElements())
		}
		for _, v := range got {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: non-finite value %g", name, v)
			}
		}
		if want.Value == nil {
			continue
		}
		var flat []float32
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case []any:
				for _, x := range v {
					walk(x)
				}
			case float64:
				flat = append(flat, float32(v))
			}
		}
		walk(want.Value)
		if !slices.Equal(got, flat) {
			t.Errorf("%s = %v, want %v", name, got, flat)
		}
		checked++
	}
	if checked < 3 {
		t.Errorf("only %d tensors had values to compare", checked)
	}

	// The IP-Adapter io file repeats five of these tensors bit for bit.
	ip, err := Open(golden("unet-tiny-ipadapter-io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"} {
		a, err1 := f.ReadRaw(name)
		b, err2 := ip.ReadRaw(name)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the io files (%v, %v)", name, err1, err2)
		}
	}
}

// TestReadDetectsChangedFile: a File from Open rereads the file, and must
// notice when the file was replaced by one of another size.
func TestReadDetectsChangedFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	data, _ := EncodeFloat32(F32, []float32{1, 2, 3})
	if err := WriteFile(p, []Named{{Name: "x", DType: F32, Shape: []int64{3}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, f.Size-4); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadRaw("x"); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Errorf("read after truncation: %v", err)
	}
	// Same size, new content: caught by the modification time.
	if err := WriteFile(p, []Named{{Name: "x", DType: F32, Shape: []int64{3}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	g, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	later := g.modTime.Add(2 * time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ReadRaw("x"); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Errorf("read after rewrite: %v", err)
	}
	if _, err := f.ReadRaw("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("missing file opened")
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, []byte{1, 2, 3}, 0o644)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("short file: error %v should name the file", err)
	}
}

// TestRealPathResolvesSymlinks: ONNX Runtime refuses symlinked external
// data, so RealPath must point at the real file.
func TestRealPathResolvesSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "blobs", "abc")
	os.MkdirAll(filepath.Dir(real), 0o755)
	data, _ := EncodeFloat32(F32, []float32{7})
	if err := WriteFile(real, []Named{{Name: "w", DType: F32, Shape: []int64{1}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "model.safetensors")
	if err := os.Symlink(filepath.Join("blobs", "abc"), link); err != nil {
		t.Fatal(err)
	}
	f, err := Open(link)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(real)
	if f.RealPath != want || f.Path != link {
		t.Errorf("Path %q RealPath %q, want %q %q", f.Path, f.RealPath, link, want)
	}
	v, err := f.ReadFloat32("w")
	if err != nil || len(v) != 1 || v[0] != 7 {
		t.Errorf("read through symlink: %v %v", v, err)
	}
}
