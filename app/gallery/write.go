package gallery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/pngmeta"
)

// writeAtomic writes src to a new file named base (or base-2, base-3… when
// taken) in dir: into a temporary file first, flushed to disk, then linked
// into place, so that the file appears whole or not at all and never
// replaces another. mtime, when not zero, becomes the file's modification
// time. It returns the new file's path.
func (s *Store) writeAtomic(dir, base string, src io.Reader, mtime time.Time) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create folder: %w", err)
	}
	tmp, err := s.createTemp(dir, ".pixery-*.tmp")
	if err != nil {
		return "", fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	name := tmp.Name()
	placed := false
	defer func() {
		if !placed {
			os.Remove(name)
		}
	}()
	// The errors name the file already (*fs.PathError).
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("flush image to disk: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write image: %w", err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(name, mtime, mtime); err != nil {
			return "", fmt.Errorf("set time of %s: %w", name, err)
		}
	}
	final, err := claimName(name, dir, base)
	if err != nil {
		return "", err
	}
	placed = true
	syncDir(dir)
	return final, nil
}

// candidateName is the n-th name tried for base: base itself, then
// stem-2.ext, stem-3.ext….
func candidateName(base string, n int) string {
	if n == 1 {
		return base
	}
	ext := filepath.Ext(base)
	return strings.TrimSuffix(base, ext) + "-" + strconv.Itoa(n) + ext
}

// maxNameTries bounds the search for a free file name.
const maxNameTries = 10000

// claimName moves the file src to the first free name for base in dir and
// returns its path. A hard link claims the name only if it is free (rename
// would silently replace a file); where links are not supported it falls
// back to checking, then renaming.
func claimName(src, dir, base string) (string, error) {
	for n := 1; n <= maxNameTries; n++ {
		dst := filepath.Join(dir, candidateName(base, n))
		err := os.Link(src, dst)
		if err == nil {
			if err := os.Remove(src); err != nil {
				// Both names now hold the file; remove the new one so the
				// caller can report the failure with nothing changed.
				os.Remove(dst)
				return "", fmt.Errorf("move %s into place: %w", src, err)
			}
			return dst, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if _, statErr := os.Lstat(dst); statErr == nil {
			continue
		} else if !errors.Is(statErr, fs.ErrNotExist) {
			return "", fmt.Errorf("move into %s: %w", dst, statErr)
		}
		if err := os.Rename(src, dst); err != nil {
			return "", fmt.Errorf("move into %s: %w", dst, err)
		}
		return dst, nil
	}
	return "", fmt.Errorf("no free file name like %s in %s", base, dir)
}

// syncDir flushes a folder's entries to disk, so a file renamed into it
// survives a crash. Not every platform can (Windows cannot open folders for
// it), so failures are ignored: the file's own data was flushed already.
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// idOf returns the gallery ID of a path inside the gallery.
func (s *Store) idOf(p string) (string, error) {
	rel, err := filepath.Rel(s.dir, p)
	if err != nil {
		return "", err
	}
	id := filepath.ToSlash(rel)
	if !validID(id) {
		return "", fmt.Errorf("%s is not a gallery image path", p)
	}
	return id, nil
}

// indexLocked reads the file id and indexes it (or records why it cannot
// be); s.mu must be held.
func (s *Store) indexLocked(ctx context.Context, id string) (Item, error) {
	s.writes++
	p := filepath.Join(s.dir, filepath.FromSlash(id))
	it, notes, readErr := readItem(p, id)
	err := s.changeRows(ctx, []string{id}, func(ex execer) error {
		if readErr == nil {
			return putItem(ctx, ex, &it, notes)
		}
		var size, mtime int64
		if fi, statErr := os.Stat(p); statErr == nil {
			size, mtime = fi.Size(), mtimeNanos(fi.ModTime())
		}
		if err := dropEntry(ctx, ex, id); err != nil {
			return err
		}
		return putProblem(ctx, ex, id, size, mtime, readErr.Error(), false)
	})
	if readErr != nil {
		return Item{}, fmt.Errorf("read %s: %w", id, readErr)
	}
	if err != nil {
		return it, err
	}
	return it, nil
}

// dropLocked removes an ID from the index; s.mu must be held.
func (s *Store) dropLocked(ctx context.Context, id string) error {
	s.writes++
	return s.changeRows(ctx, []string{id}, func(ex execer) error { return dropEntry(ctx, ex, id) })
}

// Save writes a PNG image into the gallery and indexes it. recipe, when not
// nil, is the image's metadata: its A1111 "parameters" and pixery chunks are
// inserted unless the PNG carries them already (the engine writes them
// itself). The file goes into a folder named for the day, as
// HHMMSS-seed.png, and is written atomically: it is whole and on disk when
// Save returns. If the file was written but could not be indexed, the Item
// is returned with the error, and a later Sync indexes it.
func (s *Store) Save(ctx context.Context, data []byte, recipe *pngmeta.Recipe) (Item, error) {
	if err := s.check(ctx); err != nil {
		return Item{}, err
	}
	if recipe != nil {
		have, err := pngmeta.ReadText(bytes.NewReader(data))
		if err != nil {
			return Item{}, fmt.Errorf("gallery: save: %w", err)
		}
		chunks, err := recipe.Chunks()
		if err != nil {
			return Item{}, fmt.Errorf("gallery: save: %w", err)
		}
		var missing []pngmeta.TextChunk
		for _, c := range chunks {
			present := false
			for _, h := range have {
				present = present || h.Keyword == c.Keyword
			}
			if !present {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			if data, err = pngmeta.InsertText(data, missing...); err != nil {
				return Item{}, fmt.Errorf("gallery: save: %w", err)
			}
		}
	}
	desc, _, err := describe(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return Item{}, fmt.Errorf("gallery: save: %w", err)
	}
	now := s.now()
	base := now.Format("150405")
	if desc.HasSeed {
		base += "-" + strconv.FormatInt(desc.Seed, 10)
	}
	dir := filepath.Join(s.dir, now.Format("2006-01-02"))
	p, err := s.writeAtomic(dir, base+".png", bytes.NewReader(data), time.Time{})
	if err != nil {
		return Item{}, fmt.Errorf("gallery: save image: %w", err)
	}
	id, err := s.idOf(p)
	if err != nil {
		return Item{}, fmt.Errorf("gallery: save: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.indexLocked(ctx, id)
	if err != nil {
		if it.ID == "" {
			it = desc
			it.ID, it.Path = id, p
		}
		return it, fmt.Errorf("gallery: saved %s but could not index it: %w", p, err)
	}
	return it, nil
}

// ImportDir is the gallery folder Import copies images into.
const ImportDir = "imported"

// ImportResult is what Import did.
type ImportResult struct {
	// Items are the images imported, or found already in the gallery.
	Items []Item
	// Problems are the files not imported and why (ID holds their path).
	Problems []Problem
}

// Import copies PNG images (files, or folders searched recursively for
// .png files, hidden ones left out) into the gallery's ImportDir folder,
// keeping their names (name-2.png etc. when taken) and modification times,
// and indexes them. Files that are not PNG images are not copied and are
// listed as problems; a file already imported (same name, same content) is
// not copied again; files already inside the gallery are only indexed. The
// error is non-nil only when ctx ends or the store is closed; failures of
// single files (unreadable, not a PNG, disk full) are in Problems.
func (s *Store) Import(ctx context.Context, paths ...string) (ImportResult, error) {
	var res ImportResult
	if err := s.check(ctx); err != nil {
		return res, err
	}
	var files []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			res.Problems = append(res.Problems, Problem{ID: p, Err: err.Error()})
			continue
		}
		fi, err := os.Stat(abs)
		if err != nil {
			res.Problems = append(res.Problems, Problem{ID: p, Err: err.Error()})
			continue
		}
		if !fi.IsDir() {
			files = append(files, abs)
			continue
		}
		err = filepath.WalkDir(abs, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				res.Problems = append(res.Problems, Problem{ID: q, Err: err.Error()})
				if d != nil && d.IsDir() && q != abs {
					return filepath.SkipDir
				}
				return nil
			}
			if q != abs && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() && isPNGName(d.Name()) {
				files = append(files, q)
			}
			return ctx.Err()
		})
		if err != nil {
			return res, err
		}
	}
	for _, f := range files {
		if err := s.check(ctx); err != nil {
			return res, err
		}
		it, err := s.importFile(ctx, f)
		if err != nil {
			res.Problems = append(res.Problems, Problem{ID: f, Err: err.Error()})
			continue
		}
		res.Items = append(res.Items, it)
	}
	return res, nil
}

func (s *Store) importFile(ctx context.Context, src string) (Item, error) {
	if inside(s.dir, src) {
		id, err := s.idOf(src)
		if err != nil {
			return Item{}, err
		}
		if !isPNGName(id) {
			return Item{}, errors.New("already inside the gallery folder but not named .png, so it would not be indexed")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.indexLocked(ctx, id)
	}
	f, err := os.Open(src)
	if err != nil {
		return Item{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Item{}, err
	}
	if !fi.Mode().IsRegular() {
		return Item{}, errors.New("not a regular file")
	}
	sr := io.NewSectionReader(f, 0, fi.Size())
	if _, _, err := describe(f, fi.Size()); err != nil {
		return Item{}, err
	}
	base := strings.TrimLeft(filepath.Base(src), ".")
	if !isPNGName(base) {
		base += ".png"
	}
	dir := filepath.Join(s.dir, ImportDir)
	if dup, err := findCopy(dir, base, sr); err != nil {
		return Item{}, err
	} else if dup != "" {
		id, err := s.idOf(dup)
		if err != nil {
			return Item{}, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.indexLocked(ctx, id)
	}
	if _, err := sr.Seek(0, io.SeekStart); err != nil {
		return Item{}, err
	}
	p, err := s.writeAtomic(dir, base, sr, fi.ModTime())
	if err != nil {
		return Item{}, fmt.Errorf("copy into the gallery: %w", err)
	}
	id, err := s.idOf(p)
	if err != nil {
		return Item{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.indexLocked(ctx, id)
}

// findCopy looks among base and its numbered variants in dir for a file
// with the same content as src, returning its path or "".
func findCopy(dir, base string, src *io.SectionReader) (string, error) {
	var want []byte
	for n := 1; n <= maxNameTries; n++ {
		p := filepath.Join(dir, candidateName(base, n))
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if fi.Size() != src.Size() {
			continue
		}
		if want == nil {
			if want, err = hashReader(io.NewSectionReader(src, 0, src.Size())); err != nil {
				return "", err
			}
		}
		got, err := hashFile(p)
		if err != nil {
			return "", err
		}
		if bytes.Equal(got, want) {
			return p, nil
		}
	}
	return "", nil
}

func hashReader(r io.Reader) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func hashFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hashReader(f)
}

// Delete moves an image to the gallery's trash folder and drops it from the
// index; Restore brings it back. If the trash already holds an image of the
// same ID, that one is renamed aside (name.deleted-<time>.png) rather than
// lost.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	p, err := s.pathOf(id)
	if err != nil {
		return err
	}
	tp, _ := s.trashPathOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.dropLocked(ctx, id); err != nil {
			return fmt.Errorf("gallery: delete %s: %w", id, err)
		}
		return fmt.Errorf("gallery: delete: %w: %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("gallery: delete %s: %w", id, err)
	}
	if err := os.MkdirAll(filepath.Dir(tp), 0o755); err != nil {
		return fmt.Errorf("gallery: delete %s: create trash folder: %w", id, err)
	}
	if _, err := os.Lstat(tp); err == nil {
		ext := filepath.Ext(tp)
		aside := strings.TrimSuffix(tp, ext) + ".deleted-" + strconv.FormatInt(s.now().UnixNano(), 10) + ext
		if err := os.Rename(tp, aside); err != nil {
			return fmt.Errorf("gallery: delete %s: make room in the trash: %w", id, err)
		}
	}
	if err := os.Rename(p, tp); err != nil {
		return fmt.Errorf("gallery: delete %s: move to trash: %w", id, err)
	}
	syncDir(filepath.Dir(tp))
	if err := s.dropLocked(ctx, id); err != nil {
		return fmt.Errorf("gallery: delete %s: moved to trash but %w", id, err)
	}
	s.removeThumb(id, fileStamp{fi.Size(), mtimeNanos(fi.ModTime())})
	return nil
}

// Restore moves an image deleted with Delete back from the trash and
// indexes it. If its name has been taken meanwhile it comes back as
// name-2.png (etc.); the returned Item has its ID.
func (s *Store) Restore(ctx context.Context, id string) (Item, error) {
	if err := s.check(ctx); err != nil {
		return Item{}, err
	}
	p, err := s.pathOf(id)
	if err != nil {
		return Item{}, err
	}
	tp, _ := s.trashPathOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Lstat(tp); errors.Is(err, fs.ErrNotExist) {
		return Item{}, fmt.Errorf("gallery: restore: %w in the trash: %s", ErrNotFound, id)
	} else if err != nil {
		return Item{}, fmt.Errorf("gallery: restore %s: %w", id, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return Item{}, fmt.Errorf("gallery: restore %s: %w", id, err)
	}
	final, err := claimName(tp, filepath.Dir(p), filepath.Base(p))
	if err != nil {
		return Item{}, fmt.Errorf("gallery: restore %s: %w", id, err)
	}
	syncDir(filepath.Dir(final))
	newID, err := s.idOf(final)
	if err != nil {
		return Item{}, fmt.Errorf("gallery: restore %s: %w", id, err)
	}
	it, err := s.indexLocked(ctx, newID)
	if err != nil {
		return Item{}, fmt.Errorf("gallery: restore %s: %w", id, err)
	}
	return it, nil
}

// EmptyTrash deletes the trash folder and everything in it for good.
func (s *Store) EmptyTrash() error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(s.dir, TrashDir)); err != nil {
		return fmt.Errorf("gallery: empty trash: %w", err)
	}
	return nil
}
