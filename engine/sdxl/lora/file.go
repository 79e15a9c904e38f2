package lora

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/pixery/pixery/engine/pngmeta"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
)

// Format is the naming convention a file was recognised in.
type Format string

// The naming conventions (lora.md §1 and §4).
const (
	// Kohya is kohya-ss's lora_unet_* / lora_te1_* / lora_te2_* names with
	// .lora_down.weight, .lora_up.weight and .alpha (Civitai's usual files).
	Kohya Format = "kohya"
	// PEFT is current diffusers: unet.<path>.lora_A.weight / lora_B.weight.
	PEFT Format = "peft"
	// Diffusers is older diffusers naming: <path>.lora.down.weight,
	// …processor.to_q_lora.down.weight, …lora_linear_layer.down.weight.
	Diffusers Format = "diffusers"
)

// ErrArchitecture is wrapped by errors for LoRA files made for another
// model than the one they are opened against (SD1.x, SD2.x, other sizes).
var ErrArchitecture = errors.New("LoRA does not fit this model")

// ErrUnsupported is wrapped by errors for files of LoRA variants pixery does
// not apply (LyCORIS LoHa, LoKr, Tucker LoCon, DoRA, full diffs).
var ErrUnsupported = errors.New("unsupported LoRA type")

// Module is one adapted layer of a file: ΔW = (Alpha/Rank) · Up · Down.
type Module struct {
	// Name is the module's name in the file (without the tensor suffix).
	Name  string
	Layer *Layer
	Rank  int64
	// Alpha is the file's alpha, or Rank when the file has none (kohya
	// and diffusers both default to alpha = r, i.e. a factor of 1).
	Alpha float64
	// Down is [Rank, In·k·k] and Up is [Out, Rank], row-major, float32.
	Down, Up []float32
}

// Factor is alpha/rank, the module's own multiplier on Up·Down.
func (m *Module) Factor() float64 { return m.Alpha / float64(m.Rank) }

// File is a LoRA file read and mapped onto an Arch's layers. Its factors are
// held in memory as float32; the file is not kept open.
type File struct {
	Path   string
	Format Format
	// UNetNaming is "sgm" or "diffusers" for kohya files that adapt the
	// UNet ("diffusers" for PEFT and old diffusers files), "" otherwise.
	UNetNaming string
	// Modules are the adapted layers in the Arch's layer order.
	Modules []*Module
	// Unmatched lists, sorted, the tensor names that name no layer of the
	// model (A1111 and ComfyUI skip them silently). They are not applied;
	// callers should show them to the user.
	Unmatched []string
	Metadata  map[string]string
	arch      *Arch
	byIndex   []*Module // by layer index
}

// module returns the file's module for the layer with that index, or nil.
func (f *File) module(index int) *Module {
	if index < 0 || index >= len(f.byIndex) {
		return nil
	}
	return f.byIndex[index]
}

// Arch returns the architecture the file was mapped onto.
func (f *File) Arch() *Arch { return f.arch }

// Targets returns the layers the file changes, in layer order.
func (f *File) Targets() []*Layer {
	out := make([]*Layer, len(f.Modules))
	for i, m := range f.Modules {
		out[i] = m.Layer
	}
	return out
}

// Hash is A1111's "Lora hashes" value for the file (kohya's addnet hash:
// the first 12 hex digits of the SHA-256 of the data section).
func (f *File) Hash() (string, error) { return pngmeta.LoRAHash(f.Path) }

// role is what a tensor of a module is.
type role int

const (
	roleDown role = iota
	roleUp
	roleAlpha
)

// suffixes are the tensor-name endings of plain LoRA, in the order they are
// tried (longest first where one ends another).
var suffixes = []struct {
	suffix string
	role   role
	format Format
}{
	{".lora_linear_layer.down.weight", roleDown, Diffusers},
	{".lora_linear_layer.up.weight", roleUp, Diffusers},
	{"_lora.down.weight", roleDown, Diffusers}, // …processor.to_q_lora.down.weight
	{"_lora.up.weight", roleUp, Diffusers},
	{".lora.down.weight", roleDown, Diffusers},
	{".lora.up.weight", roleUp, Diffusers},
	{".lora_down.weight", roleDown, Kohya},
	{".lora_up.weight", roleUp, Kohya},
	{".lora_A.weight", roleDown, PEFT},
	{".lora_B.weight", roleUp, PEFT},
	{".alpha", roleAlpha, ""},
}

// unsupported are tensor endings of other LoRA-like algorithms (ComfyUI's
// load_lora knows them all, lora.md §1). Applying only the plain-LoRA part
// of such a file, or nothing, would silently give other images.
var unsupported = []struct{ marker, what string }{
	{".lora_mid.weight", "LyCORIS LoCon with a Tucker middle factor (lora_mid)"},
	{".dora_scale", "DoRA (dora_scale)"},
	{".lora_magnitude_vector", "DoRA (lora_magnitude_vector)"},
	{".hada_w1_a", "LyCORIS LoHa (hada_*)"}, {".hada_w1_b", "LyCORIS LoHa (hada_*)"},
	{".hada_w2_a", "LyCORIS LoHa (hada_*)"}, {".hada_w2_b", "LyCORIS LoHa (hada_*)"},
	{".hada_t1", "LyCORIS LoHa (hada_*)"}, {".hada_t2", "LyCORIS LoHa (hada_*)"},
	{".lokr_w1", "LyCORIS LoKr (lokr_*)"}, {".lokr_w2", "LyCORIS LoKr (lokr_*)"},
	{".lokr_w1_a", "LyCORIS LoKr (lokr_*)"}, {".lokr_w1_b", "LyCORIS LoKr (lokr_*)"},
	{".lokr_w2_a", "LyCORIS LoKr (lokr_*)"}, {".lokr_w2_b", "LyCORIS LoKr (lokr_*)"},
	{".lokr_t2", "LyCORIS LoKr (lokr_*)"},
	{".oft_blocks", "OFT (oft_blocks)"}, {".oft_diag", "OFT (oft_diag)"},
	{".diff", "a full weight difference (diff)"}, {".diff_b", "a full bias difference (diff_b)"},
	{".lora_B.bias", "LoRA with a bias on the up factor (lora_B.bias)"},
	{".lora_up.bias", "LoRA with a bias on the up factor (lora_up.bias)"},
}

// normalise rewrites old diffusers module names to the current ones
// (lora.md §4): the attention-processor form
// "….attn1.processor.to_q" → "….attn1.to_q", "processor.to_out" →
// "to_out.0", and the text encoders' "self_attn.to_q" → "self_attn.q_proj".
func normalise(module string) string {
	if i := strings.Index(module, ".processor.to_"); i >= 0 {
		module = module[:i] + module[i+len(".processor"):]
		if strings.HasSuffix(module, ".to_out") {
			module += ".0"
		}
	}
	for _, r := range [][2]string{{".self_attn.to_q", ".self_attn.q_proj"}, {".self_attn.to_k", ".self_attn.k_proj"},
		{".self_attn.to_v", ".self_attn.v_proj"}, {".self_attn.to_out", ".self_attn.out_proj"}} {
		if strings.HasSuffix(module, r[0]) {
			module = strings.TrimSuffix(module, r[0]) + r[1]
		}
	}
	return module
}

// entry collects the tensors of one module while reading.
type entry struct {
	name            string
	down, up, alpha string
	format          Format
}

// Open reads a LoRA file and maps it onto the architecture. It detects the
// naming convention by the tensor names, reads every factor as float32, and
// checks every shape against the layer it changes. Errors: the safetensors
// error for a damaged or truncated file; ErrUnsupported for other
// algorithms; ErrArchitecture when modules do not fit (an SD1.x/SD2.x LoRA,
// wrong ranks, kernel sizes or widths) or when nothing matches. Names that
// match no layer are not an error: they are listed in Unmatched.
func (a *Arch) Open(path string) (*File, error) {
	st, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open LoRA: %w", err)
	}
	f, err := a.read(st)
	if err != nil {
		return nil, fmt.Errorf("open LoRA %s: %w", path, err)
	}
	return f, nil
}

// Open reads a LoRA file for a model of the given sizes; see Arch.Open.
// Callers that open several files should make one Arch and reuse it.
func Open(path string, cfg sdxl.Configs) (*File, error) {
	a, err := NewArch(cfg)
	if err != nil {
		return nil, err
	}
	return a.Open(path)
}

func (a *Arch) read(st *safetensors.File) (*File, error) {
	f := &File{Path: st.Path, Metadata: st.Metadata, arch: a}
	entries := map[string]*entry{}
	var unsupportedSeen []string
	formats := map[Format]bool{}
	for _, name := range st.Names() {
		matched := false
		for _, s := range suffixes {
			if !strings.HasSuffix(name, s.suffix) {
				continue
			}
			module := strings.TrimSuffix(name, s.suffix)
			e := entries[module]
			if e == nil {
				e = &entry{name: module}
				entries[module] = e
			}
			switch s.role {
			case roleDown:
				e.down = name
			case roleUp:
				e.up = name
			case roleAlpha:
				e.alpha = name
			}
			if s.format != "" {
				if e.format != "" && e.format != s.format {
					return nil, fmt.Errorf("module %s mixes %s and %s tensor names", module, e.format, s.format)
				}
				e.format = s.format
			}
			matched = true
			break
		}
		if matched {
			continue
		}
		for _, u := range unsupported {
			if strings.HasSuffix(name, u.marker) || strings.Contains(name, u.marker+".") {
				unsupportedSeen = append(unsupportedSeen, fmt.Sprintf("%s (%s)", u.what, name))
				matched = true
				break
			}
		}
		if !matched {
			f.Unmatched = append(f.Unmatched, name)
		}
	}
	if len(unsupportedSeen) > 0 {
		return nil, fmt.Errorf("%w: %s%s; only plain LoRA (down/up/alpha, LoCon convolutions included) is supported",
			ErrUnsupported, unsupportedSeen[0], more(len(unsupportedSeen)-1, "tensor"))
	}
	if err := a.sdSignature(entries); err != nil {
		return nil, err
	}

	meta, err := peftAlphas(st.Metadata)
	if err != nil {
		return nil, err
	}
	byLayer := map[*Layer]string{}
	type job struct {
		e     *entry
		layer *Layer
		m     *Module
		err   error
	}
	var jobs []*job
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		layer, ok := a.Lookup(normalise(n))
		if !ok || e.down == "" || e.up == "" {
			// A module that names no layer, or half a module: report every
			// tensor of it.
			for _, t := range []string{e.down, e.up, e.alpha} {
				if t != "" {
					f.Unmatched = append(f.Unmatched, t)
				}
			}
			continue
		}
		formats[e.format] = true
		if prev, dup := byLayer[layer]; dup {
			return nil, fmt.Errorf("modules %s and %s both change %s", prev, n, layer.ID())
		}
		byLayer[layer] = n
		jobs = append(jobs, &job{e: e, layer: layer})
	}
	// Reading and widening the factors is most of the work (a rank-32 SDXL
	// file is about 100 M values); modules are independent.
	parallel(len(jobs), func(i int) {
		j := jobs[i]
		j.m, j.err = readModule(st, j.e, j.layer, meta)
	})
	var shapeErrs []*shapeError
	for _, j := range jobs {
		var se *shapeError
		if errors.As(j.err, &se) {
			shapeErrs = append(shapeErrs, se)
			continue
		}
		if j.err != nil {
			return nil, j.err
		}
		f.Modules = append(f.Modules, j.m)
	}
	if len(shapeErrs) > 0 {
		msgs := make([]string, 0, 4)
		for _, se := range shapeErrs[:min(4, len(shapeErrs))] {
			msgs = append(msgs, se.Error())
		}
		return nil, fmt.Errorf("%w%s: %d module(s) have shapes this model's layers cannot take: %s%s",
			ErrArchitecture, archHint(shapeErrs), len(shapeErrs), strings.Join(msgs, "; "), more(len(shapeErrs)-4, "module"))
	}
	if len(f.Modules) == 0 {
		ex := ""
		if len(f.Unmatched) > 0 {
			ex = fmt.Sprintf(" (e.g. %s)", f.Unmatched[0])
		}
		return nil, fmt.Errorf("%w: none of its %d tensors names a layer of this SDXL model%s", ErrArchitecture, st.Len(), ex)
	}
	f.byIndex = make([]*Module, len(a.layers))
	for _, m := range f.Modules {
		f.byIndex[m.Layer.index] = m
	}
	sort.Strings(f.Unmatched)
	slices.SortFunc(f.Modules, func(x, y *Module) int { return x.Layer.index - y.Layer.index })
	switch {
	case formats[Kohya]:
		f.Format = Kohya
	case formats[PEFT]:
		f.Format = PEFT
	default:
		f.Format = Diffusers
	}
	for _, m := range f.Modules {
		if m.Layer.Component != sdxl.UNet {
			continue
		}
		naming := "diffusers"
		if m.Name == m.Layer.Kohya || strings.Contains(m.Name, "diffusion_model.") {
			naming = "sgm"
		}
		if f.UNetNaming != "" && f.UNetNaming != naming {
			naming = "mixed"
		}
		f.UNetNaming = naming
	}
	return f, nil
}

func more(n int, what string) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(" … and %d more %s(s)", n, what)
}

// sdSignature recognises LoRAs for Stable Diffusion 1.x/2.x by names SDXL
// LoRAs never use, so that the error says what the file is: kohya's single
// text encoder prefix lora_te_ (lora.md §1), and attention blocks at the
// UNet's first down / last up level, which SDXL does not have.
func (a *Arch) sdSignature(entries map[string]*entry) error {
	for n := range entries {
		if strings.HasPrefix(n, "lora_te_") {
			return fmt.Errorf("%w: it is a LoRA for Stable Diffusion 1.x/2.x (single text encoder, %s…); SDXL LoRAs use lora_te1_/lora_te2_", ErrArchitecture, n)
		}
	}
	for n := range entries {
		if _, ok := a.Lookup(normalise(n)); ok {
			continue
		}
		for _, sd := range []string{"down_blocks_0_attentions_", "down_blocks.0.attentions.", "up_blocks_3_attentions_", "up_blocks.3.attentions."} {
			if strings.Contains(n, sd) {
				return fmt.Errorf("%w: it is a LoRA for Stable Diffusion 1.x/2.x (it adapts %s, a transformer SDXL's UNet does not have)", ErrArchitecture, n)
			}
		}
	}
	return nil
}

// shapeError is a module whose factors do not fit its layer.
type shapeError struct {
	module   string
	layer    *Layer
	down, up []int64
}

func (e *shapeError) Error() string {
	r := e.down[0]
	return fmt.Sprintf("%s: down %v / up %v, but %s (%s, in %d out %d) needs %v / %v",
		e.module, e.down, e.up, e.layer.ID(), kind(e.layer), e.layer.In, e.layer.Out, e.layer.DownShape(r), e.layer.UpShape(r))
}

// archHint names the likely architecture from the input width of
// cross-attention key/value factors: 768 is SD1.x's context, 1024 SD2.x's
// (SDXL's is 2048).
func archHint(errs []*shapeError) string {
	for _, e := range errs {
		if !strings.Contains(e.layer.Key, ".attn2.to_k.") && !strings.Contains(e.layer.Key, ".attn2.to_v.") || len(e.down) < 2 {
			continue
		}
		switch e.down[1] {
		case 768:
			return " (cross-attention context 768: a LoRA for Stable Diffusion 1.x)"
		case 1024:
			return " (cross-attention context 1024: a LoRA for Stable Diffusion 2.x)"
		}
	}
	return ""
}

// readModule reads and checks one module's factors.
func readModule(st *safetensors.File, e *entry, l *Layer, meta *peftMeta) (*Module, error) {
	dt, _ := st.Tensor(e.down)
	ut, _ := st.Tensor(e.up)
	ds, us := dt.Shape, ut.Shape
	if len(ds) < 2 || len(us) < 2 {
		return nil, fmt.Errorf("%s: down %v / up %v are not matrices", e.name, ds, us)
	}
	r := ds[0]
	if us[1] != r {
		return nil, fmt.Errorf("%s: rank mismatch: %s has rank %d (shape %v) but %s has rank %d (shape %v)",
			e.name, e.down, r, ds, e.up, us[1], us)
	}
	if r <= 0 {
		return nil, fmt.Errorf("%s: rank %d", e.name, r)
	}
	if !fitsDown(l, ds) || !fitsUp(l, us) {
		return nil, &shapeError{module: e.name, layer: l, down: ds, up: us}
	}
	down, err := st.ReadFloat32(e.down)
	if err != nil {
		return nil, err
	}
	up, err := st.ReadFloat32(e.up)
	if err != nil {
		return nil, err
	}
	m := &Module{Name: e.name, Layer: l, Rank: r, Alpha: float64(r), Down: down, Up: up}
	switch {
	case e.alpha != "":
		at, _ := st.Tensor(e.alpha)
		if at.NumElements() != 1 {
			return nil, fmt.Errorf("%s: alpha has shape %v, want a scalar", e.alpha, at.Shape)
		}
		v, err := st.ReadFloat32(e.alpha)
		if err != nil {
			return nil, err
		}
		m.Alpha = float64(v[0])
	case e.format == PEFT || e.format == Diffusers:
		m.Alpha = meta.alpha(l, r)
	}
	if math.IsNaN(m.Alpha) || math.IsInf(m.Alpha, 0) {
		return nil, fmt.Errorf("%s: alpha %v is not a finite number", e.name, m.Alpha)
	}
	if bad := firstNonFinite(down); bad >= 0 {
		return nil, fmt.Errorf("%s: value %d is %v", e.down, bad, down[bad])
	}
	if bad := firstNonFinite(up); bad >= 0 {
		return nil, fmt.Errorf("%s: value %d is %v", e.up, bad, up[bad])
	}
	return m, nil
}

func firstNonFinite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}

func kind(l *Layer) string {
	if l.Kernel == 0 {
		return "linear"
	}
	return fmt.Sprintf("%d×%d conv", l.Kernel, l.Kernel)
}

// fitsDown accepts [r, in] for a linear layer (also [r, in, 1, 1], as some
// trainers store linear factors as 1×1 convolutions) and [r, in, k, k] for a
// k×k convolution.
func fitsDown(l *Layer, s []int64) bool {
	switch {
	case l.Kernel == 0 && len(s) == 2:
		return s[1] == l.In
	case len(s) == 4:
		k := max(l.Kernel, 1)
		return s[1] == l.In && s[2] == k && s[3] == k
	}
	return false
}

// fitsUp accepts [out, r] or [out, r, 1, 1]: the up factor is always a 1×1
// convolution (lora.md §1), for convolutions too.
func fitsUp(l *Layer, s []int64) bool {
	switch len(s) {
	case 2:
		return s[0] == l.Out && l.Kernel <= 1
	case 4:
		return s[0] == l.Out && s[2] == 1 && s[3] == 1
	}
	return false
}

// peftMeta is the alpha information diffusers stores in the safetensors
// metadata under "lora_adapter_metadata" (lora.md §4): the LoraConfig of
// each component, keys prefixed "unet.", "text_encoder.",
// "text_encoder_2." (or unprefixed for one model's adapter).
type peftMeta struct {
	byComponent map[string]peftConfig
}

type peftConfig struct {
	Alpha        *float64           `json:"lora_alpha"`
	AlphaPattern map[string]float64 `json:"alpha_pattern"`
	RSLoRA       bool               `json:"use_rslora"`
}

func peftAlphas(md map[string]string) (*peftMeta, error) {
	m := &peftMeta{byComponent: map[string]peftConfig{}}
	raw, ok := md["lora_adapter_metadata"]
	if !ok {
		return m, nil
	}
	var flat map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &flat); err != nil {
		return nil, fmt.Errorf("metadata lora_adapter_metadata: %w", err)
	}
	// Group "<component>.<field>" keys per component; unprefixed fields
	// belong to "" (an adapter saved for one model).
	group := map[string]map[string]json.RawMessage{}
	for k, v := range flat {
		comp, field := "", k
		for _, p := range []string{"unet.", "text_encoder_2.", "text_encoder."} {
			if strings.HasPrefix(k, p) {
				comp, field = strings.TrimSuffix(p, "."), strings.TrimPrefix(k, p)
				break
			}
		}
		if group[comp] == nil {
			group[comp] = map[string]json.RawMessage{}
		}
		group[comp][field] = v
	}
	for comp, fields := range group {
		data, _ := json.Marshal(fields)
		var c peftConfig
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("metadata lora_adapter_metadata (%s): %w", comp, err)
		}
		m.byComponent[comp] = c
	}
	return m, nil
}

// alpha is PEFT's scaling numerator for a layer of rank r: alpha_pattern's
// entry for the module, else lora_alpha, else r (diffusers'
// get_peft_kwargs default). With use_rslora PEFT scales by alpha/√r; the
// value returned then makes alpha/r equal that.
func (m *peftMeta) alpha(l *Layer, r int64) float64 {
	comp, path, _ := strings.Cut(l.Diffusers, ".")
	c, ok := m.byComponent[comp]
	if !ok {
		c, ok = m.byComponent[""]
	}
	if !ok {
		return float64(r)
	}
	a := float64(r)
	if c.Alpha != nil {
		a = *c.Alpha
	}
	// PEFT matches pattern keys as a suffix of the module path on a dot
	// boundary; the longest match is the most specific.
	best := -1
	for pat, v := range c.AlphaPattern {
		if (path == pat || strings.HasSuffix(path, "."+pat)) && len(pat) > best {
			a, best = v, len(pat)
		}
	}
	if c.RSLoRA {
		a = a * float64(r) / math.Sqrt(float64(r))
	}
	return a
}
