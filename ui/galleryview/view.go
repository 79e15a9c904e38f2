// Package galleryview is the Gallery tab of the pixery desktop app: a
// virtualised grid of the gallery's thumbnails with full-text search and
// filters, a detail panel with an image's metadata and its actions (reuse
// the prompt or every setting, use as IP-Adapter reference, copy the
// parameters, open the folder, delete with undo), keyboard navigation,
// import by drag and drop, and live updates when other programs change the
// gallery folder.
//
// The grid holds only what is on screen: the result count comes from
// Store.Count, the items from Store.Search a page at a time, the
// thumbnails from Store.Thumbnail decoded by background workers into a
// small LRU cache. Widgets change only on Fyne's goroutine (callbacks, or
// fyne.Do from the view's own goroutines); queries and decoding never run
// there.
package galleryview

import (
	"context"
	"errors"
	"image"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/gallery"
)

const (
	// pageSize is how many items one Store.Search reads for the grid.
	pageSize = 120
	// maxPages bounds the pages of items kept in memory (about 5,000 items).
	maxPages = 40
	// thumbCacheSize bounds the decoded thumbnails kept (a 256-pixel JPEG
	// decodes to about 100 kB).
	thumbCacheSize = 240
	// thumbWorkers decode thumbnails in parallel (the target machines have
	// few cores, and the UI needs one).
	thumbWorkers = 2
	// searchDelay lets the user finish typing before a query runs.
	searchDelay = 150 * time.Millisecond
	// cellImageSize is the side of a grid cell's image area.
	cellImageSize = 150
)

// Filter choices shown in the Selects.
const (
	AllModels      = "All models"
	AllSizes       = "All sizes"
	DateAll        = "All time"
	DateToday      = "Today"
	DateWeek       = "Last 7 days"
	OrderNewest    = "Newest"
	OrderOldest    = "Oldest"
	OrderRelevance = "Relevance"
)

// Deps is what the view needs from the application.
type Deps struct {
	// Window is the window the view is shown in (the clipboard's fallback
	// when no app is running).
	Window fyne.Window
	// Store is the gallery.
	Store *gallery.Store
	// OnReuse receives the request filled from an image for "Reuse prompt"
	// (gallery.ReusePrompt) and "Reuse all settings" (gallery.ReuseAll).
	OnReuse func(r gallery.Request)
	// OnUseAsReference receives the path of an image chosen as IP-Adapter
	// reference.
	OnUseAsReference func(path string)
	// WatchInterval is how often Watch polls the folder
	// (gallery.DefaultWatchInterval when zero).
	WatchInterval time.Duration
	// Do runs a function on the UI goroutine; fyne.Do when nil. Tests set
	// a UIQueue's Do (fyne's test driver runs fyne.Do at once on the
	// calling goroutine, which races with the test's own widget calls).
	Do func(fn func())
}

// Detail is the panel that shows one image: the picture, its metadata and
// the actions on it.
type Detail struct {
	// Panel is the whole panel; it is hidden while no image is open.
	Panel *fyne.Container
	Title *widget.Label
	// Image shows the full image, scaled to fit.
	Image *canvas.Image
	// Metadata lists the prompt, negative prompt, model, seed, steps, CFG,
	// sampler, size, LoRAs and source program.
	Metadata *widget.Label

	ReusePrompt, ReuseAll, UseAsReference *widget.Button
	Copy, OpenFolder, Delete, Close       *widget.Button
}

// View is the gallery tab. Build it with New; its widgets are exported for
// tests.
type View struct {
	Search     *widget.Entry
	Model      *widget.Select
	Size       *widget.Select
	Date       *widget.Select
	Order      *widget.Select
	Seed       *widget.Entry
	CountLabel *widget.Label
	Grid       *widget.GridWrap
	Detail     Detail
	// Status shows what the last action did, and errors.
	Status *widget.Label
	// Undo restores the last deleted image; it is shown after a delete.
	Undo *widget.Button

	// OpenURL opens a folder's file:// URL in the system's file manager;
	// by default fyne.CurrentApp().OpenURL. Tests replace it.
	OpenURL func(u *url.URL) error

	d       Deps
	grid    *keyGrid
	split   *container.Split
	content *fyne.Container
	// placeholder fills a cell while its thumbnail loads.
	placeholder  image.Image
	rowHeight    float32
	captionRunes int

	ctx    context.Context
	cancel context.CancelFunc
	life   sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // every goroutine the view started
	busy   atomic.Int64   // work in progress, for WaitIdle
	// uiMu serialises the view's fyne.Do callbacks: the test driver runs
	// them at once on the calling goroutine, so two workers could otherwise
	// touch widgets together.
	uiMu sync.Mutex

	mu sync.Mutex
	// filter is what the filter widgets say; reloadSeq numbers the reloads
	// so that only the latest one's results are shown.
	filter    filter
	reloadSeq int
	// gen numbers the result sets; q is the query of the one shown, count
	// its size, pages its pages read so far.
	gen     int
	q       gallery.Query
	count   int
	pages   map[int]*page
	loading map[int][]*cell
	clock   int64
	// visFirst..visLast is the index range on screen at the last layout.
	visFirst, visLast int

	thumbs       *lru
	thumbWait    map[string][]*cell
	thumbStack   []thumbJob
	thumbRunning int

	// selIdx is the grid's selection (-1: none); quiet marks selection
	// changes made by the view itself rather than the user.
	selIdx        int
	quiet         bool
	pendingDetail bool
	detail        gallery.Item
	detailOpen    bool
	detailGen     int
	detailWant    *detailJob
	detailRunning bool

	undo      []string
	models    map[string]bool
	sizes     map[string]bool
	facetSeq  int
	debounce  *time.Timer
	seedError bool
}

type page struct {
	items []gallery.Item
	used  int64
}

type filter struct {
	text          string
	model         string
	width, height int
	seed          *int64
	date          string
	order         gallery.Order
}

// query turns the filter into a gallery query; dates are relative to now.
func (f filter) query(now time.Time) gallery.Query {
	q := gallery.Query{Text: f.text, Model: f.model, Width: f.width, Height: f.height, Seed: f.seed, Order: f.order}
	switch f.date {
	case DateToday:
		y, m, d := now.Date()
		q.From = time.Date(y, m, d, 0, 0, 0, 0, now.Location())
	case DateWeek:
		q.From = now.Add(-7 * 24 * time.Hour)
	}
	return q
}

// New builds the gallery view and starts loading the first results.
func New(d Deps) *View {
	v := &View{
		d:         d,
		pages:     map[int]*page{},
		loading:   map[int][]*cell{},
		thumbs:    newLRU(thumbCacheSize),
		thumbWait: map[string][]*cell{},
		selIdx:    -1,
		models:    map[string]bool{},
		sizes:     map[string]bool{},
		filter:    filter{date: DateAll},
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.OpenURL = func(u *url.URL) error {
		a := fyne.CurrentApp()
		if a == nil {
			return errors.New("no application to open it with")
		}
		return a.OpenURL(u)
	}
	ph := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for i := 0; i < len(ph.Pix); i += 4 {
		ph.Pix[i], ph.Pix[i+1], ph.Pix[i+2], ph.Pix[i+3] = 0x80, 0x80, 0x80, 0x40
	}
	v.placeholder = ph

	v.Search = widget.NewEntry()
	v.Search.SetPlaceHolder("Search prompts (long_hair, \"blue eyes\", -sword)")
	v.Search.OnChanged = func(s string) {
		v.mu.Lock()
		v.filter.text = strings.TrimSpace(s)
		v.mu.Unlock()
		v.debounceReload()
	}

	v.Model = widget.NewSelect([]string{AllModels}, nil)
	v.Model.SetSelected(AllModels)
	v.Model.OnChanged = func(s string) {
		v.mu.Lock()
		v.filter.model = ""
		if s != AllModels {
			v.filter.model = s
		}
		v.mu.Unlock()
		v.reloadTop()
	}

	v.Size = widget.NewSelect([]string{AllSizes}, nil)
	v.Size.SetSelected(AllSizes)
	v.Size.OnChanged = func(s string) {
		w, h, _ := parseSize(s)
		v.mu.Lock()
		v.filter.width, v.filter.height = w, h
		v.mu.Unlock()
		v.reloadTop()
	}

	v.Date = widget.NewSelect([]string{DateAll, DateToday, DateWeek}, nil)
	v.Date.SetSelected(DateAll)
	v.Date.OnChanged = func(s string) {
		v.mu.Lock()
		v.filter.date = s
		v.mu.Unlock()
		v.reloadTop()
	}

	v.Order = widget.NewSelect([]string{OrderNewest, OrderOldest, OrderRelevance}, nil)
	v.Order.SetSelected(OrderNewest)
	v.Order.OnChanged = func(s string) {
		o := gallery.Newest
		switch s {
		case OrderOldest:
			o = gallery.Oldest
		case OrderRelevance:
			o = gallery.Relevance
		}
		v.mu.Lock()
		v.filter.order = o
		v.mu.Unlock()
		v.reloadTop()
	}

	v.Seed = widget.NewEntry()
	v.Seed.SetPlaceHolder("Seed")
	v.Seed.OnChanged = func(s string) {
		s = strings.TrimSpace(s)
		var seed *int64
		if s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				v.mu.Lock()
				v.seedError = true
				v.mu.Unlock()
				v.Status.SetText("Seed filter: " + strconv.Quote(s) + " is not a whole number")
				return
			}
			seed = &n
		}
		v.mu.Lock()
		wasError := v.seedError
		v.seedError = false
		v.filter.seed = seed
		v.mu.Unlock()
		if wasError {
			v.Status.SetText("")
		}
		v.debounceReload()
	}

	v.CountLabel = widget.NewLabel("")
	v.Status = widget.NewLabel("")
	v.Status.Truncation = fyne.TextTruncateEllipsis
	v.Undo = widget.NewButtonWithIcon("Undo", theme.ContentUndoIcon(), v.undoDelete)
	v.Undo.Hide()

	v.grid = newKeyGrid(v)
	v.Grid = &v.grid.GridWrap
	// How many characters fit under a cell, from the width of a typical
	// caption's characters.
	sample := "animagine-xl 0123456789"
	w := fyne.MeasureText(sample, theme.Size(theme.SizeNameCaptionText), fyne.TextStyle{}).Width
	v.captionRunes = max(8, int(cellImageSize/(w/float32(len(sample)))))
	probe := newCell(v.placeholder, v.captionRunes)
	v.rowHeight = probe.MinSize().Height + theme.Size(theme.SizeNamePadding)

	v.buildDetail()

	seedBox := container.NewGridWrap(fyne.NewSize(140, v.Seed.MinSize().Height), v.Seed)
	top := container.NewVBox(
		container.NewBorder(nil, nil, nil, v.CountLabel, v.Search),
		container.NewHBox(v.Model, v.Size, v.Date, v.Order, seedBox),
	)
	bottom := container.NewBorder(nil, nil, nil, v.Undo, v.Status)
	v.split = container.NewHSplit(v.grid, v.Detail.Panel)
	v.split.Offset = 0.62
	v.content = container.NewBorder(top, bottom, nil, nil, v.split)

	v.Refresh()
	v.start(v.loadFacets)
	return v
}

// Content returns the view's root object, for the window's tab.
func (v *View) Content() fyne.CanvasObject { return v.content }

// DropTarget returns the object whose area accepts dropped files (the whole
// view); HandleDrop checks a drop's position against it.
func (v *View) DropTarget() fyne.CanvasObject { return v.content }

// Refresh re-runs the current query, for new images that arrived. It
// returns at once; the work runs off the UI goroutine.
func (v *View) Refresh() {
	v.start(func() { v.reload(reloadOpts{selectAt: -1}) })
}

// Added shows images just saved (by a generation job) at once, without
// scanning the folder: they are already indexed, so the query is re-run
// and their models and sizes join the filters. Safe from any goroutine.
func (v *View) Added(items []gallery.Item) {
	if len(items) == 0 {
		return
	}
	v.start(func() {
		v.mu.Lock()
		changed := false
		for _, it := range items {
			changed = v.addFacetLocked(it) || changed
		}
		v.mu.Unlock()
		if changed {
			v.ui(v.applyFacets)
		}
		v.reload(reloadOpts{selectAt: -1})
	})
}

// Watch follows changes that other programs make to the gallery folder
// until ctx (or Close) ends it: it syncs the index once at once, then polls
// with Store.Watch, and re-runs the query when images appeared or
// disappeared. It returns at once.
func (v *View) Watch(ctx context.Context) {
	v.life.Lock()
	if v.closed {
		v.life.Unlock()
		return
	}
	v.wg.Add(1)
	v.life.Unlock()
	go func() {
		defer v.wg.Done()
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(v.ctx, cancel)
		defer stop()
		res, err := v.d.Store.Sync(wctx)
		if wctx.Err() != nil {
			return
		}
		v.onFolderChange(res, err)
		err = v.d.Store.Watch(wctx, v.d.WatchInterval, v.onFolderChange)
		if err != nil && wctx.Err() == nil {
			v.setStatus("Stopped following the gallery folder: " + err.Error())
		}
	}()
}

// onFolderChange is Watch's callback (on the watching goroutine).
func (v *View) onFolderChange(res gallery.SyncResult, err error) {
	if err != nil {
		if v.ctx.Err() == nil {
			v.setStatus("Reading the gallery folder: " + err.Error())
		}
		return
	}
	if !res.Changed() {
		return
	}
	v.busy.Add(1)
	defer v.busy.Add(-1)
	v.reload(reloadOpts{selectAt: -1})
	v.loadFacets()
	if msg := changeSummary(res); msg != "" {
		v.setStatus(msg)
	}
}

// Close stops the view's background work (Watch included) and waits for
// it. The view must not be used afterwards.
func (v *View) Close() {
	v.life.Lock()
	v.closed = true
	v.life.Unlock()
	v.cancel()
	v.mu.Lock()
	if v.debounce != nil && v.debounce.Stop() {
		v.busy.Add(-1)
	}
	v.mu.Unlock()
	v.wg.Wait()
}

// WaitIdle waits until no query, thumbnail or image load of the view is in
// progress or pending, or until timeout; it reports whether the view went
// idle. Meant for tests: in the test driver fyne.Do runs at once, so an
// idle view has applied all its results. With a UIQueue in Deps.Do, use
// UIQueue.Settle instead.
func (v *View) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for v.busy.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// Busy reports whether the view has background work in progress or
// pending. A result is handed to Deps.Do before its work counts as done.
func (v *View) Busy() bool { return v.busy.Load() > 0 }

// start runs fn on a goroutine of its own, counted as work in progress.
func (v *View) start(fn func()) {
	v.life.Lock()
	defer v.life.Unlock()
	if v.closed {
		return
	}
	v.wg.Add(1)
	v.busy.Add(1)
	go func() {
		defer v.wg.Done()
		defer v.busy.Add(-1)
		fn()
	}()
}

// ui runs fn on Fyne's goroutine; call it only from the view's own
// goroutines.
func (v *View) ui(fn func()) {
	if v.ctx.Err() != nil {
		return
	}
	do := v.d.Do
	if do == nil {
		do = fyne.Do
	}
	do(func() {
		v.uiMu.Lock()
		defer v.uiMu.Unlock()
		fn()
	})
}

// setStatus shows msg in the status line; from the view's goroutines.
func (v *View) setStatus(msg string) {
	v.ui(func() { v.Status.SetText(msg) })
}

// debounceReload re-runs the query once the user stops typing.
func (v *View) debounceReload() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.debounce != nil && v.debounce.Stop() {
		v.debounce.Reset(searchDelay)
		return
	}
	v.busy.Add(1)
	v.debounce = time.AfterFunc(searchDelay, func() {
		defer v.busy.Add(-1)
		v.reloadTop()
	})
}

// reloadTop re-runs the query for a changed filter, showing the new
// results from the top.
func (v *View) reloadTop() {
	v.start(func() { v.reload(reloadOpts{selectAt: -1, top: true}) })
}

type reloadOpts struct {
	// selectAt selects that index once the results are in (-1: keep the
	// selected image selected if it is still there).
	selectAt int
	// selectID selects that image if it is among the first results read.
	selectID string
	// top scrolls back to the first result.
	top bool
	// open shows the newly selected image in the detail panel.
	open bool
}

// reload runs the current query: its count, and the pages on screen, so
// the grid switches to the new results without showing empty cells.
func (v *View) reload(o reloadOpts) {
	v.mu.Lock()
	v.reloadSeq++
	seq := v.reloadSeq
	q := v.filter.query(time.Now())
	anchor := o.selectID
	if anchor == "" && v.selIdx >= 0 {
		if it, ok := v.itemLocked(v.selIdx); ok {
			anchor = it.ID
		}
	}
	detailID := ""
	if v.detailOpen {
		detailID = v.detail.ID
	}
	first, last := v.visFirst, v.visLast
	if o.top {
		first, last = 0, last-first
	}
	selIdx := v.selIdx
	v.mu.Unlock()

	n, err := v.d.Store.Count(v.ctx, q)
	if err != nil {
		v.failed("Searching the gallery", err)
		return
	}
	want := map[int]bool{}
	for p := first / pageSize; p <= last/pageSize; p++ {
		want[p] = true
	}
	if selIdx >= 0 {
		want[selIdx/pageSize] = true
	}
	if o.selectAt >= 0 {
		want[o.selectAt/pageSize] = true
	}
	fetched := map[int][]gallery.Item{}
	for p := range want {
		if p*pageSize >= n {
			continue
		}
		pq := q
		pq.Limit, pq.Offset = pageSize, p*pageSize
		items, err := v.d.Store.Search(v.ctx, pq)
		if err != nil {
			v.failed("Searching the gallery", err)
			return
		}
		fetched[p] = items
	}
	find := func(id string) int {
		for p, items := range fetched {
			for i, it := range items {
				if it.ID == id {
					return p*pageSize + i
				}
			}
		}
		return -1
	}
	detailGone := false
	if detailID != "" && find(detailID) < 0 {
		_, err := v.d.Store.Get(v.ctx, detailID)
		detailGone = errors.Is(err, gallery.ErrNotFound)
	}
	newSel := -1
	switch {
	case o.selectAt >= 0 && o.selectAt < n:
		newSel = o.selectAt
	case o.selectAt >= 0 && n > 0:
		newSel = n - 1
	case anchor != "":
		newSel = find(anchor)
	}

	v.mu.Lock()
	if seq != v.reloadSeq || v.ctx.Err() != nil {
		v.mu.Unlock()
		return
	}
	v.gen++
	v.q, v.count = q, n
	v.pages = map[int]*page{}
	for p, items := range fetched {
		v.clock++
		v.pages[p] = &page{items: items, used: v.clock}
	}
	v.loading = map[int][]*cell{}
	v.thumbs.dropFailures()
	v.mu.Unlock()

	v.ui(func() {
		v.CountLabel.SetText(countText(n))
		if o.top {
			v.grid.ScrollToTop()
		}
		v.grid.Refresh()
		v.mu.Lock()
		stale := detailGone && v.detailOpen && v.detail.ID == detailID
		v.mu.Unlock()
		if stale {
			v.closeDetail()
		}
		v.applySelection(newSel, o.selectAt >= 0, o.open)
	})
}

// failed shows a failed background operation, unless the view is closing.
func (v *View) failed(what string, err error) {
	if v.ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	v.setStatus(what + ": " + err.Error())
}

// applySelection moves the grid's selection to i after new results came
// (on the UI goroutine). reselect re-shows the image at i even when the
// index did not change (another image is there now); open opens it in the
// detail panel, which otherwise follows only if it is open.
func (v *View) applySelection(i int, reselect, open bool) {
	v.mu.Lock()
	cur := v.selIdx
	v.quiet = !open
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.quiet = false
		v.mu.Unlock()
	}()
	switch {
	case i < 0:
		if cur >= 0 {
			v.grid.UnselectAll()
			v.mu.Lock()
			v.selIdx = -1
			v.mu.Unlock()
		}
	case i == cur:
		if reselect || open {
			v.onSelected(i)
		}
	default:
		v.grid.Select(i)
	}
}

// itemLocked returns the item at index i of the shown results, if its page
// has been read.
func (v *View) itemLocked(i int) (gallery.Item, bool) {
	if i < 0 || i >= v.count {
		return gallery.Item{}, false
	}
	p, ok := v.pages[i/pageSize]
	if !ok || i%pageSize >= len(p.items) {
		return gallery.Item{}, false
	}
	v.clock++
	p.used = v.clock
	return p.items[i%pageSize], true
}

// wantPageLocked reads page p in the background; c is redrawn when it
// arrives.
func (v *View) wantPageLocked(p int, c *cell) {
	if !addWaiter(v.loading, p, c) {
		return
	}
	gen, q := v.gen, v.q
	v.start(func() { v.loadPage(gen, p, q) })
}

// addWaiter adds c to the cells waiting for k in m, once, and reports
// whether nothing waited for k before: then the caller starts the work.
func addWaiter[K comparable](m map[K][]*cell, k K, c *cell) (first bool) {
	w, ok := m[k]
	if !ok {
		m[k] = []*cell{c}
		return true
	}
	if !slices.Contains(w, c) {
		m[k] = append(w, c)
	}
	return false
}

func (v *View) loadPage(gen, p int, q gallery.Query) {
	q.Limit, q.Offset = pageSize, p*pageSize
	items, err := v.d.Store.Search(v.ctx, q)
	v.mu.Lock()
	if gen != v.gen {
		v.mu.Unlock()
		return
	}
	waiting := v.loading[p]
	delete(v.loading, p)
	if err != nil {
		v.mu.Unlock()
		v.failed("Reading the gallery", err)
		return
	}
	v.clock++
	v.pages[p] = &page{items: items, used: v.clock}
	for len(v.pages) > maxPages {
		oldest, used := -1, int64(0)
		for k, pg := range v.pages {
			if oldest < 0 || pg.used < used {
				oldest, used = k, pg.used
			}
		}
		delete(v.pages, oldest)
	}
	detail := v.pendingDetail && v.selIdx/pageSize == p
	v.mu.Unlock()
	v.ui(func() {
		for _, c := range waiting {
			v.mu.Lock()
			i, ok := c.index, c.index/pageSize == p && c.key == "" && gen == v.gen
			v.mu.Unlock()
			if ok {
				v.updateItem(i, c)
			}
		}
		if detail {
			v.mu.Lock()
			it, ok := v.itemLocked(v.selIdx)
			ok = ok && v.pendingDetail
			v.pendingDetail = false
			v.mu.Unlock()
			if ok {
				v.showDetail(it)
			}
		}
	})
}

// onSelected is the grid's OnSelected: a tap (or Grid.Select) opens the
// image in the detail panel; a selection moved by the keyboard or by the
// view updates the panel only when it is open.
func (v *View) onSelected(i int) {
	v.mu.Lock()
	v.selIdx = i
	it, ok := v.itemLocked(i)
	open := !v.quiet || v.detailOpen
	v.pendingDetail = open && !ok
	v.mu.Unlock()
	if open && ok {
		v.showDetail(it)
	}
}

// selected returns the image that actions apply to: the one in the detail
// panel, else the grid's selection.
func (v *View) selected() (gallery.Item, int, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.detailOpen {
		return v.detail, v.selIdx, true
	}
	it, ok := v.itemLocked(v.selIdx)
	return it, v.selIdx, ok
}

// selectKey moves the selection to i from the keyboard.
func (v *View) selectKey(i int) {
	v.mu.Lock()
	v.quiet = true
	cur := v.selIdx
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.quiet = false
		v.mu.Unlock()
	}()
	if i == cur {
		return
	}
	v.grid.Select(i)
}

// HandleKey handles a key typed while the gallery is shown: arrows, Home
// and End move the selection, Enter (Return) opens the selected image,
// Delete deletes it, Escape closes the detail panel. It reports whether the
// key was one of these. The grid calls it when it has the focus; the window
// routes keys to it (Canvas.SetOnTypedKey) when nothing has.
func (v *View) HandleKey(ev *fyne.KeyEvent) bool {
	return v.handleKey(ev, false)
}

// handleKey does HandleKey; fromGrid says the grid has the focus, whose
// own keyboard cursor starts at the first image, so an arrow with nothing
// selected moves from there as the grid does.
func (v *View) handleKey(ev *fyne.KeyEvent, fromGrid bool) bool {
	v.mu.Lock()
	n, cur := v.count, v.selIdx
	v.mu.Unlock()
	cols := v.grid.ColumnCount()
	move := func(next int) {
		if n == 0 {
			return
		}
		if cur < 0 && !fromGrid {
			next = 0
		}
		v.selectKey(min(max(next, 0), n-1))
	}
	base := max(cur, 0)
	switch ev.Name {
	case fyne.KeyLeft:
		move(base - 1)
	case fyne.KeyRight:
		move(base + 1)
	case fyne.KeyUp:
		move(base - cols)
	case fyne.KeyDown:
		move(base + cols)
	case fyne.KeyHome:
		move(0)
	case fyne.KeyEnd:
		move(n - 1)
	case fyne.KeyReturn, fyne.KeyEnter:
		if cur >= 0 {
			v.mu.Lock()
			it, ok := v.itemLocked(cur)
			v.pendingDetail = !ok
			v.mu.Unlock()
			if ok {
				v.showDetail(it)
			}
		}
	case fyne.KeyDelete:
		v.deleteSelected()
	case fyne.KeyEscape:
		v.closeDetail()
	default:
		return false
	}
	return true
}

// keyGrid is the GridWrap with the gallery's keys: when it has the focus,
// arrows move the selection (not only the grid's focus mark), Enter opens,
// Delete deletes, Escape closes the detail.
type keyGrid struct {
	widget.GridWrap
	v *View
}

func newKeyGrid(v *View) *keyGrid {
	g := &keyGrid{v: v}
	g.Length = func() int {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.count
	}
	g.CreateItem = func() fyne.CanvasObject { return newCell(v.placeholder, v.captionRunes) }
	g.UpdateItem = v.updateItem
	g.OnSelected = v.onSelected
	g.ExtendBaseWidget(g)
	return g
}

// TypedKey handles the gallery's keys; the arrows also go to the GridWrap
// so that its focus mark follows the selection.
func (g *keyGrid) TypedKey(ev *fyne.KeyEvent) {
	switch ev.Name {
	case fyne.KeyLeft, fyne.KeyRight, fyne.KeyUp, fyne.KeyDown:
		g.GridWrap.TypedKey(ev)
	}
	if !g.v.handleKey(ev, true) {
		g.GridWrap.TypedKey(ev)
	}
}

// cell is one grid item: a thumbnail over a caption. The caption is a
// canvas.Text cut to fit beforehand: a Label that truncates itself shapes
// the text again and again, which made scrolling several times slower.
type cell struct {
	widget.BaseWidget
	img     *canvas.Image
	caption *canvas.Text
	// full is the whole caption; maxRunes how much of it fits.
	full     string
	maxRunes int
	// index and key (the thumbnail cache key of the image shown, "" while
	// its page is read) are guarded by View.mu.
	index int
	key   string
	// shown and shownRes are what show last put in img (canvas.Image
	// replaces its Image with the rasterised Resource).
	shown    image.Image
	shownRes fyne.Resource
}

func newCell(placeholder image.Image, maxRunes int) *cell {
	c := &cell{img: canvas.NewImageFromImage(placeholder), caption: canvas.NewText("", theme.Color(theme.ColorNameForeground)),
		index: -1, shown: placeholder, maxRunes: maxRunes}
	c.img.FillMode = canvas.ImageFillContain
	c.img.ScaleMode = canvas.ImageScaleFastest
	c.img.SetMinSize(fyne.NewSquareSize(cellImageSize))
	c.caption.Alignment = fyne.TextAlignCenter
	c.caption.TextSize = theme.Size(theme.SizeNameCaptionText)
	c.ExtendBaseWidget(c)
	return c
}

func (c *cell) CreateRenderer() fyne.WidgetRenderer { return &cellRenderer{c} }

type cellRenderer struct{ c *cell }

func (r *cellRenderer) Layout(size fyne.Size) {
	pad := r.c.Theme().Size(theme.SizeNameInnerPadding) / 2
	th := r.c.caption.MinSize().Height
	r.c.img.Move(fyne.NewPos(0, 0))
	r.c.img.Resize(fyne.NewSize(size.Width, size.Height-th-pad))
	r.c.caption.Move(fyne.NewPos(0, size.Height-th))
	r.c.caption.Resize(fyne.NewSize(size.Width, th))
}

func (r *cellRenderer) MinSize() fyne.Size {
	pad := r.c.Theme().Size(theme.SizeNameInnerPadding) / 2
	return fyne.NewSize(cellImageSize, cellImageSize+pad+r.c.caption.MinSize().Height)
}

func (r *cellRenderer) Refresh() {
	th := r.c.Theme()
	r.c.caption.Color = th.Color(theme.ColorNameForeground, fyne.CurrentApp().Settings().ThemeVariant())
	r.c.caption.Refresh()
	r.c.img.Refresh()
}

func (r *cellRenderer) Objects() []fyne.CanvasObject {
	return []fyne.CanvasObject{r.c.img, r.c.caption}
}

func (r *cellRenderer) Destroy() {}

// show puts a caption and an image (or the placeholder, or the broken-image
// icon) in the cell, refreshing only what changed.
func (c *cell) show(caption string, img image.Image, broken bool, placeholder image.Image) {
	if c.full != caption {
		c.full = caption
		c.caption.Text = fitCaption(caption, c.maxRunes)
		c.caption.Refresh()
	}
	var res fyne.Resource
	switch {
	case img != nil:
	case broken:
		res = theme.BrokenImageIcon()
	default:
		img = placeholder
	}
	if c.shown != img || c.shownRes != res {
		c.shown, c.shownRes = img, res
		c.img.Image, c.img.Resource = img, res
		c.img.Refresh()
	}
}

// updateItem is the grid's UpdateItem: it only looks things up; what is
// missing is read in the background and shown when it arrives.
func (v *View) updateItem(i int, o fyne.CanvasObject) {
	c, ok := o.(*cell)
	if !ok {
		return
	}
	cols := v.grid.ColumnCount()
	top := int(v.grid.GetScrollOffset()/v.rowHeight) * cols
	rows := int(v.grid.Size().Height/v.rowHeight) + 2

	v.mu.Lock()
	v.visFirst, v.visLast = top, top+rows*cols-1
	c.index = i
	it, found := v.itemLocked(i)
	var thumb image.Image
	broken, wantThumb, wantPage := false, false, false
	caption := ""
	if found {
		caption = captionOf(it)
		c.key = thumbKey(it)
		if e, hit := v.thumbs.get(c.key); hit {
			thumb, broken = e.img, e.err != nil
		} else {
			wantThumb = true
		}
	} else {
		c.key = ""
		if _, read := v.pages[i/pageSize]; !read && i < v.count {
			caption = "…"
			wantPage = true
		}
	}
	key := c.key
	v.mu.Unlock()
	c.show(caption, thumb, broken, v.placeholder)
	if !wantThumb && !wantPage {
		return
	}
	// Ask for what is missing after showing the placeholder, so that the
	// answer (applied at once in the test driver) is not overwritten.
	v.mu.Lock()
	if c.index == i && c.key == key {
		if wantThumb {
			v.wantThumbLocked(it.ID, key, c)
		} else {
			v.wantPageLocked(i/pageSize, c)
		}
	}
	v.mu.Unlock()
}

func (v *View) buildDetail() {
	d := &v.Detail
	d.Title = widget.NewLabel("")
	d.Title.TextStyle.Bold = true
	d.Title.Truncation = fyne.TextTruncateEllipsis
	d.Image = canvas.NewImageFromImage(nil)
	d.Image.FillMode = canvas.ImageFillContain
	d.Image.SetMinSize(fyne.NewSquareSize(200))
	d.Metadata = widget.NewLabel("")
	d.Metadata.Wrapping = fyne.TextWrapWord
	d.Metadata.Selectable = true

	d.ReusePrompt = widget.NewButton("Reuse prompt", func() { v.reuse(gallery.ReusePrompt) })
	d.ReuseAll = widget.NewButton("Reuse all settings", func() { v.reuse(gallery.ReuseAll) })
	d.UseAsReference = widget.NewButton("Use as reference", v.useAsReference)
	d.Copy = widget.NewButtonWithIcon("Copy parameters", theme.ContentCopyIcon(), v.copyParameters)
	d.OpenFolder = widget.NewButtonWithIcon("Open folder", theme.FolderOpenIcon(), v.openFolder)
	d.Delete = widget.NewButtonWithIcon("Delete", theme.DeleteIcon(), v.deleteSelected)
	d.Delete.Importance = widget.DangerImportance
	d.Close = widget.NewButtonWithIcon("", theme.CancelIcon(), v.closeDetail)

	header := container.NewBorder(nil, nil, nil, d.Close, d.Title)
	actions := container.NewGridWithColumns(2, d.ReusePrompt, d.ReuseAll, d.UseAsReference, d.Copy, d.OpenFolder, d.Delete)
	body := container.NewVSplit(d.Image, container.NewVScroll(d.Metadata))
	body.Offset = 0.55
	d.Panel = container.NewBorder(header, actions, nil, nil, body)
	d.Panel.Hide()
}

// showDetail opens the detail panel on it (UI goroutine); the full image
// is decoded in the background.
func (v *View) showDetail(it gallery.Item) {
	v.mu.Lock()
	same := v.detailOpen && v.detail.ID == it.ID && v.detail.ModTime.Equal(it.ModTime)
	v.detail, v.detailOpen = it, true
	v.mu.Unlock()
	if same {
		return
	}
	d := &v.Detail
	d.Title.SetText(titleOf(it))
	d.Metadata.SetText(metadataText(it))
	d.Image.Image, d.Image.Resource = v.placeholder, nil
	d.Image.Refresh()
	if !d.Panel.Visible() {
		d.Panel.Show()
		v.split.Refresh()
	}
	// The decoder starts last: in the test driver its result is applied on
	// its own goroutine, which must not race with the lines above.
	v.mu.Lock()
	v.detailGen++
	v.detailWant = &detailJob{gen: v.detailGen, path: it.Path}
	if !v.detailRunning {
		v.detailRunning = true
		v.start(v.detailWorker)
	}
	v.mu.Unlock()
}

// closeDetail hides the detail panel (UI goroutine).
func (v *View) closeDetail() {
	v.mu.Lock()
	v.detailOpen = false
	v.detailGen++
	v.mu.Unlock()
	if v.Detail.Panel.Visible() {
		v.Detail.Panel.Hide()
		v.split.Refresh()
	}
	v.Detail.Image.Image, v.Detail.Image.Resource = nil, nil
}

type detailJob struct {
	gen  int
	path string
}

// detailWorker decodes the image the detail panel wants; when the user
// moves on before it finishes, only the latest wish is decoded next.
func (v *View) detailWorker() {
	for {
		v.mu.Lock()
		j := v.detailWant
		v.detailWant = nil
		if j == nil {
			v.detailRunning = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		img, err := decodeFull(j.path)
		v.ui(func() {
			v.mu.Lock()
			current := v.detailOpen && v.detailGen == j.gen
			v.mu.Unlock()
			if !current {
				return
			}
			if err != nil {
				v.Detail.Image.Image, v.Detail.Image.Resource = nil, theme.BrokenImageIcon()
				v.Status.SetText(err.Error())
			} else {
				v.Detail.Image.Image, v.Detail.Image.Resource = img, nil
			}
			v.Detail.Image.Refresh()
		})
	}
}

func (v *View) current() (gallery.Item, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.detail, v.detailOpen
}

func (v *View) reuse(mode gallery.ReuseMode) {
	it, ok := v.current()
	if !ok || v.d.OnReuse == nil {
		return
	}
	v.d.OnReuse(gallery.Reuse(it, mode))
	if mode == gallery.ReuseAll {
		v.Status.SetText("Settings of " + it.ID + " sent to the generator")
	} else {
		v.Status.SetText("Prompt of " + it.ID + " sent to the generator")
	}
}

func (v *View) useAsReference() {
	it, ok := v.current()
	if !ok || v.d.OnUseAsReference == nil {
		return
	}
	v.d.OnUseAsReference(it.Path)
	v.Status.SetText(it.ID + " set as IP-Adapter reference")
}

// copyParameters puts the image's parameters on the clipboard: its own
// A1111 "parameters" text when the file has one (it may hold fields the
// index does not keep), otherwise text made from the metadata.
func (v *View) copyParameters() {
	it, ok := v.current()
	if !ok {
		return
	}
	v.start(func() {
		text, err := parametersOf(it)
		v.ui(func() {
			clip := v.clipboard()
			if clip == nil {
				v.Status.SetText("Copy: no clipboard")
				return
			}
			clip.SetContent(text)
			if err != nil {
				v.Status.SetText("Copied the parameters of " + it.ID + " from the index (" + err.Error() + ")")
				return
			}
			v.Status.SetText("Copied the parameters of " + it.ID)
		})
	})
}

func (v *View) clipboard() fyne.Clipboard {
	if a := fyne.CurrentApp(); a != nil {
		return a.Clipboard()
	}
	if v.d.Window != nil {
		return v.d.Window.Clipboard() //nolint:staticcheck // fallback without an app
	}
	return nil
}

func (v *View) openFolder() {
	it, ok := v.current()
	if !ok || v.OpenURL == nil {
		return
	}
	u := folderURL(it.Path)
	if err := v.OpenURL(u); err != nil {
		v.Status.SetText("Open folder " + u.String() + ": " + err.Error())
	}
}

// deleteSelected moves the open (or selected) image to the gallery's trash;
// Undo brings it back. The next image takes its place in the selection.
func (v *View) deleteSelected() {
	it, idx, ok := v.selected()
	if !ok {
		return
	}
	v.start(func() {
		if err := v.d.Store.Delete(v.ctx, it.ID); err != nil {
			v.failed("Delete "+it.ID, err)
			// The index may have changed all the same (an image that
			// another program removed is dropped from it).
			v.reload(reloadOpts{selectAt: -1})
			return
		}
		v.mu.Lock()
		v.undo = append(v.undo, it.ID)
		open := v.detailOpen && v.detail.ID == it.ID
		v.mu.Unlock()
		v.ui(func() {
			v.Status.SetText("Deleted " + it.ID + " (moved to the trash)")
			v.Undo.Show()
		})
		// The next image takes the deleted one's place, in the detail panel
		// too when the deleted one was open there.
		v.reload(reloadOpts{selectAt: idx, open: open})
	})
}

// undoDelete restores the last deleted image and opens it.
func (v *View) undoDelete() {
	v.mu.Lock()
	if len(v.undo) == 0 {
		v.mu.Unlock()
		v.Undo.Hide()
		return
	}
	id := v.undo[len(v.undo)-1]
	v.undo = v.undo[:len(v.undo)-1]
	left := len(v.undo)
	v.mu.Unlock()
	if left == 0 {
		v.Undo.Hide()
	}
	v.start(func() {
		it, err := v.d.Store.Restore(v.ctx, id)
		if err != nil {
			// Keep it for another try.
			v.mu.Lock()
			v.undo = append(v.undo, id)
			v.mu.Unlock()
			v.ui(v.Undo.Show)
			v.failed("Undo delete of "+id, err)
			return
		}
		v.ui(func() {
			v.Status.SetText("Restored " + it.ID)
			v.showDetail(it)
		})
		v.reload(reloadOpts{selectAt: -1, selectID: it.ID})
	})
}

// HandleDrop imports dropped PNG files and folders when pos (in canvas
// coordinates, as Window.SetOnDropped gives it) is over the view. It
// reports whether the drop was the gallery's; the import runs in the
// background and its summary goes to the status line.
func (v *View) HandleDrop(pos fyne.Position, uris []fyne.URI) bool {
	if len(uris) == 0 || !v.over(pos) {
		return false
	}
	var paths, notFiles []string
	for _, u := range uris {
		if u == nil {
			continue
		}
		if u.Scheme() == "file" {
			paths = append(paths, u.Path())
		} else {
			notFiles = append(notFiles, u.String())
		}
	}
	v.Status.SetText("Importing…")
	v.start(func() {
		var res gallery.ImportResult
		if len(paths) > 0 {
			var err error
			res, err = v.d.Store.Import(v.ctx, paths...)
			if err != nil {
				v.failed("Import", err)
				return
			}
		}
		for _, s := range notFiles {
			res.Problems = append(res.Problems, gallery.Problem{ID: s, Err: "not a local file"})
		}
		v.setStatus(importSummary(res))
		if len(res.Items) > 0 {
			v.mu.Lock()
			for _, it := range res.Items {
				v.addFacetLocked(it)
			}
			v.mu.Unlock()
			v.ui(v.applyFacets)
			v.reload(reloadOpts{selectAt: -1})
		}
	})
	return true
}

// over reports whether pos lies on the view while it is shown.
func (v *View) over(pos fyne.Position) bool {
	obj := v.DropTarget()
	a := fyne.CurrentApp()
	if !obj.Visible() || a == nil {
		return false
	}
	drv := a.Driver()
	if drv.CanvasForObject(obj) == nil {
		return false
	}
	p, s := drv.AbsolutePositionForObject(obj), obj.Size()
	return pos.X >= p.X && pos.Y >= p.Y && pos.X < p.X+s.Width && pos.Y < p.Y+s.Height
}

// loadFacets lists the models and sizes present, for the filters.
func (v *View) loadFacets() {
	v.mu.Lock()
	v.facetSeq++
	seq := v.facetSeq
	v.mu.Unlock()
	f, err := v.d.Store.Facets(v.ctx)
	if err != nil {
		v.failed("Listing the gallery's models", err)
		return
	}
	models, sizes := map[string]bool{}, map[string]bool{}
	for _, m := range f.Models {
		models[m] = true
	}
	for _, wh := range f.Sizes {
		sizes[sizeText(wh[0], wh[1])] = true
	}
	v.mu.Lock()
	if seq != v.facetSeq {
		v.mu.Unlock()
		return
	}
	v.models, v.sizes = models, sizes
	v.mu.Unlock()
	v.ui(v.applyFacets)
}

// addFacetLocked adds an image's model and size to the filters' choices and
// reports whether that added any.
func (v *View) addFacetLocked(it gallery.Item) bool {
	changed := false
	if it.Model != "" && !v.models[it.Model] {
		v.models[it.Model] = true
		changed = true
	}
	if it.Width > 0 && it.Height > 0 {
		if s := sizeText(it.Width, it.Height); !v.sizes[s] {
			v.sizes[s] = true
			changed = true
		}
	}
	return changed
}

// applyFacets puts the known models and sizes into the filter Selects (UI
// goroutine), keeping the current choices.
func (v *View) applyFacets() {
	v.mu.Lock()
	models := sortedModels(v.models)
	sizes := sortedSizes(v.sizes)
	v.mu.Unlock()
	keep := func(opts []string, cur string) []string {
		for _, o := range opts {
			if o == cur {
				return opts
			}
		}
		return append(opts, cur)
	}
	v.Model.SetOptions(keep(append([]string{AllModels}, models...), v.Model.Selected))
	v.Size.SetOptions(keep(append([]string{AllSizes}, sizes...), v.Size.Selected))
}
