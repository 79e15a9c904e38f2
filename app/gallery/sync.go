package gallery

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// SyncResult says what a Sync changed in the index.
type SyncResult struct {
	// Added, Updated and Removed list the IDs of images that appeared,
	// changed (size or modification time) or disappeared.
	Added, Updated, Removed []string
	// Unchanged counts images that were already indexed as they are.
	Unchanged int
	// Problems lists files found unreadable, or partly understood, in this
	// Sync (Store.Problems lists all of them).
	Problems []Problem
}

// Changed reports whether the Sync changed the set of indexed images.
func (r *SyncResult) Changed() bool {
	return len(r.Added)+len(r.Updated)+len(r.Removed) > 0
}

type fileStamp struct {
	size, mtime int64
}

// scan lists the gallery's PNG files, leaving out hidden files and folders
// (the trash, temporary files). Folders that cannot be read are reported
// and skipped.
func (s *Store) scan(ctx context.Context) (map[string]fileStamp, []Problem, error) {
	files := make(map[string]fileStamp)
	var problems []Problem
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if p == s.dir {
			return err // the gallery folder itself must be readable
		}
		rel, relErr := filepath.Rel(s.dir, p)
		if relErr != nil {
			return relErr
		}
		id := filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err != nil {
			problems = append(problems, Problem{ID: id, Err: err.Error()})
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isPNGName(d.Name()) {
			return nil
		}
		var fi fs.FileInfo
		if d.Type()&fs.ModeSymlink != 0 {
			// Follow links to files; links to folders are not walked, so
			// a link cycle cannot trap the walk.
			fi, err = os.Stat(p)
		} else {
			fi, err = d.Info()
		}
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				problems = append(problems, Problem{ID: id, Err: err.Error()})
			}
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		files[id] = fileStamp{fi.Size(), mtimeNanos(fi.ModTime())}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gallery: scan %s: %w", s.dir, err)
	}
	return files, problems, nil
}

// known returns what the index holds: indexed images and unreadable files,
// each with the size and time it was read at.
func (s *Store) known(ctx context.Context) (items, bad map[string]fileStamp, err error) {
	items, bad = make(map[string]fileStamp), make(map[string]fileStamp)
	for _, q := range []struct {
		sql string
		m   map[string]fileStamp
	}{
		{"SELECT id, size, mtime FROM items", items},
		{"SELECT id, size, mtime FROM problems WHERE NOT indexed", bad},
	} {
		rows, err := s.db.QueryContext(ctx, q.sql)
		if err != nil {
			return nil, nil, fmt.Errorf("gallery: read index: %w", err)
		}
		for rows.Next() {
			var id string
			var st fileStamp
			if err := rows.Scan(&id, &st.size, &st.mtime); err != nil {
				rows.Close()
				return nil, nil, fmt.Errorf("gallery: read index: %w", err)
			}
			q.m[id] = st
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("gallery: read index: %w", err)
		}
	}
	return items, bad, nil
}

// readResult is one file read by a Sync worker.
type readResult struct {
	id    string
	item  Item
	notes []string
	err   error
	stamp fileStamp // of the file as read (or as scanned, on error)
}

// syncBatch is how many files one index transaction writes.
const syncBatch = 500

// Sync brings the index up to date with the files: new and changed files
// (by size and modification time) are read, missing ones dropped. A file
// that cannot be read is recorded as a problem and does not stop the rest.
// Only one Sync runs at a time; a second waits for the first.
func (s *Store) Sync(ctx context.Context) (SyncResult, error) {
	if err := s.check(ctx); err != nil {
		return SyncResult{}, err
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()

	var res SyncResult
	s.mu.Lock()
	writes := s.writes
	s.mu.Unlock()
	indexed, bad, err := s.known(ctx)
	if err != nil {
		return res, err
	}
	files, walkProblems, err := s.scan(ctx)
	if err != nil {
		return res, err
	}
	res.Problems = walkProblems

	var todo []string
	for id, st := range files {
		if old, ok := indexed[id]; ok && old == st {
			res.Unchanged++
			continue
		}
		if old, ok := bad[id]; ok && old == st {
			continue // still the same unreadable file
		}
		todo = append(todo, id)
	}
	sort.Strings(todo)
	var gone []string
	for id := range indexed {
		if _, ok := files[id]; !ok {
			gone = append(gone, id)
		}
	}
	for id := range bad {
		if _, ok := files[id]; !ok {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)

	// Read files in parallel; write them in batches from this goroutine.
	results := make(chan readResult, 64)
	jobs := make(chan string)
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), max(len(todo), 1))
	for range workers {
		wg.Go(func() {
			for id := range jobs {
				p := filepath.Join(s.dir, filepath.FromSlash(id))
				it, notes, err := readItem(p, id)
				r := readResult{id: id, item: it, notes: notes, err: err, stamp: files[id]}
				if err == nil {
					r.stamp = fileStamp{it.Size, mtimeNanos(it.ModTime)}
				}
				results <- r
			}
		})
	}
	go func() {
		defer close(jobs)
		for _, id := range todo {
			select {
			case jobs <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	batch := make([]readResult, 0, syncBatch)
	var writeErr error
	flush := func() {
		if writeErr == nil && len(batch) > 0 {
			writeErr = s.writeBatch(ctx, batch, indexed, writes, &res)
		}
		batch = batch[:0]
	}
	for r := range results {
		batch = append(batch, r)
		if len(batch) == syncBatch {
			flush()
		}
	}
	flush()
	if writeErr != nil {
		return res, writeErr
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := s.removeGone(ctx, gone, indexed, writes, &res); err != nil {
		return res, err
	}
	sort.Strings(res.Added)
	sort.Strings(res.Updated)
	return res, nil
}

// writeBatch indexes files read by Sync in one transaction. Under s.mu each
// file is checked to be still as it was read, so a file moved or rewritten
// meanwhile (by Delete, Save or another program) is left for the next Sync.
func (s *Store) writeBatch(ctx context.Context, batch []readResult, indexed map[string]fileStamp, writes uint64, res *SyncResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	recheck := s.writes != writes
	var apply []*readResult
	var ids []string
	for i := range batch {
		r := &batch[i]
		fi, err := os.Stat(filepath.Join(s.dir, filepath.FromSlash(r.id)))
		if err != nil || fi.Size() != r.stamp.size || mtimeNanos(fi.ModTime()) != r.stamp.mtime {
			continue
		}
		if recheck && r.err == nil {
			// The Store itself may have indexed this file since the Sync
			// began (Save, Restore, Import).
			var st fileStamp
			err := s.db.QueryRowContext(ctx, "SELECT size, mtime FROM items WHERE id = ?", r.id).Scan(&st.size, &st.mtime)
			if err == nil && st == r.stamp {
				res.Unchanged++
				continue
			}
		}
		apply = append(apply, r)
		ids = append(ids, r.id)
	}
	err := s.changeRows(ctx, ids, func(ex execer) error {
		for _, r := range apply {
			if r.err != nil {
				if err := dropEntry(ctx, ex, r.id); err != nil {
					return err
				}
				if err := putProblem(ctx, ex, r.id, r.stamp.size, r.stamp.mtime, r.err.Error(), false); err != nil {
					return err
				}
				continue
			}
			if err := putItem(ctx, ex, &r.item, r.notes); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gallery: %w", err)
	}
	for _, r := range apply {
		old, was := indexed[r.id]
		switch {
		case r.err != nil:
			if was {
				res.Removed = append(res.Removed, r.id)
				s.removeThumb(r.id, old)
			}
			res.Problems = append(res.Problems, Problem{ID: r.id, Err: r.err.Error()})
			continue
		case was:
			res.Updated = append(res.Updated, r.id)
			s.removeThumb(r.id, old)
		default:
			res.Added = append(res.Added, r.id)
		}
		if len(r.notes) > 0 {
			res.Problems = append(res.Problems, Problem{ID: r.id, Err: strings.Join(r.notes, "; "), Indexed: true})
		}
	}
	return nil
}

// removeGone drops index entries whose files are gone, checking under s.mu
// that they are still gone.
func (s *Store) removeGone(ctx context.Context, gone []string, indexed map[string]fileStamp, writes uint64, res *SyncResult) error {
	if len(gone) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recheck := s.writes != writes
	var drop, removed []string
	for _, id := range gone {
		if _, err := os.Lstat(filepath.Join(s.dir, filepath.FromSlash(id))); err == nil {
			continue
		}
		drop = append(drop, id)
		if _, ok := indexed[id]; !ok {
			continue // an unreadable file: only its problem entry goes
		}
		if recheck {
			// Already dropped by the Store's own Delete?
			var n int
			if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE id = ?", id).Scan(&n); err == nil && n == 0 {
				continue
			}
		}
		removed = append(removed, id)
	}
	err := s.changeRows(ctx, drop, func(ex execer) error {
		for _, id := range drop {
			if err := dropEntry(ctx, ex, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gallery: %w", err)
	}
	for _, id := range removed {
		s.removeThumb(id, indexed[id])
	}
	res.Removed = append(res.Removed, removed...)
	return nil
}

// DefaultWatchInterval is how often Watch looks at the folder when given no
// interval.
const DefaultWatchInterval = 2 * time.Second

// Watch polls the gallery folder every interval (DefaultWatchInterval when
// zero or less) with Sync and calls fn with what changed whenever anything
// did, or with the error when a Sync fails. Changes made through the Store
// (Save, Delete, Restore, Import) are indexed at once and so are not
// reported again. Polling is used because it works the same on every
// platform and file system, network shares included; a poll of 10,000
// unchanged files costs one directory walk. Watch returns when ctx is done.
func (s *Store) Watch(ctx context.Context, interval time.Duration, fn func(SyncResult, error)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		res, err := s.Sync(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err != nil || res.Changed() {
			fn(res, err)
		}
	}
}
