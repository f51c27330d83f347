//go:build linux || darwin || freebsd || netbsd || openbsd

package proxy

import "syscall"

// alive reports whether an idle connection still looks usable: the backend has not closed
// it and has sent nothing unasked. It peeks at the socket without blocking, one system call,
// which is paid only before sending a request that must not be sent twice (one that is not
// idempotent) on a connection that has served before.
func (c *bconn) alive() bool {
	if c.r.br.Buffered() > 0 {
		return false // bytes nobody asked for: the connection is out of step
	}
	if c.raw == nil {
		return true
	}
	ok := false
	var b [1]byte
	err := c.raw.Read(func(fd uintptr) bool {
		// Nothing to read is what a live idle connection says; 0 bytes is the backend's
		// close, and a byte is an answer to nothing.
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && ok
}
