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
	"syscall"
	"testing"
	"time"

	"github.com/pixery/pixery/internal/syncio"
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

	// deploy: upload progress, setup output with the extra argument,
	// started; the local model files went into the models folder.
	local := t.TempDir()
	ckpt, lora := filepath.Join(local, "mine.safetensors"), filepath.Join(local, "detail.safetensors")
	os.WriteFile(ckpt, bytes.Repeat([]byte("checkpoint"), 1000), 0o644)
	os.WriteFile(lora, []byte("lora weights"), 0o644)
	code, out, errs = pixery(t, "", "remote", "deploy", "--engine", sshdtest.StandInEngine(t, "v1"), "--root", root,
		"--engine-port", strconv.Itoa(enginePort), "-y", "--model-file", ckpt, "--model-file", lora+"=loras/detail.safetensors",
		"--setup-arg", "--no-models")
	if code != 0 || !strings.Contains(out, "deployed: engine pid") || !strings.Contains(out, "version v1, CPU on CPU") ||
		!strings.Contains(out, "setup: done") || !strings.Contains(out, "no models downloaded (--no-models)") ||
		!strings.Contains(errs, "100% of") || !strings.Contains(errs, "upload detail.safetensors") {
		t.Fatalf("deploy: %d\n%s\n%s", code, out, errs)
	}
	for local, onHost := range map[string]string{ckpt: "models/mine.safetensors", lora: "models/loras/detail.safetensors"} {
		want, _ := os.ReadFile(local)
		if got, err := os.ReadFile(filepath.Join(root, onHost)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s on the host: %v", onHost, err)
		}
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
	local = fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t))
	var tout, terr syncio.Buffer
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

	// update while the engine runs a job (the stand-in holds it until
	// the hold file exists): with a short --wait-timeout it gives up and
	// leaves the old engine running; with --force it restarts it anyway.
	engineURL := fmt.Sprintf("http://127.0.0.1:%d", enginePort)
	hold := filepath.Join(t.TempDir(), "hold")
	resp, err = http.Post(engineURL+"/v1/jobs?hold="+hold, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, _, errs = pixery(t, "", "remote", "update", "--engine", sshdtest.StandInEngine(t, "v2"), "--skip-setup",
		"--wait-timeout", "300ms", "--grace", "50ms")
	if code != 1 || !strings.Contains(errs, "waiting for the running job to finish") || !strings.Contains(errs, "still busy") ||
		!strings.Contains(errs, "--force") {
		t.Fatalf("update of a busy engine: %d %s", code, errs)
	}
	if code, out, _ = pixery(t, "", "remote", "status"); code != 0 || !strings.Contains(out, "healthy: version v1, CPU on CPU, running job 1, 0 queued") {
		t.Fatalf("status after the update gave up: %d %s", code, out)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(filepath.Join(root, "engine.log")); bytes.Contains(b, []byte("SIGTERM")) {
				break
			}
		}
		os.WriteFile(hold, nil, 0o644)
	}()
	code, out, errs = pixery(t, "", "remote", "update", "--engine", sshdtest.StandInEngine(t, "v2"), "--setup-arg", "--no-models",
		"--wait-timeout", "100ms", "--force", "--grace", "50ms")
	<-released
	if code != 0 || !strings.Contains(out, "updated: engine pid") || !strings.Contains(out, "version v2") ||
		!strings.Contains(out, "no models downloaded (--no-models)") || !strings.Contains(errs, "restarting anyway") {
		t.Fatalf("forced update: %d %s %s", code, out, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "engine.log")); !bytes.Contains(b, []byte("job 1 done")) {
		t.Errorf("the running job did not finish across the forced update:\n%s", b)
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

func TestModelFileFlag(t *testing.T) {
	dir := t.TempDir()
	odd := filepath.Join(dir, "a=b.safetensors") // a file whose name holds "="
	os.WriteFile(odd, nil, 0o644)
	for _, tc := range []struct {
		in, path, name, err string
	}{
		{"/m/x.safetensors", "/m/x.safetensors", "", ""},
		{"/m/x.safetensors=loras/x.safetensors", "/m/x.safetensors", "loras/x.safetensors", ""},
		{"c:\\m\\x.ckpt=y.ckpt", "c:\\m\\x.ckpt", "y.ckpt", ""},
		{"/m/a=b=c", "/m/a=b", "c", ""},
		{odd, odd, "", ""},
		{odd + "=z.safetensors", odd, "z.safetensors", ""},
		{"/m/x.safetensors=", "", "", "NAME after = is empty"},
		{"=x.safetensors", "", "", "PATH is empty"},
		{"", "", "", "PATH is empty"},
	} {
		var m modelFileFlags
		err := m.Set(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
			}
		case err != nil || len(m) != 1 || m[0].Path != tc.path || m[0].Name != tc.name:
			t.Errorf("%q: %+v %v; want path %q name %q", tc.in, m, err, tc.path, tc.name)
		}
	}
}

func TestDeployFlags(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
		want func(o remote.DeployOptions) bool
		err  string
	}{
		{"deploy", []string{"--model-file", "/m/a.safetensors", "--model-file=/m/l.safetensors=loras/l.safetensors",
			"--setup-arg", "--no-libs", "--setup-arg=--model=pony", "--setup-arg", "--model", "--setup-arg", "animagine"},
			func(o remote.DeployOptions) bool {
				return len(o.ModelFiles) == 2 && o.ModelFiles[0].Path == "/m/a.safetensors" && o.ModelFiles[0].Name == "" &&
					o.ModelFiles[1].Path == "/m/l.safetensors" && o.ModelFiles[1].Name == "loras/l.safetensors" &&
					strings.Join(o.SetupArgs, " ") == "--no-libs --model=pony --model animagine" && !o.Force && o.WaitTimeout == 0
			}, ""},
		{"update", nil, func(o remote.DeployOptions) bool {
			return o.WaitTimeout == 30*time.Minute && o.Grace == 5*time.Second && !o.Force && len(o.ModelFiles) == 0 && o.SetupArgs == nil
		}, ""},
		{"update", []string{"--wait-timeout", "2h", "--force", "--grace", "20s", "--setup-arg", "--no-models", "--model-file", "/m/b.ckpt", "vast-1"},
			func(o remote.DeployOptions) bool {
				return o.WaitTimeout == 2*time.Hour && o.Force && o.Grace == 20*time.Second && o.Target == "vast-1" &&
					strings.Join(o.SetupArgs, " ") == "--no-models" && len(o.ModelFiles) == 1
			}, ""},
		{"update", []string{"--wait-timeout", "0", "--grace", "0"}, func(o remote.DeployOptions) bool {
			return o.WaitTimeout < 0 && o.Grace < 0
		}, ""},
		{"deploy", []string{"--force"}, nil, "flag provided but not defined: -force"},
		{"deploy", []string{"--wait-timeout", "1m"}, nil, "not defined: -wait-timeout"},
		{"update", []string{"--host", "root@h"}, nil, "not defined: -host"},
		{"update", []string{"--wait-timeout", "soon"}, nil, "invalid value"},
		{"update", []string{"--model-file", "x="}, nil, "NAME after = is empty"},
		{"update", []string{"--setup-arg="}, nil, "empty argument"},
		{"update", []string{"a", "b"}, nil, "at most one TARGET"},
	} {
		args := append([]string{"--engine", "/e/pixery-engine"}, tc.args...)
		o, _, err := parseDeploy(tc.cmd, args, io.Discard, io.Discard)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %q: %v, want an error with %q", tc.cmd, tc.args, err, tc.err)
			}
		case err != nil || o.Engine != "/e/pixery-engine" || !tc.want(o):
			t.Errorf("%s %q: %+v %v", tc.cmd, tc.args, o, err)
		}
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
		{[]string{"remote", "update", "--force=maybe"}, 2, "invalid boolean value"},
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
