package nntest

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/pixery/pixery/engine/safetensors"
)

// TestWriteHeaderOnly reads a header-only file back through the real
// parser: names, dtypes, shapes, offsets in row order, metadata, the full
// length with a data section that reads as zeros and takes (almost) no disk.
func TestWriteHeaderOnly(t *testing.T) {
	rows := []Row{
		{Name: "big.weight", Shape: []int64{4096, 4096}},
		{Name: "ids", Shape: []int64{1, 257}, DType: "I64"},
		{Name: "scale", DType: "F32"}, // a scalar
		{Name: "bias", Shape: []int64{3}, DType: "F16", Component: "ignored"},
	}
	path := filepath.Join(t.TempDir(), "sub", "model.safetensors")
	WriteHeaderOnly(t, path, rows, map[string]string{"format": "pt"})
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != len(rows) || f.UnusedBytes != 0 || f.Metadata["format"] != "pt" {
		t.Fatalf("%d tensors, %d unused bytes, metadata %v", f.Len(), f.UnusedBytes, f.Metadata)
	}
	wantDType := []safetensors.DType{safetensors.F16, safetensors.I64, safetensors.F32, safetensors.F16}
	wantLen := []int64{2 * 4096 * 4096, 8 * 257, 4, 2 * 3}
	off := f.DataOffset()
	for i, r := range rows {
		tt, ok := f.Tensor(r.Name)
		if !ok || tt.DType != wantDType[i] || !slices.Equal(tt.Shape, r.Shape) || tt.Offset != off || tt.Length != wantLen[i] {
			t.Errorf("%s: %+v (found %v), want %s %v at %d, %d bytes", r.Name, tt, ok, wantDType[i], r.Shape, off, wantLen[i])
		}
		off += wantLen[i]
	}
	if f.Size != off {
		t.Errorf("file size %d, want %d", f.Size, off)
	}
	ids, err := f.ReadInt64("ids")
	if err != nil || len(ids) != 257 || slices.ContainsFunc(ids, func(v int64) bool { return v != 0 }) {
		t.Errorf("ids read %d values (%v), want 257 zeros", len(ids), err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Blocks*512 > 1<<20 {
		t.Errorf("a 32 MiB header-only file takes %d bytes of disk, want a hole", sys.Blocks*512)
	}
}

// TestSDXLKeys checks the key list against the counts of architecture.md
// §0 and the filtering by component.
func TestSDXLKeys(t *testing.T) {
	all := SDXLKeys(t)
	count := map[string]int{}
	for _, r := range all {
		count[r.Component]++
	}
	want := map[string]int{"unet": 1680, "vae": 248, "clip_l": 197, "clip_g": 390}
	if len(all) != 2515 || len(count) != len(want) {
		t.Fatalf("%d rows by component %v, want 2515 by %v", len(all), count, want)
	}
	for c, n := range want {
		if count[c] != n {
			t.Errorf("%s: %d rows, want %d", c, count[c], n)
		}
	}
	clip := SDXLKeys(t, "clip_l", "clip_g")
	if len(clip) != 197+390 || clip[0].Component != "clip_l" {
		t.Errorf("clip_l and clip_g: %d rows, first %+v", len(clip), clip[0])
	}
	for _, r := range all {
		if r.Name == "conditioner.embedders.1.model.logit_scale" && (r.Shape == nil || len(r.Shape) != 0) {
			t.Errorf("the scalar logit_scale reads as shape %#v, want []int64{}", r.Shape)
		}
	}
	if r := all[0]; r.Name != "model.diffusion_model.time_embed.0.weight" || !slices.Equal(r.Shape, []int64{1280, 320}) {
		t.Errorf("first row %+v", r)
	}
}
