// Package sessions checks the shared session store an app keeps its users' sessions in, so
// that teal can refuse a release whose new colour could not reach it: with sessions in a
// store both colours share, a user logged in on blue is still logged in on green after the
// switch, and again on blue after a rollback.
//
// The store is Redis (config `sessions: { redis: ${REDIS_URL} }`). The check connects from
// the machine teal runs on, which is where the local provider's instances run too; see
// docs/sessions.md for what that means for other providers.
package sessions

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"teal.dev/teal"
)

// DefaultTimeout bounds a whole check (connect, handshake and every command) when
// Checker.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// ProbeTTL is the expiry of the probe key: if the check dies between SET and DEL, the key
// disappears by itself.
const ProbeTTL = 30 * time.Second

// ProbeKeyPrefix starts the probe keys Probe writes; a random suffix keeps concurrent checks
// apart.
const ProbeKeyPrefix = "teal:sessions-probe:"

// Checker checks that a Redis server can serve as the session store: that it answers, accepts
// the credentials, and lets a key be written, read back and deleted. The zero value is not
// usable: URL is required.
type Checker struct {
	// URL is the server: redis://[user:password@]host:port[/db], rediss:// for TLS, or
	// unix://[user:password@]/path/to/socket[?db=N]. Required.
	URL string
	// Timeout bounds the whole check; = DefaultTimeout.
	Timeout time.Duration
	// Logger receives the result of each check; nil discards it.
	Logger *slog.Logger
}

// Report is what a successful check measured.
type Report struct {
	// Addr is the server's host:port, or its socket path; never the password.
	Addr string
	// RTT is the round trip of a PING on the established connection: what each session
	// lookup adds to a request, at least.
	RTT time.Duration
	// Version is the server's redis_version (INFO server); "" if it does not say.
	Version string
}

// Error is a failed check: which server, what failed, and what to do about it. Its message
// never contains the password.
type Error struct {
	// Addr is the server's host:port or socket path; for a URL that could not be parsed, the
	// redacted URL.
	Addr string
	// Op is the step that failed: "parse", "connect", "PING", "INFO", "SET", "GET" or "DEL".
	Op string
	// Msg says what went wrong: "connection refused", "AUTH failed: WRONGPASS …".
	Msg string
	// Hint says what to do next; may be empty.
	Hint string
	// Err is the cause.
	Err error
}

// Error returns "session store redis <addr>: <what went wrong>".
func (e *Error) Error() string {
	if e.Op == "parse" {
		return "session store: " + e.Msg
	}
	return "session store redis " + e.Addr + ": " + e.Msg
}

// Unwrap returns the cause, so errors.Is sees context.Canceled and the like.
func (e *Error) Unwrap() error { return e.Err }

// Probe checks the store with a fresh probe key (ProbeKeyPrefix and a random suffix) and
// returns nil when it can hold sessions: Check without the report.
func (c *Checker) Probe(ctx context.Context) error {
	_, err := c.Check(ctx, ProbeKeyPrefix+rand.Text())
	return err
}

// Store is a Checker as the controller consumes it (teal.SessionStore): its Check is the
// Checker's Probe. (Checker's own Check takes a probe key and returns a Report.)
type Store struct {
	Checker *Checker
}

var _ teal.SessionStore = Store{}

// Check checks the store: Checker.Probe. Its errors are *Error, with a hint.
func (s Store) Check(ctx context.Context) error { return s.Checker.Probe(ctx) }

// Check connects to the server, PINGs it, reads its version, then SETs probeKey with a
// ProbeTTL expiry, GETs it back and DELetes it. Every failure is an *Error naming the server
// and the step. The whole check is bounded by Timeout.
func (c *Checker) Check(ctx context.Context, probeKey string) (Report, error) {
	opt, err := ParseURL(c.URL)
	if err != nil {
		return Report{}, &Error{Addr: Redact(c.URL), Op: "parse", Msg: err.Error(), Err: err,
			Hint: "set sessions.redis (usually ${REDIS_URL}) to the URL the app itself uses"}
	}
	rep := Report{Addr: opt.Addr}
	if probeKey == "" {
		return rep, &Error{Addr: opt.Addr, Op: "SET", Msg: "the probe key is empty",
			Err: errors.New("empty probe key")}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// A check reports what it meets: no retries, one connection, no side features that
	// would send commands a locked-down ACL user may not run.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = timeout, timeout, timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.PoolSize = 1
	opt.PipelinePoolSize = -1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	// go-redis answers a dial that ran out of time with the context's error, possibly before
	// the dialer has returned; the dialer says whether it was in the TLS handshake then.
	var hs handshakeState
	opt.Dialer = dialer(opt.TLSConfig, timeout, &hs)
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	conn := rdb.Conn()
	defer func() { _ = conn.Close() }()

	fail := func(op string, err error) (Report, error) {
		if op == "connect" {
			if h := hs.failed.Load(); h != nil {
				err = h
			} else if hs.running.Load() {
				err = &handshakeError{err: err}
			}
		}
		return rep, classify(ctx, opt, op, err, timeout)
	}
	start := time.Now()
	// The first command dials and runs the handshake (HELLO/AUTH, SELECT): its failures
	// are the connection's.
	if err := conn.Ping(tctx).Err(); err != nil {
		return fail("connect", err)
	}
	connected := time.Since(start)
	start = time.Now()
	if err := conn.Ping(tctx).Err(); err != nil {
		return fail("PING", err)
	}
	rep.RTT = time.Since(start)
	info, err := conn.Info(tctx, "server").Result()
	if err != nil {
		return fail("INFO", err)
	}
	rep.Version = infoField(info, "redis_version")

	token := rand.Text()
	if err := conn.Set(tctx, probeKey, token, ProbeTTL).Err(); err != nil {
		return fail("SET", err)
	}
	got, err := conn.Get(tctx, probeKey).Result()
	if err != nil {
		return fail("GET", err)
	}
	if got != token {
		return rep, &Error{Addr: opt.Addr, Op: "GET", Err: errors.New("probe value mismatch"),
			Msg:  fmt.Sprintf("probe key %q read back %q, want the %q just written", probeKey, got, token),
			Hint: "another client writes the same key, or a proxy in front of Redis serves stale reads"}
	}
	if err := conn.Del(tctx, probeKey).Err(); err != nil {
		return fail("DEL", err)
	}
	c.logger().Info("session store reachable", "addr", rep.Addr, "version", rep.Version,
		"rtt", rep.RTT, "connect", connected)
	return rep, nil
}

func (c *Checker) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// infoField returns the value of name in an INFO reply ("name:value" lines).
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), name+":"); ok {
			return v
		}
	}
	return ""
}

// classify turns the failure of op into an *Error saying, in words, what went wrong and what
// to do. ctx is the caller's: its end is a cancellation, not a fault of the server.
func classify(ctx context.Context, opt *redis.Options, op string, err error, timeout time.Duration) *Error {
	e := &Error{Addr: opt.Addr, Op: op, Err: err}
	rest := " (" + err.Error() + ")"
	var (
		rerr     redis.Error
		dnsErr   *net.DNSError
		hsErr    *handshakeError
		opErr    *net.OpError
		isDial   = errors.As(err, &opErr) && opErr.Op == "dial"
		checkURL = "check sessions.redis (usually ${REDIS_URL}): it must be the store the app uses"
	)
	switch {
	case ctx.Err() != nil:
		e.Msg = op + ": check cancelled"
		e.Err = ctx.Err()
	case errors.As(err, &rerr):
		classifyReply(e, opt, rerr.Error())
	case errors.As(err, &hsErr):
		classifyTLS(e, hsErr.err, timeout)
	case errors.As(err, &dnsErr):
		e.Msg = fmt.Sprintf("host %q not found", dnsErr.Name)
		e.Hint = checkURL
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Msg = "connection refused"
		e.Hint = "is Redis running and listening on " + opt.Addr + "? " + checkURL
	case opt.Network == "unix" && errors.Is(err, fs.ErrNotExist):
		e.Msg = "no socket at " + opt.Addr
		e.Hint = "is Redis running with unixsocket " + opt.Addr + "? " + checkURL
	case errors.Is(err, fs.ErrPermission):
		e.Msg = "permission denied" + rest
		e.Hint = "teal's user may not open the socket: see Redis's unixsocketperm"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		if isDial {
			e.Msg = fmt.Sprintf("no connection within %s", timeout)
			e.Hint = "is the host reachable from here (firewall, security group)? " + checkURL
		} else {
			e.Msg = fmt.Sprintf("%s: no answer within %s", op, timeout)
			e.Hint = "is it a Redis server? " + tlsHint
		}
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed):
		e.Msg = op + ": connection closed by the server" + rest
		e.Hint = "a server that wants TLS closes plain-text connections: " + tlsHint +
			"; a full server (maxclients) closes new ones"
	default:
		e.Msg = op + ": " + err.Error()
	}
	if isDial && e.Hint == "" {
		e.Hint = checkURL
	}
	return e
}

// tlsHint is the hint for TLS spoken to a plain-text server, and the reverse.
const tlsHint = "use rediss:// only for a server that speaks TLS, redis:// for one that does not"

// handshakeError is a failed TLS handshake on an established TCP connection: the server is
// there, but TLS did not work out.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// handshakeState is where a dialer's TLS handshake is.
type handshakeState struct {
	running atomic.Bool                    // on a connected socket, not finished
	failed  atomic.Pointer[handshakeError] // the last failure
}

// dialer connects like go-redis's own dialer, but bounds the TLS handshake by the check's
// context and records in hs how it went: a timeout there means a plain-text Redis that does
// not answer a TLS hello at all, not an unreachable host.
func dialer(conf *tls.Config, timeout time.Duration, hs *handshakeState) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil || conf == nil {
			return conn, err
		}
		hs.running.Store(true)
		defer hs.running.Store(false)
		tc := tls.Client(conn, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			h := &handshakeError{err: err}
			hs.failed.Store(h)
			return nil, h
		}
		return tc, nil
	}
}

// classifyTLS fills e from the failure of a TLS handshake.
func classifyTLS(e *Error, err error, timeout time.Duration) {
	var (
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		authErr x509.UnknownAuthorityError
		hostErr x509.HostnameError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		e.Msg = fmt.Sprintf("TLS handshake: no answer within %s", timeout)
		e.Hint = "a plain-text Redis does not answer a TLS handshake: " + tlsHint
	case errors.As(err, &recErr):
		e.Msg = "TLS handshake: the server does not speak TLS (" + err.Error() + ")"
		e.Hint = tlsHint
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &hostErr):
		e.Msg = "TLS certificate not trusted (" + err.Error() + ")"
		e.Hint = "the server's certificate must name the host of the URL and be signed by a CA this machine trusts"
	default:
		e.Msg = "TLS handshake: " + err.Error()
		e.Hint = tlsHint
	}
}

// classifyReply fills e from an error reply of the server ("WRONGPASS …", "READONLY …").
func classifyReply(e *Error, opt *redis.Options, reply string) {
	code, _, _ := strings.Cut(reply, " ")
	switch {
	case code == "WRONGPASS" || code == "NOAUTH" || strings.HasPrefix(reply, "ERR AUTH") ||
		strings.HasPrefix(reply, "ERR invalid password") || strings.HasPrefix(reply, "ERR Client sent AUTH"):
		e.Op = "AUTH"
		e.Msg = "AUTH failed: " + reply
		if opt.Username == "" && opt.Password == "" {
			e.Hint = "the server wants a password: put user and password in the URL (redis://user:password@host:port)"
		} else {
			e.Hint = "check the user and password in sessions.redis (usually ${REDIS_URL}); a server without a password wants a URL without one"
		}
	case code == "READONLY":
		e.Msg = "READONLY replica: sessions cannot be written"
		e.Hint = "point sessions.redis at the primary, not a replica"
	case code == "NOPERM":
		e.Msg = fmt.Sprintf("%s: permission denied: %s", e.Op, reply)
		e.Hint = "the Redis ACL user needs PING, INFO, SET, GET and DEL (and SELECT for a database other than 0)"
	case strings.HasPrefix(reply, "ERR DB index is out of range"):
		e.Msg = fmt.Sprintf("database %d does not exist", opt.DB)
		e.Hint = "Redis has databases 0 to 15 unless its `databases` setting says more"
	case code == "LOADING":
		e.Msg = "Redis is loading its data set into memory"
		e.Hint = "try again once it has loaded"
	case code == "MOVED" || code == "ASK" || code == "CLUSTERDOWN" || code == "CROSSSLOT":
		e.Msg = "the server is a Redis Cluster node (" + reply + "), which the check does not support"
		e.Hint = "point sessions.redis at a standalone server or a primary behind a proxy"
	case code == "OOM":
		e.Msg = "out of memory: sessions cannot be written (" + reply + ")"
		e.Hint = "raise maxmemory or choose an eviction policy (volatile-lru suits sessions)"
	case code == "MISCONF":
		e.Msg = "Redis refuses writes because it cannot save to disk (MISCONF)"
		e.Hint = "see the Redis log: the disk or the RDB snapshot setting"
	default:
		e.Msg = e.Op + ": " + reply
	}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
