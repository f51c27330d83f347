// Package dnsconfirm confirms a DNS change at the source: it asks each of the zone's
// authoritative servers directly, without recursion and so without any cache in between, until
// every one of them answers the new value. A provider saying "done" (Route 53's INSYNC, an
// UPDATE's NOERROR) is a promise; the servers' answers are the fact.
package dnsconfirm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"teal.dev/teal"
)

// Defaults of a Confirmer's exported fields.
const (
	// DefaultInterval is the pause between rounds of queries to the servers not yet confirmed.
	DefaultInterval = 500 * time.Millisecond
	// DefaultQueryTimeout bounds one query to one server.
	DefaultQueryTimeout = 2 * time.Second
	// DefaultPort is the port of servers found through NS records.
	DefaultPort = "53"
)

// Confirmer asks authoritative servers for a record until they all answer what is wanted.
type Confirmer struct {
	// Logger receives each round's progress at debug level; nil discards it.
	Logger *slog.Logger
	// Interval is the pause between rounds. = DefaultInterval.
	Interval time.Duration
	// QueryTimeout bounds one query. = DefaultQueryTimeout.
	QueryTimeout time.Duration
	// Resolver finds the zone's name servers and their addresses when no servers are given;
	// nil is net.DefaultResolver.
	Resolver *net.Resolver
	// Port is the port of the servers found through NS records. = DefaultPort.
	Port string
}

// NewConfirmer returns a Confirmer with the defaults.
func NewConfirmer() *Confirmer {
	return &Confirmer{Interval: DefaultInterval, QueryTimeout: DefaultQueryTimeout, Port: DefaultPort}
}

// Confirm is NewConfirmer().Confirm.
func Confirm(ctx context.Context, zone, record string, want, servers []string) error {
	return NewConfirmer().Confirm(ctx, zone, record, want, servers)
}

// Confirm returns nil once each authoritative server of zone answers record with the values
// of want and nothing else (one of them per answer is enough when the record is weighted and
// answers one target per query). servers are host:port addresses to ask; when empty, the
// zone's NS records and their addresses are looked up. ctx bounds the wait (give it
// dns.confirm_timeout): when it ends first, the error names each server still not answering
// want, and what it answers instead.
func (c *Confirmer) Confirm(ctx context.Context, zone, record string, want, servers []string) error {
	if len(want) == 0 {
		return fmt.Errorf("confirm %s: no values to wait for: %w", record, teal.ErrInvalid)
	}
	wanted := make([]string, len(want))
	for i, v := range want {
		wanted[i] = teal.CanonicalDNSValue(v)
	}
	slices.Sort(wanted)
	qtype := dns.StringToType[teal.DNSRecordType(wanted[0])]
	if len(servers) == 0 {
		found, err := c.nameServers(ctx, zone)
		if err != nil {
			return fmt.Errorf("confirm %s: %w", record, err)
		}
		servers = found
	}

	pending := slices.Clone(servers)
	last := make(map[string]string, len(servers)) // server → what it answered last
	tick := time.NewTicker(max(c.Interval, time.Millisecond))
	defer tick.Stop()
	for round := 1; ; round++ {
		// The servers are asked at once, so that one that does not answer costs one query
		// timeout per round, not one per server.
		results := make([]result, len(pending))
		var wg sync.WaitGroup
		for i, srv := range pending {
			wg.Go(func() {
				got, err := c.ask(ctx, srv, dns.Fqdn(record), qtype)
				results[i] = result{got, err}
			})
		}
		wg.Wait()
		still := pending[:0]
		for i, srv := range pending {
			r := results[i]
			switch {
			case r.err != nil && expired(ctx) && last[srv] != "":
				// Cut short by the deadline: what the server answered before says more.
				still = append(still, srv)
			case r.err != nil:
				last[srv] = r.err.Error()
				still = append(still, srv)
			case !matches(r.values, wanted):
				last[srv] = "answers " + describe(r.values)
				still = append(still, srv)
			}
		}
		pending = still
		c.logger().Debug("dns confirmation round", "record", record, "round", round, "want", wanted, "pending", pending)
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			parts := make([]string, len(pending))
			for i, srv := range pending {
				parts[i] = srv + " " + last[srv]
			}
			return fmt.Errorf("confirm %s = %s: %d of %d authoritative servers do not answer it yet: %s: %w",
				record, strings.Join(wanted, ", "), len(pending), len(servers), strings.Join(parts, "; "), ctx.Err())
		case <-tick.C:
		}
	}
}

// expired reports whether ctx has ended or its deadline has passed; the latter can be true a
// moment before the former, and a query cut short by the deadline fails in that moment too.
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// result is one server's answer in a round.
type result struct {
	values []string
	err    error
}

// matches reports whether got, sorted, is wanted, or one or more of wanted's values when more
// than one is wanted (a weighted record answers by weight, per query).
func matches(got, wanted []string) bool {
	if len(got) == 0 {
		return false
	}
	if len(wanted) == 1 {
		return slices.Equal(got, wanted)
	}
	for _, v := range got {
		if _, ok := slices.BinarySearch(wanted, v); !ok {
			return false
		}
	}
	return true
}

func describe(values []string) string {
	if len(values) == 0 {
		return "nothing"
	}
	return strings.Join(values, ", ")
}

// ask queries srv for name without recursion and returns the values of the answer's records
// of qtype (a CNAME answers every type), sorted. An answer that is not authoritative is an
// error: it may come from a cache.
func (c *Confirmer) ask(ctx context.Context, srv, name string, qtype uint16) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.QueryTimeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = false
	in, _, err := (&dns.Client{Timeout: c.QueryTimeout}).ExchangeContext(ctx, q, srv)
	if err == nil && in.Truncated {
		in, _, err = (&dns.Client{Net: "tcp", Timeout: c.QueryTimeout}).ExchangeContext(ctx, q, srv)
	}
	if err != nil {
		return nil, fmt.Errorf("does not answer (%v)", err)
	}
	if in.Rcode != dns.RcodeSuccess {
		return nil, errors.New("answers " + dns.RcodeToString[in.Rcode])
	}
	if !in.Authoritative {
		return nil, errors.New("answers without authority (not a server of the zone?)")
	}
	var vs []string
	for _, rr := range in.Answer {
		if !strings.EqualFold(rr.Header().Name, name) {
			continue
		}
		switch rr := rr.(type) {
		case *dns.A:
			vs = append(vs, teal.CanonicalDNSValue(rr.A.String()))
		case *dns.AAAA:
			vs = append(vs, teal.CanonicalDNSValue(rr.AAAA.String()))
		case *dns.CNAME:
			vs = append(vs, teal.CanonicalDNSValue(rr.Target))
		}
	}
	slices.Sort(vs)
	return vs, nil
}

// nameServers looks up zone's NS records and the addresses of each name server.
func (c *Confirmer) nameServers(ctx context.Context, zone string) ([]string, error) {
	r := c.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	nss, err := r.LookupNS(ctx, zone)
	if err != nil {
		return nil, fmt.Errorf("look up the name servers of %s: %w", zone, err)
	}
	var servers []string
	for _, ns := range nss {
		addrs, err := r.LookupHost(ctx, ns.Host)
		if err != nil {
			return nil, fmt.Errorf("look up name server %s of %s: %w", ns.Host, zone, err)
		}
		for _, a := range addrs {
			servers = append(servers, net.JoinHostPort(a, c.Port))
		}
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("zone %s has no name server addresses", zone)
	}
	slices.Sort(servers)
	return slices.Compact(servers), nil
}

func (c *Confirmer) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
