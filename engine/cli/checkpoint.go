package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/unet"
	"github.com/pixery/pixery/engine/sdxl/vae"
)

func init() {
	Register(&Command{Name: "inspect", Summary: "describe a checkpoint: architecture, components, dtype, parameters, unknown keys", Run: runInspect})
	Register(&Command{Name: "make-checkpoint", Summary: "write a checkpoint of random weights at any size (benchmarks)", Run: runMakeCheckpoint})
	Register(&Command{Name: "run-component", Summary: "run one network of a checkpoint on inputs from a safetensors file", Run: runComponent})
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}

// runInspect implements `pixery-engine inspect [--config DIR] FILE`.
func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configDir := fs.String("config", "", "diffusers-style config folder (unet/, vae/, text_encoder/, text_encoder_2/) for non-SDXL sizes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one checkpoint FILE", ErrUsage)
	}
	f, err := safetensors.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	info := sdxl.Inspect(f)
	out := struct {
		sdxl.Info
		Bound       int      `json:"bound"`
		BindProblem string   `json:"bind_problem,omitempty"`
		UnboundKeys []string `json:"unbound_keys"`
	}{Info: info, UnboundKeys: []string{}}
	if info.Architecture == sdxl.ArchSDXL {
		cfg, err := configs(*configDir)
		if err != nil {
			return err
		}
		// Bind only the components the file has, so a UNet-only or
		// VAE-only file is described rather than refused.
		var only []sdxl.Component
		for _, c := range sdxl.Components {
			if info.Components[c].Tensors > 0 {
				only = append(only, c)
			}
		}
		if ck, err := sdxl.Open(fs.Arg(0), cfg, only...); err != nil {
			out.BindProblem = err.Error()
		} else {
			out.Bound = ck.Weights.NumUsed()
			if u := ck.Unknown(); u != nil {
				out.UnboundKeys = u
			}
		}
	}
	return WriteJSON(stdout, out)
}

func configs(dir string) (sdxl.Configs, error) {
	if dir == "" {
		return sdxl.Default(), nil
	}
	return sdxl.LoadConfigDir(dir)
}

// runMakeCheckpoint implements
// `pixery-engine make-checkpoint --random [--config DIR] [--dtype f16|f32|bf16] [--seed N] --out FILE`.
func runMakeCheckpoint(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("make-checkpoint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	random := fs.Bool("random", false, "random weights (the only kind; required so the intent is explicit)")
	configDir := fs.String("config", "", "diffusers-style config folder for other sizes (default: SDXL base, about 6.9 GB in f16)")
	dtype := fs.String("dtype", "f16", "f16, bf16 or f32")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same file")
	out := fs.String("out", "", "output file")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*random || *out == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: make-checkpoint --random --out FILE [--config DIR] [--dtype f16|bf16|f32] [--seed N]", ErrUsage)
	}
	dt, ok := map[string]safetensors.DType{"f16": safetensors.F16, "bf16": safetensors.BF16, "f32": safetensors.F32}[strings.ToLower(*dtype)]
	if !ok {
		return fmt.Errorf("%w: --dtype %q: want f16, bf16 or f32", ErrUsage, *dtype)
	}
	cfg, err := configs(*configDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	last := time.Now()
	err = sdxl.WriteRandom(ctx, *out, cfg, dt, *seed, func(done, total int64) {
		if !*quiet && time.Since(last) > time.Second {
			last = time.Now()
			fmt.Fprintf(stderr, "\rwriting %s: %5.1f%% of %.2f GB", *out, 100*float64(done)/float64(total), float64(total)/1e9)
		}
	})
	if !*quiet {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}
	return WriteJSON(stdout, map[string]any{"path": *out, "bytes": st.Size(), "dtype": string(dt), "seed": *seed, "seconds": time.Since(start).Seconds()})
}

// componentIO names each component's inputs (with the names the golden io
// files use as alternatives) and outputs.
var componentIO = map[sdxl.Component]struct {
	inputs  [][]string
	outputs []string
}{
	sdxl.UNet:       {[][]string{{unet.InputSample}, {unet.InputTime}, {unet.InputContext}, {unet.InputPooled}, {unet.InputTimeIDs}}, []string{unet.Output}},
	sdxl.CLIPL:      {[][]string{{clip.InputIDs, "input_ids_1"}}, []string{clip.OutputHidden, clip.OutputPenultimate, clip.OutputPooled}},
	sdxl.CLIPG:      {[][]string{{clip.InputIDs, "input_ids_2"}}, []string{clip.OutputHidden, clip.OutputPenultimate, clip.OutputPooled}},
	sdxl.VAEDecoder: {[][]string{{vae.LatentInput}}, []string{vae.ImageOutput}},
	// The VAE golden file holds both the decoder's output "image" and the
	// encoder's input "enc_image"; the latter wins when present.
	sdxl.VAEEncoder: {[][]string{{vae.ImageInput, "enc_image", vae.ImageInput}}, []string{vae.MomentsOutput}},
}

// runComponent implements `pixery-engine run-component`.
func runComponent(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run-component", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ckpt := fs.String("checkpoint", "", "single-file SDXL checkpoint (.safetensors)")
	configFile := fs.String("config", "", "the component's config.json (diffusers UNet2DConditionModel / AutoencoderKL, or a CLIP text config); default SDXL's sizes")
	compName := fs.String("component", "", "unet, clip_l, clip_g, vae_decoder or vae_encoder")
	inputs := fs.String("inputs", "", "safetensors file with the inputs, named as in the golden io files")
	out := fs.String("out", "", "safetensors file to write the outputs to")
	provider := fs.String("provider", "auto", "execution provider: auto, cpu, cuda or coreml")
	ortLib := fs.String("ort-lib", "", "path of the ONNX Runtime library")
	half := fs.Bool("fp16", false, "compute in float16 (default: float16 on CUDA, float32 elsewhere)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" || *compName == "" || *inputs == "" || *out == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: run-component --checkpoint FILE --component NAME --inputs IN.safetensors --out OUT.safetensors [--config FILE]", ErrUsage)
	}
	comp := sdxl.Component(*compName)
	io, ok := componentIO[comp]
	if !ok {
		return fmt.Errorf("%w: --component %q: want unet, clip_l, clip_g, vae_decoder or vae_encoder", ErrUsage, *compName)
	}
	cfg := sdxl.Default()
	if *configFile != "" {
		data, err := os.ReadFile(*configFile)
		if err != nil {
			return err
		}
		switch comp {
		case sdxl.UNet:
			cfg.UNet, err = unet.ParseConfig(data)
		case sdxl.CLIPL:
			cfg.CLIPL, err = clip.ParseConfig(data)
		case sdxl.CLIPG:
			cfg.CLIPG, err = clip.ParseConfig(data)
		default:
			cfg.VAE, err = vae.ParseConfig(data)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
	}
	env, err := runtime.Init(runtime.Config{Library: *ortLib, Provider: *provider})
	if err != nil {
		return err
	}
	bind := comp
	if comp == sdxl.VAEDecoder || comp == sdxl.VAEEncoder {
		bind = sdxl.VAE
	}
	start := time.Now()
	ck, err := sdxl.Open(*ckpt, cfg, bind)
	if err != nil {
		return err
	}
	g, err := ck.Build(comp, nn.BuildOptions{Float16: *half || env.PreferredFloat16() && comp != sdxl.VAEDecoder && comp != sdxl.VAEEncoder})
	if err != nil {
		return err
	}
	sess, err := g.Session(env, runtime.SessionConfig{})
	if err != nil {
		return err
	}
	defer sess.Close()
	loaded := time.Since(start)
	in, err := readInputs(*inputs, io.inputs)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start = time.Now()
	res, err := sess.Run(ctx, in)
	if err != nil {
		return err
	}
	ran := time.Since(start)
	var named []safetensors.Named
	shapes := map[string][]int64{}
	for _, name := range io.outputs {
		t := res[name]
		raw, err := safetensors.EncodeFloat32(safetensors.F32, t.F32)
		if err != nil {
			return err
		}
		named = append(named, safetensors.Named{Name: name, DType: safetensors.F32, Shape: t.Shape, Data: raw})
		shapes[name] = t.Shape
	}
	if err := safetensors.WriteFile(*out, named, map[string]string{"component": string(comp), "checkpoint": *ckpt}); err != nil {
		return err
	}
	return WriteJSON(stdout, map[string]any{"component": comp, "provider": env.Provider, "outputs": shapes,
		"load_seconds": loaded.Seconds(), "run_seconds": ran.Seconds(), "out": *out})
}

// readInputs reads each input: names[i][0] is the graph's input name, the
// rest the tensor names to look for in order (the input name itself when
// there are no alternatives).
func readInputs(path string, names [][]string) (map[string]runtime.Tensor, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	in := map[string]runtime.Tensor{}
	for _, alts := range names {
		var found *safetensors.Tensor
		look := alts
		if len(alts) > 1 && alts[0] == alts[len(alts)-1] {
			look = alts[1:]
		}
		for _, n := range look {
			if t, ok := f.Tensor(n); ok {
				found = t
				break
			}
		}
		if found == nil {
			have := f.Names()
			sort.Strings(have)
			return nil, fmt.Errorf("%s has no input %q (it has %s)", path, strings.Join(alts, `" or "`), strings.Join(have, ", "))
		}
		switch {
		case found.DType == safetensors.I64:
			v, err := f.ReadInt64(found.Name)
			if err != nil {
				return nil, err
			}
			in[alts[0]] = runtime.I64(v, shapeOrScalar(found.Shape)...)
		case found.DType.IsFloat():
			v, err := f.ReadFloat32(found.Name)
			if err != nil {
				return nil, err
			}
			in[alts[0]] = runtime.F32(v, shapeOrScalar(found.Shape)...)
		default:
			return nil, fmt.Errorf("input %s has dtype %s; want a float type or I64", found.Name, found.DType)
		}
	}
	return in, nil
}

func shapeOrScalar(s []int64) []int64 {
	if len(s) == 0 {
		return []int64{1}
	}
	return s
}

var _ = errors.New
