package sshx_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
)

func target(s *sshdtest.Server) sshx.Target {
	return sshx.Target{User: s.User, Host: s.Host, Port: s.Port}
}

// trustAll records what it was asked and accepts.
type prompts struct{ hosts, fps []string }

func (p *prompts) confirm(host string, key ssh.PublicKey, fp string) (bool, error) {
	p.hosts = append(p.hosts, host)
	p.fps = append(p.fps, fp)
	return true, nil
}

func run(t *testing.T, c *sshx.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output(cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return string(out)
}

func TestKeyFileAndTrustOnFirstUse(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	var p prompts
	opts := sshx.Options{ConfirmHostKey: p.confirm}
	c, err := sshx.Dial(context.Background(), target(srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, c, "echo hello"); got != "hello\n" {
		t.Fatalf("echo: %q", got)
	}
	c.Close()
	if len(p.fps) != 1 || p.fps[0] != ssh.FingerprintSHA256(srv.HostKey) || !strings.HasPrefix(p.fps[0], "SHA256:") {
		t.Fatalf("prompted %v, want once with %s", p.fps, ssh.FingerprintSHA256(srv.HostKey))
	}
	kh, _ := sshx.DefaultKnownHostsFile()
	if !strings.HasPrefix(kh, filepath.Join(home, ".config", "pixery")) {
		t.Fatalf("known_hosts %s is not pixery's own file under the temp config", kh)
	}
	st, err := os.Stat(kh)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts %v mode %v", err, st.Mode())
	}
	// Second contact: recorded, no prompt.
	opts.ConfirmHostKey = func(string, ssh.PublicKey, string) (bool, error) {
		t.Fatal("asked again about a known host")
		return false, nil
	}
	c, err = sshx.Dial(context.Background(), target(srv), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// An alias is a different name: the same server is new under it.
	tg := target(srv)
	tg.HostKeyAlias = "vast-9120457"
	p = prompts{}
	c, err = sshx.Dial(context.Background(), tg, sshx.Options{ConfirmHostKey: p.confirm})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(p.hosts) != 1 || p.hosts[0] != "vast-9120457" {
		t.Fatalf("alias prompt %v", p.hosts)
	}
	n, err := sshx.ForgetHost(kh, tg)
	if err != nil || n != 1 {
		t.Fatalf("forget alias: %d %v", n, err)
	}
	b, _ := os.ReadFile(kh)
	if strings.Contains(string(b), "vast-9120457") || !strings.Contains(string(b), "[127.0.0.1]:") {
		t.Fatalf("known_hosts after forget:\n%s", b)
	}
}

func TestHostKeyChangedIsRefused(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	// Record another key for the server's address, as if it had changed.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	old, _ := ssh.NewPublicKey(pub)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := "# pixery\n" + strings.Replace(
		string(ssh.MarshalAuthorizedKey(old)), "ssh-ed25519", "["+srv.Host+"]:"+itoa(srv.Port)+" ssh-ed25519", 1)
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	asked := false
	_, err := sshx.Dial(context.Background(), target(srv), sshx.Options{KnownHostsFile: kh,
		ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { asked = true; return true, nil }})
	if !errors.Is(err, sshx.ErrHostKeyChanged) {
		t.Fatalf("err = %v, want ErrHostKeyChanged", err)
	}
	var ce *sshx.HostKeyChangedError
	if !errors.As(err, &ce) || len(ce.Lines) != 1 || ce.Lines[0] != 2 {
		t.Fatalf("details %+v", ce)
	}
	for _, want := range []string{"CHANGED", ssh.FingerprintSHA256(srv.HostKey), ssh.FingerprintSHA256(old), kh, "refuses"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	if asked {
		t.Fatal("a changed key was offered for trust-on-first-use")
	}
	t.Logf("changed key: %v", err)
}

func TestUnknownHostDeclined(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	srv.Authorize(sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "").Public)
	for name, prompt := range map[string]sshx.HostKeyPrompt{
		"no prompt": nil,
		"declined":  func(string, ssh.PublicKey, string) (bool, error) { return false, nil },
	} {
		_, err := sshx.Dial(context.Background(), target(srv), sshx.Options{ConfirmHostKey: prompt})
		if !errors.Is(err, sshx.ErrHostKeyUnknown) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.HostKey)) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	kh, _ := sshx.DefaultKnownHostsFile()
	if b, _ := os.ReadFile(kh); len(b) != 0 {
		t.Fatalf("declined key was recorded: %q", b)
	}
}

func TestAuthFailures(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	good := sshdtest.NewKey(t, filepath.Join(t.TempDir(), "good"), "")
	srv.Authorize(good.Public)
	wrong := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	// A broken id_rsa is reported, not fatal.
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_rsa"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	var p prompts
	_, err := sshx.Dial(context.Background(), target(srv), sshx.Options{ConfirmHostKey: p.confirm})
	if !errors.Is(err, sshx.ErrAuth) {
		t.Fatalf("wrong key: %v", err)
	}
	for _, want := range []string{"authentication refused", ssh.FingerprintSHA256(wrong.Public), "id_ed25519", "id_rsa is not a usable private key", "authorized_keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	t.Logf("wrong key: %v", err)
	// The right key but a user the server does not let in.
	tg := target(srv)
	tg.User = "pixery-nobody"
	_, err = sshx.Dial(context.Background(), tg, sshx.Options{ConfirmHostKey: p.confirm, KeyFiles: []string{good.Path}})
	if !errors.Is(err, sshx.ErrAuth) || !strings.Contains(err.Error(), "pixery-nobody@") {
		t.Fatalf("refused user: %v", err)
	}
	// No key at all.
	_, err = sshx.Dial(context.Background(), target(srv), sshx.Options{ConfirmHostKey: p.confirm, KeyFiles: []string{}})
	if !errors.Is(err, sshx.ErrAuth) || !strings.Contains(err.Error(), "ssh-keygen") {
		t.Fatalf("no key: %v", err)
	}
}

func TestEncryptedKey(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "correct horse")
	var p prompts
	kh := sshx.Options{ConfirmHostKey: p.confirm}

	// Not authorised: the passphrase is never asked.
	calls := 0
	o := kh
	o.Passphrase = func(string) ([]byte, error) { calls++; return []byte("correct horse"), nil }
	if _, err := sshx.Dial(context.Background(), target(srv), o); !errors.Is(err, sshx.ErrAuth) || calls != 0 {
		t.Fatalf("unauthorised encrypted key: err %v, %d prompts", err, calls)
	}
	srv.Authorize(key.Public)
	c, err := sshx.Dial(context.Background(), target(srv), o)
	if err != nil || calls != 1 {
		t.Fatalf("authorised encrypted key: err %v, %d prompts", err, calls)
	}
	c.Close()

	o.Passphrase = func(string) ([]byte, error) { return []byte("wrong"), nil }
	_, err = sshx.Dial(context.Background(), target(srv), o)
	if !errors.Is(err, sshx.ErrWrongPassphrase) || !strings.Contains(err.Error(), "id_ed25519") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	o.Passphrase = nil
	_, err = sshx.Dial(context.Background(), target(srv), o)
	if err == nil || !strings.Contains(err.Error(), "ssh-add") {
		t.Fatalf("no prompt: %v", err)
	}
}

func TestAgent(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "secret")
	srv.Authorize(key.Public)
	// A real agent protocol server on a unix socket holding the same key.
	ring := agent.NewKeyring()
	raw, err := ssh.ParseRawPrivateKeyWithPassphrase(mustRead(t, key.Path), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _ = agent.ServeAgent(ring, c) }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	var p prompts
	c, err := sshx.Dial(context.Background(), target(srv), sshx.Options{ConfirmHostKey: p.confirm,
		Passphrase: func(string) ([]byte, error) {
			t.Error("passphrase asked although the agent has the key")
			return nil, errors.New("no")
		}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestUnreachable(t *testing.T) {
	sshdtest.Home(t)
	port := sshdtest.FreePort(t)
	start := time.Now()
	_, err := sshx.Dial(context.Background(), sshx.Target{User: "root", Host: "127.0.0.1", Port: port}, sshx.Options{})
	if !errors.Is(err, sshx.ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("closed port: %v", err)
	}
	// A port that accepts but never speaks SSH.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tg := sshx.Target{User: "root", Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}
	_, err = sshx.Dial(context.Background(), tg, sshx.Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, sshx.ErrUnreachable) || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("silent port: %v", err)
	}
	if el := time.Since(start); el > 30*time.Second { // the 300 ms timeout fired, not a hang
		t.Fatalf("took %v", el)
	}
	// A cancelled context ends a hanging handshake too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = sshx.Dial(ctx, tg, sshx.Options{Timeout: time.Minute})
	if err == nil || time.Since(start) > 40*time.Second { // far below the 1-minute dial timeout
		t.Fatalf("cancelled dial: %v", err)
	}
}

func TestSSHConfigHostEntry(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "gpu_box_key"), "")
	srv.Authorize(key.Public)
	cfg := "# test\nHost other\n  Port 1\nHost gpu-* !gpu-evil\n  HostName " + srv.Host + "\n  Port=" + itoa(srv.Port) +
		"\n  User " + srv.User + "\n  IdentityFile ~/.ssh/gpu_box_key\nHost *\n  User nobody\n  Port 2\n"
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var p prompts
	c, err := sshx.Dial(context.Background(), sshx.Target{Host: "gpu-box"}, sshx.Options{ConfirmHostKey: p.confirm})
	if err != nil {
		t.Fatal(err)
	}
	if c.Target.Port != srv.Port || c.Target.User != srv.User || c.Target.Host != srv.Host {
		t.Fatalf("resolved %+v", c.Target)
	}
	c.Close()
	// The negated pattern falls through to Host *.
	tg, _, err := sshx.Resolve(sshx.Target{Host: "gpu-evil"}, sshx.Options{})
	if err != nil || tg.User != "nobody" || tg.Port != 2 {
		t.Fatalf("negated host resolved to %+v (%v)", tg, err)
	}
	// Explicit values win over the config.
	tg, _, _ = sshx.Resolve(sshx.Target{Host: "gpu-box", User: "alice", Port: 2200}, sshx.Options{})
	if tg.User != "alice" || tg.Port != 2200 {
		t.Fatalf("explicit values lost: %+v", tg)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want sshx.Target
		bad  bool
	}{
		{"root@1.2.3.4", sshx.Target{User: "root", Host: "1.2.3.4", Port: 22}, false},
		{"root@1.2.3.4:2222", sshx.Target{User: "root", Host: "1.2.3.4", Port: 2222}, false},
		{"box", sshx.Target{Host: "box", Port: 22}, false},
		{"u@[::1]:23", sshx.Target{User: "u", Host: "::1", Port: 23}, false},
		{"", sshx.Target{}, true},
		{"@h", sshx.Target{}, true},
		{"h:99999", sshx.Target{}, true},
		{"a b", sshx.Target{}, true},
	} {
		got, err := sshx.ParseTarget(tc.in, 22)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseTarget(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The time a person takes to answer the host-key question is not counted
// against the handshake's timeout: an answer after Timeout still connects.
func TestSlowHostKeyAnswer(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	opts := sshx.Options{
		Timeout: 300 * time.Millisecond,
		ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) {
			time.Sleep(time.Second)
			return true, nil
		},
	}
	c, err := sshx.Dial(context.Background(), target(srv), opts)
	if err != nil {
		t.Fatalf("a host key trusted after 1 s with a 300 ms handshake timeout: %v", err)
	}
	defer c.Close()
	if got := run(t, c, "echo slow"); got != "slow\n" {
		t.Fatalf("echo: %q", got)
	}
}
