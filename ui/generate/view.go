// Package generate is the "Generate" tab of the pixery desktop app: the model
// picker with the model's prompt guide, the prompt box with tag completion,
// the generation settings (size, steps, CFG, sampler, seed, batch, LoRAs, an
// IP-Adapter reference image) and the queue of submitted jobs with their
// progress, live previews and results.
//
// The view talks to the engine only through app/engine (lists of models,
// LoRAs and IP-Adapters) and to the job queue of app/jobs (submit, cancel,
// follow). Network calls and image decoding run off the UI goroutine; their
// results reach the widgets through fyne.Do.
package generate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/jobs"
	"github.com/pixery/pixery/app/tags"
	"github.com/pixery/pixery/engine/api"
)

// Deps is what the view needs from the rest of the app.
type Deps struct {
	// Window hosts the view's dialogs (the reference file picker).
	Window fyne.Window
	// Engine returns the current engine; the user may switch the Server URL
	// or the mode at any time, so the view asks each time. It may return
	// nil while no engine is set up.
	Engine func() engine.Engine
	// Queue runs the submitted jobs.
	Queue *jobs.Queue
	// Tags completes prompt tags; nil turns completion off.
	Tags *tags.Completer
	// OnImages is called on the UI goroutine with the images of a job as
	// they are saved into the gallery, so the gallery can refresh.
	OnImages func(items []gallery.Item)
	// Do runs a widget change on the UI goroutine; nil means fyne.Do. A
	// test whose own goroutine plays the event loop passes a queue it runs
	// (galleryview.UIQueue), so that background results never change
	// widgets while the test reads them.
	Do func(func())
}

// View is the Generate tab. Its widgets are exported so that the top level
// and tests can reach them; change them only on the UI goroutine.
type View struct {
	// Model picks the registry model; ModelState says where its file is
	// (on disk, missing, downloading n%) and Download fetches a missing one.
	Model      *widget.Select
	ModelState *widget.Label
	Download   *widget.Button
	// Guide shows the model's prompt guide: QualityChips (one button per
	// quality tag, inserting it into the prompt), GuideStyle, GuidePrefix,
	// GuideNotes and GuideExample.
	Guide                                             *fyne.Container
	QualityChips                                      *fyne.Container
	GuideStyle, GuidePrefix, GuideNotes, GuideExample *widget.Label

	// Prompt and Negative are the prompt boxes; both complete tags into
	// Suggestions and generate on Ctrl+Enter.
	Prompt, Negative *PromptEntry
	Suggestions      *Suggestions

	// SizePreset picks an SDXL bucket or "Custom"; Width and Height hold
	// the size in pixels.
	SizePreset    *widget.Select
	Width, Height *widget.Entry
	SwapSize      *widget.Button
	Steps, CFG    *widget.Entry
	Sampler       *widget.Select
	// SeedMode is random, fixed or increment (settings.Seed*); Seed the
	// seed the last two use; ReuseSeed puts the last finished job's seed
	// in Seed and switches to fixed.
	SeedMode  *widget.Select
	Seed      *widget.Entry
	ReuseSeed *widget.Button
	Batch     *widget.Entry
	// RNG and ClipSkip are the advanced settings a reused image may bring.
	RNG      *widget.Select
	ClipSkip *widget.Entry

	// The "use the model's value" buttons, shown beside a field whose
	// value differs from the chosen model's default.
	SizeDefault, StepsDefault, CFGDefault, SamplerDefault, NegativeDefault *widget.Button

	// LoRAPicker lists the engine's LoRAs; AddLoRA adds the picked one as a
	// row of LoRAList (LoRARows, in order).
	LoRAPicker *widget.Select
	AddLoRA    *widget.Button
	LoRAList   *fyne.Container
	LoRARows   []*LoRARow

	// The IP-Adapter reference: ReferenceArea is where image files are
	// dropped, Reference the thumbnail, ReferenceLabel its name or a hint,
	// PickReference the file picker, ReferenceScale the weight (0–1),
	// RemoveReference drops it, Adapter picks among several adapters.
	ReferenceArea   *fyne.Container
	Reference       *canvas.Image
	ReferenceLabel  *widget.Label
	PickReference   *widget.Button
	ReferenceScale  *widget.Slider
	ReferenceValue  *widget.Label
	RemoveReference *widget.Button
	Adapter         *widget.Select

	// GenerateButton submits (as Ctrl+Enter does); Status says what
	// happened last (errors in red).
	GenerateButton *widget.Button
	Status         *widget.Label

	// Queue lists the jobs, newest first, one QueueRow each;
	// ClearFinished removes the finished ones.
	Queue         *fyne.Container
	ClearFinished *widget.Button

	d       Deps
	content fyne.CanvasObject
	ctx     context.Context
	cancel  context.CancelFunc
	unsub   func()

	// ui serialises the view's own fyne.Do callbacks. On the desktop they
	// all run on the UI goroutine anyway; the test driver runs fyne.Do on
	// the calling goroutine, where this keeps them from overlapping.
	ui sync.Mutex

	form   formState
	models modelsState
	comp   completion
	ref    reference
	queue  queueState
}

// New builds the view. Call Reload (off the UI goroutine) to fill the model
// list from the engine.
func New(d Deps) *View {
	v := &View{d: d}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.buildForm()
	v.buildModels()
	v.buildPrompt()
	v.buildLoRAs()
	v.buildReference()
	v.buildQueue()
	v.GenerateButton = widget.NewButtonWithIcon("Generate", theme.MediaPlayIcon(), v.Generate)
	v.GenerateButton.Importance = widget.HighImportance
	v.Status = widget.NewLabel("")
	v.Status.Wrapping = fyne.TextWrapWord
	v.content = v.layout()
	v.form.applyDefaults(v)
	v.updateHints()
	return v
}

// Content returns the view's root object.
func (v *View) Content() fyne.CanvasObject { return v.content }

// Close stops the view's background work (the queue subscription, download
// progress polls). The view must not be used afterwards.
func (v *View) Close() {
	v.cancel()
	if v.unsub != nil {
		v.unsub()
	}
}

// do runs f on the UI goroutine (through Deps.Do when set); see View.ui.
func (v *View) do(f func()) {
	run := fyne.Do
	if v.d.Do != nil {
		run = v.d.Do
	}
	run(func() {
		v.ui.Lock()
		defer v.ui.Unlock()
		f()
	})
}

// engine returns the current engine or an error saying there is none.
func (v *View) engine() (engine.Engine, error) {
	if v.d.Engine == nil {
		return nil, errNoEngine
	}
	e := v.d.Engine()
	if e == nil {
		return nil, errNoEngine
	}
	return e, nil
}

var errNoEngine = errors.New("no engine is set up: choose a Server URL or local mode in Settings")

// setStatus shows an informative message.
func (v *View) setStatus(format string, args ...any) {
	v.Status.Importance = widget.MediumImportance
	v.Status.SetText(fmt.Sprintf(format, args...))
}

// setError shows an error message.
func (v *View) setError(err error) {
	v.Status.Importance = widget.DangerImportance
	v.Status.SetText(describeError(err))
}

// describeError words an error for the status line: the engine's refusal of
// a field, an unreachable engine, or the error as it is.
func describeError(err error) string {
	var se *api.StatusError
	if errors.As(err, &se) {
		msg := se.Message
		if se.Field != "" && !strings.HasPrefix(msg, se.Field) {
			msg = se.Field + ": " + msg
		}
		return fmt.Sprintf("The engine refused the job: %s", msg)
	}
	var fe *api.FieldError
	if errors.As(err, &fe) {
		return fmt.Sprintf("The engine refused the job: %s", fe.Error())
	}
	if errors.Is(err, jobs.ErrNoEngine) {
		return errNoEngine.Error()
	}
	if isUnreachable(err) {
		return "Cannot reach the engine: " + err.Error() + " (is the server running and the tunnel up? see Settings)"
	}
	return err.Error()
}

// isUnreachable reports whether err is a failure to connect.
func isUnreachable(err error) bool {
	s := err.Error()
	for _, w := range []string{"connection refused", "no such host", "i/o timeout", "network is unreachable", "connection reset", "EOF"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// layout arranges the view: the form (scrolling, with the Generate button
// always visible below it) on the left, the queue on the right.
func (v *View) layout() fyne.CanvasObject {
	modelRow := container.NewBorder(nil, nil, widget.NewLabel("Model"),
		container.NewHBox(v.ModelState, v.Download), v.Model)

	promptBox := container.NewVBox(
		widget.NewLabelWithStyle("Prompt", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		v.Prompt,
		container.NewBorder(nil, nil,
			widget.NewLabelWithStyle("Negative prompt", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
			v.NegativeDefault),
		v.Negative,
	)

	size := container.NewBorder(nil, nil, nil, v.SizeDefault,
		container.NewHBox(v.SizePreset, fixedWidth(v.Width, 80), widget.NewLabel("×"), fixedWidth(v.Height, 80), v.SwapSize))
	settings := widget.NewForm(
		widget.NewFormItem("Size", size),
		widget.NewFormItem("Steps", container.NewBorder(nil, nil, nil, v.StepsDefault, v.Steps)),
		widget.NewFormItem("CFG", container.NewBorder(nil, nil, nil, v.CFGDefault, v.CFG)),
		widget.NewFormItem("Sampler", container.NewBorder(nil, nil, nil, v.SamplerDefault, v.Sampler)),
		widget.NewFormItem("Seed", container.NewBorder(nil, nil, v.SeedMode, v.ReuseSeed, v.Seed)),
		widget.NewFormItem("Batch", v.Batch),
	)
	advanced := widget.NewAccordion(widget.NewAccordionItem("Advanced",
		widget.NewForm(
			widget.NewFormItem("Noise (RNG)", v.RNG),
			widget.NewFormItem("Clip skip", v.ClipSkip),
		)))

	loras := widget.NewCard("", "LoRAs", container.NewVBox(
		container.NewBorder(nil, nil, nil, v.AddLoRA, v.LoRAPicker),
		v.LoRAList,
	))
	reference := widget.NewCard("", "Image prompt (IP-Adapter)", container.NewVBox(
		v.ReferenceArea,
		container.NewBorder(nil, nil, widget.NewLabel("Weight"), v.ReferenceValue, v.ReferenceScale),
		container.NewHBox(v.PickReference, v.RemoveReference, v.Adapter),
	))

	form := container.NewVBox(modelRow, v.Guide, promptBox, settings, advanced, loras, reference)
	scroll := container.NewVScroll(container.NewPadded(form))
	v.comp.scroll = scroll
	scroll.OnScrolled = func(fyne.Position) { v.hideSuggestions() }
	v.comp.float = newFloat(scroll, v.Suggestions, v.suggestionAnchor)
	left := container.NewBorder(nil, container.NewVBox(widget.NewSeparator(), v.GenerateButton, v.Status), nil, nil,
		v.comp.float)

	queueHeader := container.NewBorder(nil, nil,
		widget.NewLabelWithStyle("Queue", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), v.ClearFinished)
	right := container.NewBorder(queueHeader, nil, nil, nil, container.NewVScroll(v.Queue))

	split := container.NewHSplit(left, right)
	split.Offset = 0.62
	return split
}

// fixedWidth gives o at least the width w.
func fixedWidth(o fyne.CanvasObject, w float32) fyne.CanvasObject {
	return container.New(&minWidth{w: w}, o)
}

type minWidth struct{ w float32 }

func (m *minWidth) MinSize(objs []fyne.CanvasObject) fyne.Size {
	s := objs[0].MinSize()
	return fyne.NewSize(max(s.Width, m.w), s.Height)
}

func (m *minWidth) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	objs[0].Move(fyne.Position{})
	objs[0].Resize(size)
}

// float lays out a base object filling the container and a floating one
// over it, at the position its anchor function gives (relative to the
// container) and as wide as asked: the suggestion list under the prompt,
// drawn over what follows it without moving it.
type float struct {
	anchor func(container fyne.CanvasObject) (fyne.Position, float32)
	self   *fyne.Container
}

func newFloat(base, floating fyne.CanvasObject, anchor func(fyne.CanvasObject) (fyne.Position, float32)) *fyne.Container {
	f := &float{anchor: anchor}
	f.self = container.New(f, base, floating)
	return f.self
}

func (f *float) MinSize(objs []fyne.CanvasObject) fyne.Size { return objs[0].MinSize() }

func (f *float) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	objs[0].Move(fyne.Position{})
	objs[0].Resize(size)
	if !objs[1].Visible() || f.self == nil {
		return
	}
	pos, w := f.anchor(f.self)
	ms := objs[1].MinSize()
	w = max(min(w, size.Width-pos.X), ms.Width)
	h := min(ms.Height, max(size.Height-pos.Y, 0))
	objs[1].Move(pos)
	objs[1].Resize(fyne.NewSize(w, h))
}

var _ fyne.Layout = (*float)(nil)
