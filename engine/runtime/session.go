package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"
)

// Provider names an execution provider.
type Provider string

// The execution providers the engine knows.
const (
	CPU    Provider = "cpu"
	CUDA   Provider = "cuda"
	CoreML Provider = "coreml"
)

// Config chooses the library and the execution provider.
type Config struct {
	// Library is an explicit library path (else FindLibrary's search).
	Library string
	// Provider is "auto" (or empty), "cpu", "cuda" or "coreml". Auto picks
	// CUDA when its libraries load, CoreML on macOS, else CPU.
	Provider string
	// DeviceID selects the GPU for CUDA.
	DeviceID int
	// Threads is the number of intra-op threads on CPU (0: all cores).
	Threads int
}

// Env is the initialised runtime: one per process.
type Env struct {
	Library  string
	Version  string
	Provider Provider
	// Fallback explains why a requested or preferred provider was not used.
	Fallback string
	cfg      Config
}

var (
	initOnce sync.Once
	theEnv   *Env
	initErr  error
)

// Init loads the library and initialises ONNX Runtime. It runs once per
// process; later calls return the same Env (or error) whatever their config.
func Init(cfg Config) (*Env, error) {
	initOnce.Do(func() { theEnv, initErr = initialise(cfg) })
	return theEnv, initErr
}

func initialise(cfg Config) (*Env, error) {
	lib, err := FindLibrary(cfg.Library)
	if err != nil {
		return nil, err
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("initialise ONNX Runtime from %s: %w", lib, err)
	}
	env := &Env{Library: lib, Version: ort.GetVersion(), cfg: cfg}
	env.Provider, env.Fallback = chooseProvider(cfg)
	return env, nil
}

// chooseProvider probes the providers by building session options with
// them; the probe is cheap and fails cleanly when libraries are missing.
func chooseProvider(cfg Config) (Provider, string) {
	want := strings.ToLower(cfg.Provider)
	switch want {
	case "", "auto":
		if goruntime.GOOS == "darwin" {
			if err := probe(CoreML, cfg); err == nil {
				return CoreML, ""
			}
		}
		if err := probe(CUDA, cfg); err == nil {
			return CUDA, ""
		} else {
			return CPU, "CUDA unavailable: " + err.Error()
		}
	case "cuda", "coreml":
		if err := probe(Provider(want), cfg); err != nil {
			return CPU, fmt.Sprintf("%s requested but unavailable: %v", want, err)
		}
		return Provider(want), ""
	}
	return CPU, ""
}

func probe(p Provider, cfg Config) error {
	o, err := ort.NewSessionOptions()
	if err != nil {
		return err
	}
	defer o.Destroy()
	return appendProvider(o, p, cfg)
}

func appendProvider(o *ort.SessionOptions, p Provider, cfg Config) error {
	switch p {
	case CUDA:
		c, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer c.Destroy()
		if err := c.Update(map[string]string{
			"device_id":                 fmt.Sprint(cfg.DeviceID),
			"arena_extend_strategy":     "kSameAsRequested",
			"cudnn_conv_algo_search":    "HEURISTIC",
			"do_copy_in_default_stream": "1",
		}); err != nil {
			return err
		}
		return o.AppendExecutionProviderCUDA(c)
	case CoreML:
		return o.AppendExecutionProviderCoreMLV2(map[string]string{"ModelFormat": "MLProgram"})
	}
	return nil
}

// PreferredFloat reports whether graphs should compute in float16: true on
// GPUs, false on CPU, where ONNX Runtime has almost no fp16 kernels.
func (e *Env) PreferredFloat16() bool { return e.Provider == CUDA }

// live counts ORT values created by this package and not yet destroyed;
// tests use it to prove nothing leaks.
var live atomic.Int64

// LiveValues reports how many ORT tensors this package holds right now.
func LiveValues() int64 { return live.Load() }

// Session is a graph ready to run.
type Session struct {
	env     *Env
	s       *ort.DynamicAdvancedSession
	inputs  []string
	outputs []string
	mu      sync.Mutex
}

// SessionConfig holds per-session choices.
type SessionConfig struct {
	// ExternalDir is the folder external-data locations are relative to.
	ExternalDir string
	// ForceCPU runs this session on CPU even where a GPU is in use.
	ForceCPU bool
	// Threads overrides the intra-op thread count (0: the Env's).
	Threads int
	// Optimization is ONNX Runtime's graph optimisation level: "basic"
	// (default), "extended" or "all"; $PIXERY_ORT_OPT overrides the default.
	Optimization string
}

// OptimizationEnv names the variable that overrides the default level.
const OptimizationEnv = "PIXERY_ORT_OPT"

func optimizationLevel(name string) (ort.GraphOptimizationLevel, error) {
	if name == "" {
		name = os.Getenv(OptimizationEnv)
	}
	switch strings.ToLower(name) {
	case "", "basic":
		return ort.GraphOptimizationLevelEnableBasic, nil
	case "extended":
		return ort.GraphOptimizationLevelEnableExtended, nil
	case "all":
		return ort.GraphOptimizationLevelEnableAll, nil
	}
	return 0, fmt.Errorf("optimisation level %q: want basic, extended or all", name)
}

// NewSession creates a session from a serialised model. The weights it
// names as external data are mapped from their files, not copied into Go.
func (e *Env) NewSession(model []byte, inputs, outputs []string, sc SessionConfig) (*Session, error) {
	o, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer o.Destroy()
	// At least BASIC, which folds the casts of f16/bf16 weights once at
	// load; a lower level would redo them on every run (ORT reference §3).
	// BASIC is the default: on a 0.9 B-parameter UNet it created the session
	// in 46 s against 98 s for ALL, with the same run time (BENCHMARKS.md).
	level, err := optimizationLevel(sc.Optimization)
	if err != nil {
		return nil, err
	}
	if err := o.SetGraphOptimizationLevel(level); err != nil {
		return nil, err
	}
	threads := sc.Threads
	if threads == 0 {
		threads = e.cfg.Threads
	}
	if threads > 0 {
		if err := o.SetIntraOpNumThreads(threads); err != nil {
			return nil, err
		}
	}
	if sc.ExternalDir != "" {
		if err := o.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", sc.ExternalDir); err != nil {
			return nil, err
		}
	}
	if !sc.ForceCPU && e.Provider != CPU {
		if err := appendProvider(o, e.Provider, e.cfg); err != nil {
			return nil, fmt.Errorf("enable %s: %w", e.Provider, err)
		}
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, o)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	return &Session{env: e, s: s, inputs: inputs, outputs: outputs}, nil
}

// Close frees the session. It is safe to call twice.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}

// Tensor is a dense tensor passed to or returned from a session.
type Tensor struct {
	Shape []int64
	F32   []float32
	I64   []int64
}

// F32 wraps float32 data.
func F32(data []float32, shape ...int64) Tensor { return Tensor{Shape: shape, F32: data} }

// I64 wraps int64 data.
func I64(data []int64, shape ...int64) Tensor { return Tensor{Shape: shape, I64: data} }

func (t Tensor) elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

func (t Tensor) value() (ort.Value, error) {
	if len(t.Shape) == 0 {
		return nil, errors.New("tensor has no shape")
	}
	var v ort.Value
	var err error
	switch {
	case t.F32 != nil:
		if int64(len(t.F32)) != t.elements() {
			return nil, fmt.Errorf("shape %v needs %d values, have %d", t.Shape, t.elements(), len(t.F32))
		}
		v, err = ort.NewTensor(ort.NewShape(t.Shape...), t.F32)
	case t.I64 != nil:
		if int64(len(t.I64)) != t.elements() {
			return nil, fmt.Errorf("shape %v needs %d values, have %d", t.Shape, t.elements(), len(t.I64))
		}
		v, err = ort.NewTensor(ort.NewShape(t.Shape...), t.I64)
	default:
		return nil, errors.New("tensor has no data")
	}
	if err == nil {
		live.Add(1)
	}
	return v, err
}

func destroy(v ort.Value) {
	if v != nil {
		v.Destroy()
		live.Add(-1)
	}
}

// ErrCancelled is returned when a run was stopped through its context.
var ErrCancelled = errors.New("run cancelled")

// Run executes the graph. Cancelling ctx terminates the run between nodes;
// then the error wraps both ErrCancelled and ctx's error.
func (s *Session) Run(ctx context.Context, inputs map[string]Tensor) (map[string]Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCancelled, err)
	}
	s.mu.Lock()
	sess := s.s
	s.mu.Unlock()
	if sess == nil {
		return nil, errors.New("session is closed")
	}
	in := make([]ort.Value, len(s.inputs))
	defer func() {
		for _, v := range in {
			destroy(v)
		}
	}()
	for i, name := range s.inputs {
		t, ok := inputs[name]
		if !ok {
			return nil, fmt.Errorf("input %q missing", name)
		}
		v, err := t.value()
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		in[i] = v
	}
	if len(inputs) != len(s.inputs) {
		for name := range inputs {
			if !contains(s.inputs, name) {
				return nil, fmt.Errorf("unknown input %q (graph takes %s)", name, strings.Join(s.inputs, ", "))
			}
		}
	}
	out := make([]ort.Value, len(s.outputs))
	ro, err := ort.NewRunOptions()
	if err != nil {
		return nil, err
	}
	defer ro.Destroy()
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			ro.Terminate()
		case <-stop:
		}
	}()
	err = sess.RunWithOptions(in, out, ro)
	close(stop)
	<-watched
	for _, v := range out {
		if v != nil {
			live.Add(1)
		}
	}
	defer func() {
		for _, v := range out {
			destroy(v)
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrCancelled, ctx.Err())
		}
		return nil, err
	}
	res := make(map[string]Tensor, len(out))
	for i, v := range out {
		t, ok := v.(*ort.Tensor[float32])
		if !ok {
			return nil, fmt.Errorf("output %q has type %T; graphs must output float32", s.outputs[i], v)
		}
		data := t.GetData()
		res[s.outputs[i]] = Tensor{Shape: []int64(t.GetShape()), F32: append([]float32(nil), data...)}
	}
	return res, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
