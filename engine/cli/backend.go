package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/server"
	"github.com/pixery/pixery/engine/service"
)

// engineOptions are the runtime flags shared by commands that run models.
type engineOptions struct {
	provider string
	ortLib   string
	threads  int
	budgetGB float64
}

func (o *engineOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.provider, "provider", "auto", "execution provider: auto (CUDA when available, CoreML on macOS, else CPU), cpu, cuda or coreml")
	fs.StringVar(&o.ortLib, "ort-lib", "", "path of the ONNX Runtime library (default: $"+runtime.LibraryEnv+", beside the binary, then "+runtime.InstallDir()+")")
	fs.IntVar(&o.threads, "threads", 0, "CPU threads per network (0: all cores)")
	fs.Float64Var(&o.budgetGB, "memory-budget", 0, "GB of memory for resident models (0: 75% of RAM on CPU, one model at a time on GPUs)")
}

// serveEngine holds serve's runtime flags for the backend constructor.
var serveEngine engineOptions

func init() {
	server.NewBackend = func(modelsDir string) (server.Backend, error) {
		return newService(modelsDir, serveEngine)
	}
}

func newService(modelsDir string, o engineOptions) (*service.Service, error) {
	env, err := runtime.Init(runtime.Config{Library: o.ortLib, Provider: o.provider, Threads: o.threads})
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if env.Fallback != "" {
		log.Info("execution provider", "using", env.Provider, "why", env.Fallback)
	}
	if env.Provider == runtime.CPU {
		log.Warn("running on CPU: an SDXL image takes minutes, not seconds")
	}
	return service.New(service.Config{
		ModelsDir:    modelsDir,
		Env:          env,
		Threads:      o.threads,
		MemoryBudget: int64(o.budgetGB * 1e9),
		Logf:         func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) },
	})
}
