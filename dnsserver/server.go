// Package dnsserver is teal's built-in authoritative DNS server: it serves the zone of
// dns.zone with one record, dns.record, that answers the live colour's target, or both
// colours' targets by weight during weighted steps. It is the DNS provider "builtin": switching
// is a change in memory, so it is instant and needs no credentials.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"teal.dev/teal"
)

// Defaults of a Server's exported fields.
const (
	// DefaultRefresh, DefaultRetry and DefaultExpire are the SOA timers secondaries use.
	DefaultRefresh = time.Hour
	DefaultRetry   = 10 * time.Minute
	DefaultExpire  = 7 * 24 * time.Hour
	// DefaultCheckTimeout bounds Check's query to the server itself.
	DefaultCheckTimeout = 5 * time.Second
)

// Server is the built-in authoritative server of one zone. It implements teal.DNS: Set
// replaces the record's answer atomically and bumps the zone's serial.
type Server struct {
	// Logger receives changes of the record; nil discards them.
	Logger *slog.Logger
	// Refresh, Retry and Expire are the SOA's timers. = DefaultRefresh, DefaultRetry,
	// DefaultExpire.
	Refresh, Retry, Expire time.Duration
	// CheckTimeout bounds the query Check sends to the server. = DefaultCheckTimeout.
	CheckTimeout time.Duration

	cfg  teal.DNSConfig
	zone string // lower-case, fully qualified
	rec  string // lower-case, fully qualified
	ns   string // the zone's name server: ns1.<zone>

	// mu serialises Set and Restore; queries read the answer through ans, without a lock.
	mu  sync.Mutex
	ans atomic.Pointer[answer]
	seq atomic.Uint64 // query sequence, for weighted answers

	addr    string
	servers []*dns.Server
	done    chan error // one result per server goroutine
}

var _ teal.DNS = (*Server)(nil)
var _ teal.DNSTTLSetter = (*Server)(nil)

// answer is one state of the zone, never modified once installed.
type answer struct {
	serial  uint32
	ttl     uint32
	rtype   uint16   // dns.TypeA, TypeAAAA or TypeCNAME; 0 before the first Set
	values  []string // canonical values, one per target
	split   []uint8  // weighted: query sequence modulo len(split) → index into values; nil otherwise
	glue    []dns.RR // addresses of ns, when the listen address names one
	state   *teal.DNSState
	changed time.Time
}

// NewServer returns a Server for cfg (provider builtin). It serves nothing until Start.
func NewServer(cfg teal.DNSConfig) *Server {
	return &Server{
		Refresh:      DefaultRefresh,
		Retry:        DefaultRetry,
		Expire:       DefaultExpire,
		CheckTimeout: DefaultCheckTimeout,
		cfg:          cfg,
		zone:         dns.CanonicalName(cfg.Zone),
		rec:          dns.CanonicalName(cfg.Record),
		ns:           "ns1." + dns.CanonicalName(cfg.Zone),
	}
}

// Start binds dns.builtin.listen on UDP and TCP (the same port: with port 0, a free one) and
// serves the zone. Until the first Set or Restore the record exists with no data.
func (s *Server) Start(ctx context.Context) error {
	if s.servers != nil {
		return errors.New("start dns server: already started")
	}
	if err := checkNames(s.cfg); err != nil {
		return fmt.Errorf("start dns server: %w", err)
	}
	pc, l, err := listen(ctx, s.cfg.Builtin.Listen)
	if err != nil {
		return fmt.Errorf("start dns server on %s: %w", s.cfg.Builtin.Listen, err)
	}
	s.addr = pc.LocalAddr().String()
	// The serial starts at the clock in seconds, so that it is ahead of any serial an earlier
	// run served even when nothing was persisted.
	s.ans.Store(&answer{serial: uint32(time.Now().Unix()), ttl: teal.TTLSeconds(s.cfg.TTL), glue: s.glue()})

	mux := dns.HandlerFunc(s.serveDNS)
	s.servers = []*dns.Server{
		{PacketConn: pc, Net: "udp", Handler: mux},
		{Listener: l, Net: "tcp", Handler: mux},
	}
	s.done = make(chan error, len(s.servers))
	for _, srv := range s.servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { s.done <- srv.ActivateAndServe() }()
		// Shutdown of a server that has not started yet is refused, and it would then
		// serve forever: Start returns only once both are running.
		select {
		case <-started:
		case err := <-s.done:
			_ = s.Close()
			return fmt.Errorf("start dns server on %s: %w", s.addr, err)
		}
	}
	s.logger().Info("dns server listening", "addr", s.addr, "zone", s.zone, "record", s.rec)
	return nil
}

// listen binds addr on UDP, then the same port on TCP. With port 0 the UDP port is picked
// by the kernel and may be taken on TCP: then it tries again with another one.
func listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		l, err := lc.Listen(ctx, "tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		_ = pc.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, err
		}
	}
}

// Addr is the address the server is bound to (UDP and TCP), once started.
func (s *Server) Addr() string { return s.addr }

// Close stops serving and waits for the servers to return.
func (s *Server) Close() error {
	if s.servers == nil {
		return nil
	}
	var first error
	n := 0
	for _, srv := range s.servers {
		// A server whose start failed is not running: Shutdown says so, which is no news.
		if err := srv.Shutdown(); err == nil {
			n++
		}
	}
	for range n {
		if err := <-s.done; err != nil && first == nil {
			first = fmt.Errorf("close dns server: %w", err)
		}
	}
	s.servers = nil
	return first
}

// Check validates the configuration against the running server: the names, the targets,
// and that the server answers the zone's SOA on its address.
func (s *Server) Check(ctx context.Context) error {
	if err := checkNames(s.cfg); err != nil {
		return fmt.Errorf("check dns: %w", err)
	}
	if _, err := s.cfg.Answers(teal.All(teal.Blue), nil); err != nil {
		return fmt.Errorf("check dns: %w", err)
	}
	if s.addr == "" {
		return errors.New("check dns: the built-in dns server is not started")
	}
	ctx, cancel := context.WithTimeout(ctx, s.CheckTimeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(s.zone, dns.TypeSOA)
	q.RecursionDesired = false
	in, _, err := new(dns.Client).ExchangeContext(ctx, q, s.addr)
	if err != nil {
		return fmt.Errorf("check dns: query SOA %s at %s: %w", s.zone, s.addr, err)
	}
	if in.Rcode != dns.RcodeSuccess || len(in.Answer) != 1 {
		return fmt.Errorf("check dns: SOA %s at %s: answered %s with %d records", s.zone, s.addr, dns.RcodeToString[in.Rcode], len(in.Answer))
	}
	return nil
}

// Set makes the record answer for traffic t with the configured TTL; see SetTTL.
func (s *Server) Set(ctx context.Context, t teal.Traffic, prev *teal.DNSState) (*teal.DNSState, error) {
	return s.SetTTL(ctx, t, s.cfg.TTL, prev)
}

// SetTTL makes the record answer for traffic t, with ttl: one target, or with Weighted and a
// split each query answers one of both targets, chosen by weight. The zone's serial goes up,
// and is never below prev's, so that it does not go back after a restart. There is no one
// else who could change the record, so prev is never a conflict.
func (s *Server) SetTTL(_ context.Context, t teal.Traffic, ttl time.Duration, prev *teal.DNSState) (*teal.DNSState, error) {
	targets, err := s.cfg.Answers(t, prev)
	if err != nil {
		return nil, fmt.Errorf("set dns record %s: %w", s.rec, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.ans.Load()
	if cur == nil {
		return nil, fmt.Errorf("set dns record %s: the built-in dns server is not started", s.rec)
	}
	serial := cur.serial + 1
	if prev != nil && prev.Serial >= serial {
		serial = prev.Serial + 1
	}
	if serial == 0 {
		serial = 1 // serials wrap (RFC 1982); 0 reads as "unset" in DNSState
	}
	now := time.Now().UTC()
	st := &teal.DNSState{Traffic: t, Values: teal.DNSValues(targets), TTL: teal.TTLSeconds(ttl), Serial: serial, Changed: now}
	s.install(cur, st, targets)
	s.logger().Info("dns record set", "record", s.rec, "values", st.Values, "ttl", st.TTL, "serial", serial,
		"blue", t.Blue, "green", t.Green)
	return st, nil
}

// Restore serves st, a state persisted by an earlier Set, as it was, serial included: the
// server picks up after a restart where it left off, before the controller changes anything.
func (s *Server) Restore(st *teal.DNSState) error {
	targets, err := s.cfg.Answers(st.Traffic, st)
	if err != nil {
		return fmt.Errorf("restore dns record %s: %w", s.rec, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.ans.Load()
	if cur == nil {
		return fmt.Errorf("restore dns record %s: the built-in dns server is not started", s.rec)
	}
	restored := *st
	if restored.Serial == 0 {
		restored.Serial = cur.serial
	}
	s.install(cur, &restored, targets)
	return nil
}

// install replaces the served answer; s.mu is held.
func (s *Server) install(cur *answer, st *teal.DNSState, targets []teal.DNSTarget) {
	a := &answer{
		serial:  st.Serial,
		ttl:     st.TTL,
		rtype:   dns.StringToType[teal.DNSRecordType(targets[0].Value)],
		values:  st.Values,
		glue:    cur.glue,
		state:   st,
		changed: st.Changed,
	}
	if len(targets) == 2 {
		a.split = spread(targets[0].Weight, targets[1].Weight)
	}
	s.ans.Store(a)
}

// State is what the record answers now; nil before the first Set or Restore.
func (s *Server) State() *teal.DNSState {
	a := s.ans.Load()
	if a == nil || a.state == nil {
		return nil
	}
	st := *a.state
	return &st
}

// spread returns a+b slots of which exactly b are 1, evenly interleaved, so that every a+b
// consecutive queries answer each target exactly by its weight.
func spread(a, b int) []uint8 {
	total := a + b
	s := make([]uint8, total)
	for i := range s {
		if (i+1)*b/total > i*b/total {
			s[i] = 1
		}
	}
	return s
}

// glue returns the addresses of the zone's name server: the listen address, when it is a
// specific one.
func (s *Server) glue() []dns.RR {
	host, _, err := net.SplitHostPort(s.addr)
	if err != nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return nil
	}
	hdr := dns.RR_Header{Name: s.ns, Class: dns.ClassINET, Ttl: teal.TTLSeconds(s.cfg.TTL)}
	if ip.Is4() {
		hdr.Rrtype = dns.TypeA
		return []dns.RR{&dns.A{Hdr: hdr, A: ip.AsSlice()}}
	}
	hdr.Rrtype = dns.TypeAAAA
	return []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()}}
}

// checkNames checks the zone and the record: fully qualified, the record inside the zone.
func checkNames(cfg teal.DNSConfig) error {
	if _, ok := dns.IsDomainName(cfg.Zone); !ok || !dns.IsFqdn(cfg.Zone) {
		return fmt.Errorf("dns.zone %q: want a fully qualified name, like example.test.: %w", cfg.Zone, teal.ErrInvalid)
	}
	if _, ok := dns.IsDomainName(cfg.Record); !ok || !dns.IsFqdn(cfg.Record) {
		return fmt.Errorf("dns.record %q: want a fully qualified name, like shop.example.test.: %w", cfg.Record, teal.ErrInvalid)
	}
	if !dns.IsSubDomain(dns.CanonicalName(cfg.Zone), dns.CanonicalName(cfg.Record)) {
		return fmt.Errorf("dns.record %q: not inside zone %s: %w", cfg.Record, cfg.Zone, teal.ErrInvalid)
	}
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// serveDNS answers one query, authoritatively.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := s.respond(req)
	if w.RemoteAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	// A client that went away is no error of the server's; there is nobody to tell.
	_ = w.WriteMsg(m)
}

// respond builds the answer to req from the answer in force, read once.
func (s *Server) respond(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = false
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(dns.DefaultMsgSize, false)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	if !dns.IsSubDomain(s.zone, name) {
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	a := s.ans.Load()
	hdr := func(rtype uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: rtype, Class: dns.ClassINET, Ttl: ttl}
	}
	switch name {
	case s.zone:
		switch q.Qtype {
		case dns.TypeSOA:
			m.Answer = append(m.Answer, s.soa(a))
		case dns.TypeNS:
			m.Answer = append(m.Answer, &dns.NS{Hdr: hdr(dns.TypeNS, a.ttl), Ns: s.ns})
			m.Extra = append(m.Extra, a.glue...)
		case dns.TypeANY:
			m.Answer = append(m.Answer, s.soa(a), &dns.NS{Hdr: hdr(dns.TypeNS, a.ttl), Ns: s.ns})
		}
		if s.rec == s.zone && q.Qtype != dns.TypeSOA && q.Qtype != dns.TypeNS {
			// The record at the apex (an address: a CNAME there is refused by Validate).
			m.Answer = append(m.Answer, s.record(a, q, hdr)...)
		}
	case s.rec:
		m.Answer = append(m.Answer, s.record(a, q, hdr)...)
	case s.ns:
		for _, rr := range a.glue {
			if q.Qtype == rr.Header().Rrtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, rr)
			}
		}
	default:
		// A name with a descendant that exists is an empty non-terminal: it exists, with
		// no data. Every other name in the zone does not exist.
		if !dns.IsSubDomain(name, s.rec) && !dns.IsSubDomain(name, s.ns) {
			m.Rcode = dns.RcodeNameError
		}
	}
	if len(m.Answer) == 0 {
		// Negative answers carry the SOA, whose TTL bounds how long they are cached
		// (RFC 2308).
		m.Ns = append(m.Ns, s.soa(a))
	}
	return m
}

// record answers a query for the record: its values when the type matches (one of them, by
// weight, when weighted), the CNAME whatever the type when it is an alias.
func (s *Server) record(a *answer, q dns.Question, hdr func(uint16, uint32) dns.RR_Header) []dns.RR {
	if a.rtype == 0 {
		return nil
	}
	if a.rtype != dns.TypeCNAME && q.Qtype != a.rtype && q.Qtype != dns.TypeANY {
		return nil
	}
	v := a.values[0]
	if a.split != nil {
		v = a.values[a.split[(s.seq.Add(1)-1)%uint64(len(a.split))]]
	}
	h := hdr(a.rtype, a.ttl)
	switch a.rtype {
	case dns.TypeA:
		return []dns.RR{&dns.A{Hdr: h, A: net.ParseIP(v)}}
	case dns.TypeAAAA:
		return []dns.RR{&dns.AAAA{Hdr: h, AAAA: net.ParseIP(v)}}
	default:
		return []dns.RR{&dns.CNAME{Hdr: h, Target: v}}
	}
}

// soa is the zone's SOA record; its minimum, the negative-caching TTL, is the record's TTL.
func (s *Server) soa(a *answer) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: a.ttl},
		Ns:      s.ns,
		Mbox:    "hostmaster." + s.zone,
		Serial:  a.serial,
		Refresh: uint32(s.Refresh / time.Second),
		Retry:   uint32(s.Retry / time.Second),
		Expire:  uint32(s.Expire / time.Second),
		Minttl:  a.ttl,
	}
}
