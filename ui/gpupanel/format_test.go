package gpupanel

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/sshx"
)

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		d          time.Duration
		dur, clock string
	}{
		{0, "0s", "0:00"},
		{1499 * time.Millisecond, "1s", "0:01"},
		{59 * time.Second, "59s", "0:59"},
		{4 * time.Minute, "4m", "4:00"},
		{72*time.Minute + 30*time.Second, "1h12m", "1:12:30"},
		{26*time.Hour + 5*time.Minute, "26h05m", "26:05:00"},
		{-time.Second, "0s", "0:00"},
	} {
		if got := fmtDuration(tc.d); got != tc.dur {
			t.Errorf("fmtDuration(%v) = %q, want %q", tc.d, got, tc.dur)
		}
		if got := fmtClock(tc.d); got != tc.clock {
			t.Errorf("fmtClock(%v) = %q, want %q", tc.d, got, tc.clock)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1500: "2 kB", 45_600_000: "45.6 MB", 2_340_000_000: "2.34 GB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParsePositive(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{"", 7, ""},
		{"  0.25 ", 0.25, ""},
		{"$0.5", 0.5, ""},
		{"1e2", 100, ""},
		{"abc", 0, `X: "abc" is not a number`},
		{"0", 0, "X must be more than 0, not 0"},
		{"-3", 0, "X must be more than 0, not -3"},
		{"Inf", 0, `X: "Inf" is not a number`},
		{"0,5", 0, `X: "0,5" is not a number`},
	} {
		got, err := parsePositive("X", tc.in, 7)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
		}
	}
}

// Billing reads the remote state: every Vast instance pixery knows, not
// plain SSH hosts.
func TestBillingFromState(t *testing.T) {
	test.NewTempApp(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "remote.json")
	m, err := remote.New(remote.Config{StateFile: state, VastKey: "unused", VastURL: "http://127.0.0.1:1",
		SSH: sshx.Options{KnownHostsFile: filepath.Join(dir, "known_hosts")}})
	if err != nil {
		t.Fatal(err)
	}
	v := New(Deps{Manager: m})
	defer v.Close()
	if billing, what := v.Billing(); billing || what != "" {
		t.Fatalf("no state: %v %q", billing, what)
	}
	if err := remote.SaveState(state, &remote.State{Version: 1, Targets: []remote.Target{
		{Name: "ssh-me@box:22", Kind: remote.KindSSH, Host: "box", CreatedAt: time.Now()},
		{Name: "vast-1", Kind: remote.KindVast, InstanceID: 1, GPU: "RTX 4090", DPH: 0.4238, CreatedAt: time.Now().Add(-72 * time.Minute)},
		{Name: "vast-2", Kind: remote.KindVast, InstanceID: 2, DPH: 1.5},
	}}); err != nil {
		t.Fatal(err)
	}
	billing, what := v.Billing()
	if !billing || what != "RTX 4090 · $0.42/h · running 1h12m; GPU instance · $1.50/h" {
		t.Fatalf("Billing() = %v %q", billing, what)
	}
	// Instances Vast said are gone do not bill.
	v.mu.Lock()
	v.gone[1], v.gone[2] = true, true
	v.mu.Unlock()
	if billing, what := v.Billing(); billing || strings.Contains(what, "RTX") {
		t.Fatalf("gone instances: %v %q", billing, what)
	}
}
