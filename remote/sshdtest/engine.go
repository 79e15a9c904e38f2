package sshdtest

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvEngine names a pixery-engine (built for linux/amd64) that RealEngine
// returns instead of building one; it must be built from the sources under
// test, or the tests test something else.
const EnvEngine = "PIXERY_TEST_ENGINE"

// RealEngine returns the path of the real pixery-engine: $PIXERY_TEST_ENGINE
// when set, else ./engine/cmd/pixery-engine built for linux/amd64 once per
// test process (the go command's cache makes that a few seconds when the
// sources did not change; 20–60 s on a cold cache). CleanupBuilds removes it.
func RealEngine(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvEngine); p != "" {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("%s=%s: not a file (%v)", EnvEngine, p, err)
		}
		return p
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	return buildLocked(t, goBuild{
		key: "real-engine", what: "pixery-engine",
		dir: filepath.Join("..", ".."), // remote/sshdtest → repository root
		pkg: "./engine/cmd/pixery-engine", out: filepath.Join("real", "pixery-engine"),
		env: []string{"GOOS=linux", "GOARCH=amd64"},
	})
}
