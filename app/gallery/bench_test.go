package gallery

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/pngmeta"
)

// The benchmarks index a gallery of benchFiles generated images. They are
// kept small (64×64 pixels: the pixels are not what indexing reads) with
// realistic metadata: 70% pixery (recipe and parameters chunks, as the
// engine writes them), 20% A1111 infotext, 10% ComfyUI graphs, prompts of
// 12–40 tags from a danbooru-like vocabulary plus quality tags.
const benchFiles = 10000

var benchVocab = strings.Fields(`1girl 1boy solo long_hair short_hair blonde_hair black_hair brown_hair silver_hair
red_hair blue_eyes red_eyes green_eyes purple_eyes smile open_mouth closed_eyes looking_at_viewer blush
school_uniform serafuku dress skirt shirt jacket hoodie kimono armor witch_hat hat hair_ornament hair_ribbon
ribbon bow earrings necklace gloves thighhighs boots outdoors indoors night day sunset sky cloud night_sky
starry_sky moon city cityscape street rain snow forest tree flower cherry_blossoms beach ocean water
castle ruins fantasy science_fiction mecha robot cat dog animal_ears cat_ears tail wings halo sword weapon
holding holding_sword book umbrella upper_body full_body cowboy_shot portrait from_side from_above
depth_of_field blurry_background bokeh lens_flare light_rays sunlight backlighting cinematic_lighting
watercolor_(medium) oil_painting_(medium) sketch monochrome greyscale realistic photorealistic`)

var benchQuality = []string{"masterpiece", "best quality", "amazing quality", "very aesthetic", "absurdres", "newest", "score_9", "score_8_up"}

var benchModels = []string{"animagine-xl-4.0", "noobai-xl-1.1", "ponyDiffusionV6XL", "illustrious-xl-v1.0", "juggernautXL_v9", "sd_xl_base_1.0"}

var benchNegative = "lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg artifacts, low quality, watermark, unfinished, displeasing, oldest, early, chromatic aberration, signature, extra digits, artistic error, username, scan, [abstract]"

func benchPrompt(r *rand.Rand) string {
	n := 12 + r.IntN(29)
	parts := slices.Clone(benchQuality[:2+r.IntN(4)])
	for range n {
		parts = append(parts, strings.ReplaceAll(benchVocab[r.IntN(len(benchVocab))], "_", " "))
	}
	return strings.Join(parts, ", ")
}

// benchImage makes file i of the generated gallery.
func benchImage(tb testing.TB, r *rand.Rand, i int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for p := 0; p < len(img.Pix); p += 4 {
		img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = uint8(r.IntN(256)), uint8(p), uint8(i), 255
	}
	m := meta{prompt: benchPrompt(r), negative: benchNegative, model: benchModels[r.IntN(len(benchModels))],
		seed: r.Int64N(1 << 32), steps: 20 + r.IntN(20), cfg: float64(4+r.IntN(7)) / 1.0, sampler: "euler_a"}
	switch k := i % 10; {
	case k < 7:
		rc := &pngmeta.Recipe{Model: m.model, Prompt: m.prompt, NegativePrompt: m.negative, Width: 832, Height: 1216,
			Steps: m.steps, CFG: m.cfg, Sampler: "dpmpp_2m_karras", Seed: m.seed, RNG: pngmeta.RNGA1111, Generator: "pixery 0.1.0"}
		if r.IntN(3) == 0 {
			rc.LoRAs = []pngmeta.LoRA{{Name: "add_detail", Scale: 0.6, Hash: "0123456789ab"}}
		}
		data, err := pngmeta.EncodeBytes(img, rc)
		if err != nil {
			tb.Fatal(err)
		}
		return data
	case k < 9:
		m.sampler, m.scheduler = "DPM++ 2M", "Karras"
		return encodePNG(tb, img, tEXt("parameters", a1111Params(m, 832, 1216, ", Version: v1.10.1")))
	default:
		m.sampler, m.scheduler = "euler_ancestral", "normal"
		m.loras = []LoRA{{"detail_slider", 0.8}}
		return encodePNG(tb, img, tEXt("prompt", comfyGraph(tb, m, 832, 1216)))
	}
}

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

// benchGallery generates the gallery once per test binary run.
func benchGallery(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "pixery-gallery-bench-")
		if benchErr != nil {
			return
		}
		r := rand.New(rand.NewPCG(1, 2))
		t0 := time.Now()
		for i := range benchFiles {
			writeAt(b, benchDir, fmt.Sprintf("%s/%05d.png", time.Date(2025, 1, 1+i/500, 0, 0, 0, 0, time.UTC).Format("2006-01-02"), i),
				benchImage(b, r, i), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Minute))
		}
		b.Logf("generated %d files in %v", benchFiles, time.Since(t0))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIndexFromScratch opens a gallery of 10,000 files with an empty
// cache and syncs it: what the first start (or a deleted cache) costs.
func BenchmarkIndexFromScratch(b *testing.B) {
	dir := benchGallery(b)
	ctx := context.Background()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		cache := b.TempDir()
		b.StartTimer()
		c0 := cpuTime()
		s, err := Open(dir, cache)
		if err != nil {
			b.Fatal(err)
		}
		res, err := s.Sync(ctx)
		if err != nil || len(res.Added) != benchFiles {
			b.Fatalf("sync: %v, %d added", err, len(res.Added))
		}
		cpu += cpuTime() - c0
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchFiles)/b.Elapsed().Seconds()*float64(b.N), "files/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkIncrementalSync adds 100 new files to the indexed 10,000 and
// syncs; the files are removed again (untimed) after each round.
func BenchmarkIncrementalSync(b *testing.B) {
	dir := benchGallery(b)
	ctx := context.Background()
	s, err := Open(dir, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	extra := make([][]byte, 100)
	for i := range extra {
		extra[i] = benchImage(b, r, i)
	}
	for b.Loop() {
		b.StopTimer()
		for i, data := range extra {
			writeAt(b, dir, fmt.Sprintf("zz-new/%03d.png", i), data, time.Time{})
		}
		b.StartTimer()
		res, err := s.Sync(ctx)
		if err != nil || len(res.Added) != len(extra) || res.Unchanged != benchFiles {
			b.Fatalf("sync: %v, %d added, %d unchanged", err, len(res.Added), res.Unchanged)
		}
		b.StopTimer()
		os.RemoveAll(filepath.Join(dir, "zz-new"))
		if res, err := s.Sync(ctx); err != nil || len(res.Removed) != len(extra) {
			b.Fatalf("cleanup sync: %v %+v", err, len(res.Removed))
		}
		b.StartTimer()
	}
}

// BenchmarkNoChangeSync is one Watch poll over the 10,000 indexed files
// when nothing changed.
func BenchmarkNoChangeSync(b *testing.B) {
	dir := benchGallery(b)
	ctx := context.Background()
	s, err := Open(dir, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if res, err := s.Sync(ctx); err != nil || res.Changed() {
			b.Fatalf("sync: %v %+v", err, res.Changed())
		}
	}
}

// BenchmarkSearch runs full-text and filter queries over the 10,000
// indexed images, a page of 100 results each (a grid's first screenfuls),
// and reports the latency distribution over all queries.
func BenchmarkSearch(b *testing.B) {
	dir := benchGallery(b)
	ctx := context.Background()
	s, err := Open(dir, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	seed := int64(12345)
	queries := []Query{
		{Text: "castle"},
		{Text: "hai"},
		{Text: "long hair blue eyes"},
		{Text: "long_hair"},
		{Text: `"witch hat" night`},
		{Text: "smile -sword"},
		{Text: "sword", Model: "ponyDiffusionV6XL"},
		{Text: "cat ears", Order: Relevance},
		{Model: "noobai-xl-1.1"},
		{Seed: &seed},
		{From: time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 1, 4, 0, 0, 0, 0, time.UTC)},
		{},
		{Text: "zzzz"},
	}
	for i := range queries {
		queries[i].Limit = 100
	}
	var lat []time.Duration
	hits := 0
	for b.Loop() {
		for _, q := range queries {
			t0 := time.Now()
			items, err := s.Search(ctx, q)
			lat = append(lat, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			hits += len(items)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "p99-ms")
	b.ReportMetric(float64(hits)/float64(len(lat)), "hits/query")
}

// writeLargeImages writes n 832×1216 images (smooth shapes with grain, so
// the PNGs are about as large as generated images, ~1 MB) with pixery
// metadata, and returns their mean size in bytes.
func writeLargeImages(b *testing.B, dir string, n int) float64 {
	var total int64
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 832, 1216))
		r := rand.New(rand.NewPCG(uint64(i), 9))
		for y := 0; y < 1216; y++ {
			for x := 0; x < 832; x++ {
				g := uint8(r.IntN(12))
				img.SetRGBA(x, y, color.RGBA{uint8(x/4+y/8) + g, uint8(128+y/10) + g, uint8((x*y)>>12) + g, 255})
			}
		}
		m := meta{prompt: benchPrompt(r), negative: benchNegative, model: "animagine-xl-4.0", seed: int64(i), steps: 28, cfg: 5, sampler: "euler_a"}
		data := encodePNG(b, img, pixeryChunks(b, m, 832, 1216, nil)...)
		total += int64(len(data))
		writeAt(b, dir, fmt.Sprintf("t%d.png", i), data, time.Time{})
	}
	return float64(total) / float64(n)
}

// BenchmarkIndexLargeFiles indexes full-size images: the image data is
// skipped over, not read, so a file costs about what a small one does.
func BenchmarkIndexLargeFiles(b *testing.B) {
	dir := b.TempDir()
	const n = 40
	mean := writeLargeImages(b, dir, n)
	b.Logf("%d PNGs of 832x1216, %.2f MB each", n, mean/1e6)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		cache := b.TempDir()
		b.StartTimer()
		s, err := Open(dir, cache)
		if err != nil {
			b.Fatal(err)
		}
		if res, err := s.Sync(ctx); err != nil || len(res.Added) != n {
			b.Fatalf("sync: %v, %d added", err, len(res.Added))
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds()*float64(b.N), "files/s")
}

// BenchmarkThumbnails makes thumbnails of 832×1216 images from scratch,
// one at a time and two at a time (the machine's cores).
func BenchmarkThumbnails(b *testing.B) {
	dir := b.TempDir()
	const n = 8
	mean := writeLargeImages(b, dir, n)
	b.Logf("%d PNGs of 832x1216, %.2f MB each", n, mean/1e6)
	for _, par := range []int{1, 2} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) {
			ctx := context.Background()
			var made int
			for b.Loop() {
				b.StopTimer()
				s, err := Open(dir, b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var wg sync.WaitGroup
				for w := range par {
					wg.Go(func() {
						for i := w; i < n; i += par {
							if _, err := s.Thumbnail(ctx, fmt.Sprintf("t%d.png", i)); err != nil {
								b.Error(err)
							}
						}
					})
				}
				wg.Wait()
				made += n
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(made)/b.Elapsed().Seconds(), "thumbs/s")
		})
	}
}
