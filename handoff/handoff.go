// Package handoff passes a running teal server's listening sockets to a new server process, so
// that a restart or an upgrade refuses no connection: for a moment both processes accept from
// the same sockets, then the old one drains its connections and exits.
//
// The running server listens on a control socket (a Unix socket, data_dir/teal.sock, mode
// 0600). A new process connects and they talk, one JSON message per packet (SOCK_SEQPACKET):
//
//	old → new  hello     {pid, app, proto}
//	new → old  takeover  {pid}            (or it hangs up: it only wanted to know who runs)
//	old → new  sockets   {names}          + one descriptor per name (SCM_RIGHTS), in order
//	new → old  stop                       (or abort: nothing has changed in the old process)
//	old → new  stopped                    its controller and store are closed; its router
//	                                      still serves with its last routing table
//	new → old  taken                      the new process serves: the old one drains and exits
//	           abort, or hangs up         the old one resumes (Donor.Resume)
//
// Either side may answer error {error} instead, which ends the takeover. The old process
// handles one takeover at a time; a second one waits in the control socket's backlog. The
// control socket itself is among the sockets passed ("control"), so that the new process
// serves the next takeover on the same path without a moment when none listens.
package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"syscall"
	"time"
)

// SocketName is the control socket's file name in a server's data_dir.
const SocketName = "teal.sock"

// ControlName is the name under which the control socket itself is passed.
const ControlName = "control"

// Proto is the version of the protocol this package speaks; both sides must speak the same.
const Proto = 1

// DefaultTimeout bounds a whole takeover: from the old process's hello until the new one
// says taken (or gives up). A new process that has not taken over by then is killed and the
// old one resumes, so that two controllers never run at once.
const DefaultTimeout = 2 * time.Minute

// MaxSockets is the most sockets one takeover passes.
const MaxSockets = 32

// maxPath is the longest path a Unix socket address holds (sun_path less its NUL).
const maxPath = 107

// maxMessage is the largest message read; messages are a few hundred bytes.
const maxMessage = 16 << 10

var (
	// ErrNotRunning is Dial's answer when no server listens on the control socket: there
	// is no socket file, or a stale one a crashed server left.
	ErrNotRunning = errors.New("no teal server is running")
	// ErrRunning is Listen's answer when a live server already listens on the path.
	ErrRunning = errors.New("a teal server is already running")
	// ErrPathTooLong says the control socket's path does not fit in a Unix socket address.
	ErrPathTooLong = errors.New("control socket path too long")
	// ErrServerClosed is Serve's answer after Close.
	ErrServerClosed = errors.New("handoff: server closed")
	// ErrProtocol marks a message that does not follow the protocol.
	ErrProtocol = errors.New("handoff protocol")
)

// Message types.
const (
	msgHello    = "hello"
	msgTakeover = "takeover"
	msgSockets  = "sockets"
	msgStop     = "stop"
	msgStopped  = "stopped"
	msgTaken    = "taken"
	msgAbort    = "abort"
	msgError    = "error"
)

// message is one packet of the protocol.
type message struct {
	Type  string   `json:"type"`
	PID   int      `json:"pid,omitempty"`
	App   string   `json:"app,omitempty"`
	Proto int      `json:"proto,omitempty"`
	Names []string `json:"names,omitempty"`
	Error string   `json:"error,omitempty"`
}

// validName is a socket name: lower-case words joined by dashes, as "endpoint-blue".
var validName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// checkName says what is wrong with a socket name, if anything.
func checkName(name string) error {
	if len(name) > 64 || !validName.MatchString(name) {
		return fmt.Errorf("socket name %q: want lower-case letters, digits and dashes, at most 64", name)
	}
	return nil
}

// decode parses and validates one message.
func decode(b []byte) (message, error) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return message{}, fmt.Errorf("%w: message %.60q: %v", ErrProtocol, b, err)
	}
	switch m.Type {
	case msgHello:
		if m.PID <= 0 || m.Proto <= 0 {
			return message{}, fmt.Errorf("%w: hello with pid %d, proto %d: want both > 0", ErrProtocol, m.PID, m.Proto)
		}
	case msgTakeover:
		if m.PID <= 0 {
			return message{}, fmt.Errorf("%w: takeover with pid %d: want > 0", ErrProtocol, m.PID)
		}
	case msgSockets:
		if len(m.Names) > MaxSockets {
			return message{}, fmt.Errorf("%w: %d sockets: at most %d", ErrProtocol, len(m.Names), MaxSockets)
		}
		seen := make(map[string]bool, len(m.Names))
		for _, n := range m.Names {
			if err := checkName(n); err != nil {
				return message{}, fmt.Errorf("%w: %v", ErrProtocol, err)
			}
			if seen[n] {
				return message{}, fmt.Errorf("%w: socket %q passed twice", ErrProtocol, n)
			}
			seen[n] = true
		}
	case msgStop, msgStopped, msgTaken, msgAbort, msgError:
	default:
		return message{}, fmt.Errorf("%w: unknown message type %q (want one of hello, takeover, sockets, stop, stopped, taken, abort, error)", ErrProtocol, m.Type)
	}
	return m, nil
}

// conn is one side of a control connection.
type conn struct{ c *net.UnixConn }

// send writes m, with fds attached.
func (c conn) send(m message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send %s: %w", m.Type, err)
	}
	return nil
}

// recv reads one message and the descriptors that came with it. The caller owns the
// descriptors, also when recv returns an error with some.
func (c conn) recv() (message, []int, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, syscall.CmsgSpace(MaxSockets*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return message{}, nil, err
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return message{}, nil, fmt.Errorf("%w: control message: %v", ErrProtocol, err)
		}
		for _, cm := range cmsgs {
			got, err := syscall.ParseUnixRights(&cm)
			if err != nil {
				closeFDs(fds)
				return message{}, nil, fmt.Errorf("%w: control message: %v", ErrProtocol, err)
			}
			fds = append(fds, got...)
		}
	}
	if n == 0 && oobn == 0 {
		return message{}, nil, io.EOF // a SEQPACKET peer that hung up
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		return message{}, fds, fmt.Errorf("%w: message truncated (over %d bytes or %d descriptors)", ErrProtocol, maxMessage, MaxSockets)
	}
	m, err := decode(buf[:n])
	return m, fds, err
}

// expect reads the next message and checks that its type is want. An error or abort
// message becomes an error carrying the peer's text.
func (c conn) expect(want string) (message, []int, error) {
	m, fds, err := c.recv()
	if err != nil {
		return m, fds, err
	}
	switch {
	case m.Type == want:
		return m, fds, nil
	case m.Type == msgError || m.Type == msgAbort:
		closeFDs(fds)
		if m.Error == "" {
			m.Error = "no reason given"
		}
		return m, nil, &PeerError{Type: m.Type, Msg: m.Error}
	}
	closeFDs(fds)
	return m, nil, fmt.Errorf("%w: got %s, want %s", ErrProtocol, m.Type, want)
}

// PeerError is the other side's error or abort message.
type PeerError struct {
	Type string // "error" or "abort"
	Msg  string
}

func (e *PeerError) Error() string {
	if e.Type == msgAbort {
		return "aborted by the other side: " + e.Msg
	}
	return e.Msg
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = syscall.Close(fd)
	}
}

// checkPath says whether path fits in a Unix socket address.
func checkPath(path string) error {
	if len(path) > maxPath {
		return fmt.Errorf("%w: %s is %d bytes, over the %d a Unix socket address holds: use a shorter data_dir",
			ErrPathTooLong, path, len(path), maxPath)
	}
	return nil
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command, which is in parentheses and may contain any byte.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 >= len(b) || b[i+2] != 'Z'
		}
	}
	return true
}

// waitGone waits until pid is gone or timeout passed, and reports whether it is gone.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; alive(pid); wait = min(2*wait, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
	return true
}
