// Package hook creates a colour's instances on any infrastructure through two commands of
// the user's: teal's Provider for `provider: exec`.
//
// run.launch creates a colour's environment for a version (with Terraform, CloudFormation,
// Ansible, a cloud CLI, …) and prints the instances' addresses on stdout as JSON:
//
//	[{"addr": "10.0.0.5:8080", "id": "i-0abc"}, {"addr": "10.0.0.6:8080"}]
//
// run.terminate removes that environment again. teal health-checks the addresses, routes to
// them and does everything else as it does for local processes. The instances live in the
// infrastructure, not under teal: there is nothing to supervise, restart or detach from.
package hook

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"teal.dev/teal"
)

// Defaults of the Provider's exported fields.
const (
	// DefaultTimeout bounds one run of a hook: creating or removing infrastructure is slow.
	DefaultTimeout = 30 * time.Minute
	// DefaultKillGrace is how long a hook that timed out or was interrupted has, after
	// SIGTERM to its process group, before SIGKILL: long enough for Terraform to release its
	// state lock.
	DefaultKillGrace = 10 * time.Second
)

var _ teal.Provider = (*Provider)(nil)

// Provider runs the launch and terminate hooks of both colours. It is safe for concurrent
// use; operations on one colour are serialised, and never wait for the other colour's.
type Provider struct {
	// Logger receives a line when each hook starts and ends; nil discards them.
	Logger *slog.Logger
	// Timeout bounds each run of a hook; then its process group gets SIGTERM, and SIGKILL
	// after KillGrace. Default DefaultTimeout.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL for a hook that timed out or whose
	// context ended. Default DefaultKillGrace.
	KillGrace time.Duration

	app    string
	run    teal.RunConfig
	dir    string
	logDir string

	// colorMu serialises Launch, Adopt and Stop of one colour (index 0 blue, 1 green).
	colorMu [2]sync.Mutex

	mu     sync.Mutex
	colors map[teal.Color]*colorState
}

// colorState is what the Provider knows of a colour that may have infrastructure: the
// request it was launched (or adopted) with, which terminate needs for its placeholders.
type colorState struct {
	req teal.LaunchRequest
	// instances is what launch printed, or what was adopted; nil when a launch failed or
	// was interrupted, so that what it created is unknown.
	instances []teal.Instance
}

// NewProvider returns a Provider for app that runs run.Launch and run.Terminate in dir (the
// directory of the config file: relative hook paths are relative to it) and appends their
// output to logDir/hook-<color>.log. run.Instances <= 0 means teal's default.
func NewProvider(app string, run teal.RunConfig, dir, logDir string) *Provider {
	if run.Instances <= 0 {
		run.Instances = teal.DefaultConfig().Run.Instances
	}
	return &Provider{
		Timeout:   DefaultTimeout,
		KillGrace: DefaultKillGrace,
		app:       app,
		run:       run,
		dir:       dir,
		logDir:    logDir,
		colors:    make(map[teal.Color]*colorState),
	}
}

// Launch runs the launch hook for req and returns the instances it printed, in the order
// printed (Index 0, 1, …; Identity is the optional "id"). When the colour may still have
// infrastructure from an earlier launch or adoption, the terminate hook runs first, and its
// failure fails the launch.
//
// The launch hook must exit 0 and print on stdout only a JSON array of at least one object
// with a distinct "addr" (host:port). Otherwise the error says what was wrong, with the exit
// status and the last lines of its stderr. A failed launch may have created something, so the
// colour stays recorded: Stop (which the controller calls when it tears the failed release
// down) and the next Launch run terminate for it.
func (p *Provider) Launch(ctx context.Context, req teal.LaunchRequest) ([]teal.Instance, error) {
	mu, err := p.colorLock(req.Color)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if old := p.state(req.Color); old != nil {
		if _, err := p.runHook(ctx, hookTerminate, old.req); err != nil {
			return nil, fmt.Errorf("terminate %s (%s) before launch: %w", req.Color, old.req.Version, err)
		}
		p.setState(req.Color, nil)
	}
	p.setState(req.Color, &colorState{req: req})
	out, err := p.runHook(ctx, hookLaunch, req)
	if err != nil {
		return nil, err
	}
	entries, err := parseInstances(out)
	if err != nil {
		return nil, fmt.Errorf("launch %s %s: %s exited 0 but %w", req.Color, req.Version,
			p.run.Launch[0], err)
	}
	now := time.Now().UTC()
	insts := make([]teal.Instance, len(entries))
	for i, e := range entries {
		insts[i] = teal.Instance{Color: req.Color, Index: i, Addr: e.Addr, Started: now, Identity: e.ID}
	}
	if len(insts) != p.run.Instances {
		p.logger().Info("launch printed another number of instances than run.instances",
			"app", p.app, "color", string(req.Color), "version", req.Version,
			"instances", len(insts), "run.instances", p.run.Instances)
	}
	p.setState(req.Color, &colorState{req: req, instances: slices.Clone(insts)})
	return insts, nil
}

// Adopt returns the recorded instances as they are: they live in the infrastructure, not
// under this process, and the health checks tell whether they are still there. It remembers
// req, so that Stop can run terminate for the colour after a restart of the server.
func (p *Provider) Adopt(ctx context.Context, req teal.LaunchRequest, recorded []teal.Instance) ([]teal.Instance, error) {
	mu, err := p.colorLock(req.Color)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	insts := slices.Clone(recorded)
	slices.SortFunc(insts, func(a, b teal.Instance) int { return a.Index - b.Index })
	p.setState(req.Color, &colorState{req: req, instances: slices.Clone(insts)})
	return insts, nil
}

// Stop runs the terminate hook for c with the version c was launched or adopted with, and
// then forgets c. When terminate fails, c stays recorded and the error is returned: a retry
// runs terminate again, which is why terminate must be idempotent (removing what is already
// gone succeeds). A colour this Provider never launched nor adopted has nothing to stop.
func (p *Provider) Stop(ctx context.Context, c teal.Color) error {
	mu, err := p.colorLock(c)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	st := p.state(c)
	if st == nil {
		return nil
	}
	if _, err := p.runHook(ctx, hookTerminate, st.req); err != nil {
		return err
	}
	p.setState(c, nil)
	return nil
}

// Detach does nothing: the instances never depended on this process.
func (p *Provider) Detach() {}

// Instances returns the instances of c as launched or adopted, in index order; nil when c has
// none known (never launched, stopped, or its last launch failed).
func (p *Provider) Instances(c teal.Color) []teal.Instance {
	st := p.state(c)
	if st == nil {
		return nil
	}
	return slices.Clone(st.instances)
}

// LogFile returns the log of c's hooks, logDir/hook-<color>.log, for every index: the
// instances' own logs live in the infrastructure, and the hooks' output is the closest teal
// has. The error wraps fs.ErrNotExist when no hook of c has run yet.
func (p *Provider) LogFile(c teal.Color, index int) (string, error) {
	if !c.Valid() {
		return "", fmt.Errorf("log file: colour %q: want blue or green", c)
	}
	if index < 0 {
		return "", fmt.Errorf("log file of %s: instance %d: want 0 or more", c, index)
	}
	path := p.logPath(c)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("log file of %s: %w", c, err)
	}
	return path, nil
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

func (p *Provider) state(c teal.Color) *colorState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.colors[c]
}

// setState records st for c; nil forgets c.
func (p *Provider) setState(c teal.Color, st *colorState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st == nil {
		delete(p.colors, c)
		return
	}
	p.colors[c] = st
}

func (p *Provider) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

func (p *Provider) logPath(c teal.Color) string {
	return filepath.Join(p.logDir, "hook-"+string(c)+".log")
}
