package download

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDownload256MB measures a complete download from a local server:
// HTTP over loopback, SHA-256 of every byte, writing, fsync and rename.
func BenchmarkDownload256MB(b *testing.B) {
	const size = 256 << 20
	content, sum := payload(size, 42)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"bench"`) }))
	defer srv.Close()
	c := &Client{HuggingFaceURL: srv.URL}
	dir := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dest := filepath.Join(dir, "m.safetensors")
		res, err := c.Download(context.Background(), Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum})
		if err != nil || res.Size != size {
			b.Fatalf("res %+v, err %v", res, err)
		}
		b.StopTimer()
		os.Remove(dest)
		b.StartTimer()
	}
}

// BenchmarkLoopbackRead256MB is the ceiling for the one above: the same
// transfer read into io.Discard, with no hashing or disk.
func BenchmarkLoopbackRead256MB(b *testing.B) {
	const size = 256 << 20
	content, _ := payload(size, 42)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"bench"`) }))
	defer srv.Close()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.Get(srv.URL + "/x")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("%d bytes, %v", n, err)
		}
	}
}
