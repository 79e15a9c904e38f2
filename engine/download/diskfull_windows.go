//go:build windows

package download

import (
	"errors"
	"syscall"
)

// Windows reports a full disk as ERROR_DISK_FULL (112) or
// ERROR_HANDLE_DISK_FULL (39).
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.Errno(112)) || errors.Is(err, syscall.Errno(39))
}

// syncDir is a no-op: Windows cannot open a directory for syncing, and
// MoveFileEx (os.Rename) is durable on NTFS once it returns.
func syncDir(string) error { return nil }
