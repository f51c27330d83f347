// Package local runs a colour's instances as processes on this machine: teal's Provider for
// `provider: local`.
//
// Every instance runs in its own session (so it outlives the server, even a SIGKILL of it or a
// Ctrl-C to its terminal), on a port teal chose, with its output appended to a log file it
// holds itself. A supervisor goroutine per instance restarts it on failure, with exponential
// backoff. A process is known by its PID and its start time (its identity), so a later server
// can adopt it and nobody ever signals a process that merely inherited a recycled PID.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/freeport"
	"teal.dev/teal/internal/procenv"
)

// Defaults of the Provider's exported fields.
const (
	DefaultRestartBackoff    = 200 * time.Millisecond
	DefaultMaxRestartBackoff = 10 * time.Second
	DefaultPollInterval      = 250 * time.Millisecond
)

const (
	// backoffReset is the uptime after which a process counts as having started well: its
	// next failure restarts after the initial backoff again.
	backoffReset = 10 * time.Second
	// killWait bounds the wait for a process to vanish after SIGKILL; only a process stuck
	// in the kernel outlives it.
	killWait = 5 * time.Second
	// stopPoll is how often Stop looks whether an adopted process (not our child, so not
	// waitable) is gone.
	stopPoll = 20 * time.Millisecond
)

// ErrClosed is returned by Launch and Adopt after Close (or Detach).
var ErrClosed = errors.New("local provider is closed")

var _ teal.Provider = (*Provider)(nil)

// Provider starts, supervises, adopts and stops the instances of both colours as local
// processes. It is safe for concurrent use; operations on one colour are serialised.
type Provider struct {
	// Logger receives supervision events (exits, restarts); nil discards them.
	Logger *slog.Logger
	// RestartBackoff is the wait before the first restart of a failed instance; it doubles
	// with every further failure up to MaxRestartBackoff, and starts over once an instance
	// has run for 10s. Default DefaultRestartBackoff.
	RestartBackoff time.Duration
	// MaxRestartBackoff caps the wait between restarts. Default DefaultMaxRestartBackoff.
	MaxRestartBackoff time.Duration
	// PollInterval is how often an adopted process, which is not our child and so cannot
	// be waited for, is checked for having exited. Default DefaultPollInterval.
	PollInterval time.Duration

	app      string
	stateDir string
	run      teal.RunConfig

	// colorMu serialises Launch, Adopt and Stop of one colour (index 0 blue, 1 green) so
	// that an operation on one colour never waits for a slow stop of the other.
	colorMu [2]sync.Mutex

	mu     sync.Mutex
	groups map[teal.Color][]*instance // the supervised instances of each colour, by index
	closed bool
}

// NewProvider returns a Provider for app that writes the instances' output to
// stateDir/logs/<color>-<index>.log. Zero fields of run take their defaults (teal.DefaultConfig).
func NewProvider(app, stateDir string, run teal.RunConfig) *Provider {
	def := teal.DefaultConfig().Run
	if len(run.Command) == 0 {
		run.Command = def.Command
	}
	if run.Dir == "" {
		run.Dir = def.Dir
	}
	if run.Instances <= 0 {
		run.Instances = def.Instances
	}
	if run.StopSignal == "" {
		run.StopSignal = def.StopSignal
	}
	if run.StopTimeout <= 0 {
		run.StopTimeout = def.StopTimeout
	}
	if run.Restart == "" {
		run.Restart = def.Restart
	}
	return &Provider{
		RestartBackoff:    DefaultRestartBackoff,
		MaxRestartBackoff: DefaultMaxRestartBackoff,
		PollInterval:      DefaultPollInterval,
		app:               app,
		stateDir:          stateDir,
		run:               run,
		groups:            make(map[teal.Color][]*instance),
	}
}

// Launch starts run.Instances processes of req.Color, stopping that colour's running ones
// first, and returns them as soon as they are started. When one cannot start at all, Launch
// stops the ones it did start and returns an error naming the instance, the program and the
// OS error.
func (p *Provider) Launch(ctx context.Context, req teal.LaunchRequest) ([]teal.Instance, error) {
	mu, err := p.colorLock(req.Color)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if p.isClosed() {
		return nil, ErrClosed
	}
	if err := p.stopColor(ctx, req.Color); err != nil {
		return nil, fmt.Errorf("stop %s before launch: %w", req.Color, err)
	}
	if err := os.MkdirAll(p.logDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	ports, err := freeport.Ports(p.run.Instances)
	if err != nil {
		return nil, err
	}
	var ins []*instance
	for i, port := range ports {
		if err := ctx.Err(); err != nil {
			return nil, errors.Join(fmt.Errorf("launch %s: %w", req.Color, err), p.stopInstances(ctx, ins))
		}
		in := p.newInstance(req, i, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port)
		pr, err := in.start()
		if err != nil {
			return nil, errors.Join(err, p.stopInstances(ctx, ins))
		}
		in.supervise(pr)
		ins = append(ins, in)
	}
	if err := p.register(ctx, req.Color, ins); err != nil {
		return nil, err
	}
	return snapshot(ins), nil
}

// Adopt takes over the recorded instances of req.Color: each one whose PID is alive with
// the recorded identity is supervised as it is; any other is started afresh on its recorded
// address (and counted as a restart). Processes of that colour this Provider was already
// supervising and that are not among the adopted ones are stopped. On error, every process of
// the colour that Adopt adopted or started is stopped.
func (p *Provider) Adopt(ctx context.Context, req teal.LaunchRequest, recorded []teal.Instance) ([]teal.Instance, error) {
	mu, err := p.colorLock(req.Color)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if p.isClosed() {
		return nil, ErrClosed
	}
	recs := slices.Clone(recorded)
	slices.SortFunc(recs, func(a, b teal.Instance) int { return a.Index - b.Index })
	ports := make([]int, len(recs))
	for i, rec := range recs {
		port, err := addrPort(rec.Addr)
		if err != nil {
			return nil, fmt.Errorf("%s/%d: recorded address: %w", req.Color, rec.Index, err)
		}
		ports[i] = port
	}
	if err := os.MkdirAll(p.logDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}

	// Instances this Provider already supervises for the colour (Adopt called twice): stop
	// supervising them, keep their processes, and take over those that are recorded, so
	// that a child is still waited for rather than polled.
	p.mu.Lock()
	old := p.groups[req.Color]
	delete(p.groups, req.Color)
	p.mu.Unlock()
	leftover := make(map[int]*instance)
	for _, in := range old {
		in.endSupervision()
		if pr := in.current(); pr != nil {
			leftover[pr.pid] = in
		}
	}

	var ins []*instance
	for i, rec := range recs {
		in := p.newInstance(req, rec.Index, rec.Addr, ports[i])
		in.restarts = rec.Restarts
		var pr *process
		if o := leftover[rec.PID]; o != nil && o.current().identity == rec.Identity && !o.current().gone() {
			pr = o.current()
			delete(leftover, rec.PID)
		} else if alive(rec.PID, rec.Identity) {
			started := rec.Started
			if started.IsZero() {
				started = time.Now()
			}
			pr = &process{pid: rec.PID, identity: rec.Identity, started: started}
		}
		if pr != nil {
			in.logLine("adopt %s %s pid %d", in.version, in.name(), pr.pid)
			in.log.Info("instance adopted", "pid", pr.pid)
		} else {
			if pr, err = in.start(); err != nil {
				for _, o := range leftover {
					ins = append(ins, o)
				}
				return nil, errors.Join(err, p.stopInstances(ctx, ins))
			}
			in.restarts++
			in.log.Info("instance was gone, started again", "recorded_pid", rec.PID, "pid", pr.pid)
		}
		in.supervise(pr)
		ins = append(ins, in)
	}
	var stale []*instance
	for _, o := range leftover {
		stale = append(stale, o)
	}
	if err := p.stopInstances(ctx, stale); err != nil {
		return nil, errors.Join(err, p.stopInstances(ctx, ins))
	}
	if err := p.register(ctx, req.Color, ins); err != nil {
		return nil, err
	}
	return snapshot(ins), nil
}

// Stop stops every instance of c: run.StopSignal to each process group, then SIGKILL after
// run.StopTimeout or when ctx ends, and waits until they are gone. A process whose identity no
// longer matches (its PID was reused) is never signalled. Stopping a colour with no instances
// does nothing.
func (p *Provider) Stop(ctx context.Context, c teal.Color) error {
	mu, err := p.colorLock(c)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return p.stopColor(ctx, c)
}

// Detach stops supervising, leaving every process running for a later server to adopt. It
// returns promptly; the Provider cannot launch anything afterwards.
func (p *Provider) Detach() {
	p.mu.Lock()
	groups := p.groups
	p.groups = nil
	p.closed = true
	p.mu.Unlock()
	for _, ins := range groups {
		for _, in := range ins {
			in.stopOnce.Do(func() { close(in.stop) })
		}
	}
	for _, ins := range groups {
		for _, in := range ins {
			in.endSupervision()
		}
	}
}

// Close is Detach: the processes keep running. It always returns nil.
func (p *Provider) Close() error {
	p.Detach()
	return nil
}

// Instances returns the current instances of c in index order, with their restart counts;
// an instance between a crash and its restart, or not restarted, has PID 0.
func (p *Provider) Instances(c teal.Color) []teal.Instance {
	p.mu.Lock()
	ins := p.groups[c]
	p.mu.Unlock()
	return snapshot(ins)
}

// LogFile returns the path of the log file of instance index of c. The error wraps
// fs.ErrNotExist when that instance never started.
func (p *Provider) LogFile(c teal.Color, index int) (string, error) {
	if !c.Valid() {
		return "", fmt.Errorf("log file: colour %q: want blue or green", c)
	}
	if index < 0 {
		return "", fmt.Errorf("log file of %s: instance %d: want 0 or more", c, index)
	}
	path := p.logPath(c, index)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("log file of %s/%d: %w", c, index, err)
	}
	return path, nil
}

// ParseSignal parses a stop signal name as in teal.yaml: "TERM", "SIGTERM", "int", or a number.
func ParseSignal(s string) (syscall.Signal, error) {
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	switch name {
	case "TERM":
		return syscall.SIGTERM, nil
	case "INT":
		return syscall.SIGINT, nil
	case "QUIT":
		return syscall.SIGQUIT, nil
	case "HUP":
		return syscall.SIGHUP, nil
	case "KILL":
		return syscall.SIGKILL, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	case "WINCH":
		return syscall.SIGWINCH, nil
	}
	return 0, fmt.Errorf("signal %q: want TERM, INT, QUIT, HUP, KILL, USR1, USR2, WINCH or a number", s)
}

func (p *Provider) colorLock(c teal.Color) (*sync.Mutex, error) {
	switch c {
	case teal.Blue:
		return &p.colorMu[0], nil
	case teal.Green:
		return &p.colorMu[1], nil
	}
	return nil, fmt.Errorf("colour %q: want blue or green", c)
}

func (p *Provider) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// register publishes the instances of c, or stops them when the Provider was closed
// meanwhile (nobody would supervise them).
func (p *Provider) register(ctx context.Context, c teal.Color, ins []*instance) error {
	p.mu.Lock()
	if !p.closed {
		p.groups[c] = ins
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return errors.Join(ErrClosed, p.stopInstances(ctx, ins))
}

func (p *Provider) stopColor(ctx context.Context, c teal.Color) error {
	p.mu.Lock()
	ins := p.groups[c]
	delete(p.groups, c)
	p.mu.Unlock()
	return p.stopInstances(ctx, ins)
}

// stopInstances stops the instances in parallel: each may take up to the stop timeout.
func (p *Provider) stopInstances(ctx context.Context, ins []*instance) error {
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Go(func() { errs[i] = in.stopNow(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (p *Provider) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

func (p *Provider) logDir() string { return filepath.Join(p.stateDir, "logs") }

func (p *Provider) logPath(c teal.Color, index int) string {
	return filepath.Join(p.logDir(), fmt.Sprintf("%s-%d.log", c, index))
}

// stopSignal is run.StopSignal; an unknown name (config validation should have refused it)
// falls back to TERM rather than leaving processes running.
func (p *Provider) stopSignal() syscall.Signal {
	sig, err := ParseSignal(p.run.StopSignal)
	if err != nil {
		p.logger().Warn("unknown stop signal, using TERM", "err", err)
		return syscall.SIGTERM
	}
	return sig
}

// newInstance prepares instance index of req on addr: its argv, directory and environment
// with the placeholders expanded.
func (p *Provider) newInstance(req teal.LaunchRequest, index int, addr string, port int) *instance {
	artifactDir := req.Artifact
	if fi, err := os.Stat(req.Artifact); err != nil || !fi.IsDir() {
		artifactDir = filepath.Dir(req.Artifact)
	}
	r := strings.NewReplacer(
		"{artifact_dir}", artifactDir,
		"{artifact}", req.Artifact,
		"{port}", strconv.Itoa(port),
		"{color}", string(req.Color),
		"{version}", req.Version,
		"{instance}", strconv.Itoa(index),
		"{app}", p.app,
	)
	argv := make([]string, len(p.run.Command))
	for i, a := range p.run.Command {
		argv[i] = r.Replace(a)
	}
	// Later sources win: the server's environment, run.env, the request's, then what teal
	// injects.
	env := os.Environ()
	env = procenv.SetAll(env, p.run.Env, r.Replace)
	env = procenv.SetAll(env, req.Env, nil)
	env = procenv.Set(env, "PORT", strconv.Itoa(port))
	env = procenv.Set(env, "TEAL_APP", p.app)
	env = procenv.Set(env, "TEAL_COLOR", string(req.Color))
	env = procenv.Set(env, "TEAL_VERSION", req.Version)
	env = procenv.Set(env, "TEAL_INSTANCE", strconv.Itoa(index))

	return &instance{
		p:       p,
		color:   req.Color,
		index:   index,
		addr:    addr,
		version: req.Version,
		argv:    argv,
		dir:     r.Replace(p.run.Dir),
		env:     env,
		logPath: p.logPath(req.Color, index),
		log: p.logger().With("app", p.app, "color", string(req.Color), "instance", index,
			"version", req.Version),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

func snapshot(ins []*instance) []teal.Instance {
	if len(ins) == 0 {
		return nil
	}
	out := make([]teal.Instance, len(ins))
	for i, in := range ins {
		out[i] = in.info()
	}
	return out
}

func addrPort(addr string) (int, error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("port %q of %q", ps, addr)
	}
	return port, nil
}

// startError explains why a program could not start, with a hint at the likely cause.
func startError(name, argv0 string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if pe.Op == "chdir" {
			return fmt.Errorf("%s: start %s: directory %s: %w — check run.dir", name, argv0, pe.Path, pe.Err)
		}
		err = pe.Err
	}
	hint := ""
	switch {
	case errors.Is(err, fs.ErrPermission):
		hint = " — is the artifact executable?"
	case errors.Is(err, syscall.ENOEXEC):
		hint = " — is the artifact a program for this machine?"
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, exec.ErrNotFound):
		hint = " — check run.command and the artifact"
	}
	return fmt.Errorf("%s: start %s: %w%s", name, argv0, err, hint)
}
