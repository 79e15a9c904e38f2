package gallery

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/pngmeta"
)

// listFiles lists every file below dir, hidden ones included.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

func testRecipe() *pngmeta.Recipe {
	return &pngmeta.Recipe{
		Model: "animagine-xl-3.1", Prompt: "1girl, witch hat, night sky", NegativePrompt: "lowres",
		Width: 32, Height: 24, Steps: 28, CFG: 6, Sampler: "dpmpp_2m_karras", Seed: 31337, RNG: pngmeta.RNGA1111,
		LoRAs:     []pngmeta.LoRA{{Name: "ink", Scale: 0.75}},
		IPAdapter: &pngmeta.IPAdapter{Adapter: "ip-adapter_sdxl", Scale: 0.4, ImageSHA256: refSHA},
	}
}

func TestSaveWritesAndIndexes(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	clock := time.Date(2025, 6, 1, 15, 30, 12, 0, time.Local)
	s.now = func() time.Time { return clock }

	rc := testRecipe()
	raw := encodePNG(t, testImage(32, 24, 1))
	it, err := s.Save(ctx, raw, rc)
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != "2025-06-01/153012-31337.png" {
		t.Errorf("ID %q, want the day folder and HHMMSS-seed name", it.ID)
	}
	// On disk, whole, with the recipe inside: read back with pngmeta.
	data, err := os.ReadFile(filepath.Join(dir, "2025-06-01", "153012-31337.png"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := pngmeta.Decode(bytes.NewReader(data))
	if err != nil || m.Recipe == nil || m.A1111 == nil {
		t.Fatalf("saved file's metadata: %v %+v", err, m)
	}
	if m.Recipe.Prompt != rc.Prompt || m.Recipe.Seed != rc.Seed || m.A1111.Seed != rc.Seed {
		t.Errorf("saved recipe %+v", m.Recipe)
	}
	if it.Source != SourcePixery || it.Prompt != rc.Prompt || it.Width != 32 || it.Height != 24 ||
		it.RefSHA256 != refSHA || len(it.LoRAs) != 1 || it.LoRAs[0] != (LoRA{"ink", 0.75}) {
		t.Errorf("Save returned %+v", it)
	}
	got, err := s.Get(ctx, it.ID)
	if err != nil || got.Prompt != rc.Prompt || got.Size != int64(len(data)) {
		t.Errorf("Get after Save: %+v %v", got, err)
	}
	if res, _ := s.Search(ctx, Query{Text: "witch"}); !slices.Equal(ids(res), []string{it.ID}) {
		t.Errorf("search after Save: %q", ids(res))
	}

	// The same second and seed again: a new name, never an overwrite. A
	// PNG that has its chunks already keeps them (no duplicates).
	again, err := s.Save(ctx, data, rc)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != "2025-06-01/153012-31337-2.png" {
		t.Errorf("second save ID %q", again.ID)
	}
	data2, _ := os.ReadFile(again.Path)
	if !bytes.Equal(data2, data) {
		t.Error("a PNG with its metadata already was changed on Save")
	}
	// No temporary files are left behind.
	if files := listFiles(t, dir); len(files) != 2 {
		t.Errorf("gallery holds %q", files)
	}
	// A PNG without metadata and without recipe is saved as it is.
	plain, err := s.Save(ctx, raw, nil)
	if err != nil || plain.ID != "2025-06-01/153012.png" || plain.Source != SourceUnknown {
		t.Errorf("plain save: %+v %v", plain, err)
	}
}

func TestSaveRejectsBadInput(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	good := encodePNG(t, testImage(16, 16, 1))
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello, not an image"),
		"jpeg":      {0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F'},
		"truncated": good[:len(good)/2],
		"bad crc":   encodePNG(t, testImage(16, 16, 1), chunk{typ: "tEXt", data: []byte("a\x00b"), badCRC: true}),
	} {
		for _, rc := range []*pngmeta.Recipe{nil, testRecipe()} {
			if _, err := s.Save(ctx, data, rc); err == nil {
				t.Errorf("Save(%s, recipe %v) succeeded", name, rc != nil)
			} else if !strings.Contains(err.Error(), "gallery: save") {
				t.Errorf("Save(%s): error without context: %v", name, err)
			}
		}
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Errorf("rejected saves left %q", files)
	}
}

// failingFile is a temporary file whose writes fail after limit bytes, as
// on a full disk.
type failingFile struct {
	f       *os.File
	limit   int
	written int
	err     error
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.written+len(p) > f.limit {
		n, _ := f.f.Write(p[:f.limit-f.written])
		f.written += n
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: f.err}
	}
	n, err := f.f.Write(p)
	f.written += n
	return n, err
}

func (f *failingFile) Sync() error  { return f.f.Sync() }
func (f *failingFile) Close() error { return f.f.Close() }
func (f *failingFile) Name() string { return f.f.Name() }

func TestSaveDiskFull(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	s.createTemp = func(d, pattern string) (tempFile, error) {
		f, err := os.CreateTemp(d, pattern)
		if err != nil {
			return nil, err
		}
		return &failingFile{f: f, limit: 100, err: syscall.ENOSPC}, nil
	}
	_, err := s.Save(ctx, encodePNG(t, testImage(64, 64, 3)), testRecipe())
	if err == nil {
		t.Fatal("Save on a full disk succeeded")
	}
	t.Logf("disk full: %v", err)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "gallery: save image") {
		t.Errorf("error does not say the disk is full: %v", err)
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Errorf("failed save left %q (a temporary file?)", files)
	}
	if n, _ := s.Count(ctx, Query{}); n != 0 {
		t.Errorf("failed save indexed %d items", n)
	}

	// A failing import reports the file and goes on with the others.
	src := t.TempDir()
	writeAt(t, src, "one.png", encodePNG(t, testImage(64, 64, 4)), time.Time{})
	res, err := s.Import(ctx, src)
	if err != nil || len(res.Items) != 0 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Err, "no space left") {
		t.Errorf("import on a full disk: %+v %v", res, err)
	}
}

func TestReadOnlyGallery(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	writeAt(t, dir, "a.png", makePNG(t, 16, 16, 1, pixeryChunks(t, pixeryMeta, 16, 16, nil)...), time.Time{})
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	// Reading a read-only gallery works: the caches live elsewhere.
	if res, err := s.Sync(ctx); err != nil || len(res.Added) != 1 {
		t.Fatalf("Sync of a read-only gallery: %+v %v", res, err)
	}
	if _, err := s.Thumbnail(ctx, "a.png"); err != nil {
		t.Errorf("thumbnail of a read-only gallery: %v", err)
	}
	if os.Geteuid() != 0 {
		// A real permission failure (root ignores folder permissions).
		if _, err := s.Save(ctx, makePNG(t, 16, 16, 2), nil); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("Save into a read-only folder: %v", err)
		}
	}
	// A read-only file system, injected (the same for root and others).
	s.createTemp = func(d, _ string) (tempFile, error) {
		return nil, &os.PathError{Op: "open", Path: d, Err: syscall.EROFS}
	}
	_, err := s.Save(ctx, makePNG(t, 16, 16, 2), nil)
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "read-only file system") {
		t.Errorf("Save on a read-only file system: %v", err)
	}
	t.Logf("read-only: %v", err)
	if n, _ := s.Count(ctx, Query{}); n != 1 {
		t.Errorf("Count = %d after failed saves", n)
	}
}

func TestDeleteAndRestore(t *testing.T) {
	s, dir, cache := openStore(t)
	ctx := context.Background()
	when := time.Date(2025, 2, 2, 2, 2, 2, 0, time.UTC)
	orig := makePNG(t, 16, 16, 1, pixeryChunks(t, pixeryMeta, 16, 16, nil)...)
	writeAt(t, dir, "d/a.png", orig, when)
	writeAt(t, dir, "d/b.png", makePNG(t, 16, 16, 2), when)
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	thumb, err := s.Thumbnail(ctx, "d/a.png")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "d/a.png"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".trash", "d", "a.png")); err != nil {
		t.Errorf("deleted file not in the trash: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d", "a.png")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted file still in place: %v", err)
	}
	if _, err := os.Stat(thumb); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("thumbnail of a deleted image kept: %v", err)
	}
	if _, err := s.Get(ctx, "d/a.png"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if res, _ := s.Sync(ctx); res.Changed() {
		t.Errorf("Sync after Delete changed %+v (the trash must not be indexed)", res)
	}
	if err := s.Delete(ctx, "d/a.png"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}

	it, err := s.Restore(ctx, "d/a.png")
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != "d/a.png" || it.Prompt != pixeryMeta.prompt || !it.ModTime.Equal(when) {
		t.Errorf("restored %+v", it)
	}
	if data, _ := os.ReadFile(it.Path); !bytes.Equal(data, orig) {
		t.Error("restored file differs")
	}
	if _, err := s.Restore(ctx, "d/a.png"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Restore of nothing: %v", err)
	}

	// Delete, then a new file takes the name: Restore does not overwrite it.
	if err := s.Delete(ctx, "d/a.png"); err != nil {
		t.Fatal(err)
	}
	newer := makePNG(t, 16, 16, 3)
	writeAt(t, dir, "d/a.png", newer, time.Time{})
	it, err = s.Restore(ctx, "d/a.png")
	if err != nil || it.ID != "d/a-2.png" {
		t.Fatalf("Restore onto a taken name: %+v %v", it, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "d", "a.png")); !bytes.Equal(data, newer) {
		t.Error("Restore overwrote the newer file")
	}

	// Deleting two images of the same name keeps both in the trash.
	if err := s.Delete(ctx, "d/b.png"); err != nil {
		t.Fatal(err)
	}
	writeAt(t, dir, "d/b.png", makePNG(t, 16, 16, 4), time.Time{})
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "d/b.png"); err != nil {
		t.Fatal(err)
	}
	trash := listFiles(t, filepath.Join(dir, ".trash"))
	if len(trash) != 2 {
		t.Errorf("trash holds %q, want both deleted b.png", trash)
	}
	checkFTS(t, s)
	if err := s.EmptyTrash(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".trash")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("trash not emptied")
	}
	for _, bad := range []string{"../x.png", "/etc/passwd", ".trash/d/a.png", "d/../../x.png", ""} {
		if err := s.Delete(ctx, bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want an invalid-id error", bad, err)
		}
	}
	_ = cache
}

func TestImport(t *testing.T) {
	s, dir, _ := openStore(t)
	ctx := context.Background()
	src := t.TempDir()
	when := time.Date(2024, 12, 24, 18, 0, 0, 0, time.UTC)
	writeAt(t, src, "batch/one.png", makePNG(t, 40, 56, 2, tEXt("parameters", a1111Params(a1111Meta, 40, 56, ""))), when)
	writeAt(t, src, "batch/deep/two.png", makePNG(t, 32, 32, 3, tEXt("prompt", comfyGraph(t, comfyMeta, 32, 32))), when)
	writeAt(t, src, "batch/fake.png", []byte("GIF89a not a png"), when)
	writeAt(t, src, "batch/readme.txt", []byte("ignored"), when)
	writeAt(t, src, "batch/.hidden/three.png", makePNG(t, 8, 8, 4), when)
	writeAt(t, src, "loose.PNG", makePNG(t, 8, 8, 5), when)
	writeAt(t, src, "photo.jpg", []byte{0xff, 0xd8, 0xff}, when)

	res, err := s.Import(ctx, filepath.Join(src, "batch"), filepath.Join(src, "loose.PNG"), filepath.Join(src, "photo.jpg"), filepath.Join(src, "missing.png"))
	if err != nil {
		t.Fatal(err)
	}
	got := ids(res.Items)
	slices.Sort(got)
	if want := []string{"imported/loose.PNG", "imported/one.png", "imported/two.png"}; !slices.Equal(got, want) {
		t.Errorf("imported %q, want %q", got, want)
	}
	var probs []string
	for _, p := range res.Problems {
		probs = append(probs, filepath.Base(p.ID))
	}
	slices.Sort(probs)
	if want := []string{"fake.png", "missing.png", "photo.jpg"}; !slices.Equal(probs, want) {
		t.Errorf("problems %q, want %q", probs, want)
	}
	for _, it := range res.Items {
		if !it.ModTime.Equal(when) {
			t.Errorf("%s: time %v, want the original %v", it.ID, it.ModTime, when)
		}
	}
	one, err := s.Get(ctx, "imported/one.png")
	if err != nil || one.Source != SourceA1111 || one.Prompt != a1111Meta.prompt {
		t.Errorf("imported A1111 image: %+v %v", one, err)
	}
	if n, _ := s.Count(ctx, Query{}); n != 3 {
		t.Errorf("Count = %d", n)
	}

	// Importing again copies nothing; a different file of the same name is
	// imported beside the first.
	again, err := s.Import(ctx, filepath.Join(src, "batch"))
	if err != nil || len(again.Items) != 2 {
		t.Fatalf("second import: %+v %v", again, err)
	}
	writeAt(t, src, "other/one.png", makePNG(t, 8, 8, 9), time.Time{})
	third, err := s.Import(ctx, filepath.Join(src, "other", "one.png"))
	if err != nil || len(third.Items) != 1 || third.Items[0].ID != "imported/one-2.png" {
		t.Errorf("colliding import: %+v %v", third, err)
	}
	files := listFiles(t, dir)
	if len(files) != 4 {
		t.Errorf("gallery holds %q", files)
	}
	// Importing a file already in the gallery only indexes it.
	writeAt(t, dir, "inside.png", makePNG(t, 8, 8, 10), time.Time{})
	in, err := s.Import(ctx, filepath.Join(dir, "inside.png"))
	if err != nil || len(in.Items) != 1 || in.Items[0].ID != "inside.png" || len(listFiles(t, dir)) != 5 {
		t.Errorf("import from inside: %+v %v", in, err)
	}
}
