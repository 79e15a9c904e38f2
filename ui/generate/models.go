package generate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
	"github.com/pixery/pixery/engine/api"
)

// modelsState is what the engine offers, as last loaded.
type modelsState struct {
	list []api.Model
	// labels are the picker's options, in the order of list; current is
	// the index of the chosen model in list, -1 for none.
	labels  []string
	current int
	// wanted is a model id to choose once it is listed (from SetState).
	wanted string
	// polling is set while a download's progress is being polled.
	polling bool
}

// downloadPoll is how often a download's progress is asked for;
// maxPollFailures failed asks in a row end the polling.
const (
	downloadPoll    = time.Second
	maxPollFailures = 30
)

func (v *View) buildModels() {
	v.models.current = -1
	v.Model = widget.NewSelect(nil, func(label string) {
		if i := slices.Index(v.models.labels, label); i >= 0 && i != v.models.current {
			v.models.current = i
			v.modelChosen()
		}
	})
	v.Model.PlaceHolder = "(no models: check the engine)"
	v.ModelState = widget.NewLabel("")
	v.Download = widget.NewButtonWithIcon("Download", theme.DownloadIcon(), v.download)
	v.Download.Hide()

	v.QualityChips = container.NewHBox()
	v.GuideStyle = widget.NewLabel("")
	v.GuidePrefix = widget.NewLabel("")
	v.GuideNotes = widget.NewLabel("")
	v.GuideNotes.Wrapping = fyne.TextWrapWord
	v.GuideExample = widget.NewLabel("")
	v.GuideExample.Wrapping = fyne.TextWrapWord
	v.GuideExample.TextStyle = fyne.TextStyle{Italic: true}
	v.Guide = container.NewVBox(
		container.NewBorder(nil, nil, widget.NewLabel("Quality tags"), nil, container.NewHScroll(v.QualityChips)),
		v.GuideStyle, v.GuidePrefix, v.GuideNotes, v.GuideExample,
	)
	v.Guide.Hide()
}

// currentModel returns the chosen model, nil for none.
func (v *View) currentModel() *api.Model {
	if v.models.current < 0 || v.models.current >= len(v.models.list) {
		return nil
	}
	return &v.models.list[v.models.current]
}

// modelLabel is how a model is named to the user.
func modelLabel(m *api.Model) string {
	if m.DisplayName != "" {
		return m.DisplayName
	}
	return m.ID
}

// Reload fetches the models, LoRAs and IP-Adapters from the current engine
// and shows them. It blocks (call it off the UI goroutine); the widgets are
// updated through fyne.Do. The chosen model stays chosen when it is still
// listed. An error is also shown in Status.
func (v *View) Reload(ctx context.Context) error {
	eng, err := v.engine()
	if err != nil {
		v.do(func() { v.setError(err) })
		return err
	}
	models, err := eng.Models(ctx)
	if err != nil {
		err = fmt.Errorf("list models of %s: %w", eng.Describe(), err)
		v.do(func() { v.setError(err) })
		return err
	}
	var errs []error
	loras, err := eng.LoRAs(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("list LoRAs of %s: %w", eng.Describe(), err))
	}
	adapters, err := eng.IPAdapters(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("list IP-Adapters of %s: %w", eng.Describe(), err))
	}
	err = errors.Join(errs...)
	v.do(func() {
		v.setModels(models)
		v.setLoRAs(loras)
		v.setAdapters(adapters)
		if err != nil {
			v.setError(err)
		} else if strings.HasPrefix(v.Status.Text, "Cannot reach") || v.Status.Text == errNoEngine.Error() {
			v.setStatus("Connected to %s.", eng.Describe())
		}
	})
	return err
}

// setModels shows a new model list, keeping the chosen model.
func (v *View) setModels(models []api.Model) {
	var keep string
	if m := v.currentModel(); m != nil {
		keep = m.ID
	}
	if v.models.wanted != "" {
		keep = v.models.wanted
	}
	v.models.list = models
	v.models.labels = modelLabels(models)
	v.models.current = -1
	v.Model.Options = v.models.labels
	// Choose the kept model, else the first one on disk, else the first.
	pick := slices.IndexFunc(models, func(m api.Model) bool { return m.ID == keep })
	if pick < 0 {
		pick = slices.IndexFunc(models, func(m api.Model) bool {
			return m.State == api.ModelOnDisk || m.State == api.ModelLoaded
		})
	}
	if pick < 0 && len(models) > 0 {
		pick = 0
	}
	if pick < 0 {
		v.Model.ClearSelected()
		v.modelChosen()
		return
	}
	if models[pick].ID == v.models.wanted {
		v.models.wanted = ""
	}
	if v.Model.Selected == v.models.labels[pick] {
		// The same label: OnChanged will not run, and the defaults are
		// already applied; only the state and guide may have changed.
		v.models.current = pick
		v.showModel()
		v.Model.Refresh()
		return
	}
	v.Model.SetSelected(v.models.labels[pick])
}

// modelLabels names the models for the picker, telling apart models that
// share a display name by their id.
func modelLabels(models []api.Model) []string {
	count := map[string]int{}
	for i := range models {
		count[modelLabel(&models[i])]++
	}
	out := make([]string, len(models))
	for i := range models {
		l := modelLabel(&models[i])
		if count[l] > 1 {
			l = fmt.Sprintf("%s (%s)", l, models[i].ID)
		}
		out[i] = l
	}
	return out
}

// selectModelID chooses the model with the given id (or, failing that, the
// model whose file stem is id, as A1111 images name checkpoints); false
// when it is not listed.
func (v *View) selectModelID(id string) bool {
	i := slices.IndexFunc(v.models.list, func(m api.Model) bool { return m.ID == id })
	if i < 0 {
		i = slices.IndexFunc(v.models.list, func(m api.Model) bool {
			stem := strings.TrimSuffix(m.File, ".safetensors")
			return strings.EqualFold(stem, id) || strings.EqualFold(m.DisplayName, id)
		})
	}
	if i < 0 {
		return false
	}
	v.Model.SetSelected(v.models.labels[i])
	return true
}

// modelChosen applies a newly chosen model: its defaults, its guide.
func (v *View) modelChosen() {
	m := v.currentModel()
	v.showModel()
	if m != nil {
		v.applyModel(m)
	} else {
		v.updateHints()
	}
}

// showModel shows the chosen model's state and prompt guide.
func (v *View) showModel() {
	m := v.currentModel()
	if m == nil {
		v.ModelState.SetText("")
		v.Download.Hide()
		v.Guide.Hide()
		v.QualityChips.Objects = nil
		return
	}
	v.ModelState.SetText(modelStateText(m))
	if m.State == api.ModelMissing {
		v.Download.Show()
	} else {
		v.Download.Hide()
	}
	v.showGuide(m)
	if m.State == api.ModelDownloading {
		v.pollDownload()
	}
}

// modelStateText says where a model's file is.
func modelStateText(m *api.Model) string {
	switch m.State {
	case api.ModelMissing:
		if m.Error != "" {
			return "download failed: " + m.Error
		}
		return "not downloaded"
	case api.ModelDownloading:
		return fmt.Sprintf("downloading %.0f%%", m.Progress*100)
	case api.ModelOnDisk:
		return "ready"
	case api.ModelLoaded:
		return "loaded"
	}
	return string(m.State)
}

// showGuide fills the guide panel from the model's prompt guide.
func (v *View) showGuide(m *api.Model) {
	g := m.PromptGuide
	chips := make([]fyne.CanvasObject, 0, len(g.QualityTags))
	for _, tag := range g.QualityTags {
		chip := widget.NewButton(tag, nil)
		chip.OnTapped = func() { v.insertQualityTag(tag) }
		chips = append(chips, chip)
	}
	v.QualityChips.Objects = chips
	v.QualityChips.Refresh()
	v.updateChips()
	setOrHide := func(l *widget.Label, prefix, text string) {
		if text == "" {
			l.Hide()
			return
		}
		l.SetText(prefix + text)
		l.Show()
	}
	style := g.Style
	switch style {
	case "danbooru":
		style = "danbooru tags (1girl, long hair, …), comma separated"
	case "e621":
		style = "e621 tags, comma separated"
	case "natural", "natural_language":
		style = "natural language sentences"
	}
	setOrHide(v.GuideStyle, "Style: ", style)
	setOrHide(v.GuidePrefix, "Starts with: ", g.Prefix)
	setOrHide(v.GuideNotes, "", g.Notes)
	setOrHide(v.GuideExample, "Example: ", g.Example)
	if len(chips) == 0 {
		v.Guide.Objects[0].Hide()
	} else {
		v.Guide.Objects[0].Show()
	}
	if len(chips) == 0 && style == "" && g.Prefix == "" && g.Notes == "" && g.Example == "" {
		v.Guide.Hide()
	} else {
		v.Guide.Show()
	}
	v.Guide.Refresh()
}

// download starts fetching the chosen model on the engine's host and
// follows its progress.
func (v *View) download() {
	m := v.currentModel()
	if m == nil {
		return
	}
	eng, err := v.engine()
	if err != nil {
		v.setError(err)
		return
	}
	id, name := m.ID, modelLabel(m)
	v.Download.Disable()
	v.ModelState.SetText("starting download…")
	go func() {
		got, err := eng.DownloadModel(v.ctx, id)
		v.do(func() {
			v.Download.Enable()
			if err != nil || got == nil {
				if err == nil {
					err = errors.New("the engine answered with no model")
				}
				v.setError(fmt.Errorf("download %s: %w", name, err))
				v.showModel()
				return
			}
			v.updateModel(*got)
			v.setStatus("Downloading %s on %s…", name, eng.Describe())
		})
	}()
}

// updateModel replaces one model's entry (its state changed).
func (v *View) updateModel(m api.Model) {
	i := slices.IndexFunc(v.models.list, func(x api.Model) bool { return x.ID == m.ID })
	if i < 0 {
		return
	}
	v.models.list[i] = m
	if i == v.models.current {
		v.showModel()
	}
}

// pollDownload asks the engine for the models every downloadPoll while the
// chosen model is downloading, so its progress shows.
func (v *View) pollDownload() {
	if v.models.polling {
		return
	}
	v.models.polling = true
	eng, err := v.engine()
	if err != nil {
		v.models.polling = false
		return
	}
	go func() {
		t := time.NewTicker(downloadPoll)
		defer t.Stop()
		failures := 0
		for {
			select {
			case <-v.ctx.Done():
				return
			case <-t.C:
			}
			models, err := eng.Models(v.ctx)
			if err != nil {
				failures++
			} else {
				failures = 0
			}
			done := false
			v.do(func() {
				if err != nil {
					v.ModelState.SetText("download: " + describeError(err))
					if failures >= maxPollFailures {
						// Given up; Reload (a new engine, a retry) starts again.
						v.models.polling = false
						done = true
					}
					return
				}
				for _, m := range models {
					v.updateModel(m)
				}
				busy := slices.ContainsFunc(models, func(m api.Model) bool { return m.State == api.ModelDownloading })
				if !busy {
					v.models.polling = false
					done = true
				}
			})
			if done {
				return
			}
		}
	}()
}

// setLoRAs offers the engine's LoRAs in the picker and to the completer.
func (v *View) setLoRAs(loras []api.FileInfo) {
	names := make([]string, len(loras))
	for i, l := range loras {
		names[i] = l.Name
	}
	v.LoRAPicker.Options = names
	v.LoRAPicker.ClearSelected()
	v.LoRAPicker.Refresh()
	if len(names) == 0 {
		v.LoRAPicker.PlaceHolder = "(no LoRAs on the engine)"
		v.AddLoRA.Disable()
	} else {
		v.LoRAPicker.PlaceHolder = "(choose a LoRA)"
		v.AddLoRA.Enable()
	}
	if v.d.Tags != nil {
		v.comp.completer = ownCompleter(v.d.Tags, names)
	}
	for _, row := range v.LoRARows {
		row.setMissing(!slices.Contains(names, row.name))
	}
}

// setAdapters offers the IP-Adapters; the picker shows only when there is a
// choice.
func (v *View) setAdapters(files []api.FileInfo) {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	keep := v.Adapter.Selected
	v.Adapter.Options = names
	switch {
	case slices.Contains(names, keep):
	case len(names) > 0:
		v.Adapter.SetSelected(names[0])
	default:
		v.Adapter.ClearSelected()
	}
	if len(names) > 1 {
		v.Adapter.Show()
	} else {
		v.Adapter.Hide()
	}
	v.Adapter.Refresh()
}
