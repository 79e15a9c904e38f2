// Package tunnel forwards a local TCP port to an address on an SSH host,
// in process (no ssh binary): local 127.0.0.1:8000 → the host's
// 127.0.0.1:8000, where the engine listens. It keeps the SSH connection
// up, reconnecting with exponential backoff when it drops, and reports
// every change of state, so the app can say "reconnecting…" rather than
// leave the user with "connection refused".
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// State is the tunnel's condition.
type State int

const (
	// Connecting: an SSH connection attempt is under way.
	Connecting State = iota
	// Up: connected; local connections are forwarded.
	Up
	// Down: not connected; another attempt follows after Event.Retry.
	Down
	// Closed: Run has returned.
	Closed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Up:
		return "up"
	case Down:
		return "down"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Event is one change of state.
type Event struct {
	State   State
	Err     error         // why it is Down (or what ended it)
	Attempt int           // connection attempts since the last time it was Up
	Retry   time.Duration // for Down: the wait before the next attempt
	Time    time.Time
}

func (e Event) String() string {
	switch {
	case e.State == Down && e.Err != nil && e.Retry == 0:
		return fmt.Sprintf("tunnel down (%v); reconnecting", e.Err)
	case e.State == Down && e.Err != nil:
		return fmt.Sprintf("tunnel down (%v); retrying in %v", e.Err, e.Retry.Round(time.Millisecond))
	case e.State == Connecting && e.Attempt > 1:
		return fmt.Sprintf("tunnel connecting (attempt %d)", e.Attempt)
	}
	return "tunnel " + e.State.String()
}

// Dialer opens a new SSH connection to the host.
type Dialer func(ctx context.Context) (*ssh.Client, error)

// Config describes a tunnel.
type Config struct {
	// Local is the address to listen on, e.g. "127.0.0.1:8000".
	Local string
	// Remote is the address to reach from the host, e.g. "127.0.0.1:8000".
	Remote string
	// Dial connects to the host; called again after each drop.
	Dial Dialer
	// OnEvent receives state changes, in order, from one goroutine. It
	// should return quickly.
	OnEvent func(Event)
	// OnForwardError is told when the host could not reach Remote for a
	// local connection (typically: the engine is not running there).
	OnForwardError func(error)
	// MinBackoff and MaxBackoff bound the wait between attempts
	// (defaults 500 ms and 30 s); it doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	// KeepAlive is the interval of keepalive requests that detect a dead
	// connection which TCP has not noticed (default 15 s); a reply missing
	// for as long again drops the connection.
	KeepAlive time.Duration
	// WaitForLink is how long a local connection made while the tunnel is
	// down waits for it to come back before it is closed (default 20 s).
	WaitForLink time.Duration
}

// Tunnel is a running forward.
type Tunnel struct {
	cfg Config
	ln  net.Listener

	mu     sync.Mutex
	client *ssh.Client
	up     chan struct{} // closed while connected; replaced when the link drops
	closed chan struct{}
	conns  sync.WaitGroup
}

// Listen binds the local address (so that a port in use is reported at
// once) and returns the tunnel; Run makes it work.
func Listen(cfg Config) (*Tunnel, error) {
	if cfg.Dial == nil {
		return nil, errors.New("tunnel: no dialer")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.WaitForLink <= 0 {
		cfg.WaitForLink = 20 * time.Second
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(Event) {}
	}
	if cfg.OnForwardError == nil {
		cfg.OnForwardError = func(error) {}
	}
	ln, err := net.Listen("tcp", cfg.Local)
	if err != nil {
		return nil, fmt.Errorf("tunnel: listen on %s: %w (is another tunnel or engine using that port?)", cfg.Local, err)
	}
	return &Tunnel{cfg: cfg, ln: ln, up: make(chan struct{}), closed: make(chan struct{})}, nil
}

// Addr is the local address being listened on.
func (t *Tunnel) Addr() net.Addr { return t.ln.Addr() }

// Run keeps the tunnel up until ctx ends, then closes it and returns nil.
func (t *Tunnel) Run(ctx context.Context) error {
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		t.accept(ctx)
	}()
	defer func() {
		t.ln.Close()
		<-accepting // no conns.Add after this point
		close(t.closed)
		t.mu.Lock()
		if t.client != nil {
			t.client.Close()
		}
		t.mu.Unlock()
		t.conns.Wait()
		t.cfg.OnEvent(Event{State: Closed, Err: ctx.Err(), Time: time.Now()})
	}()
	backoff := t.cfg.MinBackoff
	attempt := 0
	for ctx.Err() == nil {
		attempt++
		t.cfg.OnEvent(Event{State: Connecting, Attempt: attempt, Time: time.Now()})
		c, err := t.cfg.Dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.cfg.OnEvent(Event{State: Down, Err: err, Attempt: attempt, Retry: backoff, Time: time.Now()})
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, t.cfg.MaxBackoff)
			continue
		}
		t.setClient(c)
		t.cfg.OnEvent(Event{State: Up, Attempt: attempt, Time: time.Now()})
		attempt, backoff = 0, t.cfg.MinBackoff
		err = t.hold(ctx, c)
		t.setClient(nil)
		c.Close()
		if ctx.Err() != nil {
			return nil
		}
		// Reconnect at once after a drop; back off only if that fails.
		t.cfg.OnEvent(Event{State: Down, Err: err, Time: time.Now()})
	}
	return nil
}

// hold waits until the connection ends (or ctx does), sending keepalives.
func (t *Tunnel) hold(ctx context.Context, c *ssh.Client) error {
	dead := make(chan error, 1)
	go func() {
		err := c.Wait()
		if err == nil {
			err = errors.New("the host closed the connection")
		}
		dead <- fmt.Errorf("connection lost: %w", err)
	}()
	tick := time.NewTicker(t.cfg.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case err := <-dead:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			reply := make(chan error, 1)
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				reply <- err
			}()
			select {
			case err := <-reply:
				if err != nil {
					return fmt.Errorf("connection lost: keepalive: %w", err)
				}
			case err := <-dead:
				return err
			case <-time.After(t.cfg.KeepAlive):
				c.Close()
				return fmt.Errorf("connection lost: no answer to keepalive for %v", t.cfg.KeepAlive)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func (t *Tunnel) setClient(c *ssh.Client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.client = c
	if c != nil {
		close(t.up)
	} else {
		t.up = make(chan struct{})
	}
}

// link returns the current client, waiting up to WaitForLink for one.
func (t *Tunnel) link(ctx context.Context) *ssh.Client {
	timer := time.NewTimer(t.cfg.WaitForLink)
	defer timer.Stop()
	for {
		t.mu.Lock()
		c, up := t.client, t.up
		t.mu.Unlock()
		if c != nil {
			return c
		}
		select {
		case <-up:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		case <-t.closed:
			return nil
		}
	}
}

func (t *Tunnel) accept(ctx context.Context) {
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.conns.Add(1)
		go func() {
			defer t.conns.Done()
			t.forward(ctx, conn)
		}()
	}
}

func (t *Tunnel) forward(ctx context.Context, local net.Conn) {
	defer local.Close()
	c := t.link(ctx)
	if c == nil {
		return
	}
	remote, err := c.DialContext(ctx, "tcp", t.cfg.Remote)
	if err != nil {
		if ctx.Err() == nil {
			t.cfg.OnForwardError(fmt.Errorf("the host could not connect to %s: %w (is the engine running there?)", t.cfg.Remote, err))
		}
		return
	}
	defer remote.Close()
	stop := context.AfterFunc(ctx, func() { local.Close(); remote.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	go func() {
		pipe(remote, local)
		done <- struct{}{}
	}()
	pipe(local, remote)
	<-done
}

// pipe copies src to dst, then half-closes dst so the other side sees EOF
// while the opposite direction may still be sending.
func pipe(dst, src net.Conn) {
	// writerOnly hides TCPConn.ReadFrom, whose fallback for an SSH channel
	// source copies through a 32 KiB buffer: one large buffer here means
	// fewer write calls on either side.
	buf := make([]byte, 256<<10)
	_, _ = io.CopyBuffer(writerOnly{dst}, src, buf)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
}

type writerOnly struct{ io.Writer }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
