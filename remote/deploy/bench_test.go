package deploy

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
)

// benchSize is the file uploaded per iteration; PIXERY_BENCH_MB changes it.
func benchSize() int64 {
	if s := os.Getenv("PIXERY_BENCH_MB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return int64(n) << 20
		}
	}
	return 256 << 20
}

// BenchmarkUpload compares pixery's upload with OpenSSH's scp (which uses
// the SFTP protocol since OpenSSH 9.0), both to the same loopback sshd,
// in the same run. "pixery" is what deploy does (local sha256, transfer,
// sha256sum on the host, rename); "pixery-transfer" is the SFTP transfer
// alone, like scp.
func BenchmarkUpload(b *testing.B) {
	home := b.TempDir()
	b.Setenv("HOME", home)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	b.Setenv("SSH_AUTH_SOCK", "")
	srv := sshdtest.Start(b, sshdtest.Options{})
	key := sshdtest.NewKey(b, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	size := benchSize()
	dir := b.TempDir()
	src := filepath.Join(dir, "src.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	dstDir := filepath.Join(dir, "remote")
	os.MkdirAll(dstDir, 0o755)
	c, err := sshx.Dial(context.Background(), sshx.Target{User: srv.User, Host: srv.Host, Port: srv.Port},
		sshx.Options{ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { return true, nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	h, err := Open(c.Client, Layout{Root: dstDir, Port: 8000})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	b.Logf("size %d MiB, %d writes of %d KiB in flight", size>>20, h.writesInFlight, sftpPacket>>10)

	b.Run("pixery", func(b *testing.B) {
		b.SetBytes(size)
		dst := filepath.Join(dstDir, "pixery.bin")
		for i := 0; i < b.N; i++ {
			os.Remove(dst)
			s, cl, err := FileSource(src)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := h.Upload(context.Background(), s, dst, 0o644, nil); err != nil {
				b.Fatal(err)
			}
			cl.Close()
		}
	})
	b.Run("pixery-transfer", func(b *testing.B) {
		b.SetBytes(size)
		dst := filepath.Join(dstDir, "transfer.bin")
		for i := 0; i < b.N; i++ {
			in, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			out, err := h.sftp.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := out.ReadFromWithConcurrency(in, h.writesInFlight); err != nil {
				b.Fatal(err)
			}
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
			in.Close()
		}
	})
	// scp as users run it (OpenSSH's default cipher, chacha20-poly1305),
	// and with the AES-GCM cipher pixery's Go client negotiates.
	for _, sc := range []struct{ name, cipher string }{{"scp", ""}, {"scp-aes128gcm", "aes128-gcm@openssh.com"}} {
		b.Run(sc.name, func(b *testing.B) {
			b.SetBytes(size)
			dst := filepath.Join(dstDir, sc.name+".bin")
			args := []string{"-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
				"-o", "BatchMode=yes", "-i", key.Path, "-P", strconv.Itoa(srv.Port)}
			if sc.cipher != "" {
				args = append(args, "-c", sc.cipher)
			}
			args = append(args, src, srv.User+"@127.0.0.1:"+dst)
			for i := 0; i < b.N; i++ {
				if out, err := exec.Command("scp", args...).CombinedOutput(); err != nil {
					b.Fatalf("scp: %v: %s", err, out)
				}
			}
		})
	}
}
