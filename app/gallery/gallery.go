// Package gallery keeps the user's images: a folder of PNG files, each with
// its generation metadata inside (A1111's "parameters" chunk and pixery's
// recipe chunk; images made by A1111, Forge or ComfyUI are understood too),
// and caches built from those files: an SQLite index with full-text search
// over prompts, and thumbnails. The files are the truth; deleting the cache
// folder loses nothing, and Sync rebuilds it.
//
// Writes are atomic (temporary file, fsync, rename), so an image is either
// wholly in the gallery or not at all, and it is on disk before Save returns.
// Deleting moves a file to a trash folder inside the gallery, from which
// Restore brings it back. Watch notices files that other programs add,
// change or remove, by polling.
package gallery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Source says which program's metadata an image carries.
type Source string

// Metadata sources, in the order they are preferred when a file has several.
const (
	SourcePixery  Source = "pixery"
	SourceA1111   Source = "a1111" // A1111 and Forge "parameters" infotext
	SourceComfyUI Source = "comfyui"
	SourceUnknown Source = "unknown" // a PNG with no metadata we understand
)

// LoRA is one LoRA an image was made with.
type LoRA struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
}

// Item is one image of the gallery with what its metadata says.
type Item struct {
	// ID names the image within the gallery: its path relative to the
	// gallery folder, with forward slashes. It stays the same when the
	// index is rebuilt.
	ID string
	// Path is the file's absolute path.
	Path    string
	Size    int64
	ModTime time.Time
	Source  Source

	Prompt, Negative string
	// Model is the registry id for pixery images, the checkpoint's name
	// (file name without extension) for others; ModelHash is A1111's short
	// hash when the metadata has one.
	Model, ModelHash string
	// Seed is valid when HasSeed is set: a seed of 0 is a real seed.
	Seed    int64
	HasSeed bool
	Steps   int
	CFG     float64
	// Sampler and Scheduler are as the source program wrote them
	// ("DPM++ 2M" and "Karras" from A1111, "euler_ancestral" and "normal"
	// from ComfyUI, engine names from pixery). Reuse maps them.
	Sampler, Scheduler string
	// Width and Height are the image's pixel size, read from the PNG header.
	Width, Height int
	ClipSkip      int
	RNG           string
	LoRAs         []LoRA
	// RefSHA256 is the SHA-256 of the IP-Adapter reference image, with the
	// adapter and scale it was used at, for pixery images that had one.
	RefSHA256 string
	RefScale  float64
	IPAdapter string
}

// Problem is a file that could not be indexed, or was indexed with some of
// its metadata not understood (Indexed set).
type Problem struct {
	ID      string
	Err     string
	Indexed bool
}

// Errors returned by the Store.
var (
	// ErrNotFound: no image with that ID in the gallery (or in its trash,
	// for Restore).
	ErrNotFound = errors.New("gallery: no such image")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("gallery: store is closed")
)

const (
	// TrashDir is the folder inside the gallery that Delete moves files to.
	// Folders and files whose names start with a dot are not indexed.
	TrashDir = ".trash"
	// indexFile is the SQLite index's name inside the cache folder.
	indexFile = "index.sqlite"
	// thumbDir is the thumbnails' folder inside the cache folder.
	thumbDir = "thumbs"
)

// tempFile is what atomic writes need of a temporary file; tests replace
// the creator to inject write failures (a full disk, a read-only folder).
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// Store is a gallery folder and its caches. Its methods are safe for
// concurrent use.
type Store struct {
	dir      string // absolute gallery folder
	cacheDir string
	db       *sql.DB

	// mu is held while the index is written together with a check of, or a
	// change to, the files, so that a Sync running beside Save or Delete
	// never indexes a file that has just moved or drops one just written.
	mu sync.Mutex
	// syncMu lets one Sync run at a time.
	syncMu sync.Mutex
	// writes counts index changes made by the Store's own methods (under
	// mu), so a Sync that sees it moved knows to check whether what it
	// found is already indexed, and does not report the Store's own Save
	// or Delete as an outside change.
	writes uint64
	closed atomic.Bool

	createTemp func(dir, pattern string) (tempFile, error)
	now        func() time.Time
}

// Open opens the gallery in dir, creating the folder if needed, with its
// index and thumbnails in cacheDir. An index that is missing, from another
// version or unreadable is rebuilt empty; call Sync to fill it from the
// files.
func Open(dir, cacheDir string) (*Store, error) {
	if dir == "" || cacheDir == "" {
		return nil, errors.New("gallery: open: gallery and cache folders must be given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("gallery: open %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("gallery: create gallery folder: %w", err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("gallery: open: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("gallery: open: %s is not a folder", abs)
	}
	cache, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("gallery: open cache %s: %w", cacheDir, err)
	}
	if inside(abs, cache) && cache != abs {
		// The cache would be indexed as gallery content otherwise, unless
		// hidden; a dot-folder is allowed.
		rel, _ := filepath.Rel(abs, cache)
		if !strings.HasPrefix(filepath.ToSlash(rel), ".") {
			return nil, fmt.Errorf("gallery: open: cache folder %s is inside the gallery; use a hidden (dot) folder or another place", cache)
		}
	}
	if err := os.MkdirAll(filepath.Join(cache, thumbDir), 0o755); err != nil {
		return nil, fmt.Errorf("gallery: create cache folder: %w", err)
	}
	s := &Store{
		dir:      abs,
		cacheDir: cache,
		createTemp: func(dir, pattern string) (tempFile, error) {
			return os.CreateTemp(dir, pattern)
		},
		now: time.Now,
	}
	if s.db, err = openIndex(filepath.Join(cache, indexFile)); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the index. The files need no closing: every write is
// complete when its method returns.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("gallery: close index: %w", err)
	}
	return nil
}

// Dir returns the gallery folder (absolute).
func (s *Store) Dir() string { return s.dir }

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// pathOf maps an ID to its file, refusing IDs that leave the gallery.
func (s *Store) pathOf(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("gallery: invalid image id %q", id)
	}
	return filepath.Join(s.dir, filepath.FromSlash(id)), nil
}

func (s *Store) trashPathOf(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("gallery: invalid image id %q", id)
	}
	return filepath.Join(s.dir, TrashDir, filepath.FromSlash(id)), nil
}

// validID accepts clean, relative, slash-separated paths outside hidden
// folders: the IDs Sync and Save produce.
func validID(id string) bool {
	if id == "" || path.IsAbs(id) || path.Clean(id) != id || strings.Contains(id, "\\") || strings.ContainsRune(id, 0) {
		return false
	}
	for el := range strings.SplitSeq(id, "/") {
		if el == ".." || strings.HasPrefix(el, ".") || (len(el) == 2 && el[1] == ':') {
			return false
		}
	}
	return true
}

// inside reports whether p is dir or below it (both absolute and clean).
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// isPNGName reports whether a file name has the .png extension.
func isPNGName(name string) bool { return strings.EqualFold(filepath.Ext(name), ".png") }
