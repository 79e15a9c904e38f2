package pngmeta

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Hasher computes A1111's model and LoRA hashes, remembering each result
// under the file's path, size and modification time so that a checkpoint of
// several gigabytes is read once. It is safe for concurrent use; two callers
// asking for the same file share one read.
type Hasher struct {
	mu       sync.Mutex
	cache    map[hashKey]string
	inflight map[hashKey]*hashCall
	// reads counts files actually read (for tests).
	reads int
}

type hashKey struct {
	path  string
	size  int64
	mtime int64
	kind  byte // 'f' whole file, 's' safetensors data (addnet)
}

type hashCall struct {
	done chan struct{}
	sum  string
	err  error
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher {
	return &Hasher{cache: map[hashKey]string{}, inflight: map[hashKey]*hashCall{}}
}

var defaultHasher = NewHasher()

// ModelHash returns A1111's AutoV2 hash of a checkpoint: the first 10 hex
// digits of the file's SHA-256. Results are cached process-wide.
func ModelHash(path string) (string, error) { return defaultHasher.AutoV2(path) }

// LoRAHash returns the short hash A1111 writes in "Lora hashes" (Civitai's
// AutoV3): the first 12 hex digits of the SHA-256 of a safetensors file's
// data, the bytes after its header. Results are cached process-wide.
func LoRAHash(path string) (string, error) { return defaultHasher.AutoV3(path) }

// SHA256 returns the lower-case hex SHA-256 of the whole file.
func (h *Hasher) SHA256(path string) (string, error) { return h.sum(path, 'f') }

// AutoV2 is the first 10 hex digits of SHA256.
func (h *Hasher) AutoV2(path string) (string, error) {
	s, err := h.SHA256(path)
	if err != nil {
		return "", err
	}
	return s[:10], nil
}

// AutoV3 is the first 12 hex digits of the SHA-256 of a safetensors file's
// data section (kohya-ss's "addnet" hash, which A1111 uses for LoRAs).
func (h *Hasher) AutoV3(path string) (string, error) {
	s, err := h.sum(path, 's')
	if err != nil {
		return "", err
	}
	return s[:12], nil
}

func (h *Hasher) sum(path string, kind byte) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("hash %s: not a regular file", path)
	}
	key := hashKey{abs, st.Size(), st.ModTime().UnixNano(), kind}
	h.mu.Lock()
	if s, ok := h.cache[key]; ok {
		h.mu.Unlock()
		return s, nil
	}
	if c, ok := h.inflight[key]; ok {
		h.mu.Unlock()
		<-c.done
		return c.sum, c.err
	}
	c := &hashCall{done: make(chan struct{})}
	h.inflight[key] = c
	h.reads++
	h.mu.Unlock()

	c.sum, c.err = hashFile(abs, kind)
	h.mu.Lock()
	delete(h.inflight, key)
	if c.err == nil {
		h.cache[key] = c.sum
	}
	h.mu.Unlock()
	close(c.done)
	return c.sum, c.err
}

func hashFile(path string, kind byte) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	if kind == 's' {
		var n [8]byte
		if _, err := io.ReadFull(f, n[:]); err != nil {
			return "", fmt.Errorf("hash %s: not a safetensors file: %w", path, err)
		}
		hl := binary.LittleEndian.Uint64(n[:])
		st, err := f.Stat()
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
		if hl > uint64(st.Size())-8 {
			return "", fmt.Errorf("hash %s: safetensors header length %d exceeds the file", path, hl)
		}
		if _, err := f.Seek(int64(8+hl), io.SeekStart); err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
	}
	d := sha256.New()
	if _, err := io.CopyBuffer(d, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(d.Sum(nil)), nil
}
