package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScan(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{ // path → size
		"B-model.safetensors":                                  11,
		"animagine-xl-4.0.safetensors":                         7,
		"animagine.safetensors":                                5, // its stem is a registry id
		"My Civitai Merge v2.safetensors":                      13,
		".hidden.safetensors":                                  1,
		"half.safetensors.part":                                3,
		"notes.txt":                                            2,
		"loras/style.safetensors":                              17,
		"loras/sub/ink.safetensors":                            19,
		"loras/.trash/old.safetensors":                         1,
		"loras/readme.md":                                      1,
		"ip-adapters/ip-adapter_sdxl.safetensors":              23,
		"ip-adapters/image_encoders/vit-h.safetensors":         29,
		"ip-adapters/image_encoders/bigG/model.safetensors":    31,
		"ip-adapters/image_encoders/bigG/config.json":          2,
		"ip-adapters/image_encoders/empty-folder/config.json":  2,
		"ip-adapters/image_encoders/other/weights.safetensors": 2,
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for name, size := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime.Add(time.Duration(size)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// A directory named like a checkpoint is not one.
	if err := os.Mkdir(filepath.Join(dir, "dir.safetensors"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlinked checkpoint (shared with another tool) counts.
	if err := os.Symlink(filepath.Join(dir, "B-model.safetensors"), filepath.Join(dir, "linked.safetensors")); err != nil {
		t.Fatal(err)
	}

	inv, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got []FileInfo, want map[string]string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d files %v, want %v", what, len(got), got, want)
		}
		prev := ""
		for _, f := range got {
			rel, ok := want[f.Name]
			if !ok {
				t.Errorf("%s: unexpected %q", what, f.Name)
				continue
			}
			if f.Name < prev {
				t.Errorf("%s: not sorted (%q after %q)", what, f.Name, prev)
			}
			prev = f.Name
			if f.Path != filepath.Join(dir, filepath.FromSlash(rel)) {
				t.Errorf("%s %q: path %s", what, f.Name, f.Path)
			}
			size := files[rel]
			if rel == "linked.safetensors" {
				size = files["B-model.safetensors"]
			}
			if f.Size != int64(size) || !f.ModTime.Equal(mtime.Add(time.Duration(size)*time.Hour)) {
				t.Errorf("%s %q: size %d mtime %v, want %d %v", what, f.Name, f.Size, f.ModTime, size, mtime.Add(time.Duration(size)*time.Hour))
			}
		}
	}
	check("checkpoints", inv.Checkpoints, map[string]string{
		"B-model": "B-model.safetensors", "animagine-xl-4.0": "animagine-xl-4.0.safetensors",
		"animagine": "animagine.safetensors", "My Civitai Merge v2": "My Civitai Merge v2.safetensors",
		"linked": "linked.safetensors",
	})
	check("loras", inv.LoRAs, map[string]string{"style": "loras/style.safetensors", "sub/ink": "loras/sub/ink.safetensors"})
	check("ip-adapters", inv.IPAdapters, map[string]string{"ip-adapter_sdxl": "ip-adapters/ip-adapter_sdxl.safetensors"})
	check("image encoders", inv.ImageEncoders, map[string]string{
		"vit-h": "ip-adapters/image_encoders/vit-h.safetensors", "bigG": "ip-adapters/image_encoders/bigG/model.safetensors",
	})

	r, problems := Embedded()
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	if p := r.AddDiscovered(inv); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	var ids []string
	for _, m := range r.List() {
		ids = append(ids, m.ID)
	}
	// animagine-xl-4.0.safetensors is the registry's animagine, so it is not
	// offered again; animagine.safetensors collides with that id.
	if got := strings.Join(ids, "|"); got != "B-model|My Civitai Merge v2|animagine|animagine.safetensors|linked|noobai|pony" {
		t.Errorf("ids = %s", got)
	}
	m, err := r.Resolve("My Civitai Merge v2")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Discovered || m.DisplayName != "My Civitai Merge v2" || m.File != "My Civitai Merge v2.safetensors" || m.Source != "" ||
		m.Architecture != ArchitectureSDXL || m.Defaults != FallbackDefaults {
		t.Errorf("discovered model = %+v", m)
	}
	if a, _ := r.Resolve("animagine"); a.Discovered {
		t.Error("a discovered file replaced the registry's animagine")
	}

	// States.
	if st := StateOf(dir, m); st.State != StateOnDisk || st.Size != 13 {
		t.Errorf("state of discovered model = %+v", st)
	}
	anim, _ := r.Resolve("animagine")
	if st := StateOf(dir, anim); st.State != StateOnDisk || st.Size != 7 || st.Path != filepath.Join(dir, "animagine-xl-4.0.safetensors") {
		t.Errorf("animagine state = %+v", st)
	}
	pony, _ := r.Resolve("pony")
	if st := StateOf(dir, pony); st.State != StateMissing || st.PartialBytes != 0 {
		t.Errorf("pony state = %+v", st)
	}
	if err := os.WriteFile(filepath.Join(dir, pony.File+".part"), make([]byte, 99), 0o644); err != nil {
		t.Fatal(err)
	}
	if st := StateOf(dir, pony); st.State != StateMissing || st.PartialBytes != 99 {
		t.Errorf("pony state with a .part = %+v", st)
	}
}

func TestScanEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	inv, err := Scan(dir)
	if err != nil || len(inv.Checkpoints)+len(inv.LoRAs)+len(inv.IPAdapters)+len(inv.ImageEncoders) != 0 {
		t.Fatalf("empty folder: %+v, %v", inv, err)
	}
	_, err = Scan(filepath.Join(dir, "absent"))
	if err == nil || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("missing folder: err = %v", err)
	}
}

func TestAddDiscoveredBothNamesTaken(t *testing.T) {
	r := New()
	r.Add(&Model{ID: "x", File: "other.safetensors", Origin: "a.toml"})
	r.Add(&Model{ID: "x.safetensors", File: "other2.safetensors", Origin: "b.toml"})
	p := r.AddDiscovered(Inventory{Checkpoints: []FileInfo{{Name: "x", Path: "/m/x.safetensors"}}})
	if len(p) != 1 || p[0].Severity != Warning || !strings.Contains(p[0].Message, "not offered") || r.Len() != 2 {
		t.Fatalf("problems %v, len %d", p, r.Len())
	}
}
