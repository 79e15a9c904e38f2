package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	enginecli "github.com/pixery/pixery/engine/cli"
	"github.com/pixery/pixery/models"
	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/tunnel"
	"github.com/pixery/pixery/remote/vast"
)

func init() {
	Commands.Register(&enginecli.Command{
		Name:    "remote",
		Summary: "rent a GPU on Vast.ai, deploy the engine over SSH, tunnel, update, destroy",
		Run:     runRemote,
	})
}

// Seams for tests: where answers to questions come from, the context a
// long-running command (tunnel, logs -f) runs under, and Manager settings.
var (
	stdin      io.Reader = os.Stdin
	runContext           = func() (context.Context, context.CancelFunc) {
		return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	}
	managerConfig = func() remote.Config { return remote.Config{} }
)

func remoteSubcommands() []subcommand {
	return []subcommand{
		{"offers", "[--gpu NAME] [--disk GB] [--max-price $/H] [--order dph]", "list GPU offers on Vast.ai, cheapest first", remoteOffers},
		{"rent", "OFFER_ID | --cheapest [--gpu NAME] [--max-price $/H] [--disk GB]", "rent an instance and wait until SSH gets in", remoteRent},
		{"deploy", "[--host USER@HOST --port 22] [--engine PATH] [--registry DIR] [--model-file PATH[=NAME]]... [--setup-arg ARG]...", "upload, set up and start the engine", remoteDeploy},
		{"tunnel", "[--local 127.0.0.1:8000]", "forward a local port to the engine (until Ctrl-C)", remoteTunnel},
		{"status", "[TARGET]", "instance state, price, running time and cost, engine health", remoteStatus},
		{"logs", "[-f] [-n LINES] [TARGET]", "the engine's log on the host", remoteLogs},
		{"update", "[--engine PATH] [--wait-timeout 30m] [--force] [--grace 5s] [--model-file PATH[=NAME]]... [--setup-arg ARG]... [TARGET]",
			"push a new engine; restart it once its running and queued jobs are done", remoteUpdate},
		{"destroy", "[-y] [TARGET|INSTANCE_ID]", "destroy the instance (stops billing)", remoteDestroy},
		{"orphans", "", "instances with a pixery label that this machine does not know", remoteOrphans},
	}
}

func runRemote(args []string, stdout, stderr io.Writer) error {
	return runSubcommand("remote", remoteSubcommands(), args, stdout, stderr)
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pixery remote "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", enginecli.ErrUsage, err)
	}
	return nil
}

// prompter asks the user questions on the terminal (stderr + stdin).
type prompter struct {
	stderr io.Writer
	yes    bool // --yes: accept new host keys without asking
	mu     sync.Mutex
	in     *bufio.Reader
}

func newPrompter(stderr io.Writer, yes bool) *prompter {
	return &prompter{stderr: stderr, yes: yes, in: bufio.NewReader(stdin)}
}

func (p *prompter) line(question string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.stderr, question)
	s, err := p.in.ReadString('\n')
	if err != nil && s == "" {
		return "", fmt.Errorf("no answer (%v)", err)
	}
	return strings.TrimSpace(s), nil
}

func (p *prompter) confirm(question string) bool {
	a, err := p.line(question + " [y/N] ")
	return err == nil && (strings.EqualFold(a, "y") || strings.EqualFold(a, "yes"))
}

// hostKey is the trust-on-first-use question.
func (p *prompter) hostKey(host string, key ssh.PublicKey, fp string) (bool, error) {
	if p.yes {
		fmt.Fprintf(p.stderr, "New host %s, %s key %s: trusted (--yes) and recorded.\n", host, key.Type(), fp)
		return true, nil
	}
	fmt.Fprintf(p.stderr, "The authenticity of host %s can't be established.\n%s key fingerprint is %s.\n", host, key.Type(), fp)
	return p.confirm("Trust it and remember it in pixery's known_hosts?"), nil
}

// passphrase reads a key's passphrase from the terminal without echo.
func (p *prompter) passphrase(file string) ([]byte, error) {
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, fmt.Errorf("no terminal to ask for the passphrase of %s: add the key to ssh-agent (ssh-add %s)", file, file)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stderr, "Passphrase for %s: ", file)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(p.stderr)
	return b, err
}

func newManager(p *prompter) (*remote.Manager, error) {
	cfg := managerConfig()
	cfg.SSH.ConfirmHostKey = p.hostKey
	cfg.SSH.Passphrase = p.passphrase
	return remote.New(cfg)
}

func remoteOffers(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("offers", stderr)
	q := vast.NewOfferQuery()
	fs.StringVar(&q.GPUName, "gpu", "", `GPU model as Vast names it, e.g. "RTX 4090"`)
	fs.Float64Var(&q.MinDiskGB, "disk", q.MinDiskGB, "disk to rent, GB (also prices the storage)")
	fs.Float64Var(&q.MaxPrice, "max-price", 0, "highest price, $/hour")
	fs.StringVar(&q.Order, "order", "dph", "sort field (dph = price, inet_down, reliability, score…)")
	desc := fs.Bool("desc", false, "sort descending")
	fs.Float64Var(&q.MinReliability, "min-reliability", q.MinReliability, "lowest host reliability (0–1); 0 turns the filter off")
	fs.IntVar(&q.Limit, "limit", q.Limit, "most offers to list")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", enginecli.ErrUsage, fs.Arg(0))
	}
	q.Descending = *desc
	m, err := newManager(newPrompter(stderr, false))
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	offers, err := m.Offers(ctx, q)
	if err != nil {
		return err
	}
	if len(offers) == 0 {
		fmt.Fprintln(stdout, "no offers match; loosen --gpu, --max-price, --disk or --min-reliability")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ID\tGPU\tVRAM\t$/H\tDISK\tDOWN\tRELIAB\tLOCATION\t")
	for _, o := range offers {
		gpu := o.GPUName
		if o.NumGPUs > 1 {
			gpu = fmt.Sprintf("%d× %s", o.NumGPUs, o.GPUName)
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f GB\t%.4f\t%.0f GB\t%.0f Mb/s\t%.1f%%\t%s\t\n",
			o.ID, gpu, o.VRAMGB(), o.DPHTotal, o.DiskSpace, o.InetDown, o.Reliability*100, o.Geolocation)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "rent one with: pixery remote rent OFFER_ID")
	return nil
}

func remoteRent(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rent", stderr)
	cheapest := fs.Bool("cheapest", false, "rent the cheapest offer matching --gpu/--max-price/--disk")
	gpu := fs.String("gpu", "", "with --cheapest: GPU model")
	maxPrice := fs.Float64("max-price", 0, "with --cheapest: highest price, $/hour")
	disk := fs.Float64("disk", 50, "disk, GB")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up (and destroy the instance) if it is not running and reachable by then")
	poll := fs.Duration("poll", 5*time.Second, "time between status checks")
	yes := fs.Bool("yes", false, "trust the new instance's host key without asking")
	fs.BoolVar(yes, "y", false, "short for --yes")
	if err := parse(fs, args); err != nil {
		return err
	}
	var o remote.RentOptions
	switch {
	case *cheapest && fs.NArg() == 0:
		o.Cheapest = true
		o.Query = vast.NewOfferQuery()
		o.Query.GPUName, o.Query.MaxPrice, o.Query.MinDiskGB = *gpu, *maxPrice, *disk
	case !*cheapest && fs.NArg() == 1:
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil || id <= 0 {
			return fmt.Errorf("%w: offer id %q is not a number (see pixery remote offers)", enginecli.ErrUsage, fs.Arg(0))
		}
		o.OfferID = id
	default:
		return fmt.Errorf("%w: give one OFFER_ID or --cheapest", enginecli.ErrUsage)
	}
	o.DiskGB, o.Timeout = *disk, *timeout
	p := newPrompter(stderr, *yes)
	cfg := managerConfig()
	cfg.SSH.ConfirmHostKey, cfg.SSH.Passphrase, cfg.PollInterval = p.hostKey, p.passphrase, *poll
	m, err := remote.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	last := ""
	o.Progress = func(r remote.RentProgress) {
		line := r.Message
		if r.Phase == "wait" {
			status := r.Status
			if status == "" {
				status = "provisioning"
			}
			line = status
			if r.Message != "" {
				line += ": " + r.Message
			}
		}
		if line == last {
			return
		}
		last = line
		fmt.Fprintf(stderr, "[%s] %s\n", fmtElapsed(r.Elapsed), line)
	}
	t, err := m.Rent(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "instance %d (%s) is running at $%.4f/h, reachable as %s@%s port %d\n", t.InstanceID, t.GPU, t.DPH, t.User, t.Host, t.Port)
	fmt.Fprintln(stdout, "next: pixery remote deploy; when done: pixery remote destroy (billing continues until then)")
	return nil
}

func fmtElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// defaultEngine finds a linux/amd64 pixery-engine next to this program.
func defaultEngine() (string, error) {
	p, err := remote.FindEngineBinary()
	if err != nil {
		return "", fmt.Errorf("%w: %v; or pass --engine PATH", enginecli.ErrUsage, err)
	}
	return p, nil
}

// modelFileFlags collects repeated --model-file PATH[=NAME] flags.
type modelFileFlags []deploy.ModelFile

func (m *modelFileFlags) String() string {
	var parts []string
	for _, mf := range *m {
		if mf.Name != "" {
			parts = append(parts, mf.Path+"="+mf.Name)
		} else {
			parts = append(parts, mf.Path)
		}
	}
	return strings.Join(parts, ",")
}

// Set takes PATH or PATH=NAME. An argument naming an existing file is a
// PATH even when it holds "=" (so such files need no NAME); otherwise the
// last "=" separates the NAME, a path inside the host's models folder.
func (m *modelFileFlags) Set(v string) error {
	p, name := v, ""
	if _, err := os.Stat(v); err != nil {
		if i := strings.LastIndex(v, "="); i >= 0 {
			p, name = v[:i], v[i+1:]
			if name == "" {
				return fmt.Errorf("%q: the NAME after = is empty (PATH[=NAME], e.g. detail.safetensors=loras/detail.safetensors)", v)
			}
		}
	}
	if p == "" {
		return fmt.Errorf("%q: the PATH is empty (PATH[=NAME])", v)
	}
	*m = append(*m, deploy.ModelFile{Path: p, Name: name})
	return nil
}

// argsFlag collects a repeated flag's values in order.
type argsFlag []string

func (a *argsFlag) String() string { return strings.Join(*a, " ") }

func (a *argsFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty argument")
	}
	*a = append(*a, v)
	return nil
}

type deployFlags struct {
	engine, registry, host, target, root string
	port, enginePort                     int
	skipSetup, yes                       bool
	healthTimeout                        time.Duration
	modelFiles                           modelFileFlags
	setupArgs                            argsFlag
	// update only
	update             bool
	waitTimeout, grace time.Duration
	force              bool
}

func (d *deployFlags) register(fs *flag.FlagSet, withHost, update bool) {
	fs.StringVar(&d.engine, "engine", "", "pixery-engine built for linux/amd64 (default: next to pixery)")
	fs.StringVar(&d.registry, "registry", "", "folder of model registry TOMLs to upload (default: the built-in registry)")
	fs.Var(&d.modelFiles, "model-file", "upload a local file into the host's models folder, as NAME there (default: its base name; a LoRA: =loras/NAME.safetensors); repeatable")
	fs.Var(&d.setupArgs, "setup-arg", "pass one argument to pixery-engine setup on the host (--setup-arg --no-models, --setup-arg=--model=pony); repeatable")
	fs.BoolVar(&d.skipSetup, "skip-setup", false, "do not run pixery-engine setup on the host")
	fs.BoolVar(&d.yes, "yes", false, "trust a new host key without asking")
	fs.BoolVar(&d.yes, "y", false, "short for --yes")
	fs.DurationVar(&d.healthTimeout, "health-timeout", 2*time.Minute, "how long to wait for the engine to answer")
	if withHost {
		fs.StringVar(&d.host, "host", "", "deploy to this SSH host (user@host[:port] or a ~/.ssh/config alias) instead of the rented instance")
		fs.IntVar(&d.port, "port", 0, "SSH port of --host (default 22 or ~/.ssh/config)")
		fs.StringVar(&d.root, "root", deploy.DefaultLayout.Root, "folder on the host")
		fs.IntVar(&d.enginePort, "engine-port", deploy.DefaultLayout.Port, "engine port on the host's loopback")
	}
	d.update = update
	if update {
		fs.DurationVar(&d.waitTimeout, "wait-timeout", deploy.DefaultWaitTimeout, "how long to wait for the engine's running and queued jobs (new ones included) before giving up; 0: do not wait")
		fs.BoolVar(&d.force, "force", false, "restart even if jobs are left when the wait ends (the running job finishes, queued ones are cancelled)")
		fs.DurationVar(&d.grace, "grace", deploy.DefaultGrace, "pause between the engine going idle and its restart, for clients to fetch the last images; 0: none")
	}
}

func (d *deployFlags) options(stdout, stderr io.Writer) (remote.DeployOptions, error) {
	engine := d.engine
	if engine == "" {
		var err error
		if engine, err = defaultEngine(); err != nil {
			return remote.DeployOptions{}, err
		}
	}
	var reg fs.FS = models.FS
	regDir := "."
	if d.registry != "" {
		reg, regDir = os.DirFS(d.registry), "."
	}
	o := remote.DeployOptions{Target: d.target, Host: d.host, Port: d.port, Engine: engine, Registry: reg, RegistryDir: regDir,
		ModelFiles: d.modelFiles, SetupArgs: d.setupArgs,
		SkipSetup: d.skipSetup, Output: stdout, HealthTimeout: d.healthTimeout, Progress: uploadProgress(stderr)}
	if d.update {
		o.Force, o.WaitTimeout, o.Grace = d.force, d.waitTimeout, d.grace
		// On the command line 0 means "not at all"; in DeployOptions a
		// negative value does (0 is the default there).
		if o.WaitTimeout <= 0 {
			o.WaitTimeout = -1
		}
		if o.Grace <= 0 {
			o.Grace = -1
		}
	}
	if d.root != "" && (d.root != deploy.DefaultLayout.Root || d.enginePort != deploy.DefaultLayout.Port) {
		o.Layout = &deploy.Layout{Root: d.root, Port: d.enginePort}
	}
	return o, nil
}

// uploadProgress prints a line per step and every 10 % of an upload.
func uploadProgress(w io.Writer) func(deploy.Progress) {
	lastPct := -1
	lastFile := ""
	started := time.Now()
	var (
		lastWait                string
		waitStart, lastWaitLine time.Time
	)
	return func(p deploy.Progress) {
		switch p.Step {
		case "upload":
			if p.File != lastFile {
				lastFile, lastPct, started = p.File, -1, time.Now()
				if p.Resumed > 0 && p.Resumed < p.Total {
					fmt.Fprintf(w, "resuming %s at %.1f MB\n", p.File, float64(p.Resumed)/1e6)
				}
			}
			pct := 100
			if p.Total > 0 {
				pct = int(p.Done * 100 / p.Total)
			}
			if p.Total > 0 && p.Resumed == p.Total {
				if lastPct != 100 {
					lastPct = 100
					fmt.Fprintf(w, "upload %s: already on the host (%.1f MB)\n", filepath.Base(p.File), float64(p.Total)/1e6)
				}
				return
			}
			if pct/10 != lastPct/10 || (pct == 100 && lastPct != 100) {
				lastPct = pct
				rate := float64(p.Done-p.Resumed) / 1e6 / max(time.Since(started).Seconds(), 1e-3)
				fmt.Fprintf(w, "upload %s: %3d%% of %.1f MB (%.1f MB/s)\n", filepath.Base(p.File), pct, float64(p.Total)/1e6, rate)
			}
		case "verify":
			fmt.Fprintf(w, "verify %s: sha256 on the host\n", filepath.Base(p.File))
		case "setup":
			fmt.Fprintln(w, "running pixery-engine setup on the host…")
		case "wait":
			// Every poll reports; a line when what it says changes, and
			// every 30 s while it does not.
			if waitStart.IsZero() {
				waitStart = time.Now()
			}
			if p.Message != lastWait || time.Since(lastWaitLine) >= 30*time.Second {
				lastWait, lastWaitLine = p.Message, time.Now()
				fmt.Fprintf(w, "[%s] %s\n", fmtElapsed(time.Since(waitStart)), p.Message)
			}
		case "grace":
			lastWait = ""
			fmt.Fprintln(w, p.Message)
		case "stop":
			fmt.Fprintln(w, "stopping the old engine, if one runs…")
		case "start":
			fmt.Fprintln(w, "starting the engine…")
		case "health":
			fmt.Fprintln(w, "waiting for /v1/health…")
		}
	}
}

func printResult(stdout io.Writer, what string, r *deploy.Result) {
	fmt.Fprintf(stdout, "%s: engine pid %d, version %s, %s", what, r.PID, r.Health.Version, deviceText(r.Health))
	if r.Engine != nil && r.Engine.Skipped && !r.Swapped {
		fmt.Fprint(stdout, " (binary unchanged)")
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "reach it with: pixery remote tunnel")
}

// deviceText is where the engine runs: "CUDA on NVIDIA H100 80GB".
func deviceText(h *deploy.Health) string {
	switch {
	case h.Provider != "" && h.Device != "":
		return h.Provider + " on " + h.Device
	case h.Device != "":
		return "device " + h.Device
	case h.Provider != "":
		return h.Provider
	}
	return "device unknown"
}

func remoteDeploy(args []string, stdout, stderr io.Writer) error {
	return deployCommand("deploy", args, stdout, stderr)
}

func remoteUpdate(args []string, stdout, stderr io.Writer) error {
	return deployCommand("update", args, stdout, stderr)
}

// parseDeploy reads the flags and arguments of deploy or update.
func parseDeploy(name string, args []string, stdout, stderr io.Writer) (remote.DeployOptions, bool, error) {
	fs := newFlags(name, stderr)
	var d deployFlags
	d.register(fs, name == "deploy", name == "update")
	if err := parse(fs, args); err != nil {
		return remote.DeployOptions{}, false, err
	}
	if fs.NArg() > 1 {
		return remote.DeployOptions{}, false, fmt.Errorf("%w: at most one TARGET", enginecli.ErrUsage)
	}
	d.target = fs.Arg(0)
	o, err := d.options(stdout, stderr)
	return o, d.yes, err
}

func deployCommand(name string, args []string, stdout, stderr io.Writer) error {
	o, yes, err := parseDeploy(name, args, stdout, stderr)
	if err != nil {
		return err
	}
	m, err := newManager(newPrompter(stderr, yes))
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	if name == "deploy" {
		r, err := m.Deploy(ctx, o)
		if err != nil {
			return err
		}
		printResult(stdout, "deployed", r)
		return nil
	}
	r, err := m.Update(ctx, o)
	if errors.Is(err, deploy.ErrBusy) {
		return fmt.Errorf("%w\nrun pixery remote update again later, give it longer (--wait-timeout 2h), or restart now with --force (queued jobs are then cancelled)", err)
	}
	if err != nil {
		return err
	}
	printResult(stdout, "updated", r)
	return nil
}

func remoteTunnel(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tunnel", stderr)
	local := fs.String("local", "", "local address (default 127.0.0.1:<engine port>)")
	yes := fs.Bool("yes", false, "trust a new host key without asking")
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := newManager(newPrompter(stderr, *yes))
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	return m.Tunnel(ctx, remote.TunnelOptions{Target: fs.Arg(0), Local: *local,
		Ready: func(t *tunnel.Tunnel) {
			fmt.Fprintf(stdout, "forwarding http://%s to the engine; Ctrl-C to stop\n", t.Addr())
		},
		OnEvent: func(e tunnel.Event) {
			fmt.Fprintf(stderr, "%s %s\n", e.Time.Format("15:04:05"), e)
		},
		OnForwardError: func(err error) {
			fmt.Fprintf(stderr, "%s tunnel is up, but %v\n", time.Now().Format("15:04:05"), err)
		},
	})
}

func remoteStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	yes := fs.Bool("yes", false, "trust a new host key without asking")
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := newManager(newPrompter(stderr, *yes))
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	st, err := m.Status(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	t := st.Target
	fmt.Fprintf(tw, "target\t%s\n", t.Name)
	if t.Kind == remote.KindVast {
		switch {
		case st.Instance != nil:
			state := st.Instance.ActualStatus
			if state == "" {
				state = "provisioning"
			}
			if st.Instance.StatusMsg != "" {
				state += " (" + strings.TrimSpace(st.Instance.StatusMsg) + ")"
			}
			fmt.Fprintf(tw, "instance\t%d %s, %s\n", t.InstanceID, t.Label, state)
			fmt.Fprintf(tw, "gpu\t%d× %s\n", max(st.Instance.NumGPUs, 1), st.Instance.GPUName)
			fmt.Fprintf(tw, "price\t$%.4f/h\n", st.DPH)
			fmt.Fprintf(tw, "running for\t%s\n", st.Uptime.Round(time.Second))
			fmt.Fprintf(tw, "cost so far\t$%.2f (estimate: price × time since start)\n", st.Cost)
		case errors.Is(st.InstanceErr, vast.ErrNotFound):
			fmt.Fprintf(tw, "instance\t%d no longer exists on Vast.ai (forget it: pixery remote destroy %d)\n", t.InstanceID, t.InstanceID)
		default:
			fmt.Fprintf(tw, "instance\t%d: Vast.ai not reachable: %v\n", t.InstanceID, st.InstanceErr)
		}
	}
	if t.Host != "" {
		fmt.Fprintf(tw, "ssh\t%s@%s -p %d\n", t.User, t.Host, t.Port)
	}
	switch {
	case st.SSHErr != nil:
		fmt.Fprintf(tw, "engine\tunknown: %v\n", st.SSHErr)
	case !st.EngineRunning:
		fmt.Fprintf(tw, "engine\tnot running (pixery remote deploy starts it)\n")
	case st.HealthErr != nil:
		fmt.Fprintf(tw, "engine\tpid %d, but /v1/health fails: %v\n", st.EnginePID, st.HealthErr)
	default:
		queue := "idle"
		if !st.Health.Idle() {
			queue = fmt.Sprintf("%d queued", st.Health.Queued)
			if st.Health.Running != "" {
				queue = "running job " + st.Health.Running + ", " + queue
			}
		}
		fmt.Fprintf(tw, "engine\tpid %d, healthy: version %s, %s, %s\n", st.EnginePID, st.Health.Version, deviceText(st.Health), queue)
	}
	return tw.Flush()
}

func remoteLogs(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs", stderr)
	follow := fs.Bool("f", false, "keep printing new lines (Ctrl-C to stop)")
	lines := fs.Int("n", 100, "lines to show")
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := newManager(newPrompter(stderr, false))
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	return m.Logs(ctx, fs.Arg(0), stdout, *lines, *follow)
}

func remoteDestroy(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("destroy", stderr)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	fs.BoolVar(yes, "y", false, "short for --yes")
	if err := parse(fs, args); err != nil {
		return err
	}
	p := newPrompter(stderr, false)
	m, err := newManager(p)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	what := name
	if t, err := m.Resolve(name); err == nil {
		what = fmt.Sprintf("%s (%s, %s, $%.4f/h)", t.Name, t.Label, t.GPU, t.DPH)
	} else if name == "" {
		return err
	}
	if !*yes && !p.confirm("Destroy instance "+what+"? Its disk is deleted.") {
		return errors.New("not destroyed")
	}
	ctx, cancel := runContext()
	defer cancel()
	if err := m.Destroy(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "destroyed %s; billing has stopped\n", what)
	return nil
}

func remoteOrphans(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("orphans", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := newManager(newPrompter(stderr, false))
	if err != nil {
		return err
	}
	ctx, cancel := runContext()
	defer cancel()
	orphans, err := m.Orphans(ctx)
	if err != nil {
		return err
	}
	if len(orphans) == 0 {
		fmt.Fprintln(stdout, "no orphaned pixery instances")
		return nil
	}
	sort.Slice(orphans, func(i, j int) bool { return orphans[i].ID < orphans[j].ID })
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLABEL\tSTATUS\tGPU\t$/H\tAGE")
	for _, in := range orphans {
		age := "?"
		if s := in.Started(); !s.IsZero() {
			age = now.Sub(s).Round(time.Minute).String()
		}
		status := in.ActualStatus
		if status == "" {
			status = "provisioning"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.4f\t%s\n", in.ID, in.Label, status, in.GPUName, in.DPHTotal, age)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "these may be billing; destroy one with: pixery remote destroy ID")
	return nil
}
