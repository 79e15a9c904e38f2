package gallery

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

// genItem is one image of the search test gallery, as written.
type genItem struct {
	id            string
	meta          meta
	model         string
	width, height int
	mtime         time.Time
}

var searchVocab = []string{
	"1girl", "solo", "long hair", "short hair", "blue eyes", "red eyes", "smile", "hat", "witch hat",
	"looking at viewer", "outdoors", "night sky", "castle", "forest", "hair ornament", "blue sky",
	"long_hair", "Pokémon", "cityscape", "rain",
}

// writeSearchGallery writes 60 pixery images with prompts drawn from
// searchVocab, three models, three sizes and times an hour apart.
func writeSearchGallery(t *testing.T, dir string) []genItem {
	t.Helper()
	models := []string{"model-a", "Model-B", "model_c"}
	sizes := [][2]int{{24, 32}, {32, 24}, {32, 32}}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []genItem
	r := uint32(7)
	next := func(n int) int { r = r*1103515245 + 12345; return int(r>>16) % n }
	for i := range 60 {
		var words []string
		for range 2 + next(4) {
			words = append(words, searchVocab[next(len(searchVocab))])
		}
		g := genItem{
			id:    fmt.Sprintf("s/%02d.png", i),
			model: models[i%3],
			mtime: base.Add(time.Duration(i*37%60) * time.Hour),
		}
		g.width, g.height = sizes[(i/3)%3][0], sizes[(i/3)%3][1]
		g.meta = meta{prompt: strings.Join(words, ", "), negative: "lowres, hat", model: g.model,
			seed: int64(1000 + i%20), steps: 20, cfg: 5, sampler: "euler"}
		writeAt(t, dir, g.id, makePNG(t, g.width, g.height, i, pixeryChunks(t, g.meta, g.width, g.height, nil)...), g.mtime)
		out = append(out, g)
	}
	return out
}

// words splits text as the test's model of the full-text tokenizer does:
// runs of letters and digits, lower-cased, accents folded for the few the
// vocabulary has.
func words(s string) []string {
	s = strings.NewReplacer("é", "e", "É", "e").Replace(strings.ToLower(s))
	return strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
}

// termMatches is the brute-force reading of one query term: its words
// appear consecutively in the prompt, the last as a prefix unless quoted.
func termMatches(prompt []string, term []string, quoted bool) bool {
	for i := 0; i+len(term) <= len(prompt); i++ {
		ok := true
		for j, w := range term {
			p := prompt[i+j]
			if j == len(term)-1 && !quoted {
				ok = ok && strings.HasPrefix(p, w)
			} else {
				ok = ok && p == w
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func bruteSearch(gen []genItem, q Query) []string {
	var hits []genItem
	for _, g := range gen {
		pw := words(g.meta.prompt)
		ok := true
		for _, tok := range splitQueryTokens(q.Text) {
			neg := !tok.quoted && strings.HasPrefix(tok.text, "-")
			tw := words(strings.TrimPrefix(tok.text, "-"))
			if len(tw) == 0 {
				continue
			}
			if termMatches(pw, tw, tok.quoted) == neg {
				ok = false
			}
		}
		if q.Model != "" && !strings.EqualFold(q.Model, g.model) {
			ok = false
		}
		if !q.From.IsZero() && g.mtime.Before(q.From) || !q.To.IsZero() && g.mtime.After(q.To) {
			ok = false
		}
		if q.Width > 0 && g.width != q.Width || q.Height > 0 && g.height != q.Height {
			ok = false
		}
		if q.Seed != nil && g.meta.seed != *q.Seed {
			ok = false
		}
		if ok {
			hits = append(hits, g)
		}
	}
	slices.SortFunc(hits, func(a, b genItem) int {
		c := a.mtime.Compare(b.mtime)
		if c == 0 {
			c = cmp.Compare(a.id, b.id)
		}
		if q.Order == Oldest {
			return c
		}
		return -c
	})
	out := []string{}
	for i, h := range hits {
		if i < q.Offset || q.Limit > 0 && len(out) == q.Limit {
			continue
		}
		out = append(out, h.id)
	}
	return out
}

func TestSearchMatchesBruteForce(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	gen := writeSearchGallery(t, dir)
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	seed := int64(1007)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	queries := []Query{
		{},
		{Text: "hair"},
		{Text: "HAI"},
		{Text: "long_hair"},
		{Text: "long hair"},
		{Text: "blue ey"},
		{Text: `"blue eyes"`},
		{Text: `"blue e"`},
		{Text: "smile -hat"},
		{Text: "-smile"},
		{Text: "-hair -hat"},
		{Text: "witch-hat"},
		{Text: "pokemon"},
		{Text: "castle, night"},
		{Text: "((("},
		{Text: `AND OR NOT "`},
		{Text: "hat*"},
		{Text: "zzz"},
		{Model: "MODEL-B"},
		{Model: "model"},
		{Width: 32, Height: 24},
		{Width: 32},
		{Seed: &seed},
		{From: base.Add(10 * time.Hour), To: base.Add(20 * time.Hour)},
		{Text: "hair", Model: "model-a", Limit: 3, Offset: 1},
		{Order: Oldest, Limit: 10, Offset: 50},
		{Limit: 5},
		{Offset: 58},
	}
	for _, q := range queries {
		want := bruteSearch(gen, q)
		got, err := s.Search(ctx, q)
		if err != nil {
			t.Errorf("Search(%+v): %v", q, err)
			continue
		}
		if g := ids(got); !slices.Equal(g, want) && !(len(g) == 0 && len(want) == 0) {
			t.Errorf("Search(%+v) =\n %q\nbrute force:\n %q", q, g, want)
		}
		unpaged := q
		unpaged.Limit, unpaged.Offset = 0, 0
		n, err := s.Count(ctx, q)
		if wantN := len(bruteSearch(gen, unpaged)); err != nil || n != wantN {
			t.Errorf("Count(%+v) = %d %v, want %d", q, n, err, wantN)
		}
	}
	// Relevance gives the same set as the default order.
	rel, err := s.Search(ctx, Query{Text: "hair", Order: Relevance})
	if err != nil {
		t.Fatal(err)
	}
	relIDs := ids(rel)
	slices.Sort(relIDs)
	want := bruteSearch(gen, Query{Text: "hair"})
	slices.Sort(want)
	if !slices.Equal(relIDs, want) {
		t.Errorf("relevance order: %q, want the set %q", relIDs, want)
	}
	if got, _ := s.Search(ctx, Query{Source: SourceComfyUI}); len(got) != 0 {
		t.Errorf("source filter found %d comfy images in a pixery-only gallery", len(got))
	}
	if got, _ := s.Search(ctx, Query{Source: SourcePixery}); len(got) != len(gen) {
		t.Errorf("source filter found %d of %d pixery images", len(got), len(gen))
	}
}

func TestFTS5Available(t *testing.T) {
	s, _, _ := openStore(t)
	var opts []string
	rows, err := s.db.Query("PRAGMA compile_options")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var o string
		rows.Scan(&o)
		opts = append(opts, o)
	}
	if !slices.Contains(opts, "ENABLE_FTS5") {
		t.Errorf("modernc sqlite built without FTS5: %v", opts)
	}
	var version string
	s.db.QueryRow("SELECT sqlite_version()").Scan(&version)
	t.Logf("SQLite %s, FTS5 compiled in", version)
}

// Facets lists exactly the distinct models and sizes of the indexed images,
// sorted, and follows a deletion.
func TestFacets(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	gen := writeSearchGallery(t, dir)
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	models, sizes := map[string]bool{}, map[[2]int]bool{}
	for _, g := range gen {
		if g.model != "" {
			models[g.model] = true
		}
		sizes[[2]int{g.width, g.height}] = true
	}
	f, err := s.Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantModels := slices.Sorted(maps.Keys(models))
	if !slices.Equal(f.Models, wantModels) {
		t.Errorf("models %q, want %q", f.Models, wantModels)
	}
	if len(f.Sizes) != len(sizes) || !slices.IsSortedFunc(f.Sizes, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	}) {
		t.Errorf("sizes %v, want the %d of %v sorted", f.Sizes, len(sizes), sizes)
	}
	for _, wh := range f.Sizes {
		if !sizes[wh] {
			t.Errorf("size %v is not in the gallery", wh)
		}
	}
	// Deleting every image of one model drops it from the list.
	gone := wantModels[0]
	for _, g := range gen {
		if g.model == gone {
			if err := s.Delete(ctx, g.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	f, err = s.Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(f.Models, gone) || len(f.Models) != len(wantModels)-1 {
		t.Errorf("after deleting %s: models %q", gone, f.Models)
	}
}
