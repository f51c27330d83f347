package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Donor is the running server's side of a takeover: what Server calls at each step. The calls
// of one takeover come from one goroutine, in order.
type Donor interface {
	// Sockets returns the sockets to pass, by name (the control socket is added by Server).
	// They stay the donor's: Server passes duplicates.
	Sockets() ([]Socket, error)
	// Stop stops everything that holds state (controller, store, admin API) and leaves the
	// traffic listeners serving with the last routing table. Server answers "stopped" once
	// it returns; when it fails, Server calls Resume and tells the new process why.
	Stop(ctx context.Context) error
	// Resume undoes Stop: the takeover failed after it (the new process gave up, died, or
	// did not take over within Timeout and was killed).
	Resume(ctx context.Context) error
}

// Server serves takeovers on a control socket, one at a time.
type Server struct {
	// Logger receives each takeover's steps; nil discards them.
	Logger *slog.Logger
	// App is the app's name, told to the new process. = "" (none).
	App string
	// Timeout bounds a whole takeover. = DefaultTimeout. A new process that stopped the
	// donor and has not taken over by then is killed (SIGKILL), and the donor resumes once it
	// is gone.
	Timeout time.Duration

	path string
	ln   *net.UnixListener
	ino  [2]uint64 // device and inode of the socket file, to remove only our own

	mu      sync.Mutex
	closed  bool
	handed  bool
	serving chan struct{} // closed when Serve returns; nil when Serve is not running
	cur     *net.UnixConn // the conversation in progress
	stopped bool          // cur's donor is stopped: Close waits for the outcome
}

// Listen creates the control socket at path (mode 0600) and returns a Server for it. A live
// server already there is ErrRunning (its pid in the message); a stale socket file, which a
// crashed server leaves, is removed. The check and the bind happen under a lock on path's
// directory, so that two servers starting at once do not both take the path.
func Listen(path string) (*Server, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	unlock, err := lockDir(path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := dial(context.Background(), path, 5*time.Second)
	switch {
	case err == nil:
		pid := t.PID
		_ = t.Close()
		return nil, fmt.Errorf("%w (pid %d)", ErrRunning, pid)
	case errors.Is(err, errStale):
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale control socket %s: %w", path, err)
		}
	case !errors.Is(err, ErrNotRunning):
		return nil, err
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	// The file outlives this process's copy when the socket is handed over: Close removes it
	// only when it is still ours and not handed over.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return newServer(ln, path)
}

// NewServer returns a Server for a control socket inherited from the server taken over (the
// listener passed as ControlName), at path.
func NewServer(ln net.Listener, path string) (*Server, error) {
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		return nil, fmt.Errorf("control socket: %T is not a Unix socket listener", ln)
	}
	ul.SetUnlinkOnClose(false)
	return newServer(ul, path)
}

func newServer(ln *net.UnixListener, path string) (*Server, error) {
	s := &Server{Timeout: DefaultTimeout, path: path, ln: ln}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s.ino = [2]uint64{st.Dev, st.Ino}
	return s, nil
}

// lockDir takes an exclusive lock on path's directory until the returned func is called.
func lockDir(path string) (func(), error) {
	dir := filepath.Dir(path)
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { _ = syscall.Close(fd) }, nil
}

// Path is the control socket's path.
func (s *Server) Path() string { return s.path }

// Serve accepts takeovers until one completes, when it returns the new process's pid, or
// until Close (ErrServerClosed). A takeover that fails leaves the donor running (resumed when
// it had stopped) and Serve accepts the next one.
func (s *Server) Serve(ctx context.Context, d Donor) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, ErrServerClosed
	}
	if s.serving != nil {
		s.mu.Unlock()
		return 0, errors.New("handoff: Serve called twice")
	}
	serving := make(chan struct{})
	s.serving = serving
	s.mu.Unlock()
	defer close(serving)
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return 0, ErrServerClosed
			}
			return 0, fmt.Errorf("accept on control socket %s: %w", s.path, err)
		}
		pid, handed := s.handle(ctx, c, d)
		if handed {
			s.mu.Lock()
			s.handed = true
			s.mu.Unlock()
			// This process's copy only: the new one serves the socket now.
			_ = s.ln.Close()
			return pid, nil
		}
	}
}

// Close stops accepting takeovers and removes the socket file, unless a takeover handed it to
// a new process. A takeover in progress is ended when the donor has not stopped yet, and
// waited for (within Timeout) when it has: only the new process's outcome says whether the
// donor resumes.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	serving := s.serving
	if s.cur != nil && !s.stopped {
		_ = s.cur.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed after a handover
	}
	if serving != nil {
		<-serving
	}
	s.mu.Lock()
	handed := s.handed
	s.mu.Unlock()
	if !handed {
		var st syscall.Stat_t
		if syscall.Stat(s.path, &st) == nil && [2]uint64{st.Dev, st.Ino} == s.ino {
			if rerr := os.Remove(s.path); rerr != nil && err == nil {
				err = fmt.Errorf("remove control socket: %w", rerr)
			}
		}
	}
	return err
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) timeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

// handle runs one conversation and reports whether the new process took over.
func (s *Server) handle(ctx context.Context, uc *net.UnixConn, d Donor) (pid int, handed bool) {
	c := conn{uc}
	defer uc.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, false
	}
	s.cur, s.stopped = uc, false
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cur, s.stopped = nil, false
		s.mu.Unlock()
	}()
	log := s.log().With("component", "handoff")
	cred, err := peerCred(uc)
	if err != nil {
		log.Warn("control connection", "err", err)
		return 0, false
	}
	if int(cred.Uid) != os.Geteuid() && cred.Uid != 0 {
		_ = c.send(message{Type: msgError, Error: fmt.Sprintf("uid %d may not take over a server of uid %d", cred.Uid, os.Geteuid())})
		log.Warn("takeover refused", "pid", cred.Pid, "uid", cred.Uid)
		return 0, false
	}
	pid = int(cred.Pid)
	deadline := time.Now().Add(s.timeout())
	_ = uc.SetDeadline(deadline)

	if err := c.send(message{Type: msgHello, PID: os.Getpid(), App: s.App, Proto: Proto}); err != nil {
		return 0, false
	}
	m, fds, err := c.expect(msgTakeover)
	closeFDs(fds)
	if err != nil {
		if !errors.Is(err, io.EOF) { // EOF: it only asked who runs
			log.Warn("takeover request", "pid", pid, "err", err)
			_ = c.send(message{Type: msgError, Error: err.Error()})
		}
		return 0, false
	}
	if m.PID != pid {
		log.Info("takeover requested", "pid", pid, "says_pid", m.PID)
	} else {
		log.Info("takeover requested", "pid", pid)
	}
	start := time.Now()

	socks, err := d.Sockets()
	if err == nil {
		socks = append(socks, Socket{Name: ControlName, Conn: s.ln})
		err = s.sendSockets(c, socks)
	}
	if err != nil {
		log.Error("pass sockets", "pid", pid, "err", err)
		_ = c.send(message{Type: msgError, Error: "pass sockets: " + err.Error()})
		return 0, false
	}

	if _, fds, err := c.expect(msgStop); err != nil {
		closeFDs(fds)
		log.Warn("takeover abandoned before stopping anything", "pid", pid, "err", err)
		return 0, false
	}
	s.mu.Lock()
	if s.closed { // Close came meanwhile: it ended this conversation
		s.mu.Unlock()
		return 0, false
	}
	s.stopped = true
	s.mu.Unlock()
	if err := d.Stop(ctx); err != nil {
		log.Error("stop for the takeover", "pid", pid, "err", err)
		s.resume(ctx, d, log)
		_ = c.send(message{Type: msgError, Error: "the running server could not stop: " + err.Error()})
		return 0, false
	}
	if err := c.send(message{Type: msgStopped}); err != nil {
		log.Error("takeover", "pid", pid, "err", err)
		s.resume(ctx, d, log)
		return 0, false
	}
	log.Info("stopped for the takeover", "pid", pid, "after", time.Since(start).Round(time.Millisecond))

	_, fds, err = c.expect(msgTaken)
	closeFDs(fds)
	if err == nil {
		log.Info("taken over", "pid", pid, "after", time.Since(start).Round(time.Millisecond))
		return pid, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// Two controllers must never run at once: the new process is ended before this one
		// resumes.
		log.Error("the new process did not take over in time: killing it", "pid", pid, "timeout", s.timeout())
		if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && !errors.Is(kerr, syscall.ESRCH) {
			log.Error("kill the new process: not resuming", "pid", pid, "err", kerr)
			return 0, false
		}
		if !waitGone(pid, 10*time.Second) {
			log.Error("the new process is still there: not resuming", "pid", pid)
			return 0, false
		}
	} else {
		log.Warn("takeover failed: resuming", "pid", pid, "err", err)
	}
	s.resume(ctx, d, log)
	return 0, false
}

func (s *Server) resume(ctx context.Context, d Donor, log *slog.Logger) {
	if err := d.Resume(ctx); err != nil {
		log.Error("resume after a failed takeover", "err", err)
		return
	}
	log.Info("resumed after a failed takeover")
}

// sendSockets sends the sockets message with each socket's descriptor.
func (s *Server) sendSockets(c conn, socks []Socket) error {
	if len(socks) > MaxSockets {
		return fmt.Errorf("%d sockets: at most %d", len(socks), MaxSockets)
	}
	names := make([]string, 0, len(socks))
	// Duplicates, so that a socket closed meanwhile cannot turn its number into another file.
	fds := make([]int, 0, len(socks))
	defer func() { closeFDs(fds) }()
	for _, sk := range socks {
		if err := checkName(sk.Name); err != nil {
			return err
		}
		fd, err := dupCloseOnExec(sk.Conn)
		if err != nil {
			return fmt.Errorf("socket %s: %w", sk.Name, err)
		}
		names, fds = append(names, sk.Name), append(fds, fd)
	}
	return c.send(message{Type: msgSockets, Names: names}, fds...)
}

func peerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	return cred, nil
}
