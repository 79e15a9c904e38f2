package nntest

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Row is one tensor of a header-only checkpoint (WriteHeaderOnly) or of
// the SDXL key list (SDXLKeys).
type Row struct {
	Name  string
	Shape []int64 // empty (or nil) for a scalar
	// DType is the safetensors dtype; F16 when empty.
	DType string
	// Component is, for a row of SDXLKeys, the part of SDXL the tensor
	// belongs to: unet, vae, clip_l or clip_g. WriteHeaderOnly ignores it.
	Component string
}

// dtypeSize is the byte size of one element of the dtypes tests write.
var dtypeSize = map[string]int64{"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

// WriteHeaderOnly writes a safetensors file at path (creating its folder)
// whose header lists the rows, in order, and meta as __metadata__ when not
// nil, and whose data section is a hole: the file has its full length but
// no disk blocks, so a test can bind a full-size checkpoint (6.9 GB for
// SDXL) at no cost. Every tensor reads as zeros.
func WriteHeaderOnly(tb testing.TB, path string, rows []Row, meta map[string]string) {
	tb.Helper()
	type entry struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{}
	if meta != nil {
		hdr["__metadata__"] = meta
	}
	var off int64
	for _, r := range rows {
		dt := r.DType
		if dt == "" {
			dt = "F16"
		}
		n, ok := dtypeSize[dt]
		if !ok {
			tb.Fatalf("header-only %s: %s: dtype %q has no size here", path, r.Name, dt)
		}
		for _, d := range r.Shape {
			n *= d
		}
		shape := r.Shape
		if shape == nil {
			shape = []int64{} // a scalar; JSON null is not a shape
		}
		hdr[r.Name] = entry{dt, shape, []int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		tb.Fatal(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	buf := append(binary.LittleEndian.AppendUint64(nil, uint64(len(js))), js...)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(path, int64(len(buf))+off); err != nil {
		tb.Fatal(err)
	}
}

// SDXLKeys reads testdata/sdxl/checkpoint-keys.tsv, the 2,515 tensors of
// sd_xl_base_1.0.safetensors with their shapes, in file order: those of
// the given components (unet, vae, clip_l, clip_g), or all without any.
func SDXLKeys(tb testing.TB, components ...string) []Row {
	tb.Helper()
	f, err := os.Open(filepath.Join(Root(tb), "testdata", "sdxl", "checkpoint-keys.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var rows []Row
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		cols := strings.Split(sc.Text(), "\t")
		if line == 1 { // column names
			continue
		}
		if len(cols) < 3 {
			tb.Fatalf("checkpoint-keys.tsv:%d: %d columns, want 3", line, len(cols))
		}
		if len(components) > 0 && !slices.Contains(components, cols[2]) {
			continue
		}
		r := Row{Name: cols[0], Shape: []int64{}, Component: cols[2]}
		if cols[1] != "scalar" {
			for _, d := range strings.Split(cols[1], "x") {
				n, err := strconv.ParseInt(d, 10, 64)
				if err != nil {
					tb.Fatalf("checkpoint-keys.tsv:%d: shape %q: %v", line, cols[1], err)
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
