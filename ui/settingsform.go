package ui

import (
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/settings"
)

// settingsForm edits a copy of the settings; nothing changes until Save.
type settingsForm struct {
	base *settings.Settings

	ServerURL, Token          *widget.Entry
	Mode                      *widget.RadioGroup
	GalleryDir                *widget.Entry
	ModelsDir, ORTLib         *widget.Entry
	Provider                  *widget.Select
	VastKey, SSHKey, IdleMins *widget.Entry
}

var modeLabels = map[string]string{
	settings.ModeRemote: "Remote engine (Server URL)",
	settings.ModeLocal:  "Local GPU (in this process)",
}

func newSettingsForm(s *settings.Settings) *settingsForm {
	f := &settingsForm{base: s.Clone()}
	f.ServerURL = widget.NewEntry()
	f.ServerURL.SetText(s.ServerURL)
	f.ServerURL.SetPlaceHolder(settings.DefaultServerURL)
	f.Token = widget.NewPasswordEntry()
	f.Token.SetText(s.Token)
	f.Token.SetPlaceHolder("only for an engine off this machine")
	f.Mode = widget.NewRadioGroup([]string{modeLabels[settings.ModeRemote], modeLabels[settings.ModeLocal]}, nil)
	f.Mode.Horizontal = true
	f.Mode.SetSelected(modeLabels[s.Mode])
	f.GalleryDir = widget.NewEntry()
	f.GalleryDir.SetText(s.GalleryDir)
	f.ModelsDir = widget.NewEntry()
	f.ModelsDir.SetText(s.ModelsDir)
	f.Provider = widget.NewSelect([]string{settings.ProviderAuto, settings.ProviderCUDA, settings.ProviderCoreML, settings.ProviderCPU}, nil)
	f.Provider.SetSelected(s.Provider)
	f.ORTLib = widget.NewEntry()
	f.ORTLib.SetText(s.ORTLib)
	f.ORTLib.SetPlaceHolder("search the usual places")
	f.VastKey = widget.NewPasswordEntry()
	f.VastKey.SetText(s.VastKey)
	f.VastKey.SetPlaceHolder("from $VAST_API_KEY or the vastai CLI when empty")
	f.SSHKey = widget.NewEntry()
	f.SSHKey.SetText(s.SSHKey)
	f.SSHKey.SetPlaceHolder("ssh-agent, then ~/.ssh/id_ed25519, id_rsa")
	f.IdleMins = widget.NewEntry()
	f.IdleMins.SetText(strconv.Itoa(s.IdleDestroyMinutes))
	return f
}

func (f *settingsForm) content() fyne.CanvasObject {
	form := widget.NewForm(
		widget.NewFormItem("Engine", f.Mode),
		widget.NewFormItem("Server URL", f.ServerURL),
		widget.NewFormItem("Token", f.Token),
		widget.NewFormItem("Gallery folder", f.GalleryDir),
		widget.NewFormItem("Local models folder", f.ModelsDir),
		widget.NewFormItem("Local provider", f.Provider),
		widget.NewFormItem("ONNX Runtime library", f.ORTLib),
		widget.NewFormItem("Vast.ai API key", f.VastKey),
		widget.NewFormItem("SSH key", f.SSHKey),
		widget.NewFormItem("Idle auto-destroy (min, 0 = off)", f.IdleMins),
	)
	return container.NewVScroll(form)
}

// settings returns the edited copy; Validate judges it.
func (f *settingsForm) settings() *settings.Settings {
	s := f.base.Clone()
	s.ServerURL = strings.TrimSpace(f.ServerURL.Text)
	s.Token = strings.TrimSpace(f.Token.Text)
	for mode, label := range modeLabels {
		if f.Mode.Selected == label {
			s.Mode = mode
		}
	}
	s.GalleryDir = strings.TrimSpace(f.GalleryDir.Text)
	s.ModelsDir = strings.TrimSpace(f.ModelsDir.Text)
	s.Provider = f.Provider.Selected
	s.ORTLib = strings.TrimSpace(f.ORTLib.Text)
	s.VastKey = strings.TrimSpace(f.VastKey.Text)
	s.SSHKey = strings.TrimSpace(f.SSHKey.Text)
	if n, err := strconv.Atoi(strings.TrimSpace(f.IdleMins.Text)); err == nil {
		s.IdleDestroyMinutes = n
	} else {
		// Validate names the field; -1 is what it refuses.
		s.IdleDestroyMinutes = -1
	}
	return s
}
