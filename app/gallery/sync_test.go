package gallery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	pixeryMeta = meta{prompt: "masterpiece, 1girl, long hair, blue eyes", negative: "lowres, bad hands",
		model: "animagine-xl-3.1", seed: 1234567890123, steps: 28, cfg: 7, sampler: "euler_a",
		loras: []LoRA{{"add_detail", 0.6}}}
	a1111Meta = meta{prompt: "a cozy cabin in the woods, snow, <lora:watercolor_v2:0.8>", negative: "blurry",
		model: "ponyDiffusionV6XL", seed: 987654321, steps: 20, cfg: 6.5, sampler: "DPM++ 2M", scheduler: "Karras",
		loras: []LoRA{{"watercolor_v2", 0.8}}}
	comfyMeta = meta{prompt: "a castle on a hill at sunset", negative: "people", model: "juggernautXL_v9",
		seed: 42, steps: 25, cfg: 5.5, sampler: "euler_ancestral", scheduler: "normal", loras: []LoRA{{"ink", 0.7}}}
)

var refSHA = strings.Repeat("ab", 32)

// writeSourcesGallery writes one image of each source, files that are not
// indexed, and broken files; it returns the IDs of the broken ones.
func writeSourcesGallery(t *testing.T, dir string) (bad []string) {
	t.Helper()
	when := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	good := map[string][]byte{
		"pix.png": makePNG(t, 64, 48, 1, pixeryChunks(t, pixeryMeta, 64, 48, map[string]any{
			"model_hash": "aaaa",
			"ip_adapter": map[string]any{"adapter": "ip-adapter_sdxl", "scale": 0.5, "image_sha256": refSHA},
		})...),
		"sub/a1111.png":        makePNG(t, 40, 56, 2, tEXt("parameters", a1111Params(a1111Meta, 40, 56, ", RNG: CPU"))),
		"sub/deeper/comfy.PNG": makePNG(t, 32, 32, 3, tEXt("prompt", comfyGraph(t, comfyMeta, 32, 32)), zTXt("workflow", `{"nodes":[],"links":[]}`)),
		"plain.png":            makePNG(t, 16, 16, 4),
		// Indexed, with the metadata problem noted: infotext over pngmeta's
		// 1 MiB bound.
		"long-params.png": makePNG(t, 16, 16, 10, tEXt("parameters", strings.Repeat("y", 2<<20))),
		// Never indexed: other extensions, hidden files, the trash.
		"notes.txt":      []byte("hello"),
		".hidden.png":    makePNG(t, 8, 8, 5),
		".trash/old.png": makePNG(t, 8, 8, 6),
	}
	broken := map[string][]byte{
		"truncated.png":     trimEnd(makePNG(t, 64, 64, 7), 30),
		"text.png":          []byte("this is not a PNG at all"),
		"empty.png":         nil,
		"badcrc.png":        makePNG(t, 16, 16, 8, chunk{typ: "tEXt", data: []byte("parameters\x00x"), badCRC: true}),
		"garbage-chunk.png": makePNG(t, 16, 16, 9, chunk{typ: "t\x00\xffT", data: []byte("junk")}),
		"huge-text.png":     makePNG(t, 16, 16, 11, tEXt("comment", strings.Repeat("x", 17<<20))),
		// Each chunk within pngmeta's bound, too much text in all.
		"many-texts.png": makePNG(t, 16, 16, 12, tEXt("a", strings.Repeat("x", 12<<20)), tEXt("b", strings.Repeat("x", 12<<20)), tEXt("c", strings.Repeat("x", 12<<20))),
	}
	for rel, data := range good {
		writeAt(t, dir, rel, data, when)
	}
	for rel, data := range broken {
		writeAt(t, dir, rel, data, when)
		bad = append(bad, rel)
	}
	slices.Sort(bad)
	return bad
}

func TestSyncReadsEverySource(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	bad := writeSourcesGallery(t, dir)
	res, err := s.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantAdded := []string{"long-params.png", "pix.png", "plain.png", "sub/a1111.png", "sub/deeper/comfy.PNG"}
	if !slices.Equal(res.Added, wantAdded) {
		t.Fatalf("Added = %q, want %q", res.Added, wantAdded)
	}
	var probIDs []string
	for _, p := range res.Problems {
		probIDs = append(probIDs, p.ID)
		if p.Indexed != (p.ID == "long-params.png") {
			t.Errorf("problem %s: Indexed = %v", p.ID, p.Indexed)
		}
		t.Logf("problem %s: %s", p.ID, p.Err)
	}
	slices.Sort(probIDs)
	if want := append(slices.Clone(bad), "long-params.png"); !slices.Equal(probIDs, slices.Sorted(slices.Values(want))) {
		t.Errorf("problems %q, want %q", probIDs, want)
	}
	stored, err := s.Problems(ctx)
	if err != nil || len(stored) != len(bad)+1 {
		t.Errorf("Problems() = %d entries (%v), want %d", len(stored), err, len(bad)+1)
	}

	get := func(id string) Item {
		t.Helper()
		it, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if it.Path != filepath.Join(dir, filepath.FromSlash(id)) {
			t.Errorf("%s: Path %s", id, it.Path)
		}
		return it
	}
	check := func(id string, it Item, src Source, m meta, w, h int) {
		t.Helper()
		if it.Source != src || it.Prompt != m.prompt || it.Negative != m.negative || it.Model != m.model ||
			!it.HasSeed || it.Seed != m.seed || it.Steps != m.steps || it.CFG != m.cfg ||
			it.Sampler != m.sampler || it.Scheduler != m.scheduler || it.Width != w || it.Height != h ||
			!reflect.DeepEqual(it.LoRAs, m.loras) {
			t.Errorf("%s = %+v\nwant %s %+v %dx%d", id, it, src, m, w, h)
		}
	}
	px := get("pix.png")
	check("pix.png", px, SourcePixery, pixeryMeta, 64, 48)
	if px.RefSHA256 != refSHA || px.RefScale != 0.5 || px.IPAdapter != "ip-adapter_sdxl" || px.ModelHash != "aaaa" || px.RNG != "a1111" {
		t.Errorf("pixery extras: %+v", px)
	}
	a1 := get("sub/a1111.png")
	check("sub/a1111.png", a1, SourceA1111, a1111Meta, 40, 56)
	if a1.RNG != "CPU" || a1.ModelHash != "0123456789" {
		t.Errorf("a1111 extras: RNG %q hash %q", a1.RNG, a1.ModelHash)
	}
	check("sub/deeper/comfy.PNG", get("sub/deeper/comfy.PNG"), SourceComfyUI, comfyMeta, 32, 32)
	plain := get("plain.png")
	if plain.Source != SourceUnknown || plain.HasSeed || plain.Prompt != "" || plain.Width != 16 {
		t.Errorf("plain = %+v", plain)
	}
	if lp := get("long-params.png"); lp.Source != SourceUnknown {
		t.Errorf("long-params source %s", lp.Source)
	}
	for _, id := range append(bad, "notes.txt", ".hidden.png", ".trash/old.png") {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", id, err)
		}
	}

	// A second Sync reads nothing again, the broken files included.
	res, err = s.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() || len(res.Problems) != 0 || res.Unchanged != len(wantAdded) {
		t.Errorf("second Sync: %+v", res)
	}
}

func TestIncrementalSync(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	base := time.Date(2025, 5, 1, 8, 0, 0, 0, time.UTC)
	m := pixeryMeta
	for i := range 20 {
		m.seed = int64(i)
		writeAt(t, dir, "batch/"+string(rune('a'+i))+".png", makePNG(t, 16, 16, i, pixeryChunks(t, m, 16, 16, nil)...), base.Add(time.Duration(i)*time.Minute))
	}
	writeAt(t, dir, "broken.png", []byte("nope"), base)
	if res, err := s.Sync(ctx); err != nil || len(res.Added) != 20 {
		t.Fatalf("first Sync: %v %+v", err, res)
	}

	// Change one (new content and time), remove one, add two, fix the
	// broken one.
	m.seed, m.prompt = 999, "a completely new prompt about dragons"
	writeAt(t, dir, "batch/c.png", makePNG(t, 16, 16, 99, pixeryChunks(t, m, 16, 16, nil)...), base.Add(time.Hour))
	if err := os.Remove(filepath.Join(dir, "batch", "f.png")); err != nil {
		t.Fatal(err)
	}
	writeAt(t, dir, "new/x.png", makePNG(t, 16, 16, 50), base)
	writeAt(t, dir, "new/y.png", makePNG(t, 16, 16, 51), base)
	writeAt(t, dir, "broken.png", makePNG(t, 16, 16, 52), base.Add(time.Hour))
	res, err := s.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"broken.png", "new/x.png", "new/y.png"}; !slices.Equal(res.Added, want) {
		t.Errorf("Added %q, want %q", res.Added, want)
	}
	if !slices.Equal(res.Updated, []string{"batch/c.png"}) || !slices.Equal(res.Removed, []string{"batch/f.png"}) || res.Unchanged != 18 {
		t.Errorf("Updated %q Removed %q Unchanged %d", res.Updated, res.Removed, res.Unchanged)
	}
	it, err := s.Get(ctx, "batch/c.png")
	if err != nil || it.Seed != 999 || it.Prompt != m.prompt {
		t.Errorf("updated item: %+v %v", it, err)
	}
	if got, _ := s.Search(ctx, Query{Text: "dragons"}); !slices.Equal(ids(got), []string{"batch/c.png"}) {
		t.Errorf("search for the new prompt: %q", ids(got))
	}
	if got, _ := s.Search(ctx, Query{Text: "masterpiece"}); len(got) != 18 {
		t.Errorf("old prompt still indexed for %d items, want 18", len(got))
	}
	if probs, _ := s.Problems(ctx); len(probs) != 0 {
		t.Errorf("fixed file still listed as a problem: %+v", probs)
	}
	if n, _ := s.Count(ctx, Query{}); n != 22 { // 20 - f + broken, x, y
		t.Errorf("Count = %d, want 22", n)
	}
	checkFTS(t, s)
}

func TestRebuildFromFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "g")
	cache := filepath.Join(t.TempDir(), "c")
	ctx := context.Background()
	s, err := Open(dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	writeSourcesGallery(t, dir)
	gen := writeSearchGallery(t, dir)
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	queries := []Query{{}, {Text: "hair"}, {Model: gen[0].model}, {Text: "castle"}, {Order: Oldest, Limit: 7, Offset: 3}}
	var before [][]Item
	for _, q := range queries {
		items, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, items)
	}
	probsBefore, _ := s.Problems(ctx)
	if _, err := s.Thumbnail(ctx, "pix.png"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.Count(ctx, Query{}); n != 0 {
		t.Fatalf("fresh index has %d items", n)
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i, q := range queries {
		after, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) == 0 || !reflect.DeepEqual(after, before[i]) {
			t.Errorf("query %+v after rebuild: %d items, before %d (equal: %v)", q, len(after), len(before[i]), reflect.DeepEqual(after, before[i]))
		}
	}
	if probsAfter, _ := s.Problems(ctx); !reflect.DeepEqual(probsAfter, probsBefore) {
		t.Errorf("problems after rebuild %+v, before %+v", probsAfter, probsBefore)
	}
	if p, err := s.Thumbnail(ctx, "pix.png"); err != nil || !strings.HasPrefix(p, cache) {
		t.Errorf("thumbnail after rebuild: %s %v", p, err)
	}
}

func TestCorruptIndexIsRebuilt(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage":     []byte(strings.Repeat("not a database ", 1000)),
		"other-db":    nil, // filled below with a database of another layout
		"old-version": nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir, cache := t.TempDir(), t.TempDir()
			writeAt(t, dir, "a.png", makePNG(t, 16, 16, 1, pixeryChunks(t, pixeryMeta, 16, 16, nil)...), time.Time{})
			idx := filepath.Join(cache, indexFile)
			switch name {
			case "garbage":
				if err := os.WriteFile(idx, content, 0o644); err != nil {
					t.Fatal(err)
				}
			case "other-db", "old-version":
				db, err := tryOpenIndex(idx)
				if err != nil {
					t.Fatal(err)
				}
				stmt := "CREATE TABLE something(x)"
				if name == "old-version" {
					stmt = "PRAGMA user_version = 99"
				}
				if _, err := db.Exec(stmt); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			s, err := Open(dir, cache)
			if err != nil {
				t.Fatalf("Open over a %s index: %v", name, err)
			}
			defer s.Close()
			if _, err := s.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Search(context.Background(), Query{Text: "masterpiece"}); len(got) != 1 {
				t.Errorf("after rebuilding a %s index: %d results", name, len(got))
			}
		})
	}
}

func TestWatchNoticesExternalChanges(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan SyncResult, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, 20*time.Millisecond, func(r SyncResult, err error) {
			if err != nil {
				t.Errorf("watch: %v", err)
				return
			}
			events <- r
		})
	}()
	wait := func(what string, ok func(SyncResult) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r := <-events:
				if ok(r) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s reported", what)
			}
		}
	}
	writeAt(t, dir, "ext/new.png", makePNG(t, 16, 16, 1, pixeryChunks(t, pixeryMeta, 16, 16, nil)...), time.Time{})
	wait("addition", func(r SyncResult) bool { return slices.Contains(r.Added, "ext/new.png") })
	// Saving through the store is indexed at once, so the watcher reports
	// it as nothing new.
	it, err := s.Save(ctx, makePNG(t, 16, 16, 2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "ext", "new.png")); err != nil {
		t.Fatal(err)
	}
	wait("removal", func(r SyncResult) bool {
		if slices.Contains(r.Added, it.ID) {
			t.Errorf("watch reported the store's own Save of %s", it.ID)
		}
		return slices.Contains(r.Removed, "ext/new.png")
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch returned %v", err)
	}
}

func TestConcurrentSaveDeleteAndSync(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var syncErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Sync(ctx); err != nil {
				syncErr = err
				return
			}
		}
	})
	var kept, deleted []string
	var mu sync.Mutex
	var saveWG sync.WaitGroup
	for w := range 4 {
		saveWG.Go(func() {
			for i := range 8 {
				m := pixeryMeta
				m.seed = int64(w*100 + i)
				it, err := s.Save(ctx, makePNG(t, 16, 16, w*10+i, pixeryChunks(t, m, 16, 16, nil)...), nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if i%3 == 0 {
					mu.Unlock()
					if err := s.Delete(ctx, it.ID); err != nil {
						t.Error(err)
					}
					mu.Lock()
					deleted = append(deleted, it.ID)
				} else {
					kept = append(kept, it.ID)
				}
				mu.Unlock()
			}
		})
	}
	saveWG.Wait()
	close(stop)
	wg.Wait()
	if syncErr != nil {
		t.Fatal(syncErr)
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := s.Search(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	got := ids(all)
	slices.Sort(got)
	slices.Sort(kept)
	if !slices.Equal(got, kept) {
		t.Errorf("index holds %d items %q,\nwant the %d kept %q", len(got), got, len(kept), kept)
	}
	if len(deleted) == 0 {
		t.Fatal("nothing deleted")
	}
	checkFTS(t, s)
}

func TestOpenAndClose(t *testing.T) {
	tmp := t.TempDir()
	file := writeAt(t, tmp, "file", []byte("x"), time.Time{})
	if _, err := Open(file, filepath.Join(tmp, "c1")); err == nil {
		t.Error("Open on a file succeeded")
	}
	if _, err := Open(filepath.Join(tmp, "g"), filepath.Join(tmp, "g", "cache")); err == nil {
		t.Error("Open with the cache inside the gallery succeeded")
	}
	if _, err := Open("", tmp); err == nil {
		t.Error("Open without a folder succeeded")
	}
	s, err := Open(filepath.Join(tmp, "g"), filepath.Join(tmp, "g", ".cache"))
	if err != nil {
		t.Fatalf("Open with a hidden cache inside the gallery: %v", err)
	}
	writeAt(t, filepath.Join(tmp, "g"), "a.png", makePNG(t, 8, 8, 1), time.Time{})
	if res, err := s.Sync(context.Background()); err != nil || !slices.Equal(res.Added, []string{"a.png"}) {
		t.Errorf("Sync with the cache inside: %+v %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sync(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(context.Background(), Query{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Search after Close: %v", err)
	}
	if _, err := s.Save(context.Background(), makePNG(t, 8, 8, 1), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
