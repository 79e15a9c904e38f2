package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/server"
	"github.com/pixery/pixery/internal/atomicfile"
)

func init() {
	Register(&Command{Name: "generate", Summary: "make images in-process, without a server: generate -m MODEL -p PROMPT -o out.png", Run: runGenerate})
}

// runGenerate implements
//
//	pixery-engine generate -m MODEL -p PROMPT [-n NEGATIVE] [--size WxH] [--steps N] [--cfg X]
//	    [--sampler NAME] [--scheduler S] [--seed N] [--batch N] [--rng a1111|comfy] [--models DIR] -o out.png
//
// Unset options take the model's registry defaults, as the HTTP API does.
// A batch writes out.png, out-1.png, …; the JSON line lists the files.
func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o engineOptions
	o.register(fs)
	model := fs.String("m", "", "model id (see GET /v1/models), or a checkpoint's file name in the models folder")
	prompt := fs.String("p", "", "prompt (A1111 syntax: (word:1.2), [word], BREAK)")
	negative := fs.String("n", "", "negative prompt")
	size := fs.String("size", "", "WIDTHxHEIGHT, e.g. 832x1216 (default: the model's)")
	steps := fs.Int("steps", 0, "sampling steps (default: the model's)")
	cfg := fs.Float64("cfg", 0, "classifier-free guidance scale (default: the model's)")
	smp := fs.String("sampler", "", "euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim, euler_karras, or an A1111 name")
	scheduler := fs.String("scheduler", "", "A1111 schedule type: Automatic, Karras, Uniform")
	seed := fs.Int64("seed", -1, "seed of the first image (-1: random)")
	batch := fs.Int("batch", 1, "number of images (seeds s, s+1, …)")
	rngKind := fs.String("rng", api.RNGA1111, "whose noise to reproduce: a1111 or comfy")
	models := fs.String("models", defaultModelsDir(), "models folder")
	out := fs.String("o", "", "output PNG")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if *prompt == "" || *out == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: generate -m MODEL -p PROMPT -o out.png [flags]", ErrUsage)
	}
	req := &api.JobRequest{Model: *model, Prompt: *prompt, NegativePrompt: *negative, Steps: *steps, CFG: *cfg,
		Sampler: *smp, Scheduler: *scheduler, Seed: *seed, Batch: *batch, RNG: *rngKind}
	if *size != "" {
		w, h, ok := strings.Cut(strings.ToLower(*size), "x")
		wi, err1 := strconv.Atoi(w)
		hi, err2 := strconv.Atoi(h)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("%w: --size %q: want WIDTHxHEIGHT", ErrUsage, *size)
		}
		req.Width, req.Height = wi, hi
	}
	svc, err := newService(*models, o)
	if err != nil {
		return err
	}
	defer svc.Close()
	ms := svc.Models()
	if req.Model == "" {
		return fmt.Errorf("%w: -m MODEL is required (known: %s)", ErrUsage, modelList(ms))
	}
	if err := server.Settle(req, ms); err != nil {
		return err
	}
	if err := svc.Validate(req); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	results, err := svc.Generate(ctx, req, func(p server.Progress) {
		if *quiet {
			return
		}
		if p.Stage == server.StageLoading {
			fmt.Fprintf(stderr, "loading %s…\n", p.Model)
		} else {
			fmt.Fprintf(stderr, "step %d/%d\n", p.Step, p.Steps)
		}
	})
	if err != nil {
		return err
	}
	var files []string
	for i, r := range results {
		path := *out
		if i > 0 {
			ext := filepath.Ext(path)
			path = fmt.Sprintf("%s-%d%s", strings.TrimSuffix(path, ext), i, ext)
		}
		data, err := pngmeta.EncodeBytes(r.Image, &r.Recipe)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		files = append(files, path)
	}
	return WriteJSON(stdout, map[string]any{"files": files, "seed": req.Seed, "model": req.Model, "seconds": time.Since(start).Seconds()})
}

func modelList(ms []api.Model) string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return strings.Join(ids, ", ")
}
