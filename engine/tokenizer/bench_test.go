package tokenizer

import "testing"

// Prompt60Tags is a typical danbooru-style prompt of 60 tags.
const Prompt60Tags = "masterpiece, best quality, amazing quality, very aesthetic, absurdres, newest, 1girl, solo, " +
	"long hair, looking at viewer, blush, smile, bangs, blue eyes, skirt, blonde hair, shirt, long sleeves, " +
	"hat, dress, bow, holding, very long hair, standing, full body, flower, outdoors, sky, day, cloud, " +
	"white dress, blue sky, petals, cherry blossoms, wind, sunlight, light particles, depth of field, " +
	"from side, hair ribbon, frills, white thighhighs, mary janes, sun hat, hand on headwear, floating hair, " +
	"parted lips, eyelashes, upper teeth only, straw hat, spring (season), scenery, tree, branch, " +
	"wide shot, dutch angle, lens flare, bokeh, cinematic lighting, detailed background"

func BenchmarkEncode60TagsCold(b *testing.B) {
	if _, err := New(); err != nil { // parse the vocabulary outside the timing
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tok, _ := New() // empty BPE cache every time
		if _, err := tok.Encode(Prompt60Tags); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode60TagsWarm(b *testing.B) {
	tok, err := New()
	if err != nil {
		b.Fatal(err)
	}
	tok.Encode(Prompt60Tags)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Encode(Prompt60Tags); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadVocabulary is the one-time cost of the first New.
func BenchmarkLoadVocabulary(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseVocab(vocabGz); err != nil {
			b.Fatal(err)
		}
	}
}
