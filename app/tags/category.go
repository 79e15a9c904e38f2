// Package tags completes prompt tags as A1111's tagcomplete extension does:
// typing part of a danbooru or e621 tag (or of one of its aliases) offers the
// matching tags ranked by post count, with their category, and inserts the
// chosen one with spaces instead of underscores and with parentheses and
// brackets escaped. It also completes LoRA names given by the caller and finds
// the fragment being typed at the cursor.
//
// The danbooru and e621 lists that tagcomplete ships are embedded (see
// data/README.md) and indexed on first use.
package tags

import "image/color"

// Source names a tag list; it decides what the category numbers mean.
type Source string

// The embedded tag lists.
const (
	Danbooru Source = "danbooru"
	E621     Source = "e621"
)

// Category is a tag's kind (general, artist, character…) with the colours
// tagcomplete shows it in.
type Category struct {
	// ID is the number in the tag list's second column.
	ID int
	// Name is what the number means for the list's source ("character").
	Name string
	// Dark is the text colour on a dark background, Light on a light one;
	// DarkName and LightName are the CSS colour names tagcomplete uses.
	Dark, Light         color.RGBA
	DarkName, LightName string
}

type categoryDef struct {
	name                string
	darkName, lightName string
}

// cssColors holds the CSS named colours the category table uses.
var cssColors = map[string]color.RGBA{
	"red":          {0xff, 0x00, 0x00, 0xff},
	"maroon":       {0x80, 0x00, 0x00, 0xff},
	"lightblue":    {0xad, 0xd8, 0xe6, 0xff},
	"dodgerblue":   {0x1e, 0x90, 0xff, 0xff},
	"indianred":    {0xcd, 0x5c, 0x5c, 0xff},
	"firebrick":    {0xb2, 0x22, 0x22, 0xff},
	"violet":       {0xee, 0x82, 0xee, 0xff},
	"darkorchid":   {0x99, 0x32, 0xcc, 0xff},
	"lightgreen":   {0x90, 0xee, 0x90, 0xff},
	"darkgreen":    {0x00, 0x64, 0x00, 0xff},
	"orange":       {0xff, 0xa5, 0x00, 0xff},
	"darkorange":   {0xff, 0x8c, 0x00, 0xff},
	"gold":         {0xff, 0xd7, 0x00, 0xff},
	"goldenrod":    {0xda, 0xa5, 0x20, 0xff},
	"tomato":       {0xff, 0x63, 0x47, 0xff},
	"darksalmon":   {0xe9, 0x96, 0x7a, 0xff},
	"whitesmoke":   {0xf5, 0xf5, 0xf5, 0xff},
	"black":        {0x00, 0x00, 0x00, 0xff},
	"seagreen":     {0x2e, 0x8b, 0x57, 0xff},
	"darkseagreen": {0x8f, 0xbc, 0x8f, 0xff},
}

// The colour pairs are tagcomplete's default colour map (its tac_colormap
// setting: [dark theme, light theme]). tagcomplete has no entry for e621's
// contributor category (2), so it gets the fallback like any unknown number.
var categories = map[Source]map[int]categoryDef{
	Danbooru: {
		0: {"general", "lightblue", "dodgerblue"},
		1: {"artist", "indianred", "firebrick"},
		3: {"copyright", "violet", "darkorchid"},
		4: {"character", "lightgreen", "darkgreen"},
		5: {"meta", "orange", "darkorange"},
	},
	E621: {
		0: {"general", "lightblue", "dodgerblue"},
		1: {"artist", "gold", "goldenrod"},
		2: {"contributor", "red", "maroon"},
		3: {"copyright", "violet", "darkorchid"},
		4: {"character", "lightgreen", "darkgreen"},
		5: {"species", "tomato", "darksalmon"},
		6: {"invalid", "red", "maroon"},
		7: {"meta", "whitesmoke", "black"},
		8: {"lore", "seagreen", "darkseagreen"},
	},
}

// fallbackCategory is tagcomplete's "-1" entry, used for numbers the source
// does not define.
var fallbackCategory = categoryDef{"unknown", "red", "maroon"}

// CategoryOf describes category number id of the source's list. Unknown
// sources and numbers get the name "unknown" and tagcomplete's fallback
// colours.
func CategoryOf(src Source, id int) Category {
	def, ok := categories[src][id]
	if !ok {
		def = fallbackCategory
	}
	return Category{
		ID:        id,
		Name:      def.name,
		Dark:      cssColors[def.darkName],
		Light:     cssColors[def.lightName],
		DarkName:  def.darkName,
		LightName: def.lightName,
	}
}
