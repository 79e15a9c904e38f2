package galleryview

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/pngmeta"
)

// newestFirst is the fixtures' captions in the default order.
func newestFirst() []string {
	var out []string
	for _, f := range slices.Backward(fixtures) {
		out = append(out, f.caption)
	}
	return out
}

func TestGridShowsThumbnails(t *testing.T) {
	h := newHarness(t, 0)
	if n := h.v.Grid.Length(); n != len(fixtures) {
		t.Fatalf("grid length %d, want %d", n, len(fixtures))
	}
	if got := h.v.CountLabel.Text; got != "5 images" {
		t.Errorf("count label %q", got)
	}
	if got, want := h.captions(), newestFirst(); !slices.Equal(got, want) {
		t.Errorf("captions %q, want %q (newest first)", got, want)
	}
	for _, f := range fixtures {
		_, c := h.cellFor(t, f.caption)
		if c.caption.Text != f.caption {
			t.Errorf("%s: caption shows %q, want %q", f.id, c.caption.Text, f.caption)
		}
		img := c.img.Image
		if img == nil || img == h.v.placeholder {
			t.Errorf("%s: no thumbnail (placeholder: %v, resource %v)", f.id, img != nil, c.img.Resource)
			continue
		}
		b := img.Bounds()
		if b.Dx() != f.w || b.Dy() != f.h {
			t.Errorf("%s: thumbnail %v, want %dx%d", f.id, b, f.w, f.h)
		}
		if got := img.At(b.Min.X+b.Dx()/2, b.Min.Y+b.Dy()/2); !near(got, f.color, 24) {
			t.Errorf("%s: thumbnail colour %v, want about %v (another image's thumbnail?)", f.id, got, f.color)
		}
	}
	h.v.mu.Lock()
	cached := h.v.thumbs.len()
	h.v.mu.Unlock()
	if cached != len(fixtures) {
		t.Errorf("%d thumbnails cached, want %d", cached, len(fixtures))
	}
}

func TestSearchNarrowsTheGrid(t *testing.T) {
	h := newHarness(t, 0)
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"castle", []string{fxPixery.caption}},
		{"nigh", []string{fxComfy.caption, fxPixery.caption}}, // prefix of "night", newest first
		{"night -moon", []string{fxPixery.caption}},
		{"\"witch hat\"", []string{fxComfy.caption}},
		{"zebra", nil},
		{"", newestFirst()},
	} {
		h.v.Search.SetText("")
		if tc.text != "" {
			test.Type(h.v.Search, tc.text)
		}
		h.idle(t)
		if got := h.captions(); !slices.Equal(got, tc.want) {
			t.Errorf("search %q: captions %q, want %q", tc.text, got, tc.want)
		}
		if got, want := h.v.CountLabel.Text, countText(len(tc.want)); got != want {
			t.Errorf("search %q: count %q, want %q", tc.text, got, want)
		}
	}

	// Relevance: the ranking is BM25's; the view passes the order on and
	// shows every match.
	h.v.Order.SetSelected(OrderRelevance)
	test.Type(h.v.Search, "night")
	h.idle(t)
	got := h.captions()
	slices.Sort(got)
	if want := []string{fxPixery.caption, fxComfy.caption}; !slices.Equal(got, want) {
		t.Errorf("relevance search: %q, want %q in some order", got, want)
	}
}

func TestFilters(t *testing.T) {
	h := newHarness(t, 0)
	models := h.v.Model.Options
	for _, m := range []string{AllModels, "animagine-xl-4.0", "ponyDiffusionV6XL", "juggernautXL_v9", "noobai-xl-1.1"} {
		if !contains(models, m) {
			t.Errorf("model filter lacks %q: %q", m, models)
		}
	}
	if len(models) != 5 {
		t.Errorf("model options %q, want All + 4 models", models)
	}
	if want := []string{AllSizes, "64×96", "96×64"}; !slices.Equal(h.v.Size.Options, want) {
		t.Errorf("size options %q, want %q", h.v.Size.Options, want)
	}

	check := func(what string, want ...string) {
		t.Helper()
		h.idle(t)
		if got := h.captions(); !slices.Equal(got, want) {
			t.Errorf("%s: captions %q, want %q", what, got, want)
		}
	}
	h.v.Model.SetSelected("ponyDiffusionV6XL")
	check("model pony", fxPony.caption)
	h.v.Model.SetSelected(AllModels)
	check("all models", newestFirst()...)

	h.v.Size.SetSelected("96×64")
	check("size 96×64", fxA1111.caption)
	h.v.Size.SetSelected(AllSizes)

	test.Type(h.v.Seed, "777")
	check("seed 777", fxA1111.caption)
	h.v.Seed.SetText("")
	test.Type(h.v.Seed, "12x")
	h.idle(t)
	if !strings.Contains(h.v.Status.Text, "not a whole number") {
		t.Errorf("bad seed: status %q", h.v.Status.Text)
	}
	h.v.Seed.SetText("")
	check("no seed", newestFirst()...)
	if h.v.Status.Text != "" {
		t.Errorf("status after fixing the seed: %q", h.v.Status.Text)
	}

	h.v.Date.SetSelected(DateToday)
	check("today", fxPlain.caption, fxComfy.caption)
	h.v.Date.SetSelected(DateWeek)
	check("7 days", fxPlain.caption, fxComfy.caption)
	h.v.Date.SetSelected(DateAll)

	h.v.Order.SetSelected(OrderOldest)
	want := newestFirst()
	slices.Reverse(want)
	check("oldest first", want...)

	// Filters combine.
	h.v.Order.SetSelected(OrderNewest)
	h.v.Model.SetSelected("animagine-xl-4.0")
	test.Type(h.v.Search, "sword")
	check("animagine + sword")
	if h.v.CountLabel.Text != "0 images" {
		t.Errorf("count %q", h.v.CountLabel.Text)
	}
}

func TestSelectingShowsMetadata(t *testing.T) {
	h := newHarness(t, 0)
	for _, tc := range []struct {
		f    fixture
		want []string
	}{
		{fxPixery, []string{"Prompt: 1girl, long hair, castle, night sky", "Negative prompt: lowres, bad anatomy",
			"Model: animagine-xl-4.0", "Seed: 1234", "Steps: 28", "CFG: 5", "Sampler: dpmpp_2m_karras", "Size: 64×96",
			"LoRAs: add_detail (0.6)", "Source: pixery"}},
		{fxA1111, []string{"Prompt: " + a1111Prompt, "Negative prompt: blurry, lowres", "Model: juggernautXL_v9 [0123456789]",
			"Seed: 777", "Steps: 30", "CFG: 7", "Sampler: DPM++ 2M (Karras)", "Size: 96×64", "Source: A1111 / Forge"}},
		{fxComfy, []string{"Prompt: 1girl, witch hat, night, moon", "Negative prompt: worst quality", "Model: noobai-xl-1.1",
			"Seed: 99", "Steps: 24", "CFG: 5.5", "Sampler: euler_ancestral (normal)", "LoRAs: detail_slider (0.8)", "Source: ComfyUI"}},
		{fxPlain, []string{"Prompt: (none)", "Size: 64×96", "Source: no generation metadata"}},
	} {
		i, _ := h.cellFor(t, tc.f.caption)
		h.v.Grid.Select(i)
		h.idle(t)
		if !h.v.Detail.Panel.Visible() {
			t.Fatalf("%s: detail panel hidden after selecting", tc.f.id)
		}
		if got, want := h.v.Detail.Title.Text, filepath.Base(tc.f.id); got != want {
			t.Errorf("title %q, want %q", got, want)
		}
		hasAll(t, h.v.Detail.Metadata.Text, tc.want...)
		hasAll(t, h.v.Detail.Metadata.Text, "File: "+tc.f.id)
		img := h.v.Detail.Image.Image
		if img == nil || img == h.v.placeholder {
			t.Fatalf("%s: full image not shown (nil %v, resource %v, status %q)", tc.f.id, img == nil, h.v.Detail.Image.Resource, h.v.Status.Text)
		}
		if b := img.Bounds(); b.Dx() != tc.f.w || b.Dy() != tc.f.h {
			t.Errorf("%s: detail image %v, want the full %dx%d", tc.f.id, b, tc.f.w, tc.f.h)
		}
		if got := img.At(1, 1); !near(got, tc.f.color, 2) {
			t.Errorf("%s: detail image colour %v, want %v", tc.f.id, got, tc.f.color)
		}
	}
	test.Tap(h.v.Detail.Close)
	if h.v.Detail.Panel.Visible() {
		t.Error("Close left the detail panel open")
	}
}

func TestActions(t *testing.T) {
	h := newHarness(t, 0)
	open := func(f fixture) {
		t.Helper()
		i, _ := h.cellFor(t, f.caption)
		h.v.Grid.Select(i)
		h.idle(t)
	}

	open(fxPixery)
	test.Tap(h.v.Detail.ReusePrompt)
	test.Tap(h.v.Detail.ReuseAll)
	if len(h.reused) != 2 {
		t.Fatalf("OnReuse called %d times, want 2", len(h.reused))
	}
	p := h.reused[0]
	if p.Prompt != "1girl, long hair, castle, night sky" || p.Negative != "lowres, bad anatomy" || p.Model != "" || p.Seed != nil || p.Steps != 0 {
		t.Errorf("reuse prompt: %+v, want the prompts only", p)
	}
	a := h.reused[1]
	if a.Prompt != p.Prompt || a.Model != "animagine-xl-4.0" || a.Seed == nil || *a.Seed != 1234 || a.Steps != 28 || a.CFG != 5 ||
		a.Sampler != "dpmpp_2m_karras" || !a.SamplerKnown || a.Width != 64 || a.Height != 96 ||
		len(a.LoRAs) != 1 || a.LoRAs[0].Name != "add_detail" || a.LoRAs[0].Weight != 0.6 {
		t.Errorf("reuse all (pixery): %+v", a)
	}

	open(fxA1111)
	test.Tap(h.v.Detail.ReuseAll)
	a = h.reused[2]
	if a.Model != "juggernautXL_v9" || a.Seed == nil || *a.Seed != 777 || a.Sampler != "dpmpp_2m_karras" || !a.SamplerKnown ||
		a.CFG != 7 || a.Steps != 30 || a.RNG != pngmeta.RNGA1111 {
		t.Errorf("reuse all (A1111 'DPM++ 2M' + Karras): %+v", a)
	}

	test.Tap(h.v.Detail.UseAsReference)
	want := filepath.Join(h.dir, filepath.FromSlash(fxA1111.id))
	if len(h.refs) != 1 || h.refs[0] != want {
		t.Fatalf("use as reference got %q, want [%q]", h.refs, want)
	}
	if _, err := os.Stat(h.refs[0]); err != nil {
		t.Errorf("reference path: %v", err)
	}

	// Copy takes the file's own A1111 text, byte for byte.
	test.Tap(h.v.Detail.Copy)
	h.idle(t)
	if got := fyne.CurrentApp().Clipboard().Content(); got != a1111Params() {
		t.Errorf("copied %q, want the parameters chunk %q", got, a1111Params())
	}
	// A ComfyUI image has none: the text is made from its metadata.
	open(fxComfy)
	test.Tap(h.v.Detail.Copy)
	h.idle(t)
	got := fyne.CurrentApp().Clipboard().Content()
	hasAll(t, got, "1girl, witch hat, night, moon <lora:detail_slider:0.8>\nNegative prompt: worst quality\n",
		"Steps: 24", "Sampler: euler_ancestral", "Schedule type: normal", "CFG scale: 5.5", "Seed: 99", "Size: 64x96", "Model: noobai-xl-1.1")
	if parsed, err := pngmeta.ParseParameters(got); err != nil {
		t.Errorf("copied text does not parse as A1111 parameters: %v", err)
	} else if parsed.Prompt == "" {
		t.Errorf("copied text parsed without a prompt: %+v", parsed)
	}

	test.Tap(h.v.Detail.OpenFolder)
	if len(h.opened) != 1 {
		t.Fatalf("OpenURL called %d times", len(h.opened))
	}
	u, err := storage.ParseURI(h.opened[0])
	if err != nil || u.Scheme() != "file" {
		t.Fatalf("opened %q: %v", h.opened[0], err)
	}
	if want := filepath.Join(h.dir, "comfy"); filepath.Clean(u.Path()) != want {
		t.Errorf("opened folder %q, want %q", u.Path(), want)
	}
}

func TestDeleteAndUndo(t *testing.T) {
	h := newHarness(t, 0)
	i, _ := h.cellFor(t, fxA1111.caption)
	h.v.Grid.Select(i)
	h.idle(t)
	if h.v.Undo.Visible() {
		t.Fatal("Undo shown before any delete")
	}
	test.Tap(h.v.Detail.Delete)
	h.idle(t)

	path := filepath.Join(h.dir, filepath.FromSlash(fxA1111.id))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file still in the gallery after Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, gallery.TrashDir, filepath.FromSlash(fxA1111.id))); err != nil {
		t.Errorf("file not in the trash: %v", err)
	}
	if n := h.v.Grid.Length(); n != 4 {
		t.Errorf("grid length %d after delete, want 4", n)
	}
	if contains(h.captions(), fxA1111.caption) {
		t.Errorf("deleted image still on screen: %q", h.captions())
	}
	if !h.v.Undo.Visible() || !strings.Contains(h.v.Status.Text, "Deleted "+fxA1111.id) {
		t.Errorf("after delete: Undo visible %v, status %q", h.v.Undo.Visible(), h.v.Status.Text)
	}
	// The next image took its place, in the detail panel too.
	next := newestFirst()[i+1]
	if !h.v.Detail.Panel.Visible() || !strings.Contains(h.v.Detail.Metadata.Text, "Seed: 42") {
		t.Errorf("detail after delete should show the next image (%s):\n%s", next, h.v.Detail.Metadata.Text)
	}

	test.Tap(h.v.Undo)
	h.idle(t)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Undo did not bring the file back: %v", err)
	}
	if n := h.v.Grid.Length(); n != 5 {
		t.Errorf("grid length %d after undo, want 5", n)
	}
	if got, want := h.captions(), newestFirst(); !slices.Equal(got, want) {
		t.Errorf("after undo: %q, want %q", got, want)
	}
	if h.v.Undo.Visible() {
		t.Error("Undo still shown with nothing left to undo")
	}
	if !strings.Contains(h.v.Detail.Metadata.Text, "Seed: 777") {
		t.Errorf("detail should show the restored image:\n%s", h.v.Detail.Metadata.Text)
	}
}

func TestKeyboard(t *testing.T) {
	h := newHarness(t, 0)
	order := newestFirst()
	selected := func() int {
		h.v.mu.Lock()
		defer h.v.mu.Unlock()
		return h.v.selIdx
	}
	key := func(name fyne.KeyName) {
		t.Helper()
		if !h.v.HandleKey(&fyne.KeyEvent{Name: name}) {
			t.Fatalf("key %s not handled", name)
		}
		h.idle(t)
	}

	h.v.Grid.Select(0)
	h.idle(t)
	key(fyne.KeyEscape)
	if h.v.Detail.Panel.Visible() {
		t.Fatal("Escape left the detail open")
	}
	key(fyne.KeyRight)
	if got := selected(); got != 1 {
		t.Fatalf("Right: selection %d, want 1", got)
	}
	if h.v.Detail.Panel.Visible() {
		t.Error("moving the selection opened the detail")
	}
	key(fyne.KeyReturn)
	if !h.v.Detail.Panel.Visible() {
		t.Fatal("Enter did not open the detail")
	}
	if got, want := h.v.Detail.Title.Text, filepath.Base(fixtures[len(fixtures)-2].id); got != want {
		t.Errorf("Enter opened %q, want %q (%s)", got, want, order[1])
	}
	// With the detail open it follows the selection.
	key(fyne.KeyLeft)
	if got, want := h.v.Detail.Title.Text, filepath.Base(fixtures[len(fixtures)-1].id); selected() != 0 || got != want {
		t.Errorf("Left: selection %d, detail %q; want 0, %q", selected(), got, want)
	}
	key(fyne.KeyEnd)
	if selected() != len(fixtures)-1 {
		t.Errorf("End: selection %d", selected())
	}
	if h.v.HandleKey(&fyne.KeyEvent{Name: fyne.KeyF5}) {
		t.Error("F5 claimed as handled")
	}

	// The same keys reach the view through the focused grid.
	h.w.Canvas().Focus(h.v.grid)
	focused := h.w.Canvas().Focused()
	if focused == nil {
		t.Fatal("grid cannot take the focus")
	}
	h.v.Grid.Select(1)
	h.idle(t)
	focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyRight})
	h.idle(t)
	if selected() != 2 {
		t.Errorf("Right on the focused grid: selection %d, want 2", selected())
	}
	cols := h.v.Grid.ColumnCount()
	focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyDown})
	h.idle(t)
	if want := min(2+cols, len(fixtures)-1); selected() != want {
		t.Errorf("Down with %d columns: selection %d, want %d", cols, selected(), want)
	}
	focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyUp})
	focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyUp})
	h.idle(t)
	if selected() != 0 {
		t.Errorf("Up twice: selection %d, want 0", selected())
	}

	// Delete deletes the selected image.
	focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyDelete})
	h.idle(t)
	if n := h.v.Grid.Length(); n != len(fixtures)-1 {
		t.Errorf("Delete key: %d images left, want %d", n, len(fixtures)-1)
	}
	if contains(h.captions(), order[0]) {
		t.Errorf("Delete key: %q still shown", order[0])
	}
}

func TestAddedShowsNewImagesAtOnce(t *testing.T) {
	h := newHarness(t, 0)
	img := solid(64, 64, fxPixery.color)
	rc := &pngmeta.Recipe{Model: "illustrious-xl-v1.0", Prompt: "1girl, umbrella, rain", Width: 64, Height: 64, Steps: 20, CFG: 6,
		Sampler: "euler_a", Seed: 5150, RNG: pngmeta.RNGA1111}
	data, err := pngmeta.EncodeBytes(img, rc)
	if err != nil {
		t.Fatal(err)
	}
	it, err := h.store.Save(context.Background(), data, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.v.Added([]gallery.Item{it})
	h.idle(t)
	if n := h.v.Grid.Length(); n != len(fixtures)+1 {
		t.Fatalf("grid length %d after Added, want %d", n, len(fixtures)+1)
	}
	_, c := h.cellFor(t, "illustrious-xl-v1.0 · 5150")
	if c.img.Image == nil || c.img.Image == h.v.placeholder {
		t.Error("new image has no thumbnail")
	}
	if !strings.HasSuffix(c.caption.Text, " · 5150") || len([]rune(c.caption.Text)) > c.maxRunes {
		t.Errorf("caption %q: want the seed kept within %d characters", c.caption.Text, c.maxRunes)
	}
	if !contains(h.v.Model.Options, "illustrious-xl-v1.0") || !contains(h.v.Size.Options, "64×64") {
		t.Errorf("filters lack the new model or size: %q %q", h.v.Model.Options, h.v.Size.Options)
	}
	if h.v.CountLabel.Text != "6 images" {
		t.Errorf("count %q", h.v.CountLabel.Text)
	}
}

func TestWatchSeesExternalChanges(t *testing.T) {
	h := newHarness(t, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.v.Watch(ctx)

	// Another program writes an A1111 image into the folder.
	ext := fixture{id: "from-forge/00099-31337.png", color: fxComfy.color, w: 64, h: 64}
	writeAt(t, h.dir, ext.id, encodePNG(t, solid(64, 64, ext.color),
		tEXt("parameters", a1111Text("forest, river", "", 20, "Euler a", "Automatic", 6, 31337, 64, 64, "forgeModel"))), time.Time{})
	h.waitFor(t, "the external image in the grid", func() bool { return h.count() == len(fixtures)+1 })
	h.idle(t)
	if _, c := h.cellFor(t, "forgeModel · 31337"); c.img.Image == nil || c.img.Image == h.v.placeholder {
		t.Error("external image without thumbnail")
	}
	if !contains(h.v.Model.Options, "forgeModel") {
		t.Errorf("model filter lacks the external image's model: %q", h.v.Model.Options)
	}
	if !strings.Contains(h.v.Status.Text, "1 image added") {
		t.Errorf("status %q", h.v.Status.Text)
	}

	// …and removes one.
	if err := os.Remove(filepath.Join(h.dir, filepath.FromSlash(fxPony.id))); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "the removed image to leave the grid", func() bool { return h.count() == len(fixtures) })
	h.idle(t)
	if contains(h.captions(), fxPony.caption) {
		t.Errorf("removed image still shown: %q", h.captions())
	}
	cancel()
}

func TestDropImports(t *testing.T) {
	h := newHarness(t, 0)
	src := t.TempDir()
	for i, name := range []string{"batch/a.png", "batch/b.png", "batch/sub/c.png"} {
		writeAt(t, src, name, encodePNG(t, solid(64, 64, fxA1111.color),
			tEXt("parameters", a1111Text("lake, boat", "", 20, "Euler a", "Automatic", 6, int64(500+i), 64, 64, "importedModel"))), time.Time{})
	}
	writeAt(t, src, "batch/notes.txt", []byte("not an image"), time.Time{})
	notPNG := writeAt(t, src, "photo.jpg", []byte("JFIF but not really"), time.Time{})

	// A drop outside the view is not the gallery's.
	size := h.v.DropTarget().Size()
	if h.v.HandleDrop(fyne.NewPos(size.Width+5, 10), []fyne.URI{storage.NewFileURI(filepath.Join(src, "batch"))}) {
		t.Error("drop outside the view was taken")
	}
	h.idle(t)
	if h.v.Grid.Length() != len(fixtures) {
		t.Fatal("a drop outside the view imported something")
	}

	ok := h.v.HandleDrop(fyne.NewPos(size.Width/2, size.Height/2),
		[]fyne.URI{storage.NewFileURI(filepath.Join(src, "batch")), storage.NewFileURI(notPNG)})
	if !ok {
		t.Fatal("drop on the view not handled")
	}
	h.idle(t)
	status := h.v.Status.Text
	if !strings.HasPrefix(status, "3 imported, 1 skipped: photo.jpg: ") {
		t.Errorf("status %q", status)
	}
	if n := h.v.Grid.Length(); n != len(fixtures)+3 {
		t.Errorf("grid length %d after import, want %d", n, len(fixtures)+3)
	}
	for _, name := range []string{"a.png", "b.png", "c.png"} {
		matches, _ := filepath.Glob(filepath.Join(h.dir, gallery.ImportDir, "*", name))
		direct, _ := filepath.Glob(filepath.Join(h.dir, gallery.ImportDir, name))
		if len(matches)+len(direct) == 0 {
			t.Errorf("%s not copied into the gallery's %s folder", name, gallery.ImportDir)
		}
	}
	if !contains(h.v.Model.Options, "importedModel") {
		t.Errorf("model filter lacks the imported model: %q", h.v.Model.Options)
	}
}

func TestErrorsGoToTheStatusLine(t *testing.T) {
	h := newHarness(t, 0)

	// A file damaged after indexing: its thumbnail and full image cannot be
	// made. (The thumbnail cache is keyed by size and time, so the damaged
	// file gets a new one.)
	damaged := filepath.Join(h.dir, filepath.FromSlash(fxPony.id))
	data, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(damaged)
	if err := os.WriteFile(damaged, data[:len(data)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(damaged, fi.ModTime(), fi.ModTime())
	h2 := newViewOver(t, h.store)
	_, c := h2.cellFor(t, fxPony.caption)
	if c.img.Resource != theme.BrokenImageIcon() {
		t.Errorf("damaged file: cell shows resource %v, want the broken-image icon", c.img.Resource)
	}
	if !strings.Contains(h2.v.Status.Text, fxPony.id) {
		t.Errorf("status %q does not name the damaged file", h2.v.Status.Text)
	}
	i, _ := h2.cellFor(t, fxPony.caption)
	h2.v.Status.SetText("")
	h2.v.Grid.Select(i)
	h2.idle(t)
	if h2.v.Detail.Image.Resource != theme.BrokenImageIcon() || !strings.Contains(h2.v.Status.Text, "show ") {
		t.Errorf("damaged file in the detail: resource %v, status %q", h2.v.Detail.Image.Resource, h2.v.Status.Text)
	}

	// A delete that fails (the trash folder's name is taken by a file)
	// keeps the image and says why.
	if err := os.WriteFile(filepath.Join(h.dir, gallery.TrashDir), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, _ := h.cellFor(t, fxPixery.caption)
	h.v.Grid.Select(j)
	h.idle(t)
	test.Tap(h.v.Detail.Delete)
	h.idle(t)
	if !strings.Contains(h.v.Status.Text, "Delete "+fxPixery.id) || h.v.Undo.Visible() {
		t.Errorf("failed delete: status %q, Undo visible %v", h.v.Status.Text, h.v.Undo.Visible())
	}
	if h.v.Grid.Length() != len(fixtures) || !contains(h.captions(), fxPixery.caption) {
		t.Errorf("failed delete lost the image from the grid: %q", h.captions())
	}
	if _, err := os.Stat(filepath.Join(h.dir, filepath.FromSlash(fxPixery.id))); err != nil {
		t.Errorf("failed delete: file gone: %v", err)
	}
	os.Remove(filepath.Join(h.dir, gallery.TrashDir))

	// Deleting an image another program already removed says so, and the
	// grid drops it.
	gone := filepath.Join(h.dir, filepath.FromSlash(fxA1111.id))
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	k, _ := h.cellFor(t, fxA1111.caption)
	h.v.Grid.Select(k)
	h.idle(t)
	h.v.HandleKey(&fyne.KeyEvent{Name: fyne.KeyDelete})
	h.idle(t)
	if !strings.Contains(h.v.Status.Text, "no such image") {
		t.Errorf("status %q", h.v.Status.Text)
	}
	if contains(h.captions(), fxA1111.caption) {
		t.Errorf("vanished image still shown: %q", h.captions())
	}
}

// newViewOver builds a second view over an existing store, in its own
// window (the app is the test's).
func newViewOver(t *testing.T, s *gallery.Store) *harness {
	t.Helper()
	h := &harness{store: s, dir: s.Dir(), q: &UIQueue{}}
	h.v = New(Deps{Store: s, Do: h.q.Do})
	h.w = test.NewTempWindow(t, h.v.Content())
	t.Cleanup(h.v.Close)
	h.w.Resize(fyne.NewSize(1100, 750))
	h.idle(t)
	return h
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int]string{0: "0 images", 1: "1 image", 2: "2 images", 999: "999 images", 1234: "1,234 images", 1234567: "1,234,567 images"} {
		if got := countText(n); got != want {
			t.Errorf("countText(%d) = %q, want %q", n, got, want)
		}
	}
	for _, tc := range []struct {
		s    string
		w, h int
		ok   bool
	}{{"832×1216", 832, 1216, true}, {AllSizes, 0, 0, false}, {"0×5", 0, 0, false}, {"a×b", 0, 0, false}} {
		w, h, ok := parseSize(tc.s)
		if w != tc.w || h != tc.h || ok != tc.ok {
			t.Errorf("parseSize(%q) = %d, %d, %v", tc.s, w, h, ok)
		}
	}
	if got := sortedSizes(map[string]bool{"1024×1024": true, "832×1216": true, "1216×832": true, "512×512": true}); !slices.Equal(got, []string{"512×512", "832×1216", "1216×832", "1024×1024"}) {
		t.Errorf("sortedSizes: %q", got)
	}
	for _, tc := range []struct {
		it   gallery.Item
		want string
	}{
		{gallery.Item{ID: "a/b.png", Model: "m", Seed: 0, HasSeed: true}, "m · 0"},
		{gallery.Item{ID: "a/b.png", Prompt: "a   very long prompt about a castle on a hill at night with stars"}, "a very long prompt about a castle on a…"},
		{gallery.Item{ID: "a/b.png"}, "b.png"},
	} {
		if got := captionOf(tc.it); got != tc.want {
			t.Errorf("captionOf(%+v) = %q, want %q", tc.it, got, tc.want)
		}
	}
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"animagine-xl-4.0 · 1234", 23, "animagine-xl-4.0 · 1234"},
		{"illustrious-xl-v1.0 · 4294967295", 22, "illustri… · 4294967295"},
		{"a very long prompt without a seed", 10, "a very lo…"},
		{"x · 12345678901234567890", 10, "x · 12345…"},
	} {
		if got := fitCaption(tc.s, tc.n); got != tc.want || utf8.RuneCountInString(got) > tc.n {
			t.Errorf("fitCaption(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
	res := gallery.ImportResult{Items: make([]gallery.Item, 12), Problems: []gallery.Problem{{ID: "/x/a.txt", Err: "not a PNG file"}, {ID: "/x/b", Err: "permission denied"}}}
	if got, want := importSummary(res), "12 imported, 2 skipped: a.txt: not a PNG file (and 1 more)"; got != want {
		t.Errorf("importSummary = %q, want %q", got, want)
	}
	if got := importSummary(gallery.ImportResult{}); !strings.HasPrefix(got, "Nothing imported") {
		t.Errorf("empty import summary %q", got)
	}
	if u := folderURL("/home/u/Pictures/pixery/2025-01-01/x.png"); u.String() != "file:///home/u/Pictures/pixery/2025-01-01" {
		t.Errorf("folderURL = %s", u)
	}
}
