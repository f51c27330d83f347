// Package rfc2136 switches a DNS record with dynamic updates (RFC 2136) signed with TSIG
// (RFC 8945): the DNS provider "rfc2136", for BIND, Knot, PowerDNS and any primary server that
// accepts signed updates. Every switch is one UPDATE message whose prerequisite is the value teal
// set last, so a change made by someone else in between is reported, not overwritten.
package rfc2136

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"teal.dev/teal"
)

// Defaults of a Switcher's exported fields.
const (
	// DefaultTimeout bounds one exchange with the server.
	DefaultTimeout = 10 * time.Second
	// DefaultFudge is the TSIG time window: the clocks of teal and the server may differ by
	// this much.
	DefaultFudge = 300 * time.Second
)

// Switcher changes the record on the primary server with signed dynamic updates. It
// implements teal.DNS.
type Switcher struct {
	// Logger receives every change; nil discards them.
	Logger *slog.Logger
	// Timeout bounds one exchange with the server. = DefaultTimeout.
	Timeout time.Duration
	// Fudge is the TSIG time window. = DefaultFudge.
	Fudge time.Duration

	cfg    teal.DNSConfig
	zone   string // canonical
	rec    string // canonical
	key    string // canonical TSIG key name
	algo   string // miekg's algorithm name, like hmac-sha256.
	opened bool
}

var _ teal.DNS = (*Switcher)(nil)
var _ teal.DNSTTLSetter = (*Switcher)(nil)

// NewSwitcher returns a Switcher for cfg (provider rfc2136).
func NewSwitcher(cfg teal.DNSConfig) *Switcher {
	return &Switcher{Timeout: DefaultTimeout, Fudge: DefaultFudge, cfg: cfg}
}

// Open checks the configuration that needs no server: the names, the server's address, the
// TSIG key and algorithm. The secret is never part of an error.
func (s *Switcher) Open(context.Context) error {
	c := &s.cfg
	if _, ok := dns.IsDomainName(c.Zone); !ok || !dns.IsFqdn(c.Zone) {
		return fmt.Errorf("open rfc2136: dns.zone %q: want a fully qualified name, like example.test.: %w", c.Zone, teal.ErrInvalid)
	}
	if _, ok := dns.IsDomainName(c.Record); !ok || !dns.IsFqdn(c.Record) {
		return fmt.Errorf("open rfc2136: dns.record %q: want a fully qualified name, like shop.example.test.: %w", c.Record, teal.ErrInvalid)
	}
	s.zone, s.rec = dns.CanonicalName(c.Zone), dns.CanonicalName(c.Record)
	if !dns.IsSubDomain(s.zone, s.rec) {
		return fmt.Errorf("open rfc2136: dns.record %s is not inside zone %s: %w", s.rec, s.zone, teal.ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(c.RFC2136.Server); err != nil {
		return fmt.Errorf("open rfc2136: dns.rfc2136.server %q: want host:port: %w", c.RFC2136.Server, teal.ErrInvalid)
	}
	if _, ok := dns.IsDomainName(c.RFC2136.TSIGName); !ok || c.RFC2136.TSIGName == "" {
		return fmt.Errorf("open rfc2136: dns.rfc2136.tsig_name %q: want a key name, like teal.: %w", c.RFC2136.TSIGName, teal.ErrInvalid)
	}
	s.key = dns.CanonicalName(c.RFC2136.TSIGName)
	if _, err := base64.StdEncoding.DecodeString(c.RFC2136.TSIGSecret); err != nil || c.RFC2136.TSIGSecret == "" {
		return fmt.Errorf("open rfc2136: dns.rfc2136.tsig_secret: not base64 (the secret of the key, as in BIND's key statement): %w", teal.ErrInvalid)
	}
	algo, err := Algorithm(c.RFC2136.TSIGAlgorithm)
	if err != nil {
		return fmt.Errorf("open rfc2136: %w", err)
	}
	s.algo = algo
	s.opened = true
	return nil
}

// Close releases nothing: every exchange uses its own connection. It exists for the
// lifecycle every provider shares.
func (s *Switcher) Close() error { return nil }

// Algorithm maps a tsig_algorithm of teal.yaml to its DNS name.
func Algorithm(name string) (string, error) {
	switch strings.ToLower(name) {
	case "", "hmac-sha256":
		return dns.HmacSHA256, nil
	case "hmac-sha512":
		return dns.HmacSHA512, nil
	case "hmac-sha1":
		return dns.HmacSHA1, nil
	}
	return "", fmt.Errorf("dns.rfc2136.tsig_algorithm %q: want hmac-sha256, hmac-sha512 or hmac-sha1: %w", name, teal.ErrInvalid)
}

// ErrWeighted is why rfc2136 refuses dns.weighted: plain DNS has no weights.
var ErrWeighted = fmt.Errorf("dns.weighted needs provider builtin or route53 (plain DNS has no weights): %w", teal.ErrInvalid)

// Check asks the server for the zone's SOA, to see that it serves the zone, then sends a
// signed UPDATE with a prerequisite only (the SOA exists), which changes nothing but proves the
// TSIG key is accepted for updates to the zone.
func (s *Switcher) Check(ctx context.Context) error {
	if !s.opened {
		if err := s.Open(ctx); err != nil {
			return fmt.Errorf("check dns: %w", err)
		}
	}
	if s.cfg.Weighted {
		return fmt.Errorf("check dns: %w", ErrWeighted)
	}
	if _, err := s.cfg.Answers(teal.All(teal.Blue), nil); err != nil {
		return fmt.Errorf("check dns: %w", err)
	}
	server := s.cfg.RFC2136.Server
	q := new(dns.Msg)
	q.SetQuestion(s.zone, dns.TypeSOA)
	q.RecursionDesired = false
	in, err := s.exchange(ctx, q, false)
	if err != nil {
		return fmt.Errorf("check dns: query SOA %s at %s: %w", s.zone, server, err)
	}
	if in.Rcode != dns.RcodeSuccess || !in.Authoritative || !hasSOA(in.Answer, s.zone) {
		return fmt.Errorf("check dns: %s does not serve zone %s authoritatively (SOA query answered %s, %d records, AA %v)",
			server, s.zone, dns.RcodeToString[in.Rcode], len(in.Answer), in.Authoritative)
	}
	u := new(dns.Msg)
	u.SetUpdate(s.zone)
	u.RRsetUsed([]dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET}}})
	if _, err := s.update(ctx, u); err != nil {
		return fmt.Errorf("check dns: signed no-op update of %s at %s: %w", s.zone, server, err)
	}
	return nil
}

// Set makes the record answer for traffic t with the configured TTL; see SetTTL.
func (s *Switcher) Set(ctx context.Context, t teal.Traffic, prev *teal.DNSState) (*teal.DNSState, error) {
	return s.SetTTL(ctx, t, s.cfg.TTL, prev)
}

// SetTTL replaces the record's RRset with the target of traffic t and ttl, in one signed
// UPDATE whose prerequisite is that the record still holds prev's values. With no prev (the
// first switch) the prerequisite is what the record holds now, read just before. A failed
// prerequisite is an error wrapping teal.ErrConflict.
func (s *Switcher) SetTTL(ctx context.Context, t teal.Traffic, ttl time.Duration, prev *teal.DNSState) (*teal.DNSState, error) {
	if !s.opened {
		if err := s.Open(ctx); err != nil {
			return nil, fmt.Errorf("set dns record: %w", err)
		}
	}
	targets, err := s.cfg.Answers(t, prev)
	if err != nil {
		return nil, fmt.Errorf("set dns record %s: %w", s.rec, err)
	}
	if len(targets) > 1 {
		return nil, fmt.Errorf("set dns record %s: %w", s.rec, ErrWeighted)
	}
	values := teal.DNSValues(targets)
	rtype := dns.StringToType[teal.DNSRecordType(values[0])]

	var expect []string
	var expectType uint16
	if prev != nil && len(prev.Values) > 0 {
		expect = prev.Values
		expectType = dns.StringToType[teal.DNSRecordType(prev.Values[0])]
	} else {
		expectType = rtype
		expect, err = s.current(ctx, rtype)
		if err != nil {
			return nil, fmt.Errorf("set dns record %s: read it before the first change: %w", s.rec, err)
		}
	}

	u := new(dns.Msg)
	u.SetUpdate(s.zone)
	if len(expect) == 0 {
		u.RRsetNotUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: s.rec, Rrtype: expectType, Class: dns.ClassINET}}})
	} else {
		pre := make([]dns.RR, 0, len(expect))
		for _, v := range expect {
			rr, err := newRR(s.rec, v, 0)
			if err != nil {
				return nil, fmt.Errorf("set dns record %s: previous value %q: %w", s.rec, v, err)
			}
			pre = append(pre, rr)
		}
		u.Used(pre)
	}
	secs := teal.TTLSeconds(ttl)
	u.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: s.rec, Rrtype: expectType, Class: dns.ClassINET}}})
	if expectType != rtype {
		u.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: s.rec, Rrtype: rtype, Class: dns.ClassINET}}})
	}
	add := make([]dns.RR, 0, len(values))
	for _, v := range values {
		rr, err := newRR(s.rec, v, secs)
		if err != nil {
			return nil, fmt.Errorf("set dns record %s: %w", s.rec, err)
		}
		add = append(add, rr)
	}
	u.Insert(add)

	in, err := s.update(ctx, u)
	if err != nil {
		if errors.Is(err, teal.ErrConflict) {
			now, qerr := s.current(ctx, expectType)
			holds := strings.Join(now, ", ")
			if qerr != nil {
				holds = "(unknown: " + qerr.Error() + ")"
			} else if holds == "" {
				holds = "nothing"
			}
			return nil, fmt.Errorf("set dns record %s at %s: record changed outside teal: expected %s, it holds %s (%s); check who changed it, then set it back or accept it: %w",
				s.rec, s.cfg.RFC2136.Server, describe(expect), holds, dns.RcodeToString[in.Rcode], teal.ErrConflict)
		}
		return nil, fmt.Errorf("set dns record %s at %s: %w", s.rec, s.cfg.RFC2136.Server, err)
	}
	st := &teal.DNSState{Traffic: t, Values: values, TTL: secs, Changed: time.Now().UTC()}
	s.logger().Info("dns record updated", "record", s.rec, "server", s.cfg.RFC2136.Server,
		"from", expect, "to", values, "ttl", secs)
	return st, nil
}

// describe writes the values a prerequisite expected.
func describe(values []string) string {
	if len(values) == 0 {
		return "no record"
	}
	return strings.Join(values, ", ")
}

// current reads the record's RRset of rtype from the server, authoritatively.
func (s *Switcher) current(ctx context.Context, rtype uint16) ([]string, error) {
	q := new(dns.Msg)
	q.SetQuestion(s.rec, rtype)
	q.RecursionDesired = false
	in, err := s.exchange(ctx, q, false)
	if err != nil {
		return nil, fmt.Errorf("query %s %s: %w", s.rec, dns.TypeToString[rtype], err)
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("query %s %s: answered %s", s.rec, dns.TypeToString[rtype], dns.RcodeToString[in.Rcode])
	}
	var vs []string
	for _, rr := range in.Answer {
		if rr.Header().Rrtype != rtype || !strings.EqualFold(rr.Header().Name, s.rec) {
			continue
		}
		vs = append(vs, rrValue(rr))
	}
	slices.Sort(vs)
	return vs, nil
}

// update sends a signed UPDATE and classifies its answer: a failed prerequisite wraps
// teal.ErrConflict, a refused key says how to fix it.
func (s *Switcher) update(ctx context.Context, u *dns.Msg) (*dns.Msg, error) {
	u.SetTsig(s.key, s.algo, uint16(s.Fudge/time.Second), time.Now().Unix())
	in, err := s.exchange(ctx, u, true)
	if in != nil {
		if t := in.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
			return in, s.tsigError(dns.RcodeToString[int(t.Error)])
		}
	}
	if err != nil {
		if in != nil && errors.Is(err, dns.ErrSig) {
			return in, fmt.Errorf("the server's answer is not signed by key %s (a different secret on the server?): %w", s.key, err)
		}
		return in, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		return in, nil
	case dns.RcodeNXRrset, dns.RcodeYXRrset, dns.RcodeNameError, dns.RcodeYXDomain:
		return in, fmt.Errorf("prerequisite failed (%s): %w", dns.RcodeToString[in.Rcode], teal.ErrConflict)
	case dns.RcodeNotAuth:
		return in, s.tsigError("NOTAUTH")
	case dns.RcodeRefused:
		return in, fmt.Errorf("update REFUSED: the server does not let key %s update zone %s (BIND: allow-update { key %q; }; in the zone)",
			s.key, s.zone, strings.TrimSuffix(s.key, "."))
	case dns.RcodeNotZone:
		return in, fmt.Errorf("update NOTZONE: %s is not a zone the server is primary for", s.zone)
	default:
		return in, fmt.Errorf("update answered %s", dns.RcodeToString[in.Rcode])
	}
}

// tsigError is the error for a key the server rejected. It names the key and algorithm,
// never the secret.
func (s *Switcher) tsigError(code string) error {
	hint := "check dns.rfc2136.tsig_name, tsig_secret and tsig_algorithm against the server's key"
	switch code {
	case "BADSIG":
		hint = "wrong dns.rfc2136.tsig_secret (or algorithm) for that key"
	case "BADKEY":
		hint = "the server has no key of that name and algorithm: check dns.rfc2136.tsig_name and tsig_algorithm"
	case "BADTIME":
		hint = "the clocks of teal and the server differ by more than the TSIG window"
	}
	return fmt.Errorf("TSIG key %s (%s) rejected by the server: %s: %s", s.key, strings.TrimSuffix(s.algo, "."), code, hint)
}

// exchange sends m to the server over TCP (updates and their answers may exceed a datagram),
// signed when signed is set.
func (s *Switcher) exchange(ctx context.Context, m *dns.Msg, signed bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	c := &dns.Client{Net: "tcp", Timeout: s.Timeout}
	if signed {
		c.TsigSecret = map[string]string{s.key: s.cfg.RFC2136.TSIGSecret}
	}
	in, _, err := c.ExchangeContext(ctx, m, s.cfg.RFC2136.Server)
	return in, err
}

// newRR makes the record's RR for a canonical value.
func newRR(name, value string, ttl uint32) (dns.RR, error) {
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
	switch teal.DNSRecordType(value) {
	case "A":
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: net.ParseIP(value).To4()}, nil
	case "AAAA":
		hdr.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(value)}, nil
	}
	if _, ok := dns.IsDomainName(value); !ok {
		return nil, fmt.Errorf("target %q is not an address or a host name: %w", value, teal.ErrInvalid)
	}
	hdr.Rrtype = dns.TypeCNAME
	return &dns.CNAME{Hdr: hdr, Target: dns.Fqdn(value)}, nil
}

// rrValue is the canonical value of an A, AAAA or CNAME record.
func rrValue(rr dns.RR) string {
	switch rr := rr.(type) {
	case *dns.A:
		return teal.CanonicalDNSValue(rr.A.String())
	case *dns.AAAA:
		return teal.CanonicalDNSValue(rr.AAAA.String())
	case *dns.CNAME:
		return teal.CanonicalDNSValue(rr.Target)
	}
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// hasSOA reports whether rrs hold the SOA of zone.
func hasSOA(rrs []dns.RR, zone string) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeSOA && strings.EqualFold(rr.Header().Name, zone) {
			return true
		}
	}
	return false
}

func (s *Switcher) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
