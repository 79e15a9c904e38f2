// Package sshx dials SSH the way pixery needs it: keys from ssh-agent
// (SSH_AUTH_SOCK) or the usual key files (with a passphrase prompt only
// when the server accepts that key), ~/.ssh/config Host entries, and host
// keys checked against pixery's own known_hosts file with trust on first
// use through a callback that shows the SHA256 fingerprint. A changed host
// key is refused. There is no way to turn host key checking off.
package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Target is where to connect.
type Target struct {
	User string // "" = from ~/.ssh/config, else the local user name
	Host string // a name, an address, or a Host alias of ~/.ssh/config
	Port int    // 0 = from ~/.ssh/config, else 22
	// HostKeyAlias names the host in the known_hosts file instead of
	// host:port, like OpenSSH's option of the same name. pixery uses
	// "vast-<instance id>" so that Vast's reused proxy ports never make one
	// instance's key look like a changed key of another.
	HostKeyAlias string
}

// Addr is host:port (after defaults).
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t Target) String() string { return t.User + "@" + t.Addr() }

// ParseTarget reads "user@host", "user@host:port", "host", "[v6]:port".
// defaultPort applies when the string has none (0 leaves it to Dial).
func ParseTarget(s string, defaultPort int) (Target, error) {
	t := Target{Port: defaultPort}
	s = strings.TrimSpace(s)
	if s == "" {
		return t, errors.New("empty host")
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		t.User, s = s[:i], s[i+1:]
		if t.User == "" {
			return t, fmt.Errorf("empty user name in %q", s)
		}
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return t, fmt.Errorf("bad port %q", p)
		}
		t.Host, t.Port = h, n
	} else {
		t.Host = strings.Trim(s, "[]")
	}
	if t.Host == "" || strings.ContainsAny(t.Host, " \t/") {
		return t, fmt.Errorf("bad host %q", t.Host)
	}
	return t, nil
}

// HostKeyPrompt is asked about a host seen for the first time. It shows
// host and fingerprint (ssh.FingerprintSHA256, "SHA256:…") to the user and
// returns whether to trust and record the key.
type HostKeyPrompt func(host string, key ssh.PublicKey, fingerprint string) (bool, error)

// PassphrasePrompt returns the passphrase of an encrypted key file.
type PassphrasePrompt func(keyFile string) ([]byte, error)

// Options say how to authenticate and verify.
type Options struct {
	// KnownHostsFile is pixery's own known_hosts ("" = DefaultKnownHostsFile).
	KnownHostsFile string
	// ConfirmHostKey decides about unknown hosts; nil refuses them.
	ConfirmHostKey HostKeyPrompt
	// Passphrase is asked for encrypted key files the server accepts; nil
	// means encrypted keys can only be used through ssh-agent.
	Passphrase PassphrasePrompt
	// KeyFiles replaces the default identity files (IdentityFile entries
	// of ~/.ssh/config, then ~/.ssh/id_ed25519 and ~/.ssh/id_rsa).
	KeyFiles []string
	// NoAgent ignores SSH_AUTH_SOCK.
	NoAgent bool
	// SSHConfigFile is read for Host entries ("" = ~/.ssh/config; "none" =
	// none).
	SSHConfigFile string
	// Timeout bounds the TCP connect and the SSH handshake (default 20 s).
	Timeout time.Duration
}

// DefaultKnownHostsFile is $XDG_CONFIG_HOME/pixery/known_hosts (normally
// ~/.config/pixery/known_hosts).
func DefaultKnownHostsFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find config folder: %w", err)
	}
	return filepath.Join(dir, "pixery", "known_hosts"), nil
}

// Errors Dial's errors match with errors.Is.
var (
	ErrUnreachable     = errors.New("host unreachable")
	ErrAuth            = errors.New("authentication refused")
	ErrHostKeyChanged  = errors.New("host key changed")
	ErrHostKeyUnknown  = errors.New("host key not trusted")
	ErrWrongPassphrase = errors.New("wrong passphrase")
)

// Client is a connected SSH client and where it went.
type Client struct {
	*ssh.Client
	Target Target // resolved: user, host, port as dialled
}

// Resolve fills a target's empty fields from ~/.ssh/config and defaults,
// and lists the identity files the config names.
func Resolve(t Target, o Options) (Target, []string, error) {
	hc, err := lookupConfig(o.SSHConfigFile, t.Host)
	if err != nil {
		return t, nil, err
	}
	if hc.HostName != "" {
		// As in OpenSSH, known_hosts then names the real host, unless the
		// config gives a HostKeyAlias.
		t.Host = hc.HostName
	}
	if t.HostKeyAlias == "" {
		t.HostKeyAlias = hc.HostKeyAlias
	}
	if t.User == "" {
		t.User = hc.User
	}
	if t.User == "" {
		if u, err := user.Current(); err == nil {
			t.User = u.Username
		} else {
			t.User = "root"
		}
	}
	if t.Port == 0 {
		t.Port = hc.Port
	}
	if t.Port == 0 {
		t.Port = 22
	}
	return t, hc.IdentityFiles, nil
}

// Dial connects and authenticates. Its errors say what went wrong in words
// a user can act on, and match ErrUnreachable, ErrAuth, ErrHostKeyChanged,
// ErrHostKeyUnknown or ErrWrongPassphrase.
func Dial(ctx context.Context, target Target, o Options) (*Client, error) {
	t, cfgKeys, err := Resolve(target, o)
	if err != nil {
		return nil, err
	}
	khFile := o.KnownHostsFile
	if khFile == "" {
		if khFile, err = DefaultKnownHostsFile(); err != nil {
			return nil, err
		}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	hk, err := newHostKeyChecker(khFile, t, o.ConfirmHostKey)
	if err != nil {
		return nil, err
	}
	keyFiles := o.KeyFiles
	if keyFiles == nil {
		keyFiles = append(cfgKeys, defaultKeyFiles()...)
	}
	auth := newAuth(o.NoAgent, keyFiles, o.Passphrase)
	defer auth.close()
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeysCallback(auth.signers)},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(),
		Timeout:           timeout,
		ClientVersion:     "SSH-2.0-pixery",
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", t.Addr())
	if err != nil {
		return nil, fmt.Errorf("%w: cannot connect to %s: %v (is the host up and the port right?)", ErrUnreachable, t.Addr(), cleanNetErr(err))
	}
	// The handshake has no context of its own: a deadline bounds it, and
	// a cancelled context closes the connection.
	_ = conn.SetDeadline(time.Now().Add(timeout))
	hk.waiting = func(prompting bool) {
		if prompting {
			_ = conn.SetDeadline(time.Time{})
		} else {
			_ = conn.SetDeadline(time.Now().Add(timeout))
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, hk.name, cfg)
	stop()
	if err != nil {
		conn.Close()
		return nil, classify(ctx, err, t, hk, auth)
	}
	_ = conn.SetDeadline(time.Time{})
	return &Client{Client: ssh.NewClient(c, chans, reqs), Target: t}, nil
}

func cleanNetErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// classify turns a handshake failure into one of the errors above.
func classify(ctx context.Context, err error, t Target, hk *hostKeyChecker, a *auth) error {
	if hk.err != nil {
		return hk.err
	}
	if a.err != nil {
		return a.err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("ssh %s: %w", t, ctx.Err())
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unable to authenticate"):
		return &AuthError{Target: t, Tried: a.tried, Problems: a.problems}
	case errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(msg, "i/o timeout"):
		return fmt.Errorf("%w: %s accepted the connection but did not complete the SSH handshake in time (is it an SSH server?)", ErrUnreachable, t.Addr())
	case strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset"):
		return fmt.Errorf("%w: %s closed the connection during the SSH handshake (server starting up, or not an SSH server): %v", ErrUnreachable, t.Addr(), err)
	}
	return fmt.Errorf("ssh %s: %w", t, err)
}

// AuthError says the server accepted none of the keys offered.
type AuthError struct {
	Target   Target
	Tried    []string // descriptions of the keys offered
	Problems []string // key files that could not be used, and why
}

func (e *AuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh %s: authentication refused", e.Target)
	if len(e.Tried) == 0 {
		b.WriteString(": pixery found no SSH key to offer (no ssh-agent keys, no ~/.ssh/id_ed25519 or ~/.ssh/id_rsa); create one with `ssh-keygen -t ed25519`")
	} else {
		fmt.Fprintf(&b, ": the server accepted none of the keys offered (%s); add your public key to the host's authorized_keys (on Vast.ai: Account → SSH Keys), or load the right key into ssh-agent", strings.Join(e.Tried, "; "))
	}
	if len(e.Problems) > 0 {
		fmt.Fprintf(&b, " [skipped: %s]", strings.Join(e.Problems, "; "))
	}
	return b.String()
}

// Is makes errors.Is(err, ErrAuth) true.
func (e *AuthError) Is(target error) bool { return target == ErrAuth }
