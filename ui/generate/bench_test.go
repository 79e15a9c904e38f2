package generate

import (
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
)

// benchText is typed over and over: tags of every length, a parenthesised
// one, commas and spaces (where the list closes).
const benchText = "1girl, long_hair, blue_eyes, smile, ganyu_(genshin_impact), looking_at_viewer, outdoors, "

// BenchmarkKeystroke measures one keystroke in the prompt on the real
// danbooru and e621 indexes: "typed" is the whole of it as the window
// delivers it (the Entry's own edit, the quality chips' check, the tag
// lookup, the suggestion rows' texts and placement); "complete" is the
// completion step alone.
func BenchmarkKeystroke(b *testing.B) {
	test.NewTempApp(b)
	c := tagCompleter(b)
	w := test.NewTempWindow(b, nil)
	v := New(Deps{Window: w, Tags: c})
	b.Cleanup(v.Close)
	w.SetContent(v.Content())
	w.Resize(fyne.NewSize(1200, 900))
	runes := []rune(benchText)

	b.Run("typed", func(b *testing.B) {
		v.Prompt.SetText("")
		v.Prompt.FocusGained()
		i, shown := 0, 0
		for b.Loop() {
			if i == len(runes)*3 {
				b.StopTimer()
				v.Prompt.SetText("")
				i = 0
				b.StartTimer()
			}
			v.Prompt.TypedRune(runes[i%len(runes)])
			i++
			if v.Suggestions.Visible() {
				shown++
			}
		}
		if shown == 0 {
			b.Fatal("no suggestions shown")
		}
		b.ReportMetric(float64(shown)/float64(b.N), "shown/op")
	})

	b.Run("complete", func(b *testing.B) {
		// Every prefix of benchText as the prompt, cursor at its end.
		prefixes := make([]string, len(runes))
		for k := range runes {
			prefixes[k] = string(runes[:k+1])
		}
		v.Prompt.SetText("")
		i := 0
		for b.Loop() {
			b.StopTimer()
			p := prefixes[i%len(prefixes)]
			v.comp.inserting = true
			v.Prompt.SetText(p)
			v.Prompt.CursorRow, v.Prompt.CursorColumn = 0, len([]rune(p))
			v.comp.inserting = false
			b.StartTimer()
			v.complete(v.Prompt)
			i++
		}
	})
}
