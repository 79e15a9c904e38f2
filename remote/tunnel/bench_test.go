package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/remote/tunnel"
)

func benchSize() int64 {
	if s := os.Getenv("PIXERY_BENCH_MB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return int64(n) << 20
		}
	}
	return 256 << 20
}

// bulkServer stands for the engine: a connection starting with 'D' gets
// size bytes sent to it ("down": images to the app); one starting with
// 'U' sends size bytes and gets one byte back when all arrived ("up").
func bulkServer(b *testing.B, size int64) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	chunk := make([]byte, 256<<10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var op [1]byte
				if _, err := io.ReadFull(c, op[:]); err != nil {
					return
				}
				switch op[0] {
				case 'D':
					for left := size; left > 0; {
						n := min(left, int64(len(chunk)))
						if _, err := c.Write(chunk[:n]); err != nil {
							return
						}
						left -= n
					}
				case 'U':
					if _, err := io.CopyN(io.Discard, c, size); err == nil {
						c.Write([]byte{1})
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func transfer(b *testing.B, addr, op string, size int64) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(op)); err != nil {
		b.Fatal(err)
	}
	switch op {
	case "D":
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != size {
			b.Fatalf("down: %d of %d bytes, %v", n, size, err)
		}
	case "U":
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			if _, err := c.Write(buf[:n]); err != nil {
				b.Fatal(err)
			}
			left -= n
		}
		var ack [1]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			b.Fatalf("up: no ack: %v", err)
		}
	}
}

// BenchmarkTunnel compares pixery's in-process forward with OpenSSH's
// `ssh -N -L` (default cipher, and AES-GCM as pixery negotiates), to the
// same loopback sshd and service, in the same run.
func BenchmarkTunnel(b *testing.B) {
	home := b.TempDir()
	b.Setenv("HOME", home)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	b.Setenv("SSH_AUTH_SOCK", "")
	srv := sshdtest.Start(b, sshdtest.Options{})
	key := sshdtest.NewKey(b, filepath.Join(home, ".ssh", "id_ed25519"), "")
	srv.Authorize(key.Public)
	size := benchSize()
	remote := bulkServer(b, size)

	tun, err := tunnel.Listen(tunnel.Config{Local: "127.0.0.1:0", Remote: remote, Dial: func(ctx context.Context) (*ssh.Client, error) {
		c, err := sshx.Dial(ctx, sshx.Target{User: srv.User, Host: srv.Host, Port: srv.Port},
			sshx.Options{ConfirmHostKey: func(string, ssh.PublicKey, string) (bool, error) { return true, nil }})
		if err != nil {
			return nil, err
		}
		return c.Client, nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tun.Run(ctx)

	sshL := func(cipher string) string {
		port := sshdtest.FreePort(b)
		args := []string{"-N", "-o", "ExitOnForwardFailure=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-i", key.Path, "-p", strconv.Itoa(srv.Port), "-L", fmt.Sprintf("127.0.0.1:%d:%s", port, remote)}
		if cipher != "" {
			args = append(args, "-c", cipher)
		}
		cmd := exec.Command("ssh", append(args, srv.User+"@127.0.0.1")...)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for deadline := time.Now().Add(10 * time.Second); ; {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return addr
			}
			if time.Now().After(deadline) {
				b.Fatal("ssh -L never listened")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Wait for pixery's tunnel too.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", tun.Addr().String())
		if err == nil {
			c.Write([]byte("D"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var one [1]byte
			_, err = io.ReadFull(c, one[:])
			c.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("pixery tunnel never forwarded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	addrs := []struct{ name, addr string }{
		{"pixery", tun.Addr().String()},
		{"ssh-L", sshL("")},
		{"ssh-L-aes128gcm", sshL("aes128-gcm@openssh.com")},
	}
	for _, dir := range []string{"down", "up"} {
		for _, a := range addrs {
			b.Run(dir+"/"+a.name, func(b *testing.B) {
				b.SetBytes(size)
				for i := 0; i < b.N; i++ {
					transfer(b, a.addr, map[string]string{"down": "D", "up": "U"}[dir], size)
				}
			})
		}
	}
}
