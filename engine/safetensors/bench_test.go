package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkParseHeaderUNetTiny parses the 840-tensor header of the golden
// tiny UNet from memory (SetBytes counts the header bytes).
func BenchmarkParseHeaderUNetTiny(b *testing.B) {
	raw, err := os.ReadFile(golden("unet-tiny.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(raw)
	b.SetBytes(int64(binary.LittleEndian.Uint64(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(r, int64(len(raw))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenUNetTiny includes opening the file and resolving its path.
func BenchmarkOpenUNetTiny(b *testing.B) {
	p := golden("unet-tiny.safetensors")
	for b.Loop() {
		if _, err := Open(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadFloat32F16 reads and widens a 16 MiB F16 tensor (SetBytes
// counts the bytes on disk, which the page cache holds after the first run).
func BenchmarkReadFloat32F16(b *testing.B) {
	p := filepath.Join(b.TempDir(), "f16.safetensors")
	data := make([]byte, 16<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := WriteFile(p, []Named{{Name: "w", DType: F16, Shape: []int64{int64(len(data) / 2)}, Data: data}}, nil); err != nil {
		b.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := f.ReadFloat32("w"); err != nil {
			b.Fatal(err)
		}
	}
}

// sdxlHeaderImage builds, in memory, the header of a full-size F16 SDXL
// checkpoint from the 2,515 rows of testdata/sdxl/checkpoint-keys.tsv, and
// returns a file image whose data section reads as zeros.
func sdxlHeaderImage(tb testing.TB) (zeroTail, int) {
	fh, err := os.Open("../../testdata/sdxl/checkpoint-keys.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	var entries []entry
	var pos int64
	sc := bufio.NewScanner(fh)
	sc.Scan() // column names
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		shape := []int64{}
		if cols[1] != "scalar" {
			for _, d := range strings.Split(cols[1], "x") {
				v, err := strconv.ParseInt(d, 10, 64)
				if err != nil {
					tb.Fatalf("%s: %v", cols[0], err)
				}
				shape = append(shape, v)
			}
		}
		n, err := byteLength(F16, shape)
		if err != nil {
			tb.Fatal(err)
		}
		entries = append(entries, entry{cols[0], F16, shape, pos, pos + n})
		pos += n
	}
	hdr := marshalHeader(entries, map[string]string{"format": "pt"})
	img := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	img = append(img, hdr...)
	return zeroTail{img, int64(len(img)) + pos}, len(entries)
}

// BenchmarkParseHeaderSDXL parses a header the size of a real SDXL
// checkpoint's (2,515 tensors; SetBytes counts the header bytes).
func BenchmarkParseHeaderSDXL(b *testing.B) {
	img, _ := sdxlHeaderImage(b)
	b.SetBytes(int64(len(img.data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(img, img.size); err != nil {
			b.Fatal(err)
		}
	}
}
