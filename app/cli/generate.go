package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/jobs"
	"github.com/pixery/pixery/engine/api"
	enginecli "github.com/pixery/pixery/engine/cli"
	"github.com/pixery/pixery/internal/atomicfile"
	"github.com/pixery/pixery/internal/syncio"
)

func init() {
	Commands.Register(&enginecli.Command{
		Name:    "generate",
		Summary: "make images with the configured engine and save them into the gallery",
		Run:     runGenerate,
	})
}

const generateUsage = "-p PROMPT -m MODEL [-n COUNT] [--seed N] [--steps N] [--cfg X] [--size WxH] [--negative TEXT]\n" +
	"       [--sampler NAME] [--ref IMAGE --ref-scale S] [--lora NAME:W]... [-o FILE] [--server URL | --local] [--config DIR]"

// loraFlags collects repeated --lora NAME:WEIGHT flags.
type loraFlags []api.LoRA

func (l *loraFlags) String() string {
	var parts []string
	for _, x := range *l {
		parts = append(parts, fmt.Sprintf("%s:%g", x.Name, x.Scale))
	}
	return strings.Join(parts, ",")
}

// Set parses NAME:WEIGHT, or NAME alone for weight 1. The weight follows
// the last colon, so names with colons still work when a weight is given.
func (l *loraFlags) Set(v string) error {
	name, weight := v, 1.0
	if i := strings.LastIndex(v, ":"); i >= 0 {
		w, err := strconv.ParseFloat(strings.TrimSpace(v[i+1:]), 64)
		if err != nil {
			return fmt.Errorf("%q: want NAME:WEIGHT such as detail:0.8", v)
		}
		name, weight = v[:i], w
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return fmt.Errorf("%q: the LoRA name is empty", v)
	}
	if weight < -api.MaxLoRAScale || weight > api.MaxLoRAScale {
		return fmt.Errorf("%q: weight %g is outside ±%g", v, weight, api.MaxLoRAScale)
	}
	*l = append(*l, api.LoRA{Name: name, Scale: weight})
	return nil
}

// generateOptions are generate's flags.
type generateOptions struct {
	engineFlags
	prompt, model, negative, size, sampler, scheduler string
	count, steps                                      int
	seed                                              int64
	cfg, refScale                                     float64
	ref, out                                          string
	loras                                             loraFlags
	quiet                                             bool
}

// request checks the options and builds the job request, reading the
// reference image. Every check that needs no engine happens here, before
// anything is submitted.
func (o *generateOptions) request() (*api.JobRequest, error) {
	usage := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", enginecli.ErrUsage, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(o.prompt) == "" {
		return nil, usage("-p PROMPT is required")
	}
	if len(o.prompt) > api.MaxPromptLength || len(o.negative) > api.MaxPromptLength {
		return nil, usage("the prompt is longer than %d bytes", api.MaxPromptLength)
	}
	if o.model == "" {
		return nil, usage("-m MODEL is required (pixery models lists them)")
	}
	if o.count < 1 || o.count > api.MaxBatch {
		return nil, usage("-n %d: want 1 to %d images", o.count, api.MaxBatch)
	}
	if o.seed < -1 {
		return nil, usage("--seed %d: want 0 or more, or -1 for a random seed", o.seed)
	}
	if o.steps != 0 && (o.steps < api.MinSteps || o.steps > api.MaxSteps) {
		return nil, usage("--steps %d: want %d to %d", o.steps, api.MinSteps, api.MaxSteps)
	}
	if o.cfg != 0 && (o.cfg < api.MinCFG || o.cfg > api.MaxCFG) {
		return nil, usage("--cfg %g: want %g to %g", o.cfg, api.MinCFG, api.MaxCFG)
	}
	if len(o.loras) > api.MaxLoRAs {
		return nil, usage("%d LoRAs: at most %d", len(o.loras), api.MaxLoRAs)
	}
	req := &api.JobRequest{
		Model: o.model, Prompt: o.prompt, NegativePrompt: o.negative,
		Steps: o.steps, CFG: o.cfg, Sampler: o.sampler, Scheduler: o.scheduler,
		Seed: o.seed, Batch: o.count, LoRAs: o.loras,
	}
	if o.size != "" {
		w, h, err := parseSize(o.size)
		if err != nil {
			return nil, usage("--size %s", err)
		}
		req.Width, req.Height = w, h
	}
	if o.ref == "" {
		if o.refScale != 0 {
			return nil, usage("--ref-scale needs --ref IMAGE")
		}
		return req, nil
	}
	if o.refScale < 0 || o.refScale > api.MaxIPScale {
		return nil, usage("--ref-scale %g: want 0 to %g", o.refScale, api.MaxIPScale)
	}
	img, err := readReference(o.ref)
	if err != nil {
		return nil, err
	}
	req.IPAdapter = &api.IPAdapter{Image: img, Scale: o.refScale}
	return req, nil
}

// parseSize reads WIDTHxHEIGHT and checks it against the engine's limits.
func parseSize(s string) (int, int, error) {
	ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q: want WIDTHxHEIGHT such as 832x1216", s)
	}
	for _, v := range []int{w, h} {
		if v < api.MinSize || v > api.MaxSize {
			return 0, 0, fmt.Errorf("%q: each side must be %d to %d pixels", s, api.MinSize, api.MaxSize)
		}
		if v%8 != 0 {
			return 0, 0, fmt.Errorf("%q: each side must be a multiple of 8 (such as %dx%d)", s, w/8*8, h/8*8)
		}
	}
	if w*h > api.MaxPixels {
		return 0, 0, fmt.Errorf("%q: %d pixels is more than the %d (2048x2048) an image may have", s, w*h, api.MaxPixels)
	}
	return w, h, nil
}

// readReference reads the IP-Adapter reference image and checks that it is
// a PNG, JPEG or WebP of acceptable size.
func readReference(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--ref: %w", err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("--ref %s: is a folder, not an image", path)
	}
	if fi.Size() > api.MaxIPImageBytes {
		return nil, fmt.Errorf("--ref %s: %d MiB is more than the %d MiB a reference image may have", path, fi.Size()>>20, api.MaxIPImageBytes>>20)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ref: %w", err)
	}
	if _, err := api.CheckImage(b); err != nil {
		return nil, fmt.Errorf("--ref %s: %w", path, err)
	}
	return b, nil
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("generate", generateUsage, stderr)
	var o generateOptions
	o.engineFlags.register(fs)
	fs.StringVar(&o.prompt, "p", "", "prompt (A1111 syntax: (word:1.2), [word], BREAK)")
	fs.StringVar(&o.model, "m", "", "model id (pixery models lists them)")
	fs.IntVar(&o.count, "n", 1, "number of images (seeds s, s+1, …)")
	fs.Int64Var(&o.seed, "seed", -1, "seed of the first image (-1: random)")
	fs.IntVar(&o.steps, "steps", 0, "sampling steps (default: the model's)")
	fs.Float64Var(&o.cfg, "cfg", 0, "guidance scale (default: the model's)")
	fs.StringVar(&o.size, "size", "", "WIDTHxHEIGHT, multiples of 8 (default: the model's)")
	fs.StringVar(&o.negative, "negative", "", "negative prompt (pixery models shows each model's usual one)")
	fs.StringVar(&o.sampler, "sampler", "", "sampler: euler_a, dpmpp_2m_karras, … or an A1111 name (default: the model's)")
	fs.StringVar(&o.scheduler, "scheduler", "", "A1111 schedule type: Automatic, Karras, Uniform")
	fs.StringVar(&o.ref, "ref", "", "reference image (PNG, JPEG, WebP) for IP-Adapter")
	fs.Float64Var(&o.refScale, "ref-scale", 0, "weight of the reference image (default 1)")
	fs.Var(&o.loras, "lora", "LoRA as NAME:WEIGHT (repeatable)")
	fs.StringVar(&o.out, "o", "", "also write the image to FILE (a batch adds -1, -2, … before the extension); a folder keeps the gallery's names")
	fs.BoolVar(&o.quiet, "q", false, "no progress on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected argument %q (quote the prompt: -p \"...\")", enginecli.ErrUsage, fs.Arg(0))
	}
	req, err := o.request()
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := checkOutput(o.out); err != nil {
			return err
		}
	}

	s, eng, err := o.open(stderr)
	if err != nil {
		return err
	}
	defer eng.Close()
	ctx, stop := runContext()
	defer stop()
	if err := checkAgainstEngine(ctx, eng, req); err != nil {
		return err
	}
	if !o.quiet {
		hctx, cancel := context.WithTimeout(ctx, requestTimeout)
		if h, err := eng.Health(hctx); err == nil {
			if n := engine.Notice(h); n != "" {
				fmt.Fprintf(stderr, "note: %s\n", n)
			}
		}
		cancel()
	}

	store, err := openGallery(s)
	if err != nil {
		return err
	}
	defer store.Close()
	// The queue's goroutine and the command's own both write to stderr.
	errw := syncio.NewWriter(stderr)
	// No state file: a CLI run follows only its own job, and cancels it on
	// Ctrl+C; the app's queue state is the app's.
	q, err := jobs.New(jobs.Config{
		Engine: eng,
		Store:  store,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(errw, "warning: %s\n", fmt.Sprintf(format, args...))
		},
	})
	if err != nil {
		return err
	}
	defer q.Close()
	prog := newProgress(errw, isTerminal(stderr), o.quiet)
	unsubscribe := q.Subscribe(prog.update)
	defer unsubscribe()

	sctx, cancel := context.WithTimeout(ctx, requestTimeout)
	id, err := q.Submit(sctx, req)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted before the engine accepted the job")
		}
		return err // the queue's error names the engine
	}
	if !o.quiet {
		fmt.Fprintf(errw, "job %s on %s (Ctrl+C cancels it)\n", id, eng.Describe())
	}
	job, err := q.Wait(ctx, id)
	if err != nil && ctx.Err() != nil {
		// Give Ctrl+C back its default: a second one ends pixery at once
		// if telling the engine takes too long.
		stop()
		return cancelJob(q, id, errw, prog)
	}
	prog.finish()
	if err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	switch job.State {
	case api.StateFailed:
		return fmt.Errorf("job %s failed: %s", id, job.Err)
	case api.StateCancelled:
		msg := "cancelled on the engine"
		if job.Err != "" {
			msg += ": " + job.Err
		}
		return fmt.Errorf("job %s %s", id, msg)
	}
	if len(job.Images) == 0 {
		return fmt.Errorf("job %s finished without images", id)
	}
	for _, it := range job.Images {
		fmt.Fprintln(stdout, it.Path)
	}
	if o.out != "" {
		for i, it := range job.Images {
			dst := outputPath(o.out, i, it.Path)
			data, err := os.ReadFile(it.Path)
			if err != nil {
				return fmt.Errorf("copy to -o: %w", err)
			}
			if err := atomicfile.Write(dst, data, 0o644); err != nil {
				return fmt.Errorf("write %s: %w", dst, err)
			}
			fmt.Fprintln(stdout, dst)
		}
	}
	if !o.quiet {
		fmt.Fprintf(errw, "done: %d image(s), seed %s\n", len(job.Images), seedList(job))
	}
	return nil
}

// checkAgainstEngine names what the engine lacks (the model, a LoRA, the
// IP-Adapter) with what it has instead, before the job is submitted. When
// a list cannot be had, the engine's own check on submit still applies.
func checkAgainstEngine(ctx context.Context, eng engine.Engine, req *api.JobRequest) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ms, err := eng.Models(ctx)
	if err != nil {
		return fmt.Errorf("reach the engine %s: %w", eng.Describe(), err)
	}
	var ready []string
	var model *api.Model
	for i, m := range ms {
		if m.State == api.ModelOnDisk || m.State == api.ModelLoaded {
			ready = append(ready, m.ID)
		}
		if m.ID == req.Model {
			model = &ms[i]
		}
	}
	switch {
	case model == nil:
		return fmt.Errorf("%w: model %q is not on the engine %s (it has: %s)", enginecli.ErrUsage, req.Model, eng.Describe(), listOrNone(ready))
	case model.State == api.ModelDownloading:
		return fmt.Errorf("model %q is still downloading on the engine %s (%.0f%%); try again when it is done", req.Model, eng.Describe(), 100*model.Progress)
	case model.State == api.ModelMissing:
		msg := fmt.Sprintf("model %q is not downloaded on the engine %s", req.Model, eng.Describe())
		if model.Error != "" {
			msg += " (last download failed: " + model.Error + ")"
		}
		return fmt.Errorf("%s; download it from the app's model list first, or use one that is ready: %s", msg, listOrNone(ready))
	}
	if len(req.LoRAs) > 0 {
		files, err := eng.LoRAs(ctx)
		if err != nil {
			return fmt.Errorf("list LoRAs on %s: %w", eng.Describe(), err)
		}
		var names []string
		have := map[string]bool{}
		for _, f := range files {
			names = append(names, f.Name)
			have[f.Name], have[f.File] = true, true
		}
		for _, l := range req.LoRAs {
			if !have[l.Name] {
				return fmt.Errorf("%w: LoRA %q is not on the engine %s (it has: %s)", enginecli.ErrUsage, l.Name, eng.Describe(), listOrNone(names))
			}
		}
	}
	if req.IPAdapter != nil {
		files, err := eng.IPAdapters(ctx)
		if err == nil && len(files) == 0 {
			return fmt.Errorf("--ref: the engine %s has no IP-Adapter file, so it cannot use a reference image", eng.Describe())
		}
	}
	return nil
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// cancelJob tells the engine to stop the job after Ctrl+C and waits a
// little for it to say so.
func cancelJob(q *jobs.Queue, id string, errw io.Writer, prog *progress) error {
	prog.finish()
	fmt.Fprintf(errw, "cancelling job %s…\n", id)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := q.Cancel(ctx, id); err != nil {
		return fmt.Errorf("interrupted; cancelling job %s: %w", id, err)
	}
	job, err := q.Wait(ctx, id)
	if err != nil {
		return fmt.Errorf("interrupted; job %s was asked to stop but did not confirm: %w", id, err)
	}
	if job.State == api.StateDone {
		// It finished before the cancel arrived: its images are saved.
		return fmt.Errorf("interrupted; job %s had already finished (%d image(s) in the gallery)", id, len(job.Images))
	}
	return fmt.Errorf("cancelled job %s", id)
}

// checkOutput fails early when -o cannot be written: its folder is missing.
func checkOutput(out string) error {
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return nil
	}
	dir := filepath.Dir(out)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("-o %s: %w", out, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("-o %s: %s is not a folder", out, dir)
	}
	return nil
}

// outputPath is where image i goes for -o out: out itself for the first,
// out-1.png, out-2.png… for the others; inside out, under the gallery's
// name, when out is a folder.
func outputPath(out string, i int, galleryPath string) string {
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return filepath.Join(out, filepath.Base(galleryPath))
	}
	if i == 0 {
		return out
	}
	ext := filepath.Ext(out)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(out, ext), i, ext)
}

func seedList(j jobs.Job) string {
	if len(j.Seeds) == 0 {
		return strconv.FormatInt(j.Request.Seed, 10)
	}
	var s []string
	for _, x := range j.Seeds {
		s = append(s, strconv.FormatInt(x, 10))
	}
	return strings.Join(s, ", ")
}

// progress prints a job's progress for people: a line per change of state,
// and a step bar redrawn in place on a terminal (a line per step
// otherwise, so logs stay readable).
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	quiet   bool
	tty     bool
	done    bool
	state   api.JobState
	pos     int
	loading string
	step    int
	conn    string
	inBar   bool
}

// newProgress reports to w; tty says whether w is a terminal, where the
// step bar can be redrawn in place.
func newProgress(w io.Writer, tty, quiet bool) *progress {
	return &progress{w: w, tty: tty, quiet: quiet, pos: -1}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) update(j jobs.Job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.quiet || p.done {
		return
	}
	if j.Connection != p.conn {
		p.endBar()
		if j.Connection != "" {
			fmt.Fprintf(p.w, "engine connection: %s\n", j.Connection)
		} else {
			fmt.Fprintln(p.w, "engine connection: back")
		}
		p.conn = j.Connection
	}
	switch j.State {
	case api.StateQueued:
		if p.state != j.State || p.pos != j.Position {
			if j.Position > 0 {
				fmt.Fprintf(p.w, "queued (%d ahead)\n", j.Position)
			} else {
				fmt.Fprintln(p.w, "queued")
			}
			p.pos = j.Position
		}
	case api.StateLoading:
		if p.state != j.State || p.loading != j.Loading {
			p.endBar()
			fmt.Fprintf(p.w, "loading model %s…\n", j.Loading)
			p.loading = j.Loading
		}
	case api.StateRunning:
		if j.Steps > 0 && j.Step != p.step {
			p.step = j.Step
			bar := stepBar(j.Step, j.Steps, 24)
			if p.tty {
				fmt.Fprintf(p.w, "\rstep %d/%d %s", j.Step, j.Steps, bar)
				p.inBar = true
			} else {
				fmt.Fprintf(p.w, "step %d/%d %s\n", j.Step, j.Steps, bar)
			}
		}
	}
	p.state = j.State
}

// endBar ends an in-place step bar's line before another line is printed.
func (p *progress) endBar() {
	if p.inBar {
		fmt.Fprintln(p.w)
		p.inBar = false
	}
}

// finish stops printing: the job is over (or being cancelled) and what
// follows is the command's own output.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endBar()
	p.done = true
}

func stepBar(i, n, width int) string {
	i = min(max(i, 0), n)
	full := i * width / n
	return "[" + strings.Repeat("#", full) + strings.Repeat("-", width-full) + "]"
}
