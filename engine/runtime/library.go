// Package runtime finds and initialises the ONNX Runtime shared library,
// chooses the execution provider, and runs graphs built by the engine with
// their weights bound as external data to the user's checkpoint files.
package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
)

// Version is the ONNX Runtime release the engine is built and tested with.
const Version = "1.24.3"

// LibraryEnv names the environment variable that points at the library.
const LibraryEnv = "PIXERY_ORT_LIB"

// LibraryName is the file name of the ONNX Runtime library on this OS.
func LibraryName() string {
	switch goruntime.GOOS {
	case "darwin":
		return "libonnxruntime.dylib"
	case "windows":
		return "onnxruntime.dll"
	}
	return "libonnxruntime.so.1"
}

// InstallDir is where scripts/setup.sh puts the CPU library:
// $XDG_DATA_HOME/pixery/lib, else ~/.local/share/pixery/lib. (On a GPU
// host, `pixery-engine setup` installs the GPU libraries beside the binary,
// which Candidates searches first.)
func InstallDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "pixery", "lib")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "share", "pixery", "lib")
}

// Candidates lists, in order, the paths FindLibrary tries: the explicit
// path, $PIXERY_ORT_LIB, beside the running binary (and its lib/ and
// ../lib/ folders, the layout of a deployed engine), then the install dir.
func Candidates(explicit string) []string {
	var c []string
	if explicit != "" {
		c = append(c, explicit)
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		c = append(c, env)
	}
	name := LibraryName()
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		c = append(c, filepath.Join(dir, name), filepath.Join(dir, "lib", name), filepath.Join(dir, "..", "lib", name))
	}
	if d := InstallDir(); d != "" {
		c = append(c, filepath.Join(d, name))
	}
	return c
}

// ErrLibraryNotFound is wrapped by FindLibrary's error.
var ErrLibraryNotFound = errors.New("ONNX Runtime library not found")

// FindLibrary returns the first candidate that is a readable file. An
// explicit path or $PIXERY_ORT_LIB that does not exist is an error by itself:
// the user asked for that file, so silently using another would mislead.
func FindLibrary(explicit string) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", p)
		}
		return nil
	}
	if explicit != "" {
		if err := check(explicit); err != nil {
			return "", fmt.Errorf("%w: the library given explicitly: %v", ErrLibraryNotFound, err)
		}
		return explicit, nil
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		if err := check(env); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v", ErrLibraryNotFound, LibraryEnv, env, err)
		}
		return env, nil
	}
	tried := Candidates("")
	for _, p := range tried {
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (ONNX Runtime %s); looked in: %s. Run scripts/setup.sh, or set %s",
		ErrLibraryNotFound, Version, strings.Join(tried, ", "), LibraryEnv)
}
