package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/internal/atomicfile"
)

// stateVersion is the state file's format; a file of another version is
// moved aside rather than misread.
const stateVersion = 1

// stateFile is the state file's content.
type stateFile struct {
	Version int        `json:"version"`
	Jobs    []stateJob `json:"jobs"`
}

// stateJob is one pending job: enough to follow it again and not to save
// an image twice.
type stateJob struct {
	ID        string         `json:"id"`
	Engine    string         `json:"engine,omitempty"`
	Request   api.JobRequest `json:"request"`
	Submitted time.Time      `json:"submitted"`
	// Saved maps image indexes to gallery IDs.
	Saved map[int]string `json:"saved,omitempty"`
}

func (s stateJob) entry() *entry {
	e := &entry{
		job: Job{
			ID:        s.ID,
			Request:   s.Request,
			State:     api.StateQueued,
			Engine:    s.Engine,
			Submitted: s.Submitted,
		},
		saved:   map[int]string{},
		unsaved: map[int][]byte{},
	}
	for k, id := range s.Saved {
		if k >= 0 && id != "" {
			e.saved[k] = id
		}
	}
	return e
}

// stateWriter reads and writes the state file. Its callers serialise it
// (Queue.mu).
type stateWriter struct {
	path string
	// last is what was written last, so unchanged state is not rewritten.
	last []byte
}

func (w *stateWriter) load() ([]stateJob, error) {
	if w.path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pending jobs from %s: %w", w.path, err)
	}
	var f stateFile
	err = json.Unmarshal(b, &f)
	if err == nil && f.Version != stateVersion {
		err = fmt.Errorf("format version %d, want %d", f.Version, stateVersion)
	}
	if err != nil {
		aside := w.path + ".broken-" + time.Now().Format("20060102-150405")
		if rerr := os.Rename(w.path, aside); rerr != nil {
			return nil, fmt.Errorf("pending jobs in %s unreadable (%v), and could not be moved aside: %w", w.path, err, rerr)
		}
		return nil, fmt.Errorf("pending jobs in %s unreadable, moved to %s: %w", w.path, aside, err)
	}
	var out []stateJob
	seen := map[string]bool{}
	for _, j := range f.Jobs {
		if j.ID == "" || seen[j.ID] {
			continue
		}
		seen[j.ID] = true
		out = append(out, j)
	}
	w.last = b
	return out, nil
}

// write replaces the state file with the pending entries, atomically.
func (w *stateWriter) write(pending []*entry) error {
	if w.path == "" {
		return nil
	}
	f := stateFile{Version: stateVersion, Jobs: []stateJob{}}
	for _, e := range pending {
		s := stateJob{ID: e.job.ID, Engine: e.job.Engine, Request: e.job.Request, Submitted: e.job.Submitted}
		if len(e.saved) > 0 {
			s.Saved = e.saved
		}
		f.Jobs = append(f.Jobs, s)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pending jobs: %w", err)
	}
	b = append(b, '\n')
	if string(b) == string(w.last) {
		return nil
	}
	if err := writeFileAtomic(w.path, b, 0o600); err != nil {
		return fmt.Errorf("save pending jobs: %w", err)
	}
	w.last = b
	return nil
}

// writeFileAtomic creates path's folder (private: it holds job
// parameters and images) and replaces path with data atomically.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, perm)
}
