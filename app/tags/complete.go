package tags

import (
	"cmp"
	_ "embed"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:embed data/danbooru.csv
var danbooruCSV string

//go:embed data/e621.csv
var e621CSV string

var embedded = map[Source]func() (*Index, error){
	Danbooru: sync.OnceValues(func() (*Index, error) { return parseString(Danbooru, danbooruCSV) }),
	E621:     sync.OnceValues(func() (*Index, error) { return parseString(E621, e621CSV) }),
}

// Load returns the index of an embedded list (Danbooru or E621), building
// it on the first call (about 0.15–0.3 s and 26 MB for danbooru); later
// calls return the same index. A UI can call it in a goroutine at start-up
// so that the first keystroke finds it ready.
func Load(src Source) (*Index, error) {
	f, ok := embedded[src]
	if !ok {
		return nil, fmt.Errorf("tags: no embedded list %q (have %q, %q)", src, Danbooru, E621)
	}
	return f()
}

// Kind says what a suggestion inserts.
type Kind int

// Suggestion kinds.
const (
	KindTag Kind = iota
	KindLoRA
)

func (k Kind) String() string {
	switch k {
	case KindTag:
		return "tag"
	case KindLoRA:
		return "lora"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Suggestion is one completion offered for a fragment.
type Suggestion struct {
	Kind Kind
	// Name is the tag as its list writes it ("long_hair") or the LoRA name.
	Name string
	// Insert is the text that replaces the fragment: "long hair",
	// `ganyu \(genshin impact\)`, "<lora:name:1>".
	Insert string
	// Alias is the alias that matched, when the fragment matched an alias
	// rather than the tag itself ("" otherwise).
	Alias string
	// Category, Count and Source describe a tag; they are zero for a LoRA.
	Category Category
	Count    int
	Source   Source
}

// kaomojiSide reports whether s can be one side of an emoticon tag such as
// ^_^, o_o, >_< or (o)_(o): at most three characters and no two letters in
// a row, so that real words never qualify.
func kaomojiSide(s string) bool {
	n := 0
	prevLetter := false
	for _, r := range s {
		n++
		letter := isASCIILetter(r)
		if letter && prevLetter {
			return false
		}
		prevLetter = letter
	}
	return n >= 1 && n <= 3
}

// InsertText gives the prompt text for a tag as tagcomplete inserts it:
// underscores become spaces and the prompt syntax characters ( ) [ ] are
// escaped with a backslash, so that "ganyu_(genshin_impact)" is inserted
// as `ganyu \(genshin impact\)` and not read as emphasis. Emoticon tags such
// as ^_^ keep their underscore, where the underscore is the mouth.
func InsertText(name string) string {
	a, b, ok := strings.Cut(name, "_")
	emoticon := ok && !strings.Contains(b, "_") && kaomojiSide(a) && kaomojiSide(b)
	if !emoticon && strings.Trim(name, "_") != "" {
		name = strings.ReplaceAll(name, "_", " ")
	}
	if !strings.ContainsAny(name, "()[]") {
		return name
	}
	var sb strings.Builder
	for _, r := range name {
		switch r {
		case '(', ')', '[', ']':
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// LoRAInsert gives the prompt text that applies a LoRA: <lora:name:weight>.
func LoRAInsert(name string, weight float64) string {
	return "<lora:" + name + ":" + strconv.FormatFloat(weight, 'f', -1, 64) + ">"
}

// DefaultLimit is the number of suggestions Complete returns when the
// Completer's Limit is zero.
const DefaultLimit = 20

// Completer completes fragments against tag indexes and LoRA names. Set its
// fields before use and do not change them while Complete may run.
type Completer struct {
	// Indexes are searched together, their results merged by post count.
	Indexes []*Index
	// LoRAs are the names offered after '<' (as in <lora:…>).
	LoRAs []string
	// LoRAWeight is the weight inserted with a LoRA; 0 means 1.
	LoRAWeight float64
	// Limit bounds the suggestions; 0 means DefaultLimit.
	Limit int
}

// Complete returns the suggestions for a fragment as typed (see CurrentWord).
// A fragment starting with '<' completes LoRA names (after an optional
// "lora:" or "l:"); any other completes tags: on the tag's or an alias's
// words (tagcomplete's rule, so "hair" offers long hair), or anywhere inside
// them when it starts with '*'. Tags are ranked by post count.
func (c *Completer) Complete(fragment string) []Suggestion {
	limit := c.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	f := strings.TrimSpace(fragment)
	if f == "" {
		return nil
	}
	if rest, ok := strings.CutPrefix(f, "<"); ok {
		return c.completeLoRA(rest, limit)
	}
	q := queryText(f)
	if q == "" || q == "*" {
		return nil
	}
	var out []Suggestion
	for _, ix := range c.Indexes {
		for _, h := range ix.search(q, limit) {
			out = append(out, ix.suggestion(h))
		}
	}
	if len(c.Indexes) > 1 {
		slices.SortStableFunc(out, func(a, b Suggestion) int { return cmp.Compare(b.Count, a.Count) })
		if len(out) > limit {
			out = out[:limit]
		}
	}
	return out
}

func (c *Completer) completeLoRA(rest string, limit int) []Suggestion {
	lower := strings.ToLower(rest)
	for _, p := range []string{"lora:", "l:"} {
		if strings.HasPrefix(lower, p) {
			rest = rest[len(p):]
			break
		}
	}
	// A weight already typed (<lora:name:0.8) is not part of the name.
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	q := normalize(strings.TrimSpace(rest))
	weight := c.LoRAWeight
	if weight == 0 {
		weight = 1
	}
	var out []Suggestion
	for _, name := range c.LoRAs {
		if q != "" && !wordPrefix(normalize(name), q) {
			continue
		}
		out = append(out, Suggestion{Kind: KindLoRA, Name: name, Insert: LoRAInsert(name, weight)})
	}
	slices.SortStableFunc(out, func(a, b Suggestion) int {
		return cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// wordPrefix reports whether q matches s at its start or at the start of a
// word inside it (after a character that is not an ASCII letter).
func wordPrefix(s, q string) bool {
	prevLetter := true
	for pos, r := range s {
		if (pos == 0 || !prevLetter) && strings.HasPrefix(s[pos:], q) {
			return true
		}
		prevLetter = isASCIILetter(r)
	}
	return false
}
