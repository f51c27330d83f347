package dnsserver

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"teal.dev/teal"
)

// testConfig is a builtin dns section on a free loopback port.
func testConfig() teal.DNSConfig {
	cfg := teal.DefaultDNSConfig()
	cfg.Provider = "builtin"
	cfg.Zone = "example.test."
	cfg.Record = "shop.example.test."
	cfg.TTL = 30 * time.Second
	cfg.Targets = map[teal.Color]string{teal.Blue: "127.0.0.2", teal.Green: "127.0.0.3"}
	cfg.Builtin.Listen = "127.0.0.1:0"
	return cfg
}

// startServer starts a Server for cfg and closes it when the test ends.
func startServer(t *testing.T, cfg teal.DNSConfig) *Server {
	t.Helper()
	s := NewServer(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func set(t *testing.T, s *Server, tr teal.Traffic, prev *teal.DNSState) *teal.DNSState {
	t.Helper()
	st, err := s.Set(context.Background(), tr, prev)
	if err != nil {
		t.Fatalf("Set(%+v): %v", tr, err)
	}
	return st
}

// dig runs Debian's dig against the server and returns its output lines.
func dig(t *testing.T, s *Server, args ...string) []string {
	t.Helper()
	path, err := exec.LookPath("dig")
	if err != nil {
		t.Fatalf("dig is not installed (Debian bind9-dnsutils; scripts/deps.sh test installs it): %v", err)
	}
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatalf("server address %q: %v", s.Addr(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	argv := append([]string{"@" + host, "-p", port, "+tries=1", "+time=2"}, args...)
	out, err := exec.CommandContext(ctx, path, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.Fields(strings.TrimSpace(string(out)))
}

// digAnswer returns the TTL and value of the single answer record dig shows for name and type.
func digAnswer(t *testing.T, s *Server, extra string, name, qtype string) (ttl uint32, value string) {
	t.Helper()
	args := []string{name, qtype, "+noall", "+answer"}
	if extra != "" {
		args = append(args, extra)
	}
	f := dig(t, s, args...)
	// name TTL IN TYPE value
	if len(f) != 5 {
		t.Fatalf("dig %s %s answered %q, want one record", name, qtype, f)
	}
	n, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		t.Fatalf("dig answer %q: TTL: %v", f, err)
	}
	return uint32(n), f[4]
}

func digSerial(t *testing.T, s *Server) uint32 {
	t.Helper()
	f := dig(t, s, "example.test.", "SOA", "+short")
	if len(f) != 7 {
		t.Fatalf("dig SOA +short = %q, want 7 fields", f)
	}
	n, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		t.Fatalf("SOA serial %q: %v", f[2], err)
	}
	return uint32(n)
}

func TestServer_DigFollowsRelease(t *testing.T) {
	s := startServer(t, testConfig())
	blue := set(t, s, teal.All(teal.Blue), nil)
	serialBlue := digSerial(t, s)
	if serialBlue != blue.Serial {
		t.Fatalf("SOA serial = %d, want the state's %d", serialBlue, blue.Serial)
	}
	for _, transport := range []string{"+notcp", "+tcp"} {
		ttl, v := digAnswer(t, s, transport, "shop.example.test", "A")
		if v != "127.0.0.2" || ttl != 30 {
			t.Fatalf("before the release (%s): A = %s TTL %d, want 127.0.0.2 TTL 30", transport, v, ttl)
		}
	}

	green := set(t, s, teal.All(teal.Green), blue)
	for _, transport := range []string{"+notcp", "+tcp"} {
		ttl, v := digAnswer(t, s, transport, "shop.example.test", "A")
		if v != "127.0.0.3" || ttl != 30 {
			t.Fatalf("after the release (%s): A = %s TTL %d, want 127.0.0.3 TTL 30", transport, v, ttl)
		}
	}
	if got := digSerial(t, s); got <= serialBlue || got != green.Serial {
		t.Fatalf("serial after the switch = %d, want above %d and equal to the state's %d", got, serialBlue, green.Serial)
	}
	if got, want := green.Values, []string{"127.0.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("state values = %q, want %q", got, want)
	}
	if green.TTL != 30 || green.Traffic != teal.All(teal.Green) {
		t.Fatalf("state = %+v, want TTL 30 and all traffic on green", green)
	}

	// Rollback is a Set back.
	set(t, s, teal.All(teal.Blue), green)
	if _, v := digAnswer(t, s, "", "shop.example.test", "A"); v != "127.0.0.2" {
		t.Fatalf("after rollback: A = %s, want 127.0.0.2", v)
	}
}

func TestServer_TTLAsConfigured(t *testing.T) {
	cfg := testConfig()
	cfg.TTL = 7 * time.Second
	s := startServer(t, cfg)
	set(t, s, teal.All(teal.Blue), nil)
	if ttl, _ := digAnswer(t, s, "", "shop.example.test", "A"); ttl != 7 {
		t.Fatalf("TTL = %d, want 7", ttl)
	}
	if _, err := s.SetTTL(context.Background(), teal.All(teal.Blue), 5*time.Minute, nil); err != nil {
		t.Fatalf("SetTTL: %v", err)
	}
	if ttl, _ := digAnswer(t, s, "", "shop.example.test", "A"); ttl != 300 {
		t.Fatalf("TTL after SetTTL(5m) = %d, want 300", ttl)
	}
}

func TestServer_GoResolver(t *testing.T) {
	s := startServer(t, testConfig())
	set(t, s, teal.All(teal.Green), nil)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, "shop.example.test")
	if err != nil {
		t.Fatalf("LookupHost: %v", err)
	}
	if !slices.Equal(addrs, []string{"127.0.0.3"}) {
		t.Fatalf("LookupHost = %q, want [127.0.0.3]", addrs)
	}
	_, err = r.LookupHost(ctx, "nope.example.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("LookupHost(nope) error = %v, want not found", err)
	}
}

// query asks the server one question over UDP.
func query(t *testing.T, s *Server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	in, _, err := new(dns.Client).Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return in
}

func TestServer_Answers(t *testing.T) {
	cfg := testConfig()
	cfg.Record = "shop.eu.example.test."
	s := startServer(t, cfg)
	set(t, s, teal.All(teal.Blue), nil)

	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		rcode     int
		answer    string // the first answer's type, "" for none
		authority bool   // an SOA in the authority section
	}{
		{"record A", "shop.eu.example.test.", dns.TypeA, dns.RcodeSuccess, "A", false},
		{"record A, other case", "SHOP.eu.Example.TEST.", dns.TypeA, dns.RcodeSuccess, "A", false},
		{"record other type is no data", "shop.eu.example.test.", dns.TypeTXT, dns.RcodeSuccess, "", true},
		{"record AAAA is no data", "shop.eu.example.test.", dns.TypeAAAA, dns.RcodeSuccess, "", true},
		{"apex SOA", "example.test.", dns.TypeSOA, dns.RcodeSuccess, "SOA", false},
		{"apex NS", "example.test.", dns.TypeNS, dns.RcodeSuccess, "NS", false},
		{"apex A is no data", "example.test.", dns.TypeA, dns.RcodeSuccess, "", true},
		{"name server address", "ns1.example.test.", dns.TypeA, dns.RcodeSuccess, "A", false},
		{"empty non-terminal", "eu.example.test.", dns.TypeA, dns.RcodeSuccess, "", true},
		{"missing name", "nope.example.test.", dns.TypeA, dns.RcodeNameError, "", true},
		{"below the record", "x.shop.eu.example.test.", dns.TypeA, dns.RcodeNameError, "", true},
		{"outside the zone", "shop.other.test.", dns.TypeA, dns.RcodeRefused, "", false},
		{"parent of the zone", "test.", dns.TypeSOA, dns.RcodeRefused, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := query(t, s, tt.qname, tt.qtype)
			if in.Rcode != tt.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[in.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.rcode != dns.RcodeRefused && !in.Authoritative {
				t.Fatalf("AA flag not set")
			}
			if in.RecursionAvailable {
				t.Fatalf("RA flag set on an authoritative-only server")
			}
			got := ""
			if len(in.Answer) > 0 {
				got = dns.TypeToString[in.Answer[0].Header().Rrtype]
				if in.Answer[0].Header().Name != tt.qname && tt.qtype != dns.TypeSOA {
					t.Fatalf("answer name = %s, want the question's %s", in.Answer[0].Header().Name, tt.qname)
				}
			}
			if got != tt.answer {
				t.Fatalf("answer = %v, want type %q", in.Answer, tt.answer)
			}
			hasSOA := len(in.Ns) == 1 && in.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != tt.authority {
				t.Fatalf("authority = %v, want SOA: %v", in.Ns, tt.authority)
			}
		})
	}
}

func TestServer_RecordTypes(t *testing.T) {
	tests := []struct {
		name    string
		targets map[teal.Color]string
		qtype   uint16
		want    string // the answer as text, without the header
	}{
		{"AAAA", map[teal.Color]string{teal.Blue: "2001:db8::1", teal.Green: "2001:db8::2"}, dns.TypeAAAA, "2001:db8::2"},
		{"CNAME for an A query", map[teal.Color]string{teal.Blue: "blue-lb.example.net", teal.Green: "Green-LB.example.net."}, dns.TypeA, "green-lb.example.net."},
		{"CNAME query", map[teal.Color]string{teal.Blue: "blue-lb.example.net.", teal.Green: "green-lb.example.net."}, dns.TypeCNAME, "green-lb.example.net."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Targets = tt.targets
			s := startServer(t, cfg)
			set(t, s, teal.All(teal.Green), nil)
			in := query(t, s, "shop.example.test.", tt.qtype)
			if len(in.Answer) != 1 {
				t.Fatalf("answer = %v, want one record", in.Answer)
			}
			rr := in.Answer[0]
			got := strings.TrimPrefix(rr.String(), rr.Header().String())
			if got != tt.want {
				t.Fatalf("answer = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServer_NoDataBeforeFirstSet(t *testing.T) {
	s := startServer(t, testConfig())
	in := query(t, s, "shop.example.test.", dns.TypeA)
	if in.Rcode != dns.RcodeSuccess || len(in.Answer) != 0 {
		t.Fatalf("before any Set: rcode %s answer %v, want NOERROR and no data", dns.RcodeToString[in.Rcode], in.Answer)
	}
	if s.State() != nil {
		t.Fatalf("State() = %+v before any Set, want nil", s.State())
	}
}

func TestServer_WeightedAnswers(t *testing.T) {
	tests := []struct {
		name    string
		traffic teal.Traffic
	}{
		{"10/90", teal.Traffic{Blue: 90, Green: 10}},
		{"30/70", teal.Traffic{Blue: 30, Green: 70}},
		{"50/50", teal.Traffic{Blue: 50, Green: 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Weighted = true
			s := startServer(t, cfg)
			st := set(t, s, tt.traffic, nil)
			if !slices.Equal(st.Values, []string{"127.0.0.2", "127.0.0.3"}) {
				t.Fatalf("state values = %q, want both targets", st.Values)
			}
			c := new(dns.Client)
			const n = 1000
			green := 0
			for range n {
				m := new(dns.Msg)
				m.SetQuestion("shop.example.test.", dns.TypeA)
				in, _, err := c.Exchange(m, s.Addr())
				if err != nil {
					t.Fatalf("query: %v", err)
				}
				if len(in.Answer) != 1 {
					t.Fatalf("answer = %v, want one target per query", in.Answer)
				}
				if in.Answer[0].(*dns.A).A.String() == "127.0.0.3" {
					green++
				}
			}
			got := green * 100 / n
			if got < tt.traffic.Green-5 || got > tt.traffic.Green+5 {
				t.Fatalf("green answered %d%% of %d queries, want %d%% ±5", got, n, tt.traffic.Green)
			}
		})
	}
}

func TestServer_SplitWithoutWeightedAnswersMajority(t *testing.T) {
	s := startServer(t, testConfig())
	st := set(t, s, teal.Traffic{Blue: 25, Green: 75}, nil)
	if !slices.Equal(st.Values, []string{"127.0.0.3"}) {
		t.Fatalf("values = %q, want green's target alone", st.Values)
	}
	// At 50/50 the record stays where it was.
	st = set(t, s, teal.Traffic{Blue: 50, Green: 50}, st)
	if !slices.Equal(st.Values, []string{"127.0.0.3"}) {
		t.Fatalf("values at 50/50 after green = %q, want green's target", st.Values)
	}
}

func TestServer_SerialNeverGoesBack(t *testing.T) {
	s := startServer(t, testConfig())
	prev := &teal.DNSState{Traffic: teal.All(teal.Blue), Values: []string{"127.0.0.2"}, TTL: 30, Serial: 4_000_000_000}
	st := set(t, s, teal.All(teal.Green), prev)
	if st.Serial != prev.Serial+1 {
		t.Fatalf("serial = %d, want %d (one above the persisted serial)", st.Serial, prev.Serial+1)
	}
	if got := digSerial(t, s); got != st.Serial {
		t.Fatalf("SOA serial = %d, want %d", got, st.Serial)
	}
}

func TestServer_RestoreServesPersistedState(t *testing.T) {
	s := startServer(t, testConfig())
	st := &teal.DNSState{Traffic: teal.All(teal.Green), Values: []string{"127.0.0.3"}, TTL: 12, Serial: 4_000_000_123}
	if err := s.Restore(st); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if ttl, v := digAnswer(t, s, "", "shop.example.test", "A"); v != "127.0.0.3" || ttl != 12 {
		t.Fatalf("after Restore: A = %s TTL %d, want 127.0.0.3 TTL 12", v, ttl)
	}
	if got := digSerial(t, s); got != st.Serial {
		t.Fatalf("serial = %d, want the persisted %d", got, st.Serial)
	}
}

func TestServer_Check(t *testing.T) {
	s := startServer(t, testConfig())
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := NewServer(testConfig()).Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("Check of a server not started = %v, want a not started error", err)
	}
}

func TestServer_BadConfigRefusedBeforeAnyChange(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*teal.DNSConfig)
		want   string
	}{
		{"record outside the zone", func(c *teal.DNSConfig) { c.Record = "shop.other.test." }, "not inside zone"},
		{"zone not qualified", func(c *teal.DNSConfig) { c.Zone = "example.test" }, "fully qualified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.modify(&cfg)
			s := NewServer(cfg)
			err := s.Start(context.Background())
			if err == nil {
				_ = s.Close()
				t.Fatalf("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, teal.ErrInvalid) {
				t.Fatalf("Start error = %v, want %q wrapping ErrInvalid", err, tt.want)
			}
		})
	}
	t.Run("target not set", func(t *testing.T) {
		cfg := testConfig()
		delete(cfg.Targets, teal.Green)
		s := startServer(t, cfg)
		if err := s.Check(context.Background()); err != nil {
			t.Fatalf("Check with blue only: %v", err) // Check looks at blue; Set green says what is missing
		}
		if _, err := s.Set(context.Background(), teal.All(teal.Green), nil); err == nil || !strings.Contains(err.Error(), "dns.targets.green") {
			t.Fatalf("Set = %v, want an error naming dns.targets.green", err)
		}
		if s.State() != nil {
			t.Fatalf("a failed Set changed the record: %+v", s.State())
		}
	})
}

func TestServer_StartOnBusyPortFails(t *testing.T) {
	s := startServer(t, testConfig())
	cfg := testConfig()
	cfg.Builtin.Listen = s.Addr()
	other := NewServer(cfg)
	if err := other.Start(context.Background()); err == nil {
		_ = other.Close()
		t.Fatalf("second Start on %s succeeded, want an address in use error", s.Addr())
	}
}

func TestServer_NotImplementedOpcode(t *testing.T) {
	s := startServer(t, testConfig())
	m := new(dns.Msg)
	m.SetUpdate("example.test.")
	in, _, err := new(dns.Client).Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if in.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("UPDATE rcode = %s, want NOTIMP", dns.RcodeToString[in.Rcode])
	}
}

// FuzzServer_Respond feeds the server arbitrary messages: whatever they hold, it answers
// with a message that packs, or the library refuses them before the handler.
func FuzzServer_Respond(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"shop.example.test.", dns.TypeA}, {"example.test.", dns.TypeSOA}, {"x.other.", dns.TypeNS}, {"EU.example.test.", dns.TypeANY}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		b, err := m.Pack()
		if err != nil {
			f.Fatalf("pack seed: %v", err)
		}
		f.Add(b)
	}
	cfg := testConfig()
	cfg.Weighted = true
	s := NewServer(cfg)
	s.ans.Store(&answer{serial: 1, ttl: 30})
	s.mu.Lock()
	targets, err := cfg.Answers(teal.Traffic{Blue: 40, Green: 60}, nil)
	if err != nil {
		f.Fatalf("answers: %v", err)
	}
	s.install(s.ans.Load(), &teal.DNSState{Values: teal.DNSValues(targets), TTL: 30, Serial: 2}, targets)
	s.mu.Unlock()
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil || len(req.Question) != 1 || req.Response {
			return // the server library refuses these before the handler
		}
		m := s.respond(req)
		if _, err := m.Pack(); err != nil {
			t.Fatalf("answer to %v does not pack: %v", req.Question, err)
		}
		if m.Id != req.Id {
			t.Fatalf("answer id = %d, want %d", m.Id, req.Id)
		}
	})
}
