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
	if buildDir == "" {
		d, err := os.MkdirTemp("", "pixery-standin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	base, ok := built["engine"]
	if !ok {
		_, self, _, _ := runtime.Caller(0)
		base = filepath.Join(buildDir, "pixery-engine")
		cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", base, "./testdata/standin")
		cmd.Dir = filepath.Dir(self)
		cmd.Env = goEnv("GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build stand-in engine: %v\n%s", err, strings.TrimSpace(string(b)))
		}
		built["engine"] = base
	}
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
	if p, ok := built["quotasftp"]; ok {
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
	out := filepath.Join(buildDir, "quotasftp")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/quotasftp")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = goEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build quotasftp: %v\n%s", err, strings.TrimSpace(string(b)))
	}
	built["quotasftp"] = out
	return out
}
