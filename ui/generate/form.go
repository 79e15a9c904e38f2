package generate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/settings"
	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/sampler"
)

// FormState is what the form holds, persisted between runs by the top level
// (settings.Settings.Last). Zero values mean "the model's default": State
// leaves a field zero while it follows the model, so a restored form follows
// the model there and keeps what the user chose elsewhere.
type FormState = settings.Form

// Preset is an SDXL size bucket offered by the size picker.
type Preset struct{ Width, Height int }

// Label is how the size picker shows it: "832×1216".
func (p Preset) Label() string { return fmt.Sprintf("%d×%d", p.Width, p.Height) }

// Presets are SDXL's training buckets near one megapixel.
var Presets = []Preset{
	{1024, 1024}, {832, 1216}, {1216, 832}, {896, 1152}, {1152, 896},
	{768, 1344}, {1344, 768}, {640, 1536}, {1536, 640},
}

// CustomSize is the size picker's entry for a size that is no preset.
const CustomSize = "Custom"

// Seed modes as the seed picker shows them.
const (
	seedRandomLabel    = "Random"
	seedFixedLabel     = "Fixed"
	seedIncrementLabel = "Increment"
)

var seedModes = []struct{ mode, label string }{
	{settings.SeedRandom, seedRandomLabel},
	{settings.SeedFixed, seedFixedLabel},
	{settings.SeedIncrement, seedIncrementLabel},
}

// RNG choices of the advanced settings.
const (
	rngA1111Label = "A1111 (GPU noise)"
	rngComfyLabel = "ComfyUI (CPU noise)"
)

// field is a form field that a model has a default for.
type field int

const (
	fieldWidth field = iota
	fieldHeight
	fieldSteps
	fieldCFG
	fieldSampler
	fieldNegative
	numFields
)

var fieldNames = [numFields]string{"width", "height", "steps", "CFG", "sampler", "negative prompt"}

// formState is the bookkeeping behind the fields with model defaults.
type formState struct {
	// applied holds the value each field was last given by a model (or
	// the form's start); a field whose value differs was changed by the
	// user and is kept when another model is chosen.
	applied [numFields]string
	// lastSeed is the first seed of the last finished job, for ReuseSeed.
	lastSeed    int64
	hasLastSeed bool
	// settingSize is set while the size picker fills Width and Height, so
	// their OnChanged does not turn the picker to Custom halfway.
	settingSize bool
}

// applyDefaults records the fields' current values as applied: what the
// form starts with counts as not changed by the user.
func (f *formState) applyDefaults(v *View) {
	for fl := range numFields {
		f.applied[fl] = v.fieldValue(fl)
	}
}

func (v *View) buildForm() {
	v.Width = widget.NewEntry()
	v.Height = widget.NewEntry()
	v.Width.SetText("1024")
	v.Height.SetText("1024")
	labels := make([]string, 0, len(Presets)+1)
	for _, p := range Presets {
		labels = append(labels, p.Label())
	}
	labels = append(labels, CustomSize)
	v.SizePreset = widget.NewSelect(labels, v.presetChosen)
	v.SizePreset.SetSelected(Presets[0].Label())
	v.Width.OnChanged = func(string) { v.sizeTyped() }
	v.Height.OnChanged = func(string) { v.sizeTyped() }
	v.SwapSize = widget.NewButtonWithIcon("", theme.ViewRefreshIcon(), func() {
		w, h := v.Width.Text, v.Height.Text
		v.form.settingSize = true
		v.Width.SetText(h)
		v.Height.SetText(w)
		v.form.settingSize = false
		v.sizeTyped()
	})

	v.Steps = widget.NewEntry()
	v.Steps.SetText("28")
	v.Steps.OnChanged = func(string) { v.updateHints() }
	v.CFG = widget.NewEntry()
	v.CFG.SetText("5")
	v.CFG.OnChanged = func(string) { v.updateHints() }
	v.Sampler = widget.NewSelect(sampler.Names(), func(string) { v.updateHints() })
	v.Sampler.SetSelected("euler_a")

	modeLabels := make([]string, len(seedModes))
	for i, m := range seedModes {
		modeLabels[i] = m.label
	}
	v.Seed = widget.NewEntry()
	v.Seed.SetPlaceHolder("random each job")
	v.SeedMode = widget.NewSelect(modeLabels, func(label string) {
		if label == seedRandomLabel {
			v.Seed.SetPlaceHolder("random each job")
			v.Seed.Disable()
		} else {
			v.Seed.SetPlaceHolder("seed")
			v.Seed.Enable()
			if strings.TrimSpace(v.Seed.Text) == "" {
				v.Seed.SetText(strconv.FormatInt(randomSeed(), 10))
			}
		}
	})
	v.SeedMode.SetSelected(seedRandomLabel)
	v.ReuseSeed = widget.NewButtonWithIcon("Last", theme.HistoryIcon(), v.reuseLastSeed)
	v.ReuseSeed.Disable()
	v.Batch = widget.NewEntry()
	v.Batch.SetText("1")

	v.RNG = widget.NewSelect([]string{rngA1111Label, rngComfyLabel}, nil)
	v.RNG.SetSelected(rngA1111Label)
	v.ClipSkip = widget.NewEntry()
	v.ClipSkip.SetPlaceHolder("model default")

	hint := func(f func()) *widget.Button {
		b := widget.NewButtonWithIcon("", theme.HistoryIcon(), f)
		b.Importance = widget.LowImportance
		b.Hide()
		return b
	}
	v.SizeDefault = hint(func() { v.useDefault(fieldWidth, fieldHeight) })
	v.StepsDefault = hint(func() { v.useDefault(fieldSteps) })
	v.CFGDefault = hint(func() { v.useDefault(fieldCFG) })
	v.SamplerDefault = hint(func() { v.useDefault(fieldSampler) })
	v.NegativeDefault = hint(func() { v.useDefault(fieldNegative) })
}

// presetChosen fills the size from a preset.
func (v *View) presetChosen(label string) {
	if v.form.settingSize {
		return
	}
	for _, p := range Presets {
		if p.Label() == label {
			v.form.settingSize = true
			v.Width.SetText(strconv.Itoa(p.Width))
			v.Height.SetText(strconv.Itoa(p.Height))
			v.form.settingSize = false
			break
		}
	}
	v.updateHints()
}

// sizeTyped points the preset picker at the size typed, or at Custom.
func (v *View) sizeTyped() {
	if v.form.settingSize {
		return
	}
	label := CustomSize
	w, _ := strconv.Atoi(strings.TrimSpace(v.Width.Text))
	h, _ := strconv.Atoi(strings.TrimSpace(v.Height.Text))
	for _, p := range Presets {
		if p.Width == w && p.Height == h {
			label = p.Label()
		}
	}
	if v.SizePreset.Selected != label {
		v.form.settingSize = true
		v.SizePreset.SetSelected(label)
		v.form.settingSize = false
	}
	v.updateHints()
}

func (v *View) fieldValue(f field) string {
	switch f {
	case fieldWidth:
		return strings.TrimSpace(v.Width.Text)
	case fieldHeight:
		return strings.TrimSpace(v.Height.Text)
	case fieldSteps:
		return strings.TrimSpace(v.Steps.Text)
	case fieldCFG:
		return normFloat(v.CFG.Text)
	case fieldSampler:
		return v.Sampler.Selected
	case fieldNegative:
		return v.Negative.Text
	}
	return ""
}

// normFloat writes a number the way defaults are written, so that "5.0"
// typed and 5 from the model compare equal.
func normFloat(s string) string {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return s
}

func (v *View) setField(f field, s string) {
	switch f {
	case fieldWidth:
		v.Width.SetText(s)
	case fieldHeight:
		v.Height.SetText(s)
	case fieldSteps:
		v.Steps.SetText(s)
	case fieldCFG:
		v.CFG.SetText(s)
	case fieldSampler:
		if !slices.Contains(v.Sampler.Options, s) {
			v.Sampler.Options = append(v.Sampler.Options, s)
		}
		v.Sampler.SetSelected(s)
	case fieldNegative:
		v.Negative.SetText(s)
	}
}

// modelDefault is model m's value for field f; ok is false when the model
// has none (a zero default).
func modelDefault(m *api.Model, f field) (string, bool) {
	if m == nil {
		return "", false
	}
	d := m.Defaults
	switch f {
	case fieldWidth:
		return strconv.Itoa(d.Width), d.Width > 0
	case fieldHeight:
		return strconv.Itoa(d.Height), d.Height > 0
	case fieldSteps:
		return strconv.Itoa(d.Steps), d.Steps > 0
	case fieldCFG:
		return strconv.FormatFloat(d.CFG, 'f', -1, 64), d.CFG > 0
	case fieldSampler:
		if d.Sampler == "" {
			return "", false
		}
		if spec, err := sampler.Lookup(d.Sampler, d.Scheduler); err == nil {
			return spec.Name(), true
		}
		return d.Sampler, true
	case fieldNegative:
		return m.NegativePrompt, true
	}
	return "", false
}

// applyModel gives every field the model's default unless the user changed
// it since the last model was applied; changed fields keep their value and
// their "use model default" button shows.
func (v *View) applyModel(m *api.Model) {
	for f := range numFields {
		def, ok := modelDefault(m, f)
		if !ok {
			continue
		}
		if v.fieldValue(f) == v.form.applied[f] {
			v.setField(f, def)
		}
		v.form.applied[f] = def
	}
	v.sizeTyped()
	v.updateHints()
}

// useDefault sets fields to the current model's defaults.
func (v *View) useDefault(fs ...field) {
	m := v.currentModel()
	for _, f := range fs {
		if def, ok := modelDefault(m, f); ok {
			v.setField(f, def)
			v.form.applied[f] = def
		}
	}
	v.sizeTyped()
	v.updateHints()
}

// updateHints shows the "use model default" buttons of the fields whose
// value differs from the model's default.
func (v *View) updateHints() {
	if v.SizeDefault == nil || v.Negative == nil {
		return // still building
	}
	m := v.currentModel()
	show := func(b *widget.Button, text string, differs bool) {
		if differs {
			if b.Text != text {
				b.SetText(text)
			}
			if !b.Visible() {
				b.Show()
			}
		} else if b.Visible() {
			b.Hide()
		}
	}
	differs := func(f field) (string, bool) {
		def, ok := modelDefault(m, f)
		return def, ok && v.fieldValue(f) != def
	}
	dw, bw := differs(fieldWidth)
	dh, bh := differs(fieldHeight)
	if m != nil {
		dw, dh = strconv.Itoa(m.Defaults.Width), strconv.Itoa(m.Defaults.Height)
	}
	show(v.SizeDefault, "model: "+dw+"×"+dh, bw || bh)
	d, b := differs(fieldSteps)
	show(v.StepsDefault, "model: "+d, b)
	d, b = differs(fieldCFG)
	show(v.CFGDefault, "model: "+d, b)
	d, b = differs(fieldSampler)
	show(v.SamplerDefault, "model: "+d, b)
	_, b = differs(fieldNegative)
	show(v.NegativeDefault, "use model's negative prompt", b)
}

// reuseLastSeed puts the last finished job's seed in the seed field.
func (v *View) reuseLastSeed() {
	if !v.form.hasLastSeed {
		v.setStatus("No finished job yet whose seed could be reused.")
		return
	}
	v.SeedMode.SetSelected(seedFixedLabel)
	v.Seed.SetText(strconv.FormatInt(v.form.lastSeed, 10))
}

// seedModeValue maps the picker's label to settings.Seed*.
func (v *View) seedModeValue() string {
	for _, m := range seedModes {
		if m.label == v.SeedMode.Selected {
			return m.mode
		}
	}
	return settings.SeedRandom
}

// Request returns the job Generate would submit, or an error naming each
// field that is wrong (size not a multiple of 8, steps out of range…).
func (v *View) Request() (*api.JobRequest, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	r := &api.JobRequest{
		Prompt:         v.Prompt.Text,
		NegativePrompt: v.Negative.Text,
		Sampler:        v.Sampler.Selected,
	}

	if m := v.currentModel(); m != nil {
		r.Model = m.ID
		switch m.State {
		case api.ModelMissing:
			bad("model %s is not on the engine's disk: press Download first", modelLabel(m))
		case api.ModelDownloading:
			bad("model %s is still downloading (%.0f%%)", modelLabel(m), m.Progress*100)
		}
	} else if len(v.models.list) > 0 {
		bad("no model chosen")
	}
	if strings.TrimSpace(r.Prompt) == "" {
		bad("the prompt is empty")
	}
	if len(r.Prompt) > api.MaxPromptLength || len(r.NegativePrompt) > api.MaxPromptLength {
		bad("the prompt is longer than %d bytes", api.MaxPromptLength)
	}

	size := func(name, s string) int {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		switch {
		case err != nil:
			bad("%s %q is not a whole number of pixels", name, s)
		case n%8 != 0:
			bad("%s %d is not a multiple of 8 (try %d or %d)", name, n, n/8*8, n/8*8+8)
		case n < api.MinSize || n > api.MaxSize:
			bad("%s %d is out of range: use %d to %d", name, n, api.MinSize, api.MaxSize)
		default:
			return n
		}
		return 0
	}
	r.Width = size("width", v.Width.Text)
	r.Height = size("height", v.Height.Text)
	if r.Width > 0 && r.Height > 0 && r.Width*r.Height > api.MaxPixels {
		bad("size %d×%d is more than %d pixels (2048×2048)", r.Width, r.Height, api.MaxPixels)
	}

	if n, err := strconv.Atoi(strings.TrimSpace(v.Steps.Text)); err != nil {
		bad("steps %q is not a whole number", v.Steps.Text)
	} else if n < api.MinSteps || n > api.MaxSteps {
		bad("steps %d is out of range: use %d to %d", n, api.MinSteps, api.MaxSteps)
	} else {
		r.Steps = n
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(v.CFG.Text), 64); err != nil || math.IsNaN(f) {
		bad("CFG %q is not a number", v.CFG.Text)
	} else if f < api.MinCFG || f > api.MaxCFG {
		bad("CFG %g is out of range: use %g to %g", f, api.MinCFG, api.MaxCFG)
	} else {
		r.CFG = f
	}
	if r.Sampler == "" {
		bad("no sampler chosen")
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v.Batch.Text)); err != nil {
		bad("batch %q is not a whole number", v.Batch.Text)
	} else if n < 1 || n > api.MaxBatch {
		bad("batch %d is out of range: use 1 to %d", n, api.MaxBatch)
	} else {
		r.Batch = n
	}

	r.Seed = -1
	if v.seedModeValue() != settings.SeedRandom {
		n, err := strconv.ParseInt(strings.TrimSpace(v.Seed.Text), 10, 64)
		if err != nil || n < 0 {
			bad("seed %q is not a whole number of 0 or more (or choose Random)", v.Seed.Text)
		} else {
			r.Seed = n
		}
	}

	if v.RNG.Selected == rngComfyLabel {
		r.RNG = api.RNGComfy
	}
	if s := strings.TrimSpace(v.ClipSkip.Text); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > api.MaxClipSkip {
			bad("clip skip %q: use 1 to %d, or leave it empty for the model's", s, api.MaxClipSkip)
		} else {
			r.ClipSkip = n
		}
	}

	if len(v.LoRARows) > api.MaxLoRAs {
		bad("%d LoRAs: at most %d", len(v.LoRARows), api.MaxLoRAs)
	}
	for _, row := range v.LoRARows {
		r.LoRAs = append(r.LoRAs, api.LoRA{Name: row.name, Scale: roundScale(row.Weight.Value)})
	}

	if v.ref.data != nil {
		r.IPAdapter = &api.IPAdapter{
			Image:   v.ref.data,
			Scale:   roundScale(v.ReferenceScale.Value),
			Adapter: v.Adapter.Selected,
		}
		if r.IPAdapter.Scale == 0 {
			// 0 means 1 on the wire; a weight of 0 is no reference at all.
			r.IPAdapter = nil
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// roundScale drops the float noise a slider adds (0.6000000000000001).
func roundScale(f float64) float64 { return math.Round(f*1000) / 1000 }

// Generate submits the form's request to the queue, as the Generate button
// and Ctrl+Enter do. Errors (a bad field, an engine that refuses or cannot
// be reached) show in Status; nothing is submitted then.
func (v *View) Generate() {
	req, err := v.Request()
	if err != nil {
		v.setError(fmt.Errorf("Not generated: %w", err))
		return
	}
	if v.d.Queue == nil {
		v.setError(errNoEngine)
		return
	}
	if v.seedModeValue() == settings.SeedIncrement {
		// The next job goes on after this one's images (image k of a batch
		// uses Seed+k), so no seed repeats.
		v.Seed.SetText(strconv.FormatInt(req.Seed+int64(max(req.Batch, 1)), 10))
	}
	v.setStatus("Submitting…")
	q := v.d.Queue
	go func() {
		_, err := q.Submit(v.ctx, req)
		v.do(func() {
			if err != nil {
				v.setError(err)
				return
			}
			v.setStatus("Queued: %s", excerpt(req.Prompt, 60))
		})
	}()
}

// State returns the form's values for the next start. Fields that follow
// the model's default are left zero (see FormState).
func (v *View) State() FormState {
	s := FormState{
		Prompt:   v.Prompt.Text,
		SeedMode: v.seedModeValue(),
		RefImage: v.ref.path,
		RefScale: roundScale(v.ReferenceScale.Value),
	}
	if m := v.currentModel(); m != nil {
		s.Model = m.ID
	}
	custom := func(f field) bool { return v.fieldValue(f) != v.form.applied[f] || v.currentModel() == nil }
	if custom(fieldWidth) || custom(fieldHeight) {
		s.Width, _ = strconv.Atoi(v.fieldValue(fieldWidth))
		s.Height, _ = strconv.Atoi(v.fieldValue(fieldHeight))
	}
	if custom(fieldSteps) {
		s.Steps, _ = strconv.Atoi(v.fieldValue(fieldSteps))
	}
	if custom(fieldCFG) {
		s.CFG, _ = strconv.ParseFloat(v.fieldValue(fieldCFG), 64)
	}
	if custom(fieldSampler) {
		s.Sampler = v.fieldValue(fieldSampler)
	}
	if custom(fieldNegative) {
		s.Negative = v.Negative.Text
	}
	s.Seed, _ = strconv.ParseInt(strings.TrimSpace(v.Seed.Text), 10, 64)
	s.Batch, _ = strconv.Atoi(strings.TrimSpace(v.Batch.Text))
	for _, row := range v.LoRARows {
		s.LoRAs = append(s.LoRAs, settings.LoRA{Name: row.name, Scale: roundScale(row.Weight.Value)})
	}
	return s
}

// SetState restores the form from a FormState. Non-zero fields are the
// user's choices and are kept when the model's defaults are applied; the
// model is chosen once the model list is loaded (Reload). A reference image
// that cannot be read is reported in Status and left out.
func (v *View) SetState(s FormState) {
	v.Prompt.SetText(s.Prompt)
	set := func(f field, val string) {
		v.setField(f, val)
		// Unequal to any default: the user's value, kept.
		v.form.applied[f] = "\x00user"
	}
	if s.Width > 0 && s.Height > 0 {
		set(fieldWidth, strconv.Itoa(s.Width))
		set(fieldHeight, strconv.Itoa(s.Height))
	}
	if s.Steps > 0 {
		set(fieldSteps, strconv.Itoa(s.Steps))
	}
	if s.CFG > 0 {
		set(fieldCFG, strconv.FormatFloat(s.CFG, 'f', -1, 64))
	}
	if s.Sampler != "" {
		set(fieldSampler, s.Sampler)
	}
	if s.Negative != "" {
		set(fieldNegative, s.Negative)
	}
	for _, m := range seedModes {
		if m.mode == s.SeedMode {
			v.SeedMode.SetSelected(m.label)
		}
	}
	if s.SeedMode != settings.SeedRandom && s.SeedMode != "" {
		v.Seed.SetText(strconv.FormatInt(s.Seed, 10))
	}
	if s.Batch > 0 {
		v.Batch.SetText(strconv.Itoa(s.Batch))
	}
	v.clearLoRAs()
	for _, l := range s.LoRAs {
		v.addLoRA(l.Name, l.Scale)
	}
	if s.RefScale > 0 {
		v.ReferenceScale.SetValue(s.RefScale)
	}
	if s.RefImage != "" {
		if err := v.SetReference(s.RefImage); err != nil {
			v.setError(fmt.Errorf("The last reference image was not restored: %w", err))
		}
	}
	if s.Model != "" {
		v.models.wanted = s.Model
		if v.selectModelID(s.Model) {
			v.models.wanted = ""
		}
	}
	v.sizeTyped()
	v.updateHints()
}

// Apply fills the form from an image of the gallery ("reuse prompt" or
// "reuse all settings"). Zero fields of r keep what the form has. The
// values taken count as the user's: choosing another model keeps them.
func (v *View) Apply(r gallery.Request) {
	var notes []string
	if r.Model != "" {
		if !v.selectModelID(r.Model) {
			notes = append(notes, fmt.Sprintf("model %q is not on this engine; kept %s", r.Model, v.Model.Selected))
		}
	}
	if r.Prompt != "" {
		v.Prompt.SetText(r.Prompt)
	}
	if r.Negative != "" {
		v.Negative.SetText(r.Negative)
	}
	if r.Width > 0 && r.Height > 0 {
		v.form.settingSize = true
		v.Width.SetText(strconv.Itoa(r.Width))
		v.Height.SetText(strconv.Itoa(r.Height))
		v.form.settingSize = false
	}
	if r.Steps > 0 {
		v.Steps.SetText(strconv.Itoa(r.Steps))
	}
	if r.CFG > 0 {
		v.CFG.SetText(strconv.FormatFloat(r.CFG, 'f', -1, 64))
	}
	if r.Sampler != "" {
		if r.SamplerKnown {
			v.setField(fieldSampler, r.Sampler)
		} else {
			notes = append(notes, fmt.Sprintf("sampler %q (%s) is not one the engine has; kept %s", r.Sampler, r.Scheduler, v.Sampler.Selected))
		}
	}
	if r.Seed != nil {
		v.SeedMode.SetSelected(seedFixedLabel)
		v.Seed.SetText(strconv.FormatInt(*r.Seed, 10))
	}
	switch r.RNG {
	case api.RNGComfy:
		v.RNG.SetSelected(rngComfyLabel)
	case api.RNGA1111:
		v.RNG.SetSelected(rngA1111Label)
	}
	if r.ClipSkip > 0 {
		v.ClipSkip.SetText(strconv.Itoa(r.ClipSkip))
	}
	if len(r.LoRAs) > 0 {
		v.clearLoRAs()
		for _, l := range r.LoRAs {
			v.addLoRA(l.Name, l.Weight)
		}
	}
	if r.RefScale > 0 {
		v.ReferenceScale.SetValue(min(r.RefScale, v.ReferenceScale.Max))
	}
	if r.IPAdapter != "" && slices.Contains(v.Adapter.Options, r.IPAdapter) {
		v.Adapter.SetSelected(r.IPAdapter)
	}
	if r.RefSHA256 != "" && v.ref.sha256 != r.RefSHA256 {
		notes = append(notes, "the image had a reference image, which images do not carry: drop it on the reference area again")
	}
	v.sizeTyped()
	v.updateHints()
	if len(notes) > 0 {
		v.setStatus("Settings reused; %s.", strings.Join(notes, "; "))
	} else {
		v.setStatus("Settings reused.")
	}
}

// excerpt shortens s to n runes on one line.
func excerpt(s string, n int) string {
	s = strings.TrimRight(strings.Join(strings.Fields(s), " "), ", ")
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n-1]) + "…"
}

// randomSeed draws a seed for the seed field.
func randomSeed() int64 { return rand.Int64N(1 << 32) }
