// Package freeport picks free TCP ports on the loopback address, for servers that are told a
// port rather than binding port 0 themselves (instances of the local provider, the demo's
// PostgreSQL, a test control plane).
package freeport

import (
	"fmt"
	"net"
)

// Ports picks n distinct free TCP ports on 127.0.0.1, holding all of them until the last is
// chosen so the kernel cannot hand the same one out twice. They are free when Ports returns;
// whoever binds one next gets it.
func Ports(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
