package cli

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/app/settings"
	enginecli "github.com/pixery/pixery/engine/cli"
)

// EnvToken is the bearer token for --server (or the configured engine),
// overriding the settings' token.
const EnvToken = "PIXERY_TOKEN"

// appFlags are the flags every command that uses the settings has.
type appFlags struct {
	configDir string
}

func (a *appFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.configDir, "config", "", "settings folder (default $PIXERY_CONFIG, else $XDG_CONFIG_HOME/pixery)")
}

// load reads the settings, printing what Load warned about to stderr. A
// malformed file stops the command: the user is told the file and line,
// and the file is left for them to fix.
func (a *appFlags) load(stderr io.Writer) (*settings.Settings, string, error) {
	dir := a.configDir
	if dir == "" {
		var err error
		if dir, err = settings.Dir(); err != nil {
			return nil, "", err
		}
	}
	s, err := settings.Load(dir)
	if err != nil {
		return nil, dir, fmt.Errorf("settings: %w", err)
	}
	for _, w := range s.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	return s, dir, nil
}

// engineFlags choose the engine, overriding the settings' mode.
type engineFlags struct {
	appFlags
	server string
	local  bool
}

func (e *engineFlags) register(fs *flag.FlagSet) {
	e.appFlags.register(fs)
	fs.StringVar(&e.server, "server", "", "engine URL (default: the settings' server URL)")
	fs.BoolVar(&e.local, "local", false, "run the engine in this process (the settings' models folder)")
}

// open loads the settings and starts or connects to the engine they (or the
// flags) name. Settings that do not validate stop the command with what to
// fix.
func (e *engineFlags) open(stderr io.Writer) (*settings.Settings, engine.Engine, error) {
	if e.server != "" && e.local {
		return nil, nil, fmt.Errorf("%w: --server and --local exclude each other", enginecli.ErrUsage)
	}
	s, dir, err := e.load(stderr)
	if err != nil {
		return nil, nil, err
	}
	if e.local {
		s.Mode = settings.ModeLocal
	}
	if e.server != "" {
		if s.Token != "" && e.server != s.ServerURL {
			// The stored token belongs to the configured engine; do not
			// hand it to another address given on the command line.
			s.Token = ""
		}
		s.Mode, s.ServerURL = settings.ModeRemote, e.server
	}
	if t := os.Getenv(EnvToken); t != "" {
		s.Token = t
	}
	if err := s.Validate(); err != nil {
		return nil, nil, fmt.Errorf("settings in %s: %w", dir, err)
	}
	if s.Mode == settings.ModeLocal {
		eng, err := engine.Local(engine.LocalConfig{
			ModelsDir: s.ModelsDir,
			Provider:  s.Provider,
			ORTLib:    s.ORTLib,
			Logf: func(format string, args ...any) {
				fmt.Fprintf(stderr, "engine: %s\n", fmt.Sprintf(format, args...))
			},
		})
		if err != nil {
			return nil, nil, fmt.Errorf("start the local engine (models %s): %w", s.ModelsDir, err)
		}
		return s, eng, nil
	}
	if !s.IsLoopback() && s.Token == "" {
		u, _ := url.Parse(s.ServerURL)
		fmt.Fprintf(stderr, "warning: %s is not this machine and no token is set; the engine will refuse requests without one (set %s or the token in the settings)\n", u.Host, EnvToken)
	}
	return s, engine.Remote(s.ServerURL, s.Token), nil
}

// openGallery opens the settings' gallery folder with the shared index.
func openGallery(s *settings.Settings) (*gallery.Store, error) {
	cache, err := settings.GalleryCacheDir()
	if err != nil {
		return nil, err
	}
	g, err := gallery.Open(s.GalleryDir, cache)
	if err != nil {
		return nil, fmt.Errorf("open gallery %s: %w", s.GalleryDir, err)
	}
	return g, nil
}

// commandFlags returns a flag set for "pixery NAME" that prints its usage
// to stderr.
func commandFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pixery "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pixery %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}
