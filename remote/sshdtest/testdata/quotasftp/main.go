// Command quotasftp is an SFTP subsystem for remote/'s disk-full tests on
// machines where a small tmpfs cannot be mounted. It keeps files in memory
// and behaves like a host that is out of room: statvfs reports
// -statvfs-free bytes available, and writes fail with ENOSPC ("no space
// left on device") once -quota bytes have been written.
package main

import (
	"flag"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/pkg/sftp"
)

func main() {
	free := flag.Int64("statvfs-free", 1<<40, "bytes statvfs reports available")
	quota := flag.Int64("quota", 1<<40, "bytes writable before ENOSPC")
	flag.Parse()
	mem := sftp.InMemHandler()
	h := sftp.Handlers{
		FileGet:  mem.FileGet,
		FilePut:  &quotaPut{left: *quota},
		FileCmd:  &cmds{inner: mem.FileCmd, free: *free},
		FileList: mem.FileList,
	}
	srv := sftp.NewRequestServer(struct {
		io.Reader
		io.WriteCloser
	}{os.Stdin, os.Stdout}, h)
	if err := srv.Serve(); err != nil && err != io.EOF {
		os.Exit(1)
	}
}

// quotaPut accepts writes (the data is dropped) until the quota is used up.
type quotaPut struct {
	mu   sync.Mutex
	left int64
}

func (q *quotaPut) Filewrite(*sftp.Request) (io.WriterAt, error) { return q, nil }

func (q *quotaPut) WriteAt(b []byte, _ int64) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if int64(len(b)) > q.left {
		return 0, syscall.ENOSPC
	}
	q.left -= int64(len(b))
	return len(b), nil
}

type cmds struct {
	inner sftp.FileCmder
	free  int64
}

func (c *cmds) Filecmd(r *sftp.Request) error { return c.inner.Filecmd(r) }

func (c *cmds) PosixRename(r *sftp.Request) error {
	return c.inner.(sftp.PosixRenameFileCmder).PosixRename(r)
}

func (c *cmds) StatVFS(*sftp.Request) (*sftp.StatVFS, error) {
	const bs = 4096
	return &sftp.StatVFS{Bsize: bs, Frsize: bs, Blocks: uint64(c.free/bs) + 16, Bfree: uint64(c.free / bs),
		Bavail: uint64(c.free / bs), Files: 1000, Ffree: 1000, Favail: 1000, Namemax: 255}, nil
}
