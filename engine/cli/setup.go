package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	goruntime "runtime"
	"strings"
	"syscall"

	"github.com/pixery/pixery/engine/download"
	"github.com/pixery/pixery/engine/registry"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/setup"
)

func init() {
	Register(&Command{
		Name:    "setup",
		Summary: "install the ONNX Runtime GPU libraries and download the registry's models (run on the GPU host)",
		Run:     runSetup,
	})
}

// Environment variables that point setup at other servers: mirrors, or the
// local test servers of the tests.
const (
	EnvORTURL     = "PIXERY_ORT_URL"
	EnvHFURL      = "PIXERY_HF_URL"
	EnvCivitaiURL = "PIXERY_CIVITAI_URL"
)

// setupModelIDs collects repeated --model flags (commas separate ids too).
type setupModelIDs []string

func (l *setupModelIDs) String() string { return strings.Join(*l, ",") }

func (l *setupModelIDs) Set(s string) error {
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			*l = append(*l, id)
		}
	}
	return nil
}

func setupEnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func runSetup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defLib := ""
	if exe, err := os.Executable(); err == nil {
		defLib = setup.DefaultLibDir(exe)
	}
	libDir := fs.String("lib-dir", defLib, "folder for the ONNX Runtime libraries (default: lib/ beside the binary's bin/ folder, else beside the binary)")
	noLibs := fs.Bool("no-libs", false, "leave the ONNX Runtime libraries alone")
	cuda := fs.Int("cuda", 12, "CUDA major version of the ONNX Runtime build: 12 or 13")
	ortURL := fs.String("ort-url", setupEnvOr(EnvORTURL, setup.DefaultArchiveURL), "address of the ONNX Runtime archive; {version} and {archive} are filled in (default $"+EnvORTURL+" or GitHub's release)")
	ortSHA := fs.String("ort-sha256", "", "expected SHA-256 of the archive (optional: Microsoft publishes none, so by default the archive is trusted as GitHub serves it over https)")
	force := fs.Bool("force-libs", false, "reinstall the libraries even when they are in place and intact")
	models := fs.String("models", defaultModelsDir(), "models folder (default $"+EnvModels+" or ~/pixery/models)")
	var ids setupModelIDs
	fs.Var(&ids, "model", "download only this model (id or file name; repeatable); default: every registry model")
	noModels := fs.Bool("no-models", false, "download no models")
	verify := fs.Bool("verify", false, "check models already present against the registry's SHA-256 instead of trusting them")
	hfURL := fs.String("hf-url", setupEnvOr(EnvHFURL, download.DefaultHuggingFaceURL), "Hugging Face base address (default $"+EnvHFURL+")")
	civitaiURL := fs.String("civitai-url", setupEnvOr(EnvCivitaiURL, download.DefaultCivitaiURL), "Civitai base address (default $"+EnvCivitaiURL+")")
	every := fs.Duration("progress-every", 0, "longest silence between progress lines when stderr is not a terminal (default 5s; a line also every 5%)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	case *cuda != 12 && *cuda != 13:
		return fmt.Errorf("%w: --cuda %d: ONNX Runtime's GPU builds are for CUDA 12 or 13", ErrUsage, *cuda)
	case *noModels && len(ids) > 0:
		return fmt.Errorf("%w: --model and --no-models contradict each other", ErrUsage)
	case !*noLibs && *libDir == "":
		return fmt.Errorf("%w: cannot tell where the binary is; give --lib-dir", ErrUsage)
	case !*noLibs && (goruntime.GOOS != "linux" || goruntime.GOARCH != "amd64"):
		return fmt.Errorf("the ONNX Runtime GPU libraries are published for linux/amd64 only, not %s/%s; use --no-libs",
			goruntime.GOOS, goruntime.GOARCH)
	}

	client := download.NewClient()
	client.HuggingFaceURL, client.CivitaiURL = *hfURL, *civitaiURL
	terminal := false
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			terminal = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := setup.Run(ctx, setup.Options{
		LibDir: *libDir, SkipLibs: *noLibs, Version: runtime.Version, CUDA: *cuda,
		ArchiveURL: *ortURL, ArchiveSHA256: *ortSHA, Force: *force,
		ModelsDir: *models, SkipModels: *noModels, Models: ids, Verify: *verify, Download: client,
		Log: stderr, Terminal: terminal, ProgressEvery: *every,
	})
	if errors.Is(err, registry.ErrUnknownModel) {
		// Checked before anything is fetched: nothing was done.
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if werr := WriteJSON(stdout, res); werr != nil && err == nil {
		err = werr
	}
	return err
}
