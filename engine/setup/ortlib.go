package setup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/internal/atomicfile"
)

// DefaultArchiveURL is where Microsoft publishes the release archives.
// {version} and {archive} are replaced by the version and ArchiveName.
const DefaultArchiveURL = "https://github.com/microsoft/onnxruntime/releases/download/v{version}/{archive}"

// The library names the engine needs on Linux. LibraryName is what the
// engine opens (runtime.LibraryName); the provider bridge looks for the
// providers in the same folder.
const (
	LibraryName       = "libonnxruntime.so.1"
	providersShared   = "libonnxruntime_providers_shared.so"
	providersCUDA     = "libonnxruntime_providers_cuda.so"
	providersTensorRT = "libonnxruntime_providers_tensorrt.so"
)

// requiredLibs must all be in the archive; the TensorRT provider is taken
// when present but the CUDA execution provider does not need it.
var requiredLibs = []string{LibraryName, providersShared, providersCUDA}

// Errors that installLibraries wraps.
var (
	// ErrCorruptArchive: the archive is not a complete gzip-compressed tar
	// file, or lacks a library the engine needs.
	ErrCorruptArchive = errors.New("corrupt archive")
	// ErrUnsafeArchive: an entry would be written outside the library
	// folder (an absolute path, "..", a symbolic link leading out).
	ErrUnsafeArchive = errors.New("unsafe archive")
)

// Bounds against a malicious or broken archive filling the disk: the
// largest library of 1.24 (the CUDA provider) is a few hundred MB.
const (
	maxLibFile  = 4 << 30
	maxLibTotal = 8 << 30
)

var (
	versionRE  = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	libNameRE  = regexp.MustCompile(`^libonnxruntime\.so(\.[0-9]+)*$`)
	sha256HexR = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// ArchiveName returns the file name of the Linux x64 GPU release archive
// of an ONNX Runtime version built for CUDA 12 or 13.
func ArchiveName(version string, cuda int) (string, error) {
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("ONNX Runtime version %q is not of the form 1.24.3", version)
	}
	switch cuda {
	case 12:
		return "onnxruntime-linux-x64-gpu-" + version + ".tgz", nil
	case 13:
		return "onnxruntime-linux-x64-gpu_cuda13-" + version + ".tgz", nil
	}
	return "", fmt.Errorf("CUDA %d: ONNX Runtime's GPU builds are for CUDA 12 or 13", cuda)
}

// markerName is the file in the library folder that records an
// installation: ".onnxruntime-gpu-1.24.3" (CUDA 12) or
// ".onnxruntime-gpu_cuda13-1.24.3".
func markerName(version string, cuda int) string {
	if cuda == 13 {
		return ".onnxruntime-gpu_cuda13-" + version
	}
	return ".onnxruntime-gpu-" + version
}

// LibraryResult describes the library step.
type LibraryResult struct {
	Dir     string `json:"dir"`
	Version string `json:"version"`
	CUDA    int    `json:"cuda"`
	// Archive is the address the archive was (or would be) fetched from.
	Archive       string `json:"archive"`
	ArchiveSHA256 string `json:"archive_sha256,omitempty"`
	// Installed is false when the libraries were already in place and
	// intact, so nothing was fetched.
	Installed bool `json:"installed"`
	// Library is the path the engine loads (libonnxruntime.so.1).
	Library string `json:"library,omitempty"`
	// Files lists every path the step owns in Dir, sorted.
	Files []string `json:"files,omitempty"`
}

// marker is the JSON kept in the library folder after an installation.
type marker struct {
	Version       string             `json:"version"`
	CUDA          int                `json:"cuda"`
	Archive       string             `json:"archive"`
	ArchiveSHA256 string             `json:"archive_sha256"`
	Files         map[string]fileSum `json:"files"`
	// Links maps a symbolic link's name to its target, a name in Files or
	// Links in the same folder.
	Links       map[string]string `json:"links,omitempty"`
	InstalledAt time.Time         `json:"installed_at"`
}

type fileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func installLibraries(ctx context.Context, opt *Options) (*LibraryResult, error) {
	cuda := opt.CUDA
	if cuda == 0 {
		cuda = 12
	}
	res := &LibraryResult{Dir: opt.LibDir, Version: opt.Version, CUDA: cuda}
	wrap := func(err error) error { return fmt.Errorf("onnxruntime %s: %w", opt.Version, err) }
	if opt.Version == "" {
		return res, errors.New("onnxruntime: no version given")
	}
	archive, err := ArchiveName(opt.Version, cuda)
	if err != nil {
		return res, wrap(err)
	}
	tmpl := opt.ArchiveURL
	if tmpl == "" {
		tmpl = DefaultArchiveURL
	}
	u, err := archiveURL(tmpl, opt.Version, archive)
	if err != nil {
		return res, wrap(err)
	}
	res.Archive = stripQuery(u)
	want := strings.ToLower(opt.ArchiveSHA256)
	if want != "" && !sha256HexR.MatchString(want) {
		return res, wrap(fmt.Errorf("expected archive SHA-256 %q is not 64 hex digits", opt.ArchiveSHA256))
	}
	if opt.LibDir == "" {
		return res, wrap(errors.New("no library folder given"))
	}
	dir, err := filepath.Abs(opt.LibDir)
	if err != nil {
		return res, wrap(err)
	}
	res.Dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, wrap(fmt.Errorf("create library folder: %w", err))
	}

	mname := markerName(opt.Version, cuda)
	if !opt.Force {
		m, why := checkMarker(dir, mname)
		if why == "" && m.Archive == res.Archive && (want == "" || want == m.ArchiveSHA256) {
			res.ArchiveSHA256 = m.ArchiveSHA256
			res.Library, res.Files = filepath.Join(dir, LibraryName), m.paths(dir)
			opt.logf("onnxruntime %s (CUDA %d) is already in %s", opt.Version, cuda, dir)
			return res, nil
		}
		switch {
		case why == "" && m.Archive != res.Archive:
			opt.logf("onnxruntime: installed from another address (%s); reinstalling", m.Archive)
		case why == "":
			opt.logf("onnxruntime: the installed archive's SHA-256 is %s, not the expected one; reinstalling", m.ArchiveSHA256)
		case why == notInstalled:
		default:
			opt.logf("onnxruntime: reinstalling: %s", why)
		}
	}

	removeStaleStaging(dir)
	staging, err := os.MkdirTemp(dir, stagingPrefix)
	if err != nil {
		return res, wrap(fmt.Errorf("create staging folder: %w", err))
	}
	// Until the renames below, nothing outside the staging folder changes;
	// whatever fails before them leaves the library folder as it was.
	defer os.RemoveAll(staging)

	opt.logf("onnxruntime: fetching %s", res.Archive)
	x, err := opt.fetchArchive(ctx, u, staging)
	if err != nil {
		return res, wrap(err)
	}
	res.ArchiveSHA256 = x.sha256
	if want != "" && x.sha256 != want {
		return res, wrap(fmt.Errorf("%w: archive %s has SHA-256 %s, expected %s; nothing was installed",
			download.ErrChecksum, archive, x.sha256, want))
	}
	if err := x.finish(); err != nil {
		return res, wrap(err)
	}
	m := &marker{Version: opt.Version, CUDA: cuda, Archive: res.Archive, ArchiveSHA256: x.sha256,
		Files: x.files, Links: x.links, InstalledAt: time.Now().UTC()}
	if err := install(dir, staging, mname, m); err != nil {
		return res, wrap(err)
	}
	res.Installed = true
	res.Library, res.Files = filepath.Join(dir, LibraryName), m.paths(dir)
	opt.logf("onnxruntime %s (CUDA %d): installed %d files into %s", opt.Version, cuda, len(res.Files), dir)
	return res, nil
}

// archiveURL fills a URL template and checks its scheme: https, or plain
// http to a loopback address only (a test server or a local mirror).
func archiveURL(tmpl, version, archive string) (string, error) {
	u := strings.NewReplacer("{version}", version, "{archive}", archive).Replace(tmpl)
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("archive URL %q: %w", stripQuery(u), err)
	}
	if pu.Host == "" || pu.User != nil {
		return "", fmt.Errorf("archive URL %q must be https://host/path without credentials", stripQuery(u))
	}
	switch pu.Scheme {
	case "https":
	case "http":
		host := pu.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", fmt.Errorf("archive URL %q uses plain http; only https is allowed (http only to a loopback address)", stripQuery(u))
		}
	default:
		return "", fmt.Errorf("archive URL %q must be https", stripQuery(u))
	}
	return u, nil
}

const stagingPrefix = ".onnxruntime-staging-"

// removeStaleStaging deletes staging folders an interrupted run left.
// (Two setups installing into one folder at the same time are not
// supported.)
func removeStaleStaging(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, stagingPrefix+"*"))
	for _, p := range old {
		os.RemoveAll(p)
	}
}

// notInstalled is checkMarker's answer when there is no marker.
const notInstalled = "not installed yet"

// checkMarker reads the marker and checks every file and link it lists.
// It returns why the installation cannot be trusted, or "".
func checkMarker(dir, name string) (*marker, string) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notInstalled
	}
	if err != nil {
		return nil, fmt.Sprintf("read %s: %v", name, err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil || len(m.Files) == 0 {
		return nil, fmt.Sprintf("%s is damaged", name)
	}
	for _, n := range sortedKeys(m.Files) {
		want := m.Files[n]
		p := filepath.Join(dir, n)
		st, err := os.Lstat(p)
		switch {
		case err != nil:
			return &m, fmt.Sprintf("%s is missing", n)
		case !st.Mode().IsRegular():
			return &m, fmt.Sprintf("%s is no longer a plain file", n)
		case st.Size() != want.Size:
			return &m, fmt.Sprintf("%s changed size", n)
		}
		got, err := hashFile(p)
		if err != nil {
			return &m, fmt.Sprintf("read %s: %v", n, err)
		}
		if got != want.SHA256 {
			return &m, fmt.Sprintf("%s changed", n)
		}
	}
	for _, n := range sortedKeys(m.Links) {
		if t, err := os.Readlink(filepath.Join(dir, n)); err != nil || t != m.Links[n] {
			return &m, fmt.Sprintf("link %s no longer points to %s", n, m.Links[n])
		}
	}
	for _, n := range requiredLibs {
		if _, ok := m.Files[n]; !ok {
			if _, ok := m.Links[n]; !ok {
				return &m, fmt.Sprintf("%s lacks %s", name, n)
			}
		}
	}
	return &m, ""
}

func (m *marker) paths(dir string) []string {
	var out []string
	for n := range m.Files {
		out = append(out, filepath.Join(dir, n))
	}
	for n := range m.Links {
		out = append(out, filepath.Join(dir, n))
	}
	sort.Strings(out)
	return out
}

// install moves the staged files into dir, links last so that no link ever
// points at a missing file, and then writes the marker. The old marker is
// removed first: a crash halfway leaves no marker, and the next run
// installs again.
func install(dir, staging, mname string, m *marker) error {
	if err := os.Remove(filepath.Join(dir, mname)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove old marker: %w", err)
	}
	for _, names := range [][]string{sortedKeys(m.Files), sortedKeys(m.Links)} {
		for _, n := range names {
			if err := os.Rename(filepath.Join(staging, n), filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("install %s: %w", n, err)
			}
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, mname), append(b, '\n')); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	// Markers of other versions or CUDA builds describe files that were
	// just replaced.
	others, _ := filepath.Glob(filepath.Join(dir, ".onnxruntime-gpu*"))
	for _, p := range others {
		if filepath.Base(p) != mname {
			os.Remove(p)
		}
	}
	return syncDir(dir)
}

// writeFileAtomic replaces name with data, telling a full disk apart so
// that the caller can say so.
func writeFileAtomic(name string, data []byte) error {
	err := atomicfile.Write(name, data, 0o644)
	if err != nil && download.IsDiskFull(err) {
		return fmt.Errorf("%w: %v", download.ErrDiskFull, err)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Windows cannot sync a directory; its renames are durable anyway.
	if err := d.Sync(); err != nil && goruntime.GOOS != "windows" {
		return err
	}
	return nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
