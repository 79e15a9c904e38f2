package sshdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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
	if p, ok := built["real-engine"]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "pixery-standin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..") // remote/sshdtest → repository root
	out := filepath.Join(buildDir, "real", "pixery-engine")
	cmd := exec.Command("go", "build", "-o", out, "./engine/cmd/pixery-engine")
	cmd.Dir = root
	cmd.Env = goEnv("GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pixery-engine: %v\n%s", err, strings.TrimSpace(string(b)))
	}
	built["real-engine"] = out
	return out
}
