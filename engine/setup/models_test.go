package setup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/engine/registry"
)

// modelServer plays Hugging Face and Civitai: it serves files by path with
// ranges, counts requests, keeps their Range headers, and can drop a
// connection part-way.
type modelServer struct {
	*httptest.Server
	mu     sync.Mutex
	files  map[string][]byte
	reqs   []string // "path range"
	dropAt map[string]int
}

func newModelServer(t *testing.T) *modelServer {
	s := &modelServer{files: map[string][]byte{}, dropAt: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.URL.Path+" "+r.Header.Get("Range"))
		content, ok := s.files[r.URL.Path]
		drop := s.dropAt[r.URL.Path]
		delete(s.dropAt, r.URL.Path)
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
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"v1\"\r\nContent-Type: application/octet-stream\r\n\r\n", len(content))
			buf.Write(content[:drop])
			buf.Flush()
			return
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *modelServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// testModels is a registry with a Hugging Face model, a Civitai model, one
// with a known digest, and one without a source; the server holds their
// files.
func testModels(t *testing.T, srv *modelServer) (*registry.Registry, map[string][]byte) {
	reg := registry.New()
	content := map[string][]byte{
		"alpha": payload(300<<10+7, 21),
		"beta":  payload(120<<10+1, 22),
		"delta": payload(64<<10+9, 23),
	}
	reg.Add(&registry.Model{ID: "alpha", File: "alpha.safetensors", Source: "huggingface:owner/alpha-xl", Origin: "models/alpha.toml"})
	reg.Add(&registry.Model{ID: "beta", File: "beta.safetensors", Source: "civitai:12345", Origin: "models/beta.toml"})
	reg.Add(&registry.Model{ID: "delta", File: "delta.safetensors", Source: "huggingface:owner/delta", SHA256: sum(content["delta"]), Origin: "models/delta.toml"})
	reg.Add(&registry.Model{ID: "gamma", File: "gamma.safetensors", Origin: "models/gamma.toml"})
	srv.files["/owner/alpha-xl/resolve/main/alpha.safetensors"] = content["alpha"]
	srv.files["/api/download/models/12345"] = content["beta"]
	srv.files["/owner/delta/resolve/main/delta.safetensors"] = content["delta"]
	return reg, content
}

func modelOptions(t *testing.T, srv *modelServer, reg *registry.Registry, log *bytes.Buffer) Options {
	return Options{
		SkipLibs:  true,
		ModelsDir: filepath.Join(t.TempDir(), "models"),
		Registry:  reg,
		Download: &download.Client{HuggingFaceURL: srv.URL, CivitaiURL: srv.URL,
			RetryDelay: time.Millisecond, StallTimeout: 5 * time.Second, ProgressInterval: time.Nanosecond},
		Log: log,
	}
}

func statuses(res *Result) map[string]string {
	out := map[string]string{}
	for _, m := range res.Models {
		out[m.ID] = m.Status
	}
	return out
}

func TestModelsFetchAllThenNothing(t *testing.T) {
	srv := newModelServer(t)
	reg, content := testModels(t, srv)
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	res, err := Run(context.Background(), opt)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	want := map[string]string{"alpha": StatusFetched, "beta": StatusFetched, "delta": StatusFetched, "gamma": StatusNoSource}
	if fmt.Sprint(statuses(res)) != fmt.Sprint(want) || res.Fetched != 3 || res.Skipped != 0 || res.Libraries != nil {
		t.Fatalf("result %+v", res)
	}
	for _, m := range res.Models {
		if m.Status != StatusFetched {
			continue
		}
		got, err := os.ReadFile(m.Path)
		if err != nil || !bytes.Equal(got, content[m.ID]) || m.SHA256 != sum(content[m.ID]) || m.Size != int64(len(content[m.ID])) {
			t.Errorf("%s: %+v, file err %v", m.ID, m, err)
		}
	}
	if !strings.Contains(log.String(), "gamma.safetensors into") || strings.Contains(log.String(), "\r") {
		t.Errorf("log:\n%s", log.String())
	}

	n := len(srv.requests())
	res, err = Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"alpha": StatusPresent, "beta": StatusPresent, "delta": StatusPresent, "gamma": StatusNoSource}
	if fmt.Sprint(statuses(res)) != fmt.Sprint(want) || res.Fetched != 0 || res.Skipped != 3 {
		t.Errorf("re-run result %+v", res)
	}
	if got := len(srv.requests()); got != n {
		t.Errorf("re-run made %d requests", got-n)
	}
}

func TestModelsSelected(t *testing.T) {
	srv := newModelServer(t)
	reg, _ := testModels(t, srv)
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	// By id and by file name; the duplicate is fetched once.
	opt.Models = []string{"beta", "alpha.safetensors", "alpha"}
	res, err := Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(statuses(res)) != fmt.Sprint(map[string]string{"alpha": StatusFetched, "beta": StatusFetched}) {
		t.Errorf("result %+v", res.Models)
	}
	if len(srv.requests()) != 2 {
		t.Errorf("requests %v", srv.requests())
	}
}

func TestModelsUnknownID(t *testing.T) {
	srv := newModelServer(t)
	arch := newArchiveServer(t)
	reg, _ := testModels(t, srv)
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	opt.SkipLibs, opt.LibDir, opt.Version, opt.ArchiveURL = false, t.TempDir(), testVersion, arch.URL+"/{archive}"
	opt.Models = []string{"alpha", "pony-typo"}
	_, err := Run(context.Background(), opt)
	if !errors.Is(err, registry.ErrUnknownModel) {
		t.Fatalf("error %v, want ErrUnknownModel", err)
	}
	for _, id := range []string{"pony-typo", "alpha", "beta", "delta", "gamma"} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error %q does not name %s", err, id)
		}
	}
	// Checked before anything was fetched.
	if len(srv.requests()) != 0 || arch.total() != 0 {
		t.Errorf("fetched before checking the ids: %v, %d archive requests", srv.requests(), arch.total())
	}
}

func TestModelsExplicitWithoutSource(t *testing.T) {
	srv := newModelServer(t)
	reg, _ := testModels(t, srv)
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	opt.Models = []string{"gamma"}
	res, err := Run(context.Background(), opt)
	if err == nil || !strings.Contains(err.Error(), "by hand") || !strings.Contains(err.Error(), "models/gamma.toml") {
		t.Fatalf("error %v", err)
	}
	if res.Models[0].Status != StatusFailed || res.Models[0].Error == "" || len(res.Errors) != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestModelsResumeAfterInterruption(t *testing.T) {
	srv := newModelServer(t)
	reg, content := testModels(t, srv)
	path := "/owner/alpha-xl/resolve/main/alpha.safetensors"
	cut := 100<<10 + 3
	srv.dropAt[path] = cut
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	opt.Models = []string{"alpha"}
	opt.Download.Retries = 0 // the first run gives up, as an interrupted setup does

	res, err := Run(context.Background(), opt)
	if err == nil || res.Models[0].Status != StatusFailed {
		t.Fatalf("first run: %v, %+v", err, res.Models)
	}
	dest := filepath.Join(opt.ModelsDir, "alpha.safetensors")
	if st, err := os.Stat(dest + ".part"); err != nil || st.Size() != int64(cut) {
		t.Fatalf("partial file: %v (size %v), want %d bytes", err, st, cut)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("an incomplete file got the final name")
	}

	res, err = Run(context.Background(), opt)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, log.String())
	}
	m := res.Models[0]
	if m.Status != StatusFetched || m.Resumed != int64(cut) || m.SHA256 != sum(content["alpha"]) {
		t.Errorf("second run %+v", m)
	}
	reqs := srv.requests()
	if last := reqs[len(reqs)-1]; last != fmt.Sprintf("%s bytes=%d-", path, cut) {
		t.Errorf("resuming request %q, want a Range from byte %d", last, cut)
	}
	if !strings.Contains(log.String(), "resuming at") {
		t.Errorf("resume not reported:\n%s", log.String())
	}
}

func TestModelsChecksumAndVerify(t *testing.T) {
	srv := newModelServer(t)
	reg, content := testModels(t, srv)
	// The server now holds other bytes than the registry's digest.
	srv.files["/owner/delta/resolve/main/delta.safetensors"] = payload(len(content["delta"]), 99)
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	res, err := Run(context.Background(), opt)
	if !errors.Is(err, download.ErrChecksum) {
		t.Fatalf("error %v, want ErrChecksum", err)
	}
	// The other models still came.
	want := map[string]string{"alpha": StatusFetched, "beta": StatusFetched, "delta": StatusFailed, "gamma": StatusNoSource}
	if fmt.Sprint(statuses(res)) != fmt.Sprint(want) {
		t.Errorf("statuses %v", statuses(res))
	}
	dest := filepath.Join(opt.ModelsDir, "delta.safetensors")
	if _, err := os.Stat(dest); err == nil {
		t.Error("a file with the wrong digest was kept")
	}

	// A present file is trusted unless Verify is set.
	if err := os.WriteFile(dest, []byte("not the model"), 0o644); err != nil {
		t.Fatal(err)
	}
	opt.Models = []string{"delta"}
	if res, err := Run(context.Background(), opt); err != nil || res.Models[0].Status != StatusPresent {
		t.Errorf("without verify: %v, %+v", err, res.Models)
	}
	opt.Verify = true
	if _, err := Run(context.Background(), opt); !errors.Is(err, download.ErrChecksum) {
		t.Errorf("with verify: error %v, want ErrChecksum", err)
	}
	if err := os.WriteFile(dest, content["delta"], 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = Run(context.Background(), opt)
	if err != nil || res.Models[0].Status != StatusPresent || res.Models[0].SHA256 != sum(content["delta"]) {
		t.Errorf("verified present file: %v, %+v", err, res.Models)
	}
}

func TestModelsDiskFull(t *testing.T) {
	srv := newModelServer(t)
	reg, _ := testModels(t, srv)
	var log bytes.Buffer
	opt := modelOptions(t, srv, reg, &log)
	opt.Download.OpenFile = diskWithRoom(50 << 10)
	res, err := Run(context.Background(), opt)
	if !errors.Is(err, download.ErrDiskFull) {
		t.Fatalf("error %v, want ErrDiskFull", err)
	}
	t.Logf("error: %v", err)
	// The first model hit the full disk; setup stopped there.
	if len(res.Models) != 1 || res.Models[0].Status != StatusFailed || len(srv.requests()) != 1 {
		t.Errorf("went on after a full disk: %+v, requests %v", res.Models, srv.requests())
	}
}

func TestRunLibrariesAndModels(t *testing.T) {
	msrv := newModelServer(t)
	reg, _ := testModels(t, msrv)
	asrv := newArchiveServer(t)
	entries, files := ortEntries(top12, 30)
	asrv.put(archivePath, makeTgz(t, entries))
	var log bytes.Buffer
	opt := modelOptions(t, msrv, reg, &log)
	lo := libOptions(t, asrv, &log)
	opt.SkipLibs, opt.LibDir, opt.Version, opt.ArchiveURL = false, lo.LibDir, lo.Version, lo.ArchiveURL

	// A broken library download does not keep the models from coming.
	asrv.put(archivePath, []byte("garbage"))
	res, err := Run(context.Background(), opt)
	if !errors.Is(err, ErrCorruptArchive) || res.Fetched != 3 || len(res.Errors) != 1 {
		t.Fatalf("error %v, result %+v", err, res)
	}
	asrv.put(archivePath, makeTgz(t, entries))
	res, err = Run(context.Background(), opt)
	if err != nil || !res.Libraries.Installed || res.Fetched != 0 || res.Skipped != 3 || res.Seconds <= 0 {
		t.Fatalf("error %v, result %+v", err, res)
	}
	assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)
}
