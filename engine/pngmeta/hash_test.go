package pngmeta

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestHasher(t *testing.T) {
	// A real checkpoint: the golden tiny SDXL file.
	const ckpt = "../../testdata/golden/pipeline/sdxl-tiny.safetensors"
	data, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	whole := sha256.Sum256(data)
	n := binary.LittleEndian.Uint64(data[:8])
	body := sha256.Sum256(data[8+n:])

	h := NewHasher()
	var wg sync.WaitGroup
	got := make([]string, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = h.AutoV2(ckpt)
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g != hex.EncodeToString(whole[:])[:10] {
			t.Fatalf("AutoV2 = %q, want %q", g, hex.EncodeToString(whole[:])[:10])
		}
	}
	if h.reads != 1 {
		t.Errorf("4 concurrent calls read the file %d times, want 1", h.reads)
	}
	if v3, err := h.AutoV3(ckpt); err != nil || v3 != hex.EncodeToString(body[:])[:12] {
		t.Errorf("AutoV3 = %q, %v; want %q", v3, err, hex.EncodeToString(body[:])[:12])
	}
	t.Logf("sdxl-tiny.safetensors: AutoV2 %s, AutoV3 %s", got[0], hex.EncodeToString(body[:])[:12])

	// A changed file (same path, new mtime and size) is hashed again.
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	os.WriteFile(p, []byte("first"), 0o644)
	a, _ := h.SHA256(p)
	reads := h.reads
	if b, _ := h.SHA256(p); b != a || h.reads != reads {
		t.Errorf("cached call read the file again")
	}
	os.WriteFile(p, []byte("second!"), 0o644)
	os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	b, _ := h.SHA256(p)
	if want := sha256.Sum256([]byte("second!")); b != hex.EncodeToString(want[:]) {
		t.Errorf("after change: %s", b)
	}

	for _, bad := range []string{filepath.Join(dir, "missing"), dir} {
		if _, err := h.AutoV2(bad); err == nil {
			t.Errorf("AutoV2(%s) succeeded", bad)
		}
	}
	os.WriteFile(p, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}, 0o644)
	if _, err := h.AutoV3(p); err == nil {
		t.Error("AutoV3 of a file whose header length exceeds it succeeded")
	}
}
