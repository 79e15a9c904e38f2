package setup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/download"
)

const testVersion = "1.24.3"

// entry is one member of a test archive.
type entry struct {
	name string
	typ  byte // tar.TypeReg when zero
	body []byte
	link string
}

// payload returns n deterministic pseudo-random bytes.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// makeTgz writes entries as a gzip-compressed tar file.
func makeTgz(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o755, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		switch e.typ {
		case 0:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ortFiles are the libraries of the fake release, as the real archive
// names them, with their contents.
type ortFiles map[string][]byte

// ortEntries lays out a fake release archive like the real one: the
// library with its symbolic-link chain, the providers, and things setup
// must leave alone (headers, pkgconfig, cmake files, licence).
func ortEntries(top string, seed uint64) ([]entry, ortFiles) {
	files := ortFiles{
		"libonnxruntime.so." + testVersion:     payload(200<<10+17, seed),
		"libonnxruntime_providers_shared.so":   payload(9<<10+3, seed+1),
		"libonnxruntime_providers_cuda.so":     payload(700<<10+5, seed+2),
		"libonnxruntime_providers_tensorrt.so": payload(50<<10+1, seed+3),
	}
	lib := top + "/lib/"
	return []entry{
		{name: top + "/", typ: tar.TypeDir},
		{name: top + "/LICENSE", body: []byte("MIT License\n")},
		{name: top + "/include/", typ: tar.TypeDir},
		{name: top + "/include/onnxruntime_c_api.h", body: []byte("/* header */\n")},
		{name: lib, typ: tar.TypeDir},
		{name: lib + "libonnxruntime.so", typ: tar.TypeSymlink, link: "libonnxruntime.so.1"},
		{name: lib + "libonnxruntime.so.1", typ: tar.TypeSymlink, link: "libonnxruntime.so." + testVersion},
		{name: lib + "libonnxruntime.so." + testVersion, body: files["libonnxruntime.so."+testVersion]},
		{name: lib + "libonnxruntime_providers_cuda.so", body: files["libonnxruntime_providers_cuda.so"]},
		{name: lib + "libonnxruntime_providers_shared.so", body: files["libonnxruntime_providers_shared.so"]},
		{name: lib + "libonnxruntime_providers_tensorrt.so", body: files["libonnxruntime_providers_tensorrt.so"]},
		{name: lib + "pkgconfig/", typ: tar.TypeDir},
		{name: lib + "pkgconfig/libonnxruntime.pc", body: []byte("Name: onnxruntime\n")},
		{name: lib + "cmake/onnxruntime/onnxruntimeConfig.cmake", body: []byte("# cmake\n")},
	}, files
}

const top12 = "onnxruntime-linux-x64-gpu-" + testVersion

// archiveServer serves archives by request path and counts requests.
type archiveServer struct {
	*httptest.Server
	mu       sync.Mutex
	archives map[string][]byte
	requests map[string]int
	// drop, when > 0, makes the next answer send only that many bytes of a
	// full-length response and then close the connection.
	drop int
}

func newArchiveServer(t testing.TB) *archiveServer {
	s := &archiveServer{archives: map[string][]byte{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		content, ok := s.archives[r.URL.Path]
		drop := s.drop
		s.drop = 0
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if drop > 0 {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/gzip\r\n\r\n", len(content))
			buf.Write(content[:drop])
			buf.Flush()
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *archiveServer) put(path string, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.archives[path] = content
}

func (s *archiveServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

func (s *archiveServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.requests {
		n += c
	}
	return n
}

// archivePath is where the test server keeps the CUDA 12 archive.
const archivePath = "/v" + testVersion + "/onnxruntime-linux-x64-gpu-" + testVersion + ".tgz"

// libOptions installs libraries only, from srv, into a fresh folder.
func libOptions(t *testing.T, srv *archiveServer, log *bytes.Buffer) Options {
	return Options{
		LibDir:     filepath.Join(t.TempDir(), "lib"),
		Version:    testVersion,
		ArchiveURL: srv.URL + "/v{version}/{archive}",
		SkipModels: true,
		RetryDelay: time.Millisecond,
		Log:        log,
	}
}

// dirNames lists a folder's entries, hidden ones included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// fullDisk is a file on a disk with room bytes left.
type fullDisk struct {
	f    *os.File
	room *int64
}

func (d fullDisk) Write(p []byte) (int, error) {
	if int64(len(p)) <= *d.room {
		*d.room -= int64(len(p))
		return d.f.Write(p)
	}
	n, _ := d.f.Write(p[:*d.room])
	*d.room = 0
	return n, &fs.PathError{Op: "write", Path: d.f.Name(), Err: syscall.ENOSPC}
}
func (d fullDisk) Sync() error  { return d.f.Sync() }
func (d fullDisk) Close() error { return d.f.Close() }

// diskWithRoom returns an OpenFile whose files share room bytes of space.
func diskWithRoom(room int64) func(string, int, fs.FileMode) (download.File, error) {
	left := room
	return func(name string, flag int, perm fs.FileMode) (download.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return fullDisk{f: f, room: &left}, nil
	}
}
