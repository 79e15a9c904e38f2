package tags

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// refRow is a tag list row as encoding/csv reads it: an implementation
// independent of splitCSV to check the index against.
type refRow struct {
	name     string
	category int
	count    int
	aliases  []string
}

// readReference parses a list with encoding/csv, returning the usable rows
// in rank order (stable by post count) and the number of unusable ones.
func readReference(t *testing.T, data string) ([]refRow, int) {
	t.Helper()
	r := csv.NewReader(strings.NewReader(data))
	r.FieldsPerRecord = -1
	var rows []refRow
	bad := 0
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reference reader: %v", err)
		}
		if len(rec) < 3 || strings.TrimSpace(rec[0]) == "" {
			bad++
			continue
		}
		cat, err1 := strconv.Atoi(rec[1])
		n, err2 := strconv.Atoi(rec[2])
		if err1 != nil || err2 != nil {
			bad++
			continue
		}
		row := refRow{name: rec[0], category: cat, count: n}
		if len(rec) > 3 && rec[3] != "" {
			row.aliases = strings.Split(rec[3], ",")
		}
		rows = append(rows, row)
	}
	slices.SortStableFunc(rows, func(a, b refRow) int { return cmp.Compare(b.count, a.count) })
	return rows, bad
}

var embeddedData = map[Source]string{Danbooru: danbooruCSV, E621: e621CSV}

func loadIndex(t *testing.T, src Source) *Index {
	t.Helper()
	ix, err := Load(src)
	if err != nil {
		t.Fatalf("Load(%s): %v", src, err)
	}
	return ix
}

func TestEmbeddedListsLoad(t *testing.T) {
	for _, src := range []Source{Danbooru, E621} {
		t.Run(string(src), func(t *testing.T) {
			ix := loadIndex(t, src)
			ref, bad := readReference(t, embeddedData[src])
			st := ix.Stats()
			t.Logf("%s: %d tags, %d aliases, %d lines skipped %v", src, ix.Len(), st.Aliases, st.Skipped, st.Errors)
			if ix.Len() != len(ref) {
				t.Fatalf("Len = %d, encoding/csv finds %d usable rows", ix.Len(), len(ref))
			}
			if st.Skipped != bad {
				t.Errorf("Skipped = %d, encoding/csv finds %d unusable rows", st.Skipped, bad)
			}
			aliases := 0
			for i, r := range ref {
				got := ix.Tag(i)
				if got.Name != r.name || got.Count != r.count || got.Category != r.category || !slices.Equal(got.Aliases, r.aliases) {
					t.Fatalf("tag %d = %+v, want %+v", i, got, r)
				}
				aliases += len(r.aliases)
			}
			if st.Aliases != aliases {
				t.Errorf("Stats.Aliases = %d, want %d", st.Aliases, aliases)
			}
			again, _ := Load(src)
			if again != ix {
				t.Error("second Load built a new index")
			}
		})
	}
	if _, err := Load("pixiv"); err == nil {
		t.Error("Load of an unknown source succeeded")
	}
}

// bruteForce finds what tagcomplete finds: tags whose normalised name or
// alias matches (^|[^a-zA-Z])query (or the query anywhere after '*'), in
// rank order, the first limit of them.
func bruteForce(ref []refRow, fragment string, limit int) []string {
	q := queryText(fragment)
	var re *regexp.Regexp
	if sub, ok := strings.CutPrefix(q, "*"); ok {
		re = regexp.MustCompile(regexp.QuoteMeta(sub))
	} else {
		re = regexp.MustCompile(`(^|[^a-zA-Z])` + regexp.QuoteMeta(q))
	}
	var out []string
	for _, r := range ref {
		match := re.MatchString(normalize(r.name))
		for _, a := range r.aliases {
			match = match || re.MatchString(normalize(a))
		}
		if match {
			out = append(out, r.name)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

func TestRankingMatchesBruteForce(t *testing.T) {
	cases := []struct {
		src      Source
		fragment string
	}{
		{Danbooru, "hair"},
		{Danbooru, "long ha"},
		{Danbooru, "LONG_HA"},
		{Danbooru, "  Long   Ha"},
		{Danbooru, "1g"},
		{Danbooru, "girl"},
		{Danbooru, "/lh"},
		{Danbooru, `ganyu \(gen`},
		{Danbooru, "blue e"},
		{Danbooru, "s"},
		{Danbooru, "a"},
		{Danbooru, "pokémon"},
		{Danbooru, ":d"},
		{Danbooru, "^_"},
		{Danbooru, "*hair_orn"},
		{Danbooru, "*zzz"},
		{Danbooru, "qqqqqq"},
		{E621, "anthro"},
		{E621, "f"},
		{E621, "hi res"},
		{E621, "*wolf"},
	}
	const limit = 25
	refs := map[Source][]refRow{}
	for _, c := range cases {
		t.Run(string(c.src)+"/"+c.fragment, func(t *testing.T) {
			ix := loadIndex(t, c.src)
			if refs[c.src] == nil {
				refs[c.src], _ = readReference(t, embeddedData[c.src])
			}
			want := bruteForce(refs[c.src], c.fragment, limit)
			got := ix.Complete(c.fragment, limit)
			var names []string
			for i, s := range got {
				names = append(names, s.Name)
				if i > 0 && s.Count > got[i-1].Count {
					t.Errorf("result %d (%s, %d posts) outranks %s (%d posts)", i, s.Name, s.Count, got[i-1].Name, got[i-1].Count)
				}
			}
			if !slices.Equal(names, want) {
				t.Errorf("Complete(%q) =\n %q\nbrute force:\n %q", c.fragment, names, want)
			}
		})
	}
}

func TestAliasesComplete(t *testing.T) {
	ix := loadIndex(t, Danbooru)
	ref, _ := readReference(t, danbooruCSV)
	checked := 0
	for _, r := range ref {
		if len(r.aliases) == 0 {
			continue
		}
		alias := r.aliases[0]
		if normalize(alias) == normalize(r.name) {
			continue
		}
		// Typed with spaces and in upper case, as a user might.
		typed := strings.ToUpper(strings.ReplaceAll(alias, "_", " "))
		found := false
		for _, s := range ix.Complete(typed, 5000) {
			if s.Name == r.name {
				found = true
				// The name is reported as the match when it matches too.
				nameMatches := regexp.MustCompile(`(^|[^a-zA-Z])` + regexp.QuoteMeta(normalize(alias))).MatchString(normalize(r.name))
				if !nameMatches && s.Alias == "" {
					t.Errorf("%q: %s found without naming the alias", typed, r.name)
				}
				if s.Alias != "" && !slices.Contains(r.aliases, s.Alias) {
					t.Errorf("%q: %s reported alias %q, not one of its aliases", typed, r.name, s.Alias)
				}
			}
		}
		if !found {
			t.Errorf("alias %q (typed %q) does not complete to %s", alias, typed, r.name)
		}
		if checked++; checked == 300 {
			break
		}
	}
	if checked == 0 {
		t.Fatal("no alias checked")
	}
}

func TestCategories(t *testing.T) {
	// Names from data/README.md; e621's 2 and 6 are its contributor and
	// invalid categories, which the README leaves out.
	names := map[Source]map[int]string{
		Danbooru: {0: "general", 1: "artist", 3: "copyright", 4: "character", 5: "meta"},
		E621:     {0: "general", 1: "artist", 2: "contributor", 3: "copyright", 4: "character", 5: "species", 6: "invalid", 7: "meta", 8: "lore"},
	}
	for src, m := range names {
		ix := loadIndex(t, src)
		seen := map[int]bool{}
		for i := 0; i < ix.Len(); i++ {
			seen[ix.Tag(i).Category] = true
		}
		for id := range seen {
			c := CategoryOf(src, id)
			if c.Name != m[id] {
				t.Errorf("%s category %d = %q, want %q", src, id, c.Name, m[id])
			}
			if c.Dark.A != 0xff || c.Light.A != 0xff || c.Dark == c.Light {
				t.Errorf("%s category %d colours %v / %v", src, id, c.Dark, c.Light)
			}
		}
		// Suggestions carry the row's category.
		for _, s := range ix.Complete("b", 50) {
			var row Tag
			for i := 0; i < ix.Len(); i++ {
				if ix.Tag(i).Name == s.Name {
					row = ix.Tag(i)
					break
				}
			}
			if s.Category.ID != row.Category || s.Category.Name != m[row.Category] || s.Source != src {
				t.Errorf("%s %s: category %+v, row says %d", src, s.Name, s.Category, row.Category)
			}
		}
	}
	if c := CategoryOf(Danbooru, 2); c.Name != "unknown" || c.DarkName != "red" {
		t.Errorf("unknown danbooru category = %+v, want tagcomplete's fallback", c)
	}
	// tagcomplete's default colour map for the most common categories.
	for _, c := range []struct {
		src         Source
		id          int
		dark, light string
	}{
		{Danbooru, 0, "lightblue", "dodgerblue"},
		{Danbooru, 4, "lightgreen", "darkgreen"},
		{E621, 1, "gold", "goldenrod"},
		{E621, 5, "tomato", "darksalmon"},
	} {
		got := CategoryOf(c.src, c.id)
		if got.DarkName != c.dark || got.LightName != c.light {
			t.Errorf("%s %d colours %s/%s, want %s/%s", c.src, c.id, got.DarkName, got.LightName, c.dark, c.light)
		}
	}
}

func TestInsertText(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"long_hair", "long hair"},
		{"1girl", "1girl"},
		{"ganyu_(genshin_impact)", `ganyu \(genshin impact\)`},
		{"[ban]", `\[ban\]`},
		{"^_^", "^_^"},
		{">_<", ">_<"},
		{"o_o", "o_o"},
		{"(o)_(o)", `\(o\)_\(o\)`},
		{"no_bra", "no bra"},
		{"a_b_c", "a b c"},
		{"_", "_"},
		{"pokémon", "pokémon"},
	} {
		if got := InsertText(c.name); got != c.want {
			t.Errorf("InsertText(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	ix := loadIndex(t, Danbooru)
	got := ix.Complete(`ganyu \(genshin im`, 1)
	if len(got) != 1 || got[0].Insert != `ganyu \(genshin impact\)` {
		t.Errorf("completing ganyu: %+v", got)
	}
}

func TestCurrentWord(t *testing.T) {
	// "‸" marks the cursor.
	for _, c := range []struct {
		text       string
		frag       string
		start, end int // rune offsets
	}{
		{"‸", "", 0, 0},
		{"long ha‸", "long ha", 0, 7},
		{"1girl, long ha‸", "long ha", 7, 14},
		{"1girl,long ha‸", "long ha", 6, 13},
		{"1girl, lo‸ng hair, smile", "lo", 7, 16},
		{"1girl, long hair‸, smile", "long hair", 7, 16},
		{"1girl, (long ha‸:1.2), smile", "long ha", 8, 15},
		{"1girl, (long ha‸ir:1.2), smile", "long ha", 8, 17},
		{"[blue e‸]", "blue e", 1, 7},
		{`1girl, ganyu \(gen‸`, `ganyu \(gen`, 7, 18},
		{`ganyu \(genshin impact\)‸`, `ganyu \(genshin impact\)`, 0, 24},
		{"masterpiece,\nsmi‸", "smi", 13, 16},
		{"a, <lora:det‸", "<lora:det", 3, 12},
		{"a, <lora:det‸ail:0.8>, b", "<lora:det", 3, 20},
		{"<lora:x:1>, b‸", "b", 12, 13},
		{"<lora:x:1>b‸", "b", 10, 11},
		{"1girl, ‸", "", 7, 7},
		{"ÄÖÜ, blü‸", "blü", 5, 8},
		{"a‸bc", "a", 0, 3},
		{"{red|blu‸e}", "blu", 5, 9},
	} {
		cursor := len([]rune(c.text[:strings.Index(c.text, "‸")]))
		text := strings.Replace(c.text, "‸", "", 1)
		got := CurrentWord(text, cursor)
		if got.Text != c.frag || got.Start != c.start || got.End != c.end {
			t.Errorf("CurrentWord(%q, %d) = %+v, want {%q %d %d}", text, cursor, got, c.frag, c.start, c.end)
		}
	}
	// Cursors out of range are clamped, never a panic.
	for _, cur := range []int{-5, 100} {
		s := CurrentWord("1girl, smile", cur)
		if s.Start < 0 || s.End > 12 || s.Start > s.End {
			t.Errorf("cursor %d: %+v", cur, s)
		}
	}
}

func TestReplace(t *testing.T) {
	for _, c := range []struct {
		text   string // "‸" marks the cursor
		insert string
		want   string // "‸" marks the new cursor
	}{
		{"1girl, long ha‸", "long hair", "1girl, long hair, ‸"},
		{"1girl, lo‸ng hair, smile", "long hair", "1girl, long hair, ‸smile"},
		{"1girl, (long ha‸:1.2), smile", "long hair", "1girl, (long hair‸:1.2), smile"},
		{"a, <lora:det‸", "<lora:detail:1>", "a, <lora:detail:1>, ‸"},
		{"a, <lora:det‸ail:0.8>, b", "<lora:detail:1>", "a, <lora:detail:1>, ‸b"},
		{"gany‸\nsmile", `ganyu \(genshin impact\)`, "ganyu \\(genshin impact\\), ‸\nsmile"},
		{"blü‸", "blue", "blue, ‸"},
	} {
		cursor := len([]rune(c.text[:strings.Index(c.text, "‸")]))
		text := strings.Replace(c.text, "‸", "", 1)
		span := CurrentWord(text, cursor)
		got, newCursor := Replace(text, span, c.insert)
		wantCursor := len([]rune(c.want[:strings.Index(c.want, "‸")]))
		want := strings.Replace(c.want, "‸", "", 1)
		if got != want || newCursor != wantCursor {
			t.Errorf("Replace(%q, %+v, %q) = %q, %d; want %q, %d", text, span, c.insert, got, newCursor, want, wantCursor)
		}
	}
}

func TestParseSkipsBadLines(t *testing.T) {
	input := strings.Join([]string{
		`long_hair,0,100,"/lh,longhair"`,
		`bad_count,0,many,`,            // count not a number
		`only_two,0`,                   // too few fields
		`,0,5,`,                        // empty name
		`"unterminated,0,5,`,           // open quote
		`"quoted""name""",1,50,`,       // doubled quotes
		`neg,0,-3,`,                    // negative count
		``,                             // blank lines are not errors
		`short_hair,0,200,"/sh"`,       // outranks long_hair
		"crlf_tag,4,10,\r",             // Windows line ending
		`"x"y,0,1,`,                    // text after closing quote
		`cat,notanumber,1,`,            // category not a number
		"smile,0,150,\"grin,happy\"\n", // trailing newline
	}, "\n")
	ix, err := Parse(Danbooru, strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	st := ix.Stats()
	if st.Skipped != 7 || ix.Len() != 5 {
		t.Fatalf("Len %d Skipped %d (%v), want 5 tags and 7 skipped", ix.Len(), st.Skipped, st.Errors)
	}
	if !strings.Contains(strings.Join(st.Errors, "\n"), "line 3:") {
		t.Errorf("errors do not name line 3: %v", st.Errors)
	}
	var order []string
	for i := 0; i < ix.Len(); i++ {
		order = append(order, ix.Tag(i).Name)
	}
	if want := []string{"short_hair", "smile", "long_hair", `quoted"name"`, "crlf_tag"}; !slices.Equal(order, want) {
		t.Errorf("rank order %q, want %q", order, want)
	}
	got := ix.Complete("hai", 10)
	if len(got) != 2 || got[0].Name != "short_hair" || got[1].Name != "long_hair" {
		t.Errorf("Complete(hai) = %+v", got)
	}
	if got := ix.Complete("grin", 10); len(got) != 1 || got[0].Name != "smile" || got[0].Alias != "grin" {
		t.Errorf("Complete(grin) = %+v", got)
	}

	if _, err := Parse(E621, strings.NewReader("garbage\n\x00\x01,,\n")); err == nil {
		t.Error("a list with no usable line parsed")
	}
	// Invalid UTF-8 does not stop the valid lines.
	ix, err = Parse(E621, strings.NewReader("wolf,5,10,\n\xff\xfe,0,1,\n"))
	if err != nil || ix.Len() != 2 || len(ix.Complete("wol", 5)) != 1 {
		t.Errorf("invalid UTF-8 line: %v, %d tags", err, ix.Len())
	}
	if _, err := Parse(E621, io.MultiReader(strings.NewReader("a,0,1,\n"), errReader{})); err == nil {
		t.Error("read error not reported")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("disk on fire") }

func TestCompleterLoRAsAndMerge(t *testing.T) {
	dan, e6 := loadIndex(t, Danbooru), loadIndex(t, E621)
	c := &Completer{
		Indexes:    []*Index{dan, e6},
		LoRAs:      []string{"add_detail", "Detail-Tweaker XL", "pixel_art_v2", "detailer"},
		LoRAWeight: 0.8,
		Limit:      10,
	}
	got := c.Complete("wolf")
	if len(got) != 10 {
		t.Fatalf("merged completion gave %d results", len(got))
	}
	sources := map[Source]bool{}
	for i, s := range got {
		sources[s.Source] = true
		if i > 0 && s.Count > got[i-1].Count {
			t.Errorf("merged results not ranked by count at %d", i)
		}
	}
	if !sources[Danbooru] || !sources[E621] {
		t.Errorf("merged results come from %v only", sources)
	}
	for _, lc := range []struct {
		frag string
		want []string
	}{
		{"<", []string{"<lora:add_detail:0.8>", "<lora:Detail-Tweaker XL:0.8>", "<lora:detailer:0.8>", "<lora:pixel_art_v2:0.8>"}},
		{"<lora:det", []string{"<lora:add_detail:0.8>", "<lora:Detail-Tweaker XL:0.8>", "<lora:detailer:0.8>"}},
		{"<l:DETAIL-tw", []string{"<lora:Detail-Tweaker XL:0.8>"}},
		{"<lora:detail-tweaker x", []string{"<lora:Detail-Tweaker XL:0.8>"}},
		{"<lora:pixel_art_v2:0.5", []string{"<lora:pixel_art_v2:0.8>"}},
		{"<lora:zzz", nil},
	} {
		var ins []string
		for _, s := range c.Complete(lc.frag) {
			if s.Kind != KindLoRA {
				t.Errorf("%q: %s is a %v", lc.frag, s.Name, s.Kind)
			}
			ins = append(ins, s.Insert)
		}
		if !slices.Equal(ins, lc.want) {
			t.Errorf("Complete(%q) = %q, want %q", lc.frag, ins, lc.want)
		}
	}
	for _, empty := range []string{"", "   ", "*", "\t"} {
		if got := c.Complete(empty); len(got) != 0 {
			t.Errorf("Complete(%q) = %d results", empty, len(got))
		}
	}
	if got := (&Completer{Indexes: []*Index{dan}}).Complete("h"); len(got) != DefaultLimit {
		t.Errorf("default limit gave %d results", len(got))
	}
}
