package generate

import (
	"fmt"
	"image/color"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/pixery/pixery/app/tags"
)

// maxShown bounds the suggestions listed at once.
const maxShown = 10

// PromptEntry is a multi-line, word-wrapping entry for prompts. Ctrl+Enter
// (Cmd+Enter on macOS) calls OnGenerate; while the suggestion list is open,
// Up/Down move in it, Tab (or Enter on a highlighted row) inserts the
// suggestion and Escape closes it.
type PromptEntry struct {
	widget.Entry
	// OnGenerate is called on Ctrl+Enter.
	OnGenerate func()

	// keys sees key presses first and returns true for those it used;
	// tab says whether Tab is wanted (for a suggestion) rather than moving
	// the focus; focus reports focus changes.
	keys    func(*fyne.KeyEvent) bool
	tab     func() bool
	focus   func(bool)
	focused bool
}

// NewPromptEntry returns an empty prompt entry.
func NewPromptEntry() *PromptEntry {
	e := &PromptEntry{}
	e.MultiLine = true
	e.Wrapping = fyne.TextWrapWord
	e.ExtendBaseWidget(e)
	e.SetMinRowsVisible(4)
	return e
}

// TypedShortcut runs OnGenerate for Ctrl+Enter and passes other shortcuts
// (copy, paste, undo…) to the Entry.
func (e *PromptEntry) TypedShortcut(s fyne.Shortcut) {
	if cs, ok := s.(*desktop.CustomShortcut); ok && isGenerateShortcut(cs) {
		if e.OnGenerate != nil {
			e.OnGenerate()
		}
		return
	}
	e.Entry.TypedShortcut(s)
}

func isGenerateShortcut(cs *desktop.CustomShortcut) bool {
	if cs.KeyName != fyne.KeyReturn && cs.KeyName != fyne.KeyEnter {
		return false
	}
	return cs.Modifier == fyne.KeyModifierShortcutDefault || cs.Modifier == fyne.KeyModifierControl
}

// TypedKey lets the suggestion list use navigation keys first.
func (e *PromptEntry) TypedKey(k *fyne.KeyEvent) {
	if e.keys != nil && e.keys(k) {
		return
	}
	e.Entry.TypedKey(k)
}

// AcceptsTab is true while a suggestion waits to be inserted with Tab;
// otherwise Tab moves the focus, as prompts want no tab characters.
func (e *PromptEntry) AcceptsTab() bool { return e.tab != nil && e.tab() }

// FocusGained notes the focus, for inserting quality tags at the cursor.
func (e *PromptEntry) FocusGained() {
	e.focused = true
	e.Entry.FocusGained()
	if e.focus != nil {
		e.focus(true)
	}
}

// FocusLost closes the suggestion list.
func (e *PromptEntry) FocusLost() {
	e.focused = false
	e.Entry.FocusLost()
	if e.focus != nil {
		e.focus(false)
	}
}

// SetCursorOffset puts the cursor off runes into the text. The Entry keeps
// its cursor as a visual row and column, which word wrapping makes differ
// from lines; the rows' starts are found through CursorTextOffset.
func (e *PromptEntry) SetCursorOffset(off int) {
	n := len([]rune(e.Text))
	off = max(0, min(off, n))
	row := 0
	for r := 1; r <= n; r++ {
		e.CursorRow, e.CursorColumn = r, 0
		start := e.CursorTextOffset()
		// Past the last row CursorTextOffset gives the column (0).
		if start == 0 || start > off {
			break
		}
		row = r
	}
	e.CursorRow, e.CursorColumn = row, 0
	e.CursorColumn = off - e.CursorTextOffset()
	// SetText with the same text syncs the Entry's selection cursor with
	// the new position without changing anything else.
	e.SetText(e.Text)
	if e.OnCursorChanged != nil {
		e.OnCursorChanged()
	}
}

// completion is the state of the suggestion list.
type completion struct {
	completer *tags.Completer
	// active is the entry the list belongs to; span the fragment it
	// replaces; items the suggestions shown.
	active *PromptEntry
	span   tags.Span
	items  []tags.Suggestion
	// inserting is set while a suggestion is put in, so the entry's
	// OnChanged does not complete again.
	inserting bool
	scroll    *container.Scroll
	float     fyne.CanvasObject
}

func (v *View) buildPrompt() {
	if v.d.Tags != nil {
		v.comp.completer = ownCompleter(v.d.Tags, v.d.Tags.LoRAs)
	}
	v.Suggestions = newSuggestions(v.pickSuggestion)
	v.Prompt = NewPromptEntry()
	v.Prompt.SetPlaceHolder("1girl, long hair, smile, …  (Ctrl+Enter generates)")
	v.Negative = NewPromptEntry()
	v.Negative.SetMinRowsVisible(2)
	v.Negative.SetPlaceHolder("what to keep out of the image")
	for _, e := range []*PromptEntry{v.Prompt, v.Negative} {
		e.OnGenerate = v.Generate
		e.keys = func(k *fyne.KeyEvent) bool { return v.suggestionKey(e, k) }
		e.tab = func() bool { return v.comp.active == e && v.Suggestions.Visible() }
		e.focus = func(in bool) {
			// A click on a suggestion may take the focus first (drivers
			// differ); the list stays for the click to land.
			if !in && v.comp.active == e && !v.Suggestions.pointerInside() {
				v.hideSuggestions()
			}
		}
	}
	v.Prompt.OnChanged = func(string) {
		v.updateChips()
		v.complete(v.Prompt)
	}
	v.Negative.OnChanged = func(string) {
		v.updateHints()
		v.complete(v.Negative)
	}
}

// complete updates the suggestions for the fragment at e's cursor. It runs
// on every keystroke, so it does little: one lookup (microseconds) and new
// texts for at most maxShown rows that already exist.
func (v *View) complete(e *PromptEntry) {
	if v.comp.inserting {
		return
	}
	c := v.comp.completer
	if c == nil {
		return
	}
	span := tags.CurrentWord(e.Text, e.CursorTextOffset())
	frag := strings.TrimSpace(span.Text)
	if len([]rune(frag)) < 2 && !strings.HasPrefix(frag, "<") {
		v.hideSuggestions()
		return
	}
	items := dedupe(c.Complete(span.Text))
	if len(items) == 0 {
		v.hideSuggestions()
		return
	}
	v.comp.active, v.comp.span = e, span
	v.comp.items = items[:min(len(items), maxShown)]
	v.Suggestions.set(v.comp.items)
	v.placeSuggestions()
}

// ownCompleter copies the shared completer (whose fields must not change
// while others use it) with the engine's LoRA names and a limit just above
// what the list shows, leaving room for duplicates.
func ownCompleter(shared *tags.Completer, loras []string) *tags.Completer {
	c := *shared
	c.LoRAs = loras
	c.Limit = maxShown + 4
	return &c
}

// dedupe drops suggestions that insert the same text as a better ranked
// one: a tag in both danbooru and e621 ("long hair") is listed once.
func dedupe(items []tags.Suggestion) []tags.Suggestion {
	out := items[:0:0]
	for i, s := range items {
		dup := false
		for _, o := range items[:i] {
			if o.Insert == s.Insert {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// hideSuggestions closes the list.
func (v *View) hideSuggestions() {
	v.comp.active = nil
	v.comp.items = nil
	for _, r := range v.Suggestions.Rows {
		r.hovered = false // hidden rows get no MouseOut
	}
	if v.Suggestions.Visible() {
		v.Suggestions.Hide()
	}
}

// suggestionAnchor places the list under the active entry, as wide as it.
func (v *View) suggestionAnchor(c fyne.CanvasObject) (fyne.Position, float32) {
	e := v.comp.active
	if e == nil {
		return fyne.Position{}, 0
	}
	app := fyne.CurrentApp()
	if app == nil {
		return fyne.Position{}, 0
	}
	d := app.Driver()
	p := d.AbsolutePositionForObject(e).Subtract(d.AbsolutePositionForObject(c))
	return p.AddXY(0, e.Size().Height), e.Size().Width
}

// placeSuggestions shows the list at its place without laying out the
// rest of the form again.
func (v *View) placeSuggestions() {
	s := v.Suggestions
	if !s.Visible() {
		s.Show()
	}
	if v.comp.float == nil {
		return
	}
	pos, w := v.suggestionAnchor(v.comp.float)
	area := v.comp.float.Size()
	ms := s.MinSize()
	w = max(min(w, area.Width-pos.X), ms.Width)
	h := ms.Height
	if room := area.Height - pos.Y; room < h && pos.Y-v.comp.active.Size().Height > room {
		// Not enough room below: open above the entry.
		pos.Y -= v.comp.active.Size().Height + h
	}
	s.Move(pos)
	s.Resize(fyne.NewSize(w, h))
}

// suggestionKey handles the keys the open list uses.
func (v *View) suggestionKey(e *PromptEntry, k *fyne.KeyEvent) bool {
	open := v.comp.active == e && v.Suggestions.Visible() && len(v.comp.items) > 0
	if !open {
		return false
	}
	s := v.Suggestions
	n := len(v.comp.items)
	switch k.Name {
	case fyne.KeyDown:
		s.highlight((s.selected + 1) % n)
		return true
	case fyne.KeyUp:
		if s.selected <= 0 {
			s.highlight(n - 1)
		} else {
			s.highlight(s.selected - 1)
		}
		return true
	case fyne.KeyTab:
		v.pickSuggestion(max(s.selected, 0))
		return true
	case fyne.KeyReturn, fyne.KeyEnter:
		if s.selected >= 0 {
			v.pickSuggestion(s.selected)
			return true
		}
		v.hideSuggestions()
		return false
	case fyne.KeyEscape:
		v.hideSuggestions()
		return true
	case fyne.KeyLeft, fyne.KeyRight, fyne.KeyHome, fyne.KeyEnd, fyne.KeyPageUp, fyne.KeyPageDown:
		v.hideSuggestions()
		return false
	}
	return false
}

// pickSuggestion inserts suggestion i in place of the fragment and puts
// the cursor after it.
func (v *View) pickSuggestion(i int) {
	e := v.comp.active
	if e == nil || i < 0 || i >= len(v.comp.items) {
		return
	}
	text, cursor := tags.Replace(e.Text, v.comp.span, v.comp.items[i].Insert)
	v.comp.inserting = true
	e.SetText(text)
	e.SetCursorOffset(cursor)
	v.comp.inserting = false
	v.hideSuggestions()
	if e == v.Prompt {
		v.updateChips()
	}
	if v.d.Window != nil {
		v.d.Window.Canvas().Focus(e)
	}
}

// Suggestions is the list of completions under the prompt being typed in.
// Its rows are made once and reused, so a keystroke only changes texts.
type Suggestions struct {
	widget.BaseWidget
	// Rows are the list's rows; the first len(items) are in use.
	Rows     []*SuggestionRow
	selected int
	shown    int
	root     *fyne.Container
}

func newSuggestions(pick func(int)) *Suggestions {
	s := &Suggestions{selected: -1}
	objs := make([]fyne.CanvasObject, maxShown)
	for i := range maxShown {
		r := newSuggestionRow(func() { pick(i) })
		s.Rows = append(s.Rows, r)
		objs[i] = r
	}
	bg := canvas.NewRectangle(theme.Color(theme.ColorNameOverlayBackground))
	bg.StrokeColor = theme.Color(theme.ColorNameInputBorder)
	bg.StrokeWidth = 1
	bg.CornerRadius = theme.InputRadiusSize()
	s.root = container.NewStack(bg, container.NewVBox(objs...))
	s.ExtendBaseWidget(s)
	s.Hide()
	return s
}

// CreateRenderer draws the rows over a background.
func (s *Suggestions) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(s.root) }

// Items returns the texts the rows show, for tests and accessibility.
func (s *Suggestions) Items() []string {
	out := make([]string, s.shown)
	for i := range s.shown {
		out[i] = s.Rows[i].Name.Text
	}
	return out
}

// pointerInside reports whether the mouse is over a row.
func (s *Suggestions) pointerInside() bool {
	for _, r := range s.Rows {
		if r.hovered {
			return true
		}
	}
	return false
}

// Selected is the highlighted row, -1 for none.
func (s *Suggestions) Selected() int { return s.selected }

func (s *Suggestions) set(items []tags.Suggestion) {
	dark := isDark()
	for i, r := range s.Rows {
		if i >= len(items) {
			r.hovered = false
		}
		if i < len(items) {
			r.set(items[i], dark)
			if !r.Visible() {
				r.Show()
			}
		} else if r.Visible() {
			r.Hide()
		}
	}
	s.shown = len(items)
	s.highlight(-1)
}

func (s *Suggestions) highlight(i int) {
	if s.selected >= 0 && s.selected < len(s.Rows) {
		s.Rows[s.selected].setSelected(false)
	}
	s.selected = i
	if i >= 0 && i < len(s.Rows) {
		s.Rows[i].setSelected(true)
	}
}

func isDark() bool {
	app := fyne.CurrentApp()
	return app == nil || app.Settings().ThemeVariant() == theme.VariantDark
}

// SuggestionRow is one completion: the tag (in its category's colour) and
// its category, post count and the alias that matched.
type SuggestionRow struct {
	widget.BaseWidget
	Name, Meta *canvas.Text
	bg         *canvas.Rectangle
	onTap      func()
	selected   bool
	hovered    bool
}

func newSuggestionRow(onTap func()) *SuggestionRow {
	r := &SuggestionRow{
		Name:  canvas.NewText("", theme.Color(theme.ColorNameForeground)),
		Meta:  canvas.NewText("", theme.Color(theme.ColorNamePlaceHolder)),
		bg:    canvas.NewRectangle(color.Transparent),
		onTap: onTap,
	}
	r.Meta.TextSize = theme.CaptionTextSize()
	r.Meta.Alignment = fyne.TextAlignTrailing
	r.ExtendBaseWidget(r)
	return r
}

// CreateRenderer lays the name out on the left and the details on the
// right.
func (r *SuggestionRow) CreateRenderer() fyne.WidgetRenderer {
	return widget.NewSimpleRenderer(container.NewStack(r.bg,
		container.NewPadded(container.NewBorder(nil, nil, nil, r.Meta, r.Name))))
}

// Tapped inserts the suggestion.
func (r *SuggestionRow) Tapped(*fyne.PointEvent) { r.onTap() }

// The row is focusable only so that clicking it keeps the prompt focused
// (the desktop driver unfocuses when nothing focusable is clicked); it takes
// no keys.
func (r *SuggestionRow) FocusGained()            {}
func (r *SuggestionRow) FocusLost()              {}
func (r *SuggestionRow) TypedRune(rune)          {}
func (r *SuggestionRow) TypedKey(*fyne.KeyEvent) {}
func (r *SuggestionRow) MouseIn(*desktop.MouseEvent) {
	r.hovered = true
	if !r.selected {
		r.bg.FillColor = theme.Color(theme.ColorNameHover)
		r.bg.Refresh()
	}
}
func (r *SuggestionRow) MouseMoved(*desktop.MouseEvent) {}
func (r *SuggestionRow) MouseOut() {
	r.hovered = false
	if !r.selected {
		r.bg.FillColor = color.Transparent
		r.bg.Refresh()
	}
}

func (r *SuggestionRow) set(s tags.Suggestion, dark bool) {
	name := s.Name
	meta := ""
	if s.Kind == tags.KindLoRA {
		name = s.Insert
		meta = "LoRA"
	} else {
		name = strings.ReplaceAll(name, "_", " ")
		if s.Alias != "" {
			name = strings.ReplaceAll(s.Alias, "_", " ") + " → " + name
		}
		meta = s.Category.Name + " · " + formatCount(s.Count)
		if s.Source != "" && s.Source != tags.Danbooru {
			meta = string(s.Source) + " " + meta
		}
	}
	var col color.Color = theme.Color(theme.ColorNameForeground)
	if s.Kind == tags.KindTag {
		if dark {
			col = s.Category.Dark
		} else {
			col = s.Category.Light
		}
	}
	if r.Name.Text != name || r.Name.Color != col {
		r.Name.Text, r.Name.Color = name, col
		r.Name.Refresh()
	}
	if r.Meta.Text != meta {
		r.Meta.Text = meta
		r.Meta.Refresh()
	}
}

func (r *SuggestionRow) setSelected(on bool) {
	r.selected = on
	if on {
		r.bg.FillColor = theme.Color(theme.ColorNameSelection)
	} else {
		r.bg.FillColor = color.Transparent
	}
	r.bg.Refresh()
}

// formatCount writes a post count as tagcomplete does: 4.1M, 52k, 830.
func formatCount(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%dk", n/1000)
	case n >= 1000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// insertQualityTag puts a guide's quality tag into the prompt: at the
// cursor when the prompt has the focus (after the tag the cursor is in),
// otherwise at the end, separated by ", ". A tag already there is not
// added again.
func (v *View) insertQualityTag(tag string) {
	e := v.Prompt
	text, cursor, ok := insertTag(e.Text, e.CursorTextOffset(), e.focused, tag)
	if !ok {
		v.setStatus("%q is already in the prompt.", tag)
		return
	}
	v.comp.inserting = true
	e.SetText(text)
	e.SetCursorOffset(cursor)
	v.comp.inserting = false
	v.updateChips()
}

// insertTag is insertQualityTag on text: it returns the new text, the
// cursor after the tag, and false when the tag is already present.
func insertTag(text string, cursor int, atCursor bool, tag string) (string, int, bool) {
	if hasTag(text, tag) {
		return text, cursor, false
	}
	rs := []rune(text)
	p := len(rs)
	if atCursor {
		p = max(0, min(cursor, len(rs)))
		// Do not split a tag: unless the cursor is at a tag's start, go to
		// the end of the tag it is in.
		q := p
		for q > 0 && (rs[q-1] == ' ' || rs[q-1] == '\t') {
			q--
		}
		if q > 0 && rs[q-1] != ',' && rs[q-1] != '\n' {
			for p < len(rs) && rs[p] != ',' && rs[p] != '\n' {
				p++
			}
		}
	}
	before := strings.TrimRight(string(rs[:p]), " \t")
	after := string(rs[p:])
	var b strings.Builder
	b.WriteString(before)
	switch {
	case before == "", strings.HasSuffix(before, "\n"):
	case strings.HasSuffix(before, ","):
		b.WriteString(" ")
	default:
		b.WriteString(", ")
	}
	b.WriteString(tag)
	newCursor := len([]rune(b.String()))
	rest := strings.TrimLeft(after, " \t")
	switch {
	case rest == "":
	case rest[0] == ',' || rest[0] == '\n':
		b.WriteString(rest)
	default:
		b.WriteString(", ")
		b.WriteString(rest)
	}
	return b.String(), newCursor, true
}

// hasTag reports whether the prompt holds tag as one of its comma separated
// parts, ignoring case, spaces versus underscores and emphasis such as
// (tag:1.2).
func hasTag(prompt, tag string) bool {
	want := normTag(tag)
	if want == "" {
		return true
	}
	for part := range strings.FieldsFuncSeq(prompt, func(r rune) bool { return r == ',' || r == '\n' }) {
		if normTag(part) == want {
			return true
		}
	}
	return false
}

func normTag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimLeft(s, "([{")
	s = strings.TrimRight(s, ")]}")
	if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.ContainsAny(s[i+1:], " abcdefghijklmnopqrstuvwxyz_") {
		s = s[:i] // a weight such as :1.2
	}
	s = strings.ReplaceAll(s, "_", " ")
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

// updateChips marks the quality chips whose tag the prompt already holds.
func (v *View) updateChips() {
	if v.QualityChips == nil {
		return
	}
	for _, o := range v.QualityChips.Objects {
		b, ok := o.(*widget.Button)
		if !ok {
			continue
		}
		imp := widget.MediumImportance
		if hasTag(v.Prompt.Text, b.Text) {
			imp = widget.LowImportance
		}
		if b.Importance != imp {
			b.Importance = imp
			b.Refresh()
		}
	}
}

// SetTags installs the tag completer once its indexes are loaded (the
// window loads them in the background so that it opens at once). Call it
// on the UI goroutine; c's fields must not change afterwards.
func (v *View) SetTags(c *tags.Completer) {
	var loras []string
	if v.comp.completer != nil {
		loras = v.comp.completer.LoRAs
	} else if v.LoRAPicker != nil {
		loras = v.LoRAPicker.Options
	}
	v.d.Tags = c
	if c == nil {
		v.comp.completer = nil
		return
	}
	v.comp.completer = ownCompleter(c, loras)
}
