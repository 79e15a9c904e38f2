package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkColdStart starts the real app (GLFW + Mesa's software GL) under
// Xvfb and measures the time from exec to a window whose event loop has
// drawn and turned (PIXERY_READY_FILE). Each start uses fresh settings,
// cache and state folders and an empty gallery; the engine URL points
// nowhere, as on a first start before renting. Needs Xvfb (xvfb package).
func BenchmarkColdStart(b *testing.B) {
	if _, err := exec.LookPath("Xvfb"); err != nil {
		b.Fatal("Xvfb is needed: apt-get install xvfb")
	}
	bin := filepath.Join(b.TempDir(), "pixery")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	display := fmt.Sprintf(":%d", 90+os.Getpid()%9)
	x := exec.Command("Xvfb", display, "-screen", "0", "1280x880x24", "-nolisten", "tcp")
	if err := x.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { x.Process.Kill(); x.Wait() }()
	time.Sleep(time.Second)

	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		dir := b.TempDir()
		ready := filepath.Join(dir, "ready")
		cfg := filepath.Join(dir, "config")
		os.MkdirAll(cfg, 0o700)
		os.WriteFile(filepath.Join(cfg, "settings.toml"), []byte(fmt.Sprintf("server_url = \"http://127.0.0.1:9\"\ngallery_dir = %q\n", filepath.Join(dir, "gallery"))), 0o644)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "DISPLAY="+display, "PIXERY_CONFIG="+cfg, "XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
			"XDG_STATE_HOME="+filepath.Join(dir, "state"), "PIXERY_READY_FILE="+ready, "LANG=en_US.UTF-8")
		b.StartTimer()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Since(start) > 60*time.Second {
				cmd.Process.Kill()
				b.Fatalf("run %d: no window after 60 s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.StopTimer()
		cmd.Process.Kill()
		cmd.Wait()
		b.StartTimer()
	}
}
