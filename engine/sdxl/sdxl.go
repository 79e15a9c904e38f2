// Package sdxl opens a single-file SDXL checkpoint (sgm names, as Civitai,
// A1111 and ComfyUI use them), recognises what it holds, binds the four
// networks of packages unet, clip and vae to its tensors, and builds their
// graphs. It also writes random checkpoints of any size for benchmarks.
package sdxl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/unet"
	"github.com/pixery/pixery/engine/sdxl/vae"
)

// Component names one network of an SDXL checkpoint.
type Component string

// The components, named as the CLI's --component flag names them.
const (
	UNet       Component = "unet"
	CLIPL      Component = "clip_l"
	CLIPG      Component = "clip_g"
	VAE        Component = "vae"
	VAEDecoder Component = "vae_decoder"
	VAEEncoder Component = "vae_encoder"
)

// Prefix returns the sgm prefix of a component's tensors.
func (c Component) Prefix() string {
	switch c {
	case UNet:
		return unet.Prefix
	case CLIPL:
		return clip.PrefixL
	case CLIPG:
		return clip.PrefixG
	case VAE, VAEDecoder, VAEEncoder:
		return vae.Prefix
	}
	return ""
}

// Components are the four networks in checkpoint order.
var Components = []Component{UNet, CLIPL, CLIPG, VAE}

// Configs holds the sizes of all four networks.
type Configs struct {
	UNet  unet.Config
	CLIPL clip.Config
	CLIPG clip.Config
	VAE   vae.Config
}

// Default returns SDXL base's sizes.
func Default() Configs {
	return Configs{UNet: unet.SDXL(), CLIPL: clip.L.SDXL(), CLIPG: clip.G.SDXL(), VAE: vae.SDXL()}
}

// LoadConfigDir reads a folder laid out as diffusers lays out a pipeline:
// unet/config.json, vae/config.json, text_encoder/config.json and
// text_encoder_2/config.json. A component whose file is absent keeps
// SDXL's sizes; a file that is present but invalid is an error.
func LoadConfigDir(dir string) (Configs, error) {
	cfg := Default()
	read := func(sub string, parse func([]byte) error) error {
		p := filepath.Join(dir, sub, "config.json")
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := parse(data); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	}
	err := errors.Join(
		read("unet", func(b []byte) (err error) { cfg.UNet, err = unet.ParseConfig(b); return }),
		read("vae", func(b []byte) (err error) { cfg.VAE, err = vae.ParseConfig(b); return }),
		read("text_encoder", func(b []byte) (err error) { cfg.CLIPL, err = clip.ParseConfig(b); return }),
		read("text_encoder_2", func(b []byte) (err error) { cfg.CLIPG, err = clip.ParseConfig(b); return }),
	)
	return cfg, err
}

// Architecture is what a checkpoint was recognised as.
type Architecture string

// Recognised architectures. Only SDXL base (and its fine-tunes) is supported.
const (
	ArchSDXL        Architecture = "sdxl"
	ArchSDXLRefiner Architecture = "sdxl-refiner"
	ArchSD1         Architecture = "sd1"
	ArchSD2         Architecture = "sd2"
	ArchUnknown     Architecture = "unknown"
)

// Prediction is the UNet's output type, marked by extra keys in the file
// (ComfyUI's convention, architecture.md §7).
type Prediction string

// Prediction types.
const (
	Epsilon     Prediction = "epsilon"
	VPrediction Prediction = "v_prediction"
	EDMV        Prediction = "edm_v_prediction"
)

// knownExtras are keys real SDXL checkpoints carry that hold no weight the
// networks use; they are listed, never reported as unknown.
var knownExtras = append([]string{"v_pred", "ztsnr", "edm_vpred.sigma_max", "edm_vpred.sigma_min"}, clip.KnownExtras...)

// ComponentInfo summarises one network's tensors.
type ComponentInfo struct {
	Tensors int            `json:"tensors"`
	Params  int64          `json:"params"`
	DTypes  map[string]int `json:"dtypes"`
}

// Info describes a checkpoint from its header alone.
type Info struct {
	Path            string                      `json:"path"`
	Architecture    Architecture                `json:"architecture"`
	Evidence        string                      `json:"evidence,omitempty"`
	Components      map[Component]ComponentInfo `json:"components"`
	DType           string                      `json:"dtype"`
	Tensors         int                         `json:"tensors"`
	Params          int64                       `json:"params"`
	Prediction      Prediction                  `json:"prediction"`
	ZeroTerminalSNR bool                        `json:"zero_terminal_snr"`
	KnownExtras     []string                    `json:"known_extras"`
	// Unknown lists keys outside every component prefix that are not
	// known extras. Keys inside a prefix that no layer binds are found by
	// binding (Checkpoint.Unknown).
	Unknown []string `json:"unknown"`
}

// Inspect recognises the architecture and summarises the tensors.
func Inspect(f *safetensors.File) Info {
	info := Info{Path: f.Path, Components: map[Component]ComponentInfo{}, Prediction: Epsilon, Unknown: []string{}, KnownExtras: []string{}}
	dtypes := map[string]int{}
	has := func(prefix string) bool {
		for _, n := range f.Names() {
			if strings.HasPrefix(n, prefix) {
				return true
			}
		}
		return false
	}
	for _, t := range f.Tensors() {
		info.Tensors++
		n := t.NumElements()
		info.Params += n
		dtypes[string(t.DType)]++
		if slices.Contains(knownExtras, t.Name) {
			info.KnownExtras = append(info.KnownExtras, t.Name)
		}
		comp := Component("")
		for _, c := range Components {
			if strings.HasPrefix(t.Name, c.Prefix()) {
				comp = c
			}
		}
		if comp == "" {
			if !slices.Contains(knownExtras, t.Name) {
				info.Unknown = append(info.Unknown, t.Name)
			}
			continue
		}
		if slices.Contains(knownExtras, t.Name) {
			continue
		}
		ci := info.Components[comp]
		if ci.DTypes == nil {
			ci.DTypes = map[string]int{}
		}
		ci.Tensors++
		ci.Params += n
		ci.DTypes[string(t.DType)]++
		info.Components[comp] = ci
	}
	best := 0
	for d, c := range dtypes {
		if c > best || (c == best && d < info.DType) {
			info.DType, best = d, c
		}
	}
	sort.Strings(info.Unknown)
	sort.Strings(info.KnownExtras)
	if _, ok := f.Tensor("v_pred"); ok {
		info.Prediction = VPrediction
	}
	if _, ok := f.Tensor("edm_vpred.sigma_max"); ok {
		info.Prediction = EDMV
	}
	if _, ok := f.Tensor("ztsnr"); ok {
		info.ZeroTerminalSNR = true
	}
	switch {
	case has(clip.PrefixG) && has(unet.Prefix):
		info.Architecture = ArchSDXL
	case has("conditioner.embedders.0.model.") && has(unet.Prefix):
		info.Architecture = ArchSDXLRefiner
		info.Evidence = "the only text encoder is OpenCLIP bigG at conditioner.embedders.0.model. (an SDXL refiner)"
	case has("cond_stage_model.model."):
		info.Architecture = ArchSD2
		info.Evidence = "text encoder at cond_stage_model.model. (OpenCLIP ViT-H, Stable Diffusion 2.x)"
	case has("cond_stage_model.transformer."):
		info.Architecture = ArchSD1
		info.Evidence = "text encoder at cond_stage_model.transformer. (CLIP ViT-L, Stable Diffusion 1.x)"
	case has(unet.Prefix) || has(vae.Prefix) || has(clip.PrefixL):
		// Parts of SDXL (a UNet-only or VAE-only file): binding says more.
		info.Architecture = ArchSDXL
	default:
		info.Architecture = ArchUnknown
		info.Evidence = "no tensor has an SDXL, SD1 or SD2 prefix"
	}
	return info
}

// ErrUnsupported is wrapped by errors for checkpoints of other architectures.
var ErrUnsupported = errors.New("unsupported checkpoint")

// Checkpoint is an opened checkpoint with its networks bound.
type Checkpoint struct {
	File    *safetensors.File
	Weights *nn.Weights
	Configs Configs
	Info    Info
	UNet    *unet.Model
	CLIPL   clip.Encoder
	CLIPG   clip.Encoder
	VAE     *vae.Model
}

// Open reads a checkpoint's header and binds the networks it holds (all
// four unless only is given). Weights are not read: graphs map them from
// the file when sessions are created.
func Open(path string, cfg Configs, only ...Component) (*Checkpoint, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	info := Inspect(f)
	if info.Architecture != ArchSDXL {
		return nil, fmt.Errorf("%s: %w: this is %s (%s); pixery runs SDXL checkpoints", path, ErrUnsupported, info.Architecture, info.Evidence)
	}
	w, err := nn.NewWeights(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Checkpoint{File: f, Weights: w, Configs: cfg, Info: info}
	want := func(x Component) bool { return len(only) == 0 || slices.Contains(only, x) }
	var errs []error
	if want(UNet) {
		if c.UNet, err = unet.New(cfg.UNet); err == nil {
			err = c.UNet.Bind(w)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("unet: %w", err))
		}
	}
	for _, k := range []struct {
		comp Component
		kind clip.Kind
		cfg  clip.Config
		dst  *clip.Encoder
	}{{CLIPL, clip.L, cfg.CLIPL, &c.CLIPL}, {CLIPG, clip.G, cfg.CLIPG, &c.CLIPG}} {
		if !want(k.comp) {
			continue
		}
		enc, err := clip.New(k.kind, k.cfg)
		if err == nil {
			err = enc.Bind(w)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.comp, err))
			continue
		}
		*k.dst = enc
	}
	if want(VAE) || want(VAEDecoder) || want(VAEEncoder) {
		if err := cfg.VAE.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("vae: %w", err))
		} else {
			c.VAE = vae.New(cfg.VAE)
			if err := c.VAE.Bind(w); err != nil {
				errs = append(errs, fmt.Errorf("vae: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.Join(errs...))
	}
	return c, nil
}

// Unknown lists the keys no network bound, other than known extras. Real
// checkpoints should have none; a non-empty list means an architecture
// pixery does not fully understand, so callers show it.
func (c *Checkpoint) Unknown() []string {
	var out []string
	for _, n := range c.File.Names() {
		if !c.Weights.Used(n) && !slices.Contains(knownExtras, n) {
			out = append(out, n)
		}
	}
	return out
}

// Build builds one component's graph.
func (c *Checkpoint) Build(comp Component, o nn.BuildOptions) (*nn.Graph, error) {
	switch comp {
	case UNet:
		if c.UNet == nil {
			break
		}
		return c.UNet.Build(c.Weights, o)
	case CLIPL:
		if c.CLIPL == nil {
			break
		}
		return c.CLIPL.Build(o)
	case CLIPG:
		if c.CLIPG == nil {
			break
		}
		return c.CLIPG.Build(o)
	case VAEDecoder:
		if c.VAE == nil {
			break
		}
		return c.VAE.BuildDecoder(o)
	case VAEEncoder:
		if c.VAE == nil {
			break
		}
		return c.VAE.BuildEncoder(o)
	default:
		return nil, fmt.Errorf("unknown component %q (want unet, clip_l, clip_g, vae_decoder or vae_encoder)", comp)
	}
	return nil, fmt.Errorf("component %s was not loaded", comp)
}

// MarshalIndent is Info as indented JSON, for logs and tests.
func (i Info) String() string {
	b, _ := json.Marshal(i)
	return string(b)
}
