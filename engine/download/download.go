// Package download fetches model files from Hugging Face, Civitai or any
// https URL into the models folder: resumable (a <file>.part grows until it
// is complete), verified (SHA-256), atomic (the final name appears only once
// the file is whole and synced) and with progress reports.
package download

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Environment variables that hold tokens.
const (
	EnvHFToken      = "HF_TOKEN"
	EnvCivitaiToken = "CIVITAI_TOKEN"
)

// Default service addresses.
const (
	DefaultHuggingFaceURL = "https://huggingface.co"
	DefaultCivitaiURL     = "https://civitai.com"
)

// File is what a download writes to; *os.File is one. Tests substitute a
// writer that fails the way a full disk does.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// Client downloads files. The zero value works (no tokens, no automatic
// retries); NewClient reads the tokens from the environment and retries.
type Client struct {
	// HTTP sends the requests; nil means a client with connection and header
	// timeouts but no overall deadline (files are gigabytes). Its
	// CheckRedirect is replaced by one that never forwards Authorization to
	// another host.
	HTTP *http.Client
	// HuggingFaceURL and CivitaiURL are the services' base addresses
	// (defaults above); tests point them at a local server.
	HuggingFaceURL, CivitaiURL string
	// HFToken and CivitaiToken are sent as "Authorization: Bearer" to their
	// service's host only.
	HFToken, CivitaiToken string
	// Retries is how many times one Download resumes after a dropped or
	// stalled connection or a 429/5xx answer before giving up.
	Retries int
	// RetryDelay is the wait before the first retry, doubled each time
	// (default 1 s).
	RetryDelay time.Duration
	// StallTimeout aborts an attempt that receives nothing for this long
	// (default 60 s), so a dead connection turns into a retry.
	StallTimeout time.Duration
	// ProgressInterval is the least time between two progress reports
	// (default 250 ms); the final report is always sent.
	ProgressInterval time.Duration
	// BufferSize is the copy buffer (default 1 MiB).
	BufferSize int
	// OpenFile opens the .part file for writing; nil means os.OpenFile.
	OpenFile func(name string, flag int, perm fs.FileMode) (File, error)
}

// NewClient returns a Client with the tokens from HF_TOKEN (or the older
// HUGGING_FACE_HUB_TOKEN) and CIVITAI_TOKEN and three automatic retries.
func NewClient() *Client {
	hf := os.Getenv(EnvHFToken)
	if hf == "" {
		hf = os.Getenv("HUGGING_FACE_HUB_TOKEN")
	}
	return &Client{HFToken: hf, CivitaiToken: os.Getenv(EnvCivitaiToken), Retries: 3}
}

// Request says what to download where.
type Request struct {
	// Source is "huggingface:owner/repo", "civitai:<version id>" or an https
	// URL (see ParseSource).
	Source string
	// File is the file's path inside a Hugging Face repository; other
	// sources ignore it.
	File string
	// Dest is the final path. The download grows in Dest+".part".
	Dest string
	// SHA256, when set, is the expected hex digest of the whole file.
	SHA256 string
	// Progress, when set, receives reports from the downloading goroutine.
	Progress func(Progress)
}

// Progress is a progress report.
type Progress struct {
	Done  int64 // bytes in the .part file so far, resumed ones included
	Total int64 // size of the whole file; -1 while unknown
	// BytesPerSecond is the rate of the current connection so far.
	BytesPerSecond float64
	// Resumed is how many bytes the current connection started from.
	Resumed int64
}

// Result describes a finished download.
type Result struct {
	Path   string
	Size   int64
	SHA256 string // hex digest of the whole file
	// Resumed is how many bytes came from an earlier, interrupted download.
	Resumed int64
	// Existed is true when Dest was already there and nothing was fetched
	// (it was verified when a SHA-256 was given).
	Existed bool
}

var sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// target is a resolved request.
type target struct {
	url    string
	token  string
	envVar string // the variable that holds the token for this host, if any
}

// URL returns the address Download fetches for a source and file.
func (c *Client) URL(source, file string) (string, error) {
	t, err := c.resolve(source, file)
	return t.url, err
}

func (c *Client) resolve(source, file string) (target, error) {
	src, err := ParseSource(source)
	if err != nil {
		// Tests point the bases at plain-http servers; a base URL itself is
		// trusted configuration, only sources must be https.
		return target{}, err
	}
	hfBase := strings.TrimSuffix(or(c.HuggingFaceURL, DefaultHuggingFaceURL), "/")
	cvBase := strings.TrimSuffix(or(c.CivitaiURL, DefaultCivitaiURL), "/")
	var u string
	switch src.Kind {
	case KindHuggingFace:
		if err := checkRepoPath(file); err != nil {
			return target{}, err
		}
		u = fmt.Sprintf("%s/%s/%s/resolve/main/%s", hfBase, url.PathEscape(src.Owner), url.PathEscape(src.Repo), escapePath(file))
	case KindCivitai:
		u = cvBase + "/api/download/models/" + src.VersionID
	default:
		u = src.URL
	}
	t := target{url: u}
	pu, err := url.Parse(u)
	if err != nil {
		return target{}, fmt.Errorf("bad URL %s: %w", redact(u), unwrapURLError(err))
	}
	// Tokens go to their own service's host, whichever form named it.
	switch pu.Host {
	case hostOf(hfBase):
		t.token, t.envVar = c.HFToken, EnvHFToken
	case hostOf(cvBase):
		t.token, t.envVar = c.CivitaiToken, EnvCivitaiToken
	}
	return t, nil
}

func hostOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Host
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// partMeta is kept next to a .part file so that a later resume asks the
// server for the rest of the same file (If-Range) and restarts if the
// source changed.
type partMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// Download fetches req.Source into req.Dest. An existing Dest counts as done
// (verified when req.SHA256 is set). An existing Dest+".part" is resumed
// with an HTTP Range request. On cancellation, a dropped connection after the
// retries, or a full disk, the .part file is kept for the next call; on a
// checksum mismatch it is removed. The returned errors wrap ErrAuth,
// ErrNotFound, ErrChecksum, ErrDiskFull, context errors or *HTTPError.
func (c *Client) Download(ctx context.Context, req Request) (*Result, error) {
	name := filepath.Base(req.Dest)
	if req.Dest == "" {
		return nil, errors.New("download: no destination path")
	}
	if req.SHA256 != "" && !sha256RE.MatchString(req.SHA256) {
		return nil, fmt.Errorf("download %s: expected SHA-256 %q is not 64 hex digits", name, req.SHA256)
	}
	want := strings.ToLower(req.SHA256)
	t, err := c.resolve(req.Source, req.File)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", name, err)
	}

	if st, err := os.Stat(req.Dest); err == nil {
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("download %s: %s exists and is not a file", name, req.Dest)
		}
		res := &Result{Path: req.Dest, Size: st.Size(), Existed: true}
		if want != "" {
			got, err := hashFile(req.Dest, -1)
			if err != nil {
				return nil, fmt.Errorf("download %s: verify existing file: %w", name, err)
			}
			if got != want {
				return nil, fmt.Errorf("download %s: %w: %s exists with SHA-256 %s, expected %s; delete it to download again",
					name, ErrChecksum, req.Dest, got, want)
			}
			res.SHA256 = got
		}
		return res, nil
	}

	// Two downloads into one .part would interleave their bytes.
	key, err := filepath.Abs(req.Dest)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", name, err)
	}
	if _, busy := active.LoadOrStore(key, true); busy {
		return nil, fmt.Errorf("download %s: %w", name, ErrBusy)
	}
	defer active.Delete(key)

	d := &job{c: c, req: req, t: t, want: want, part: req.Dest + ".part", meta: req.Dest + ".part.json", name: name}
	delay := or64(c.RetryDelay, time.Second)
	for attempt := 0; ; attempt++ {
		res, err := d.attempt(ctx)
		if err == nil {
			return res, nil
		}
		if errors.Is(err, errRestart) {
			attempt-- // the part was discarded; start over at once
			continue
		}
		if ctx.Err() != nil {
			return nil, d.cancelled(ctx.Err())
		}
		if !isRetryable(err) || attempt >= c.Retries {
			return nil, fmt.Errorf("download %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, d.cancelled(ctx.Err())
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func or64(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// active holds the absolute destinations being downloaded in this process.
var active sync.Map

// errRestart asks Download to start again from byte 0 after the .part file
// turned out unusable (the server's range did not match it).
var errRestart = errors.New("restart download")

type job struct {
	c                *Client
	req              Request
	t                target
	want             string
	part, meta, name string
	restarts         int
}

func (d *job) httpClient() *http.Client {
	var hc http.Client
	if d.c.HTTP != nil {
		hc = *d.c.HTTP
	} else {
		hc.Transport = defaultTransport
	}
	hc.CheckRedirect = checkRedirect
	return &hc
}

var defaultTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   30 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	ForceAttemptHTTP2:     true,
}

// checkRedirect follows up to 10 redirects, refuses https → http, and drops
// Authorization when the next hop is another host: Civitai and Hugging Face
// redirect to CDNs with signed URLs, which must not see the token. (net/http
// itself keeps the header for subdomains and for another port.)
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	first := via[0].URL
	if first.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refused redirect from https to %s", redact(req.URL.String()))
	}
	if req.URL.Host != first.Host {
		req.Header.Del("Authorization")
	}
	return nil
}

// attempt makes one request and writes what it returns.
func (d *job) attempt(parent context.Context) (*Result, error) {
	offset := int64(0)
	if st, err := os.Stat(d.part); err == nil {
		offset = st.Size()
	}
	meta := d.readMeta()
	if offset > 0 && meta != nil && meta.URL != d.t.url {
		// The .part belongs to another source: it cannot be continued.
		offset = 0
	}

	// The digest covers the whole file, the bytes kept from before too. They
	// are hashed before the request so that the connection never idles.
	hash := sha256.New()
	if offset > 0 {
		if err := hashPrefix(hash, d.part, offset); err != nil {
			return nil, fmt.Errorf("read %s: %w", d.part, err)
		}
	}

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var stalled atomic.Bool
	watchdog := time.AfterFunc(or64(d.c.StallTimeout, 60*time.Second), func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, d.t.url, nil)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", redact(d.t.url), err)
	}
	hreq.Header.Set("User-Agent", "pixery-engine")
	// A compressed transfer would make byte offsets ambiguous for Range.
	hreq.Header.Set("Accept-Encoding", "identity")
	if d.t.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+d.t.token)
	}
	if offset > 0 {
		hreq.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if meta != nil {
			if meta.ETag != "" && !strings.HasPrefix(meta.ETag, "W/") {
				hreq.Header.Set("If-Range", meta.ETag)
			} else if meta.LastModified != "" {
				hreq.Header.Set("If-Range", meta.LastModified)
			}
		}
	}
	resp, err := d.httpClient().Do(hreq)
	if err != nil {
		if stalled.Load() {
			return nil, &transferError{fmt.Errorf("no answer from %s: %w", redact(d.t.url), errStalled)}
		}
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		return nil, &transferError{fmt.Errorf("request %s: %w", redact(d.t.url), unwrapURLError(err))}
	}
	defer resp.Body.Close()
	watchdog.Reset(or64(d.c.StallTimeout, 60*time.Second))

	total := int64(-1)
	switch resp.StatusCode {
	case http.StatusOK:
		// Either a fresh start or a server that ignores Range (or an If-Range
		// that no longer matches): the body is the whole file.
		offset = 0
		total = resp.ContentLength
	case http.StatusPartialContent:
		start, end, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset || (size >= 0 && end != size-1) {
			return nil, d.restart(fmt.Errorf("server sent range %q for a request from byte %d", resp.Header.Get("Content-Range"), offset))
		}
		total = size
	case http.StatusRequestedRangeNotSatisfiable:
		// The .part holds at least the whole file. If it is exactly the file,
		// an earlier attempt was interrupted between the last byte and the
		// rename; otherwise it is garbage.
		_, _, size, _ := parseContentRange(resp.Header.Get("Content-Range"))
		if offset > 0 && size == offset {
			return d.finish(offset, offset, hash.Sum(nil))
		}
		return nil, d.restart(fmt.Errorf("server cannot serve byte %d on (file size %d)", offset, size))
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, d.authError(resp.StatusCode)
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s answered 404 (check the source and file name)", ErrNotFound, redact(d.t.url))
	default:
		return nil, &HTTPError{StatusCode: resp.StatusCode, URL: redact(d.t.url)}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/html" {
		// Sites answer a missing login or license acceptance with a page.
		msg := fmt.Sprintf("%s sent a web page instead of the file", redact(d.t.url))
		if d.t.envVar != "" && d.t.token == "" {
			msg += fmt.Sprintf(" (it may need a token: set %s)", d.t.envVar)
		}
		return nil, errors.New(msg)
	}

	flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if offset == 0 {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		d.writeMeta(resp)
	}
	if offset == 0 {
		hash = sha256.New()
	}
	f, err := d.openFile(d.part, flag)
	if err != nil {
		return nil, d.writeError("open", err, offset)
	}

	progress := d.progress(offset, total)
	bufSize := d.c.BufferSize
	if bufSize <= 0 {
		bufSize = 1 << 20
	}
	buf := make([]byte, bufSize)
	done := offset
	progress(done, true)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			watchdog.Reset(or64(d.c.StallTimeout, 60*time.Second))
			if w, werr := f.Write(buf[:n]); werr != nil {
				f.Close()
				return nil, d.writeError("write", werr, done+int64(w))
			}
			hash.Write(buf[:n])
			done += int64(n)
			progress(done, false)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Keep what arrived: sync so the next attempt's offset is real.
			f.Sync()
			f.Close()
			switch {
			case parent.Err() != nil:
				return nil, parent.Err()
			case stalled.Load():
				return nil, &transferError{fmt.Errorf("%s: %w after %d bytes", redact(d.t.url), errStalled, done)}
			}
			return nil, &transferError{fmt.Errorf("connection to %s broke after %d bytes: %w", redact(d.t.url), done, rerr)}
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, d.writeError("sync", err, done)
	}
	if err := f.Close(); err != nil {
		return nil, d.writeError("close", err, done)
	}
	if total >= 0 && done != total {
		return nil, &transferError{fmt.Errorf("%s ended at byte %d of %d", redact(d.t.url), done, total)}
	}
	progress(done, true)
	return d.finish(done, offset, hash.Sum(nil))
}

var errStalled = errors.New("connection stalled")

// finish verifies the completed .part, whose digest is sum, and gives it the
// final name.
func (d *job) finish(size, resumed int64, sum []byte) (*Result, error) {
	got := hex.EncodeToString(sum)
	if d.want != "" && got != d.want {
		os.Remove(d.part)
		os.Remove(d.meta)
		return nil, fmt.Errorf("%w: got SHA-256 %s, expected %s; the partial file was removed", ErrChecksum, got, d.want)
	}
	if err := os.Rename(d.part, d.req.Dest); err != nil {
		return nil, fmt.Errorf("rename %s: %w", d.part, err)
	}
	if err := syncDir(filepath.Dir(d.req.Dest)); err != nil {
		return nil, fmt.Errorf("sync folder of %s: %w", d.req.Dest, err)
	}
	os.Remove(d.meta)
	return &Result{Path: d.req.Dest, Size: size, SHA256: got, Resumed: resumed}, nil
}

// cancelled wraps a context error, saying whether a .part waits for the
// next call.
func (d *job) cancelled(err error) error {
	if st, serr := os.Stat(d.part); serr == nil && st.Size() > 0 {
		return fmt.Errorf("download %s: %w (%d bytes kept in %s for resuming)", d.name, err, st.Size(), filepath.Base(d.part))
	}
	return fmt.Errorf("download %s: %w", d.name, err)
}

// restart discards the .part file so the next attempt starts from byte 0.
// It gives up if that keeps happening, which means a broken server.
func (d *job) restart(why error) error {
	d.restarts++
	if d.restarts > 2 {
		return fmt.Errorf("resume failed twice: %w", why)
	}
	if err := os.Remove(d.part); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("discard %s: %w", d.part, err)
	}
	os.Remove(d.meta)
	return errRestart
}

func (d *job) authError(status int) error {
	host := redact(d.t.url)
	if u, err := url.Parse(d.t.url); err == nil {
		host = u.Host
	}
	switch {
	case d.t.envVar == "":
		return fmt.Errorf("%w: %s answered %d %s; this server needs credentials pixery cannot send",
			ErrAuth, host, status, http.StatusText(status))
	case d.t.token == "":
		return fmt.Errorf("%w: %s answered %d %s: this file needs an access token; set %s and try again",
			ErrAuth, host, status, http.StatusText(status), d.t.envVar)
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: %s answered 403 Forbidden with the token from %s: the token lacks access to this file (for a gated model, accept its license on the model page first)",
			ErrAuth, host, d.t.envVar)
	default:
		return fmt.Errorf("%w: %s rejected the token from %s (%d %s): check that it is valid",
			ErrAuth, host, d.t.envVar, status, http.StatusText(status))
	}
}

func (d *job) writeError(op string, err error, written int64) error {
	// The path is named once, here.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if isDiskFull(err) {
		return fmt.Errorf("%w: %s %s failed after %d bytes (%w); free some space and run the download again to resume",
			ErrDiskFull, op, d.part, written, err)
	}
	return fmt.Errorf("%s %s: %w", op, d.part, err)
}

func (d *job) openFile(name string, flag int) (File, error) {
	if d.c.OpenFile != nil {
		return d.c.OpenFile(name, flag, 0o644)
	}
	return os.OpenFile(name, flag, 0o644)
}

func (d *job) readMeta() *partMeta {
	b, err := os.ReadFile(d.meta)
	if err != nil {
		return nil
	}
	var m partMeta
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return &m
}

// writeMeta records the validators of a fresh download. Failing to write it
// only costs the If-Range check later, so errors are ignored.
func (d *job) writeMeta(resp *http.Response) {
	m := partMeta{URL: d.t.url, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	b, _ := json.Marshal(m)
	os.WriteFile(d.meta, b, 0o644)
}

// progress returns the reporter for one attempt.
func (d *job) progress(start, total int64) func(done int64, final bool) {
	if d.req.Progress == nil {
		return func(int64, bool) {}
	}
	began := time.Now()
	interval := or64(d.c.ProgressInterval, 250*time.Millisecond)
	var last time.Time
	return func(done int64, final bool) {
		now := time.Now()
		if !final && now.Sub(last) < interval {
			return
		}
		last = now
		rate := 0.0
		if el := now.Sub(began).Seconds(); el > 0 {
			rate = float64(done-start) / el
		}
		d.req.Progress(Progress{Done: done, Total: total, BytesPerSecond: rate, Resumed: start})
	}
}

// parseContentRange parses "bytes start-end/size" (size may be "*", giving
// -1) and "bytes */size" (giving start = end = -1).
func parseContentRange(s string) (start, end, size int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return -1, -1, -1, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return -1, -1, -1, false
	}
	size = -1
	if sz != "*" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n < 0 {
			return -1, -1, -1, false
		}
		size = n
	}
	if rng == "*" {
		return -1, -1, size, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return -1, -1, -1, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return -1, -1, -1, false
	}
	return start, end, size, true
}

// hashPrefix feeds the first n bytes of a file to h.
func hashPrefix(h io.Writer, name string, n int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := io.Copy(h, io.LimitReader(f, n))
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("file shrank to %d bytes while resuming", got)
	}
	return nil
}

// hashFile returns the hex SHA-256 of a file (its first n bytes when n ≥ 0).
func hashFile(name string, n int64) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	var r io.Reader = f
	if n >= 0 {
		r = io.LimitReader(f, n)
	}
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
