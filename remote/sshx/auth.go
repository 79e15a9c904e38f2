package sshx

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func defaultKeyFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	return []string{filepath.Join(home, ".ssh", "id_ed25519"), filepath.Join(home, ".ssh", "id_rsa")}
}

// auth gathers the keys to offer: the agent's first, then key files not
// already in the agent. Encrypted files become lazy signers that ask for
// the passphrase only when the server has accepted their public key.
type auth struct {
	noAgent    bool
	files      []string
	passphrase PassphrasePrompt

	agentConn net.Conn
	tried     []string
	problems  []string
	err       error // a failure that must end the attempt (wrong passphrase)
	mu        sync.Mutex
}

func newAuth(noAgent bool, files []string, p PassphrasePrompt) *auth {
	return &auth{noAgent: noAgent, files: files, passphrase: p}
}

func (a *auth) close() {
	if a.agentConn != nil {
		a.agentConn.Close()
	}
}

func (a *auth) signers() ([]ssh.Signer, error) {
	var out []ssh.Signer
	seen := map[string]bool{}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !a.noAgent {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			a.problems = append(a.problems, fmt.Sprintf("ssh-agent at %s: %v", sock, err))
		} else {
			a.agentConn = conn
			ss, err := agent.NewClient(conn).Signers()
			if err != nil {
				a.problems = append(a.problems, fmt.Sprintf("ssh-agent: %v", err))
			}
			for _, s := range ss {
				seen[string(s.PublicKey().Marshal())] = true
				a.tried = append(a.tried, "agent key "+ssh.FingerprintSHA256(s.PublicKey()))
				out = append(out, s)
			}
		}
	}
	for _, f := range a.files {
		s, err := a.loadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			a.problems = append(a.problems, err.Error())
			continue
		}
		k := string(s.PublicKey().Marshal())
		if seen[k] {
			continue
		}
		seen[k] = true
		a.tried = append(a.tried, f+" "+ssh.FingerprintSHA256(s.PublicKey()))
		out = append(out, s)
	}
	return out, nil
}

func (a *auth) loadFile(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err == nil {
		return s, nil
	}
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) && missing.PublicKey != nil {
		return &lazySigner{pub: missing.PublicKey, path: path, pem: b, a: a}, nil
	}
	if errors.As(err, &missing) {
		// Old PEM formats keep the public key encrypted too: read the .pub.
		if pb, perr := os.ReadFile(path + ".pub"); perr == nil {
			if pub, _, _, _, perr := ssh.ParseAuthorizedKey(pb); perr == nil {
				return &lazySigner{pub: pub, path: path, pem: b, a: a}, nil
			}
		}
		return nil, fmt.Errorf("%s is encrypted and has no readable .pub file", path)
	}
	return nil, fmt.Errorf("%s is not a usable private key: %v", path, err)
}

// lazySigner decrypts its key file on first use.
type lazySigner struct {
	pub   ssh.PublicKey
	path  string
	pem   []byte
	a     *auth
	once  sync.Mutex
	inner ssh.Signer
}

func (l *lazySigner) PublicKey() ssh.PublicKey { return l.pub }

func (l *lazySigner) Algorithms() []string {
	if l.pub.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{l.pub.Type()}
}

func (l *lazySigner) unlock() (ssh.Signer, error) {
	l.once.Lock()
	defer l.once.Unlock()
	if l.inner != nil {
		return l.inner, nil
	}
	if l.a.passphrase == nil {
		err := fmt.Errorf("%s is encrypted: add it to ssh-agent (ssh-add %s), or run pixery where it can ask for the passphrase", l.path, l.path)
		l.a.setErr(err)
		return nil, err
	}
	var last error
	for try := 0; try < 3; try++ {
		pass, err := l.a.passphrase(l.path)
		if err != nil {
			err = fmt.Errorf("passphrase for %s: %w", l.path, err)
			l.a.setErr(err)
			return nil, err
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(l.pem, pass)
		clear(pass)
		if err == nil {
			l.inner = s
			return s, nil
		}
		if !errors.Is(err, x509.IncorrectPasswordError) {
			err = fmt.Errorf("decrypt %s: %w", l.path, err)
			l.a.setErr(err)
			return nil, err
		}
		last = err
	}
	err := fmt.Errorf("%w for %s (3 tries): %v", ErrWrongPassphrase, l.path, last)
	l.a.setErr(err)
	return nil, err
}

func (a *auth) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
}

func (l *lazySigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		return nil, err
	}
	return s.Sign(r, data)
}

func (l *lazySigner) SignWithAlgorithm(r io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.unlock()
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(r, data, algorithm)
	}
	return s.Sign(r, data)
}

// LocalPublicKeys lists the public keys pixery would offer, as
// authorized_keys lines: the agent's, then those of the key files (from
// their .pub files, or from the private key where that is readable without
// a passphrase). It never asks for a passphrase.
func LocalPublicKeys(o Options) []string {
	var out []string
	seen := map[string]bool{}
	add := func(k ssh.PublicKey, comment string) {
		if seen[string(k.Marshal())] {
			return
		}
		seen[string(k.Marshal())] = true
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
		if comment != "" {
			line += " " + comment
		}
		out = append(out, line)
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !o.NoAgent {
		if conn, err := net.Dial("unix", sock); err == nil {
			keys, _ := agent.NewClient(conn).List()
			for _, k := range keys {
				if pk, err := ssh.ParsePublicKey(k.Marshal()); err == nil {
					add(pk, k.Comment)
				}
			}
			conn.Close()
		}
	}
	files := o.KeyFiles
	if files == nil {
		files = defaultKeyFiles()
	}
	for _, f := range files {
		if b, err := os.ReadFile(f + ".pub"); err == nil {
			if pk, comment, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
				add(pk, comment)
				continue
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		var missing *ssh.PassphraseMissingError
		switch {
		case err == nil:
			add(s.PublicKey(), "pixery")
		case errors.As(err, &missing) && missing.PublicKey != nil:
			add(missing.PublicKey, "pixery")
		}
	}
	return out
}
