// Package sshdtest is test support for remote/ and the CLI, like
// net/http/httptest: it runs a real OpenSSH server (Debian's
// /usr/sbin/sshd) on a loopback port with a temporary host key and
// authorized_keys, as the current user; builds the stand-in engine the
// deploy tests upload, the real pixery-engine for the whole-cycle test,
// and an SFTP server that simulates a full disk;
// and makes client keys and temporary homes so that no test touches the
// user's real ~/.ssh or ~/.config. It is not used by pixery itself.
package sshdtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is the server binary the tests use.
const SSHD = "/usr/sbin/sshd"

// Options change the server's configuration.
type Options struct {
	// Subsystem is the sftp subsystem command; "" means internal-sftp.
	Subsystem string
	// Extra lines appended to sshd_config.
	Extra []string
	// Env sets variables ("NAME=value") in every session.
	Env []string
}

// Server is a running sshd.
type Server struct {
	Host           string // 127.0.0.1
	Port           int
	User           string // the current user, the only one allowed in
	Dir            string // holds the config, host key, authorized_keys
	AuthorizedKeys string // path of the authorized_keys file
	HostKey        ssh.PublicKey
	Config         string // path of sshd_config

	t      testing.TB
	mu     sync.Mutex
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts an sshd for the test and stops it (and every process it
// forked) when the test ends.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	if _, err := os.Stat(SSHD); err != nil {
		t.Fatalf("OpenSSH server not installed (%v): install Debian's openssh-server", err)
	}
	// sshd refuses to start without its privilege separation directory,
	// which the package creates only when it runs as a service.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create /run/sshd: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: dir, t: t,
		AuthorizedKeys: filepath.Join(dir, "authorized_keys"), Config: filepath.Join(dir, "sshd_config")}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test host key")
	if err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	if err := os.WriteFile(hostKey, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s.HostKey, _ = ssh.NewPublicKey(pub)
	if err := os.WriteFile(s.AuthorizedKeys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := opt.Subsystem
	if sub == "" {
		sub = "internal-sftp"
	}
	for attempt := 0; ; attempt++ {
		s.Port = FreePort(t)
		cfg := []string{
			"Port " + strconv.Itoa(s.Port),
			"ListenAddress 127.0.0.1",
			"HostKey " + hostKey,
			"PidFile none",
			"AuthorizedKeysFile " + s.AuthorizedKeys,
			"StrictModes no",
			"UsePAM no",
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PermitRootLogin prohibit-password",
			"AllowUsers " + s.User,
			"Subsystem sftp " + sub,
			"MaxStartups 200",
			"MaxSessions 100",
			"LogLevel ERROR",
			"Banner none",
			// Debian's bash sources ~/.bashrc for commands run by sshd
			// (SSH_SOURCE_BASHRC) unless it is a nested shell; a developer's
			// heavy .bashrc (pyenv init…) would add most of a second to every
			// exec. SHLVL=1 makes the session's bash count as nested.
			"SetEnv SHLVL=1 " + strings.Join(opt.Env, " "),
		}
		cfg = append(cfg, opt.Extra...)
		if err := os.WriteFile(s.Config, []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := s.Restart()
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("start sshd: %v", err)
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// Restart starts the server again (after Kill) on the same port with the
// same keys.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("sshd already running")
	}
	cmd := exec.Command(SSHD, "-D", "-e", "-f", s.Config)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %s", strings.TrimSpace(stderr.String()))
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				s.cmd, s.stderr, s.done = cmd, &stderr, done
				return nil
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("sshd did not answer on %s: %s", s.Addr(), strings.TrimSpace(stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server and every process it forked for connections and
// sessions (OpenSSH's per-connection children call setsid, so killing the
// process group is not enough). Detached processes that left the tree (like
// a daemonised engine) survive, as they would on a real host.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	for _, p := range descendants(pid) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	if s.t.Failed() && s.stderr.Len() > 0 {
		s.t.Logf("sshd stderr:\n%s", s.stderr.String())
	}
	s.cmd = nil
}

// descendants lists the pids below pid, read from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may hold spaces; the fields after its ')' are fixed.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// Authorize appends a public key to authorized_keys.
func (s *Server) Authorize(pub ssh.PublicKey) {
	s.t.Helper()
	f, err := os.OpenFile(s.AuthorizedKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		s.t.Fatal(err)
	}
}

// Key is a client key pair written in OpenSSH format.
type Key struct {
	Signer  ssh.Signer
	Public  ssh.PublicKey
	Path    string // private key file
	PubLine string // authorized_keys line
}

// NewKey makes an ed25519 key and writes it to path (and path.pub),
// encrypted when passphrase is not empty.
func NewKey(t testing.TB, path, passphrase string) Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "pixery test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "pixery test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " pixery-test"
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Key{Signer: signer, Public: signer.PublicKey(), Path: path, PubLine: line}
}

// Home points HOME and XDG_CONFIG_HOME at fresh temporary folders and
// clears SSH_AUTH_SOCK and VAST_API_KEY for the test, so nothing reads or
// writes the user's real ~/.ssh or ~/.config. It returns the home folder.
func Home(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("VAST_API_KEY", "")
	return home
}
