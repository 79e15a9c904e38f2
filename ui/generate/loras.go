package generate

import (
	"slices"
	"strconv"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// LoRA weight slider bounds: the useful range; the engine accepts up to
// ±api.MaxLoRAScale, which reused images may bring (the slider then widens).
const (
	loraMin  = -2.0
	loraMax  = 2.0
	loraStep = 0.05
)

// LoRARow is one LoRA of the job: its name, weight slider and remove button.
type LoRARow struct {
	Name   *widget.Label
	Weight *widget.Slider
	Value  *widget.Label
	Remove *widget.Button
	// Warning shows when the engine does not list the LoRA.
	Warning *widget.Label
	name    string
	box     *fyne.Container
}

func (v *View) buildLoRAs() {
	v.LoRAPicker = widget.NewSelect(nil, nil)
	v.LoRAPicker.PlaceHolder = "(no LoRAs on the engine)"
	v.AddLoRA = widget.NewButtonWithIcon("Add", theme.ContentAddIcon(), func() {
		name := v.LoRAPicker.Selected
		if name == "" {
			v.setStatus("Choose a LoRA to add first.")
			return
		}
		if slices.ContainsFunc(v.LoRARows, func(r *LoRARow) bool { return r.name == name }) {
			v.setStatus("LoRA %s is already added.", name)
			return
		}
		v.addLoRA(name, 1)
	})
	v.AddLoRA.Disable()
	v.LoRAList = container.NewVBox()
}

// addLoRA adds a row for a LoRA at a weight.
func (v *View) addLoRA(name string, weight float64) *LoRARow {
	r := &LoRARow{
		Name:    widget.NewLabel(name),
		Weight:  widget.NewSlider(min(loraMin, weight), max(loraMax, weight)),
		Value:   widget.NewLabel(""),
		Warning: widget.NewLabel("not on the engine"),
		name:    name,
	}
	r.Name.Truncation = fyne.TextTruncateEllipsis
	r.Weight.Step = loraStep
	r.Weight.OnChanged = func(f float64) { r.Value.SetText(strconv.FormatFloat(roundScale(f), 'f', 2, 64)) }
	r.Weight.SetValue(weight)
	r.Value.SetText(strconv.FormatFloat(roundScale(weight), 'f', 2, 64))
	r.Warning.Importance = widget.WarningImportance
	r.Warning.Hide()
	r.Remove = widget.NewButtonWithIcon("", theme.DeleteIcon(), func() { v.removeLoRA(r) })
	r.box = container.NewBorder(nil, nil,
		container.NewHBox(fixedWidth(r.Name, 160), r.Warning),
		container.NewHBox(r.Value, r.Remove), r.Weight)
	if len(v.LoRAPicker.Options) > 0 || len(v.models.list) > 0 {
		r.setMissing(!slices.Contains(v.LoRAPicker.Options, name))
	}
	v.LoRARows = append(v.LoRARows, r)
	v.LoRAList.Add(r.box)
	return r
}

func (v *View) removeLoRA(r *LoRARow) {
	v.LoRARows = slices.DeleteFunc(v.LoRARows, func(x *LoRARow) bool { return x == r })
	v.LoRAList.Remove(r.box)
}

func (v *View) clearLoRAs() {
	v.LoRARows = nil
	v.LoRAList.RemoveAll()
}

func (r *LoRARow) setMissing(missing bool) {
	if missing {
		r.Warning.Show()
	} else {
		r.Warning.Hide()
	}
}
