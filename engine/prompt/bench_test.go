package prompt

import (
	"testing"

	"github.com/pixery/pixery/engine/tokenizer"
)

// prompt60Tags is a typical danbooru-style prompt of 60 tags with A1111
// weights and a BREAK; it makes two chunks.
const prompt60Tags = "(masterpiece:1.2), best quality, amazing quality, very aesthetic, absurdres, newest, 1girl, solo, " +
	"long hair, looking at viewer, blush, (smile:1.1), bangs, blue eyes, skirt, blonde hair, shirt, long sleeves, " +
	"hat, dress, bow, holding, very long hair, standing, full body, flower, outdoors, sky, day, cloud, " +
	"white dress, blue sky, petals, ((cherry blossoms)), wind, sunlight, light particles, depth of field, BREAK " +
	"from side, hair ribbon, frills, white thighhighs, mary janes, sun hat, hand on headwear, floating hair, " +
	"parted lips, eyelashes, upper teeth only, straw hat, spring \\(season\\), scenery, tree, branch, " +
	"wide shot, [dutch angle], lens flare, bokeh, cinematic lighting, detailed background"

func BenchmarkParseAttention60Tags(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAttention(prompt60Tags); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChunkPrompt60TagsCold(b *testing.B) {
	if _, err := tokenizer.New(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tok, _ := tokenizer.New() // empty BPE cache every time
		if _, err := ChunkPrompt(tok, prompt60Tags); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChunkPrompt60TagsWarm(b *testing.B) {
	tok, err := tokenizer.New()
	if err != nil {
		b.Fatal(err)
	}
	ChunkPrompt(tok, prompt60Tags)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ChunkPrompt(tok, prompt60Tags); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyWeights77x2048(b *testing.B) {
	emb := make([]float32, 77*2048)
	for i := range emb {
		emb[i] = float32(i%97)/97 - 0.3
	}
	w := make([]float32, 77)
	for i := range w {
		w[i] = 1 + float32(i%3)/10
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ApplyWeights(emb, 77, 2048, w); err != nil {
			b.Fatal(err)
		}
	}
}
