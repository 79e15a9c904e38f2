package jobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pixery/pixery/engine/api"
)

// recoveryName is the file that keeps image k of job id while the gallery
// cannot take it. Engine ids are hex; anything else is made file-safe.
func (q *Queue) recoveryName(id string, k int) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, id)
	return filepath.Join(q.cfg.RecoveryDir, safe+"."+strconv.Itoa(k)+".png")
}

// keep writes an image that could not be saved into the recovery folder,
// returning its path.
func (q *Queue) keep(id string, k int, data []byte) (string, error) {
	if q.cfg.RecoveryDir == "" {
		return "", errors.New("no recovery folder")
	}
	p := q.recoveryName(id, k)
	if err := writeFileAtomic(p, data, 0o600); err != nil {
		return p, fmt.Errorf("keep image %d of %s in %s: %w", k+1, id, p, err)
	}
	return p, nil
}

// unkeep removes a kept image once it is in the gallery.
func (q *Queue) unkeep(id string, k int) {
	if q.cfg.RecoveryDir == "" {
		return
	}
	p := q.recoveryName(id, k)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.logf("jobs: remove %s: %v", p, err)
	}
}

// recover loads the kept images of a resumed job, so that they are saved
// from there rather than fetched again (the engine may have dropped them).
func (q *Queue) recover(e *entry) {
	if q.cfg.RecoveryDir == "" {
		return
	}
	prefix := filepath.Base(q.recoveryName(e.job.ID, 0))
	prefix = strings.TrimSuffix(prefix, "0.png")
	files, _ := filepath.Glob(filepath.Join(q.cfg.RecoveryDir, prefix+"*.png"))
	for _, p := range files {
		k, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), prefix), ".png"))
		if err != nil || k < 0 || k >= api.MaxBatch {
			continue
		}
		if _, done := e.saved[k]; done {
			q.unkeep(e.job.ID, k)
			continue
		}
		data, err := os.ReadFile(p)
		if err == nil {
			_, err = api.CheckImage(data)
		}
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
			q.logf("jobs: kept image %s unusable (%v); it will be fetched from the engine again", p, err)
			continue
		}
		e.unsaved[k] = data
		e.saveErr = fmt.Sprintf("image %d is not in the gallery yet (kept in %s)", k+1, p)
	}
}
