// Package ui is pixery's desktop window: the Generate, Gallery and GPU tabs
// (packages ui/generate, ui/galleryview, ui/gpupanel), the settings dialog,
// the status bar and the wiring between them. It never imports Fyne's app
// package: main creates the fyne.App and hands it to New, so the whole window
// can be built and driven headless by fyne.io/fyne/v2/test.
package ui

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/jobs"
	"github.com/pixery/pixery/app/settings"
	"github.com/pixery/pixery/app/tags"
	"github.com/pixery/pixery/assets"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/ui/galleryview"
	"github.com/pixery/pixery/ui/generate"
	"github.com/pixery/pixery/ui/gpupanel"
)

// Config says where the window keeps its files. Zero values take the
// per-user defaults (package settings).
type Config struct {
	// SettingsDir holds settings.toml and secrets.toml.
	SettingsDir string
	// StateDir holds the job queue's state (pending jobs survive a restart).
	StateDir string
	// CacheDir holds the gallery index and thumbnails.
	CacheDir string
	// Remote configures the GPU panel's Manager; its SSH prompts are
	// replaced by the panel's dialogs.
	Remote remote.Config
	// Do runs widget changes made from background goroutines on the UI
	// goroutine; nil means fyne.Do. Tests pass a queue their own goroutine
	// runs (galleryview.UIQueue), as the real event loop would.
	Do func(func())
	// HealthInterval is how often the status bar asks the engine [10 s].
	HealthInterval time.Duration
	// Logf receives what the user does not need to see (default: log).
	Logf func(string, ...any)
}

// UI is the main window and everything in it.
type UI struct {
	App    fyne.App
	Window fyne.Window

	Settings *settings.Settings
	Store    *gallery.Store
	Queue    *jobs.Queue

	Generate *generate.View
	Gallery  *galleryview.View
	GPU      *gpupanel.View

	Tabs                            *container.AppTabs
	GenerateTab, GalleryTab, GPUTab *container.TabItem
	// Status shows the engine in use and its health; Notice what the user
	// should know about it (CPU slowness, an unreachable URL, a bad file).
	Status, Notice *widget.Label
	SettingsButton *widget.Button

	cfg         Config
	settingsDir string
	ctx         context.Context
	cancel      context.CancelFunc
	dialogs     *gpupanel.Dialogs
	// sticky are the start-up notices (a broken settings file) that the
	// engine's own notices must not hide.
	sticky []string

	mu     sync.Mutex
	engine engine.Engine
	// engineGen counts engine switches, so that a slow local start that
	// finishes after the user switched again is dropped.
	engineGen int
	closed    bool
}

// New builds the window; main shows it. The caller owns a and the window's
// lifetime; Close (run on quit) releases the engine, queue and gallery.
func New(a fyne.App, cfg Config) (*UI, error) {
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if cfg.Do == nil {
		cfg.Do = fyne.Do
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 10 * time.Second
	}
	var err error
	u := &UI{App: a, cfg: cfg}
	if u.settingsDir = cfg.SettingsDir; u.settingsDir == "" {
		if u.settingsDir, err = settings.Dir(); err != nil {
			return nil, err
		}
	}
	if cfg.StateDir == "" {
		if cfg.StateDir, err = settings.StateDir(); err != nil {
			return nil, err
		}
	}
	if cfg.CacheDir == "" {
		if cfg.CacheDir, err = settings.GalleryCacheDir(); err != nil {
			return nil, err
		}
	}
	u.cfg = cfg
	u.ctx, u.cancel = context.WithCancel(context.Background())

	// A broken settings file must not keep the app from starting, and
	// must not be lost: LoadOrDefaults moves it aside and says where.
	var notices []string
	s, err := settings.LoadOrDefaults(u.settingsDir)
	if err != nil {
		notices = append(notices, err.Error())
	}
	notices = append(notices, s.Warnings...)
	u.Settings = s

	u.Store, err = gallery.Open(s.GalleryDir, cfg.CacheDir)
	if err != nil {
		u.cancel()
		return nil, fmt.Errorf("gallery %s: %w", s.GalleryDir, err)
	}
	u.Queue, err = jobs.New(jobs.Config{
		Store:     u.Store,
		StateFile: filepath.Join(cfg.StateDir, "jobs.json"),
		Logf:      cfg.Logf,
	})
	if err != nil {
		u.Store.Close()
		u.cancel()
		return nil, fmt.Errorf("job queue: %w", err)
	}

	u.Window = a.NewWindow("pixery")
	u.Window.SetIcon(fyne.NewStaticResource("icon.png", assets.IconPNG))
	u.Window.Resize(fyne.NewSize(1280, 840))

	u.Generate = generate.New(generate.Deps{
		Window:   u.Window,
		Engine:   u.Engine,
		Queue:    u.Queue,
		OnImages: func(items []gallery.Item) { u.Gallery.Added(items) },
		Do:       cfg.Do,
	})
	u.Gallery = galleryview.New(galleryview.Deps{
		Window: u.Window,
		Store:  u.Store,
		Do:     cfg.Do,
		OnReuse: func(r gallery.Request) {
			u.Generate.Apply(r)
			u.Tabs.Select(u.GenerateTab)
		},
		OnUseAsReference: func(path string) {
			if err := u.Generate.SetReference(path); err != nil {
				dialog.ShowError(err, u.Window)
				return
			}
			u.Tabs.Select(u.GenerateTab)
		},
	})
	u.GPU, err = u.newGPUPanel()
	if err != nil {
		notices = append(notices, "GPU panel: "+err.Error())
	}

	u.GenerateTab = container.NewTabItem("Generate", u.Generate.Content())
	u.GalleryTab = container.NewTabItem("Gallery", u.Gallery.Content())
	tabs := []*container.TabItem{u.GenerateTab, u.GalleryTab}
	if u.GPU != nil {
		u.GPUTab = container.NewTabItem("GPU", u.GPU.Content())
		tabs = append(tabs, u.GPUTab)
	}
	u.Tabs = container.NewAppTabs(tabs...)

	u.Status = widget.NewLabel("")
	u.Notice = widget.NewLabel("")
	u.Notice.Wrapping = fyne.TextWrapWord
	u.Notice.Importance = widget.WarningImportance
	u.SettingsButton = widget.NewButton("Settings", u.ShowSettings)
	bar := container.NewBorder(nil, nil, nil, u.SettingsButton, container.NewVBox(u.Status, u.Notice))
	u.Window.SetContent(container.NewBorder(nil, bar, nil, nil, u.Tabs))

	u.Window.SetOnDropped(u.HandleDrop)
	u.Window.Canvas().SetOnTypedKey(u.typedKey)
	u.Window.SetCloseIntercept(u.requestQuit)
	// Ctrl+Enter generates wherever the focus is, as in A1111.
	u.Window.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyReturn, Modifier: fyne.KeyModifierShortcutDefault}, func(fyne.Shortcut) {
		if u.Tabs.Selected() == u.GenerateTab {
			u.Generate.Generate()
		}
	})

	u.Generate.SetState(s.Last)
	u.sticky = notices
	u.setNotice()
	u.switchEngine()
	u.start()
	return u, nil
}

// start begins the background work: tag indexes, the gallery's watcher,
// the GPU panel's polling and the status bar's health checks.
func (u *UI) start() {
	go u.loadTags()
	u.Gallery.Watch(u.ctx)
	if u.GPU != nil {
		u.GPU.Start(u.ctx)
	}
	go u.healthLoop()
}

// loadTags indexes the tag lists off the UI goroutine: a few hundred
// milliseconds that the window need not wait for.
func (u *UI) loadTags() {
	var idx []*tags.Index
	for _, src := range []tags.Source{tags.Danbooru, tags.E621} {
		ix, err := tags.Load(src)
		if err != nil {
			u.cfg.Logf("tag list %s: %v", src, err)
			continue
		}
		idx = append(idx, ix)
	}
	u.do(func() { u.Generate.SetTags(&tags.Completer{Indexes: idx}) })
}

// Engine returns the engine jobs go to now (nil while a local engine
// starts).
func (u *UI) Engine() engine.Engine {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.engine
}

// switchEngine makes the engine the settings describe, closes the previous
// one and tells the queue and the form. A local engine starts off the UI
// goroutine: loading ONNX Runtime and scanning models takes a moment.
func (u *UI) switchEngine() {
	s := *u.Settings
	u.mu.Lock()
	u.engineGen++
	gen := u.engineGen
	old := u.engine
	u.engine = nil
	u.mu.Unlock()
	if old != nil {
		go old.Close()
	}
	if s.Mode == settings.ModeLocal {
		u.Status.SetText("Starting the local engine…")
		go func() {
			e, err := engine.Local(engine.LocalConfig{ModelsDir: s.ModelsDir, Provider: s.Provider, ORTLib: s.ORTLib, Logf: u.cfg.Logf})
			u.do(func() {
				if err != nil {
					u.Status.SetText("Local engine: not running")
					u.setNotice("Local engine: " + err.Error())
					return
				}
				if !u.useEngine(gen, e) {
					go e.Close()
				}
			})
		}()
		return
	}
	u.useEngine(gen, engine.Remote(s.ServerURL, s.Token))
}

// do runs f on the UI goroutine (Config.Do).
func (u *UI) do(f func()) { u.cfg.Do(f) }

// useEngine installs e unless another switch happened since gen.
func (u *UI) useEngine(gen int, e engine.Engine) bool {
	u.mu.Lock()
	if gen != u.engineGen || u.closed {
		u.mu.Unlock()
		return false
	}
	u.engine = e
	u.mu.Unlock()
	u.Queue.SetEngine(e)
	u.Status.SetText("Engine: " + e.Describe())
	go func() {
		u.checkHealth()
		if err := u.Generate.Reload(u.ctx); err != nil {
			u.cfg.Logf("models: %v", err)
		}
	}()
	return true
}

func (u *UI) healthLoop() {
	t := time.NewTicker(u.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-u.ctx.Done():
			return
		case <-t.C:
			u.checkHealth()
		}
	}
}

// checkHealth asks the engine how it is and shows the answer.
func (u *UI) checkHealth() {
	e := u.Engine()
	if e == nil {
		return
	}
	ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
	defer cancel()
	h, err := e.Health(ctx)
	if u.ctx.Err() != nil {
		return
	}
	u.do(func() {
		if u.Engine() != e {
			return
		}
		if err != nil {
			u.Status.SetText("Engine: " + e.Describe() + " · unreachable")
			u.setNotice(unreachableHint(u.Settings, err))
			return
		}
		text := "Engine: " + e.Describe()
		for _, part := range []string{h.Device, h.Provider} {
			if part != "" && !strings.Contains(text, part) {
				text += " · " + part
			}
		}
		if len(h.Loaded) > 0 {
			text += fmt.Sprintf(" · loaded %v", h.Loaded)
		}
		if h.Queued > 0 {
			text += fmt.Sprintf(" · %d queued", h.Queued)
		}
		u.Status.SetText(text)
		u.setNotice(engine.Notice(h))
	})
}

// unreachableHint turns a failed health check into what to do about it.
func unreachableHint(s *settings.Settings, err error) string {
	if s.Mode == settings.ModeLocal {
		return "The local engine does not answer: " + err.Error()
	}
	return fmt.Sprintf("No engine answers at %s (%v). Rent and deploy one in the GPU tab, start `pixery-engine serve`, or change the Server URL in Settings.", s.ServerURL, err)
}

// setNotice shows lines under the status bar, after the start-up notices
// (a settings file moved aside), which stay until settings are saved.
func (u *UI) setNotice(lines ...string) {
	text := ""
	for _, l := range append(slices.Clone(u.sticky), lines...) {
		if l == "" {
			continue
		}
		if text != "" {
			text += "\n"
		}
		text += l
	}
	u.Notice.SetText(text)
	if text == "" {
		u.Notice.Hide()
	} else {
		u.Notice.Show()
	}
}

// HandleDrop routes files dropped on the window: onto the Generate tab's
// reference area they become the IP-Adapter reference; onto the gallery
// they are imported.
func (u *UI) HandleDrop(pos fyne.Position, uris []fyne.URI) {
	switch u.Tabs.Selected() {
	case u.GenerateTab:
		if u.Generate.HandleDrop(pos, uris) {
			return
		}
	case u.GalleryTab:
		if u.Gallery.HandleDrop(pos, uris) {
			return
		}
	}
}

// typedKey sends keys nobody focused took to the visible tab (the
// gallery's arrow-key navigation).
func (u *UI) typedKey(ev *fyne.KeyEvent) {
	if u.Tabs.Selected() == u.GalleryTab {
		u.Gallery.HandleKey(ev)
	}
}

// requestQuit closes the window, but asks first while a rented instance is
// billing: quitting pixery does not stop the bill.
func (u *UI) requestQuit() {
	if u.GPU != nil {
		if billing, what := u.GPU.Billing(); billing {
			dialog.ShowConfirm("An instance is still billing",
				what+"\n\nQuitting pixery does not stop it. Quit anyway? (Destroy it in the GPU tab to stop billing.)",
				func(quit bool) {
					if quit {
						u.quit()
					} else {
						u.Tabs.Select(u.GPUTab)
					}
				}, u.Window)
			return
		}
	}
	u.quit()
}

func (u *UI) quit() {
	u.Close()
	u.Window.Close()
}

// Close saves the form, stops the background work and releases the engine,
// the queue and the gallery. Jobs still running on the engine go on and
// are picked up at the next start.
func (u *UI) Close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	e := u.engine
	u.engine = nil
	u.mu.Unlock()

	u.Settings.Last = u.Generate.State()
	if err := u.Settings.Save(u.settingsDir); err != nil {
		u.cfg.Logf("save settings: %v", err)
	}
	u.cancel()
	if u.GPU != nil {
		u.GPU.Close()
	}
	if u.dialogs != nil {
		u.dialogs.Close()
	}
	u.Generate.Close()
	u.Gallery.Close()
	u.Queue.Close()
	if e != nil {
		e.Close()
	}
	u.Store.Close()
}

// ShowSettings opens the settings dialog.
func (u *UI) ShowSettings() {
	f := newSettingsForm(u.Settings)
	d := dialog.NewCustomConfirm("Settings", "Save", "Cancel", f.content(), func(ok bool) {
		if !ok {
			return
		}
		if err := u.ApplySettings(f.settings()); err != nil {
			dialog.ShowError(err, u.Window)
		}
	}, u.Window)
	d.Resize(fyne.NewSize(640, 560))
	d.Show()
}

// ApplySettings validates and saves new settings, and switches the engine
// or the gallery when they changed.
func (u *UI) ApplySettings(s *settings.Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	s.Last = u.Generate.State()
	if err := s.Save(u.settingsDir); err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	old := u.Settings
	u.Settings = s
	u.sticky = nil
	u.setNotice()
	var later []string
	if s.GalleryDir != old.GalleryDir {
		later = append(later, "the gallery folder")
	}
	if s.VastKey != old.VastKey || s.SSHKey != old.SSHKey || s.IdleDestroyMinutes != old.IdleDestroyMinutes {
		later = append(later, "the GPU tab's keys and idle time")
	}
	if len(later) > 0 {
		// The gallery index and the rental manager are open for the whole
		// run (a tunnel may be up); they take new settings at the next start.
		u.setNotice("Saved. New values for " + strings.Join(later, " and ") + " take effect at the next start of pixery.")
	}
	if s.Mode != old.Mode || s.ServerURL != old.ServerURL || s.Token != old.Token ||
		s.Mode == settings.ModeLocal && (s.ModelsDir != old.ModelsDir || s.Provider != old.Provider || s.ORTLib != old.ORTLib) {
		u.switchEngine()
	}
	return nil
}

// connectTunnel is what the GPU panel calls once its tunnel is up: the
// Server URL becomes the tunnel's local end.
func (u *UI) connectTunnel(url string) {
	s := *u.Settings
	s.Mode = settings.ModeRemote
	s.ServerURL = url
	if err := u.ApplySettings(&s); err != nil {
		u.setNotice("Tunnel: " + err.Error())
	}
}

// lastActivity is when a job was last submitted or running, for the GPU
// panel's idle auto-destroy.
func (u *UI) lastActivity() time.Time {
	var last time.Time
	for _, j := range u.Queue.Jobs() {
		t := j.Submitted
		if !j.Final() {
			t = time.Now()
		}
		if t.After(last) {
			last = t
		}
	}
	return last
}
