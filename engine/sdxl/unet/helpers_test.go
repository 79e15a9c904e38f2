package unet

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
)

// keyRow is one row of testdata/sdxl/checkpoint-keys.tsv.
type keyRow struct {
	Name  string
	Shape []int64
}

// sdxlRows reads the rows of one component of the derived SDXL key list.
func sdxlRows(tb testing.TB, component string) []keyRow {
	tb.Helper()
	f, err := os.Open("../../../testdata/sdxl/checkpoint-keys.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var rows []keyRow
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		cols := strings.Split(sc.Text(), "\t")
		if line == 0 || len(cols) < 3 || cols[2] != component {
			continue
		}
		r := keyRow{Name: cols[0]}
		if cols[1] != "scalar" {
			for _, d := range strings.Split(cols[1], "x") {
				n, err := strconv.ParseInt(d, 10, 64)
				if err != nil {
					tb.Fatalf("checkpoint-keys.tsv line %d: shape %q: %v", line+1, cols[1], err)
				}
				r.Shape = append(r.Shape, n)
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return rows
}

// writeHeaderOnly writes a safetensors file whose header lists the rows as
// F16 tensors and whose data section is a hole: the file has its full
// length but no disk blocks, so a full-size checkpoint costs nothing.
func writeHeaderOnly(tb testing.TB, path string, rows []keyRow) {
	tb.Helper()
	type entry struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]entry{}
	var off int64
	for _, r := range rows {
		n := int64(2)
		for _, d := range r.Shape {
			n *= d
		}
		shape := r.Shape
		if shape == nil {
			shape = []int64{}
		}
		hdr[r.Name] = entry{"F16", shape, []int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		tb.Fatal(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	buf := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	buf = append(buf, js...)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(path, int64(len(buf))+off); err != nil {
		tb.Fatal(err)
	}
}

// sdxlWeights opens a header-only full-size SDXL UNet checkpoint.
func sdxlWeights(tb testing.TB) (*nn.Weights, []keyRow) {
	tb.Helper()
	rows := sdxlRows(tb, "unet")
	path := tb.TempDir() + "/sdxl-unet-header.safetensors"
	writeHeaderOnly(tb, path, rows)
	return nntest.OpenWeights(tb, path), rows
}

// params lists every non-nil parameter of a module tree (test-side walk,
// independent of nn's binder, to check what the binder did).
func params(module any) []*nn.Param {
	var out []*nn.Param
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch {
		case v.Type() == reflect.TypeOf((*nn.Param)(nil)):
			if !v.IsNil() {
				out = append(out, v.Interface().(*nn.Param))
			}
		case v.Kind() == reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case v.Kind() == reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				if _, ok := v.Type().Field(i).Tag.Lookup("sd"); ok {
					walk(v.Field(i))
				}
			}
		}
	}
	walk(reflect.ValueOf(module))
	return out
}

// tinyConfigJSON is the golden tiny UNet's diffusers config, as a map that
// tests can alter.
func tinyConfigJSON(tb testing.TB) map[string]any {
	tb.Helper()
	var doc struct {
		Config map[string]any `json:"config_diffusers"`
	}
	readJSON(tb, nntest.Golden(tb, "unet-tiny.json"), &doc)
	if doc.Config == nil {
		tb.Fatal("unet-tiny.json has no config_diffusers")
	}
	return doc.Config
}

func readJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
}

func tinyConfig(tb testing.TB) Config {
	tb.Helper()
	data, _ := json.Marshal(tinyConfigJSON(tb))
	c, err := ParseConfig(data)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// tinyModel opens the golden tiny checkpoint (plus extra files) and binds
// the tiny UNet.
func tinyModel(tb testing.TB, extra ...string) (*Model, *nn.Weights) {
	tb.Helper()
	w := nntest.OpenWeights(tb, append([]string{nntest.Golden(tb, "unet-tiny.safetensors")}, extra...)...)
	m, err := New(tinyConfig(tb))
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		tb.Fatal(err)
	}
	return m, w
}
