package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"teal.dev/teal"
)

// instance is one supervised slot of a colour: a fixed index, address and command line, and
// the process currently running them (replaced on every restart).
type instance struct {
	p       *Provider
	color   teal.Color
	index   int
	addr    string
	version string
	argv    []string
	dir     string
	env     []string
	logPath string
	log     *slog.Logger

	stopOnce sync.Once
	stop     chan struct{} // closed to end supervision (Stop or Detach)
	done     chan struct{} // closed when the supervisor has returned

	mu       sync.Mutex
	proc     *process // nil while the instance is not running
	restarts int
}

// process is one started (or adopted) process of an instance.
type process struct {
	pid      int
	identity string
	started  time.Time
	// exited is closed once our child has been reaped; status is then its exit error. For an
	// adopted process, which is not our child, exited is nil and its end is seen by polling.
	exited chan struct{}
	status error
}

// gone reports whether the process has ended.
func (pr *process) gone() bool {
	if pr.exited != nil {
		select {
		case <-pr.exited:
			return true
		default:
			return false
		}
	}
	return !alive(pr.pid, pr.identity)
}

func (in *instance) name() string { return fmt.Sprintf("%s/%d", in.color, in.index) }

func (in *instance) current() *process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.proc
}

func (in *instance) info() teal.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	i := teal.Instance{Color: in.color, Index: in.index, Addr: in.addr, Restarts: in.restarts}
	if in.proc != nil {
		i.PID = in.proc.pid
		i.Started = in.proc.started
		i.Identity = in.proc.identity
	}
	return i
}

// logLine appends a line from teal to the instance's log file, so `teal logs` tells the
// whole story; failing to write it must not stop anything.
func (in *instance) logLine(format string, args ...any) {
	f, err := os.OpenFile(in.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		in.log.Warn("write instance log", "err", err)
		return
	}
	fmt.Fprintf(f, "teal: "+format+"\n", args...)
	if err := f.Close(); err != nil {
		in.log.Warn("write instance log", "err", err)
	}
}

// start starts a process for the instance, in its own session, with its output appended to
// the instance's log file (the child holds the file itself, so it keeps logging after the
// server is gone).
func (in *instance) start() (*process, error) {
	f, err := os.OpenFile(in.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", in.name(), err)
	}
	defer f.Close()
	if err := checkDir(in.dir); err != nil {
		err = startError(in.name(), in.argv[0], err)
		fmt.Fprintf(f, "teal: %v\n", err)
		return nil, err
	}
	cmd := exec.Command(in.argv[0], in.argv[1:]...)
	cmd.Dir = in.dir
	cmd.Env = in.env
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		err = startError(in.name(), in.argv[0], err)
		fmt.Fprintf(f, "teal: %v\n", err)
		return nil, err
	}
	pid := cmd.Process.Pid
	// The child is not reaped before cmd.Wait, so its /proc entry is there to read.
	id, err := identity(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s: identity of pid %d: %w", in.name(), pid, err)
	}
	pr := &process{pid: pid, identity: id, started: time.Now(), exited: make(chan struct{})}
	go func() {
		pr.status = cmd.Wait()
		close(pr.exited)
	}()
	fmt.Fprintf(f, "teal: start %s %s pid %d on %s at %s\n", in.version, in.name(), pid, in.addr,
		pr.started.UTC().Format(time.RFC3339))
	in.log.Info("instance started", "pid", pid, "addr", in.addr)
	return pr, nil
}

// supervise makes pr the instance's process and starts its supervisor.
func (in *instance) supervise(pr *process) {
	in.mu.Lock()
	in.proc = pr
	in.mu.Unlock()
	go in.run()
}

// run is the supervisor: it waits for the process to end and restarts it, with backoff,
// until supervision ends.
func (in *instance) run() {
	defer close(in.done)
	p := in.p
	backoff := max(p.RestartBackoff, time.Millisecond)
	maxBackoff := max(p.MaxRestartBackoff, backoff)
	for {
		pr := in.current()
		if !in.waitExit(pr) {
			return
		}
		uptime := time.Since(pr.started)
		in.mu.Lock()
		in.proc = nil
		in.mu.Unlock()
		restart := p.run.Restart != "never"
		switch {
		case pr.exited == nil:
			in.logLine("exit %s %s pid %d: gone after %s", in.version, in.name(), pr.pid, uptime.Round(time.Millisecond))
			in.log.Warn("instance exited", "pid", pr.pid, "uptime", uptime)
		case pr.status == nil:
			// restart: on-failure, as in systemd and Docker, leaves a clean exit alone.
			restart = false
			in.logLine("exit %s %s pid %d: exit status 0 after %s", in.version, in.name(), pr.pid, uptime.Round(time.Millisecond))
			in.log.Info("instance exited cleanly", "pid", pr.pid, "uptime", uptime)
		default:
			in.logLine("exit %s %s pid %d: %v after %s", in.version, in.name(), pr.pid, pr.status, uptime.Round(time.Millisecond))
			in.log.Warn("instance exited", "pid", pr.pid, "uptime", uptime, "err", pr.status)
		}
		if !restart {
			return
		}
		if uptime >= backoffReset {
			backoff = max(p.RestartBackoff, time.Millisecond)
		}
		for {
			t := time.NewTimer(backoff)
			select {
			case <-in.stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, maxBackoff)
			next, err := in.start()
			if err != nil {
				in.log.Error("restart instance", "err", err, "retry_in", backoff)
				continue
			}
			in.mu.Lock()
			in.proc = next
			in.restarts++
			in.mu.Unlock()
			break
		}
	}
}

// waitExit waits until pr ends (true) or supervision ends (false).
func (in *instance) waitExit(pr *process) bool {
	if pr.exited != nil {
		select {
		case <-pr.exited:
			return true
		case <-in.stop:
			return false
		}
	}
	interval := in.p.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if pr.gone() {
				return true
			}
		case <-in.stop:
			return false
		}
	}
}

// endSupervision stops the supervisor and waits until it has returned, so it can neither
// restart nor replace the process any more.
func (in *instance) endSupervision() {
	in.stopOnce.Do(func() { close(in.stop) })
	<-in.done
}

// stopNow ends supervision and stops the process, if any.
func (in *instance) stopNow(ctx context.Context) error {
	in.endSupervision()
	in.mu.Lock()
	pr := in.proc
	in.proc = nil
	in.mu.Unlock()
	if pr == nil {
		return nil
	}
	return in.terminate(ctx, pr)
}

// terminate sends the stop signal to pr's process group, then SIGKILL after the stop timeout
// (or when ctx ends), and waits until pr is gone. Before each signal it checks the process is
// still the one started (same start time): a PID can be reused by a stranger.
func (in *instance) terminate(ctx context.Context, pr *process) error {
	if pr.gone() {
		return nil
	}
	if !alive(pr.pid, pr.identity) {
		// Our child has exited but is not reaped yet, or the PID now belongs to someone
		// else: nothing to signal.
		in.waitGone(context.Background(), pr, killWait)
		return nil
	}
	sig := in.p.stopSignal()
	in.logLine("stop %s %s pid %d with %s", in.version, in.name(), pr.pid, sigName(sig))
	if err := signalGroup(pr.pid, sig); err != nil {
		return fmt.Errorf("stop %s pid %d: %w", in.name(), pr.pid, err)
	}
	if in.waitGone(ctx, pr, in.p.run.StopTimeout) {
		in.log.Info("instance stopped", "pid", pr.pid)
		return nil
	}
	if alive(pr.pid, pr.identity) {
		in.logLine("kill %s %s pid %d: still running after %s", in.version, in.name(), pr.pid, in.p.run.StopTimeout)
		in.log.Warn("instance ignored the stop signal, killing it", "pid", pr.pid)
		if err := signalGroup(pr.pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %s pid %d: %w", in.name(), pr.pid, err)
		}
	}
	if !in.waitGone(context.Background(), pr, killWait) {
		return fmt.Errorf("stop %s pid %d: still running %s after SIGKILL", in.name(), pr.pid, killWait)
	}
	return nil
}

// waitGone waits up to d (or until ctx ends) for pr to end, and reports whether it did.
func (in *instance) waitGone(ctx context.Context, pr *process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	if pr.exited != nil {
		select {
		case <-pr.exited:
			return true
		case <-t.C:
		case <-ctx.Done():
		}
		return pr.gone()
	}
	tick := time.NewTicker(stopPoll)
	defer tick.Stop()
	for !pr.gone() {
		select {
		case <-tick.C:
		case <-t.C:
			return pr.gone()
		case <-ctx.Done():
			return pr.gone()
		}
	}
	return true
}

// signalGroup signals the process group led by pid; teal starts every instance as a session
// (and so group) leader, which lets the signal reach the children it forked too. A process
// that left its group is signalled alone.
func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if err == syscall.ESRCH {
		err = syscall.Kill(pid, sig)
	}
	if err == syscall.ESRCH {
		return nil // already gone
	}
	return err
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGKILL:
		return "SIGKILL"
	}
	return "signal " + strconv.Itoa(int(sig))
}

// checkDir returns a "chdir" *fs.PathError unless dir is a directory. os.StartProcess
// checks it only for commands without SysProcAttr; without this a bad run.dir would be
// reported as a missing program.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &fs.PathError{Op: "chdir", Path: dir, Err: err}
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "chdir", Path: dir, Err: syscall.ENOTDIR}
	}
	return nil
}
