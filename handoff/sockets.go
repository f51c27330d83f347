package handoff

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
)

// Socket is one socket to pass, by name: a *net.TCPListener, *net.UDPConn, *net.UnixListener,
// an *os.File holding a socket, or anything else with a descriptor.
type Socket struct {
	Name string       // lower-case letters, digits and dashes: "live", "endpoint-blue"
	Conn syscall.Conn // passed as a duplicate: the caller keeps its own
}

// Sockets is a set of sockets by name: those received from the server taken over, or
// duplicates of a server's own (Dup). Taking one out moves it to the caller; Close closes the
// ones left.
type Sockets struct {
	mu    sync.Mutex
	names []string // those not taken yet, in the order passed
	files map[string]*os.File
}

// newSockets wraps received descriptors; on error it closes them all.
func newSockets(names []string, fds []int) (*Sockets, error) {
	if len(names) != len(fds) {
		closeFDs(fds)
		return nil, fmt.Errorf("%w: %d socket names but %d descriptors", ErrProtocol, len(names), len(fds))
	}
	s := &Sockets{names: slices.Clone(names), files: make(map[string]*os.File, len(names))}
	for i, n := range names {
		// os.NewFile keeps a non-blocking descriptor non-blocking, also through Fd (which
		// net.FileListener calls): the descriptor's flags are shared with the process that
		// passed it, whose own accept loop must stay non-blocking.
		s.files[n] = os.NewFile(uintptr(fds[i]), n)
	}
	return s, nil
}

// Dup returns duplicates of socks, which stay open when the originals are closed.
func Dup(socks []Socket) (*Sockets, error) {
	names := make([]string, 0, len(socks))
	fds := make([]int, 0, len(socks))
	for _, sk := range socks {
		fd, err := dupCloseOnExec(sk.Conn)
		if err != nil {
			closeFDs(fds)
			return nil, fmt.Errorf("duplicate socket %s: %w", sk.Name, err)
		}
		names, fds = append(names, sk.Name), append(fds, fd)
	}
	return newSockets(names, fds)
}

// dupCloseOnExec duplicates c's descriptor with close-on-exec set, without touching the
// descriptor's blocking mode.
func dupCloseOnExec(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			derr = errno
			return
		}
		nfd = int(r)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return nfd, nil
}

// Names returns the names of the sockets not taken yet, in the order they were passed.
func (s *Sockets) Names() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.names)
}

// List returns the sockets not taken yet, still owned by s: to pass them on.
func (s *Sockets) List() []Socket {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Socket, 0, len(s.names))
	for _, n := range s.names {
		out = append(out, Socket{Name: n, Conn: s.files[n]})
	}
	return out
}

// take removes name from the set and returns its file; nil when there is none.
func (s *Sockets) take(name string) *os.File {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[name]
	if f == nil {
		return nil
	}
	delete(s.files, name)
	s.names = slices.DeleteFunc(s.names, func(n string) bool { return n == name })
	return f
}

// Listener takes the socket name out of the set as a listener. It returns nil, nil when
// there is no socket of that name.
func (s *Sockets) Listener(name string) (net.Listener, error) {
	f := s.take(name)
	if f == nil {
		return nil, nil
	}
	defer f.Close() // FileListener holds its own duplicate
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("socket %s: not a listener: %w", name, err)
	}
	return ln, nil
}

// PacketConn takes the socket name out of the set as a packet connection (UDP). It returns
// nil, nil when there is no socket of that name.
func (s *Sockets) PacketConn(name string) (net.PacketConn, error) {
	f := s.take(name)
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket %s: not a packet socket: %w", name, err)
	}
	return pc, nil
}

// Close closes the sockets not taken. Closing this process's copy leaves the socket open in
// any other process that holds one.
func (s *Sockets) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, n := range s.names {
		if err := s.files[n].Close(); err != nil {
			errs = append(errs, fmt.Errorf("close socket %s: %w", n, err))
		}
	}
	s.names, s.files = nil, map[string]*os.File{}
	return errors.Join(errs...)
}

// SameAddr reports whether a listener bound at got serves the configured address want
// (host:port as in teal.yaml): the same port (any, when want's is 0) and the same IP, all
// unspecified addresses (":8080", "0.0.0.0:8080", "[::]:8080") being one. A host name is
// looked up, and matches when any of its addresses does.
func SameAddr(want string, got net.Addr) bool {
	host, port, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	var gip net.IP
	var gport int
	switch a := got.(type) {
	case *net.TCPAddr:
		gip, gport = a.IP, a.Port
	case *net.UDPAddr:
		gip, gport = a.IP, a.Port
	default:
		return false
	}
	wport, err := net.LookupPort("tcp", port)
	if err != nil || (wport != 0 && wport != gport) {
		return false
	}
	if host == "" {
		return gip.IsUnspecified()
	}
	if ip := net.ParseIP(host); ip != nil {
		return sameIP(ip, gip)
	}
	ips, err := net.DefaultResolver.LookupIP(context.Background(), "ip", host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if sameIP(ip, gip) {
			return true
		}
	}
	return false
}

func sameIP(a, b net.IP) bool {
	if a.IsUnspecified() || b.IsUnspecified() {
		return a.IsUnspecified() && b.IsUnspecified()
	}
	return a.Equal(b)
}
