package setup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pixery/pixery/engine/download"
)

// extraction is the outcome of unpacking the archive into a staging folder.
type extraction struct {
	dir    string
	files  map[string]fileSum // plain files in dir
	links  map[string]string  // symbolic links to create, name → target
	total  int64
	sha256 string // of the whole archive
	open   func(name string, flag int, perm fs.FileMode) (download.File, error)
}

// fetchArchive downloads the archive and unpacks the libraries into
// staging as the bytes arrive. A transfer that breaks is started again
// (with an empty staging folder) up to Options.Retries times; a corrupt or
// unsafe archive is not.
func (o *Options) fetchArchive(ctx context.Context, u, staging string) (*extraction, error) {
	retries := o.Retries
	if retries == 0 {
		retries = 3
	}
	delay := o.RetryDelay
	if delay <= 0 {
		delay = 2 * time.Second
	}
	for attempt := 0; ; attempt++ {
		x, err := o.fetchOnce(ctx, u, staging)
		if err == nil {
			return x, nil
		}
		var te *transferError
		if !errors.As(err, &te) || attempt >= retries || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		o.logf("onnxruntime: %v; trying again in %s", err, delay)
		if err := emptyDir(staging); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// transferError is a failed or broken connection, worth another try.
type transferError struct{ err error }

func (e *transferError) Error() string { return e.err.Error() }
func (e *transferError) Unwrap() error { return e.err }

// HTTPError is an unexpected answer from the archive's server.
type HTTPError struct {
	StatusCode int
	URL        string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

var defaultTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   30 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	ForceAttemptHTTP2:     true,
}

func (o *Options) httpClient() *http.Client {
	var hc http.Client
	if o.HTTP != nil {
		hc = *o.HTTP
	} else {
		hc.Transport = defaultTransport
	}
	// GitHub answers with a redirect to its download host; never let one
	// downgrade to plain http.
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("refused redirect from https to %s", stripQuery(req.URL.String()))
		}
		return nil
	}
	return &hc
}

func (o *Options) fetchOnce(parent context.Context, u, staging string) (*extraction, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stall := o.StallTimeout
	if stall <= 0 {
		stall = 60 * time.Second
	}
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stall, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()

	shown := stripQuery(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", shown, err)
	}
	req.Header.Set("User-Agent", "pixery-engine")
	resp, err := o.httpClient().Do(req)
	if err != nil {
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if stalled.Load() {
			err = fmt.Errorf("no answer within %s", stall)
		}
		return nil, &transferError{fmt.Errorf("request %s: %w", shown, err)}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s answered 404 Not Found: no such release archive (check the version and --cuda)", shown)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, &transferError{&HTTPError{resp.StatusCode, shown}}
	default:
		return nil, &HTTPError{resp.StatusCode, shown}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/html" {
		return nil, fmt.Errorf("%s sent a web page instead of the archive", shown)
	}
	watchdog.Reset(stall)

	body := &countingReader{r: resp.Body, h: sha256.New(), onRead: func() { watchdog.Reset(stall) }}
	mt := o.meter(path.Base(req.URL.Path))
	began := time.Now()
	body.progress = func(final bool) {
		rate := 0.0
		if el := time.Since(began).Seconds(); el > 0 {
			rate = float64(body.n) / el
		}
		mt.update(body.n, resp.ContentLength, rate, final)
	}
	// readErr tells a broken connection (worth a retry) from a corrupt
	// archive (not), whichever layer noticed first.
	readErr := func(what string, err error) error {
		if parent.Err() != nil {
			return parent.Err()
		}
		if body.err != nil && body.err != io.EOF {
			if stalled.Load() {
				return &transferError{fmt.Errorf("%s: connection stalled after %d bytes", shown, body.n)}
			}
			return &transferError{fmt.Errorf("%s: connection broke after %d bytes: %w", shown, body.n, body.err)}
		}
		if body.n == 0 {
			return fmt.Errorf("%w: %s sent an empty file", ErrCorruptArchive, shown)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s: the archive ends early (truncated after %d bytes)", ErrCorruptArchive, what, body.n)
		}
		return fmt.Errorf("%w: %s: %v", ErrCorruptArchive, what, err)
	}

	x := &extraction{dir: staging, files: map[string]fileSum{}, links: map[string]string{}, open: o.OpenFile}
	gz, err := gzip.NewReader(body)
	if err != nil {
		return nil, readErr("not a gzip file", err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			// Only with GODEBUG=tarinsecurepath=0; libName refuses them anyway.
			return nil, fmt.Errorf("%w: entry %q leaves the archive's folder", ErrUnsafeArchive, hdr.Name)
		}
		if err != nil {
			return nil, readErr("read tar entry", err)
		}
		if err := x.entry(hdr, tr, readErr); err != nil {
			return nil, err
		}
	}
	// The rest of the gzip stream carries its checksum, and the digest
	// covers every byte of the file.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return nil, readErr("read archive end", err)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, readErr("read archive end", err)
	}
	if resp.ContentLength >= 0 && body.n != resp.ContentLength {
		return nil, &transferError{fmt.Errorf("%s ended at byte %d of %d", shown, body.n, resp.ContentLength)}
	}
	body.progress(true)
	x.sha256 = hex.EncodeToString(body.h.Sum(nil))
	return x, nil
}

// countingReader hashes and counts what passes, and remembers the
// transport's error.
type countingReader struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	err      error
	onRead   func()
	progress func(final bool)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.h.Write(p[:n])
		c.n += int64(n)
		c.onRead()
		if c.progress != nil {
			c.progress(false)
		}
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

// libName returns the library an archive entry holds ("" for entries that
// are not wanted) or ErrUnsafeArchive for a name that leaves the archive.
// Wanted entries are lib/NAME, or TOP/lib/NAME with one top folder, as in
// onnxruntime-linux-x64-gpu-1.24.3/lib/libonnxruntime.so.1.24.3.
func libName(raw string) (string, error) {
	if raw == "" || strings.ContainsAny(raw, "\\\x00") {
		return "", fmt.Errorf("%w: entry name %q is empty or holds a backslash or NUL", ErrUnsafeArchive, raw)
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("%w: entry %q has an absolute path", ErrUnsafeArchive, raw)
	}
	p := path.Clean(raw)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: entry %q points outside the archive's folder", ErrUnsafeArchive, raw)
	}
	parts := strings.Split(p, "/")
	var name string
	switch {
	case len(parts) == 2 && parts[0] == "lib":
		name = parts[1]
	case len(parts) == 3 && parts[1] == "lib":
		name = parts[2]
	default:
		return "", nil
	}
	if !wantedLib(name) {
		return "", nil
	}
	return name, nil
}

func wantedLib(name string) bool {
	return libNameRE.MatchString(name) || name == providersShared || name == providersCUDA || name == providersTensorRT
}

// entry handles one archive entry, unpacking it when it is a wanted library.
func (x *extraction) entry(hdr *tar.Header, r io.Reader, readErr func(string, error) error) error {
	name, err := libName(hdr.Name)
	if err != nil || name == "" {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		if hdr.Size > maxLibFile || x.total+hdr.Size > maxLibTotal {
			return fmt.Errorf("%w: %s claims %d bytes, more than any ONNX Runtime library", ErrUnsafeArchive, hdr.Name, hdr.Size)
		}
		delete(x.links, name)
		sum, err := x.write(name, r, hdr.Size, readErr)
		if err != nil {
			return err
		}
		x.files[name] = sum
		x.total += sum.Size
	case tar.TypeSymlink:
		// The archive links libonnxruntime.so → .so.1 → .so.1.24.3 inside
		// lib/; any other target could lead outside the library folder.
		t := hdr.Linkname
		if strings.ContainsAny(t, "/\\\x00") || !wantedLib(t) || t == name {
			return fmt.Errorf("%w: symbolic link %s -> %s leads outside the library folder", ErrUnsafeArchive, hdr.Name, t)
		}
		delete(x.files, name)
		os.Remove(filepath.Join(x.dir, name))
		x.links[name] = t
	case tar.TypeLink:
		// A hard link names an earlier entry by its path in the archive.
		t, err := libName(hdr.Linkname)
		if err != nil || t == "" {
			return fmt.Errorf("%w: hard link %s -> %s leads outside the library folder", ErrUnsafeArchive, hdr.Name, hdr.Linkname)
		}
		if _, ok := x.files[t]; !ok {
			return fmt.Errorf("%w: hard link %s -> %s: no such file before it", ErrCorruptArchive, hdr.Name, hdr.Linkname)
		}
		if t == name {
			return nil
		}
		if err := x.copyStaged(t, name); err != nil {
			return err
		}
	}
	// Directories, devices and the like under a library's name are ignored.
	return nil
}

func (x *extraction) openFile(name string) (download.File, error) {
	const flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if x.open != nil {
		return x.open(name, flag, 0o755)
	}
	return os.OpenFile(name, flag, 0o755)
}

// write copies one library into the staging folder and syncs it.
func (x *extraction) write(name string, r io.Reader, size int64, readErr func(string, error) error) (fileSum, error) {
	p := filepath.Join(x.dir, name)
	os.Remove(p) // a symbolic link of the same name, from an earlier entry
	f, err := x.openFile(p)
	if err != nil {
		return fileSum{}, writeError("create", name, err, 0)
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			w, werr := f.Write(buf[:k])
			if werr == nil && w < k {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				f.Close()
				return fileSum{}, writeError("write", name, werr, n+int64(w))
			}
			h.Write(buf[:k])
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return fileSum{}, readErr("read "+name, rerr)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fileSum{}, writeError("sync", name, err, n)
	}
	if err := f.Close(); err != nil {
		return fileSum{}, writeError("close", name, err, n)
	}
	if n != size {
		return fileSum{}, fmt.Errorf("%w: %s holds %d bytes, its header says %d", ErrCorruptArchive, name, n, size)
	}
	return fileSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeError(op, name string, err error, written int64) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if download.IsDiskFull(err) {
		return fmt.Errorf("%w: %s %s failed after %s (%w); free some space and run setup again (nothing was installed)",
			download.ErrDiskFull, op, name, humanSize(written), err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// copyStaged copies a staged file under another name (a hard link in the
// archive, or a symbolic link where the filesystem has none).
func (x *extraction) copyStaged(from, to string) error {
	src, err := os.Open(filepath.Join(x.dir, from))
	if err != nil {
		return err
	}
	defer src.Close()
	sum, err := x.write(to, src, x.files[from].Size, func(what string, err error) error {
		return fmt.Errorf("%s: %w", what, err)
	})
	if err != nil {
		return err
	}
	delete(x.links, to)
	x.files[to] = sum
	return nil
}

// finish checks that every link ends at a staged file and that the engine's
// libraries are all there, then creates the links in the staging folder.
func (x *extraction) finish() error {
	resolve := func(n string) (string, bool) {
		for hops := 0; hops < 8; hops++ {
			if _, ok := x.files[n]; ok {
				return n, true
			}
			t, ok := x.links[n]
			if !ok {
				return "", false
			}
			n = t
		}
		return "", false
	}
	for _, n := range sortedKeys(x.links) {
		if _, ok := resolve(n); !ok {
			return fmt.Errorf("%w: symbolic link %s -> %s leads to no library in the archive", ErrCorruptArchive, n, x.links[n])
		}
	}
	var missing []string
	for _, n := range requiredLibs {
		if _, ok := resolve(n); !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		have := append(sortedKeys(x.files), sortedKeys(x.links)...)
		slices.Sort(have)
		return fmt.Errorf("%w: the archive lacks %s in lib/ (it has: %s); is this an ONNX Runtime GPU release?",
			ErrCorruptArchive, strings.Join(missing, ", "), orNone(have))
	}
	for _, n := range sortedKeys(x.links) {
		if err := os.Symlink(x.links[n], filepath.Join(x.dir, n)); err != nil {
			// A filesystem without symbolic links gets a copy.
			target, _ := resolve(n)
			if cerr := x.copyStaged(target, n); cerr != nil {
				return fmt.Errorf("link %s: %v; copy: %w", n, err, cerr)
			}
		}
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}
