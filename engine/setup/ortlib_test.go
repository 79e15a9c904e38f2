package setup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/download"
)

// assertInstalled checks that dir holds exactly the fake release's
// libraries, with the link chain the engine opens, and a valid marker.
func assertInstalled(t *testing.T, dir string, files ortFiles, mname string) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: content differs from the archive's", name)
		}
	}
	for link, target := range map[string]string{
		"libonnxruntime.so":   "libonnxruntime.so.1",
		"libonnxruntime.so.1": "libonnxruntime.so." + testVersion,
	} {
		got, err := os.Readlink(filepath.Join(dir, link))
		if err != nil || got != target {
			t.Errorf("link %s -> %q (err %v), want -> %q", link, got, err, target)
		}
	}
	// What the engine loads resolves, inside dir, to the library itself.
	lib, err := filepath.EvalSymlinks(filepath.Join(dir, LibraryName))
	if err != nil {
		t.Fatalf("resolve %s: %v", LibraryName, err)
	}
	if want, _ := filepath.EvalSymlinks(filepath.Join(dir, "libonnxruntime.so."+testVersion)); lib != want {
		t.Errorf("%s resolves to %s, want %s", LibraryName, lib, want)
	}
	want := []string{mname, "libonnxruntime.so", "libonnxruntime.so.1"}
	for n := range files {
		want = append(want, n)
	}
	got := dirNames(t, dir)
	if strings.Join(got, " ") != strings.Join(sortedCopy(want), " ") {
		t.Errorf("library folder holds %v, want %v (no headers, pkgconfig, cmake, staging or temp files)", got, sortedCopy(want))
	}
	b, err := os.ReadFile(filepath.Join(dir, mname))
	if err != nil {
		t.Fatalf("marker: %v", err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("marker: %v", err)
	}
	if m.Version != testVersion || len(m.Files) != len(files) || len(m.Links) != 2 {
		t.Errorf("marker %+v", m)
	}
	for name, content := range files {
		if m.Files[name].SHA256 != sum(content) || m.Files[name].Size != int64(len(content)) {
			t.Errorf("marker entry for %s: %+v", name, m.Files[name])
		}
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func TestLibrariesInstallAndRerun(t *testing.T) {
	srv := newArchiveServer(t)
	entries, files := ortEntries(top12, 1)
	tgz := makeTgz(t, entries)
	srv.put(archivePath, tgz)
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	opt.ArchiveSHA256 = strings.ToUpper(sum(tgz))

	res, err := Run(context.Background(), opt)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	lr := res.Libraries
	if lr == nil || !lr.Installed || lr.ArchiveSHA256 != sum(tgz) || lr.CUDA != 12 || lr.Version != testVersion {
		t.Fatalf("result %+v", lr)
	}
	if lr.Archive != srv.URL+archivePath {
		t.Errorf("archive %q, want %q", lr.Archive, srv.URL+archivePath)
	}
	if lr.Library != filepath.Join(opt.LibDir, LibraryName) || len(lr.Files) != len(files)+2 {
		t.Errorf("library %s, files %v", lr.Library, lr.Files)
	}
	assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)
	if strings.Contains(log.String(), "\r") {
		t.Error("progress off a terminal used carriage returns")
	}
	if !strings.Contains(log.String(), "100%") || !strings.Contains(log.String(), "MB/s") {
		t.Errorf("no progress lines in the log:\n%s", log.String())
	}

	// A second run finds everything in place and fetches nothing.
	mtimes := map[string]time.Time{}
	for _, p := range lr.Files {
		st, _ := os.Lstat(p)
		mtimes[p] = st.ModTime()
	}
	res, err = Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Libraries.Installed || srv.count(archivePath) != 1 {
		t.Errorf("re-run installed again (installed %v, %d requests)", res.Libraries.Installed, srv.count(archivePath))
	}
	if res.Libraries.ArchiveSHA256 != sum(tgz) || len(res.Libraries.Files) != len(lr.Files) {
		t.Errorf("re-run result %+v", res.Libraries)
	}
	for p, mt := range mtimes {
		if st, _ := os.Lstat(p); !st.ModTime().Equal(mt) {
			t.Errorf("re-run touched %s", p)
		}
	}
}

func TestLibrariesReinstallWhenDamaged(t *testing.T) {
	cuda := "libonnxruntime_providers_cuda.so"
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"file changed, same size", func(dir string) error {
			p := filepath.Join(dir, cuda)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[1000] ^= 0xff
			return os.WriteFile(p, b, 0o755)
		}},
		{"file missing", func(dir string) error { return os.Remove(filepath.Join(dir, cuda)) }},
		{"file truncated", func(dir string) error { return os.Truncate(filepath.Join(dir, cuda), 10) }},
		{"link replaced", func(dir string) error {
			p := filepath.Join(dir, LibraryName)
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("libonnxruntime_providers_shared.so", p)
		}},
		{"marker damaged", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ".onnxruntime-gpu-"+testVersion), []byte("{"), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newArchiveServer(t)
			entries, files := ortEntries(top12, 2)
			srv.put(archivePath, makeTgz(t, entries))
			var log bytes.Buffer
			opt := libOptions(t, srv, &log)
			if _, err := Run(context.Background(), opt); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(opt.LibDir); err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), opt)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Libraries.Installed || srv.count(archivePath) != 2 {
				t.Errorf("damage not repaired: installed %v, %d requests", res.Libraries.Installed, srv.count(archivePath))
			}
			assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)
		})
	}
}

func TestLibrariesCUDA13ReplacesCUDA12(t *testing.T) {
	srv := newArchiveServer(t)
	e12, _ := ortEntries(top12, 3)
	// The CUDA 13 archive unpacks to the same folder name as the CUDA 12
	// one (as public build scripts show); any single top folder is taken.
	e13, files13 := ortEntries(top12, 4)
	srv.put(archivePath, makeTgz(t, e12))
	p13 := "/v" + testVersion + "/onnxruntime-linux-x64-gpu_cuda13-" + testVersion + ".tgz"
	srv.put(p13, makeTgz(t, e13))
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	if _, err := Run(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	opt.CUDA = 13
	res, err := Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Libraries.Installed || res.Libraries.CUDA != 13 || srv.count(p13) != 1 {
		t.Errorf("CUDA 13 not installed: %+v, %d requests", res.Libraries, srv.count(p13))
	}
	// The CUDA 12 marker is gone with the files it described.
	assertInstalled(t, opt.LibDir, files13, ".onnxruntime-gpu_cuda13-"+testVersion)
}

// assertNothingInstalled checks that a failed install left no library,
// marker, staging folder or temporary file behind.
func assertNothingInstalled(t *testing.T, dir string) {
	t.Helper()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("library folder holds %v after a failed install", names)
	}
}

func TestLibrariesCorruptArchive(t *testing.T) {
	entries, _ := ortEntries(top12, 5)
	good := makeTgz(t, entries)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-6] ^= 0x55 // in the gzip trailer's CRC-32
	noTar := makeGzip(t, payload(4096, 9))
	for _, tc := range []struct {
		name, content string
		want          string
	}{
		{"truncated gzip, 60%", string(good[:len(good)*6/10]), "truncated"},
		{"truncated gzip, trailer cut", string(good[:len(good)-4]), "truncated"},
		{"bad gzip checksum", string(flipped), "checksum"},
		{"not gzip", "<binary garbage, not an archive>", "not a gzip file"},
		{"gzip of no tar", string(noTar), "tar"},
		{"empty", "", "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newArchiveServer(t)
			srv.put(archivePath, []byte(tc.content))
			var log bytes.Buffer
			opt := libOptions(t, srv, &log)
			_, err := Run(context.Background(), opt)
			if !errors.Is(err, ErrCorruptArchive) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrCorruptArchive mentioning %q", err, tc.want)
			}
			t.Logf("error: %v", err)
			assertNothingInstalled(t, opt.LibDir)
			if srv.count(archivePath) != 1 {
				t.Errorf("a corrupt archive was fetched %d times; retrying cannot help", srv.count(archivePath))
			}
		})
	}

	// A corrupt update leaves a working installation as it was.
	srv := newArchiveServer(t)
	srv.put(archivePath, good)
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	if _, err := Run(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	srv.put(archivePath, good[:len(good)/2])
	opt.Force = true
	if _, err := Run(context.Background(), opt); !errors.Is(err, ErrCorruptArchive) {
		t.Fatalf("error %v, want ErrCorruptArchive", err)
	}
	_, files := ortEntries(top12, 5)
	assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)
}

func makeGzip(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(b)
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLibrariesUnsafeArchive(t *testing.T) {
	root := t.TempDir()
	abs := filepath.Join(root, "abs-evil")
	lib := top12 + "/lib/"
	for _, tc := range []struct {
		name  string
		extra entry
	}{
		{"parent path", entry{name: "../evil", body: []byte("x")}},
		{"parent path inside lib", entry{name: lib + "../../../evil", body: []byte("x")}},
		{"parent library name", entry{name: "../lib/libonnxruntime_providers_cuda.so", body: []byte("x")}},
		{"absolute path", entry{name: abs, body: []byte("x")}},
		{"absolute library", entry{name: "/lib/libonnxruntime.so.1", body: []byte("x")}},
		{"symlink to absolute", entry{name: lib + "libonnxruntime.so.1", typ: tar.TypeSymlink, link: "/etc/passwd"}},
		{"symlink to parent", entry{name: lib + "libonnxruntime.so.1", typ: tar.TypeSymlink, link: "../../evil"}},
		{"symlink to non-library", entry{name: lib + "libonnxruntime_providers_cuda.so", typ: tar.TypeSymlink, link: "evil"}},
		{"hard link outside", entry{name: lib + "libonnxruntime_providers_cuda.so", typ: tar.TypeLink, link: "../evil"}},
		{"backslash", entry{name: `..\evil`, body: []byte("x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, _ := ortEntries(top12, 6)
			// The bad entry comes last, after every good library was staged.
			entries = append(entries, tc.extra)
			srv := newArchiveServer(t)
			srv.put(archivePath, makeTgz(t, entries))
			var log bytes.Buffer
			opt := libOptions(t, srv, &log)
			opt.LibDir = filepath.Join(root, tc.name, "lib")
			_, err := Run(context.Background(), opt)
			if !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("error %v, want ErrUnsafeArchive", err)
			}
			t.Logf("error: %v", err)
			assertNothingInstalled(t, opt.LibDir)
			for _, p := range []string{
				filepath.Join(opt.LibDir, "evil"), filepath.Join(filepath.Dir(opt.LibDir), "evil"),
				filepath.Join(root, "evil"), abs,
			} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was created", p)
				}
			}
		})
	}
}

func TestLibrariesChecksum(t *testing.T) {
	srv := newArchiveServer(t)
	entries, files := ortEntries(top12, 7)
	tgz := makeTgz(t, entries)
	srv.put(archivePath, tgz)
	var log bytes.Buffer

	opt := libOptions(t, srv, &log)
	opt.ArchiveSHA256 = sum([]byte("another archive"))
	_, err := Run(context.Background(), opt)
	if !errors.Is(err, download.ErrChecksum) || !strings.Contains(err.Error(), sum(tgz)) || !strings.Contains(err.Error(), opt.ArchiveSHA256) {
		t.Fatalf("error %v, want ErrChecksum naming both digests", err)
	}
	assertNothingInstalled(t, opt.LibDir)

	opt.ArchiveSHA256 = "abc"
	if _, err := Run(context.Background(), opt); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("malformed digest: error %v", err)
	}
	if srv.count(archivePath) != 1 {
		t.Errorf("a malformed digest still fetched the archive")
	}

	// A marker from an install with another digest does not satisfy a
	// request for this one.
	opt.ArchiveSHA256 = ""
	if _, err := Run(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)
	opt.ArchiveSHA256 = sum([]byte("pinned other"))
	if _, err := Run(context.Background(), opt); !errors.Is(err, download.ErrChecksum) {
		t.Errorf("pinned digest differing from the installed archive's: error %v", err)
	}
	assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)
}

func TestLibrariesMissingProvider(t *testing.T) {
	entries, _ := ortEntries(top12, 8)
	var kept []entry
	for _, e := range entries {
		if !strings.HasSuffix(e.name, "providers_cuda.so") {
			kept = append(kept, e)
		}
	}
	srv := newArchiveServer(t)
	srv.put(archivePath, makeTgz(t, kept))
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	_, err := Run(context.Background(), opt)
	if !errors.Is(err, ErrCorruptArchive) || !strings.Contains(err.Error(), "libonnxruntime_providers_cuda.so") {
		t.Fatalf("error %v, want one naming the CUDA provider", err)
	}
	assertNothingInstalled(t, opt.LibDir)

	// A link chain that ends nowhere is refused too.
	entries, _ = ortEntries(top12, 8)
	kept = kept[:0]
	for _, e := range entries {
		if !strings.HasSuffix(e.name, "so."+testVersion) {
			kept = append(kept, e)
		}
	}
	srv.put(archivePath, makeTgz(t, kept))
	if _, err := Run(context.Background(), opt); !errors.Is(err, ErrCorruptArchive) || !strings.Contains(err.Error(), "leads to no library") {
		t.Fatalf("dangling link: error %v", err)
	}
	assertNothingInstalled(t, opt.LibDir)
}

func TestLibrariesTransferRetried(t *testing.T) {
	srv := newArchiveServer(t)
	entries, files := ortEntries(top12, 10)
	tgz := makeTgz(t, entries)
	srv.put(archivePath, tgz)
	srv.drop = len(tgz) / 2
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	res, err := Run(context.Background(), opt)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	if srv.count(archivePath) != 2 || !res.Libraries.Installed {
		t.Errorf("%d requests, installed %v", srv.count(archivePath), res.Libraries.Installed)
	}
	if !strings.Contains(log.String(), "trying again") {
		t.Errorf("the retry was not reported:\n%s", log.String())
	}
	assertInstalled(t, opt.LibDir, files, ".onnxruntime-gpu-"+testVersion)

	// Without retries the broken transfer is an error, and nothing stays.
	srv.drop = len(tgz) / 3
	opt.LibDir, opt.Retries = filepath.Join(t.TempDir(), "lib"), -1
	if _, err := Run(context.Background(), opt); err == nil || !strings.Contains(err.Error(), "connection broke") {
		t.Fatalf("error %v, want a broken connection", err)
	}
	assertNothingInstalled(t, opt.LibDir)
}

func TestLibrariesHTTPErrors(t *testing.T) {
	srv := newArchiveServer(t)
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	_, err := Run(context.Background(), opt)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "--cuda") {
		t.Fatalf("missing archive: error %v", err)
	}
	if srv.count(archivePath) != 1 {
		t.Errorf("a 404 was retried (%d requests)", srv.count(archivePath))
	}
	assertNothingInstalled(t, opt.LibDir)
}

func TestLibrariesDiskFull(t *testing.T) {
	srv := newArchiveServer(t)
	entries, _ := ortEntries(top12, 11)
	srv.put(archivePath, makeTgz(t, entries))
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	opt.OpenFile = diskWithRoom(300 << 10)
	_, err := Run(context.Background(), opt)
	if !errors.Is(err, download.ErrDiskFull) || !strings.Contains(err.Error(), "free some space") {
		t.Fatalf("error %v, want ErrDiskFull", err)
	}
	t.Logf("error: %v", err)
	assertNothingInstalled(t, opt.LibDir)
	if srv.count(archivePath) != 1 {
		t.Errorf("a full disk was retried (%d requests)", srv.count(archivePath))
	}
}

func TestArchiveURL(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		cuda int
		want string // "" means an error
	}{
		{DefaultArchiveURL, 12, "https://github.com/microsoft/onnxruntime/releases/download/v1.24.3/onnxruntime-linux-x64-gpu-1.24.3.tgz"},
		{DefaultArchiveURL, 13, "https://github.com/microsoft/onnxruntime/releases/download/v1.24.3/onnxruntime-linux-x64-gpu_cuda13-1.24.3.tgz"},
		{"https://mirror.example/ort.tgz", 12, "https://mirror.example/ort.tgz"},
		{"http://127.0.0.1:8080/{archive}", 12, "http://127.0.0.1:8080/onnxruntime-linux-x64-gpu-1.24.3.tgz"},
		{"http://localhost/{archive}", 12, "http://localhost/onnxruntime-linux-x64-gpu-1.24.3.tgz"},
		{"http://[::1]/{archive}", 12, "http://[::1]/onnxruntime-linux-x64-gpu-1.24.3.tgz"},
		{"http://mirror.example/{archive}", 12, ""},
		{"ftp://mirror.example/{archive}", 12, ""},
		{"https://user:pw@mirror.example/{archive}", 12, ""},
		{"/local/{archive}", 12, ""},
	} {
		name, err := ArchiveName("1.24.3", tc.cuda)
		if err != nil {
			t.Fatal(err)
		}
		got, err := archiveURL(tc.tmpl, "1.24.3", name)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: accepted as %s", tc.tmpl, got)
			} else if strings.Contains(err.Error(), "pw") {
				t.Errorf("%s: error shows the password: %v", tc.tmpl, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s (CUDA %d): %q, %v; want %q", tc.tmpl, tc.cuda, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		version string
		cuda    int
	}{{"1.24", 12}, {"1.24.3/../x", 12}, {"1.24.3", 11}, {"1.24.3", 0}} {
		if _, err := ArchiveName(tc.version, tc.cuda); err == nil {
			t.Errorf("ArchiveName(%q, %d) accepted", tc.version, tc.cuda)
		}
	}
}

func TestDefaultLibDir(t *testing.T) {
	for _, tc := range []struct{ exe, want string }{
		{"/workspace/pixery/bin/pixery-engine", "/workspace/pixery/lib"},
		{"/workspace/pixery/pixery-engine", "/workspace/pixery/lib"},
		{"/usr/local/bin/pixery-engine", "/usr/local/lib"},
	} {
		if got := DefaultLibDir(tc.exe); got != filepath.FromSlash(tc.want) {
			t.Errorf("DefaultLibDir(%s) = %s, want %s", tc.exe, got, tc.want)
		}
	}
}

func TestLibrariesCancelled(t *testing.T) {
	srv := newArchiveServer(t)
	entries, _ := ortEntries(top12, 12)
	srv.put(archivePath, makeTgz(t, entries))
	var log bytes.Buffer
	opt := libOptions(t, srv, &log)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Run(ctx, opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if len(res.Errors) != 1 {
		t.Errorf("result errors %v", res.Errors)
	}
	assertNothingInstalled(t, opt.LibDir)
}
