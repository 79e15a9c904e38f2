package galleryview

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/pngmeta"
)

// The benchmarks build the view over a gallery of benchFiles generated
// images, indexed by a real Store: 64×64-pixel PNGs (the grid shows
// thumbnails, which the Store makes from them on first use) with realistic
// metadata — 70 % pixery, 20 % A1111, 10 % ComfyUI; prompts of 12–40 tags.
const benchFiles = 10000

var benchTags = strings.Fields(`1girl 1boy solo long_hair short_hair blonde_hair black_hair silver_hair blue_eyes
red_eyes green_eyes smile open_mouth looking_at_viewer school_uniform dress skirt jacket hoodie kimono armor witch_hat
hair_ribbon earrings gloves boots outdoors indoors night day sunset sky cloud starry_sky moon city street rain snow
forest tree flower cherry_blossoms beach ocean castle ruins fantasy mecha robot cat dog cat_ears tail wings sword
umbrella upper_body full_body portrait from_side depth_of_field bokeh light_rays sunlight cinematic_lighting
watercolor_(medium) sketch monochrome realistic`)

var benchModelNames = []string{"animagine-xl-4.0", "noobai-xl-1.1", "ponyDiffusionV6XL", "illustrious-xl-v1.0", "juggernautXL_v9", "sd_xl_base_1.0"}

func benchPromptText(r *rand.Rand) string {
	parts := []string{"masterpiece", "best quality"}
	for range 12 + r.IntN(29) {
		parts = append(parts, strings.ReplaceAll(benchTags[r.IntN(len(benchTags))], "_", " "))
	}
	return strings.Join(parts, ", ")
}

func benchPNG(tb testing.TB, r *rand.Rand, i int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for p := 0; p < len(img.Pix); p += 4 {
		img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = uint8(r.IntN(256)), uint8(p), uint8(i), 255
	}
	prompt, model := benchPromptText(r), benchModelNames[r.IntN(len(benchModelNames))]
	seed, steps, cfg := r.Int64N(1<<32), 20+r.IntN(20), float64(4+r.IntN(7))
	switch k := i % 10; {
	case k < 7:
		data, err := pngmeta.EncodeBytes(img, &pngmeta.Recipe{Model: model, Prompt: prompt, NegativePrompt: "lowres, worst quality",
			Width: 832, Height: 1216, Steps: steps, CFG: cfg, Sampler: "dpmpp_2m_karras", Seed: seed, RNG: pngmeta.RNGA1111})
		if err != nil {
			tb.Fatal(err)
		}
		return data
	case k < 9:
		return encodePNG(tb, img, tEXt("parameters", a1111Text(prompt, "lowres, worst quality", steps, "DPM++ 2M", "Karras", cfg, seed, 832, 1216, model)))
	default:
		return encodePNG(tb, img, tEXt("prompt", comfyPrompt(tb, prompt, "lowres", model, seed, steps, cfg, "euler_ancestral", "normal", 832, 1216, "detail_slider", 0.8)))
	}
}

var (
	benchOnce  sync.Once
	benchRoot  string
	benchStore *gallery.Store
	benchErr   error
)

// benchGallery generates and indexes the gallery once per test binary.
func benchGallery(b *testing.B) *gallery.Store {
	benchOnce.Do(func() {
		benchRoot, benchErr = os.MkdirTemp("", "pixery-galleryview-bench-")
		if benchErr != nil {
			return
		}
		dir := filepath.Join(benchRoot, "gallery")
		r := rand.New(rand.NewPCG(7, 8))
		t0 := time.Now()
		base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range benchFiles {
			writeAt(b, dir, fmt.Sprintf("%s/%05d.png", base.AddDate(0, 0, i/500).Format("2006-01-02"), i), benchPNG(b, r, i), base.Add(time.Duration(i)*time.Minute))
		}
		gen := time.Since(t0)
		if benchStore, benchErr = gallery.Open(dir, filepath.Join(benchRoot, "cache")); benchErr != nil {
			return
		}
		t0 = time.Now()
		res, err := benchStore.Sync(context.Background())
		if err != nil || len(res.Added) != benchFiles {
			benchErr = fmt.Errorf("sync: %v, %d added", err, len(res.Added))
			return
		}
		b.Logf("generated %d files in %v, indexed in %v", benchFiles, gen, time.Since(t0))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchStore
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore != nil {
		benchStore.Close()
	}
	if benchRoot != "" {
		os.RemoveAll(benchRoot)
	}
	os.Exit(code)
}

// uiClock runs the UI queue and adds up the time spent in it: the work the
// view puts on the UI goroutine.
type uiClock struct {
	q     UIQueue
	spent time.Duration
}

func (c *uiClock) settle(b *testing.B, v *View) {
	deadline := time.Now().Add(120 * time.Second)
	for {
		busy := v.Busy()
		t0 := time.Now()
		ran := c.q.Run()
		c.spent += time.Since(t0)
		if !ran && !busy {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("view still busy after 120 s")
		}
		if busy {
			time.Sleep(200 * time.Microsecond)
		}
	}
}

// benchView builds the view in a 1100×750 test window (6 columns of cells)
// and times every UpdateItem.
func benchView(b *testing.B, s *gallery.Store, clock *uiClock) (*View, fyne.Window, *[]time.Duration) {
	v := New(Deps{Store: s, Do: clock.q.Do})
	var updates []time.Duration
	inner := v.grid.UpdateItem
	v.grid.UpdateItem = func(i int, o fyne.CanvasObject) {
		t0 := time.Now()
		inner(i, o)
		updates = append(updates, time.Since(t0))
	}
	// Not a temp window: BenchmarkOpen closes its own, and the test driver
	// panics on a second Close.
	w := test.NewWindow(v.Content())
	b.Cleanup(v.Close)
	t0 := time.Now()
	w.Resize(fyne.NewSize(1100, 750))
	clock.spent += time.Since(t0)
	return v, w, &updates
}

func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// BenchmarkOpen builds the view over the 10,000 images until the first
// screen has its captions and thumbnails.
func BenchmarkOpen(b *testing.B) {
	s := benchGallery(b)
	test.NewTempApp(b)
	var ui time.Duration
	var heap float64
	for b.Loop() {
		clock := &uiClock{}
		v, w, _ := benchView(b, s, clock)
		clock.settle(b, v)
		ui += clock.spent
		if v.Grid.Length() != benchFiles {
			b.Fatalf("grid length %d", v.Grid.Length())
		}
		b.StopTimer()
		heap = heapMB()
		v.Close()
		w.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(ui.Microseconds())/1e3/float64(b.N), "ui-ms/op")
	b.ReportMetric(heap, "heap-MB")
}

// BenchmarkScroll jumps with ScrollTo through the whole 10,000-image grid
// (40 jumps spread over it, then back to the top), waiting at each jump
// until the screen shows its captions and thumbnails. The first pass makes
// the thumbnails (the Store's JPEG cache is empty for most images); later
// passes read them from the Store's cache.
func BenchmarkScroll(b *testing.B) {
	s := benchGallery(b)
	test.NewTempApp(b)
	clock := &uiClock{}
	v, w, updates := benchView(b, s, clock)
	b.Cleanup(w.Close)
	clock.settle(b, v)
	const jumps = 40
	var scrollCall, settleTime []time.Duration
	clock.spent = 0
	*updates = (*updates)[:0]
	for b.Loop() {
		for j := 0; j <= jumps; j++ {
			target := j * (benchFiles - 1) / jumps
			if j == jumps {
				target = 0
			}
			t0 := time.Now()
			v.Grid.ScrollTo(target)
			d := time.Since(t0)
			scrollCall = append(scrollCall, d)
			clock.spent += d
			clock.settle(b, v)
			settleTime = append(settleTime, time.Since(t0))
		}
		b.StopTimer()
		// The screen shows the target's captions, not placeholders.
		for _, o := range test.LaidOutObjects(v.grid) {
			if c, ok := o.(*cell); ok && c.Visible() && (c.full == "…" || c.full == "") {
				b.Fatalf("cell %d still waiting after settling", c.index)
			}
		}
		b.StartTimer()
	}
	n := float64(len(scrollCall))
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/n, "ms/jump")
	b.ReportMetric(float64(percentile(scrollCall, 50).Microseconds())/1e3, "scrollto-p50-ms")
	b.ReportMetric(float64(percentile(scrollCall, 99).Microseconds())/1e3, "scrollto-max-ms")
	b.ReportMetric(float64(percentile(settleTime, 50).Microseconds())/1e3, "filled-p50-ms")
	b.ReportMetric(float64(clock.spent.Microseconds())/1e3/n, "ui-ms/jump")
	b.ReportMetric(float64(percentile(*updates, 50).Nanoseconds())/1e3, "updateitem-p50-us")
	b.ReportMetric(float64(percentile(*updates, 99).Nanoseconds())/1e3, "updateitem-p99-us")
	b.ReportMetric(float64(len(*updates))/n, "updates/jump")
	v.mu.Lock()
	b.ReportMetric(float64(len(v.pages)), "pages-held")
	b.ReportMetric(float64(v.thumbs.len()), "thumbs-held")
	v.mu.Unlock()
	b.ReportMetric(heapMB(), "heap-MB")
}

// BenchmarkSearch runs queries through the view (as the debounced search
// box does, without the 150 ms wait) until the grid shows the results.
func BenchmarkSearch(b *testing.B) {
	s := benchGallery(b)
	test.NewTempApp(b)
	clock := &uiClock{}
	v, w, _ := benchView(b, s, clock)
	b.Cleanup(w.Close)
	clock.settle(b, v)
	queries := []string{"castle", "hai", "long_hair blue_eyes", "\"witch hat\" night", "smile -sword", "zzzz", ""}
	var lat []time.Duration
	for b.Loop() {
		for _, q := range queries {
			t0 := time.Now()
			v.mu.Lock()
			v.filter.text = q
			v.mu.Unlock()
			v.reloadTop()
			clock.settle(b, v)
			lat = append(lat, time.Since(t0))
		}
	}
	b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1e3, "max-ms")
}
