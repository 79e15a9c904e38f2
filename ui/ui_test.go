package ui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/enginetest"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/settings"
	"github.com/pixery/pixery/engine/sdxl/ipadapter/ipadaptertest"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/ui/galleryview"
)

// window builds the whole window over a settings folder, with every other
// folder in the test's temporary space and the GPU panel pointed at a Vast
// API that does not exist (nothing here rents).
func window(t *testing.T, cfgDir string) (*UI, *galleryview.UIQueue) {
	t.Helper()
	a := test.NewTempApp(t)
	tmp := t.TempDir()
	// The test's goroutine plays the event loop: background results wait
	// in q until waitFor (or settle) runs them.
	q := &galleryview.UIQueue{}
	u, err := New(a, Config{
		Do:          q.Do,
		SettingsDir: cfgDir,
		StateDir:    filepath.Join(tmp, "state"),
		CacheDir:    filepath.Join(tmp, "cache"),
		Remote: remote.Config{
			StateFile: filepath.Join(tmp, "remote.json"),
			VastURL:   "http://127.0.0.1:9",
			VastKey:   "test-key",
			SSH:       sshx.Options{KnownHostsFile: filepath.Join(tmp, "known_hosts"), SSHConfigFile: "none", NoAgent: true},
		},
		HealthInterval: time.Hour,
		Logf:           t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	u.Window.Resize(fyne.NewSize(1280, 840))
	return u, q
}

// userSettings writes settings that point at srvURL, with the gallery in
// the test's temporary space.
func userSettings(t *testing.T, srvURL, token string) (dir string, s *settings.Settings) {
	t.Helper()
	dir = t.TempDir()
	s = settings.Defaults()
	s.ServerURL, s.Token = srvURL, token
	s.GalleryDir = filepath.Join(t.TempDir(), "gallery")
	s.ModelsDir = t.TempDir()
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir, s
}

// waitFor runs the queued UI work and polls cond until it holds; the guard
// turns a hang into a failure.
func waitFor(t *testing.T, q *galleryview.UIQueue, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for q.Run(); !cond(); q.Run() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func optionWith(sel *widget.Select, part string) string {
	for _, o := range sel.Options {
		if strings.Contains(o, part) {
			return o
		}
	}
	return ""
}

func chipTexts(c *fyne.Container) []string {
	var out []string
	for _, o := range c.Objects {
		if b, ok := o.(*widget.Button); ok {
			out = append(out, b.Text)
		}
	}
	return out
}

// TestWindowEndToEnd is the scenario through the whole window
// against the real engine on the tiny checkpoint: pick a model (guide and
// defaults), type a prompt and generate, find the image in the gallery with
// its metadata, search for it, reuse it into the form, drop a reference
// image onto the Generate tab.
func TestWindowEndToEnd(t *testing.T) {
	models := enginetest.ModelsDirWith(t,
		enginetest.Model{ID: "tiny"},
		enginetest.Model{ID: "tall", Steps: 4, Width: 128, Height: 192, CFG: 6, QualityTags: []string{"newest", "absurdres"}, Notes: "tall notes"},
	)
	ipadaptertest.WriteTiny(t, models)
	srv := enginetest.Start(t, models)
	cfgDir, s := userSettings(t, srv.URL, srv.Token)
	u, q := window(t, cfgDir)

	waitFor(t, q, "the engine's models in the picker", func() bool {
		return optionWith(u.Generate.Model, "tiny") != "" && optionWith(u.Generate.Model, "tall") != ""
	})
	if !strings.Contains(u.Status.Text, srv.URL) {
		t.Errorf("status bar %q does not name the engine %s", u.Status.Text, srv.URL)
	}

	// Choosing a model shows its guide and applies its defaults.
	u.Generate.Model.SetSelected(optionWith(u.Generate.Model, "tall"))
	if got := chipTexts(u.Generate.QualityChips); !slices.Equal(got, []string{"newest", "absurdres"}) {
		t.Errorf("quality chips for tall = %q", got)
	}
	if !strings.Contains(u.Generate.GuideNotes.Text, "tall notes") {
		t.Errorf("guide notes %q", u.Generate.GuideNotes.Text)
	}
	if u.Generate.Steps.Text != "4" || u.Generate.Width.Text != "128" || u.Generate.Height.Text != "192" {
		t.Errorf("tall defaults not applied: steps %q size %sx%s", u.Generate.Steps.Text, u.Generate.Width.Text, u.Generate.Height.Text)
	}
	u.Generate.Model.SetSelected(optionWith(u.Generate.Model, "tiny"))
	if u.Generate.Steps.Text != "3" || u.Generate.Width.Text != "192" {
		t.Errorf("tiny defaults not applied: steps %q width %q", u.Generate.Steps.Text, u.Generate.Width.Text)
	}

	// Generate: the image lands in the gallery, on disk, with its metadata.
	test.Type(u.Generate.Prompt, "1girl, solo, red ribbon")
	u.Generate.SeedMode.SetSelected(optionWith(u.Generate.SeedMode, "Fixed"))
	u.Generate.Seed.SetText("4242")
	test.Tap(u.Generate.GenerateButton)
	var items []gallery.Item
	waitFor(t, q, "the generated image in the gallery", func() bool {
		var err error
		items, err = u.Store.Search(t.Context(), gallery.Query{})
		return err == nil && len(items) == 1
	})
	it := items[0]
	if it.Prompt != "1girl, solo, red ribbon" || it.Model != "tiny" || !it.HasSeed || it.Seed != 4242 || it.Width != 192 || it.Height != 128 || it.Steps != 3 {
		t.Fatalf("gallery item = %+v", it)
	}
	if _, err := os.Stat(it.Path); err != nil || !strings.HasPrefix(it.Path, s.GalleryDir) {
		t.Fatalf("image file %s (gallery %s): %v", it.Path, s.GalleryDir, err)
	}

	// The gallery tab finds it by a word of its prompt and not by another.
	u.Tabs.Select(u.GalleryTab)
	waitFor(t, q, "the gallery grid to show the image", func() bool { return u.Gallery.Grid.Length() == 1 })
	test.Type(u.Gallery.Search, "ribbon")
	waitFor(t, q, "search results", func() bool {
		u.Gallery.WaitIdle(time.Second)
		return strings.HasPrefix(u.Gallery.CountLabel.Text, "1 ")
	})
	u.Gallery.Search.SetText("ribbon -red")
	waitFor(t, q, "an empty search", func() bool { q.Settle(u.Gallery, time.Minute); return u.Gallery.Grid.Length() == 0 })
	u.Gallery.Search.SetText("ribbon")
	waitFor(t, q, "search results again", func() bool { q.Settle(u.Gallery, time.Minute); return u.Gallery.Grid.Length() == 1 })

	// Reuse all settings: the form takes the image's prompt and seed, and
	// the window goes to the Generate tab.
	u.Generate.Prompt.SetText("something else")
	u.Generate.Seed.SetText("1")
	u.Gallery.Grid.Select(0)
	waitFor(t, q, "the detail panel", func() bool { return strings.Contains(u.Gallery.Detail.Metadata.Text, "red ribbon") })
	test.Tap(u.Gallery.Detail.ReuseAll)
	if u.Tabs.Selected() != u.GenerateTab {
		t.Error("reuse did not bring the Generate tab forward")
	}
	if u.Generate.Prompt.Text != "1girl, solo, red ribbon" || u.Generate.Seed.Text != "4242" {
		t.Errorf("reuse filled prompt %q seed %q", u.Generate.Prompt.Text, u.Generate.Seed.Text)
	}

	// A reference image dropped onto the Generate tab's reference area
	// goes with the next job.
	ref := writePNG(t, filepath.Join(t.TempDir(), "ref.png"))
	want, _ := os.ReadFile(ref)
	// A window tall enough to show the reference area without scrolling.
	u.Window.Resize(fyne.NewSize(1280, 1200))
	area := u.Generate.DropTarget()
	pos := fyne.CurrentApp().Driver().AbsolutePositionForObject(area).Add(fyne.NewPos(area.Size().Width/2, 8)) // its top edge: the rest may be scrolled out of view
	u.HandleDrop(pos, []fyne.URI{storage.NewFileURI(ref)})
	req, err := u.Generate.Request()
	if err != nil {
		t.Fatal(err)
	}
	if req.IPAdapter == nil || !bytes.Equal(req.IPAdapter.Image, want) || req.IPAdapter.Scale <= 0 {
		t.Fatalf("request after the drop carries %+v", req.IPAdapter)
	}
	// The job runs with it: the saved image's metadata names the reference
	// by its SHA-256, with the adapter and the scale.
	test.Tap(u.Generate.GenerateButton)
	waitFor(t, q, "the image made with the reference", func() bool {
		var err error
		items, err = u.Store.Search(t.Context(), gallery.Query{})
		return err == nil && len(items) == 2
	})
	sum := sha256.Sum256(want)
	withRef := items[0]
	if withRef.ID == it.ID {
		withRef = items[1]
	}
	if withRef.RefSHA256 != hex.EncodeToString(sum[:]) || withRef.IPAdapter != ipadaptertest.AdapterName || withRef.RefScale != req.IPAdapter.Scale {
		t.Fatalf("image made with the reference records ref %q adapter %q scale %v; want %x, %s, %v",
			withRef.RefSHA256, withRef.IPAdapter, withRef.RefScale, sum, ipadaptertest.AdapterName, req.IPAdapter.Scale)
	}

	// "Use as reference" from the gallery does the same with the image.
	u.Tabs.Select(u.GalleryTab)
	test.Tap(u.Gallery.Detail.UseAsReference)
	req, err = u.Generate.Request()
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := os.ReadFile(it.Path)
	if u.Tabs.Selected() != u.GenerateTab || req.IPAdapter == nil || !bytes.Equal(req.IPAdapter.Image, gen) {
		t.Fatalf("use as reference: tab %v, ip_adapter set %v", u.Tabs.Selected().Text, req.IPAdapter != nil)
	}

	// The form survives a restart of the window.
	u.Close()
	again, err := settings.Load(cfgDir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Last.Prompt != "1girl, solo, red ribbon" || again.Token != srv.Token {
		t.Errorf("saved form prompt %q, token kept %v", again.Last.Prompt, again.Token == srv.Token)
	}
}

// TestSettingsSwitchEngine checks the settings path: a bad Server URL is
// refused with a message and changes nothing; a good one switches the
// engine, and the models of the new engine fill the picker.
func TestSettingsSwitchEngine(t *testing.T) {
	cfgDir, _ := userSettings(t, "http://127.0.0.1:9", "")
	u, q := window(t, cfgDir)
	waitFor(t, q, "the unreachable engine noticed", func() bool { return strings.Contains(u.Status.Text, "unreachable") })
	if !strings.Contains(u.Notice.Text, "No engine answers at http://127.0.0.1:9") {
		t.Errorf("notice %q does not say what to do", u.Notice.Text)
	}

	bad := u.Settings.Clone()
	bad.ServerURL = "ftp://nowhere"
	if err := u.ApplySettings(bad); err == nil {
		t.Fatal("an ftp Server URL was accepted")
	}
	if u.Settings.ServerURL != "http://127.0.0.1:9" {
		t.Fatalf("a refused setting changed the Server URL to %q", u.Settings.ServerURL)
	}

	srv := enginetest.Start(t, enginetest.ModelsDir(t, "tiny"))
	good := u.Settings.Clone()
	good.ServerURL, good.Token = srv.URL, srv.Token
	if err := u.ApplySettings(good); err != nil {
		t.Fatal(err)
	}
	waitFor(t, q, "the new engine's models", func() bool { return optionWith(u.Generate.Model, "tiny") != "" })
	waitFor(t, q, "the new engine in the status bar", func() bool {
		return strings.Contains(u.Status.Text, srv.URL) && !strings.Contains(u.Status.Text, "unreachable")
	})
	saved, err := settings.Load(cfgDir)
	if err != nil || saved.ServerURL != srv.URL {
		t.Fatalf("saved Server URL %q (%v)", saved.ServerURL, err)
	}
	if fi, err := os.Stat(filepath.Join(cfgDir, settings.SecretsFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v", fi, err)
	}
}

// TestBrokenSettingsFile: a malformed settings.toml does not stop the
// window; it says so and keeps the file aside.
func TestBrokenSettingsFile(t *testing.T) {
	cfgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfgDir, settings.SettingsFile), []byte("server_url = \"http://x\nmode = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_PICTURES_DIR", t.TempDir())
	u, q := window(t, cfgDir)
	// The engine's own notice (none answers at the default URL) comes on
	// top of it, not instead.
	waitFor(t, q, "the health check", func() bool { return strings.Contains(u.Status.Text, "unreachable") })
	if !strings.Contains(u.Notice.Text, settings.SettingsFile) || !strings.Contains(u.Notice.Text, "No engine answers") || !u.Notice.Visible() {
		t.Errorf("notice %q does not name the broken file", u.Notice.Text)
	}
	matches, _ := filepath.Glob(filepath.Join(cfgDir, settings.SettingsFile+".bad-*"))
	if len(matches) != 1 {
		t.Fatalf("broken file kept aside as %v", matches)
	}
}

// TestQuitWithoutBilling closes at once when nothing is rented, and saves
// the form.
func TestQuitWithoutBilling(t *testing.T) {
	cfgDir, _ := userSettings(t, "http://127.0.0.1:9", "")
	u, _ := window(t, cfgDir)
	u.Generate.Prompt.SetText("kept across runs")
	u.requestQuit()
	s, err := settings.Load(cfgDir)
	if err != nil || s.Last.Prompt != "kept across runs" {
		t.Fatalf("form not saved on quit: %q %v", s.Last.Prompt, err)
	}
}

func writePNG(t *testing.T, path string) string {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 4), uint8(y * 5), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
