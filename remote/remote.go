// Package remote runs pixery-engine on a rented GPU: it ties together the
// Vast.ai client (remote/vast), SSH (remote/sshx), deployment
// (remote/deploy) and the tunnel (remote/tunnel) with local state — the
// instances pixery created — into the API the desktop app and the CLI
// call: Offers, Rent, Deploy, Tunnel, Status, Logs, Update, Destroy and
// Orphans.
package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/remote/tunnel"
	"github.com/pixery/pixery/remote/vast"
)

// LabelPrefix starts the label of every instance pixery creates; Orphans
// looks for it.
const LabelPrefix = "pixery-"

// Config sets up a Manager. Zero values take the defaults.
type Config struct {
	// StateFile is the JSON state ("" = DefaultStateFile).
	StateFile string
	// VastURL is the API base ("" = $VAST_URL or https://console.vast.ai).
	VastURL string
	// VastKey is the API key ("" = vast.LoadAPIKey: $VAST_API_KEY or the
	// vastai CLI's key file). It is only read when a Vast call is made.
	VastKey string
	// VastRetry overrides the client's retry policy (tests shorten it).
	VastRetry *vast.Retry
	// SSH says how to authenticate and verify hosts; its KnownHostsFile
	// defaults to pixery's own.
	SSH sshx.Options
	// Layout is where things go on hosts (default deploy.DefaultLayout).
	Layout deploy.Layout
	// PollInterval is the time between instance polls while renting
	// (default 5 s; Vast limits GET instance to about one call per 2 s).
	PollInterval time.Duration
	// SSHRetryInterval is the time between SSH attempts while an instance
	// starts (default 3 s).
	SSHRetryInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// String prints the configuration without the API key, so that logging a
// Config never leaks it.
func (c Config) String() string {
	type plain Config // no methods: no recursion
	p := plain(c)
	if p.VastKey != "" {
		p.VastKey = "[redacted]"
	}
	return fmt.Sprintf("%+v", p)
}

// Manager is pixery's remote API. It is safe for concurrent use.
type Manager struct {
	cfg Config

	mu sync.Mutex // guards state file read-modify-write and vc
	vc *vast.Client
}

// New makes a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.StateFile == "" {
		p, err := DefaultStateFile()
		if err != nil {
			return nil, err
		}
		cfg.StateFile = p
	}
	if cfg.SSH.KnownHostsFile == "" {
		p, err := sshx.DefaultKnownHostsFile()
		if err != nil {
			return nil, err
		}
		cfg.SSH.KnownHostsFile = p
	}
	if cfg.VastURL == "" {
		cfg.VastURL = os.Getenv("VAST_URL")
	}
	if cfg.Layout.Root == "" {
		cfg.Layout.Root = deploy.DefaultLayout.Root
	}
	if cfg.Layout.Port == 0 {
		cfg.Layout.Port = deploy.DefaultLayout.Port
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.SSHRetryInterval <= 0 {
		cfg.SSHRetryInterval = 3 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg}, nil
}

// Layout returns the remote layout in use.
func (m *Manager) Layout() deploy.Layout { return m.cfg.Layout }

// Vast returns the Vast.ai client. The key is read on first use; while
// none is found, every call looks again (the user may set it meanwhile).
func (m *Manager) Vast() (*vast.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vc != nil {
		return m.vc, nil
	}
	key := m.cfg.VastKey
	if key == "" {
		var err error
		if key, _, err = vast.LoadAPIKey(); err != nil {
			return nil, err
		}
	}
	m.vc = vast.New(m.cfg.VastURL, key)
	if m.cfg.VastRetry != nil {
		m.vc.Retry, m.vc.DestroyRetry = *m.cfg.VastRetry, *m.cfg.VastRetry
	}
	return m.vc, nil
}

// State returns a copy of the saved state.
func (m *Manager) State() (*State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return LoadState(m.cfg.StateFile)
}

// update applies f to the state under the lock and saves it.
func (m *Manager) update(f func(*State)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := LoadState(m.cfg.StateFile)
	if err != nil {
		return err
	}
	f(s)
	return SaveState(m.cfg.StateFile, s)
}

// ErrNoTarget means no target was named and none is current.
var ErrNoTarget = errors.New("no remote host: rent one (pixery remote rent) or deploy to one (pixery remote deploy --host user@host)")

// Resolve finds a target by name ("" = the current one), by Vast instance
// id, or by label.
func (m *Manager) Resolve(name string) (Target, error) {
	s, err := m.State()
	if err != nil {
		return Target{}, err
	}
	if name == "" {
		name = s.Current
		if name == "" {
			if len(s.Targets) == 1 {
				return s.Targets[0], nil
			}
			return Target{}, ErrNoTarget
		}
	}
	if t, ok := s.Find(name); ok {
		return t, nil
	}
	for _, t := range s.Targets {
		if strconv.FormatInt(t.InstanceID, 10) == name || (t.Label != "" && t.Label == name) {
			return t, nil
		}
	}
	return Target{}, fmt.Errorf("no remote host %q in %s", name, m.cfg.StateFile)
}

// Offers searches Vast.ai.
func (m *Manager) Offers(ctx context.Context, q vast.OfferQuery) ([]vast.Offer, error) {
	vc, err := m.Vast()
	if err != nil {
		return nil, err
	}
	return vc.SearchOffers(ctx, q)
}

// RentOptions configure Rent.
type RentOptions struct {
	// OfferID is the offer to rent; with Cheapest, the cheapest offer
	// matching Query is rented instead.
	OfferID  int64
	Cheapest bool
	Query    vast.OfferQuery
	// DiskGB is the disk to rent (default 50).
	DiskGB float64
	// Timeout bounds the wait until the instance runs and answers SSH
	// (default 20 min: large images can take 10+ minutes to pull).
	Timeout time.Duration
	// NoAccountKey stops Rent from adding a local public key to the Vast
	// account when none of the local keys is there.
	NoAccountKey bool
	// Progress receives what is happening, at least once per poll.
	Progress func(RentProgress)
}

// RentProgress is one report while renting.
type RentProgress struct {
	Phase      string // "offer", "key", "create", "wait", "connect", "ready", "cleanup"
	InstanceID int64
	Status     string // Vast's actual_status ("" while provisioning)
	Message    string // Vast's status_msg or what pixery does
	DPH        float64
	Elapsed    time.Duration
}

// Rent creates an instance and waits until it runs and SSH gets in. If
// anything fails after the instance was created — it exits, goes offline,
// cannot create its container, is never reachable, the timeout passes or
// ctx is cancelled — Rent destroys that instance (only that one) so that
// nothing keeps billing, and says so in its error. When the create request
// got no answer at all, the instance is looked up by its unique label.
func (m *Manager) Rent(ctx context.Context, o RentOptions) (*Target, error) {
	vc, err := m.Vast()
	if err != nil {
		return nil, err
	}
	start := m.cfg.Now()
	progress := func(p RentProgress) {
		p.Elapsed = m.cfg.Now().Sub(start)
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	if o.DiskGB <= 0 {
		o.DiskGB = 50
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Minute
	}
	var offer *vast.Offer
	if o.Cheapest {
		q := o.Query
		if q.MinDiskGB < o.DiskGB {
			q.MinDiskGB = o.DiskGB
		}
		offers, err := vc.SearchOffers(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(offers) == 0 {
			return nil, errors.New("no offer matches; loosen --gpu/--max-price/--disk")
		}
		sort.SliceStable(offers, func(i, j int) bool { return offers[i].DPHTotal < offers[j].DPHTotal })
		offer = &offers[0]
		o.OfferID = offer.ID
	} else if o.OfferID <= 0 {
		return nil, errors.New("rent: give an offer id or ask for the cheapest offer")
	}
	dph := 0.0
	msg := fmt.Sprintf("renting offer %d", o.OfferID)
	if offer != nil {
		dph = offer.DPHTotal
		msg = fmt.Sprintf("renting offer %d: %d× %s in %s at $%.4f/h", offer.ID, max(offer.NumGPUs, 1), offer.GPUName, offer.Geolocation, offer.DPHTotal)
	}
	progress(RentProgress{Phase: "offer", Message: msg, DPH: dph})

	// The instance can only be reached if one of our keys is on the
	// account when it is created (reference §6).
	pubs := sshx.LocalPublicKeys(m.cfg.SSH)
	if len(pubs) == 0 {
		return nil, errors.New("no SSH key to log in to the instance with: create one with `ssh-keygen -t ed25519` (or load one into ssh-agent) and try again")
	}
	if !o.NoAccountKey {
		if err := m.ensureAccountKey(ctx, vc, pubs, progress); err != nil {
			return nil, err
		}
	}

	label := LabelPrefix + randomHex(4)
	progress(RentProgress{Phase: "create", Message: "creating instance " + label, DPH: dph})
	id, err := vc.CreateInstance(ctx, o.OfferID, vast.NewCreateRequest(label, o.DiskGB))
	if err != nil {
		if id != 0 {
			// Vast made an instance although it reports failure (bid quirk).
			return nil, m.cleanup(id, label, fmt.Errorf("rent: %w", err), progress)
		}
		if errors.Is(err, vast.ErrOfferGone) {
			return nil, fmt.Errorf("rent: offer %d was taken or withdrawn; run `pixery remote offers` and pick another: %w", o.OfferID, err)
		}
		var apiErr *vast.APIError
		if !errors.As(err, &apiErr) {
			// No answer (connection lost, timeout, Ctrl-C): Vast may have
			// made the instance anyway. Its label is ours alone: find it.
			return nil, m.cleanupByLabel(label, fmt.Errorf("rent: %w", err), progress)
		}
		return nil, fmt.Errorf("rent: %w", err)
	}
	t := Target{Name: vastName(id), Kind: KindVast, InstanceID: id, Label: label, OfferID: o.OfferID, DPH: dph,
		User: "root", CreatedAt: m.cfg.Now().UTC()}
	if offer != nil {
		t.GPU = offer.GPUName
	}
	// Remember it at once: if pixery dies now, Destroy still knows it.
	if err := m.update(func(s *State) { s.Put(t) }); err != nil {
		return nil, m.cleanup(id, label, err, progress)
	}

	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	in, err := m.waitRunning(wctx, vc, id, progress)
	if err == nil {
		t.GPU, t.DPH = in.GPUName, in.DPHTotal
		t.Host, t.Port, _ = in.SSHAddress()
		err = m.waitSSH(wctx, vc, &t, pubs, progress)
	}
	if err != nil {
		if wctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("instance %d was not running and reachable after %v (%w)", id, o.Timeout, err)
		}
		return nil, m.cleanup(id, label, fmt.Errorf("rent: %w", err), progress)
	}
	if err := m.update(func(s *State) { s.Put(t); s.Current = t.Name }); err != nil {
		return nil, m.cleanup(id, label, err, progress)
	}
	progress(RentProgress{Phase: "ready", InstanceID: id, Status: "running", DPH: t.DPH,
		Message: fmt.Sprintf("instance %d (%s) is running at $%.4f/h; ssh %s@%s -p %d", id, t.GPU, t.DPH, t.User, t.Host, t.Port)})
	return &t, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) ensureAccountKey(ctx context.Context, vc *vast.Client, pubs []string, progress func(RentProgress)) error {
	keys, err := vc.ListSSHKeys(ctx)
	if err != nil {
		return fmt.Errorf("rent: list the account's SSH keys: %w", err)
	}
	for _, k := range keys {
		for _, p := range pubs {
			if sameKey(k.Text(), p) {
				return nil
			}
		}
	}
	progress(RentProgress{Phase: "key", Message: "adding your SSH public key to the Vast.ai account: " + keyFingerprintLine(pubs[0])})
	if err := vc.AddSSHKey(ctx, pubs[0]); err != nil {
		return fmt.Errorf("rent: add SSH key to the account: %w", err)
	}
	return nil
}

// sameKey compares the type and key fields of two authorized_keys lines.
func sameKey(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	return len(fa) >= 2 && len(fb) >= 2 && fa[0] == fb[0] && fa[1] == fb[1]
}

func keyFingerprintLine(line string) string {
	f := strings.Fields(line)
	if len(f) >= 3 {
		return f[0] + " … " + strings.Join(f[2:], " ")
	}
	if len(f) >= 1 {
		return f[0]
	}
	return line
}

// waitRunning polls until the instance runs, fails, or ctx ends.
func (m *Manager) waitRunning(ctx context.Context, vc *vast.Client, id int64, progress func(RentProgress)) (*vast.Instance, error) {
	var last error
	for {
		in, err := vc.ShowInstance(ctx, id)
		switch {
		case errors.Is(err, vast.ErrNotFound):
			return nil, fmt.Errorf("instance %d disappeared while starting", id)
		case errors.Is(err, vast.ErrAuth):
			return nil, err
		case err != nil:
			last = err // transient: keep polling until the deadline
		default:
			phase, why := in.Phase()
			progress(RentProgress{Phase: "wait", InstanceID: id, Status: in.ActualStatus, Message: strings.TrimSpace(in.StatusMsg), DPH: in.DPHTotal})
			if phase == vast.Failed {
				return nil, errors.New(why)
			}
			if _, _, ok := in.SSHAddress(); phase == vast.Running && ok {
				return in, nil
			}
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return nil, fmt.Errorf("%w while the instance was %s", ctx.Err(), statusWord(in))
		case <-time.After(m.cfg.PollInterval):
		}
	}
}

func statusWord(in *vast.Instance) string {
	if in == nil || in.ActualStatus == "" {
		return "being provisioned"
	}
	return strconv.Quote(in.ActualStatus)
}

// waitSSH dials until SSH gets in. Keys can take a few seconds to work on
// a fresh instance (reference §11); if they keep failing, the key is
// attached to the instance itself once (§6).
func (m *Manager) waitSSH(ctx context.Context, vc *vast.Client, t *Target, pubs []string, progress func(RentProgress)) error {
	attached := false
	authFailures := 0
	for attempt := 1; ; attempt++ {
		progress(RentProgress{Phase: "connect", InstanceID: t.InstanceID, Status: "running",
			Message: fmt.Sprintf("connecting to %s@%s:%d (attempt %d)", t.User, t.Host, t.Port, attempt), DPH: t.DPH})
		c, err := m.dial(ctx, *t)
		if err == nil {
			c.Close()
			return nil
		}
		switch {
		case errors.Is(err, sshx.ErrHostKeyChanged), errors.Is(err, sshx.ErrHostKeyUnknown), errors.Is(err, sshx.ErrWrongPassphrase):
			return err
		case errors.Is(err, sshx.ErrAuth):
			authFailures++
			if authFailures >= 3 && !attached {
				attached = true
				progress(RentProgress{Phase: "connect", InstanceID: t.InstanceID, Message: "attaching your SSH key to the instance"})
				if aerr := vc.AttachSSHKey(ctx, t.InstanceID, pubs[0]); aerr != nil {
					return fmt.Errorf("%w; attaching the key to the instance failed too: %v", err, aerr)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last SSH error: %v", ctx.Err(), err)
		case <-time.After(m.cfg.SSHRetryInterval):
		}
	}
}

// cleanup destroys an instance this attempt created and forgets it. It
// runs on its own context: the caller's may be the reason for failing.
func (m *Manager) cleanup(id int64, label string, cause error, progress func(RentProgress)) error {
	progress(RentProgress{Phase: "cleanup", InstanceID: id, Message: fmt.Sprintf("destroying instance %d (%s) so it does not bill", id, label)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vc, err := m.Vast()
	if err == nil {
		err = vc.DestroyInstance(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("%w — AND destroying instance %d failed: %v; destroy it with `pixery remote destroy %d` or on console.vast.ai, it may be billing", cause, id, err, id)
	}
	_ = m.update(func(s *State) { s.Remove(vastName(id)) })
	_, _ = sshx.ForgetHost(m.cfg.SSH.KnownHostsFile, sshx.Target{HostKeyAlias: vastName(id)})
	return fmt.Errorf("%w (instance %d was destroyed)", cause, id)
}

// layoutFor is the layout a target was deployed with, else the default.
func (m *Manager) layoutFor(t Target) deploy.Layout {
	l := m.cfg.Layout
	if t.Root != "" {
		l.Root = t.Root
	}
	if t.EnginePort != 0 {
		l.Port = t.EnginePort
	}
	return l
}

// cleanupByLabel destroys whatever instance carries label, after a create
// whose answer never came.
func (m *Manager) cleanupByLabel(label string, cause error, progress func(RentProgress)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vc, err := m.Vast()
	if err != nil {
		return cause
	}
	found, err := vc.ListInstances(ctx, map[string]any{"label": map[string]any{"eq": label}})
	if err != nil {
		return fmt.Errorf("%w — and pixery could not check whether Vast created instance %s anyway (%v): run `pixery remote orphans`", cause, label, err)
	}
	for _, in := range found {
		if in.Label != label {
			continue
		}
		if err := m.cleanup(in.ID, label, cause, progress); err != nil {
			cause = err
		}
	}
	return cause
}

// dial connects to a target over SSH.
func (m *Manager) dial(ctx context.Context, t Target) (*sshx.Client, error) {
	if t.Host == "" {
		return nil, fmt.Errorf("%s: no SSH address known yet", t.Name)
	}
	return sshx.Dial(ctx, sshx.Target{User: t.User, Host: t.Host, Port: t.Port, HostKeyAlias: t.HostKeyAlias()}, m.cfg.SSH)
}

// connect refreshes a Vast target's address (it can change across
// restarts) and dials it.
func (m *Manager) connect(ctx context.Context, t *Target) (*sshx.Client, error) {
	if t.Kind == KindVast {
		if vc, err := m.Vast(); err == nil {
			if in, err := vc.ShowInstance(ctx, t.InstanceID); err == nil {
				if h, p, ok := in.SSHAddress(); ok && (h != t.Host || p != t.Port) {
					t.Host, t.Port = h, p
					tt := *t
					_ = m.update(func(s *State) { s.Put(tt) })
				}
			} else if errors.Is(err, vast.ErrNotFound) {
				return nil, fmt.Errorf("instance %d no longer exists on Vast.ai (destroyed?); forget it with `pixery remote destroy %d`", t.InstanceID, t.InstanceID)
			}
		}
	}
	return m.dial(ctx, *t)
}

// DeployOptions configure Deploy and Update.
type DeployOptions struct {
	// Target names a known target ("" = the current one). Host instead
	// names any SSH host ("user@host", "user@host:port", a ~/.ssh/config
	// alias), with Port when not in Host.
	Target string
	Host   string
	Port   int
	// Engine is the local pixery-engine for linux/amd64.
	Engine string
	// Registry and RegistryDir: the model registry TOMLs to upload.
	Registry    fs.FS
	RegistryDir string
	// ModelFiles are local files to put into the host's models folder
	// (checkpoints the user has, LoRAs as "loras/NAME"); see
	// deploy.Options.ModelFiles.
	ModelFiles []deploy.ModelFile
	// Token, when set, is given to the engine through a 0600 file.
	Token     string
	SkipSetup bool
	// SetupArgs are extra arguments for `pixery-engine setup` on the host
	// ("--no-models", "--model", "pony", "--no-libs").
	SetupArgs []string
	Progress  func(deploy.Progress)
	Output    io.Writer
	// HealthTimeout bounds waiting for /v1/health (default 2 min).
	HealthTimeout time.Duration
	// For Update (see deploy.Options): how long to wait for the running
	// engine to become idle (0 = 30 min, negative = not at all), whether
	// to restart it anyway when it is still busy then, the pause for
	// clients between idle and stop (0 = 5 s, negative = none), and the
	// time between health checks while waiting (0 = 1 s).
	WaitTimeout  time.Duration
	Force        bool
	Grace        time.Duration
	PollInterval time.Duration
	// Layout overrides where the engine goes on the host (nil = where it
	// was deployed before, else the Manager's layout); it is remembered.
	Layout *deploy.Layout
}

func (m *Manager) deployTarget(o DeployOptions) (Target, error) {
	if o.Host == "" {
		return m.Resolve(o.Target)
	}
	st, err := sshx.ParseTarget(o.Host, o.Port)
	if err != nil {
		return Target{}, fmt.Errorf("--host: %w", err)
	}
	if o.Port != 0 && st.Port != o.Port && strings.Contains(o.Host, ":") {
		return Target{}, fmt.Errorf("--host %s and --port %d disagree", o.Host, o.Port)
	}
	st, _, err = sshx.Resolve(st, m.cfg.SSH)
	if err != nil {
		return Target{}, err
	}
	name := fmt.Sprintf("ssh-%s@%s", st.User, net.JoinHostPort(st.Host, strconv.Itoa(st.Port)))
	if t, err := m.Resolve(name); err == nil {
		return t, nil
	}
	return Target{Name: name, Kind: KindSSH, User: st.User, Host: st.Host, Port: st.Port, CreatedAt: m.cfg.Now().UTC()}, nil
}

// Deploy uploads and starts the engine on a target (see deploy.Host.Deploy)
// and makes it the current target.
func (m *Manager) Deploy(ctx context.Context, o DeployOptions) (*deploy.Result, error) {
	return m.deploy(ctx, o, false)
}

// Update pushes a new engine to the target and restarts it gracefully:
// the new binary is staged beside the running one, which finishes its
// running and queued jobs (and any that arrive meanwhile) before it is
// stopped and replaced; see deploy.Host.Update. When it is still busy
// after o.WaitTimeout, Update fails with deploy.ErrBusy and leaves it
// running, unless o.Force.
func (m *Manager) Update(ctx context.Context, o DeployOptions) (*deploy.Result, error) {
	return m.deploy(ctx, o, true)
}

func (m *Manager) deploy(ctx context.Context, o DeployOptions, update bool) (*deploy.Result, error) {
	t, err := m.deployTarget(o)
	if err != nil {
		return nil, err
	}
	// Check the inputs before connecting anywhere.
	if err := deploy.CheckEngineBinary(o.Engine); err != nil {
		return nil, err
	}
	if o.Registry != nil {
		if _, err := deploy.LoadRegistry(o.Registry, o.RegistryDir); err != nil {
			return nil, err
		}
	}
	if _, err := deploy.CheckModelFiles(o.ModelFiles); err != nil {
		return nil, err
	}
	layout := m.layoutFor(t)
	if o.Layout != nil {
		layout = *o.Layout
	}
	c, err := m.connect(ctx, &t)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	h, err := deploy.Open(c.Client, layout)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	t.Root, t.EnginePort = layout.Root, layout.Port
	opts := deploy.Options{Engine: o.Engine, Registry: o.Registry, RegistryDir: o.RegistryDir, ModelFiles: o.ModelFiles,
		Token: o.Token, Progress: o.Progress, Output: o.Output, SkipSetup: o.SkipSetup, SetupArgs: o.SetupArgs,
		HealthTimeout: o.HealthTimeout, WaitTimeout: o.WaitTimeout, Force: o.Force, Grace: o.Grace, PollInterval: o.PollInterval}
	var res *deploy.Result
	if update {
		res, err = h.Update(ctx, opts)
	} else {
		res, err = h.Deploy(ctx, opts)
	}
	if res != nil && res.Engine != nil && err == nil {
		t.DeployedAt = m.cfg.Now().UTC()
		t.EngineSHA256 = res.Engine.SHA256
	}
	if uerr := m.update(func(s *State) { s.Put(t); s.Current = t.Name }); uerr != nil && err == nil {
		err = uerr
	}
	return res, err
}

// TunnelOptions configure Tunnel.
type TunnelOptions struct {
	Target string // "" = current
	// Local is the local address (default 127.0.0.1:<layout port>).
	Local          string
	OnEvent        func(tunnel.Event)
	OnForwardError func(error)
	// Ready, if set, receives the listening tunnel before Tunnel blocks.
	Ready func(*tunnel.Tunnel)
	// Backoff bounds (defaults in package tunnel).
	MinBackoff, MaxBackoff time.Duration
}

// Tunnel forwards the local port to the engine on the target until ctx
// ends, reconnecting when the connection drops.
func (m *Manager) Tunnel(ctx context.Context, o TunnelOptions) error {
	t, err := m.Resolve(o.Target)
	if err != nil {
		return err
	}
	layout := m.layoutFor(t)
	local := o.Local
	if local == "" {
		local = layout.Addr()
	}
	tun, err := tunnel.Listen(tunnel.Config{
		Local: local, Remote: layout.Addr(),
		Dial: func(ctx context.Context) (*ssh.Client, error) {
			tt := t
			c, err := m.connect(ctx, &tt)
			if err != nil {
				return nil, err
			}
			return c.Client, nil
		},
		OnEvent: o.OnEvent, OnForwardError: o.OnForwardError,
		MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff,
	})
	if err != nil {
		return err
	}
	if o.Ready != nil {
		o.Ready(tun)
	}
	return tun.Run(ctx)
}

// Status is what Status reports about a target.
type Status struct {
	Target Target
	// Instance is Vast's record (nil for plain SSH hosts or on error).
	Instance *vast.Instance
	// InstanceErr says why Instance is missing for a Vast target.
	InstanceErr error
	// DPH is the price per hour; Uptime the time since the instance
	// started; Cost = DPH × Uptime, an estimate (Vast bills storage from
	// creation and the GPU only while running).
	DPH    float64
	Uptime time.Duration
	Cost   float64
	// Engine on the host.
	SSHErr        error
	EngineRunning bool
	EnginePID     int
	Health        *deploy.Health
	HealthErr     error
}

// Status gathers the state of a target: Vast's view, SSH reachability,
// and the engine's process and health.
func (m *Manager) Status(ctx context.Context, name string) (*Status, error) {
	st, err := m.InstanceStatus(ctx, name)
	if err != nil {
		return nil, err
	}
	if errors.Is(st.InstanceErr, vast.ErrNotFound) {
		return st, nil // gone: no point trying SSH
	}
	t := st.Target
	c, err := m.connect(ctx, &t)
	if err != nil {
		st.SSHErr = err
		return st, nil
	}
	defer c.Close()
	h, err := deploy.Open(c.Client, m.layoutFor(t))
	if err != nil {
		st.SSHErr = err
		return st, nil
	}
	defer h.Close()
	st.EnginePID, st.EngineRunning, err = h.Running(ctx)
	if err != nil {
		st.SSHErr = err
		return st, nil
	}
	st.Health, st.HealthErr = h.Health(ctx)
	return st, nil
}

// Logs writes the engine log of a target to w (following it with follow
// until ctx ends).
func (m *Manager) Logs(ctx context.Context, name string, w io.Writer, lines int, follow bool) error {
	t, err := m.Resolve(name)
	if err != nil {
		return err
	}
	c, err := m.connect(ctx, &t)
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := deploy.Open(c.Client, m.layoutFor(t))
	if err != nil {
		return err
	}
	defer h.Close()
	return h.Logs(ctx, w, lines, follow)
}

// Destroy destroys a Vast instance (stopping its billing) and forgets it.
// An instance Vast no longer knows counts as destroyed. name may also be
// the id of an instance pixery does not know (an orphan).
func (m *Manager) Destroy(ctx context.Context, name string) error {
	t, err := m.Resolve(name)
	if err != nil {
		id, perr := strconv.ParseInt(strings.TrimPrefix(name, "vast-"), 10, 64)
		if perr != nil || name == "" {
			return err
		}
		t = Target{Name: vastName(id), Kind: KindVast, InstanceID: id}
	}
	if t.Kind != KindVast {
		return fmt.Errorf("%s is not an instance pixery rented; nothing to destroy (stop the engine there with `pixery remote update` or ssh)", t.Name)
	}
	vc, err := m.Vast()
	if err != nil {
		return err
	}
	if err := vc.DestroyInstance(ctx, t.InstanceID); err != nil {
		return fmt.Errorf("destroy instance %d: %w (it may still be billing: try again, or destroy it on console.vast.ai)", t.InstanceID, err)
	}
	if err := m.update(func(s *State) { s.Remove(t.Name) }); err != nil {
		return err
	}
	_, _ = sshx.ForgetHost(m.cfg.SSH.KnownHostsFile, sshx.Target{HostKeyAlias: t.Name})
	return nil
}

// Orphans lists instances on the Vast account whose label starts with
// LabelPrefix but that the local state does not know: left by a crash, or
// by pixery on another machine. Destroy takes their ids.
func (m *Manager) Orphans(ctx context.Context) ([]vast.Instance, error) {
	vc, err := m.Vast()
	if err != nil {
		return nil, err
	}
	all, err := vc.ListInstances(ctx, nil)
	if err != nil {
		return nil, err
	}
	s, err := m.State()
	if err != nil {
		return nil, err
	}
	known := map[int64]bool{}
	for _, t := range s.Targets {
		if t.Kind == KindVast {
			known[t.InstanceID] = true
		}
	}
	var out []vast.Instance
	for _, in := range all {
		if strings.HasPrefix(in.Label, LabelPrefix) && !known[in.ID] {
			out = append(out, in)
		}
	}
	return out, nil
}
