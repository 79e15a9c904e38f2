// Package setup prepares a GPU host for pixery-engine: it installs the ONNX
// Runtime GPU libraries of the release the engine is built against next to
// the engine binary, and downloads the registry's checkpoints into the
// models folder. Both steps are idempotent, so running setup again after an
// interruption or an update finishes what is missing and touches nothing
// else.
package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"time"

	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/engine/registry"
)

// Options says what Run does.
type Options struct {
	// LibDir receives the ONNX Runtime libraries (see DefaultLibDir).
	LibDir string
	// SkipLibs leaves the libraries alone (a CPU host, or libraries
	// installed by other means).
	SkipLibs bool
	// Version is the ONNX Runtime release; empty means runtime.Version.
	Version string
	// CUDA is the CUDA major version of the build: 12 (the default when 0)
	// or 13.
	CUDA int
	// ArchiveURL is the archive's address or a template in which {version}
	// and {archive} are replaced (see DefaultArchiveURL, ArchiveName). It
	// must be https, or http to a loopback address (a test server).
	ArchiveURL string
	// ArchiveSHA256, when set, is the expected hex SHA-256 of the archive.
	// Microsoft publishes no digest for these assets, so by default the
	// archive is trusted as GitHub serves it over https.
	ArchiveSHA256 string
	// Force reinstalls the libraries even when the marker says they are in
	// place and intact.
	Force bool
	// HTTP fetches the archive; nil means a client with connect and header
	// timeouts but no overall deadline.
	HTTP *http.Client
	// StallTimeout aborts an archive transfer that receives nothing for this
	// long (default 60 s); the transfer is then retried.
	StallTimeout time.Duration
	// Retries is how many times a broken archive transfer is started again
	// (default 3; negative means none).
	Retries int
	// RetryDelay is the wait before the first retry, doubled each time
	// (default 2 s).
	RetryDelay time.Duration
	// OpenFile creates the unpacked library files; nil means os.OpenFile.
	// Tests substitute one that fails as a full disk does.
	OpenFile func(name string, flag int, perm fs.FileMode) (download.File, error)

	// ModelsDir is the models folder checkpoints are downloaded into.
	ModelsDir string
	// SkipModels downloads no checkpoints.
	SkipModels bool
	// Models lists the ids (or file names) to download; empty means every
	// registry entry that has a source.
	Models []string
	// Verify hashes checkpoints that are already present against the
	// registry's SHA-256 (where it has one) instead of trusting them.
	Verify bool
	// Registry lists the models; nil means registry.LoadAll(ModelsDir),
	// whose problems are printed to Log.
	Registry *registry.Registry
	// Download fetches the checkpoints; nil means download.NewClient().
	Download *download.Client

	// Log receives progress lines and notes (stderr); nil discards them.
	Log io.Writer
	// Terminal says Log is a terminal, where progress redraws one line.
	Terminal bool
	// ProgressEvery is the longest silence between two progress lines off
	// a terminal (default 5 s); a line is also printed every 5 %.
	ProgressEvery time.Duration
	// now is the clock of the progress meters (tests).
	now func() time.Time
}

// Result is what Run did; the CLI prints it as the JSON summary.
type Result struct {
	// Libraries is nil when SkipLibs was set.
	Libraries *LibraryResult `json:"libraries,omitempty"`
	Models    []ModelResult  `json:"models"`
	// Fetched and Skipped count models downloaded and models already there.
	Fetched int     `json:"fetched"`
	Skipped int     `json:"skipped"`
	Seconds float64 `json:"seconds"`
	// Errors holds one message per step that failed.
	Errors []string `json:"errors,omitempty"`
}

// Run installs the libraries, then downloads the models. A failing step
// does not stop the next one, except a full disk or a cancelled context,
// after which nothing more can succeed. The returned error joins every
// step's error; the Result describes what was done either way.
func Run(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	res := &Result{Models: []ModelResult{}}
	var errs []error
	fail := func(err error) {
		errs = append(errs, err)
		res.Errors = append(res.Errors, err.Error())
	}
	fatal := func(err error) bool {
		return errors.Is(err, download.ErrDiskFull) || ctx.Err() != nil
	}

	// The model selection is checked first, so that a mistyped id fails at
	// once rather than after a long library download.
	var plan []*registry.Model
	var explicit bool
	if !opt.SkipModels {
		var err error
		plan, explicit, err = selectModels(&opt)
		if err != nil {
			return finish(res, start), err
		}
	}

	if !opt.SkipLibs {
		lib, err := installLibraries(ctx, &opt)
		res.Libraries = lib
		if err != nil {
			fail(err)
			if fatal(err) {
				return finish(res, start), errors.Join(errs...)
			}
		}
	}
	if !opt.SkipModels {
		for _, m := range plan {
			mr, err := fetchModel(ctx, &opt, m, explicit)
			res.Models = append(res.Models, mr)
			switch mr.Status {
			case StatusFetched:
				res.Fetched++
			case StatusPresent:
				res.Skipped++
			}
			if err != nil {
				fail(err)
				if fatal(err) {
					break
				}
			}
		}
	}
	return finish(res, start), errors.Join(errs...)
}

func finish(res *Result, start time.Time) *Result {
	res.Seconds = float64(time.Since(start).Round(time.Millisecond)) / float64(time.Second)
	return res
}

// DefaultLibDir is where setup puts the libraries for the engine binary at
// exe: the lib folder beside the bin folder that holds it (…/bin/../lib),
// or, for a binary that does not live in a folder named bin, the lib folder
// next to it. runtime.Candidates looks in both places.
func DefaultLibDir(exe string) string {
	dir := filepath.Dir(exe)
	if filepath.Base(dir) == "bin" {
		return filepath.Join(filepath.Dir(dir), "lib")
	}
	return filepath.Join(dir, "lib")
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "setup: "+format+"\n", args...)
	}
}

func (o *Options) meter(label string) *meter {
	return newMeter(o.Log, "setup: "+label, o.Terminal, o.ProgressEvery, o.now)
}
