package tags

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Tag is one row of a tag list.
type Tag struct {
	// Name is the tag as the list writes it, with underscores ("long_hair").
	Name     string
	Category int
	// Count is the number of posts carrying the tag.
	Count   int
	Aliases []string
}

// LoadStats says what loading a list found.
type LoadStats struct {
	// Tags and Aliases count what was indexed.
	Tags, Aliases int
	// Skipped counts malformed lines that were left out; Errors describes
	// the first few of them.
	Skipped int
	Errors  []string
}

// maxReportedErrors bounds LoadStats.Errors: a file of garbage should not
// produce an error string per line.
const maxReportedErrors = 10

// MaxListSize bounds the tag list Parse reads. The embedded lists are a few
// MiB; the bound keeps a wrong file from being read without end.
const MaxListSize = 256 << 20

// Index answers completion queries on one tag list. It is immutable once
// built and safe for concurrent use.
type Index struct {
	source Source
	// tags is ordered by post count, highest first (the file's order when
	// the file is sorted, as tagcomplete's are), so a smaller index is a
	// better rank.
	tags []Tag
	// blob holds every searchable string (a tag's name, then its aliases)
	// normalised, each followed by '\n', tags in rank order.
	blob string
	// strStart[i] is where searchable string i begins in blob; one extra
	// element marks the end. owner[i] is the tag it belongs to; first[t] is
	// the index of tag t's name string (its aliases follow it).
	strStart []uint32
	owner    []uint32
	first    []uint32
	// entries lists every place a match may begin (the start of a string
	// and of each word inside it), sorted by the text from there on.
	entries []entry
	stats   LoadStats
}

// entry is one match start: string str of the index, from byte pos on.
// key holds the first eight bytes from there, big-endian, so that most
// comparisons while sorting need no string access.
type entry struct {
	key uint64
	str uint32
	pos uint32
	// tag is the string's owner, kept here so that scanning a range of
	// entries reads no other memory.
	tag uint32
}

// Source returns the list the index was built from.
func (ix *Index) Source() Source { return ix.source }

// Len returns the number of tags indexed.
func (ix *Index) Len() int { return len(ix.tags) }

// Stats returns what loading found.
func (ix *Index) Stats() LoadStats { return ix.stats }

// Tag returns the tag ranked i (0 = most posts).
func (ix *Index) Tag(i int) Tag { return ix.tags[i] }

// Parse reads a tag list in tagcomplete's CSV format
// (name,category,post_count,"alias1,alias2") and indexes it. Malformed lines
// are skipped and counted in Stats; Parse fails only when reading fails or
// no line is usable.
func Parse(src Source, r io.Reader) (*Index, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxListSize+1))
	if err != nil {
		return nil, fmt.Errorf("tags: read %s list: %w", src, err)
	}
	if len(data) > MaxListSize {
		return nil, fmt.Errorf("tags: %s list exceeds %d bytes", src, MaxListSize)
	}
	return parseString(src, string(data))
}

func parseString(src Source, data string) (*Index, error) {
	ix := &Index{source: src}
	if !utf8.ValidString(data) {
		// Keep the valid lines usable: invalid bytes become U+FFFD and the
		// lines holding them are still parsed (and are unlikely to match).
		data = strings.ToValidUTF8(data, "\uFFFD")
	}
	ix.tags = make([]Tag, 0, strings.Count(data, "\n")+1)
	var fields []string
	lineNo := 0
	for len(data) > 0 {
		var line string
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, ""
		}
		lineNo++
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		var t Tag
		fields, err := splitCSV(line, fields[:0])
		if err == nil {
			t, err = tagFromFields(fields)
		}
		if err != nil {
			ix.stats.Skipped++
			if len(ix.stats.Errors) < maxReportedErrors {
				ix.stats.Errors = append(ix.stats.Errors, fmt.Sprintf("line %d: %v", lineNo, err))
			}
			continue
		}
		ix.tags = append(ix.tags, t)
	}
	if len(ix.tags) == 0 {
		return nil, fmt.Errorf("tags: %s list has no usable line (%d skipped)", src, ix.stats.Skipped)
	}
	// The shipped lists are sorted already; a stable sort keeps their order
	// and fixes a list that is not.
	slices.SortStableFunc(ix.tags, func(a, b Tag) int { return cmp.Compare(b.Count, a.Count) })
	ix.build()
	return ix, nil
}

func tagFromFields(f []string) (Tag, error) {
	if len(f) < 3 {
		return Tag{}, fmt.Errorf("%d fields, want name,category,count[,aliases]", len(f))
	}
	name := strings.TrimSpace(f[0])
	if name == "" {
		return Tag{}, errors.New("empty tag name")
	}
	if strings.ContainsAny(name, "\n\x00") {
		return Tag{}, errors.New("control character in tag name")
	}
	cat, err := strconv.Atoi(strings.TrimSpace(f[1]))
	if err != nil {
		return Tag{}, fmt.Errorf("category %q is not a number", f[1])
	}
	count, err := strconv.Atoi(strings.TrimSpace(f[2]))
	if err != nil || count < 0 {
		return Tag{}, fmt.Errorf("post count %q is not a non-negative number", f[2])
	}
	t := Tag{Name: name, Category: cat, Count: count}
	if len(f) > 3 && f[3] != "" {
		for a := range strings.SplitSeq(f[3], ",") {
			if a = strings.TrimSpace(a); a != "" && !strings.ContainsAny(a, "\n\x00") {
				t.Aliases = append(t.Aliases, a)
			}
		}
	}
	return t, nil
}

// splitCSV splits one CSV record (RFC 4180 quoting, "" for a quote inside a
// quoted field) and appends its fields to dst.
func splitCSV(line string, dst []string) ([]string, error) {
	for {
		if strings.HasPrefix(line, `"`) {
			// Quoted field: find the closing quote that is not doubled.
			var b strings.Builder
			rest := line[1:]
			plain := true
			for {
				i := strings.IndexByte(rest, '"')
				if i < 0 {
					return dst, errors.New("unterminated quoted field")
				}
				if i+1 < len(rest) && rest[i+1] == '"' {
					plain = false
					b.WriteString(rest[:i+1])
					rest = rest[i+2:]
					continue
				}
				var field string
				if plain {
					field = line[1 : 1+i]
				} else {
					b.WriteString(rest[:i])
					field = b.String()
				}
				dst = append(dst, field)
				rest = rest[i+1:]
				if rest == "" {
					return dst, nil
				}
				if rest[0] != ',' {
					return dst, errors.New("text after a closing quote")
				}
				line = rest[1:]
				break
			}
			continue
		}
		i := strings.IndexByte(line, ',')
		if i < 0 {
			return append(dst, line), nil
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// normalize maps text to the form the index searches: lower case, with
// spaces (and runs of them) as underscores, since prompts write tags with
// spaces and the lists with underscores.
func normalize(s string) string {
	s = strings.ToLower(s)
	if !strings.ContainsAny(s, " \t") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r == ' ' || r == '\t' {
			space = true
			continue
		}
		if space {
			b.WriteByte('_')
			space = false
		}
		b.WriteRune(r)
	}
	if space {
		b.WriteByte('_')
	}
	return b.String()
}

func isASCIILetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// build lays out the searchable strings and sorts the match starts.
func (ix *Index) build() {
	n, size := 0, 0
	for _, t := range ix.tags {
		n += 1 + len(t.Aliases)
		size += len(t.Name) + 1
		for _, a := range t.Aliases {
			size += len(a) + 1
		}
	}
	ix.strStart = make([]uint32, 0, n+1)
	ix.owner = make([]uint32, 0, n)
	ix.first = make([]uint32, len(ix.tags))
	var b strings.Builder
	b.Grow(size + size/64) // lower-casing may lengthen a few strings
	for ti, t := range ix.tags {
		ix.first[ti] = uint32(len(ix.owner))
		ix.stats.Tags++
		add := func(s string) {
			ix.strStart = append(ix.strStart, uint32(b.Len()))
			ix.owner = append(ix.owner, uint32(ti))
			b.WriteString(normalize(s))
			b.WriteByte('\n')
		}
		add(t.Name)
		for _, a := range t.Aliases {
			add(a)
			ix.stats.Aliases++
		}
	}
	ix.strStart = append(ix.strStart, uint32(b.Len()))
	ix.blob = b.String()

	// A match may begin at the start of a string or after any character
	// that is not an ASCII letter: tagcomplete's (^|[^a-zA-Z])word rule, so
	// "hair" finds long_hair and "girl" finds 1girl.
	// Real lists average under three match starts per string; the
	// estimate saves a counting pass, and append covers a list above it.
	ix.entries = make([]entry, 0, n*3+n/4)
	for si, owner := range ix.owner {
		s := ix.str(uint32(si))
		prevLetter := true
		for pos, r := range s {
			if pos == 0 || !prevLetter {
				ix.entries = append(ix.entries, entry{key: prefixKey(s[pos:]), str: uint32(si), pos: uint32(pos), tag: owner})
			}
			prevLetter = isASCIILetter(r)
		}
	}
	ix.sortEntries()
}

// sortEntries orders the entries by their text, equal texts by string
// index (so the better-ranked tag comes first). A radix sort on the 8-byte
// keys does most of the work in linear time, which keeps loading fast; only
// runs of equal keys, texts sharing their first 8 bytes, are then sorted by
// comparing the texts.
func (ix *Index) sortEntries() {
	a := ix.entries
	buf := make([]entry, len(a))
	var counts [256]int
	for shift := 0; shift < 64; shift += 8 {
		counts = [256]int{}
		for _, e := range a {
			counts[byte(e.key>>shift)]++
		}
		if counts[byte(a[0].key>>shift)] == len(a) {
			continue // every key has the same byte here
		}
		sum := 0
		for i, c := range counts {
			counts[i] = sum
			sum += c
		}
		for _, e := range a {
			d := byte(e.key >> shift)
			buf[counts[d]] = e
			counts[d]++
		}
		a, buf = buf, a
	}
	// Runs of equal keys are sorted by the rest of their text, equal texts
	// by string index (the better-ranked tag first, for deterministic scans).
	for i := 0; i < len(a); {
		j := i + 1
		for j < len(a) && a[j].key == a[i].key {
			j++
		}
		// Keys with a zero low byte are texts shorter than 8 bytes; those
		// are whole in the key and need no further sort.
		if j-i > 1 && byte(a[i].key) != 0 {
			slices.SortFunc(a[i:j], func(x, y entry) int {
				if c := strings.Compare(ix.suffix(x)[8:], ix.suffix(y)[8:]); c != 0 {
					return c
				}
				return cmp.Compare(x.str, y.str)
			})
		}
		i = j
	}
	ix.entries = a
}

// str returns searchable string i (without its '\n').
func (ix *Index) str(i uint32) string {
	return ix.blob[ix.strStart[i] : ix.strStart[i+1]-1]
}

func (ix *Index) suffix(e entry) string {
	return ix.blob[ix.strStart[e.str]+e.pos : ix.strStart[e.str+1]-1]
}

func prefixKey(s string) uint64 {
	var k uint64
	for i := 0; i < 8; i++ {
		k <<= 8
		if i < len(s) {
			k |= uint64(s[i])
		}
	}
	return k
}

// hit is one tag found by a query and the string of it that matched.
type hit struct {
	tag, str uint32
}

// topHits keeps the best-ranked distinct tags seen, at most limit of them,
// ordered by rank.
type topHits struct {
	limit int
	hits  []hit
}

func (h *topHits) full() bool { return len(h.hits) >= h.limit }

// add offers tag t matched through string s.
func (h *topHits) add(t, s uint32) {
	if h.full() && t >= h.hits[len(h.hits)-1].tag {
		return
	}
	i := sort.Search(len(h.hits), func(i int) bool { return h.hits[i].tag >= t })
	if i < len(h.hits) && h.hits[i].tag == t {
		// Seen already: report the name rather than an alias when both
		// match, else the best-ranked alias.
		if s < h.hits[i].str {
			h.hits[i].str = s
		}
		return
	}
	if h.full() {
		h.hits = h.hits[:len(h.hits)-1]
	}
	h.hits = slices.Insert(h.hits, i, hit{t, s})
}

// search returns up to limit tags matching the normalised query q, best
// ranked first. A query starting with '*' matches anywhere inside a tag or
// alias, as in tagcomplete; otherwise q must match at the start of one of
// its words.
func (ix *Index) search(q string, limit int) []hit {
	if limit <= 0 || q == "" {
		return nil
	}
	h := topHits{limit: limit}
	if sub, ok := strings.CutPrefix(q, "*"); ok {
		if sub == "" {
			return nil
		}
		// The blob is in rank order, so the first limit distinct owners
		// found scanning it are the best ranked.
		off := 0
		for !h.full() {
			i := strings.Index(ix.blob[off:], sub)
			if i < 0 {
				break
			}
			at := off + i
			si := sort.Search(len(ix.strStart)-1, func(k int) bool { return ix.strStart[k+1] > uint32(at) })
			h.add(ix.owner[si], uint32(si))
			// Skip the rest of this string: one match per string is enough.
			off = int(ix.strStart[si+1])
		}
		return h.hits
	}
	lo := sort.Search(len(ix.entries), func(i int) bool { return ix.suffix(ix.entries[i]) >= q })
	n := sort.Search(len(ix.entries)-lo, func(i int) bool { return !strings.HasPrefix(ix.suffix(ix.entries[lo+i]), q) })
	for _, e := range ix.entries[lo : lo+n] {
		h.add(e.tag, e.str)
	}
	return h.hits
}

// Complete returns up to limit suggestions for the typed fragment (as it
// appears in the prompt: spaces or underscores, any case, parentheses
// escaped or not), ranked by post count.
func (ix *Index) Complete(fragment string, limit int) []Suggestion {
	q := queryText(fragment)
	hits := ix.search(q, limit)
	out := make([]Suggestion, 0, len(hits))
	for _, h := range hits {
		out = append(out, ix.suggestion(h))
	}
	return out
}

func (ix *Index) suggestion(h hit) Suggestion {
	t := ix.tags[h.tag]
	s := Suggestion{
		Kind:     KindTag,
		Name:     t.Name,
		Insert:   InsertText(t.Name),
		Category: CategoryOf(ix.source, t.Category),
		Count:    t.Count,
		Source:   ix.source,
	}
	if k := h.str - ix.first[h.tag]; k > 0 {
		s.Alias = t.Aliases[k-1]
	}
	return s
}

// queryText turns typed text into the normalised form searched: trimmed,
// prompt escapes removed (`\(` is a literal parenthesis), spaces as
// underscores, lower case.
func queryText(fragment string) string {
	s := strings.TrimSpace(fragment)
	if strings.IndexByte(s, '\\') >= 0 {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		s = b.String()
	}
	return normalize(s)
}
