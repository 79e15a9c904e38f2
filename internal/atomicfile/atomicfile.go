// Package atomicfile replaces files so that a reader, or the next run
// after a crash, sees the old content or the new, never a part of either.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data: a temporary file in the same folder (so
// the rename cannot cross file systems) is given perm, written, synced,
// and renamed over path, and then the folder is synced so the rename
// itself survives a crash. On failure the temporary file is removed and
// path is left as it was. The folder must exist. Errors are the
// file system's own (they name the file); callers add their context.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes 0600 files: set the mode before writing so that a
	// secret is never in a wider file, and a public one ends up readable.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, e := os.Open(dir); e == nil {
		_ = d.Sync() // not every file system syncs folders; the rename stands anyway
		d.Close()
	}
	return nil
}
