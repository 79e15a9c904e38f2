package remote

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/pixery/pixery/remote/deploy"
)

// EngineBinaryNames are the file names FindEngineBinary looks for, in order.
var EngineBinaryNames = []string{"pixery-engine-linux-amd64", "pixery-engine"}

// ErrNoEngineBinary means no linux/amd64 pixery-engine was found to deploy.
var ErrNoEngineBinary = errors.New("no linux/amd64 pixery-engine next to pixery; build one with `GOOS=linux GOARCH=amd64 go build -o pixery-engine-linux-amd64 ./engine/cmd/pixery-engine` and put it next to pixery")

// FindEngineBinary finds the pixery-engine to deploy as the CLI does: a
// linux/amd64 executable named as in EngineBinaryNames in one of dirs, or,
// with no dirs, in the folder of the running program.
func FindEngineBinary(dirs ...string) (string, error) {
	if len(dirs) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return "", ErrNoEngineBinary
		}
		dirs = []string{filepath.Dir(exe)}
	}
	for _, dir := range dirs {
		for _, name := range EngineBinaryNames {
			p := filepath.Join(dir, name)
			if deploy.CheckEngineBinary(p) == nil {
				return p, nil
			}
		}
	}
	return "", ErrNoEngineBinary
}
