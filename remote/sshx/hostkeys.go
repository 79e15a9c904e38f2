package sshx

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pixery/pixery/internal/atomicfile"
)

// knownHostsMu serialises this process's appends and rewrites.
var knownHostsMu sync.Mutex

// HostKeyChangedError is a host presenting a different key than the one
// recorded: maybe an attack, maybe a rebuilt machine. pixery refuses.
type HostKeyChangedError struct {
	Host  string // the known_hosts name checked
	File  string
	Lines []int    // lines of File with the recorded keys
	Want  []string // fingerprints recorded
	Got   string   // fingerprint presented
}

func (e *HostKeyChangedError) Error() string {
	lines := make([]string, len(e.Lines))
	for i, l := range e.Lines {
		lines[i] = fmt.Sprint(l)
	}
	return fmt.Sprintf("host key for %s has CHANGED: it now presents %s, but %s records %s (line %s). "+
		"Someone may be intercepting the connection, or the machine was rebuilt. pixery refuses to connect; "+
		"if you are sure the new key is right, delete that line and connect again",
		e.Host, e.Got, e.File, strings.Join(e.Want, ", "), strings.Join(lines, ", "))
}

// Is makes errors.Is(err, ErrHostKeyChanged) true.
func (e *HostKeyChangedError) Is(target error) bool { return target == ErrHostKeyChanged }

type hostKeyChecker struct {
	file   string
	name   string // host:port (or alias:22) passed to knownhosts
	prompt HostKeyPrompt
	known  []knownhosts.KnownKey
	err    error // the refusal, kept for classify
	// waiting, when set, is told when a prompt starts (true) and ends
	// (false): the time a person takes to answer is not the handshake's.
	waiting func(bool)
}

// hostName is the known_hosts name of a target.
func hostName(t Target) string {
	if t.HostKeyAlias != "" {
		if _, _, err := net.SplitHostPort(t.HostKeyAlias); err == nil {
			return t.HostKeyAlias
		}
		return net.JoinHostPort(t.HostKeyAlias, "22")
	}
	return t.Addr()
}

func newHostKeyChecker(file string, t Target, prompt HostKeyPrompt) (*hostKeyChecker, error) {
	if err := ensureFile(file); err != nil {
		return nil, err
	}
	hk := &hostKeyChecker{file: file, name: hostName(t), prompt: prompt}
	// Learn which keys are recorded for this host by checking a throwaway
	// key: the KeyError lists them. They decide the host key algorithms to
	// ask for, so a host with several keys shows the recorded one.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	probe, _ := ssh.NewPublicKey(pub)
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var ke *knownhosts.KeyError
	if err := cb(hk.name, dummyAddr{}, probe); errors.As(err, &ke) {
		hk.known = ke.Want
	}
	return hk, nil
}

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "192.0.2.1:22" }

// algorithms restricts negotiation to the types of the recorded keys (nil
// when none are recorded: any).
func (hk *hostKeyChecker) algorithms() []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range hk.known {
		algos := []string{k.Key.Type()}
		if k.Key.Type() == ssh.KeyAlgoRSA {
			algos = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range algos {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func (hk *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	err := hk.verify(remote, key)
	if err != nil && hk.err == nil {
		hk.err = err
	}
	return err
}

func (hk *hostKeyChecker) verify(remote net.Addr, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	cb, err := knownhosts.New(hk.file)
	if err != nil {
		return fmt.Errorf("read %s: %w", hk.file, err)
	}
	err = cb(hk.name, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		var re *knownhosts.RevokedError
		if errors.As(err, &re) {
			return fmt.Errorf("%w: host key of %s is marked @revoked in %s line %d", ErrHostKeyChanged, hk.name, re.Revoked.Filename, re.Revoked.Line)
		}
		return fmt.Errorf("check host key of %s: %w", hk.name, err)
	}
	fp := ssh.FingerprintSHA256(key)
	display := knownhosts.Normalize(hk.name)
	if len(ke.Want) > 0 {
		e := &HostKeyChangedError{Host: display, File: hk.file, Got: key.Type() + " " + fp}
		for _, w := range ke.Want {
			e.Lines = append(e.Lines, w.Line)
			e.Want = append(e.Want, w.Key.Type()+" "+ssh.FingerprintSHA256(w.Key))
		}
		return e
	}
	if hk.prompt == nil {
		return fmt.Errorf("%w: %s is not in %s and nothing can ask whether to trust it (key %s %s)", ErrHostKeyUnknown, display, hk.file, key.Type(), fp)
	}
	if hk.waiting != nil {
		hk.waiting(true)
	}
	ok, err := hk.prompt(display, key, fp)
	if hk.waiting != nil {
		hk.waiting(false)
	}
	if err != nil {
		return fmt.Errorf("%w: %s (%s): %v", ErrHostKeyUnknown, display, fp, err)
	}
	if !ok {
		return fmt.Errorf("%w: you declined the key %s %s of %s", ErrHostKeyUnknown, key.Type(), fp, display)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hk.name)}, key) + "\n"
	f, err := os.OpenFile(hk.file, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record host key in %s: %w", hk.file, err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("record host key in %s: %w", hk.file, err)
	}
	return f.Close()
}

func ensureFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	return f.Close()
}

// ForgetHost removes the recorded keys of a host (alias or host:port) from
// a known_hosts file, e.g. after its instance was destroyed. It returns how
// many lines went.
func ForgetHost(file string, t Target) (int, error) {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	name := knownhosts.Normalize(hostName(t))
	var keep []string
	removed := 0
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 2 && !strings.HasPrefix(fields[0], "#") && !strings.HasPrefix(fields[0], "@") {
			match := false
			for _, h := range strings.Split(fields[0], ",") {
				if h == name {
					match = true
				}
			}
			if match {
				removed++
				continue
			}
		}
		keep = append(keep, line)
	}
	if removed == 0 {
		return 0, nil
	}
	out := strings.Join(keep, "\n")
	if out != "" {
		out += "\n"
	}
	if err := atomicfile.Write(file, []byte(out), 0o600); err != nil {
		return 0, err
	}
	return removed, nil
}
