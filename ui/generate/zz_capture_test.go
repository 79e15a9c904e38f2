package generate

import (
	"image/png"
	"os"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
)

func TestZZCapture(t *testing.T) {
	srv := startEngine(t)
	f := newFixture(t, srv)
	fyne.CurrentApp().Settings().SetTheme(theme.DefaultTheme())
	v := f.v
	f.w.Resize(fyne.NewSize(1300, 1000))
	f.ui(func() {
		f.choose(t, "Tiny Alpha")
		retype(v.Steps, "10")
		f.choose(t, "Tiny Beta")
		v.addLoRA("tinylora", 0.8)
		path, _ := pngFile(t, "ref.png")
		v.SetReference(path)
	})
	f.eventually(t, "thumb", func() bool { return v.Reference.Image != nil })
	f.ui(func() {
		v.Prompt.SetText("")
		test.Type(v.Prompt, "1girl, long_ha")
	})
	shot := func(name string) {
		f.ui(func() { f.w.Content().Refresh() })
		img := f.w.Canvas().Capture()
		fh, _ := os.Create(name)
		png.Encode(fh, img)
		fh.Close()
	}
	shot("/tmp/gen1.png")
	f.ui(func() { v.Prompt.TypedKey(&fyne.KeyEvent{Name: fyne.KeyTab}); v.LoRARows = nil; v.LoRAList.RemoveAll() })
	test.Tap(v.GenerateButton)
	<-f.images
	f.eventually(t, "row", func() bool {
		for _, r := range v.queue.rows {
			return r.result != nil
		}
		return false
	})
	shot("/tmp/gen2.png")
}
