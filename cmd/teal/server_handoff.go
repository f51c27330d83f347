package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"teal.dev/teal/handoff"
)

// Restarts without a refused connection (docs/restarts.md): a new `teal server` takes the
// listening sockets of the running one over the control socket data_dir/teal.sock, while the
// running one keeps routing; SIGHUP makes the running server start its own binary again for
// that. The protocol is package handoff's; this file is the server's part in it.

// envTakeoverFrom tells a server started by SIGHUP which process it takes over from.
const envTakeoverFrom = "TEAL_TAKEOVER_FROM"

// pidFileName is the file in data_dir that names the serving process, for systemd's PIDFile=:
// the new process writes it before the old one exits, so that systemd follows the takeover.
const pidFileName = "teal.pid"

// handover is a server's part in takeovers: its listeners by name, the sockets inherited from
// the server it takes over, and the drain of its connections when it hands over.
type handover struct {
	inherit *handoff.Sockets            // sockets of the server taken over; nil on a plain start
	stopOld func(context.Context) error // asks that server to stop its state; nil on a plain start
	sockets []handoff.Socket            // this server's listeners, by name, as bound
	served  []servedListener

	// draining: every answer asks the client to close its connection.
	draining atomic.Bool
	conns    atomic.Int64 // open HTTP connections, all listeners
}

type servedListener struct {
	ln  net.Listener
	srv httpServer
}

// listen returns the listener named name for addr: the one inherited from the server taken
// over when it is bound at addr, else a new one. Either way it is kept under name, to be
// passed to the next server.
func (s *server) listen(name, addr string) (net.Listener, error) {
	ln, err := s.inherit.Listener(name)
	if err != nil {
		return nil, err
	}
	if ln != nil && !handoff.SameAddr(addr, ln.Addr()) {
		s.Logger.Warn("the config moved a listener: binding the new address; the old one closes with the old server",
			"socket", name, "was", ln.Addr().String(), "now", addr)
		ln.Close()
		ln = nil
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	if sc, ok := ln.(syscall.Conn); ok {
		s.sockets = append(s.sockets, handoff.Socket{Name: name, Conn: sc})
	}
	return ln, nil
}

// stopPrevious stops the controller and state of the server taken over, once this one holds
// every listener it inherits, and before it opens the state itself. The old server's router
// serves traffic meanwhile.
func (s *server) stopPrevious(ctx context.Context) error {
	if s.stopOld == nil {
		return nil
	}
	return s.stopOld(ctx)
}

// track counts srv's connections and, once draining, asks each client to close its
// connection after the answer in flight: a connection closed by the server while idle races
// with a request the client may be sending on it, which would fail. It wraps h and returns
// the handler and the ConnState hook srv must be made with.
func (s *server) track(h http.Handler) (http.Handler, func(net.Conn, http.ConnState)) {
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() && r.Header.Get("Upgrade") == "" {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	return wrapped, func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.conns.Add(-1)
		}
	}
}

// drained reports whether Serve's err is drain closing the listener.
func (s *server) drained(err error) bool {
	return s.draining.Load() && errors.Is(err, net.ErrClosed)
}

// servedBy returns the HTTP server of the listener named name; nil when there is none.
func (s *server) servedBy(name string) httpServer {
	for _, sk := range s.sockets {
		if sk.Name != name {
			continue
		}
		for _, x := range s.served {
			if c, ok := x.ln.(syscall.Conn); ok && c == sk.Conn {
				return x.srv
			}
		}
	}
	return nil
}

// drain stops accepting (this process's copies of the listeners close; the sockets live on in
// the new process), lets every connection finish the answer in flight and close, and after
// ctx cuts those left. It returns how many were cut.
func (s *server) drain(ctx context.Context) int {
	s.draining.Store(true)
	for _, x := range s.served {
		_ = x.ln.Close()
	}
	for wait := time.Millisecond; s.conns.Load() > 0 && ctx.Err() == nil; wait = min(2*wait, 20*time.Millisecond) {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	cut := int(s.conns.Load())
	for _, x := range s.served {
		_ = x.srv.Close()
	}
	return cut
}

// forgetParts drops the parts closeParts closed, so that a later Close does not close them
// twice.
func (s *server) forgetParts() {
	s.ctl, s.stopNotify, s.monitor, s.db, s.closeDNS, s.store, s.stopRouter = nil, nil, nil, nil, nil, nil, nil
}

// runServer runs `teal server`: it takes over from the server running on the same data_dir,
// if any (unless noTakeover), else starts afresh; then it serves until SIGTERM/SIGINT (a
// graceful stop), until a new process took over (drain, then exit 0), re-executing its binary
// at each SIGHUP.
func runServer(ctx context.Context, s *server, noTakeover bool) error {
	cfg := s.Config
	log := s.Logger.With("app", cfg.App)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	parent := 0
	if v := os.Getenv(envTakeoverFrom); v != "" {
		parent, _ = strconv.Atoi(v)
		os.Unsetenv(envTakeoverFrom) // not for the instances this process starts
		noTakeover = false           // the server that started this one asked for the takeover
	}
	path := filepath.Join(cfg.DataDir, handoff.SocketName)

	var ctrl *handoff.Server
	tk, err := handoff.Dial(ctx, path)
	switch {
	case errors.Is(err, handoff.ErrNotRunning):
		ctrl, err = handoff.Listen(path)
		if errors.Is(err, handoff.ErrPathTooLong) {
			log.Warn("restarts without refused connections are off", "err", err)
		} else if err != nil {
			return alreadyRunning(cfg.App, err)
		}
	case errors.Is(err, handoff.ErrPathTooLong):
		log.Warn("restarts without refused connections are off", "err", err)
	case err != nil:
		return fmt.Errorf("take over the running server: %w", err)
	default:
		if err := checkTakeover(tk, cfg.App, path, parent, noTakeover); err != nil {
			tk.Close()
			return err
		}
		if s.inherit, err = tk.Sockets(ctx); err != nil {
			tk.Close()
			return fmt.Errorf("take over from pid %d: %w", tk.PID, err)
		}
		log.Info("taking over", "from_pid", tk.PID, "sockets", strings.Join(s.inherit.Names(), ","))
		s.stopOld = func(ctx context.Context) error {
			err := tk.Stop(ctx)
			if errors.Is(err, handoff.ErrGone) {
				log.Warn("the server taken over is gone: carrying on with its sockets", "err", err)
				return nil
			}
			return err
		}
	}
	began := time.Now()
	if err := s.Start(ctx); err != nil {
		if tk != nil {
			_ = tk.Abort(err) // the old server resumes
			_ = s.inherit.Close()
		}
		if ctrl != nil {
			_ = ctrl.Close()
		}
		return err
	}
	if tk != nil {
		ln, lerr := s.inherit.Listener(handoff.ControlName)
		if lerr == nil && ln != nil {
			ctrl, lerr = handoff.NewServer(ln, path)
		} else if lerr == nil {
			lerr = errors.New("the old server passed no control socket")
		}
		if lerr != nil {
			log.Warn("restarts without refused connections are off until the next plain start", "err", lerr)
		}
		// What is left is what this config no longer serves: it closes with the old server.
		_ = s.inherit.Close()
		s.inherit = nil
		writePIDFile(cfg.DataDir, log)
		if err := tk.Taken(); err != nil {
			log.Warn("tell the old server it was taken over", "pid", tk.PID, "err", err)
		}
		log.Info("took over", "from_pid", tk.PID, "after", time.Since(began).Round(time.Millisecond))
	} else {
		writePIDFile(cfg.DataDir, log)
	}
	return serveUntilStopped(ctx, s, ctrl, log)
}

// checkTakeover says why tk must not go on, if it must not.
func checkTakeover(tk *handoff.Takeover, app, path string, parent int, noTakeover bool) error {
	switch {
	case tk.App != app:
		return fmt.Errorf("the server on %s serves app %q, not %q: give each app its own data_dir", path, tk.App, app)
	case parent != 0 && tk.PID != parent:
		return fmt.Errorf("started by pid %d to take over from it, but pid %d serves now: not taking over", parent, tk.PID)
	case noTakeover:
		return alreadyRunning(app, fmt.Errorf("%w (pid %d)", handoff.ErrRunning, tk.PID))
	}
	return nil
}

// alreadyRunning words handoff.ErrRunning for the user.
func alreadyRunning(app string, err error) error {
	if !errors.Is(err, handoff.ErrRunning) {
		return err
	}
	return &exitError{code: exitConflict, err: fmt.Errorf("app %s: %w", app, err),
		hint: "stop it first, or start without --no-takeover to take its sockets over without refusing a connection"}
}

// serveUntilStopped serves until SIGTERM/SIGINT (ctx), or until a new process takes over.
func serveUntilStopped(ctx context.Context, s *server, ctrl *handoff.Server, log *slog.Logger) error {
	d := &donor{cur: s, stopInstances: s.StopInstances, log: log}
	type outcome struct {
		pid int
		err error
	}
	served := make(chan outcome, 1)
	if ctrl != nil {
		ctrl.Logger, ctrl.App = log, s.Config.App
		go func() {
			pid, err := ctrl.Serve(context.Background(), d)
			served <- outcome{pid, err}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	childExited := make(chan error, 1)
	var child *exec.Cmd

	handedOver := func(pid int) error {
		cur := d.current()
		dctx, cancel := context.WithTimeout(context.Background(), cur.Config.Release.DrainTimeout)
		defer cancel()
		began := time.Now()
		cut := cur.drain(dctx)
		d.closeSaved()
		log.Info("handed over: exiting", "to_pid", pid, "drained_in", time.Since(began).Round(time.Millisecond), "connections_cut", cut)
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			if ctrl != nil {
				_ = ctrl.Close() // waits for a takeover past its stop step
				select {
				case o := <-served:
					if o.err == nil {
						return handedOver(o.pid)
					}
				default:
				}
			}
			cur := d.current()
			cctx, cancel := context.WithTimeout(context.Background(), cur.Config.Release.DrainTimeout+10*time.Second)
			defer cancel()
			err := cur.Close(cctx)
			d.closeSaved()
			removePIDFile(cur.Config.DataDir)
			return err
		case o := <-served:
			if o.err == nil {
				return handedOver(o.pid)
			}
			log.Error("control socket: restarts without refused connections are off", "err", o.err)
			served, ctrl = nil, nil
		case <-hup:
			switch {
			case ctrl == nil:
				log.Warn("SIGHUP ignored: no control socket to take over from")
			case child != nil:
				log.Warn("SIGHUP ignored: the server started at the last one has not taken over yet", "pid", child.Process.Pid)
			default:
				var err error
				if child, err = reexec(childExited); err != nil {
					log.Error("SIGHUP: start the new server", "err", err)
				} else {
					log.Info("SIGHUP: started the new server to take over", "pid", child.Process.Pid, "binary", child.Path)
				}
			}
		case err := <-childExited:
			log.Error("the server started at SIGHUP exited without taking over; this one carries on", "pid", child.Process.Pid, "err", err)
			child = nil
		}
	}
}

// reexec starts this process's binary again (as it is on disk now: replace the binary, then
// SIGHUP, to upgrade) with the same arguments, to take over from this process. Its exit is
// reported on exited.
func reexec(exited chan<- error) (*exec.Cmd, error) {
	exe, err := os.Executable() // without " (deleted)" when the binary was replaced
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envTakeoverFrom+"="+strconv.Itoa(os.Getpid()))
	// The same files, not pipes: the new process outlives this one.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		exited <- err
	}()
	return cmd, nil
}

// donor is the running server's part in a takeover (handoff.Donor). After a failed takeover
// it resumes by starting a new server in this process on duplicates of the sockets: a
// Controller cannot be opened twice.
type donor struct {
	log           *slog.Logger
	stopInstances bool

	mu      sync.Mutex
	cur     *server
	stopped bool             // cur's state is closed; traffic only
	saved   *handoff.Sockets // duplicates of cur's listeners while stopped
}

var _ handoff.Donor = (*donor)(nil)

func (d *donor) current() *server {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

// Sockets returns the listeners to pass: the server's own, or while stopped (after a failed
// resume) the duplicates kept at Stop, which include the admin listener closed since.
//
// It refuses while the router holds state a new process could not have: held requests (teal
// pause --requests) and the maintenance page live in this process's router only.
func (d *donor) Sockets() ([]handoff.Socket, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.cur.router; r != nil {
		if p, ok := any(r).(interface {
			Paused() (time.Time, int, bool)
		}); ok {
			if _, _, held := p.Paused(); held {
				return nil, errors.New("requests are held in the router (teal pause --requests): resume them first (teal resume --requests)")
			}
		}
		if r.InMaintenance() {
			return nil, errors.New("the maintenance page is on, and only this process's router knows: turn it off first (teal maintenance off)")
		}
	}
	if d.stopped {
		return d.saved.List(), nil
	}
	return slices.Clone(d.cur.sockets), nil
}

// Stop stops the admin API (its requests use the controller; new admin connections wait in
// the shared socket for the new process) and every part that holds state. The routers keep
// serving with the last routing table; the instances keep running, for the new process to
// adopt.
func (d *donor) Stop(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil // still stopped since a failed resume
	}
	s := d.cur
	saved, err := handoff.Dup(s.sockets)
	if err != nil {
		return err // nothing stopped yet
	}
	d.saved, d.stopped = saved, true
	var errs []error
	if srv := s.servedBy("admin"); srv != nil {
		actx, cancel := context.WithTimeout(ctx, s.Config.Release.DrainTimeout)
		if err := srv.Shutdown(actx); err != nil {
			errs = append(errs, fmt.Errorf("stop the admin API: %w", err))
		}
		cancel()
	}
	s.StopInstances = false
	if err := s.closeParts(ctx); err != nil {
		errs = append(errs, err)
	}
	s.forgetParts()
	return errors.Join(errs...)
}

// Resume starts the parts again after a failed takeover: a new server in this process on
// duplicates of the saved sockets; the old one's connections then drain. When that fails too,
// this process keeps routing with its last table, without controller or admin API, until a
// takeover succeeds or it is stopped.
func (d *donor) Resume(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		return nil
	}
	old := d.cur
	inherit, err := handoff.Dup(d.saved.List())
	if err != nil {
		return err
	}
	s := &server{Config: old.Config, Logger: old.Logger, StopInstances: d.stopInstances}
	s.inherit = inherit
	err = s.Start(ctx)
	_ = inherit.Close()
	s.inherit = nil
	if err != nil {
		return fmt.Errorf("restart the controller; traffic is still routed with the last routing table: %w", err)
	}
	_ = d.saved.Close()
	d.cur, d.saved, d.stopped = s, nil, false
	go func() {
		dctx, cancel := context.WithTimeout(context.Background(), old.Config.Release.DrainTimeout)
		defer cancel()
		if cut := old.drain(dctx); cut > 0 {
			d.log.Warn("resumed: connections cut after the drain timeout", "cut", cut)
		}
	}()
	return nil
}

func (d *donor) closeSaved() {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.saved.Close()
	d.saved = nil
}

// writePIDFile writes this process's id to data_dir/teal.pid, atomically; best effort.
func writePIDFile(dataDir string, log *slog.Logger) {
	path := filepath.Join(dataDir, pidFileName)
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		log.Warn("write pid file", "path", path, "err", err)
	}
}

// removePIDFile removes data_dir/teal.pid when it names this process.
func removePIDFile(dataDir string) {
	path := filepath.Join(dataDir, pidFileName)
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(path)
	}
}
