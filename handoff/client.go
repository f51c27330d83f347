package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrGone is Stop's answer when the running server hung up and its process is gone (it
// crashed or was stopped meanwhile): nothing holds the state any more, and the new process
// may carry on with the sockets it received.
var ErrGone = errors.New("the running server is gone")

// errStale is a socket file nobody listens on.
var errStale = fmt.Errorf("%w: stale control socket", ErrNotRunning)

// Takeover is the new process's side of a takeover: Dial, Sockets, Stop, then Taken (or
// Abort). Closing it before Taken aborts the takeover.
type Takeover struct {
	// PID is the running server's process id, App its app, from its hello.
	PID int
	App string

	c    conn
	done bool
}

// Dial connects to the control socket at path and reads the running server's hello. It
// returns ErrNotRunning when no server listens there (no socket file, or a stale one). A
// server still starting answers once it serves: Dial waits for it within ctx, at most
// DefaultTimeout.
func Dial(ctx context.Context, path string) (*Takeover, error) {
	return dial(ctx, path, DefaultTimeout)
}

func dial(ctx context.Context, path string, helloTimeout time.Duration) (*Takeover, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", path)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, ErrNotRunning
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, errStale
	case err != nil:
		return nil, fmt.Errorf("connect to control socket %s: %w", path, err)
	}
	t := &Takeover{c: conn{nc.(*net.UnixConn)}}
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	m, _, err := t.expect(ctx, msgHello)
	if err != nil {
		t.c.c.Close()
		return nil, fmt.Errorf("control socket %s: hello: %w", path, err)
	}
	if m.Proto != Proto {
		t.c.c.Close()
		return nil, fmt.Errorf("%w: the running server (pid %d) speaks version %d, this binary %d: stop it and start this one",
			ErrProtocol, m.PID, m.Proto, Proto)
	}
	t.PID, t.App = m.PID, m.App
	return t, nil
}

// expect reads the next message within ctx; descriptors are kept only for sockets.
func (t *Takeover) expect(ctx context.Context, want string) (message, []int, error) {
	defer t.bind(ctx)()
	m, fds, err := t.c.expect(want)
	if err != nil || want != msgSockets {
		closeFDs(fds)
		fds = nil
	}
	return m, fds, err
}

// bind makes the connection's I/O end with ctx, until the returned func is called.
func (t *Takeover) bind(ctx context.Context) func() {
	if dl, ok := ctx.Deadline(); ok {
		_ = t.c.c.SetDeadline(dl)
	} else {
		_ = t.c.c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = t.c.c.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// Sockets asks for the running server's sockets. The caller owns them (close what it does
// not use); the running server keeps serving with its own copies.
func (t *Takeover) Sockets(ctx context.Context) (*Sockets, error) {
	if err := t.send(ctx, message{Type: msgTakeover, PID: os.Getpid()}); err != nil {
		return nil, err
	}
	m, fds, err := t.expect(ctx, msgSockets)
	if err != nil {
		return nil, fmt.Errorf("receive sockets: %w", err)
	}
	return newSockets(m.Names, fds)
}

// Stop asks the running server to stop its controller and state, and waits until it has.
// From then on the new process must Taken or Abort: the running server serves traffic only.
func (t *Takeover) Stop(ctx context.Context) error {
	if err := t.send(ctx, message{Type: msgStop}); err != nil {
		return err
	}
	_, _, err := t.expect(ctx, msgStopped)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		if waitGone(t.PID, 5*time.Second) {
			return fmt.Errorf("%w (pid %d)", ErrGone, t.PID)
		}
		return fmt.Errorf("the running server (pid %d) hung up without stopping", t.PID)
	}
	if err != nil {
		return fmt.Errorf("stop the running server (pid %d): %w", t.PID, err)
	}
	return nil
}

// Taken tells the running server that this process serves now: it drains and exits.
func (t *Takeover) Taken() error {
	if t.done {
		return errors.New("handoff: takeover already ended")
	}
	t.done = true
	defer t.c.c.Close()
	return t.send(context.Background(), message{Type: msgTaken})
}

// Abort ends the takeover: the running server carries on (resuming when it had stopped).
func (t *Takeover) Abort(reason error) error {
	if t.done {
		return nil
	}
	t.done = true
	defer t.c.c.Close()
	msg := "no reason given"
	if reason != nil {
		msg = reason.Error()
	}
	return t.send(context.Background(), message{Type: msgAbort, Error: msg})
}

// Close hangs up; before Taken, that aborts the takeover.
func (t *Takeover) Close() error {
	t.done = true
	err := t.c.c.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (t *Takeover) send(ctx context.Context, m message) error {
	defer t.bind(ctx)()
	return t.c.send(m)
}
