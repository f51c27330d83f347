package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// TestDNS_BuiltinFollowsReleases: with the built-in DNS server, the record answers blue's
// target before a release and green's after it, back to blue on rollback; each colour's
// endpoint serves that colour, and requests still reaching the old colour's endpoint after
// the switch are counted.
func TestDNS_BuiltinFollowsReleases(t *testing.T) {
	dnsPort := freePorts(t, 1)[0]
	h := newHarness(t, options{extra: fmt.Sprintf(`dns:
  provider: builtin
  zone: example.test.
  record: shop.example.test.
  ttl: 5s
  targets: { blue: 127.0.0.2, green: 127.0.0.3 }
  builtin: { listen: 127.0.0.1:%d }
  confirm: true
  quiet: 1s
`, dnsPort)})
	server := "127.0.0.1:" + strconv.Itoa(dnsPort)
	port := h.listen[strings.LastIndex(h.listen, ":")+1:]
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))

	h.release("v1")
	a, ttl, serial1 := lookup(t, server)
	if a != "127.0.0.2" || ttl != 5 {
		t.Fatalf("after v1: shop.example.test. A %s ttl %d, want 127.0.0.2 ttl 5", a, ttl)
	}
	if got := versionAt(t, "127.0.0.2:"+port); got != "v1" {
		t.Fatalf("blue's endpoint serves %s, want v1", got)
	}

	h.release("v2")
	a, _, serial2 := lookup(t, server)
	if a != "127.0.0.3" {
		t.Fatalf("after v2: A %s, want 127.0.0.3", a)
	}
	if serial2 <= serial1 {
		t.Fatalf("SOA serial %d after the switch, want more than %d", serial2, serial1)
	}
	if got := versionAt(t, "127.0.0.3:"+port); got != "v2" {
		t.Fatalf("green's endpoint serves %s, want v2", got)
	}
	// A client that ignores the TTL still reaches blue, which is still there, and is counted.
	if got := versionAt(t, "127.0.0.2:"+port); got != "v1" {
		t.Fatalf("blue's endpoint after the switch serves %s, want v1 (standby)", got)
	}
	var residual int64
	for _, e := range h.status().Environments {
		if e.Color == teal.Blue {
			residual = e.EndpointRequests
		}
	}
	if residual < 2 {
		t.Fatalf("blue's endpoint requests in status = %d, want at least 2", residual)
	}

	if _, err := h.client.Rollback(context.Background(), false); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if a, _, _ := lookup(t, server); a != "127.0.0.2" {
		t.Fatalf("after rollback: A %s, want 127.0.0.2", a)
	}
}

// lookup asks server for shop.example.test.'s A record and the zone's SOA serial.
func lookup(t *testing.T, server string) (addr string, ttl uint32, serial uint32) {
	t.Helper()
	c := new(dns.Client)
	m := new(dns.Msg)
	m.SetQuestion("shop.example.test.", dns.TypeA)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query A: %v", err)
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			addr, ttl = a.A.String(), a.Hdr.Ttl
		}
	}
	m.SetQuestion("example.test.", dns.TypeSOA)
	r, _, err = c.Exchange(m, server)
	if err != nil {
		t.Fatalf("query SOA: %v", err)
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			serial = soa.Serial
		}
	}
	return addr, ttl, serial
}

// TestDNS_TTLDiscipline: between releases the record carries rest_ttl; a release lowers it to
// ttl as it starts, waits rest_ttl before its switch, and restores rest_ttl at its end.
func TestDNS_TTLDiscipline(t *testing.T) {
	dnsPort := freePorts(t, 1)[0]
	h := newHarness(t, options{extra: fmt.Sprintf(`dns:
  provider: builtin
  zone: example.test.
  record: shop.example.test.
  ttl: 2s
  rest_ttl: 3s
  targets: { blue: 127.0.0.2, green: 127.0.0.3 }
  builtin: { listen: 127.0.0.1:%d }
`, dnsPort)})
	server := "127.0.0.1:" + strconv.Itoa(dnsPort)
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	if a, ttl, _ := lookup(t, server); a != "127.0.0.2" || ttl != 3 {
		t.Fatalf("between releases: A %s ttl %d, want 127.0.0.2 ttl 3 (rest_ttl)", a, ttl)
	}
	deploy(t, h, "v2")
	h.waitRelease("v2 at the gate", atGate)
	if a, ttl, _ := lookup(t, server); a != "127.0.0.2" || ttl != 2 {
		t.Fatalf("during the release: A %s ttl %d, want 127.0.0.2 ttl 2 (ttl)", a, ttl)
	}
	promoteAndWait(t, h, teal.Green)
	if a, ttl, _ := lookup(t, server); a != "127.0.0.3" || ttl != 3 {
		t.Fatalf("after the release: A %s ttl %d, want 127.0.0.3 ttl 3 (rest_ttl again)", a, ttl)
	}
	rel := h.status().Release
	var waited bool
	for _, s := range rel.Steps {
		if s.Name == "dns-ttl-wait" || s.Name == "dns-ttl" {
			waited = true
		}
	}
	if !waited {
		t.Fatalf("release steps %v: want the TTL lowered and waited for", rel.Steps)
	}
}

// TestDNS_ChangedOutsideTeal: against a real BIND, a release switches the record by RFC 2136;
// when someone changes the record by hand before the next switch, teal's compare-and-swap
// refuses to overwrite it, the switch fails, and the router and the record both stay on the
// old colour — the release fails with the provider's reason.
func TestDNS_ChangedOutsideTeal(t *testing.T) {
	n := testutil.StartNamed(t)
	h := newHarness(t, options{extra: fmt.Sprintf(`dns:
  provider: rfc2136
  zone: example.test.
  record: shop.example.test.
  ttl: 5s
  targets: { blue: 127.0.0.2, green: 127.0.0.3 }
  rfc2136: { server: %s, tsig_name: %s, tsig_secret: %s, tsig_algorithm: %s }
  confirm: true
`, n.Addr, n.KeyName, n.Secret, n.Algorithm)})
	h.push("v1", h.artifact("v1", "v1", "", ""))
	h.push("v2", h.artifact("v2", "v2", "", ""))
	h.release("v1")
	if got, _ := n.Lookup(t, "shop.example.test."); len(got) != 1 || got[0] != "127.0.0.2" {
		t.Fatalf("BIND answers %v after v1, want 127.0.0.2", got)
	}
	deploy(t, h, "v2")
	h.waitRelease("v2 at the gate", atGate)

	n.NSUpdate(t, "update delete shop.example.test. A\nupdate add shop.example.test. 60 A 127.0.0.9")
	if _, err := h.client.Promote(context.Background()); err != nil {
		t.Fatalf("promote: %v", err)
	}
	rel := h.waitRelease("v2 ended", ended)
	if *rel.Outcome != teal.OutcomeFailed || !strings.Contains(rel.Error, "record changed outside teal") {
		t.Fatalf("v2 ended %s: %q, want failed with \"record changed outside teal\"", *rel.Outcome, rel.Error)
	}
	assertLive(t, h, teal.Blue, "v1")
	if got, _ := n.Lookup(t, "shop.example.test."); len(got) != 1 || got[0] != "127.0.0.9" {
		t.Fatalf("BIND answers %v, want the operator's 127.0.0.9 kept", got)
	}
}
