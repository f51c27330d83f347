// BIND 9 for tests that need a real authoritative DNS server.

package testutil

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Named is a real BIND 9 primary for example.test., started for one test on a loopback port,
// with a TSIG key allowed to update the zone.
type Named struct {
	Addr      string // 127.0.0.1:port, UDP and TCP
	KeyName   string // "teal."
	Secret    string // base64
	Algorithm string // hmac-sha256
}

// NamedZone is the zone named starts with: shop is on blue (127.0.0.2) with a long TTL, as a
// record looks before teal takes charge of it.
const NamedZone = `$TTL 300
@       IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 604800 30
@       IN NS  ns1.example.test.
ns1     IN A   127.0.0.1
shop    IN A   127.0.0.2
`

// StartNamed starts named in the foreground with a temporary configuration and zone, and waits
// until it answers the zone's SOA.
func StartNamed(t testing.TB) *Named {
	t.Helper()
	path, err := exec.LookPath("named")
	if err != nil {
		t.Fatalf("named is not installed (Debian bind9; scripts/deps.sh test installs it): %v", err)
	}
	dir := t.TempDir()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("random key: %v", err)
	}
	n := &Named{KeyName: "teal.", Secret: base64.StdEncoding.EncodeToString(key), Algorithm: "hmac-sha256"}
	port := FreeUDPTCPPort(t)
	n.Addr = net.JoinHostPort("127.0.0.1", port)

	conf := fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	listen-on port %[4]s { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	notify no;
	dnssec-validation no;
};
controls { };
key "teal." {
	algorithm hmac-sha256;
	secret %[5]q;
};
zone "example.test." {
	type primary;
	file %[6]q;
	allow-update { key "teal."; };
};
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"), port, n.Secret, filepath.Join(dir, "example.test.zone"))
	confPath := filepath.Join(dir, "named.conf")
	for name, data := range map[string]string{confPath: conf, filepath.Join(dir, "example.test.zone"): NamedZone} {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	// -g: foreground, log to stderr; -n 1: one worker, the machine is shared. named runs as
	// whoever runs the test (root in CI, where it keeps root: the files are in a temp dir).
	cmd := exec.Command(path, "-g", "-n", "1", "-c", confPath)
	proc := StartProcess(t, "named", cmd, nil)
	log, exited := proc.Log, proc.Exited

	deadline := time.Now().Add(20 * time.Second)
	for {
		q := new(dns.Msg)
		q.SetQuestion("example.test.", dns.TypeSOA)
		in, _, err := (&dns.Client{Timeout: 200 * time.Millisecond}).Exchange(q, n.Addr)
		if err == nil && in.Rcode == dns.RcodeSuccess && len(in.Answer) == 1 {
			return n
		}
		select {
		case err := <-exited:
			t.Fatalf("named exited before answering: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("named did not answer SOA example.test. on %s within 20s (last error %v)\n%s", n.Addr, err, log.String())
		}
	}
}

// FreeUDPTCPPort returns a port that is free on 127.0.0.1 for both UDP and TCP (for a DNS
// server to bind).
func FreeUDPTCPPort(t testing.TB) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", port))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = pc.Close()
		return port
	}
	t.Fatalf("no port free on both UDP and TCP")
	return ""
}

// Lookup asks named for the record's A RRset and returns its values and TTL.
func (n *Named) Lookup(t testing.TB, name string) (values []string, ttl uint32) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	in, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(q, n.Addr)
	if err != nil {
		t.Fatalf("query %s A: %v", name, err)
	}
	for _, rr := range in.Answer {
		if a, ok := rr.(*dns.A); ok {
			values = append(values, a.A.String())
			ttl = a.Hdr.Ttl
		}
	}
	return values, ttl
}

// NSUpdate changes the zone the way an operator would, with Debian's nsupdate.
func (n *Named) NSUpdate(t testing.TB, script string) {
	t.Helper()
	path, err := exec.LookPath("nsupdate")
	if err != nil {
		t.Fatalf("nsupdate is not installed (Debian bind9-dnsutils; scripts/deps.sh test installs it): %v", err)
	}
	host, port, _ := net.SplitHostPort(n.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// -v: TCP, as teal does; -y algorithm:name:secret.
	cmd := exec.CommandContext(ctx, path, "-v", "-y", n.Algorithm+":"+strings.TrimSuffix(n.KeyName, ".")+":"+n.Secret)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s %s\nzone example.test.\n%s\nsend\n", host, port, script))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate: %v\n%s", err, out)
	}
}
