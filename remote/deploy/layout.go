// Package deploy puts pixery-engine on a GPU host over SSH and runs it
// there: SFTP upload of the linux/amd64 binary, the model registry and model files
// (checked first, resumable, verified with sha256 on the host), `setup`
// with its output streamed back, a detached start with a pid file and a
// log file, health checks through the SSH connection, logs, graceful
// restarts for updates, and a clear error when the host's disk is full.
package deploy

import (
	"net"
	"path"
	"strconv"
)

// Layout is the one place that defines where pixery keeps things on a
// host (ARCHITECTURE.md §7: the old scripts broke on a hard-coded path).
type Layout struct {
	// Root holds everything; an absolute path.
	Root string
	// Port is the engine's port on the host's loopback interface.
	Port int
}

// DefaultLayout is /workspace/pixery with the engine on 127.0.0.1:8000.
// /workspace is the image's working folder on Vast (reference §11).
var DefaultLayout = Layout{Root: "/workspace/pixery", Port: 8000}

// Engine is the pixery-engine binary.
func (l Layout) Engine() string { return path.Join(l.Root, "pixery-engine") }

// EngineNext is where Update puts a new engine binary while the old one
// still runs; it replaces Engine only once the old engine has stopped.
func (l Layout) EngineNext() string { return l.Engine() + ".new" }

// Models is the models folder: registry TOMLs uploaded by pixery, and the
// checkpoints setup downloads.
func (l Layout) Models() string { return path.Join(l.Root, "models") }

// Log is the engine's log file (stdout and stderr, appended).
func (l Layout) Log() string { return path.Join(l.Root, "engine.log") }

// PID is the engine's pid file, written by the engine's own shell before
// it becomes the engine.
func (l Layout) PID() string { return path.Join(l.Root, "engine.pid") }

// TokenFile holds the engine's bearer token when one is used (mode 0600);
// the start script reads it into PIXERY_TOKEN so it never shows in argv.
func (l Layout) TokenFile() string { return path.Join(l.Root, "engine.token") }

// Addr is where the engine listens on the host: loopback only, reached
// through the SSH tunnel.
func (l Layout) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.port())) }

func (l Layout) port() int {
	if l.Port == 0 {
		return 8000
	}
	return l.Port
}

// SetupArgs are the arguments of the setup run on the host.
func (l Layout) SetupArgs() []string { return []string{"setup", "--models", l.Models()} }

// ServeArgs are the arguments the engine is started with.
func (l Layout) ServeArgs() []string {
	return []string{"serve", "--addr", l.Addr(), "--models", l.Models()}
}
