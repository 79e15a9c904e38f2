package sshdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// origEnv is the environment before any test moved HOME (Home does): the
// go command must keep finding its build cache, module cache and config
// there, or every build would start from scratch.
var origEnv = os.Environ()

// goEnv is the environment for the go command: the original HOME and XDG
// folders, plus extra.
func goEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || strings.HasPrefix(k, "XDG_") {
			continue
		}
		env = append(env, kv)
	}
	for _, kv := range origEnv {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || strings.HasPrefix(k, "XDG_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// StandInEngine returns the path of a stand-in pixery-engine (the
// program in testdata/standin, built for linux/amd64 once per test
// process) that reports version in /v1/health. It serves /v1/health, runs
// a fake `setup`, and drains jobs on SIGTERM like the real engine.
// Versions differ only in a trailer after the ELF image, which the
// program reads from its own file: one link serves every version, and the
// files still differ as two builds would.
func StandInEngine(t testing.TB, version string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built["engine-"+version]; ok {
		return p
	}
	base := buildLocked(t, goBuild{
		key: "engine", what: "stand-in engine", pkg: "./testdata/standin", out: "pixery-engine",
		flags: []string{"-ldflags", "-s -w"}, env: []string{"GOOS=linux", "GOARCH=amd64"},
	})
	b, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(version) > 200 {
		t.Fatalf("stand-in version %q too long", version)
	}
	// Trailer: "PIXVER" + version + its length as one byte.
	b = append(append(append(b, "PIXVER"...), version...), byte(len(version)))
	out := filepath.Join(buildDir, "pixery-engine-"+version)
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	built["engine-"+version] = out
	return out
}

// CleanupBuilds removes the stand-in binaries; call it from TestMain.
func CleanupBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	buildDir = ""
	built = map[string]string{}
}

// QuotaSFTP builds testdata/quotasftp for this machine (once per test
// process) and returns its path, for use as Options.Subsystem.
func QuotaSFTP(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	return buildLocked(t, goBuild{key: "quotasftp", what: "quotasftp", pkg: "./testdata/quotasftp", out: "quotasftp"})
}

// goBuild is a go build of a program for the tests.
type goBuild struct {
	key   string   // names the result in built
	what  string   // names the program in a failure
	dir   string   // where to run go build, relative to this package's folder
	pkg   string   // the package to build, relative to dir
	out   string   // the binary, relative to buildDir
	flags []string // more go build flags
	env   []string // more environment, e.g. GOOS
}

// buildLocked runs b once per test process (the go command's cache makes
// later processes quick) and returns the binary's path. buildMu must be
// held.
func buildLocked(t testing.TB, b goBuild) string {
	t.Helper()
	if p, ok := built[b.key]; ok {
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
	out := filepath.Join(buildDir, b.out)
	args := append(append([]string{"build"}, b.flags...), "-o", out, b.pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join(filepath.Dir(self), b.dir)
	cmd.Env = goEnv(b.env...)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", b.what, err, strings.TrimSpace(string(o)))
	}
	built[b.key] = out
	return out
}
