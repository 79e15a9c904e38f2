package setup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/engine/registry"
)

// Model statuses in a ModelResult.
const (
	// StatusFetched: downloaded now (perhaps resuming an earlier attempt).
	StatusFetched = "fetched"
	// StatusPresent: the file was already in the models folder.
	StatusPresent = "present"
	// StatusNoSource: the entry names no source, so the file has to be put
	// there by hand.
	StatusNoSource = "no_source"
	// StatusFailed: the download failed; Error says why.
	StatusFailed = "failed"
)

// ModelResult is what happened to one model.
type ModelResult struct {
	ID     string `json:"id"`
	Path   string `json:"path"`
	Status string `json:"status"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Resumed is how many bytes came from an earlier, interrupted run.
	Resumed int64  `json:"resumed,omitempty"`
	Error   string `json:"error,omitempty"`
}

// selectModels resolves Options.Models against the registry. explicit
// reports that the user named the models, which turns a missing source
// from a note into an error.
func selectModels(opt *Options) (plan []*registry.Model, explicit bool, err error) {
	reg := opt.Registry
	if reg == nil {
		// The folder is setup's to create; reading the user's registry
		// files from it then never fails for a fresh host.
		if err := os.MkdirAll(opt.ModelsDir, 0o755); err != nil {
			return nil, false, fmt.Errorf("create models folder: %w", err)
		}
		var problems []registry.Problem
		reg, problems = registry.LoadAll(opt.ModelsDir)
		for _, p := range problems {
			opt.logf("registry: %s", p)
		}
	}
	if len(opt.Models) == 0 {
		return reg.List(), false, nil
	}
	seen := map[string]bool{}
	for _, name := range opt.Models {
		m, err := reg.Resolve(name)
		if err != nil {
			return nil, true, fmt.Errorf("model %q: %w", name, err)
		}
		if !seen[m.ID] {
			seen[m.ID] = true
			plan = append(plan, m)
		}
	}
	return plan, true, nil
}

// fetchModel downloads one model's file unless it is there already.
func fetchModel(ctx context.Context, opt *Options, m *registry.Model, explicit bool) (ModelResult, error) {
	dest := filepath.Join(opt.ModelsDir, m.File)
	if m.Discovered && filepath.IsAbs(m.Origin) {
		dest = m.Origin
	}
	mr := ModelResult{ID: m.ID, Path: dest}
	fail := func(err error) (ModelResult, error) {
		err = fmt.Errorf("model %s: %w", m.ID, err)
		mr.Status, mr.Error = StatusFailed, err.Error()
		return mr, err
	}

	st, statErr := os.Stat(dest)
	present := statErr == nil && st.Mode().IsRegular()
	if statErr == nil && !present {
		return fail(fmt.Errorf("%s exists and is not a file", dest))
	}
	if statErr != nil && !errors.Is(statErr, fs.ErrNotExist) {
		return fail(statErr)
	}
	// A file that is there is trusted by default: checkpoints are gigabytes,
	// and download only ever gives a file its final name once it is whole
	// (and verified when the registry has a digest). Verify re-reads them.
	if present && !(opt.Verify && m.SHA256 != "") {
		mr.Status, mr.Size = StatusPresent, st.Size()
		opt.logf("%s: %s is already there", m.ID, m.File)
		return mr, nil
	}
	if !present && m.Source == "" {
		if explicit {
			return fail(fmt.Errorf("the registry entry (%s) names no download source; put %s into %s by hand", m.Origin, m.File, opt.ModelsDir))
		}
		mr.Status = StatusNoSource
		opt.logf("%s: no download source; put %s into %s by hand", m.ID, m.File, opt.ModelsDir)
		return mr, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fail(fmt.Errorf("create models folder: %w", err))
	}

	client := opt.Download
	if client == nil {
		client = download.NewClient()
	}
	if present {
		opt.logf("%s: verifying %s", m.ID, m.File)
	} else if u, err := client.URL(m.Source, m.File); err == nil {
		opt.logf("%s: downloading %s from %s", m.ID, m.File, stripQuery(u))
	}
	mt := opt.meter(m.File)
	var last download.Progress
	announced := false
	res, err := client.Download(ctx, download.Request{
		Source: m.Source, File: m.File, Dest: dest, SHA256: m.SHA256,
		Progress: func(p download.Progress) {
			last = p
			if p.Resumed > 0 && !announced {
				announced = true
				opt.logf("%s: resuming at %s", m.ID, humanSize(p.Resumed))
			}
			mt.update(p.Done, p.Total, p.BytesPerSecond, false)
		},
	})
	if last.Done > 0 || last.Total > 0 {
		mt.update(last.Done, last.Total, last.BytesPerSecond, true)
	}
	if err != nil {
		return fail(err)
	}
	mr.Size, mr.SHA256, mr.Resumed = res.Size, res.SHA256, res.Resumed
	if res.Existed {
		mr.Status = StatusPresent
		opt.logf("%s: %s is already there (SHA-256 verified)", m.ID, m.File)
	} else {
		mr.Status = StatusFetched
		opt.logf("%s: saved %s (%s)", m.ID, dest, humanSize(res.Size))
	}
	return mr, nil
}

// stripQuery drops a URL's credentials and query for messages and the
// summary: signed URLs and pasted ones may carry secrets.
func stripQuery(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
		return u.String()
	}
	if i := strings.IndexAny(s, "?#@"); i >= 0 {
		return s[:i] + "…"
	}
	return s
}
