package settings

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pixery/pixery/internal/atomicfile"
)

// secrets is secrets.toml's content.
type secrets struct {
	Token   string `toml:"token"`
	VastKey string `toml:"vast_key"`
}

// plainFile is settings.toml as read: the stored fields, plus the secrets'
// keys so that a secret pasted into the wrong file is moved, not dropped.
type plainFile struct {
	*Settings
	Token   *string `toml:"token"`
	VastKey *string `toml:"vast_key"`
}

// FileError is a settings file that could not be read or parsed. Line is
// 0 when the error is not about one line.
type FileError struct {
	Path string
	Line int
	Err  error

	malformed bool
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Malformed reports whether the file's content is at fault (as opposed to
// reading it), so that moving it aside loses nothing that can be read.
func (e *FileError) Malformed() bool { return e.malformed }

// Load reads the settings in dir. Missing files mean defaults. A malformed
// file is an error naming its path and line, and the file is left as it is;
// unknown keys and loose permissions of secrets.toml (which Load tightens)
// are reported in Warnings.
func Load(dir string) (*Settings, error) {
	s := Defaults()
	if err := loadSettings(dir, s); err != nil {
		return nil, err
	}
	if err := loadSecrets(dir, s); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadOrDefaults is Load for a program that must start anyway: a malformed
// file is renamed to <name>.bad-<timestamp> (so nothing is lost and the next
// save does not overwrite it), its part of the settings takes defaults, and
// the error (which names the file, its line and the new name) is returned
// along with usable settings. The other file is still read.
func LoadOrDefaults(dir string) (*Settings, error) {
	s := Defaults()
	var errs []error
	if err := loadSettings(dir, s); err != nil {
		keep := Defaults()
		keep.Warnings = s.Warnings
		*s = *keep
		errs = append(errs, setAside(err))
	}
	if err := loadSecrets(dir, s); err != nil {
		s.Token, s.VastKey = "", ""
		errs = append(errs, setAside(err))
	}
	return s, errors.Join(errs...)
}

// setAside renames the file of a malformed-file error and says where it went.
func setAside(err error) error {
	var fe *FileError
	if !errors.As(err, &fe) || !fe.Malformed() {
		return err
	}
	bad := fe.Path + ".bad-" + time.Now().Format("20060102-150405")
	for i := 2; ; i++ {
		if _, e := os.Lstat(bad); errors.Is(e, fs.ErrNotExist) {
			break
		}
		bad = fmt.Sprintf("%s.bad-%s-%d", fe.Path, time.Now().Format("20060102-150405"), i)
	}
	if e := os.Rename(fe.Path, bad); e != nil {
		return fmt.Errorf("%w (using defaults; could not move the file aside: %v)", err, e)
	}
	return fmt.Errorf("%w (using defaults; the file was moved to %s)", err, bad)
}

func loadSettings(dir string, s *Settings) error {
	path := filepath.Join(dir, SettingsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	pf := plainFile{Settings: s}
	md, err := toml.Decode(string(b), &pf)
	if err != nil {
		return parseError(path, err)
	}
	s.Warnings = append(s.Warnings, undecoded(path, md)...)
	if pf.Token != nil {
		s.Token = *pf.Token
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: token belongs in %s; it will be moved there on the next save", path, SecretsFile))
	}
	if pf.VastKey != nil {
		s.VastKey = *pf.VastKey
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: vast_key belongs in %s; it will be moved there on the next save", path, SecretsFile))
	}
	return nil
}

func loadSecrets(dir string, s *Settings) error {
	path := filepath.Join(dir, SecretsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	defer f.Close()
	if runtime.GOOS != "windows" {
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := f.Chmod(0o600); err != nil {
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s is readable by others (mode %04o) and could not be restricted: %v", path, fi.Mode().Perm(), err))
			} else {
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s was readable by others (mode %04o); restricted to 0600", path, fi.Mode().Perm()))
			}
		}
	}
	var sec secrets
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return &FileError{Path: path, Err: err}
	}
	md, err := toml.Decode(buf.String(), &sec)
	if err != nil {
		return parseError(path, err)
	}
	s.Warnings = append(s.Warnings, undecoded(path, md)...)
	// A key in both files: secrets.toml is the one Save writes, so it wins.
	if md.IsDefined("token") {
		s.Token = sec.Token
	}
	if md.IsDefined("vast_key") {
		s.VastKey = sec.VastKey
	}
	return nil
}

// parseError turns the TOML library's error into a FileError with a line,
// without the library's multi-line rendering. Every error of toml.Decode is
// about the file's content: a syntax error (toml.ParseError) or a value of
// the wrong type ("toml: line 3 (last key \"mode\"): incompatible types…").
// Neither quotes the value, so a secret cannot leak through the message.
func parseError(path string, err error) error {
	fe := &FileError{Path: path, Err: err, malformed: true}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		fe.Line = pe.Position.Line
		msg := pe.Message
		if pe.LastKey != "" {
			msg = fmt.Sprintf("%s (key %s)", msg, pe.LastKey)
		}
		fe.Err = errors.New(msg)
	} else if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Err = fmt.Errorf("%s (key %s)", m[3], m[2])
	}
	return fe
}

var typeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

func undecoded(path string, md toml.MetaData) []string {
	var w []string
	for _, k := range md.Undecoded() {
		w = append(w, fmt.Sprintf("%s: unknown key %q ignored", path, k.String()))
	}
	return w
}

// Save writes the settings to dir (created 0700 when missing): secrets to
// secrets.toml (0600), the rest to settings.toml (0644), each atomically.
// Secrets are written first, so a secret moved out of settings.toml is on
// disk before settings.toml loses it.
func (s *Settings) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	secPath := filepath.Join(dir, SecretsFile)
	_, statErr := os.Stat(secPath)
	if s.Token != "" || s.VastKey != "" || statErr == nil {
		var buf bytes.Buffer
		buf.WriteString("# pixery secrets: keep this file private (mode 0600).\n")
		if err := toml.NewEncoder(&buf).Encode(secrets{Token: s.Token, VastKey: s.VastKey}); err != nil {
			return fmt.Errorf("save %s: %w", secPath, err)
		}
		if err := atomicfile.Write(secPath, buf.Bytes(), 0o600); err != nil {
			return fmt.Errorf("save %s: %w", secPath, err)
		}
	}
	path := filepath.Join(dir, SettingsFile)
	var buf bytes.Buffer
	buf.WriteString("# pixery settings. Secrets (token, vast_key) live in " + SecretsFile + ".\n")
	if err := toml.NewEncoder(&buf).Encode(s); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := atomicfile.Write(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
