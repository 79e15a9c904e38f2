// Package settings holds the desktop app's and the pixery CLI's user
// settings: where the engine is, where images go, local-mode runtime
// choices, remote-rental keys, and what the generate form last held.
//
// Two files in the settings folder (Dir) store them: settings.toml (0644)
// for everything that may be shown or shared, and secrets.toml (0600, in a
// 0700 folder) for the bearer token and the Vast.ai API key. Both are
// written atomically. A malformed file is never silently replaced: Load
// reports it by file and line; LoadOrDefaults moves it aside and carries on.
package settings

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// File names inside the settings folder.
const (
	SettingsFile = "settings.toml"
	SecretsFile  = "secrets.toml"
)

// Modes and providers that Validate accepts.
const (
	ModeRemote = "remote"
	ModeLocal  = "local"

	ProviderAuto   = "auto"
	ProviderCPU    = "cpu"
	ProviderCUDA   = "cuda"
	ProviderCoreML = "coreml"
)

// DefaultServerURL is the local end of the SSH tunnel to a rented engine.
const DefaultServerURL = "http://localhost:8000"

// Seed modes of the generate form.
const (
	SeedRandom    = "random"    // a new random seed for every job
	SeedFixed     = "fixed"     // Form.Seed every time
	SeedIncrement = "increment" // Form.Seed, then on by the batch size after each job (image k of a batch already uses Seed+k)
)

// Settings are the user's settings. Token and VastKey are secrets: they are
// stored in secrets.toml only and never printed (Settings formats itself with
// them masked, whatever the fmt verb).
type Settings struct {
	// ServerURL is the remote engine's URL; by default the tunnel's local end.
	ServerURL string `toml:"server_url"`
	// Token is the bearer token an engine on a non-loopback address needs.
	Token string `toml:"-"`
	// Mode is ModeRemote (an engine over HTTP) or ModeLocal (in-process).
	Mode string `toml:"mode"`
	// GalleryDir is where generated images are saved.
	GalleryDir string `toml:"gallery_dir"`
	// ModelsDir is local mode's models folder.
	ModelsDir string `toml:"models_dir"`
	// Provider is local mode's execution provider: auto, cpu, cuda, coreml.
	Provider string `toml:"provider"`
	// ORTLib is local mode's ONNX Runtime library; empty means search.
	ORTLib string `toml:"ort_lib"`
	// VastKey is the Vast.ai API key; empty means the vastai CLI's key
	// ($VAST_API_KEY or its key file, see remote/vast.LoadAPIKey).
	VastKey string `toml:"-"`
	// SSHKey is the private key for rented hosts; empty means the SSH
	// agent, then ~/.ssh/id_ed25519 and id_rsa.
	SSHKey string `toml:"ssh_key"`
	// IdleDestroyMinutes destroys a rented instance after this many minutes
	// without jobs; 0 turns it off.
	IdleDestroyMinutes int `toml:"idle_destroy_minutes"`
	// Last is what the generate form held when last used.
	Last Form `toml:"last"`

	// Warnings are what Load noticed without failing: unknown keys, a
	// secrets file that was readable by others, a secret found in
	// settings.toml. Not stored.
	Warnings []string `toml:"-"`
}

// Form is the generate form's state, restored at start. Zero values mean
// "the model's default" as in api.JobRequest.
type Form struct {
	Model    string  `toml:"model"`
	Prompt   string  `toml:"prompt"`
	Negative string  `toml:"negative"`
	Width    int     `toml:"width"`
	Height   int     `toml:"height"`
	Sampler  string  `toml:"sampler"`
	Steps    int     `toml:"steps"`
	CFG      float64 `toml:"cfg"`
	// SeedMode is SeedRandom, SeedFixed or SeedIncrement; Seed the seed
	// the last two use.
	SeedMode string `toml:"seed_mode"`
	Seed     int64  `toml:"seed"`
	// Batch is the number of images per job.
	Batch int    `toml:"batch"`
	LoRAs []LoRA `toml:"loras"`
	// RefImage is the reference image's path and RefScale its weight.
	RefImage string  `toml:"ref_image"`
	RefScale float64 `toml:"ref_scale"`
}

// LoRA is a LoRA picked in the form, by its engine name.
type LoRA struct {
	Name  string  `toml:"name"`
	Scale float64 `toml:"scale"`
}

// Defaults returns the settings of a first start. Folders it cannot work
// out (no home directory) are left empty, which Validate reports.
func Defaults() *Settings {
	s := &Settings{
		ServerURL: DefaultServerURL,
		Mode:      ModeRemote,
		Provider:  ProviderAuto,
		Last:      Form{SeedMode: SeedRandom, Batch: 1},
	}
	if pics := picturesDir(); pics != "" {
		s.GalleryDir = filepath.Join(pics, "pixery")
	}
	if data := xdgDir("XDG_DATA_HOME", ".local", "share"); data != "" {
		s.ModelsDir = filepath.Join(data, "pixery", "models")
	}
	return s
}

// Clone returns a deep copy, so a UI can edit a copy and save or drop it.
func (s *Settings) Clone() *Settings {
	c := *s
	c.Last.LoRAs = append([]LoRA(nil), s.Last.LoRAs...)
	c.Warnings = append([]string(nil), s.Warnings...)
	return &c
}

// Validate checks every field and reports each problem in words a user can
// act on (all problems at once, joined).
func (s *Settings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch s.Mode {
	case ModeRemote, ModeLocal:
	case "":
		bad("mode is empty: use %q or %q", ModeRemote, ModeLocal)
	default:
		bad("unknown mode %q: use %q or %q", s.Mode, ModeRemote, ModeLocal)
	}
	if s.ServerURL == "" {
		if s.Mode == ModeRemote {
			bad("server URL is empty: remote mode needs one, such as %s", DefaultServerURL)
		}
	} else if err := checkURL(s.ServerURL); err != nil {
		errs = append(errs, err)
	}
	if strings.ContainsAny(s.Token, " \t\r\n") {
		bad("token contains white space or a line break; paste it again")
	}
	if strings.ContainsAny(s.VastKey, " \t\r\n") {
		bad("Vast.ai API key contains white space or a line break; paste it again")
	}
	switch s.Provider {
	case ProviderAuto, ProviderCPU, ProviderCUDA, ProviderCoreML:
	default:
		bad("unknown provider %q: use auto, cpu, cuda or coreml", s.Provider)
	}
	if s.GalleryDir == "" {
		bad("gallery folder is not set")
	}
	if s.Mode == ModeLocal && s.ModelsDir == "" {
		bad("models folder is not set: local mode needs one")
	}
	if s.IdleDestroyMinutes < 0 {
		bad("idle destroy minutes is %d: use 0 (off) or a positive number", s.IdleDestroyMinutes)
	}
	if err := s.Last.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (f *Form) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("last form: "+format, args...)) }
	if f.Width < 0 || f.Height < 0 {
		bad("size %dx%d is negative", f.Width, f.Height)
	}
	if f.Steps < 0 {
		bad("steps %d is negative", f.Steps)
	}
	if f.CFG < 0 {
		bad("CFG %g is negative", f.CFG)
	}
	if f.Batch < 0 {
		bad("batch %d is negative", f.Batch)
	}
	switch f.SeedMode {
	case "", SeedRandom, SeedFixed, SeedIncrement:
	default:
		bad("unknown seed mode %q: use random, fixed or increment", f.SeedMode)
	}
	for i, l := range f.LoRAs {
		if strings.TrimSpace(l.Name) == "" {
			bad("LoRA %d has no name", i+1)
		}
	}
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("server URL %q is not a URL: %v", raw, unwrapURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("server URL %q must start with http:// or https://", raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("server URL %q has no host", raw)
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("server URL %q has a bad port %q", raw, p)
		}
	}
	if u.User != nil {
		return fmt.Errorf("server URL %q carries a user name or password; put the token in the token field instead", redactURL(u))
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// IsLoopback reports whether the server URL points at this machine
// (localhost, 127.0.0.0/8, ::1), where the engine needs no token.
func (s *Settings) IsLoopback() bool {
	u, err := url.Parse(s.ServerURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// String shows the settings with secrets masked.
func (s Settings) String() string {
	return fmt.Sprintf("{ServerURL:%s Token:%s Mode:%s GalleryDir:%s ModelsDir:%s Provider:%s ORTLib:%s VastKey:%s SSHKey:%s IdleDestroyMinutes:%d Last:%+v}",
		s.ServerURL, mask(s.Token), s.Mode, s.GalleryDir, s.ModelsDir, s.Provider, s.ORTLib, mask(s.VastKey), s.SSHKey, s.IdleDestroyMinutes, s.Last)
}

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x…) print String's
// masked form, so that no verb can leak a secret into a log.
func (s Settings) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprint(f, s.String())
}

func mask(secret string) string {
	if secret == "" {
		return `""`
	}
	return "<set>"
}

// Dir is the settings folder: $PIXERY_CONFIG when set, else
// $XDG_CONFIG_HOME/pixery, else ~/.config/pixery.
func Dir() (string, error) {
	if d := os.Getenv("PIXERY_CONFIG"); d != "" {
		return d, nil
	}
	return appDir("XDG_CONFIG_HOME", ".config")
}

// CacheDir is where rebuildable caches live (gallery index, thumbnails):
// $XDG_CACHE_HOME/pixery, else ~/.cache/pixery.
func CacheDir() (string, error) { return appDir("XDG_CACHE_HOME", ".cache") }

// StateDir is where state that outlives a run but is not a setting lives
// (the job queue): $XDG_STATE_HOME/pixery, else ~/.local/state/pixery.
func StateDir() (string, error) { return appDir("XDG_STATE_HOME", ".local", "state") }

// GalleryCacheDir is the gallery's index and thumbnails folder (CacheDir's
// "gallery"), one place so that the app and the CLI share one index.
func GalleryCacheDir() (string, error) {
	d, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "gallery"), nil
}

func appDir(env string, fallback ...string) (string, error) {
	d := xdgDir(env, fallback...)
	if d == "" {
		return "", fmt.Errorf("find the %s folder: $%s is not set and the home folder is unknown", strings.ToLower(strings.TrimPrefix(env, "XDG_")), env)
	}
	return filepath.Join(d, "pixery"), nil
}

// xdgDir returns $env when it is an absolute path (the XDG spec says to
// ignore relative ones), else ~/fallback..., else "".
func xdgDir(env string, fallback ...string) string {
	if d := os.Getenv(env); d != "" && filepath.IsAbs(d) {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(append([]string{home}, fallback...)...)
}

// picturesDir is $XDG_PICTURES_DIR, else the XDG_PICTURES_DIR line of
// user-dirs.dirs (what desktop environments write), else ~/Pictures.
func picturesDir() string {
	if d := os.Getenv("XDG_PICTURES_DIR"); d != "" && filepath.IsAbs(d) {
		return d
	}
	home, _ := os.UserHomeDir()
	if cfg := xdgDir("XDG_CONFIG_HOME", ".config"); cfg != "" && home != "" {
		if b, err := os.ReadFile(filepath.Join(cfg, "user-dirs.dirs")); err == nil {
			if d := userDirsPictures(string(b), home); d != "" {
				return d
			}
		}
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, "Pictures")
}

// userDirsPictures reads XDG_PICTURES_DIR="$HOME/…" from a user-dirs.dirs
// file's text; the format allows only $HOME-relative or absolute paths.
func userDirsPictures(text, home string) string {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		v, ok := strings.CutPrefix(line, "XDG_PICTURES_DIR=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		if rest, ok := strings.CutPrefix(v, "$HOME"); ok {
			v = home + rest
		}
		if filepath.IsAbs(v) && filepath.Clean(v) != filepath.Clean(home) {
			return filepath.Clean(v)
		}
	}
	return ""
}
