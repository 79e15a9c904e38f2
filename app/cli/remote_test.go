package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/vast"
	"github.com/pixery/pixery/remote/vast/vastfake"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sshdtest.CleanupBuilds()
	os.Exit(code)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pixery runs the CLI and returns its exit code, stdout and stderr.
func pixery(t *testing.T, in string, args ...string) (int, string, string) {
	t.Helper()
	stdin = strings.NewReader(in)
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	t.Logf("pixery %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func TestRemoteCommands(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	fake := vastfake.New("cli-test-key")
	defer fake.Close()
	fake.SetSSHTarget(srv.Host, srv.Port)
	fake.SetAuthorizedKeysFile(srv.AuthorizedKeys)
	t.Setenv("VAST_API_KEY", "cli-test-key")
	t.Setenv("VAST_URL", fake.URL)
	retry := vast.Retry{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}
	managerConfig = func() remote.Config { return remote.Config{VastRetry: &retry, SSHRetryInterval: 50 * time.Millisecond} }
	defer func() { managerConfig = func() remote.Config { return remote.Config{} } }()
	root := filepath.Join(t.TempDir(), "pixery")
	enginePort := sshdtest.FreePort(t)
	defer func() {
		if b, err := os.ReadFile(filepath.Join(root, "engine.pid")); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}()

	// offers: a table, cheapest first.
	code, out, _ := pixery(t, "", "remote", "offers", "--gpu", "RTX 4090", "--max-price", "0.50")
	if code != 0 || !strings.Contains(out, "$/H") || !strings.Contains(out, "LOCATION") {
		t.Fatalf("offers: %d\n%s", code, out)
	}
	prices := regexp.MustCompile(`(?m)^\s*\d+\s+RTX 4090\s+\d+ GB\s+([0-9.]+)`).FindAllStringSubmatch(out, -1)
	if len(prices) < 2 {
		t.Fatalf("offers table rows: %q", out)
	}
	for i := 1; i < len(prices); i++ {
		a, _ := strconv.ParseFloat(prices[i-1][1], 64)
		b, _ := strconv.ParseFloat(prices[i][1], 64)
		if a > b {
			t.Fatalf("not cheapest first: %v", prices)
		}
	}

	// rent: progress on stderr, the price on stdout.
	code, out, errs := pixery(t, "", "remote", "rent", "--cheapest", "--gpu", "RTX 4090", "-y", "--poll", "10ms", "--timeout", "30s")
	if code != 0 || !strings.Contains(out, "is running at $"+prices[0][1]+"/h") || !strings.Contains(errs, "loading: Pulling image") {
		t.Fatalf("rent: %d\n%s\n%s", code, out, errs)
	}

	// deploy: upload progress, setup output, started.
	code, out, errs = pixery(t, "", "remote", "deploy", "--engine", sshdtest.StandInEngine(t, "v1"), "--root", root,
		"--engine-port", strconv.Itoa(enginePort), "-y")
	if code != 0 || !strings.Contains(out, "deployed: engine pid") || !strings.Contains(out, "version v1") ||
		!strings.Contains(out, "setup: done") || !strings.Contains(errs, "100% of") {
		t.Fatalf("deploy: %d\n%s\n%s", code, out, errs)
	}

	code, out, _ = pixery(t, "", "remote", "status")
	for _, want := range []string{"running", "$" + prices[0][1] + "/h", "cost so far", "healthy: version v1", "RTX 4090"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status lacks %q: %d\n%s", want, code, out)
		}
	}
	if code, out, _ = pixery(t, "", "remote", "logs", "-n", "5"); code != 0 || !strings.Contains(out, "engine v1 serving on") {
		t.Fatalf("logs: %d %s", code, out)
	}

	// tunnel: runs until its context ends (Ctrl-C in real use).
	ctx, cancel := context.WithCancel(context.Background())
	saved := runContext
	runContext = func() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) }
	local := fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t))
	var tout, terr syncBuffer
	done := make(chan int, 1)
	go func() { done <- Main([]string{"remote", "tunnel", "--local", local}, &tout, &terr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(terr.String(), "tunnel up") {
		if time.Now().After(deadline) {
			t.Fatalf("tunnel never up:\n%s\n%s", tout.String(), terr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + local + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"version":"v1"`) {
		t.Fatalf("health through the CLI tunnel: %s", body)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(tout.String(), "forwarding http://"+local) {
		t.Fatalf("tunnel exit %d\n%s\n%s", code, tout.String(), terr.String())
	}
	runContext = saved

	if code, out, _ = pixery(t, "", "remote", "update", "--engine", sshdtest.StandInEngine(t, "v2"), "--skip-setup"); code != 0 || !strings.Contains(out, "updated: engine pid") || !strings.Contains(out, "version v2") {
		t.Fatalf("update: %d %s", code, out)
	}

	if code, out, _ = pixery(t, "", "remote", "orphans"); code != 0 || !strings.Contains(out, "no orphaned") {
		t.Fatalf("orphans: %d %s", code, out)
	}
	lost := fake.AddInstance("pixery-deadbeef")
	if code, out, _ = pixery(t, "", "remote", "orphans"); code != 0 || !strings.Contains(out, strconv.FormatInt(lost, 10)) || !strings.Contains(out, "pixery-deadbeef") {
		t.Fatalf("orphans: %d %s", code, out)
	}

	// destroy asks first; "n" keeps the instance.
	if code, _, errs = pixery(t, "n\n", "remote", "destroy"); code != 1 || !strings.Contains(errs, "not destroyed") {
		t.Fatalf("destroy declined: %d %s", code, errs)
	}
	if len(fake.Alive()) != 2 {
		t.Fatalf("alive %v", fake.Alive())
	}
	if code, out, _ = pixery(t, "y\n", "remote", "destroy"); code != 0 || !strings.Contains(out, "billing has stopped") {
		t.Fatalf("destroy: %d %s", code, out)
	}
	if code, _, _ = pixery(t, "", "remote", "destroy", "-y", strconv.FormatInt(lost, 10)); code != 0 || len(fake.Alive()) != 0 {
		t.Fatalf("destroy orphan: %d, alive %v", code, fake.Alive())
	}
	if code, _, errs = pixery(t, "", "remote", "status"); code != 1 || !strings.Contains(errs, "no remote host") {
		t.Fatalf("status after destroy: %d %s", code, errs)
	}
}

func TestRemoteUsageErrors(t *testing.T) {
	sshdtest.Home(t)
	bad := filepath.Join(t.TempDir(), "engine.exe")
	os.WriteFile(bad, append([]byte("MZ"), make([]byte, 100)...), 0o755)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"remote"}, 2, "missing remote command"},
		{[]string{"remote", "bogus"}, 2, "unknown remote command"},
		{[]string{"remote", "rent"}, 2, "OFFER_ID or --cheapest"},
		{[]string{"remote", "rent", "abc"}, 2, "not a number"},
		{[]string{"remote", "offers", "--max-price", "cheap"}, 2, "invalid value"},
		{[]string{"remote", "deploy", "--host", "root@127.0.0.1", "--engine", bad}, 1, "Windows executable"},
		{[]string{"remote", "offers"}, 1, "VAST_API_KEY"},
		{[]string{"remote", "status"}, 1, "no remote host"},
	} {
		code, _, errs := pixery(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	if code, _, errs := pixery(t, "", "remote", "help"); code != 0 || !strings.Contains(errs, "orphans") {
		t.Errorf("help: %d %s", code, errs)
	}
}
