package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/engine/registry"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/setup"
)

// setupServer serves a fake ONNX Runtime archive and the embedded
// registry's checkpoints (a few KB each) the way GitHub, Hugging Face and
// Civitai would, and counts requests.
type setupServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  int
}

func (s *setupServer) requests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.hits }

// fakeORTArchive is a release archive in the real layout, with small
// stand-ins for the libraries.
func fakeORTArchive(t *testing.T) ([]byte, map[string][]byte) {
	v := runtime.Version
	top := "onnxruntime-linux-x64-gpu-" + v + "/"
	libs := map[string][]byte{
		"libonnxruntime.so." + v:               bytes.Repeat([]byte("ort-core "), 4000),
		"libonnxruntime_providers_shared.so":   bytes.Repeat([]byte("shared "), 300),
		"libonnxruntime_providers_cuda.so":     bytes.Repeat([]byte("cuda-ep "), 20000),
		"libonnxruntime_providers_tensorrt.so": bytes.Repeat([]byte("trt-ep "), 900),
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(h *tar.Header, body []byte) {
		h.Mode, h.ModTime = 0o755, time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	add(&tar.Header{Name: top + "include/onnxruntime_c_api.h", Typeflag: tar.TypeReg, Size: 3}, []byte("/**"))
	add(&tar.Header{Name: top + "lib/libonnxruntime.so", Typeflag: tar.TypeSymlink, Linkname: "libonnxruntime.so.1"}, nil)
	add(&tar.Header{Name: top + "lib/libonnxruntime.so.1", Typeflag: tar.TypeSymlink, Linkname: "libonnxruntime.so." + v}, nil)
	for name, body := range libs {
		add(&tar.Header{Name: top + "lib/" + name, Typeflag: tar.TypeReg, Size: int64(len(body))}, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), libs
}

// newSetupServer prepares the server and the environment setup reads, and
// returns the checkpoint contents by model id.
func newSetupServer(t *testing.T, modelsDir string) (*setupServer, map[string][]byte) {
	s := &setupServer{files: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits++
		body, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(s.Close)

	tgz, _ := fakeORTArchive(t)
	name, err := setup.ArchiveName(runtime.Version, 12)
	if err != nil {
		t.Fatal(err)
	}
	s.files["/ort/v"+runtime.Version+"/"+name] = tgz

	// Each registry model is served where the download client will look.
	reg, _ := registry.LoadAll(modelsDir)
	c := &download.Client{HuggingFaceURL: s.URL, CivitaiURL: s.URL}
	content := map[string][]byte{}
	for i, m := range reg.List() {
		u, err := c.URL(m.Source, m.File)
		if err != nil {
			t.Fatalf("%s: %v", m.ID, err)
		}
		pu, _ := url.Parse(u)
		content[m.ID] = bytes.Repeat([]byte{byte('a' + i)}, 10_000+i)
		s.files[pu.Path] = content[m.ID]
	}
	if len(content) == 0 {
		t.Fatal("the embedded registry is empty")
	}

	t.Setenv(EnvORTURL, s.URL+"/ort/v{version}/{archive}")
	for _, v := range []string{download.EnvHFToken, download.EnvCivitaiToken, "HUGGING_FACE_HUB_TOKEN", EnvHFURL, EnvCivitaiURL} {
		t.Setenv(v, "")
	}
	return s, content
}

func runSetupCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(append([]string{"setup"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func decodeSummary(t *testing.T, stdout string) setup.Result {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 {
		t.Fatalf("stdout is not one line: %q", stdout)
	}
	var res setup.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("summary %q: %v", stdout, err)
	}
	return res
}

func TestSetupCommandFullThenNoOp(t *testing.T) {
	root := t.TempDir()
	lib, models := filepath.Join(root, "lib"), filepath.Join(root, "models")
	srv, content := newSetupServer(t, models)
	_, libs := fakeORTArchive(t)
	args := []string{"--lib-dir", lib, "--models", models, "--hf-url", srv.URL, "--civitai-url", srv.URL}

	code, stdout, stderr := runSetupCmd(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	res := decodeSummary(t, stdout)
	l := res.Libraries
	if l == nil || !l.Installed || l.Version != runtime.Version || l.CUDA != 12 || l.Library != filepath.Join(lib, setup.LibraryName) {
		t.Fatalf("libraries %+v", l)
	}
	for name, body := range libs {
		if got, err := os.ReadFile(filepath.Join(lib, name)); err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s not installed (%v)", name, err)
		}
	}
	// The name the engine opens leads to the library.
	if got, err := os.ReadFile(filepath.Join(lib, runtime.LibraryName())); err != nil || !bytes.Equal(got, libs["libonnxruntime.so."+runtime.Version]) {
		t.Errorf("%s: %v", runtime.LibraryName(), err)
	}
	if res.Fetched != len(content) || res.Skipped != 0 || len(res.Models) != len(content) {
		t.Errorf("models %+v", res)
	}
	for _, m := range res.Models {
		if got, err := os.ReadFile(m.Path); err != nil || !bytes.Equal(got, content[m.ID]) || filepath.Dir(m.Path) != models {
			t.Errorf("%s: %+v (%v)", m.ID, m, err)
		}
	}
	if strings.Contains(stderr, "\r") || !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "MB/s") {
		t.Errorf("stderr progress:\n%s", stderr)
	}

	n := srv.requests()
	code, stdout, stderr = runSetupCmd(t, args...)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s", code, stderr)
	}
	res = decodeSummary(t, stdout)
	if res.Libraries.Installed || res.Fetched != 0 || res.Skipped != len(content) || srv.requests() != n {
		t.Errorf("re-run was not a no-op: %+v, %d requests", res, srv.requests()-n)
	}
}

func TestSetupCommandOneModelNoLibs(t *testing.T) {
	root := t.TempDir()
	models := filepath.Join(root, "models")
	srv, content := newSetupServer(t, models)
	t.Setenv(EnvHFURL, srv.URL)
	t.Setenv(EnvCivitaiURL, srv.URL)
	var id string
	for k := range content {
		id = k
		break
	}
	code, stdout, stderr := runSetupCmd(t, "--no-libs", "--models", models, "--model", id)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	res := decodeSummary(t, stdout)
	if res.Libraries != nil || res.Fetched != 1 || len(res.Models) != 1 || res.Models[0].ID != id {
		t.Errorf("summary %+v", res)
	}
	if srv.requests() != 1 {
		t.Errorf("%d requests, want 1", srv.requests())
	}
}

func TestSetupCommandUnknownModel(t *testing.T) {
	root := t.TempDir()
	models := filepath.Join(root, "models")
	srv, content := newSetupServer(t, models)
	code, stdout, stderr := runSetupCmd(t, "--lib-dir", filepath.Join(root, "lib"), "--models", models, "--model", "ponyy")
	if code != 2 || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	if !strings.Contains(stderr, `unknown model "ponyy"`) {
		t.Errorf("stderr %q", stderr)
	}
	for id := range content {
		if !strings.Contains(stderr, id) {
			t.Errorf("stderr does not name the known model %s: %q", id, stderr)
		}
	}
	if srv.requests() != 0 {
		t.Errorf("%d requests before the ids were checked", srv.requests())
	}
}

func TestSetupCommandUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--cuda", "11"},
		{"--cuda", "twelve"},
		{"--model", "animagine", "--no-models"},
		{"extra"},
		{"--no-such-flag"},
	} {
		code, stdout, stderr := runSetupCmd(t, append([]string{"--lib-dir", dir, "--models", dir}, args...)...)
		if code != 2 || stdout != "" || stderr == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestSetupCommandFailureStillSummarizes(t *testing.T) {
	root := t.TempDir()
	models := filepath.Join(root, "models")
	srv, content := newSetupServer(t, models)
	t.Setenv(EnvORTURL, srv.URL+"/missing/{archive}")
	code, stdout, stderr := runSetupCmd(t, "--lib-dir", filepath.Join(root, "lib"), "--models", models,
		"--hf-url", srv.URL, "--civitai-url", srv.URL)
	if code != 1 || !strings.Contains(stderr, "404") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	res := decodeSummary(t, stdout)
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "404") || res.Libraries.Installed || res.Fetched != len(content) {
		t.Errorf("summary %+v", res)
	}
}
