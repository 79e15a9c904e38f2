package settings

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func full() *Settings {
	return &Settings{
		ServerURL:          "https://gpu.example.net:8443",
		Token:              "tok-SECRET-1234",
		Mode:               ModeLocal,
		GalleryDir:         "/data/pics/pixery",
		ModelsDir:          "/data/models",
		Provider:           ProviderCUDA,
		ORTLib:             "/opt/ort/libonnxruntime.so",
		VastKey:            "vast-SECRET-5678",
		SSHKey:             "/home/u/.ssh/rent",
		IdleDestroyMinutes: 25,
		Last: Form{
			Model: "pony", Prompt: "score_9, a \"quoted\" cat\nsecond line", Negative: "blurry",
			Width: 832, Height: 1216, Sampler: "euler_a", Steps: 25, CFG: 7.5,
			SeedMode: SeedIncrement, Seed: 1234567890123, Batch: 3,
			LoRAs:    []LoRA{{Name: "detail", Scale: 0.7}, {Name: "style", Scale: -1.25}},
			RefImage: "/home/u/Pictures/ref.png", RefScale: 0.6,
		},
	}
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "pixery")
	want := full()
	if err := want.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("warnings after a clean save: %q", got.Warnings)
	}
	got.Warnings = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %#v\nwant %#v", *got, *want)
	}
	// Save again over existing files: still the same.
	got.Last.Steps = 40
	if err := got.Save(dir); err != nil {
		t.Fatal(err)
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Last.Steps != 40 || again.Token != want.Token {
		t.Errorf("second save: steps %d token ok %v", again.Last.Steps, again.Token == want.Token)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestMissingDirIsDefaults(t *testing.T) {
	s, err := Load(filepath.Join(t.TempDir(), "nothing"))
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if !reflect.DeepEqual(s, d) {
		t.Errorf("got %+v, want defaults %+v", s, d)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Log("POSIX permissions do not apply on Windows; checking files exist only")
	}
	dir := filepath.Join(t.TempDir(), "cfg")
	if err := full().Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mode os.FileMode
	}{{"", 0o700}, {SettingsFile, 0o644}, {SecretsFile, 0o600}} {
		fi, err := os.Stat(filepath.Join(dir, c.name))
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != c.mode {
			t.Errorf("%q: mode %04o, want %04o", c.name, fi.Mode().Perm(), c.mode)
		}
	}

	// A secrets file opened up by someone is tightened and reported.
	sec := filepath.Join(dir, SecretsFile)
	if err := os.Chmod(sec, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(sec)
	if runtime.GOOS != "windows" {
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("secrets.toml left at %04o", fi.Mode().Perm())
		}
		if !containsWarning(s.Warnings, "0600") {
			t.Errorf("no warning about the loose secrets file: %q", s.Warnings)
		}
	}
	if s.Token != "tok-SECRET-1234" {
		t.Errorf("token lost while tightening: %q", s.Token)
	}
}

func TestSecretsStayOutOfSettingsAndOutput(t *testing.T) {
	dir := t.TempDir()
	s := full()
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(filepath.Join(dir, SettingsFile))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(dir, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"SECRET", "token =", "vast_key ="} {
		if strings.Contains(string(plain), leak) {
			t.Errorf("settings.toml contains %q:\n%s", leak, plain)
		}
	}
	if !strings.Contains(string(secret), "tok-SECRET-1234") || !strings.Contains(string(secret), "vast-SECRET-5678") {
		t.Errorf("secrets.toml lacks the secrets:\n%s", secret)
	}
	if !strings.Contains(string(plain), "gpu.example.net") {
		t.Errorf("settings.toml lacks the server URL:\n%s", plain)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%T %v"} {
		for _, v := range []any{s, *s} {
			out := fmt.Sprintf(verb, v, v)
			if strings.Contains(out, "SECRET") || strings.Contains(out, fmt.Sprintf("%x", "tok-SECRET")) {
				t.Errorf("fmt %s leaks a secret: %s", verb, out)
			}
		}
	}
	if out := fmt.Sprint(s); !strings.Contains(out, "Token:<set>") || !strings.Contains(out, "gpu.example.net") {
		t.Errorf("String() should mark the token as set and show the URL: %s", out)
	}
}

func TestSecretInSettingsFileIsMoved(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, SettingsFile), "mode = \"remote\"\ntoken = \"pasted-here\"\n", 0o644)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Token != "pasted-here" || !containsWarning(s.Warnings, "belongs in secrets.toml") {
		t.Fatalf("token %q, warnings %q", s.Token, s.Warnings)
	}
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	plain, _ := os.ReadFile(filepath.Join(dir, SettingsFile))
	if strings.Contains(string(plain), "pasted-here") {
		t.Errorf("token still in settings.toml after save:\n%s", plain)
	}
	again, err := Load(dir)
	if err != nil || again.Token != "pasted-here" || len(again.Warnings) != 0 {
		t.Errorf("after save: token %q warnings %q err %v", again.Token, again.Warnings, err)
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, SettingsFile), "mode = \"local\"\ncolour = \"blue\"\n[last]\nsteps = 12\nlegacy = true\n", 0o644)
	writeFile(t, filepath.Join(dir, SecretsFile), "token = \"t\"\nhf_token = \"x\"\n", 0o600)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode != ModeLocal || s.Last.Steps != 12 || s.Token != "t" {
		t.Errorf("known keys not read: %+v", s)
	}
	for _, k := range []string{`"colour"`, `"last.legacy"`, `"hf_token"`} {
		if !containsWarning(s.Warnings, k) {
			t.Errorf("no warning for %s: %q", k, s.Warnings)
		}
	}
	// Keys left out keep their defaults.
	if s.Provider != ProviderAuto || s.ServerURL != DefaultServerURL {
		t.Errorf("defaults lost: provider %q url %q", s.Provider, s.ServerURL)
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct {
		name, file, text string
		line             int
	}{
		{"syntax", SettingsFile, "mode = \"local\"\nserver_url = \"http://x\n", 2},
		{"wrong type", SettingsFile, "# c\n\n[last]\nsteps = \"many\"\n", 4},
		{"bad table", SettingsFile, "mode = \"local\"\n[last steps]\n", 2},
		{"secrets syntax", SecretsFile, "token = \"abc\"\nvast_key = = 1\n", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, c.file)
			writeFile(t, path, c.text, 0o600)
			other := SecretsFile
			if c.file == SecretsFile {
				other = SettingsFile
			}
			otherText := "token = \"keep-me\"\n"
			if other == SettingsFile {
				otherText = "gallery_dir = \"/keep/me\"\n"
			}
			writeFile(t, filepath.Join(dir, other), otherText, 0o600)

			s, err := Load(dir)
			if err == nil {
				t.Fatalf("no error, got %+v", s)
			}
			want := fmt.Sprintf("%s:%d: ", path, c.line)
			if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line starting %q", err, want)
			}
			var fe *FileError
			if !errors.As(err, &fe) || !fe.Malformed() || fe.Line != c.line {
				t.Errorf("not a malformed FileError at line %d: %#v", c.line, fe)
			}
			if b, _ := os.ReadFile(path); string(b) != c.text {
				t.Errorf("Load changed the file: %q", b)
			}

			// LoadOrDefaults: moves the file aside, keeps the good file's part.
			s, err = LoadOrDefaults(dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("LoadOrDefaults error %v, want one naming %s", err, want)
			}
			if s == nil {
				t.Fatal("LoadOrDefaults returned no settings")
			}
			if _, e := os.Stat(path); !errors.Is(e, os.ErrNotExist) {
				t.Errorf("bad file still in place: %v", e)
			}
			bad, _ := filepath.Glob(path + ".bad-*")
			if len(bad) != 1 {
				t.Fatalf("moved files: %v", bad)
			}
			if b, _ := os.ReadFile(bad[0]); string(b) != c.text {
				t.Errorf("moved file's content changed: %q", b)
			}
			if !strings.Contains(err.Error(), bad[0]) {
				t.Errorf("error does not say where the file went: %v", err)
			}
			if c.file == SettingsFile {
				if s.Token != "keep-me" || s.Mode != ModeRemote || s.Last.Steps != 0 {
					t.Errorf("want defaults plus the secrets: %+v", s)
				}
			} else if s.GalleryDir != "/keep/me" || s.Token != "" {
				t.Errorf("want settings.toml's values and no secrets: %+v", s)
			}
			// Saving now writes fresh files and leaves the moved one alone.
			if err := s.Save(dir); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(bad[0]); string(b) != c.text {
				t.Errorf("save touched the moved file")
			}
			if _, err := Load(dir); err != nil {
				t.Errorf("load after save: %v", err)
			}
		})
	}
}

func TestXDG(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("PIXERY_CONFIG", "")
	for _, v := range []string{"XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_PICTURES_DIR"} {
		t.Setenv(v, "")
	}
	check := func(name string, f func() (string, error), want string) {
		t.Helper()
		got, err := f()
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	check("Dir", Dir, filepath.Join(home, ".config", "pixery"))
	check("CacheDir", CacheDir, filepath.Join(home, ".cache", "pixery"))
	check("StateDir", StateDir, filepath.Join(home, ".local", "state", "pixery"))
	d := Defaults()
	if d.GalleryDir != filepath.Join(home, "Pictures", "pixery") || d.ModelsDir != filepath.Join(home, ".local", "share", "pixery", "models") {
		t.Errorf("home defaults: gallery %q models %q", d.GalleryDir, d.ModelsDir)
	}

	// user-dirs.dirs, as desktop environments write it.
	writeFile(t, filepath.Join(home, ".config", "user-dirs.dirs"), "# comment\nXDG_DESKTOP_DIR=\"$HOME/Desktop\"\nXDG_PICTURES_DIR=\"$HOME/Bilder\"\n", 0o644)
	if g := Defaults().GalleryDir; g != filepath.Join(home, "Bilder", "pixery") {
		t.Errorf("user-dirs.dirs ignored: %q", g)
	}

	x := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(x, "c"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(x, "k"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(x, "s"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(x, "d"))
	t.Setenv("XDG_PICTURES_DIR", filepath.Join(x, "p"))
	check("Dir", Dir, filepath.Join(x, "c", "pixery"))
	check("CacheDir", CacheDir, filepath.Join(x, "k", "pixery"))
	check("StateDir", StateDir, filepath.Join(x, "s", "pixery"))
	check("GalleryCacheDir", GalleryCacheDir, filepath.Join(x, "k", "pixery", "gallery"))
	d = Defaults()
	if d.GalleryDir != filepath.Join(x, "p", "pixery") || d.ModelsDir != filepath.Join(x, "d", "pixery", "models") {
		t.Errorf("XDG defaults: gallery %q models %q", d.GalleryDir, d.ModelsDir)
	}

	// Relative XDG values are invalid by the spec and ignored.
	t.Setenv("XDG_CACHE_HOME", "relative/cache")
	check("CacheDir (relative XDG)", CacheDir, filepath.Join(home, ".cache", "pixery"))

	t.Setenv("PIXERY_CONFIG", filepath.Join(x, "explicit"))
	check("Dir (PIXERY_CONFIG)", Dir, filepath.Join(x, "explicit"))
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Settings)
		want string // "" = valid
	}{
		{"defaults", func(*Settings) {}, ""},
		{"full", func(s *Settings) { *s = *full() }, ""},
		{"ipv6", func(s *Settings) { s.ServerURL = "http://[::1]:8000" }, ""},
		{"no scheme", func(s *Settings) { s.ServerURL = "localhost:8000" }, "http://"},
		{"ftp", func(s *Settings) { s.ServerURL = "ftp://host/" }, "http://"},
		{"garbage url", func(s *Settings) { s.ServerURL = "http://a b:80" }, "not a URL"},
		{"no host", func(s *Settings) { s.ServerURL = "http://:8000" }, "no host"},
		{"bad port", func(s *Settings) { s.ServerURL = "http://host:99999" }, "bad port"},
		{"user info", func(s *Settings) { s.ServerURL = "http://me:pw@host:8000" }, "user name or password"},
		{"empty url remote", func(s *Settings) { s.ServerURL = "" }, "server URL is empty"},
		{"empty url local", func(s *Settings) { s.ServerURL = ""; s.Mode = ModeLocal }, ""},
		{"unknown mode", func(s *Settings) { s.Mode = "cloud" }, `unknown mode "cloud"`},
		{"empty mode", func(s *Settings) { s.Mode = "" }, "mode is empty"},
		{"unknown provider", func(s *Settings) { s.Provider = "rocm" }, `unknown provider "rocm"`},
		{"negative minutes", func(s *Settings) { s.IdleDestroyMinutes = -5 }, "idle destroy minutes is -5"},
		{"no gallery", func(s *Settings) { s.GalleryDir = "" }, "gallery folder"},
		{"local without models", func(s *Settings) { s.Mode = ModeLocal; s.ModelsDir = "" }, "models folder"},
		{"token newline", func(s *Settings) { s.Token = "abc\n" }, "token contains"},
		{"vast key space", func(s *Settings) { s.VastKey = "a b" }, "Vast.ai API key"},
		{"form steps", func(s *Settings) { s.Last.Steps = -1 }, "steps -1"},
		{"form seed mode", func(s *Settings) { s.Last.SeedMode = "lucky" }, `seed mode "lucky"`},
		{"form lora", func(s *Settings) { s.Last.LoRAs = []LoRA{{Name: " "}} }, "LoRA 1 has no name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Defaults()
			s.GalleryDir, s.ModelsDir = "/g", "/m" // independent of the test machine's home
			c.edit(s)
			err := s.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case c.want != "" && err == nil:
				t.Errorf("no error, want one containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
	// Several problems are all reported.
	s := Defaults()
	s.Mode, s.Provider, s.IdleDestroyMinutes = "x", "y", -1
	if err := s.Validate(); err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Errorf("want three problems, got %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for url, want := range map[string]bool{
		"http://localhost:8000": true, "http://127.0.0.1:8000": true, "http://127.3.2.1": true,
		"http://[::1]:8000": true, "http://10.0.0.2:8000": false, "https://gpu.example.net": false, "::": false,
	} {
		if got := (&Settings{ServerURL: url}).IsLoopback(); got != want {
			t.Errorf("IsLoopback(%q) = %v", url, got)
		}
	}
}

func TestClone(t *testing.T) {
	a := full()
	b := a.Clone()
	b.Last.LoRAs[0].Name = "changed"
	if a.Last.LoRAs[0].Name != "detail" {
		t.Error("Clone shares the LoRA slice")
	}
}

func writeFile(t *testing.T, path, text string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func containsWarning(ws []string, sub string) bool {
	for _, w := range ws {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}
