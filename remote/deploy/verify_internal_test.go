package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
)

// The copy on the host is damaged after the transfer (disk error, another
// process): the sha256 computed on the host catches it, the bad copy goes,
// and the old file stays in place.
func TestChecksumMismatch(t *testing.T) {
	home := sshdtest.Home(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	c, err := sshx.Dial(context.Background(), sshx.Target{User: srv.User, Host: srv.Host, Port: srv.Port},
		sshx.Options{ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { return true, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	root := filepath.Join(t.TempDir(), "pixery")
	h, err := Open(c.Client, Layout{Root: root, Port: 8000})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, "pixery-engine")
	old := []byte("the previous engine")
	if err := os.WriteFile(dst, old, 0o755); err != nil {
		t.Fatal(err)
	}
	testHookBeforeVerify = func(part string) {
		f, err := os.OpenFile(part, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		_, _ = f.WriteAt([]byte{0xde, 0xad}, 1000)
	}
	defer func() { testHookBeforeVerify = nil }()
	data := bytes.Repeat([]byte("pixery "), 300000)
	_, err = h.Upload(context.Background(), bytes.NewReader(data), dst, 0o755, nil)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	t.Logf("%v", err)
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, old) {
		t.Fatal("the old file was replaced by a bad copy")
	}
	if _, err := os.Stat(dst + ".part"); err == nil {
		t.Fatal("the bad copy was kept for resuming")
	}
	testHookBeforeVerify = nil
	if _, err := h.Upload(context.Background(), bytes.NewReader(data), dst, 0o755, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Fatal("retry did not put the file in place")
	}
}

// The host's hash is right with openssl and, where a host lacks it, with
// coreutils' sha256sum (a session PATH without openssl).
func TestRemoteSHA256Tools(t *testing.T) {
	home := sshdtest.Home(t)
	bin := t.TempDir()
	for _, tool := range []string{"head", "sha256sum"} {
		if err := os.Symlink(filepath.Join("/usr/bin", tool), filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 70001)
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]string{nil, {"PATH=" + bin}} {
		srv := sshdtest.Start(t, sshdtest.Options{Env: env})
		key := sshdtest.NewKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
		srv.Authorize(key.Public)
		c, err := sshx.Dial(context.Background(), sshx.Target{User: srv.User, Host: srv.Host, Port: srv.Port},
			sshx.Options{ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { return true, nil }})
		if err != nil {
			t.Fatal(err)
		}
		h, err := Open(c.Client, Layout{Root: t.TempDir(), Port: 8000})
		if err != nil {
			t.Fatal(err)
		}
		tool, _ := h.output(context.Background(), "which", "command -v openssl || echo none")
		for _, n := range []int64{-1, 12345} {
			got, err := h.remoteSHA256(context.Background(), file, n)
			want := data
			if n >= 0 {
				want = data[:n]
			}
			sum := sha256.Sum256(want)
			if err != nil || got != hex.EncodeToString(sum[:]) {
				t.Fatalf("PATH %v (openssl: %s), n=%d: %s %v", env, bytes.TrimSpace([]byte(tool)), n, got, err)
			}
		}
		t.Logf("PATH %v: openssl at %q", env, bytes.TrimSpace([]byte(tool)))
		h.Close()
		c.Close()
	}
}
