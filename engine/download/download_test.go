package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// payload returns n deterministic pseudo-random bytes and their SHA-256.
func payload(n int, seed uint64) ([]byte, string) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// recorder keeps the headers of every request a test server saw.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) add(req *http.Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	return len(r.reqs)
}

func (r *recorder) all() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

// serve answers like a real file server: Range, If-Range, 416, ETag.
func serve(w http.ResponseWriter, req *http.Request, content []byte, etag string) {
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(content))
}

// dropAfter writes the headers of a full 200 answer and the first n bytes,
// then closes the connection, as a failing proxy or network does.
func dropAfter(t *testing.T, w http.ResponseWriter, content []byte, n int, etag string) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: %s\r\nContent-Type: application/octet-stream\r\n\r\n", len(content), etag)
	buf.Write(content[:n])
	buf.Flush()
}

func testClient(hfURL, civitaiURL string) *Client {
	return &Client{
		HuggingFaceURL: hfURL, CivitaiURL: civitaiURL,
		RetryDelay: time.Millisecond, StallTimeout: 5 * time.Second,
		ProgressInterval: time.Nanosecond, BufferSize: 64 << 10,
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNoPart(t *testing.T, dest string) {
	t.Helper()
	for _, p := range []string{dest + ".part", dest + ".part.json"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (err %v)", filepath.Base(p), err)
		}
	}
}

func partSize(t *testing.T, dest string) int64 {
	t.Helper()
	st, err := os.Stat(dest + ".part")
	if err != nil {
		t.Fatalf("no .part kept: %v", err)
	}
	return st.Size()
}

func TestHuggingFaceFullDownload(t *testing.T) {
	content, sum := payload(3<<20+123, 1)
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		if r.URL.EscapedPath() != "/some-owner/repo.v1/resolve/main/sub%20dir/model+fp16.safetensors" {
			http.NotFound(w, r)
			return
		}
		serve(w, r, content, `"abc"`)
	}))
	defer srv.Close()

	c := testClient(srv.URL, "https://civitai.invalid")
	c.HFToken, c.CivitaiToken = "hf-secret", "civitai-secret"
	dest := filepath.Join(t.TempDir(), "model.safetensors")
	var reports []Progress
	res, err := c.Download(context.Background(), Request{
		Source: "huggingface:some-owner/repo.v1", File: "sub dir/model+fp16.safetensors", Dest: dest, SHA256: strings.ToUpper(sum),
		Progress: func(p Progress) { reports = append(reports, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(len(content)) || res.SHA256 != sum || res.Resumed != 0 || res.Existed || res.Path != dest {
		t.Errorf("result %+v", res)
	}
	if !bytes.Equal(readFile(t, dest), content) {
		t.Error("file content differs")
	}
	assertNoPart(t, dest)
	reqs := rec.all()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	if got := reqs[0].Header.Get("Authorization"); got != "Bearer hf-secret" {
		t.Errorf("Authorization = %q", got)
	}
	if reqs[0].Header.Get("Range") != "" || reqs[0].Header.Get("Accept-Encoding") != "identity" {
		t.Errorf("headers of a fresh download: %v", reqs[0].Header)
	}
	// Progress: starts at 0, grows, ends at the total.
	if len(reports) < 3 {
		t.Fatalf("only %d progress reports", len(reports))
	}
	last := reports[len(reports)-1]
	if reports[0].Done != 0 || last.Done != int64(len(content)) || last.Total != int64(len(content)) || last.BytesPerSecond <= 0 {
		t.Errorf("first %+v, last %+v", reports[0], last)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Done < reports[i-1].Done {
			t.Errorf("progress went back: %+v after %+v", reports[i], reports[i-1])
		}
	}
	t.Logf("%d progress reports, last %+v", len(reports), last)
}

// Civitai answers with a redirect to a CDN on another host, which must not
// receive the token.
func TestCivitaiRedirectDropsAuthorization(t *testing.T) {
	content, sum := payload(1<<20, 2)
	var cdnRec, apiRec recorder
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cdnRec.add(r)
		if r.URL.Query().Get("sig") != "xyz" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		serve(w, r, content, `"cdn"`)
	}))
	defer cdn.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiRec.add(r)
		if r.URL.Path != "/api/download/models/290640" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, cdn.URL+"/files/pony.safetensors?sig=xyz", http.StatusTemporaryRedirect)
	}))
	defer api.Close()

	c := testClient("https://hf.invalid", api.URL)
	c.HFToken, c.CivitaiToken = "hf-secret", "civitai-secret"
	dest := filepath.Join(t.TempDir(), "pony.safetensors")
	res, err := c.Download(context.Background(), Request{Source: "civitai:290640", Dest: dest, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != sum || !bytes.Equal(readFile(t, dest), content) {
		t.Error("wrong content")
	}
	a, d := apiRec.all(), cdnRec.all()
	if len(a) != 1 || len(d) != 1 {
		t.Fatalf("%d API and %d CDN requests", len(a), len(d))
	}
	if got := a[0].Header.Get("Authorization"); got != "Bearer civitai-secret" {
		t.Errorf("API got Authorization %q", got)
	}
	if got := d[0].Header.Get("Authorization"); got != "" {
		t.Errorf("CDN got Authorization %q", got)
	}
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	content, sum := payload(2<<20+77, 3)
	const cut = 700_001
	for _, retries := range []int{0, 2} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			var rec recorder
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if rec.add(r) == 1 {
					dropAfter(t, w, content, cut, `"v1"`)
					return
				}
				serve(w, r, content, `"v1"`)
			}))
			defer srv.Close()
			c := testClient(srv.URL, "")
			c.Retries = retries
			dest := filepath.Join(t.TempDir(), "m.safetensors")
			req := Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum}

			res, err := c.Download(context.Background(), req)
			if retries == 0 {
				if err == nil || !strings.Contains(err.Error(), "broke after 700001 bytes") {
					t.Fatalf("err = %v", err)
				}
				t.Logf("first call: %v", err)
				if n := partSize(t, dest); n != cut {
					t.Fatalf(".part has %d bytes, want %d", n, cut)
				}
				if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
					t.Fatal("a partial download has the final name")
				}
				res, err = c.Download(context.Background(), req)
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Resumed != cut || res.SHA256 != sum || res.Size != int64(len(content)) {
				t.Errorf("result %+v", res)
			}
			if !bytes.Equal(readFile(t, dest), content) {
				t.Error("resumed file differs")
			}
			assertNoPart(t, dest)
			reqs := rec.all()
			if len(reqs) != 2 {
				t.Fatalf("%d requests", len(reqs))
			}
			if got := reqs[1].Header.Get("Range"); got != fmt.Sprintf("bytes=%d-", cut) {
				t.Errorf("Range = %q", got)
			}
			if got := reqs[1].Header.Get("If-Range"); got != `"v1"` {
				t.Errorf("If-Range = %q", got)
			}
		})
	}
}

// Each case starts from a .part file and a server that answers a Range
// request in some way; the result must always be exactly the file.
func TestResumeAnswers(t *testing.T) {
	content, sum := payload(1<<20+5, 4)
	older, _ := payload(len(content), 5)
	cases := []struct {
		name        string
		part        []byte
		meta        string
		handler     func(w http.ResponseWriter, r *http.Request)
		wantResumed int64
		wantStatus  []int // status of each request
	}{
		{name: "server ignores Range", part: []byte("garbage that is not the file's start"),
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(content)))
				w.Write(content)
			}, wantStatus: []int{200}},
		{name: "206 continues", part: content[:300_000],
			handler:     func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) },
			wantResumed: 300_000, wantStatus: []int{206}},
		{name: "part already complete gives 416", part: content,
			handler:     func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) },
			wantResumed: int64(len(content)), wantStatus: []int{416}},
		{name: "part longer than the file gives 416", part: append(append([]byte{}, content...), 1, 2, 3),
			handler:    func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) },
			wantStatus: []int{416, 200}},
		{name: "206 from the wrong offset", part: content[:1000],
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") == "" {
					serve(w, r, content, `"e"`)
					return
				}
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(content)-1, len(content)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(content)
			}, wantStatus: []int{206, 200}},
		{name: "file changed since the part was written", part: older[:500_000], meta: `{"url":"URL","etag":"\"old\""}`,
			handler:    func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"new"`) },
			wantStatus: []int{200}},
		{name: "part from another source", part: older[:500_000], meta: `{"url":"https://elsewhere.invalid/x"}`,
			handler:    func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) },
			wantStatus: []int{200}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			var statusMu sync.Mutex
			var statuses []int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.add(r)
				tc.handler(&statusWriter{ResponseWriter: w, record: func(code int) {
					statusMu.Lock()
					statuses = append(statuses, code)
					statusMu.Unlock()
				}}, r)
			}))
			defer srv.Close()
			c := testClient(srv.URL, "")
			dest := filepath.Join(t.TempDir(), "m.safetensors")
			if err := os.WriteFile(dest+".part", tc.part, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.meta != "" {
				u, _ := c.URL("huggingface:o/r", "m.safetensors")
				if err := os.WriteFile(dest+".part.json", []byte(strings.Replace(tc.meta, "URL", u, 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res, err := c.Download(context.Background(), Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readFile(t, dest), content) || res.SHA256 != sum {
				t.Fatal("wrong content")
			}
			if res.Resumed != tc.wantResumed {
				t.Errorf("resumed %d, want %d", res.Resumed, tc.wantResumed)
			}
			statusMu.Lock()
			got := fmt.Sprint(statuses)
			statusMu.Unlock()
			if got != fmt.Sprint(tc.wantStatus) {
				t.Errorf("statuses %s, want %v", got, tc.wantStatus)
			}
			assertNoPart(t, dest)
		})
	}
}

// statusWriter records the status of an answer before any of it is sent,
// so the record is complete by the time the client has the whole body.
type statusWriter struct {
	http.ResponseWriter
	record func(int)
	done   bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.done {
		w.done = true
		w.record(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func TestWrongChecksum(t *testing.T) {
	content, sum := payload(400_000, 6)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) }))
	defer srv.Close()
	c := testClient(srv.URL, "")
	dest := filepath.Join(t.TempDir(), "m.safetensors")
	want := strings.Repeat("0123456789abcdef", 4)
	_, err := c.Download(context.Background(), Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: want})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v", err)
	}
	t.Logf("%v", err)
	assertNoPart(t, dest)
	if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a file with the wrong checksum got the final name")
	}
}

func TestExistingDestination(t *testing.T) {
	content, sum := payload(10_000, 7)
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rec.add(r); serve(w, r, content, `"e"`) }))
	defer srv.Close()
	c := testClient(srv.URL, "")
	dest := filepath.Join(t.TempDir(), "m.safetensors")
	if err := os.WriteFile(dest, content, 0o644); err != nil {
		t.Fatal(err)
	}
	req := Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum}
	res, err := c.Download(context.Background(), req)
	if err != nil || !res.Existed || res.SHA256 != sum || res.Size != int64(len(content)) {
		t.Fatalf("res %+v, err %v", res, err)
	}
	if err := os.WriteFile(dest, content[1:], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Download(context.Background(), req)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(dest); err != nil {
		t.Error("an existing file was removed")
	}
	if n := len(rec.all()); n != 0 {
		t.Errorf("%d requests for a file that exists", n)
	}
}

func TestHTTPErrors(t *testing.T) {
	cases := []struct {
		name       string
		source     string
		hf, cv     string // tokens
		status     int
		contentTyp string
		wantIs     error
		want       []string
	}{
		{name: "hf 401 without token", source: "huggingface:o/gated", status: 401, wantIs: ErrAuth,
			want: []string{"401 Unauthorized", "needs an access token", "set HF_TOKEN"}},
		{name: "hf 403 with token", source: "huggingface:o/gated", hf: "tok-123", status: 403, wantIs: ErrAuth,
			want: []string{"403 Forbidden", "HF_TOKEN", "accept its license"}},
		{name: "hf 401 with token", source: "huggingface:o/gated", hf: "tok-123", status: 401, wantIs: ErrAuth,
			want: []string{"rejected the token from HF_TOKEN"}},
		{name: "civitai 401 without token", source: "civitai:12345", status: 401, wantIs: ErrAuth,
			want: []string{"set CIVITAI_TOKEN"}},
		{name: "404", source: "huggingface:o/r", status: 404, wantIs: ErrNotFound, want: []string{"404", "/o/r/resolve/main/m.safetensors"}},
		{name: "login page", source: "civitai:12345", status: 200, contentTyp: "text/html; charset=utf-8",
			want: []string{"web page instead of the file", "set CIVITAI_TOKEN"}},
		{name: "teapot", source: "huggingface:o/r", status: 418, want: []string{"418"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.contentTyp != "" {
					w.Header().Set("Content-Type", tc.contentTyp)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, "<html>please log in</html>")
			}))
			defer srv.Close()
			c := testClient(srv.URL, "https://civitai.invalid")
			if strings.HasPrefix(tc.source, "civitai:") {
				c = testClient("https://hf.invalid", srv.URL+"/")
			}
			c.HFToken, c.CivitaiToken, c.Retries = tc.hf, tc.cv, 3
			dest := filepath.Join(t.TempDir(), "m.safetensors")
			_, err := c.Download(context.Background(), Request{Source: tc.source, File: "m.safetensors", Dest: dest})
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("%v", err)
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error does not wrap %v", tc.wantIs)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			if strings.Contains(err.Error(), "tok-123") {
				t.Error("error shows the token")
			}
			if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Error("destination created")
			}
		})
	}
}

func TestRetryOnServerError(t *testing.T) {
	content, sum := payload(50_000, 8)
	for _, retries := range []int{0, 1} {
		var rec recorder
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rec.add(r) == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			serve(w, r, content, `"e"`)
		}))
		c := testClient(srv.URL, "")
		c.Retries = retries
		dest := filepath.Join(t.TempDir(), "m.safetensors")
		res, err := c.Download(context.Background(), Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum})
		srv.Close()
		var he *HTTPError
		switch {
		case retries == 0 && (!errors.As(err, &he) || he.StatusCode != 503):
			t.Errorf("retries 0: err = %v", err)
		case retries == 1 && (err != nil || res.SHA256 != sum):
			t.Errorf("retries 1: res %+v, err %v", res, err)
		}
	}
}

// diskFullFile fails with ENOSPC once limit bytes have been written, like a
// file on a disk that fills up.
type diskFullFile struct {
	*os.File
	left int
}

func (f *diskFullFile) Write(b []byte) (int, error) {
	if len(b) > f.left {
		n, _ := f.File.Write(b[:f.left])
		f.left = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.left -= len(b)
	return f.File.Write(b)
}

func TestDiskFull(t *testing.T) {
	content, sum := payload(1<<20, 9)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) }))
	defer srv.Close()
	c := testClient(srv.URL, "")
	c.Retries = 3 // a full disk is not retried
	const room = 200_000
	c.OpenFile = func(name string, flag int, perm fs.FileMode) (File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &diskFullFile{File: f, left: room}, nil
	}
	dest := filepath.Join(t.TempDir(), "m.safetensors")
	req := Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum}
	_, err := c.Download(context.Background(), req)
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "free some space") {
		t.Fatalf("err = %v", err)
	}
	t.Logf("%v", err)
	if n := partSize(t, dest); n != room {
		t.Errorf(".part has %d bytes, want the %d that fitted", n, room)
	}
	// Space freed: the next call resumes.
	c.OpenFile = nil
	res, err := c.Download(context.Background(), req)
	if err != nil || res.Resumed != room || res.SHA256 != sum {
		t.Fatalf("after freeing space: %+v, %v", res, err)
	}
}

func TestCancel(t *testing.T) {
	content, sum := payload(1<<20, 10)
	release := make(chan struct{})
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.add(r) > 1 {
			serve(w, r, content, `"e"`)
			return
		}
		// Send a first part, then hang until the test ends.
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.Header().Set("ETag", `"e"`)
		w.Write(content[:100_000])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := testClient(srv.URL, "")
	c.Retries = 3
	dest := filepath.Join(t.TempDir(), "m.safetensors")
	ctx, cancel := context.WithCancel(context.Background())
	req := Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum,
		Progress: func(p Progress) {
			if p.Done >= 100_000 {
				cancel()
			}
		}}
	var busyErr error
	req.Progress = func(p Progress) {
		if p.Done >= 100_000 && busyErr == nil {
			// A second download of the same file while this one runs.
			_, busyErr = c.Download(context.Background(), Request{Source: req.Source, File: req.File, Dest: dest})
			cancel()
		}
	}
	start := time.Now()
	_, err := c.Download(ctx, req)
	if !errors.Is(busyErr, ErrBusy) {
		t.Errorf("concurrent download of the same file: err = %v", busyErr)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "100000 bytes kept in m.safetensors.part for resuming") {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > time.Minute { // a hang guard, not a speed test
		t.Errorf("cancellation took %v", el)
	}
	if n := partSize(t, dest); n != 100_000 {
		t.Errorf(".part has %d bytes", n)
	}
	req.Progress = nil
	res, err := c.Download(context.Background(), req)
	if err != nil || res.Resumed != 100_000 || !bytes.Equal(readFile(t, dest), content) {
		t.Fatalf("resume after cancel: %+v, %v", res, err)
	}
}

func TestStalledConnectionIsRetried(t *testing.T) {
	content, sum := payload(300_000, 11)
	release := make(chan struct{})
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.add(r) > 1 {
			serve(w, r, content, `"e"`)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.Header().Set("ETag", `"e"`)
		w.Write(content[:1234])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := testClient(srv.URL, "")
	c.Retries, c.StallTimeout = 1, 200*time.Millisecond
	dest := filepath.Join(t.TempDir(), "m.safetensors")
	res, err := c.Download(context.Background(), Request{Source: "huggingface:o/r", File: "m.safetensors", Dest: dest, SHA256: sum})
	if err != nil || res.Resumed != 1234 || res.SHA256 != sum {
		t.Fatalf("res %+v, err %v", res, err)
	}
}

// A plain https source; a redirect from it to plain http is refused.
func TestHTTPSSourceAndDowngrade(t *testing.T) {
	content, sum := payload(20_000, 12)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, content, `"e"`) }))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Redirect(w, r, plain.URL+"/f", http.StatusFound)
			return
		}
		serve(w, r, content, `"e"`)
	}))
	defer tlsSrv.Close()
	c := testClient("", "")
	c.HTTP = tlsSrv.Client()
	dir := t.TempDir()
	res, err := c.Download(context.Background(), Request{Source: tlsSrv.URL + "/f.safetensors?x=1", Dest: filepath.Join(dir, "a.safetensors"), SHA256: sum})
	if err != nil || res.SHA256 != sum {
		t.Fatalf("res %+v, err %v", res, err)
	}
	_, err = c.Download(context.Background(), Request{Source: tlsSrv.URL + "/down", Dest: filepath.Join(dir, "b.safetensors")})
	if err == nil || !strings.Contains(err.Error(), "refused redirect from https") {
		t.Fatalf("err = %v", err)
	}
}

func TestURLAndSources(t *testing.T) {
	c := &Client{}
	cases := []struct {
		source, file, want, err string
	}{
		{source: "huggingface:cagliostrolab/animagine-xl-4.0", file: "animagine-xl-4.0.safetensors",
			want: "https://huggingface.co/cagliostrolab/animagine-xl-4.0/resolve/main/animagine-xl-4.0.safetensors"},
		{source: "huggingface:h94/IP-Adapter", file: "sdxl_models/image_encoder/model.safetensors",
			want: "https://huggingface.co/h94/IP-Adapter/resolve/main/sdxl_models/image_encoder/model.safetensors"},
		{source: "civitai:290640", want: "https://civitai.com/api/download/models/290640"},
		{source: "https://example.com/a/b.safetensors?download=true", want: "https://example.com/a/b.safetensors?download=true"},
		{source: "huggingface:o/r", file: "../x", err: "not a file path"},
		{source: "huggingface:o/r", file: "", err: "no file name"},
		{source: "huggingface:o/r/extra", file: "x", err: "huggingface:owner/repo"},
		{source: "huggingface:../r", file: "x", err: "huggingface:owner/repo"},
		{source: "civitai:12a", err: "civitai:<version id>"},
		{source: "ftp://x/y", err: "not a model source"},
		{source: "http://x/y", err: "plain http"},
		{source: "https://user:pw@x/y", err: "carries credentials"},
		{source: "https:///nohost", err: "no host"},
	}
	for _, tc := range cases {
		got, err := c.URL(tc.source, tc.file)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("URL(%q, %q) err = %v, want %q", tc.source, tc.file, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("URL(%q, %q) = %q, %v; want %q", tc.source, tc.file, got, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("error shows credentials: %v", err)
		}
	}
}

func TestTokensGoToTheirHostOnly(t *testing.T) {
	c := &Client{HFToken: "h", CivitaiToken: "c"}
	for _, tc := range []struct{ source, file, token, env string }{
		{"huggingface:o/r", "f", "h", EnvHFToken},
		{"https://huggingface.co/o/r/resolve/main/f", "", "h", EnvHFToken},
		{"civitai:1", "", "c", EnvCivitaiToken},
		{"https://civitai.com/api/download/models/1", "", "c", EnvCivitaiToken},
		{"https://example.com/f", "", "", ""},
		{"https://huggingface.co.evil.example/f", "", "", ""},
	} {
		tg, err := c.resolve(tc.source, tc.file)
		if err != nil || tg.token != tc.token || tg.envVar != tc.env {
			t.Errorf("%s: token %q env %q err %v", tc.source, tg.token, tg.envVar, err)
		}
	}
}

func TestNewClientReadsEnvironment(t *testing.T) {
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "legacy")
	t.Setenv("CIVITAI_TOKEN", "cv")
	c := NewClient()
	if c.HFToken != "legacy" || c.CivitaiToken != "cv" || c.Retries != 3 {
		t.Errorf("%+v", c)
	}
	t.Setenv("HF_TOKEN", "new")
	if c := NewClient(); c.HFToken != "new" {
		t.Errorf("HF_TOKEN not preferred: %q", c.HFToken)
	}
}

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in               string
		start, end, size int64
		ok               bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 5-9/*", 5, 9, -1, true},
		{"bytes */100", -1, -1, 100, true},
		{"bytes 9-5/100", -1, -1, -1, false},
		{"items 0-1/2", -1, -1, -1, false},
		{"bytes 0-1", -1, -1, -1, false},
		{"bytes a-1/2", -1, -1, -1, false},
	} {
		s, e, n, ok := parseContentRange(tc.in)
		if s != tc.start || e != tc.end || n != tc.size || ok != tc.ok {
			t.Errorf("%q: %d %d %d %v", tc.in, s, e, n, ok)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	c := &Client{}
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Source: "civitai:1"}, "no destination"},
		{Request{Source: "civitai:1", Dest: "x", SHA256: "12"}, "not 64 hex digits"},
		{Request{Source: "nope", Dest: "x"}, "not a model source"},
	} {
		if _, err := c.Download(context.Background(), tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v", tc.req, err)
		}
	}
}
