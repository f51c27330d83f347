//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package proxy

// alive reports whether an idle connection still looks usable. Without a non-blocking peek
// it can only tell by what is buffered: a request that must not be sent twice may then find
// the connection closed by the backend and fail with a 502, but is never sent twice.
func (c *bconn) alive() bool { return c.r.br.Buffered() == 0 }
