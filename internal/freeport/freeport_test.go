package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPorts_DistinctAndBindable(t *testing.T) {
	ports, err := Ports(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Fatalf("ports %v: want 8 distinct ports", ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free after Ports returned: %v", p, err)
		}
		ln.Close()
	}
}
