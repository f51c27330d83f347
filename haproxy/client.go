package haproxy

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"teal.dev/teal"
)

// DefaultTimeout bounds one Runtime API command: connecting, sending it and reading the answer.
const DefaultTimeout = 5 * time.Second

// maxAnswer bounds what one answer may be. show stat of a backend with a few dozen servers is
// tens of kilobytes; more means the socket is not what it claims to be.
const maxAnswer = 16 << 20

// Client sends commands to HAProxy's Runtime API (the stats socket), one command per
// connection: HAProxy answers and closes, so an answer ends at EOF and no framing is needed.
// A Client is safe for concurrent use.
type Client struct {
	// Socket is where the Runtime API listens: a unix socket path (/run/haproxy/admin.sock,
	// or unix@path), or a TCP stats socket as ipv4@host:port, ipv6@[host]:port or host:port.
	Socket string
	// Timeout bounds one command. = DefaultTimeout.
	Timeout time.Duration
}

// APIError is an answer of HAProxy that says a command failed, quoted as HAProxy gave it.
type APIError struct {
	Command string // the command sent
	Answer  string // HAProxy's answer, trimmed
}

func (e *APIError) Error() string {
	return fmt.Sprintf("haproxy answered %q to %q", e.Answer, e.Command)
}

// SocketAddr returns the network ("unix", "tcp4", "tcp6" or "tcp") and address of socket, in
// the forms HAProxy's stats socket line takes.
func SocketAddr(socket string) (network, addr string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("haproxy.socket %q: %s; want a unix socket path like /run/haproxy/admin.sock, or ipv4@127.0.0.1:9999: %w", socket, why, teal.ErrInvalid)
	}
	if socket == "" {
		return bad("empty")
	}
	if strings.ContainsAny(socket, "\x00\n") {
		return bad("has a NUL or newline")
	}
	switch {
	case strings.HasPrefix(socket, "unix@"):
		network, addr = "unix", strings.TrimPrefix(socket, "unix@")
	case strings.HasPrefix(socket, "ipv4@"):
		network, addr = "tcp4", strings.TrimPrefix(socket, "ipv4@")
	case strings.HasPrefix(socket, "ipv6@"):
		network, addr = "tcp6", strings.TrimPrefix(socket, "ipv6@")
	case strings.Contains(socket, "/"):
		network, addr = "unix", socket
	default:
		// host:port is TCP; anything else is a unix socket in the working directory.
		if _, port, err := net.SplitHostPort(socket); err == nil && port != "" {
			network, addr = "tcp", socket
		} else {
			network, addr = "unix", socket
		}
	}
	if addr == "" {
		return bad("no address after the prefix")
	}
	if network != "unix" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return bad("not host:port")
		}
	}
	return network, addr, nil
}

// Do sends one command and returns HAProxy's answer with its trailing newlines trimmed. An
// answer is returned as is: for most set commands an empty answer is success and any text an
// error, which the caller judges (see Set). The command must be one line without ';', which
// HAProxy would read as several commands.
func (c *Client) Do(ctx context.Context, cmd string) (string, error) {
	if cmd == "" || strings.ContainsAny(cmd, ";\n\r\x00") {
		return "", fmt.Errorf("haproxy command %q: want one command on one line, without ';': %w", cmd, teal.ErrInvalid)
	}
	network, addr, err := SocketAddr(c.Socket)
	if err != nil {
		return "", err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: %w", c.Socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// The context may end before the deadline (cancelled): unblock the read then.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: send %q: %w", c.Socket, cmd, err)
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxAnswer+1))
	if err != nil {
		if ended(ctx) {
			err = fmt.Errorf("%w (%w)", err, cmp.Or(context.Cause(ctx), context.DeadlineExceeded))
		}
		return "", fmt.Errorf("haproxy runtime API %s: answer to %q: %w", c.Socket, cmd, err)
	}
	if len(b) > maxAnswer {
		return "", fmt.Errorf("haproxy runtime API %s: answer to %q is over %d bytes", c.Socket, cmd, maxAnswer)
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// ProcessID is the Pid line of show info: the process serving the Runtime API, which a reload
// (a new worker) or a restart changes.
func (c *Client) ProcessID(ctx context.Context) (string, error) {
	ans, err := c.Do(ctx, "show info")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(ans, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("show info has no Pid line")
}

// Set sends a command whose success is an empty answer (set server … weight|state), and
// returns an *APIError quoting any other answer.
func (c *Client) Set(ctx context.Context, cmd string) error {
	ans, err := c.Do(ctx, cmd)
	if err != nil {
		return err
	}
	if strings.TrimSpace(ans) != "" {
		return &APIError{Command: cmd, Answer: strings.TrimSpace(ans)}
	}
	return nil
}

// SetAddr sends set server <backend>/<server> addr <ip> port <port>. HAProxy answers it with
// what changed ("IP changed from …", "no need to change the addr, port changed from …"); any
// other answer is an *APIError.
func (c *Client) SetAddr(ctx context.Context, backend, server, ip string, port int) error {
	cmd := fmt.Sprintf("set server %s/%s addr %s port %d", backend, server, ip, port)
	ans, err := c.Do(ctx, cmd)
	if err != nil {
		return err
	}
	ans = strings.TrimSpace(ans)
	if !addrChanged(ans) {
		return &APIError{Command: cmd, Answer: ans}
	}
	return nil
}

// addrChanged reports whether ans is HAProxy's answer to a successful set server addr: it
// says, for the address and the port, that it changed or that it did not need to.
func addrChanged(ans string) bool {
	return (strings.HasPrefix(ans, "IP changed from") || strings.HasPrefix(ans, "no need to change the addr")) &&
		(strings.Contains(ans, "port changed from") || strings.Contains(ans, "no need to change the port"))
}
