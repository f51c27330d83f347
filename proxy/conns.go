package proxy

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// readBufferSize is the size of each backend connection's read buffer. A response head
// and a small body arrive in one read; bigger bodies are copied to the client a buffer at a
// time, straight out of it.
const readBufferSize = 16 << 10

// aLongTimeAgo is a deadline in the past: setting it unblocks a connection's reads and
// writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// poolSettings are a Transport's settings as a pool uses them, defaults filled in.
type poolSettings struct {
	dialTimeout time.Duration
	idleTimeout time.Duration
	maxIdle     int
}

// connPool is the kept-alive connections to one backend. Idle connections are a stack:
// the most recently used is taken first, so a busy pool keeps a hot set of connections and
// the rest age out by the idle timeout.
type connPool struct {
	addr   string
	set    poolSettings
	dialer net.Dialer

	mu    sync.Mutex
	idle  []*bconn
	timer *time.Timer // sweeps out connections idle past the timeout; armed while idle is not empty
	armed bool
}

func newConnPool(addr string, s poolSettings) *connPool {
	return &connPool{addr: addr, set: s, dialer: net.Dialer{Timeout: s.dialTimeout, KeepAlive: 30 * time.Second}}
}

// get returns an idle connection, or nil when there is none. now is about the time (the
// request's start): a connection idle for longer than the timeout is closed, not returned.
func (p *connPool) get(now time.Time) *bconn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(c.idleSince) < p.set.idleTimeout {
			return c
		}
		c.close()
	}
}

// dial connects to the backend.
func (p *connPool) dial(ctx context.Context) (*bconn, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	c := &bconn{pool: p, conn: conn, bodyDone: make(chan error, 1)}
	c.r.br = bufio.NewReaderSize(conn, readBufferSize)
	c.body.r = &c.r
	c.abortFn = c.abort
	if sc, ok := conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, nil
}

// put returns c to the idle stack, or closes it when the stack is full. now is about the
// time (the request's start), when c's idle time begins.
func (p *connPool) put(c *bconn, now time.Time) {
	c.idleSince = now
	c.reused = true
	p.mu.Lock()
	if len(p.idle) >= p.set.maxIdle {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.set.idleTimeout, p.sweep)
		} else {
			p.timer.Reset(p.set.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// sweep closes the connections idle past the timeout, and arms the timer again for the
// next one to expire.
func (p *connPool) sweep() {
	now := time.Now()
	var stale []*bconn
	p.mu.Lock()
	kept := p.idle[:0]
	var next time.Duration
	for _, c := range p.idle {
		left := p.set.idleTimeout - now.Sub(c.idleSince)
		if left <= 0 {
			stale = append(stale, c)
			continue
		}
		if next == 0 || left < next {
			next = left
		}
		kept = append(kept, c)
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	if len(kept) > 0 {
		p.timer.Reset(next)
	} else {
		p.armed = false
	}
	p.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// closeIdle closes every idle connection.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// bconn is one connection to a backend, with what reading its responses needs. It belongs
// to one request at a time, or to its pool's idle stack.
type bconn struct {
	pool *connPool
	conn net.Conn
	raw  syscall.RawConn // for alive; nil if the connection has none
	r    reader
	head head
	body body

	idleSince time.Time
	reused    bool        // it served a request before, so the backend may have closed it since
	dead      atomic.Bool // aborted (the client went away, or a stream was ended): never reused
	headDone  atomic.Bool // the final response head of the current request was read
	abortFn   func()      // c.abort, made once
	bodyDone  chan error  // the request body writer's result, for streamed request bodies
}

// abort makes the connection's blocked and future reads and writes fail at once, and keeps
// it from being reused. It may be called from any goroutine.
func (c *bconn) abort() {
	c.dead.Store(true)
	_ = c.conn.SetDeadline(aLongTimeAgo)
}

func (c *bconn) close() { _ = c.conn.Close() }

// release gives c back to its pool if reusable and not aborted, and closes it otherwise.
func (c *bconn) release(reusable bool, now time.Time) {
	if reusable && !c.dead.Load() {
		c.pool.put(c, now)
		return
	}
	c.close()
}
