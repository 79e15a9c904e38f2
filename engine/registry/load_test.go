package registry

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
)

// goodTOML is a valid user entry; every broken-file case is loaded next to
// it to show that one bad file does not stop the others.
const goodTOML = `id = "good"
file = "good.safetensors"
source = "https://example.com/good.safetensors"

[defaults]
cfg = 6
steps = 30
`

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// base returns a valid entry with one line replaced or added, so that each
// case differs from a good file in exactly one way.
func base(id, extraTop, defaults string) string {
	return "id = " + id + "\nfile = \"broken.safetensors\"\n" + extraTop +
		"\n[defaults]\n" + defaults + "\n[prompt_guide]\nstyle = \"danbooru\"\n"
}

func TestLoadDirProblems(t *testing.T) {
	cases := []struct {
		name     string
		src      string
		line     int      // expected line of the problem; 0: any
		col      int      // expected column; 0: not checked
		severity Severity // of the problem
		want     []string // substrings of the message
		loads    bool     // the broken entry still loads
	}{
		{name: "unclosed table header", src: "id = \"broken\"\nfile = \"broken.safetensors\"\n\n[defaults\ncfg = 5\n",
			line: 4, col: 10, want: []string{"broken.toml:4:10", "table name"}},
		{name: "unterminated string", src: "id = \"broken\"\nfile = \"broken.safetensors\ncfg = 1\n",
			line: 2, want: []string{"broken.toml:2", "newline"}},
		{name: "duplicate key", src: "id = \"broken\"\nfile = \"broken.safetensors\"\nid = \"again\"\n",
			line: 3, want: []string{"broken.toml:3", "already been defined"}},
		{name: "value without key", src: "id = \"broken\"\n= 5\n", line: 2, want: []string{"broken.toml:2"}},
		{name: "cfg is a string", src: base(`"broken"`, "", `cfg = "high"`),
			line: 5, want: []string{"broken.toml:5", "defaults.cfg: wrong type: got a string, want a number"}},
		{name: "steps is a float", src: base(`"broken"`, "", `steps = 2.5`),
			line: 5, want: []string{"defaults.steps: wrong type: got a float, want an integer"}},
		{name: "quality tags not an array", src: "id = \"broken\"\nfile = \"broken.safetensors\"\n[prompt_guide]\nquality_tags = \"masterpiece\"\n",
			line: 4, want: []string{"prompt_guide.quality_tags: wrong type: got a string, want an array"}},
		{name: "unknown top-level key", src: base(`"broken"`, `lora = "x"`, ""),
			line: 3, severity: Warning, want: []string{`unknown key "lora"`}, loads: true},
		{name: "typo in defaults", src: base(`"broken"`, "", "cfgg = 5"),
			line: 5, severity: Warning, want: []string{`unknown key "defaults.cfgg"`, `did you mean "defaults.cfg"`}, loads: true},
		{name: "unknown table", src: base(`"broken"`, "", "") + "[extra]\na = 1\nb = 2\n",
			line: 8, severity: Warning, want: []string{`unknown key "extra"`}, loads: true},
		{name: "dotted unknown key", src: base(`"broken"`, "", "karras.on = true"),
			line: 5, severity: Warning, want: []string{`unknown key "defaults.karras.on"`}, loads: true},
		{name: "missing id", src: "file = \"broken.safetensors\"\n", want: []string{"id: missing"}},
		{name: "empty file", src: "", want: []string{"id: missing", "file: missing"}},
		{name: "id with spaces", src: base(`"My Model"`, "", ""), line: 1, want: []string{`id: "My Model" may only hold`}},
		{name: "id of dots", src: base(`".."`, "", ""), line: 1, want: []string{`id: ".." is not a usable name`}},
		{name: "file traversal", src: "id = \"broken\"\nfile = \"../../etc/x.safetensors\"\n",
			line: 2, want: []string{"file:", "plain file name"}},
		{name: "file in a folder", src: "id = \"broken\"\nfile = \"sub\\\\x.safetensors\"\n", line: 2, want: []string{"plain file name"}},
		{name: "file not safetensors", src: "id = \"broken\"\nfile = \"model.ckpt\"\n", line: 2, want: []string{`"model.ckpt" must be a .safetensors file name`}},
		{name: "hidden file", src: "id = \"broken\"\nfile = \".x.safetensors\"\n", line: 2, want: []string{"must not start with a dot"}},
		{name: "unknown source scheme", src: base(`"broken"`, `source = "hf:owner/repo"`, ""), line: 3,
			want: []string{"source:", "huggingface:owner/repo, civitai:<version id> or https://"}},
		{name: "civitai id not a number", src: base(`"broken"`, `source = "civitai:pony"`, ""), line: 3, want: []string{"civitai:<version id>"}},
		{name: "huggingface without repo", src: base(`"broken"`, `source = "huggingface:owner"`, ""), line: 3, want: []string{"huggingface:owner/repo"}},
		{name: "plain http", src: base(`"broken"`, `source = "http://example.com/x.safetensors"`, ""), line: 3, want: []string{"plain http"}},
		{name: "credentials in URL", src: base(`"broken"`, `source = "https://me:s3cret@example.com/x"`, ""), line: 3, want: []string{"carries credentials"}},
		{name: "width not multiple of 8", src: base(`"broken"`, "", "width = 1020"), line: 5, want: []string{"defaults.width: 1020 is not a multiple of 8"}},
		{name: "width too large", src: base(`"broken"`, "", "width = 8192"), line: 5, want: []string{"defaults.width: 8192 is outside 256..4096"}},
		{name: "height too small", src: base(`"broken"`, "", "height = 128"), line: 5, want: []string{"defaults.height: 128 is outside 256..4096"}},
		{name: "steps zero", src: base(`"broken"`, "", "steps = 0"), line: 5, want: []string{"defaults.steps: 0 is outside 1..150"}},
		{name: "steps too many", src: base(`"broken"`, "", "steps = 151"), line: 5, want: []string{"defaults.steps: 151 is outside 1..150"}},
		{name: "cfg too high", src: base(`"broken"`, "", "cfg = 30.5"), line: 5, want: []string{"defaults.cfg: 30.5 is outside 0..30"}},
		{name: "cfg negative", src: base(`"broken"`, "", "cfg = -1"), line: 5, want: []string{"defaults.cfg: -1 is outside"}},
		{name: "cfg nan", src: base(`"broken"`, "", "cfg = nan"), line: 5, want: []string{"defaults.cfg: NaN is outside"}},
		{name: "cfg inf", src: base(`"broken"`, "", "cfg = inf"), line: 5, want: []string{"defaults.cfg: +Inf is outside"}},
		{name: "sampler with spaces", src: base(`"broken"`, "", `sampler = "Euler a"`), line: 5, want: []string{`defaults.sampler: "Euler a" is not a sampler name`}},
		{name: "clip skip zero", src: base(`"broken"`, "", "clip_skip = 0"), line: 5, want: []string{"defaults.clip_skip: 0 is outside 1..12"}},
		{name: "bad sha256", src: base(`"broken"`, `sha256 = "abc123"`, ""), line: 3, want: []string{`sha256: "abc123" is not a SHA-256 digest`}},
		{name: "bad prediction", src: base(`"broken"`, `prediction = "vpred"`, ""), line: 3, want: []string{`prediction: "vpred" is not one of "epsilon", "v_prediction"`}},
		{name: "bad architecture", src: base(`"broken"`, `architecture = "sd15"`, ""), line: 3, want: []string{`architecture: "sd15" is not supported`}},
		{name: "config dir missing", src: base(`"broken"`, `config_dir = "nowhere"`, ""), line: 3, want: []string{"config_dir:", "nowhere: no such file or directory"}},
		{name: "empty quality tag", src: "id = \"broken\"\nfile = \"broken.safetensors\"\n[prompt_guide]\nquality_tags = [\"a\", \" \"]\n",
			line: 4, want: []string{"prompt_guide.quality_tags: tag 2 is empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"good.toml": goodTOML, "broken.toml": tc.src, "notes.txt": "not a registry file"})
			r, problems := LoadDir(dir)
			if _, err := r.Resolve("good"); err != nil {
				t.Fatalf("the good file did not load next to the broken one: %v; problems: %v", err, problems)
			}
			if len(problems) == 0 {
				t.Fatal("no problem reported")
			}
			// All problems of the broken file, for the substring checks; the
			// one that matches the first substring for line, column, severity.
			var all []string
			var p *Problem
			for i := range problems {
				if !strings.HasSuffix(problems[i].File, "broken.toml") {
					t.Errorf("problem for another file: %v", problems[i])
					continue
				}
				msg := problems[i].Error()
				t.Logf("%s", msg)
				all = append(all, msg)
				if p == nil && strings.Contains(msg, tc.want[0]) {
					p = &problems[i]
				}
			}
			joined := strings.Join(all, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("messages %q lack %q", joined, w)
				}
			}
			if strings.Contains(joined, "s3cret") {
				t.Errorf("message leaks the password: %q", joined)
			}
			if p == nil {
				t.Fatalf("no problem matches %q", tc.want[0])
			}
			if tc.line != 0 && p.Line != tc.line {
				t.Errorf("line %d, want %d", p.Line, tc.line)
			}
			if tc.col != 0 && p.Col != tc.col {
				t.Errorf("column %d, want %d", p.Col, tc.col)
			}
			if p.Severity != tc.severity {
				t.Errorf("severity %v, want %v", p.Severity, tc.severity)
			}
			_, err := r.Resolve("broken")
			if loaded := err == nil; loaded != tc.loads {
				t.Errorf("broken entry loaded = %v, want %v", loaded, tc.loads)
			}
			if r.Len() != 1+btoi(tc.loads) {
				t.Errorf("registry has %d models", r.Len())
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLoadDirDefaultsAndNormalisation(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"minimal.toml": "id = \"minimal\"\nfile = \"m.safetensors\"\n",
		"zero.toml":    "id = \"zero\"\nfile = \"z.safetensors\"\nsha256 = \"" + strings.Repeat("AB", 32) + "\"\n[defaults]\ncfg = 0\nwidth = 4096\nheight = 256\n",
	})
	r, problems := LoadDir(dir)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	m, _ := r.Resolve("minimal")
	if m.Defaults != FallbackDefaults {
		t.Errorf("omitted defaults = %+v, want %+v", m.Defaults, FallbackDefaults)
	}
	if m.DisplayName != "minimal" || m.Architecture != ArchitectureSDXL || m.Prediction != PredictionEpsilon {
		t.Errorf("normalised fields: %+v", m)
	}
	if want := filepath.Join(dir, "minimal.toml"); m.Origin != want {
		t.Errorf("origin %q, want %q", m.Origin, want)
	}
	z, _ := r.Resolve("zero")
	if z.Defaults.CFG != 0 || z.Defaults.Steps != FallbackDefaults.Steps || z.Defaults.Width != 4096 || z.Defaults.Height != 256 {
		t.Errorf("explicit zero cfg or bounds not kept: %+v", z.Defaults)
	}
	if z.SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("sha256 not lower-cased: %q", z.SHA256)
	}
}

func TestDuplicateIDInOneFolder(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.toml": "id = \"same\"\nfile = \"a.safetensors\"\n",
		"b.toml": "\n\nid = \"same\"\nfile = \"b.safetensors\"\n",
	})
	r, problems := LoadDir(dir)
	if len(problems) != 1 {
		t.Fatalf("want one problem, got %v", problems)
	}
	p := problems[0]
	t.Logf("%s", p)
	if !strings.HasSuffix(p.File, "b.toml") || p.Line != 3 || p.Severity != Error ||
		!strings.Contains(p.Message, `duplicate id "same"`) || !strings.Contains(p.Message, "a.toml") {
		t.Errorf("problem = %+v", p)
	}
	if m, _ := r.Resolve("same"); m.File != "a.safetensors" {
		t.Errorf("the first file should win, got %s", m.File)
	}
}

func TestOversizedFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"big.toml": "id = \"big\"\nfile = \"b.safetensors\"\n#" + strings.Repeat("x", maxTOMLSize)})
	r, problems := LoadDir(dir)
	if r.Len() != 0 || len(problems) != 1 || !strings.Contains(problems[0].Message, "more than") {
		t.Fatalf("len %d, problems %v", r.Len(), problems)
	}
}

func TestLoadDirMissingFolder(t *testing.T) {
	r, problems := LoadDir(filepath.Join(t.TempDir(), "absent"))
	if r.Len() != 0 || len(problems) != 1 || problems[0].Severity != Error || !strings.Contains(problems[0].Message, "read registry folder") {
		t.Fatalf("len %d, problems %v", r.Len(), problems)
	}
}

func TestUserEntryOverridesEmbedded(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"my-animagine.toml": "id = \"animagine\"\nfile = \"animagine-xl-4.0.safetensors\"\n[defaults]\ncfg = 4.5\n",
		"extra.toml":        "id = \"extra\"\nfile = \"extra.safetensors\"\n",
	})
	r, problems := LoadAll(dir)
	if len(problems) != 1 {
		t.Fatalf("want one override warning, got %v", problems)
	}
	p := problems[0]
	t.Logf("%s", p)
	if p.Severity != Warning || !strings.HasSuffix(p.File, "my-animagine.toml") ||
		!strings.Contains(p.Message, `"animagine" overrides the entry from models/animagine.toml`) {
		t.Errorf("problem = %+v", p)
	}
	m, err := r.Resolve("animagine")
	if err != nil || m.Defaults.CFG != 4.5 {
		t.Fatalf("user entry did not win: %+v, %v", m, err)
	}
	var ids []string
	for _, m := range r.List() {
		ids = append(ids, m.ID)
	}
	if got := strings.Join(ids, ","); got != "animagine,extra,noobai,pony" {
		t.Errorf("List() = %s", got)
	}
}

// The tiny test checkpoint needs its diffusers configs and small sizes.
func TestConfigDir(t *testing.T) {
	golden, err := filepath.Abs("../../testdata/golden/pipeline/configs")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"tiny.toml":                              "id = \"tiny\"\nfile = \"sdxl-tiny.safetensors\"\nconfig_dir = '" + golden + "'\n[defaults]\nwidth = 192\nheight = 128\nsteps = 4\n",
		"rel.toml":                               "id = \"rel\"\nfile = \"rel.safetensors\"\nconfig_dir = \"configs/rel\"\n",
		"configs/rel/unet/config.json":           "{}",
		"configs/rel/vae/config.json":            "{}",
		"configs/rel/text_encoder/config.json":   "{}",
		"configs/rel/text_encoder_2/config.json": "{}",
		"partial.toml":                           "id = \"partial\"\nfile = \"p.safetensors\"\nconfig_dir = \"configs/partial\"\n",
		"configs/partial/unet/config.json":       "{}",
	})
	r, problems := LoadDir(dir)
	if len(problems) != 1 || !strings.HasSuffix(problems[0].File, "partial.toml") ||
		!strings.Contains(problems[0].Message, "lacks vae/config.json, text_encoder/config.json, text_encoder_2/config.json") {
		t.Fatalf("problems: %v", problems)
	}
	t.Logf("%s", problems[0])
	tiny, err := r.Resolve("tiny")
	if err != nil {
		t.Fatal(err)
	}
	if tiny.ConfigDir != golden || tiny.Defaults.Width != 192 {
		t.Errorf("tiny = %+v", tiny)
	}
	rel, _ := r.Resolve("rel")
	if want := filepath.Join(dir, "configs", "rel"); rel.ConfigDir != want {
		t.Errorf("relative config_dir resolved to %q, want %q", rel.ConfigDir, want)
	}
	// Small sizes are for such models only.
	if _, problems := Parse("id = \"x\"\nfile = \"x.safetensors\"\n[defaults]\nwidth = 192\n", "x.toml"); len(problems) != 1 {
		t.Errorf("width 192 without config_dir accepted: %v", problems)
	}
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{
		"reg/a.toml":                                  {Data: []byte("id = \"a\"\nfile = \"a.safetensors\"\nconfig_dir = \"cfg\"\n")},
		"reg/cfg/unet/config.json":                    {Data: []byte("{}")},
		"reg/cfg/vae/config.json":                     {Data: []byte("{}")},
		"reg/cfg/text_encoder/config.json":            {Data: []byte("{}")},
		"reg/cfg/text_encoder_2/config.json":          {Data: []byte("{}")},
		"reg/escape.toml":                             {Data: []byte("id = \"e\"\nfile = \"e.safetensors\"\nconfig_dir = \"../../elsewhere\"\n")},
		"reg/.hidden.toml":                            {Data: []byte("broken = ")},
		"reg/sub/nested.toml":                         {Data: []byte("broken = ")},
		"other.toml":                                  {Data: []byte("broken = ")},
		"reg/cfg/not-a-registry-file-but-ignored.txt": {Data: []byte("")},
	}
	r, problems := Load(fsys, "reg")
	if len(problems) != 1 || problems[0].File != "reg/escape.toml" || !strings.Contains(problems[0].Message, "points outside the file system") {
		t.Fatalf("problems: %v", problems)
	}
	a, err := r.Resolve("a")
	if err != nil || a.ConfigDir != "reg/cfg" || a.Origin != "reg/a.toml" {
		t.Fatalf("a = %+v, %v", a, err)
	}
}

func TestResolve(t *testing.T) {
	r, problems := Embedded()
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	for _, name := range []string{"pony", "ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "ponyDiffusionV6XL_v6StartWithThisOne"} {
		if m, err := r.Resolve(name); err != nil || m.ID != "pony" {
			t.Errorf("Resolve(%q) = %v, %v", name, m, err)
		}
	}
	_, err := r.Resolve("sd15")
	if !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), `"sd15" (known: animagine, noobai, pony)`) {
		t.Errorf("Resolve(sd15) error = %v", err)
	}
}

func TestKeyLine(t *testing.T) {
	src := `id = "x"  # the id
notes = """
fake = 1
[defaults]
"""
[ defaults ]
"cfg" = 5
sampler.name = "a"
[prompt_guide]
style = "d"
`
	for key, want := range map[string]int{
		"id": 1, "notes": 2, "fake": 0, "defaults": 6, "defaults.cfg": 7, "defaults.sampler.name": 8,
		"defaults.sampler": 8, "prompt_guide.style": 10, "prompt_guide": 9, "absent": 0,
	} {
		if got := keyLine(src, key); got != want {
			t.Errorf("keyLine(%q) = %d, want %d", key, got, want)
		}
	}
}

// knownKeys feeds the "did you mean" hints; it must list every TOML key of
// Model, which reflection enumerates.
func TestKnownKeysMatchModel(t *testing.T) {
	var walk func(prefix string, typ reflect.Type) []string
	walk = func(prefix string, typ reflect.Type) []string {
		var keys []string
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			keys = append(keys, prefix+tag)
			if f.Type.Kind() == reflect.Struct {
				keys = append(keys, walk(prefix+tag+".", f.Type)...)
			}
		}
		return keys
	}
	got := walk("", reflect.TypeOf(Model{}))
	sort.Strings(got)
	want := append([]string(nil), knownKeys...)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("model keys %v\nknownKeys %v", got, want)
	}
}
