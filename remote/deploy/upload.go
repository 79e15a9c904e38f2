package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ErrChecksumMismatch means the copy on the host differs from the local
// file after the upload.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// ErrDiskFull means the host has no room for what is being uploaded.
var ErrDiskFull = errors.New("the host's disk is full")

// DiskFullError says how much room there was and how much was needed.
type DiskFullError struct {
	Dir        string
	Free, Need int64 // bytes; Free is -1 when unknown
	Err        error // the failed write, if it came to that
}

func (e *DiskFullError) Error() string {
	free := "unknown"
	if e.Free >= 0 {
		free = humanBytes(e.Free)
	}
	msg := fmt.Sprintf("the host's disk is full: %s has %s free, the upload needs %s more; rent an instance with a bigger disk or free space there",
		e.Dir, free, humanBytes(e.Need))
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrDiskFull) true.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

func (e *DiskFullError) Unwrap() error { return e.Err }

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Source is something to upload: a local file or bytes in memory.
type Source interface {
	io.ReaderAt
	Size() int64
}

// Progress reports a deploy step; Done/Total count bytes for uploads.
type Progress struct {
	// Step is "upload", "verify", "setup", "wait" (Update waits for the
	// engine's jobs), "grace" (the engine is idle; clients fetch the last
	// images), "stop", "start" or "health".
	Step    string
	File    string // remote path, for upload and verify
	Done    int64
	Total   int64
	Resumed int64 // bytes that were already on the host
	// Queued and Running are the engine's queue as /v1/health reported
	// it while Update waits (step "wait"): jobs waiting, the running
	// job's id.
	Queued  int
	Running string
	// Message says in words what happens during "wait" and "grace".
	Message string
}

// UploadResult says what an upload did.
type UploadResult struct {
	SHA256  string
	Size    int64
	Sent    int64 // bytes sent this time
	Resumed int64 // bytes kept from an earlier, interrupted upload
	Skipped bool  // the host already had the same file
}

// testHookBeforeVerify lets tests corrupt the uploaded data.
var testHookBeforeVerify func(part string)

// Upload copies src to remote on the host, atomically and resumably:
//
//   - It writes remote+".part", then checks sha256 of the .part computed on
//     the host (openssl dgst or sha256sum, over SSH) against the local data
//     (hashed while it is sent), and only then renames it over remote. A
//     reader never sees a half-written file.
//   - If a .part is already there (an interrupted upload), its length L is
//     kept when sha256 of its first L bytes on the host equals sha256 of the
//     first L local bytes; otherwise it is uploaded again from the start.
//     (Concurrent SFTP writes can leave a hole before the end of a broken
//     .part; the prefix hash catches that.)
//   - If remote already has the same content, nothing is sent.
//   - The free space of the folder is checked first, and a failed write on
//     a full disk becomes a DiskFullError.
func (h *Host) Upload(ctx context.Context, src Source, remote string, mode os.FileMode, progress func(Progress)) (*UploadResult, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	size := src.Size()
	res := &UploadResult{Size: size}
	// The local sha256 is computed while the data goes out (one pass over
	// the file), except when the host may already have the same file.
	hasher := sha256.New()
	if st, err := h.sftp.Stat(remote); err == nil && st.Size() == size {
		sum, err := hashPrefix(src, size)
		if err != nil {
			return nil, fmt.Errorf("upload %s: hash local data: %w", remote, err)
		}
		res.SHA256 = sum
		if got, err := h.remoteSHA256(ctx, remote, -1); err == nil && got == sum {
			if err := h.sftp.Chmod(remote, mode); err != nil {
				return nil, fmt.Errorf("upload %s: chmod: %w", remote, err)
			}
			res.Skipped = true
			progress(Progress{Step: "upload", File: remote, Done: size, Total: size, Resumed: size})
			return res, nil
		}
	}
	part := remote + ".part"
	var offset int64
	if st, err := h.sftp.Stat(part); err == nil && st.Size() > 0 && st.Size() <= size {
		_, err1 := io.Copy(hasher, io.NewSectionReader(src, 0, st.Size()))
		remotePrefix, err2 := h.remoteSHA256(ctx, part, st.Size())
		if err1 == nil && err2 == nil && hex.EncodeToString(hasher.Sum(nil)) == remotePrefix {
			offset = st.Size() // hasher holds the prefix: go on from there
		} else {
			hasher.Reset()
		}
	}
	res.Resumed = offset
	if err := h.checkFree(ctx, path.Dir(remote), size-offset); err != nil {
		return nil, fmt.Errorf("upload %s: %w", remote, err)
	}
	flags := os.O_WRONLY | os.O_CREATE
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	f, err := h.sftp.OpenFile(part, flags)
	if err != nil {
		return nil, fmt.Errorf("upload %s: open %s: %w", remote, part, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("upload %s: %w", remote, err)
	}
	var data io.Reader = io.NewSectionReader(src, offset, size-offset)
	var bg *backgroundHash
	if res.SHA256 == "" {
		// pkg/sftp reads its source sequentially, in one goroutine, even
		// with concurrent writes, so the hash sees the bytes in order. It
		// runs beside the transfer rather than in its path.
		bg = newBackgroundHash(hasher)
		defer bg.finish()
		data = io.TeeReader(data, bg)
	}
	r := &progressReader{ctx: ctx, r: data, done: offset, total: size,
		report: func(done int64) {
			progress(Progress{Step: "upload", File: remote, Done: done, Total: size, Resumed: offset})
		}}
	progress(Progress{Step: "upload", File: remote, Done: offset, Total: size, Resumed: offset})
	_, werr := f.ReadFromWithConcurrency(r, h.writesInFlight)
	cerr := f.Close()
	res.Sent = r.done - offset
	if werr == nil {
		werr = cerr
	}
	if werr == nil && r.done != size {
		werr = fmt.Errorf("local data ended after %d of %d bytes (file changed while uploading?)", r.done, size)
	}
	if werr != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("upload %s: interrupted after %s (run it again to resume): %w", remote, humanBytes(r.done), ctx.Err())
		}
		if df := h.diskFull(ctx, path.Dir(remote), size-r.done, werr); df != nil {
			return res, fmt.Errorf("upload %s: %w", remote, df)
		}
		return res, fmt.Errorf("upload %s: write: %w (run it again to resume)", remote, werr)
	}
	if res.SHA256 == "" {
		res.SHA256 = hex.EncodeToString(bg.finish())
	}
	sum := res.SHA256
	if testHookBeforeVerify != nil {
		testHookBeforeVerify(part)
	}
	progress(Progress{Step: "verify", File: remote, Done: size, Total: size, Resumed: offset})
	got, err := h.remoteSHA256(ctx, part, -1)
	if err != nil {
		return res, fmt.Errorf("upload %s: verify: %w", remote, err)
	}
	if got != sum {
		_ = h.sftp.Remove(part)
		return res, fmt.Errorf("upload %s: %w: the host computed sha256 %s, the local file has %s; the bad copy was removed, run the upload again",
			remote, ErrChecksumMismatch, got, sum)
	}
	if err := h.sftp.Chmod(part, mode); err != nil {
		return res, fmt.Errorf("upload %s: chmod: %w", remote, err)
	}
	if err := h.rename(part, remote); err != nil {
		return res, fmt.Errorf("upload %s: rename into place: %w", remote, err)
	}
	return res, nil
}

// rename replaces newname atomically when the server has the
// posix-rename extension (OpenSSH has), else removes it first.
func (h *Host) rename(oldname, newname string) error {
	if _, ok := h.sftp.HasExtension("posix-rename@openssh.com"); ok {
		return h.sftp.PosixRename(oldname, newname)
	}
	_ = h.sftp.Remove(newname)
	return h.sftp.Rename(oldname, newname)
}

// remoteSHA256 hashes a file on the host, or its first n bytes (n ≥ 0).
// It uses `openssl dgst` where the host has it (about twice as fast as
// coreutils' sha256sum on CPUs with SHA extensions; same digest) and
// sha256sum otherwise.
func (h *Host) remoteSHA256(ctx context.Context, file string, n int64) (string, error) {
	src := shq(file)
	feed := ""
	if n >= 0 {
		feed = "head -c " + strconv.FormatInt(n, 10) + " -- " + src + " | "
		src = ""
	} else {
		src = " -- " + src
	}
	script := "if command -v openssl >/dev/null 2>&1; then " + feed + "openssl dgst -sha256 -r" + strings.Replace(src, " -- ", " ", 1) +
		"; else " + feed + "sha256sum" + src + "; fi"
	out, err := h.output(ctx, "sha256 on the host", script)
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("hashing on the host printed %q", strings.TrimSpace(out))
	}
	return strings.ToLower(f[0]), nil
}

func hashPrefix(src io.ReaderAt, n int64) (string, error) {
	hh := sha256.New()
	if _, err := io.Copy(hh, io.NewSectionReader(src, 0, n)); err != nil {
		return "", err
	}
	return hex.EncodeToString(hh.Sum(nil)), nil
}

// freeSpace returns the bytes available in dir on the host: statvfs over
// SFTP (OpenSSH's statvfs@openssh.com), else `df`.
func (h *Host) freeSpace(ctx context.Context, dir string) (int64, error) {
	if st, err := h.sftp.StatVFS(dir); err == nil {
		return int64(st.Bavail * st.Frsize), nil
	}
	out, err := h.output(ctx, "df", "df -Pk -- "+shq(dir)+" | tail -n 1")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) < 4 {
		return 0, fmt.Errorf("df printed %q", strings.TrimSpace(out))
	}
	kb, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("df printed %q", strings.TrimSpace(out))
	}
	return kb * 1024, nil
}

// checkFree fails early when need bytes will not fit in dir. Unknown free
// space is not an error: the write itself will tell.
func (h *Host) checkFree(ctx context.Context, dir string, need int64) error {
	free, err := h.freeSpace(ctx, dir)
	if err != nil || free >= need {
		return nil
	}
	return &DiskFullError{Dir: dir, Free: free, Need: need}
}

// diskFull decides whether a failed write was the disk filling up.
// OpenSSH's sftp-server reports ENOSPC only as a generic "failure", so the
// free space is asked; servers that pass the errno text say it directly.
func (h *Host) diskFull(ctx context.Context, dir string, remaining int64, werr error) error {
	msg := strings.ToLower(werr.Error())
	byText := errors.Is(werr, syscall.ENOSPC) || strings.Contains(msg, "no space left") ||
		strings.Contains(msg, "quota") || strings.Contains(msg, "disk full")
	free, err := h.freeSpace(ctx, dir)
	if err != nil {
		free = -1
	}
	if byText || (free >= 0 && free < max(remaining, 1)) {
		return &DiskFullError{Dir: dir, Free: free, Need: remaining, Err: werr}
	}
	return nil
}

// backgroundHash feeds a hash from its own goroutine: Write copies the
// bytes into one of a few buffers and returns, so hashing overlaps the
// transfer on another core.
type backgroundHash struct {
	h    hash.Hash
	free chan []byte
	work chan []byte
	done chan struct{}
	sum  []byte
	once sync.Once
}

func newBackgroundHash(h hash.Hash) *backgroundHash {
	b := &backgroundHash{h: h, free: make(chan []byte, 8), work: make(chan []byte, 8), done: make(chan struct{})}
	for i := 0; i < cap(b.free); i++ {
		b.free <- make([]byte, 0, 256<<10)
	}
	go func() {
		defer close(b.done)
		for p := range b.work {
			b.h.Write(p)
			b.free <- p[:0]
		}
	}()
	return b
}

func (b *backgroundHash) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		buf := <-b.free
		n := min(len(rest), cap(buf))
		b.work <- append(buf, rest[:n]...)
		rest = rest[n:]
	}
	return len(p), nil
}

// finish waits for the hash to catch up and returns the sum.
func (b *backgroundHash) finish() []byte {
	b.once.Do(func() {
		close(b.work)
		<-b.done
		b.sum = b.h.Sum(nil)
	})
	return b.sum
}

// progressReader counts bytes, reports them about every 1 MiB, and stops
// with the context.
type progressReader struct {
	ctx    context.Context
	r      io.Reader
	done   int64
	total  int64
	last   int64
	report func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.done-p.last >= 1<<20 || (err == io.EOF && p.done != p.last) || p.done == p.total {
		p.last = p.done
		p.report(p.done)
	}
	return n, err
}
