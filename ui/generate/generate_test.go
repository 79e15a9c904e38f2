package generate

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/enginetest"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/jobs"
	"github.com/pixery/pixery/app/settings"
	"github.com/pixery/pixery/app/tags"
	"github.com/pixery/pixery/engine/api"
)

// hangGuard bounds every wait; it is no timing assertion.
const hangGuard = 2 * time.Minute

// The two test models differ in every default, so that switching between
// them shows which fields follow the model.
var (
	alpha = enginetest.Model{ID: "alpha", DisplayName: "Tiny Alpha", CFG: 5, Steps: 3, Width: 192, Height: 128,
		Sampler: "euler_a", Negative: "lowres", QualityTags: []string{"masterpiece", "best quality"},
		Style: "danbooru", Notes: "a tiny random model for tests"}
	beta = enginetest.Model{ID: "beta", DisplayName: "Tiny Beta", CFG: 7, Steps: 4, Width: 128, Height: 192,
		Sampler: "dpmpp_2m_karras", Negative: "bad hands", QualityTags: []string{"score_9", "score_8_up"},
		Style: "e621", Notes: "wants score tags first"}
)

// loraFile is a real LoRA of the tiny checkpoint, so the engine lists one;
// adapterFile a real IP-Adapter, listed twice so that there is a choice.
const (
	loraFile    = "../../testdata/golden/lora/lora-kohya-tiny.safetensors"
	adapterFile = "../../testdata/golden/ipadapter/ip-adapter-plus-tiny.safetensors"
)

var (
	completerOnce sync.Once
	completer     *tags.Completer
	completerErr  error
)

// tagCompleter returns a completer on the real danbooru and e621 lists,
// loaded once for all tests.
func tagCompleter(t testing.TB) *tags.Completer {
	completerOnce.Do(func() {
		var ixs []*tags.Index
		for _, src := range []tags.Source{tags.Danbooru, tags.E621} {
			ix, err := tags.Load(src)
			if err != nil {
				completerErr = err
				return
			}
			ixs = append(ixs, ix)
		}
		completer = &tags.Completer{Indexes: ixs}
	})
	if completerErr != nil {
		t.Fatal(completerErr)
	}
	return completer
}

// fixture is a view on a real engine, queue and gallery, in a test window.
type fixture struct {
	v      *View
	w      fyne.Window
	q      *jobs.Queue
	store  *gallery.Store
	srv    *enginetest.Server
	images chan []gallery.Item
}

func newFixture(t *testing.T, srv *enginetest.Server) *fixture {
	t.Helper()
	return newFixtureOn(t, srv, srv.Engine)
}

// newFixtureOn is newFixture with the engine (client) given.
func newFixtureOn(t *testing.T, srv *enginetest.Server, eng engine.Engine) *fixture {
	t.Helper()
	test.NewTempApp(t)
	store, err := gallery.Open(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	q, err := jobs.New(jobs.Config{Engine: eng, Store: store, Retry: 200 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	f := &fixture{q: q, store: store, srv: srv, images: make(chan []gallery.Item, 64)}
	f.w = test.NewTempWindow(t, widget.NewLabel(""))
	f.v = New(Deps{
		Window:   f.w,
		Engine:   func() engine.Engine { return eng },
		Queue:    q,
		Tags:     tagCompleter(t),
		OnImages: func(items []gallery.Item) { f.images <- items },
	})
	t.Cleanup(f.v.Close)
	f.w.SetContent(f.v.Content())
	// Tall enough that the whole form is on screen (drops are decided by
	// position).
	f.w.Resize(fyne.NewSize(1400, 2200))
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := f.v.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	return f
}

// ui runs f holding the view's UI lock, so that the test's reads and taps
// do not overlap the updates the queue's goroutines apply (the test driver
// runs fyne.Do on the calling goroutine).
func (f *fixture) ui(fn func()) {
	f.v.ui.Lock()
	defer f.v.ui.Unlock()
	fn()
}

// eventually waits until cond (run under the UI lock) holds.
func (f *fixture) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		var ok bool
		f.ui(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) choose(t *testing.T, label string) {
	t.Helper()
	if !slices.Contains(f.v.Model.Options, label) {
		t.Fatalf("model %q not offered: %q", label, f.v.Model.Options)
	}
	f.v.Model.SetSelected(label)
}

// runningJob generates with Tiny Alpha, prompt and steps, and waits until
// the job has run a step (a long job leaves time to act on it); it returns
// the job's id.
func (f *fixture) runningJob(t *testing.T, prompt, steps string) string {
	t.Helper()
	v := f.v
	f.ui(func() {
		f.choose(t, "Tiny Alpha")
		v.Prompt.SetText(prompt)
		retype(v.Steps, steps)
	})
	test.Tap(v.GenerateButton)
	var id string
	f.eventually(t, "the job to run", func() bool {
		for _, r := range v.queue.rows {
			if r.Job.State == api.StateRunning && r.Job.Step >= 1 {
				id = r.Job.ID
				return true
			}
		}
		return false
	})
	return id
}

// retype replaces an entry's text as a user would: select all, type.
func retype(e *widget.Entry, s string) {
	e.SetText("")
	test.Type(e, s)
}

func chips(v *View) []string {
	var out []string
	for _, o := range v.QualityChips.Objects {
		out = append(out, o.(*widget.Button).Text)
	}
	return out
}

func chip(t *testing.T, v *View, text string) *widget.Button {
	t.Helper()
	for _, o := range v.QualityChips.Objects {
		if b := o.(*widget.Button); b.Text == text {
			return b
		}
	}
	t.Fatalf("no chip %q in %q", text, chips(v))
	return nil
}

func startEngine(t *testing.T) *enginetest.Server {
	dir := enginetest.ModelsDirWith(t, alpha, beta)
	for _, c := range []struct{ src, dst string }{
		{loraFile, "loras/tinylora.safetensors"},
		{adapterFile, "ip-adapters/adapter-a.safetensors"},
		{adapterFile, "ip-adapters/adapter-b.safetensors"},
	} {
		b, err := os.ReadFile(c.src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, c.dst)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A registry model whose source cannot be fetched (nothing listens on
	// port 1), for the Download action. The engine's downloader retries a
	// few times (about 7 s) before it gives up.
	toml, err := os.ReadFile(filepath.Join(dir, "alpha.toml"))
	if err != nil {
		t.Fatal(err)
	}
	dl := strings.NewReplacer(`id = "alpha"`, `id = "dl"`, `"Tiny Alpha"`, `"Tiny Download"`,
		`file = "alpha.safetensors"`, `file = "dl.safetensors"`+"\nsource = \"https://127.0.0.1:1/dl.safetensors\"").Replace(string(toml))
	if err := os.WriteFile(filepath.Join(dir, "dl.toml"), []byte(dl), 0o644); err != nil {
		t.Fatal(err)
	}
	return enginetest.Start(t, dir)
}

// TestView runs the view against one real engine (the tiny checkpoint
// behind the real HTTP server), shared by the subtests so that the model is
// loaded once.
func TestView(t *testing.T) {
	srv := startEngine(t)
	t.Run("ModelGuideAndDefaults", func(t *testing.T) { testModelGuideAndDefaults(t, srv) })
	t.Run("QualityChips", func(t *testing.T) { testQualityChips(t, srv) })
	t.Run("TagCompletion", func(t *testing.T) { testTagCompletion(t, srv) })
	t.Run("GenerateToGallery", func(t *testing.T) { testGenerate(t, srv) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, srv) })
	t.Run("EngineRefusesField", func(t *testing.T) { testRefused(t, srv) })
	t.Run("BadFieldsSubmitNothing", func(t *testing.T) { testBadFields(t, srv) })
	t.Run("Apply", func(t *testing.T) { testApply(t, srv) })
	t.Run("ReferenceDrop", func(t *testing.T) { testReferenceDrop(t, srv) })
	t.Run("StateRoundTrip", func(t *testing.T) { testState(t, srv) })
	t.Run("LoRAs", func(t *testing.T) { testLoRAs(t, srv) })
	t.Run("Download", func(t *testing.T) { testDownload(t, srv) })
	// Last: it cuts the server's connections.
	t.Run("ConnectionLost", func(t *testing.T) { testConnectionLost(t, srv) })
}

func testModelGuideAndDefaults(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	// The registry's own models are listed too, not downloaded.
	for _, want := range []string{"Tiny Alpha", "Tiny Beta"} {
		if !slices.Contains(v.Model.Options, want) {
			t.Fatalf("options %q lack %q", v.Model.Options, want)
		}
	}
	f.choose(t, "Tiny Alpha")
	if got := chips(v); !slices.Equal(got, []string{"masterpiece", "best quality"}) {
		t.Errorf("alpha chips %q", got)
	}
	if !v.Guide.Visible() || !strings.Contains(v.GuideStyle.Text, "danbooru") || v.GuideNotes.Text != alpha.Notes {
		t.Errorf("alpha guide: style %q notes %q visible %v", v.GuideStyle.Text, v.GuideNotes.Text, v.Guide.Visible())
	}
	if v.ModelState.Text != "ready" || v.Download.Visible() {
		t.Errorf("alpha state %q, download shown %v", v.ModelState.Text, v.Download.Visible())
	}
	check := func(model enginetest.Model, steps string) {
		t.Helper()
		got := []string{v.Width.Text, v.Height.Text, v.Steps.Text, v.CFG.Text, v.Sampler.Selected, v.Negative.Text}
		want := []string{itoa(model.Width), itoa(model.Height), steps, ftoa(model.CFG), model.Sampler, model.Negative}
		if !slices.Equal(got, want) {
			t.Errorf("fields %q, want %q", got, want)
		}
	}
	check(alpha, "3")
	if v.SizePreset.Selected != CustomSize {
		t.Errorf("192×128 shown as preset %q", v.SizePreset.Selected)
	}
	if v.StepsDefault.Visible() || v.CFGDefault.Visible() || v.NegativeDefault.Visible() {
		t.Error("default hints shown for values equal to the model's")
	}

	// The user types steps; choosing another model keeps them and offers
	// the model's value, while the untouched fields follow the model.
	retype(v.Steps, "10")
	f.choose(t, "Tiny Beta")
	check(beta, "10")
	if !v.StepsDefault.Visible() || v.StepsDefault.Text != "model: 4" {
		t.Errorf("steps hint %q visible %v", v.StepsDefault.Text, v.StepsDefault.Visible())
	}
	if got := chips(v); !slices.Equal(got, []string{"score_9", "score_8_up"}) {
		t.Errorf("beta chips %q", got)
	}
	if !strings.Contains(v.GuideStyle.Text, "e621") || v.GuideNotes.Text != beta.Notes {
		t.Errorf("beta guide: style %q notes %q", v.GuideStyle.Text, v.GuideNotes.Text)
	}
	// A negative prompt the user edits is kept too.
	retype(&v.Negative.Entry, "blurry")
	f.choose(t, "Tiny Alpha")
	if v.Steps.Text != "10" || v.Negative.Text != "blurry" || v.CFG.Text != "5" || v.Sampler.Selected != "euler_a" {
		t.Errorf("back on alpha: steps %q negative %q cfg %q sampler %q", v.Steps.Text, v.Negative.Text, v.CFG.Text, v.Sampler.Selected)
	}
	if !v.NegativeDefault.Visible() {
		t.Error("no hint for the model's negative prompt")
	}
	test.Tap(v.NegativeDefault)
	test.Tap(v.StepsDefault)
	if v.Negative.Text != "lowres" || v.Steps.Text != "3" || v.StepsDefault.Visible() || v.NegativeDefault.Visible() {
		t.Errorf("after using the defaults: negative %q steps %q", v.Negative.Text, v.Steps.Text)
	}
	// Fields back on the model's value follow the next model again.
	f.choose(t, "Tiny Beta")
	check(beta, "4")

	// A registry model that is not downloaded says so, offers Download
	// and cannot be generated with.
	var missing *api.Model
	for i := range v.models.list {
		if v.models.list[i].State == api.ModelMissing && v.models.list[i].ID != "dl" {
			missing = &v.models.list[i]
			break
		}
	}
	if missing == nil {
		t.Fatalf("no missing registry model among %+v", v.models.list)
	}
	f.choose(t, v.models.labels[slices.IndexFunc(v.models.list, func(m api.Model) bool { return m.ID == missing.ID })])
	if v.ModelState.Text != "not downloaded" || !v.Download.Visible() {
		t.Errorf("missing model: state %q download %v", v.ModelState.Text, v.Download.Visible())
	}
	if len(chips(v)) != len(missing.PromptGuide.QualityTags) || len(chips(v)) == 0 {
		t.Errorf("registry model chips %q, guide %q", chips(v), missing.PromptGuide.QualityTags)
	}
	v.Prompt.SetText("1girl")
	if _, err := v.Request(); err == nil || !strings.Contains(err.Error(), "Download") {
		t.Errorf("Request with a missing model: %v", err)
	}
}

func itoa(n int) string     { return strconv.Itoa(n) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func testQualityChips(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.choose(t, "Tiny Alpha")
	v.Prompt.SetText("1girl, smile")
	test.Tap(chip(t, v, "masterpiece"))
	if v.Prompt.Text != "1girl, smile, masterpiece" {
		t.Fatalf("after chip: %q", v.Prompt.Text)
	}
	if chip(t, v, "masterpiece").Importance != widget.LowImportance {
		t.Error("chip of a tag in the prompt not marked")
	}
	// Not duplicated, also when written differently.
	v.Prompt.SetText("1girl, (Masterpiece:1.2), smile")
	test.Tap(chip(t, v, "masterpiece"))
	if v.Prompt.Text != "1girl, (Masterpiece:1.2), smile" || !strings.Contains(v.Status.Text, "already") {
		t.Errorf("duplicate chip: %q, status %q", v.Prompt.Text, v.Status.Text)
	}
	// With the prompt focused, at the cursor (here: the start).
	v.Prompt.SetText("1girl, smile")
	v.Prompt.FocusGained()
	v.Prompt.SetCursorOffset(0)
	test.Tap(chip(t, v, "best quality"))
	if v.Prompt.Text != "best quality, 1girl, smile" {
		t.Errorf("at the cursor: %q", v.Prompt.Text)
	}
	if got := v.Prompt.CursorTextOffset(); got != len("best quality") {
		t.Errorf("cursor at %d after the insertion", got)
	}
}

func TestInsertTag(t *testing.T) {
	for _, tc := range []struct {
		text     string
		cursor   int
		atCursor bool
		want     string
		ok       bool
	}{
		{"", 0, false, "masterpiece", true},
		{"1girl, smile", 0, false, "1girl, smile, masterpiece", true},
		{"1girl, smile, ", 0, false, "1girl, smile, masterpiece", true},
		{"1girl, smile", 0, true, "masterpiece, 1girl, smile", true},
		{"1girl, smile", 3, true, "1girl, masterpiece, smile", true},
		{"1girl, smile", 7, true, "1girl, masterpiece, smile", true},
		{"1girl\nsmile", 5, true, "1girl, masterpiece\nsmile", true},
		{"1girl, masterpiece", 0, false, "1girl, masterpiece", false},
		{"1girl, (masterpiece:1.3)", 0, false, "1girl, (masterpiece:1.3)", false},
		{"1girl, MASTER_PIECE", 0, false, "1girl, MASTER_PIECE, masterpiece", true},
	} {
		got, _, ok := insertTag(tc.text, tc.cursor, tc.atCursor, "masterpiece")
		if got != tc.want || ok != tc.ok {
			t.Errorf("insertTag(%q, %d, %v) = %q, %v; want %q, %v", tc.text, tc.cursor, tc.atCursor, got, ok, tc.want, tc.ok)
		}
	}
}

func testTagCompletion(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	tab := &fyne.KeyEvent{Name: fyne.KeyTab}

	test.Type(v.Prompt, "long_ha")
	if !v.Suggestions.Visible() || len(v.Suggestions.Items()) == 0 || v.Suggestions.Items()[0] != "long hair" {
		t.Fatalf("suggestions for long_ha: %q (visible %v)", v.Suggestions.Items(), v.Suggestions.Visible())
	}
	if !v.Prompt.AcceptsTab() {
		t.Error("Tab not taken while suggestions are open")
	}
	if meta := v.Suggestions.Rows[0].Meta.Text; !strings.Contains(meta, "general") || !strings.Contains(meta, "M") {
		t.Errorf("first suggestion's details %q", meta)
	}
	v.Prompt.TypedKey(tab)
	if v.Prompt.Text != "long hair, " || v.Suggestions.Visible() {
		t.Fatalf("after Tab: %q (suggestions visible %v)", v.Prompt.Text, v.Suggestions.Visible())
	}
	if got := v.Prompt.CursorTextOffset(); got != len("long hair, ") {
		t.Errorf("cursor at %d after insertion", got)
	}
	if v.Prompt.AcceptsTab() {
		t.Error("Tab taken with no suggestions open")
	}

	// Matching a word inside the tag; Down then Enter picks the second.
	test.Type(v.Prompt, "hair")
	items := v.Suggestions.Items()
	if !slices.Contains(items, "long hair") || len(items) < 2 {
		t.Fatalf("suggestions for hair: %q", items)
	}
	v.Prompt.TypedKey(&fyne.KeyEvent{Name: fyne.KeyDown})
	v.Prompt.TypedKey(&fyne.KeyEvent{Name: fyne.KeyDown})
	if v.Suggestions.Selected() != 1 {
		t.Errorf("selected %d after two Downs", v.Suggestions.Selected())
	}
	v.Prompt.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
	if want := "long hair, " + items[1] + ", "; v.Prompt.Text != want {
		t.Errorf("after Enter: %q, want %q", v.Prompt.Text, want)
	}

	// Parentheses are escaped so they do not read as emphasis.
	test.Type(v.Prompt, "ganyu")
	if it := v.Suggestions.Items(); len(it) == 0 || it[0] != "ganyu (genshin impact)" {
		t.Fatalf("suggestions for ganyu: %q", it)
	}
	v.Prompt.TypedKey(tab)
	if want := `ganyu \(genshin impact\), `; !strings.HasSuffix(v.Prompt.Text, want) {
		t.Errorf("after ganyu: %q", v.Prompt.Text)
	}

	// A click on a row inserts it too, mid-prompt: the rest is kept.
	v.Prompt.SetText("blue_ey, smile")
	v.Prompt.SetCursorOffset(len("blue_ey"))
	v.complete(v.Prompt)
	if it := v.Suggestions.Items(); len(it) == 0 || it[0] != "blue eyes" {
		t.Fatalf("suggestions for blue_ey: %q", it)
	}
	// The pointer moves over the row, then clicks it.
	test.MoveMouse(f.w.Canvas(), centre(v.Suggestions.Rows[0]))
	test.Tap(v.Suggestions.Rows[0])
	if v.Prompt.Text != "blue eyes, smile" {
		t.Errorf("after click: %q", v.Prompt.Text)
	}

	// Escape closes the list without changing the text.
	v.Prompt.SetText("")
	test.Type(v.Prompt, "smil")
	if !v.Suggestions.Visible() {
		t.Fatal("no suggestions for smil")
	}
	v.Prompt.TypedKey(&fyne.KeyEvent{Name: fyne.KeyEscape})
	if v.Suggestions.Visible() || v.Prompt.Text != "smil" {
		t.Errorf("after Escape: %q visible %v", v.Prompt.Text, v.Suggestions.Visible())
	}

	// LoRA names after '<', from the engine's list.
	v.Prompt.SetText("")
	test.Type(v.Prompt, "1girl, <tiny")
	if it := v.Suggestions.Items(); len(it) != 1 || it[0] != "<lora:tinylora:1>" {
		t.Fatalf("suggestions for <tiny: %q", it)
	}
	v.Prompt.TypedKey(tab)
	if v.Prompt.Text != "1girl, <lora:tinylora:1>, " {
		t.Errorf("after LoRA: %q", v.Prompt.Text)
	}

	// The negative prompt completes too.
	test.Type(v.Negative, "bad_han")
	if it := v.Suggestions.Items(); len(it) == 0 || it[0] != "bad hands" {
		t.Fatalf("negative suggestions: %q", it)
	}
	v.Negative.TypedKey(tab)
	if !strings.HasSuffix(v.Negative.Text, "bad hands, ") {
		t.Errorf("negative after Tab: %q", v.Negative.Text)
	}
}

func ctrlEnter() *desktop.CustomShortcut {
	return &desktop.CustomShortcut{KeyName: fyne.KeyReturn, Modifier: fyne.KeyModifierShortcutDefault}
}

func testGenerate(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.ui(func() {
		f.choose(t, "Tiny Alpha")
		test.Type(v.Prompt, "1girl, red dress")
		v.SeedMode.SetSelected(seedFixedLabel)
		retype(v.Seed, "1234")
		retype(v.Batch, "2")
		if v.ReuseSeed.Disabled() == false {
			t.Error("ReuseSeed enabled before any job finished")
		}
	})
	v.Prompt.TypedShortcut(ctrlEnter())

	var got []gallery.Item
	for len(got) < 2 {
		select {
		case items := <-f.images:
			got = append(got, items...)
		case <-time.After(hangGuard):
			t.Fatalf("OnImages not called within %v (got %d)", hangGuard, len(got))
		}
	}
	for i, it := range got {
		if it.Prompt != "1girl, red dress" || it.Model != "alpha" || !it.HasSeed || it.Seed != int64(1234+i) ||
			it.Width != 192 || it.Height != 128 || it.Steps != 3 {
			t.Errorf("image %d: %+v", i, it)
		}
		if _, err := os.Stat(it.Path); err != nil {
			t.Errorf("image %d not on disk: %v", i, err)
		}
	}
	js := f.q.Jobs()
	if len(js) != 1 {
		t.Fatalf("jobs %+v", js)
	}
	id := js[0].ID
	f.eventually(t, "the row to show the finished job", func() bool {
		r := v.QueueRow(id)
		return r != nil && r.Job.State == api.StateDone && r.result != nil
	})
	f.ui(func() {
		r := v.QueueRow(id)
		if !strings.HasPrefix(r.State.Text, "done · 2 images · seed 1234") || r.Progress.Visible() || r.Cancel.Visible() ||
			!r.Remove.Visible() || r.Thumb.Image == nil || r.Prompt.Text != "1girl, red dress" {
			t.Errorf("row: state %q progress %v cancel %v remove %v thumb %v prompt %q",
				r.State.Text, r.Progress.Visible(), r.Cancel.Visible(), r.Remove.Visible(), r.Thumb.Image != nil, r.Prompt.Text)
		}
		if len(v.Queue.Objects) != 1 {
			t.Errorf("%d rows", len(v.Queue.Objects))
		}
		// Reuse last seed.
		v.SeedMode.SetSelected(seedRandomLabel)
		if v.ReuseSeed.Disabled() {
			t.Fatal("ReuseSeed disabled after a finished job")
		}
		test.Tap(v.ReuseSeed)
		if v.Seed.Text != "1234" || v.SeedMode.Selected != seedFixedLabel {
			t.Errorf("reused seed %q mode %q", v.Seed.Text, v.SeedMode.Selected)
		}
		// Remove takes the finished job off the list.
		test.Tap(r.Remove)
		if len(v.Queue.Objects) != 0 || v.QueueRow(id) != nil {
			t.Errorf("after Remove: %d rows", len(v.Queue.Objects))
		}
	})
	f.eventually(t, "the queue to drop the job", func() bool { return len(f.q.Jobs()) == 0 })

	// The Generate button does the same as Ctrl+Enter; a random seed
	// gets drawn by the engine.
	f.ui(func() {
		v.SeedMode.SetSelected(seedRandomLabel)
		retype(v.Batch, "1")
	})
	test.Tap(v.GenerateButton)
	select {
	case items := <-f.images:
		if len(items) != 1 || items[0].Prompt != "1girl, red dress" || !items[0].HasSeed {
			t.Errorf("second job's images %+v", items)
		}
	case <-time.After(hangGuard):
		t.Fatal("second job gave no images")
	}
}

func testCancel(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	id := f.runningJob(t, "1boy, long job", "50")
	f.ui(func() {
		r := v.QueueRow(id)
		if !r.Cancel.Visible() || !r.Progress.Visible() || !strings.HasPrefix(r.State.Text, "step ") {
			t.Errorf("running row: cancel %v progress %v state %q", r.Cancel.Visible(), r.Progress.Visible(), r.State.Text)
		}
		test.Tap(r.Cancel)
	})
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	j, err := f.q.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateCancelled || len(j.Images) != 0 {
		t.Fatalf("job %+v", j)
	}
	f.eventually(t, "the row to show the cancellation", func() bool {
		r := v.QueueRow(id)
		return r.State.Text == "cancelled" && !r.Cancel.Visible() && r.Remove.Visible()
	})
	select {
	case items := <-f.images:
		t.Errorf("a cancelled job gave images %+v", items)
	default:
	}
	// Clear finished removes it.
	f.ui(func() {
		test.Tap(v.ClearFinished)
		if len(v.Queue.Objects) != 0 {
			t.Errorf("%d rows after Clear finished", len(v.Queue.Objects))
		}
	})
}

func testRefused(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.ui(func() {
		f.choose(t, "Tiny Alpha")
		v.Prompt.SetText("1girl")
		v.addLoRA("no_such_lora", 0.8)
	})
	test.Tap(v.GenerateButton)
	f.eventually(t, "the engine's refusal", func() bool {
		return v.Status.Importance == widget.DangerImportance && strings.Contains(v.Status.Text, "loras[0].name")
	})
	if !strings.Contains(v.Status.Text, "no_such_lora") {
		t.Errorf("status %q does not name the LoRA", v.Status.Text)
	}
	if js := f.q.Jobs(); len(js) != 0 {
		t.Errorf("jobs %+v", js)
	}

	// An engine that cannot be reached says so, without a panic.
	dead := engine.Remote("http://127.0.0.1:1", "")
	v2 := New(Deps{Window: f.w, Engine: func() engine.Engine { return dead }, Queue: f.q})
	t.Cleanup(v2.Close)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := v2.Reload(ctx); err == nil {
		t.Fatal("Reload of an unreachable engine succeeded")
	}
	if !strings.Contains(v2.Status.Text, "Cannot reach the engine") || v2.Status.Importance != widget.DangerImportance {
		t.Errorf("status %q", v2.Status.Text)
	}
	// No engine at all.
	v3 := New(Deps{Window: f.w, Engine: func() engine.Engine { return nil }})
	t.Cleanup(v3.Close)
	if err := v3.Reload(ctx); err == nil || !strings.Contains(v3.Status.Text, "no engine") {
		t.Errorf("no engine: %v, status %q", err, v3.Status.Text)
	}
}

func testBadFields(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.choose(t, "Tiny Alpha")
	v.Prompt.SetText("1girl")
	for _, tc := range []struct {
		name string
		set  func()
		says string
	}{
		{"width not multiple of 8", func() { retype(v.Width, "1001") }, "width 1001 is not a multiple of 8 (try 1000 or 1008)"},
		{"height not a number", func() { retype(v.Height, "tall") }, `height "tall" is not a whole number`},
		{"too many pixels", func() { retype(v.Width, "4096"); retype(v.Height, "4096") }, "more than"},
		{"steps", func() { retype(v.Steps, "0") }, "steps 0 is out of range"},
		{"cfg", func() { retype(v.CFG, "x") }, `CFG "x" is not a number`},
		{"batch", func() { retype(v.Batch, "99") }, "batch 99 is out of range"},
		{"seed", func() { v.SeedMode.SetSelected(seedFixedLabel); retype(v.Seed, "-5") }, "seed"},
		{"empty prompt", func() { v.Prompt.SetText(" ") }, "prompt is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			test.Tap(chip(t, v, "masterpiece")) // any state change
			v.Prompt.SetText("1girl")
			v.useDefault(fieldWidth, fieldHeight, fieldSteps, fieldCFG)
			v.Batch.SetText("1")
			v.SeedMode.SetSelected(seedRandomLabel)
			tc.set()
			if _, err := v.Request(); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Request: %v, want %q", err, tc.says)
			}
			test.Tap(v.GenerateButton)
			if v.Status.Importance != widget.DangerImportance || !strings.Contains(v.Status.Text, tc.says) {
				t.Errorf("status %q", v.Status.Text)
			}
		})
	}
	// Nothing reached the queue.
	time.Sleep(100 * time.Millisecond)
	if js := f.q.Jobs(); len(js) != 0 {
		t.Errorf("jobs submitted: %+v", js)
	}
	// And the valid form gives the request the engine gets.
	v.Prompt.SetText("1girl")
	v.useDefault(fieldWidth, fieldHeight, fieldSteps, fieldCFG)
	v.Batch.SetText("1")
	v.SeedMode.SetSelected(seedFixedLabel)
	v.Seed.SetText("77")
	r, err := v.Request()
	if err != nil {
		t.Fatal(err)
	}
	want := api.JobRequest{Model: "alpha", Prompt: "1girl", NegativePrompt: "lowres", Width: 192, Height: 128,
		Steps: 3, CFG: 5, Sampler: "euler_a", Seed: 77, Batch: 1}
	if r.Model != want.Model || r.Prompt != want.Prompt || r.NegativePrompt != want.NegativePrompt || r.Width != want.Width ||
		r.Height != want.Height || r.Steps != want.Steps || r.CFG != want.CFG || r.Sampler != want.Sampler ||
		r.Seed != want.Seed || r.Batch != want.Batch || r.IPAdapter != nil || len(r.LoRAs) != 0 {
		t.Errorf("request %+v", r)
	}
}

func testApply(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.choose(t, "Tiny Alpha")
	v.Prompt.SetText("old prompt")
	// An A1111 image's metadata, through the gallery's own mapping.
	item := gallery.Item{
		Source: gallery.SourceA1111, Prompt: "1girl, silver hair", Negative: "worst quality",
		Model: "beta", Width: 832, Height: 1216, Steps: 20, CFG: 6.5,
		Sampler: "DPM++ 2M", Scheduler: "Karras", Seed: 42, HasSeed: true, RNG: "CPU", ClipSkip: 2,
		LoRAs: []gallery.LoRA{{Name: "tinylora", Weight: 0.7}},
	}
	// Reuse prompt takes only the prompts.
	v.Apply(gallery.Reuse(item, gallery.ReusePrompt))
	if v.Prompt.Text != item.Prompt || v.Negative.Text != item.Negative || v.Model.Selected != "Tiny Alpha" || v.Steps.Text != "3" {
		t.Errorf("reuse prompt: prompt %q negative %q model %q steps %q", v.Prompt.Text, v.Negative.Text, v.Model.Selected, v.Steps.Text)
	}
	v.Apply(gallery.Reuse(item, gallery.ReuseAll))
	if v.Model.Selected != "Tiny Beta" || v.Width.Text != "832" || v.Height.Text != "1216" || v.SizePreset.Selected != "832×1216" ||
		v.Steps.Text != "20" || v.CFG.Text != "6.5" || v.Sampler.Selected != "dpmpp_2m_karras" ||
		v.SeedMode.Selected != seedFixedLabel || v.Seed.Text != "42" || v.RNG.Selected != rngComfyLabel || v.ClipSkip.Text != "2" {
		t.Errorf("reuse all: model %q size %s×%s (%q) steps %q cfg %q sampler %q seed %q/%q rng %q clip %q",
			v.Model.Selected, v.Width.Text, v.Height.Text, v.SizePreset.Selected, v.Steps.Text, v.CFG.Text,
			v.Sampler.Selected, v.SeedMode.Selected, v.Seed.Text, v.RNG.Selected, v.ClipSkip.Text)
	}
	if len(v.LoRARows) != 1 || v.LoRARows[0].name != "tinylora" || roundScale(v.LoRARows[0].Weight.Value) != 0.7 || v.LoRARows[0].Warning.Visible() {
		t.Errorf("LoRAs %d: %+v", len(v.LoRARows), v.LoRARows[0])
	}
	r, err := v.Request()
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "beta" || r.Prompt != item.Prompt || r.NegativePrompt != item.Negative || r.Seed != 42 || r.RNG != api.RNGComfy ||
		r.ClipSkip != 2 || r.Width != 832 || r.Height != 1216 || len(r.LoRAs) != 1 || r.LoRAs[0] != (api.LoRA{Name: "tinylora", Scale: 0.7}) {
		t.Errorf("request %+v", r)
	}
	// The reused values are the user's: another model does not replace them.
	f.choose(t, "Tiny Alpha")
	if v.Steps.Text != "20" || v.CFG.Text != "6.5" || v.Negative.Text != item.Negative {
		t.Errorf("after switching: steps %q cfg %q negative %q", v.Steps.Text, v.CFG.Text, v.Negative.Text)
	}
	// An image from a model the engine lacks keeps the chosen one, and
	// says so; an unknown sampler too.
	sampler := v.Sampler.Selected
	v.Apply(gallery.Request{Prompt: "x", Model: "someCheckpoint_v2", Sampler: "LCM", SamplerKnown: false})
	if v.Model.Selected != "Tiny Alpha" || v.Sampler.Selected != sampler || !strings.Contains(v.Status.Text, "someCheckpoint_v2") ||
		!strings.Contains(v.Status.Text, "LCM") {
		t.Errorf("unknown model: model %q sampler %q status %q", v.Model.Selected, v.Sampler.Selected, v.Status.Text)
	}
}

// pngFile writes a small real PNG and returns its path and bytes.
func pngFile(t *testing.T, name string) (string, []byte) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 300, 200))
	for y := range 200 {
		for x := range 300 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b.Bytes()
}

// centre is the middle of o in canvas coordinates.
func centre(o fyne.CanvasObject) fyne.Position {
	p := fyne.CurrentApp().Driver().AbsolutePositionForObject(o)
	return p.AddXY(o.Size().Width/2, o.Size().Height/2)
}

func testReferenceDrop(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.ui(func() {
		f.choose(t, "Tiny Alpha")
		v.Prompt.SetText("1girl")
	})
	path, data := pngFile(t, "ref.png")
	text := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(text, []byte("not an image at all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var at, elsewhere fyne.Position
	f.ui(func() {
		at = centre(v.DropTarget())
		elsewhere = centre(v.Prompt)
		if v.DropTarget().Size().Height == 0 {
			t.Fatal("reference area not laid out")
		}
	})

	// A drop of a text file: a clear error, no reference.
	f.ui(func() {
		if !v.HandleDrop(at, []fyne.URI{storage.NewFileURI(text)}) {
			t.Fatal("drop on the reference area not handled")
		}
		if !strings.Contains(v.Status.Text, "notes.txt") || !strings.Contains(v.Status.Text, "not a PNG, JPEG or WebP") ||
			v.Status.Importance != widget.DangerImportance {
			t.Errorf("status after a text drop: %q", v.Status.Text)
		}
		if r, err := v.Request(); err != nil || r.IPAdapter != nil {
			t.Errorf("request after a text drop: %+v %v", r, err)
		}
		// Drops elsewhere are not the view's.
		if v.HandleDrop(elsewhere, []fyne.URI{storage.NewFileURI(path)}) {
			t.Error("drop on the prompt taken as a reference")
		}
		if v.ref.data != nil {
			t.Error("reference set by a drop elsewhere")
		}
		// The PNG on the area.
		if !v.HandleDrop(at, []fyne.URI{storage.NewFileURI(path)}) {
			t.Fatal("PNG drop not handled")
		}
		r, err := v.Request()
		if err != nil {
			t.Fatal(err)
		}
		if r.IPAdapter == nil || !bytes.Equal(r.IPAdapter.Image, data) || r.IPAdapter.Scale != DefaultReferenceScale {
			t.Fatalf("IPAdapter %+v", r.IPAdapter)
		}
		if !strings.Contains(v.ReferenceLabel.Text, "ref.png") || !strings.Contains(v.ReferenceLabel.Text, "300×200") {
			t.Errorf("label %q", v.ReferenceLabel.Text)
		}
		v.ReferenceScale.SetValue(0.85)
		if r, _ := v.Request(); r.IPAdapter.Scale != 0.85 {
			t.Errorf("scale %v", r.IPAdapter.Scale)
		}
		// Two adapters on the engine: the picker shows and names one.
		if !v.Adapter.Visible() || len(v.Adapter.Options) != 2 || r.IPAdapter.Adapter != v.Adapter.Options[0] {
			t.Errorf("adapter picker %q visible %v, request %q", v.Adapter.Options, v.Adapter.Visible(), r.IPAdapter.Adapter)
		}
		v.Adapter.SetSelected(v.Adapter.Options[1])
		if r, _ := v.Request(); r.IPAdapter.Adapter != v.Adapter.Options[1] {
			t.Errorf("adapter %q", r.IPAdapter.Adapter)
		}
		// A bad file changes nothing: the PNG stays.
		v.HandleDrop(at, []fyne.URI{storage.NewFileURI(text)})
		if r, _ := v.Request(); r.IPAdapter == nil || !bytes.Equal(r.IPAdapter.Image, data) {
			t.Error("a refused drop replaced the reference")
		}
	})
	f.eventually(t, "the thumbnail", func() bool { return v.Reference.Image != nil })
	f.ui(func() {
		if b := v.Reference.Image.Bounds(); b.Dx() != thumbSide || b.Dy() != thumbSide*200/300 {
			t.Errorf("thumbnail %v", b)
		}
		test.Tap(v.RemoveReference)
		if r, _ := v.Request(); r.IPAdapter != nil || v.Reference.Image != nil || v.ReferenceLabel.Text != referenceHint {
			t.Error("reference not removed")
		}
	})

	// WebP works through SetReference (the gallery's and the picker's way).
	webp, _ := base64.StdEncoding.DecodeString("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
	wpath := filepath.Join(t.TempDir(), "tiny.webp")
	if err := os.WriteFile(wpath, webp, 0o644); err != nil {
		t.Fatal(err)
	}
	f.ui(func() {
		if err := v.SetReference(wpath); err != nil {
			t.Fatalf("webp: %v", err)
		}
		if r, _ := v.Request(); r.IPAdapter == nil || !bytes.Equal(r.IPAdapter.Image, webp) {
			t.Error("webp not the reference")
		}
	})
	f.eventually(t, "the webp thumbnail", func() bool { return v.Reference.Image != nil })

	// A PNG whose header is fine but whose data is cut off is dropped again
	// once decoding fails, with a message.
	broken := filepath.Join(t.TempDir(), "cut.png")
	if err := os.WriteFile(broken, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	f.ui(func() {
		if !v.HandleDrop(at, []fyne.URI{storage.NewFileURI(broken)}) {
			t.Fatal("drop not handled")
		}
	})
	f.eventually(t, "the damaged PNG to be refused", func() bool {
		return v.ref.data == nil && strings.Contains(v.Status.Text, "damaged")
	})
	f.ui(func() {
		if r, _ := v.Request(); r.IPAdapter != nil {
			t.Error("damaged PNG still the reference")
		}
		if err := v.SetReference(filepath.Join(t.TempDir(), "gone.png")); err == nil {
			t.Error("missing file accepted")
		}
	})
}

func testState(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	path, data := pngFile(t, "ref.png")
	f.choose(t, "Tiny Beta")
	v.Prompt.SetText("1girl, night sky")
	retype(v.Steps, "12") // the user's; the rest follows the model
	v.SeedMode.SetSelected(seedIncrementLabel)
	v.Seed.SetText("500")
	v.Batch.SetText("3")
	v.addLoRA("tinylora", 0.5)
	if err := v.SetReference(path); err != nil {
		t.Fatal(err)
	}
	v.ReferenceScale.SetValue(0.4)
	s := v.State()
	want := settings.Form{Model: "beta", Prompt: "1girl, night sky", Steps: 12, SeedMode: settings.SeedIncrement, Seed: 500,
		Batch: 3, LoRAs: []settings.LoRA{{Name: "tinylora", Scale: 0.5}}, RefImage: path, RefScale: 0.4}
	if s.Model != want.Model || s.Prompt != want.Prompt || s.Steps != want.Steps || s.Width != 0 || s.CFG != 0 || s.Sampler != "" ||
		s.Negative != "" || s.SeedMode != want.SeedMode || s.Seed != want.Seed || s.Batch != want.Batch ||
		!slices.Equal(s.LoRAs, want.LoRAs) || s.RefImage != want.RefImage || s.RefScale != want.RefScale {
		t.Errorf("State %+v\nwant %+v", s, want)
	}
	before, err := v.Request()
	if err != nil {
		t.Fatal(err)
	}

	// A new view (next start) restores it once the models are loaded.
	v2 := New(Deps{Window: f.w, Engine: func() engine.Engine { return srv.Engine }, Queue: f.q, Tags: tagCompleter(t)})
	t.Cleanup(v2.Close)
	v2.SetState(s)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := v2.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := v2.Request()
	if err != nil {
		t.Fatal(err)
	}
	if after.Model != "beta" || after.Steps != 12 || after.CFG != 7 || after.Width != 128 || after.Sampler != "dpmpp_2m_karras" ||
		after.NegativePrompt != "bad hands" || after.Seed != 500 || after.Batch != 3 || after.Prompt != before.Prompt ||
		len(after.LoRAs) != 1 || after.LoRAs[0] != before.LoRAs[0] || after.IPAdapter == nil ||
		!bytes.Equal(after.IPAdapter.Image, data) || after.IPAdapter.Scale != 0.4 {
		t.Errorf("restored request %+v", after)
	}
	// The restored steps are the user's: kept on another model; the rest
	// follows it.
	v2.Model.SetSelected("Tiny Alpha")
	if v2.Steps.Text != "12" || v2.CFG.Text != "5" {
		t.Errorf("restored form on alpha: steps %q cfg %q", v2.Steps.Text, v2.CFG.Text)
	}
	// Increment moves the seed on past the batch after each job.
	f.ui(func() {
		test.Tap(v.RemoveReference)
		test.Tap(v.LoRARows[0].Remove)
		v.Generate()
		if v.Seed.Text != "503" {
			t.Errorf("seed after an increment job %q", v.Seed.Text)
		}
	})
	f.eventually(t, "the job to finish", func() bool {
		js := f.q.Jobs()
		if v.Status.Importance == widget.DangerImportance {
			t.Fatalf("status %q", v.Status.Text)
		}
		return len(js) == 1 && js[0].Final()
	})
	j := f.q.Jobs()[0]
	if j.Request.Seed != 500 || j.State != api.StateDone {
		t.Errorf("incremented job %+v", j)
	}
}

func testLoRAs(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	if !slices.Equal(v.LoRAPicker.Options, []string{"tinylora"}) || v.AddLoRA.Disabled() {
		t.Fatalf("LoRA picker %q disabled %v", v.LoRAPicker.Options, v.AddLoRA.Disabled())
	}
	f.choose(t, "Tiny Alpha")
	v.Prompt.SetText("1girl")
	v.LoRAPicker.SetSelected("tinylora")
	test.Tap(v.AddLoRA)
	test.Tap(v.AddLoRA) // once only
	if len(v.LoRARows) != 1 || v.LoRARows[0].Value.Text != "1.00" {
		t.Fatalf("rows %d", len(v.LoRARows))
	}
	v.LoRARows[0].Weight.SetValue(0.65)
	r, err := v.Request()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.LoRAs) != 1 || r.LoRAs[0] != (api.LoRA{Name: "tinylora", Scale: 0.65}) || v.LoRARows[0].Value.Text != "0.65" {
		t.Errorf("LoRAs %+v, value %q", r.LoRAs, v.LoRARows[0].Value.Text)
	}

	// The engine takes the LoRA but it does not fit the tiny checkpoint:
	// the job fails, and its row says why.
	test.Tap(v.GenerateButton)
	f.eventually(t, "the job to fail", func() bool {
		js := f.q.Jobs()
		return len(js) == 1 && js[0].Final()
	})
	id := f.q.Jobs()[0].ID
	f.eventually(t, "the row to show the failure", func() bool {
		r := v.QueueRow(id)
		return r != nil && r.State.Text == "failed"
	})
	f.ui(func() {
		r := v.QueueRow(id)
		if !r.Problem.Visible() || !strings.Contains(r.Problem.Text, "tinylora") || r.Problem.Importance != widget.DangerImportance {
			t.Errorf("problem %q visible %v", r.Problem.Text, r.Problem.Visible())
		}
		test.Tap(v.LoRARows[0].Remove)
		if r, _ := v.Request(); len(r.LoRAs) != 0 || len(v.LoRAList.Objects) != 0 {
			t.Errorf("after remove: %+v", r.LoRAs)
		}
	})
}

// TestFormatCount checks the post counts as the list shows them.
func TestFormatCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1234: "1.2k", 52_000: "52k", 4_350_743: "4.4M"} {
		if got := formatCount(n); got != want {
			t.Errorf("formatCount(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestSetCursorOffsetWrapped puts the cursor by rune offset in a prompt that
// wraps over several visual rows and lines.
func TestSetCursorOffsetWrapped(t *testing.T) {
	test.NewTempApp(t)
	e := NewPromptEntry()
	w := test.NewTempWindow(t, e)
	w.Resize(fyne.NewSize(200, 300))
	e.SetText("masterpiece, best quality, 1girl, long hair, very long hair\nsmile, looking at viewer, ünïcödé tags")
	n := len([]rune(e.Text))
	for _, off := range []int{0, 1, 13, 30, 57, 58, 59, 70, n - 1, n} {
		e.SetCursorOffset(off)
		if got := e.CursorTextOffset(); got != off {
			t.Errorf("SetCursorOffset(%d): cursor at %d (row %d col %d)", off, got, e.CursorRow, e.CursorColumn)
		}
	}
	if e.CursorRow < 3 {
		t.Errorf("text did not wrap: last row %d", e.CursorRow)
	}
}

// testConnectionLost cuts the engine's connections in the middle of a job:
// the row says the connection is the problem, and once the server is back
// the job finishes and its image arrives.
func testConnectionLost(t *testing.T, srv *enginetest.Server) {
	f := newFixtureOn(t, srv, srv.EngineWith(50*time.Millisecond, 2))
	v := f.v
	id := f.runningJob(t, "1girl, rain", "40")
	srv.Stop()
	restarted := false
	defer func() {
		if !restarted {
			srv.Restart()
		}
	}()
	f.eventually(t, "the row to show the connection problem", func() bool {
		r := v.QueueRow(id)
		return r.Problem.Visible() && strings.HasPrefix(r.Problem.Text, "Connection: ") && r.Problem.Importance == widget.WarningImportance
	})
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	select {
	case items := <-f.images:
		if len(items) != 1 || items[0].Prompt != "1girl, rain" {
			t.Errorf("images %+v", items)
		}
	case <-time.After(hangGuard):
		t.Fatal("no image after the server came back")
	}
	f.eventually(t, "the row to show the finished job", func() bool {
		r := v.QueueRow(id)
		return r.Job.State == api.StateDone && !r.Problem.Visible()
	})
}

// testDownload presses Download on a model whose file is not on disk: the
// engine starts fetching it, the view follows its progress, and the
// failure (nothing serves the file) shows where the state was.
func testDownload(t *testing.T, srv *enginetest.Server) {
	f := newFixture(t, srv)
	v := f.v
	f.ui(func() {
		f.choose(t, "Tiny Download")
		if v.ModelState.Text != "not downloaded" || !v.Download.Visible() {
			t.Fatalf("state %q download %v", v.ModelState.Text, v.Download.Visible())
		}
		test.Tap(v.Download)
	})
	f.eventually(t, "the download to fail", func() bool {
		return strings.HasPrefix(v.ModelState.Text, "download failed: ") && !v.models.polling
	})
	f.ui(func() {
		if !strings.Contains(v.ModelState.Text, "127.0.0.1") || !v.Download.Visible() || v.Download.Disabled() {
			t.Errorf("state %q, download shown %v", v.ModelState.Text, v.Download.Visible())
		}
		v.Prompt.SetText("1girl")
		if _, err := v.Request(); err == nil {
			t.Error("Request with a model not downloaded")
		}
	})
}
