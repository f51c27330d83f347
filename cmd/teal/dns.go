package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/dnsconfirm"
	"teal.dev/teal/dnsserver"
	"teal.dev/teal/rfc2136"
	"teal.dev/teal/route53"
)

// openDNS starts the configured DNS provider and returns it, wrapped so that every change is
// confirmed at the authoritative servers (dns.confirm) and the new colour probed through its
// endpoint. prev is the state persisted by the last server, for the built-in server to
// restore. closer stops what was started.
func openDNS(ctx context.Context, cfg teal.Config, listen string, prev *teal.DNSState, log *slog.Logger) (teal.DNS, func() error, error) {
	dc := cfg.DNS
	var (
		impl    teal.DNS
		closer  func() error
		servers []string
	)
	switch dc.Provider {
	case "builtin":
		s := dnsserver.NewServer(dc)
		s.Logger = log
		if err := s.Start(ctx); err != nil {
			return nil, nil, fmt.Errorf("start the built-in DNS server on %s: %w", dc.Builtin.Listen, err)
		}
		if prev != nil {
			if err := s.Restore(prev); err != nil {
				s.Close()
				return nil, nil, fmt.Errorf("restore the DNS record: %w", err)
			}
		}
		impl, closer, servers = s, s.Close, []string{s.Addr()}
	case "rfc2136":
		s := rfc2136.NewSwitcher(dc)
		if err := s.Open(ctx); err != nil {
			return nil, nil, fmt.Errorf("dns rfc2136: %w", err)
		}
		impl, closer, servers = s, s.Close, []string{dc.RFC2136.Server}
	case "route53":
		s := route53.NewSwitcher(dc)
		if err := s.Open(ctx); err != nil {
			return nil, nil, fmt.Errorf("dns route53: %w", err)
		}
		impl, closer = s, s.Close // authoritative servers found through NS records
	default:
		return nil, nil, fmt.Errorf("dns.provider %q: want builtin, rfc2136 or route53", dc.Provider)
	}
	if !dc.Confirm {
		return impl, closer, nil
	}
	conf := dnsconfirm.NewConfirmer()
	conf.Logger = log
	return &confirmingDNS{DNS: impl, cfg: cfg, listen: listen, servers: servers, confirmer: conf}, closer, nil
}

// confirmingDNS is a DNS whose Set returns only once the zone's authoritative servers all
// answer the new values and the colour that now takes the traffic answers through its
// endpoint; past dns.confirm_timeout it fails, and the controller moves traffic back.
type confirmingDNS struct {
	teal.DNS
	cfg       teal.Config
	listen    string
	servers   []string
	confirmer *dnsconfirm.Confirmer
}

// Set changes the record, then confirms it.
func (d *confirmingDNS) Set(ctx context.Context, t teal.Traffic, prev *teal.DNSState) (*teal.DNSState, error) {
	st, err := d.DNS.Set(ctx, t, prev)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.DNS.ConfirmTimeout)
	defer cancel()
	if err := d.confirmer.Confirm(cctx, d.cfg.DNS.Zone, d.cfg.DNS.Record, st.Values, d.servers); err != nil {
		return st, fmt.Errorf("confirm: %w", err)
	}
	col := teal.Blue
	if t.Green > t.Blue {
		col = teal.Green
	}
	if addr, ok := d.cfg.DNS.Endpoint(col, d.listen); ok {
		if err := probe(cctx, "http://"+addr+d.cfg.Health.Path); err != nil {
			return st, fmt.Errorf("%s answers in DNS but not through its endpoint %s: %w", col, addr, err)
		}
	}
	return st, nil
}

// SetTTL re-publishes the record with another TTL, when the provider can.
func (d *confirmingDNS) SetTTL(ctx context.Context, t teal.Traffic, ttl time.Duration, prev *teal.DNSState) (*teal.DNSState, error) {
	s, ok := d.DNS.(teal.DNSTTLSetter)
	if !ok {
		return nil, fmt.Errorf("dns provider %s cannot change the TTL alone", d.cfg.DNS.Provider)
	}
	return s.SetTTL(ctx, t, ttl, prev)
}

var _ teal.DNSTTLSetter = (*confirmingDNS)(nil)

func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return nil
}

// listenEndpoints binds each colour's endpoint (its DNS target's address with the listen
// port): the "load balancer" of that colour, which the record points at. bind binds (or
// inherits) the listener named endpoint-<colour>.
func listenEndpoints(cfg teal.Config, listen string, bind func(name, addr string) (net.Listener, error)) (map[teal.Color]net.Listener, error) {
	out := map[teal.Color]net.Listener{}
	for _, col := range teal.Colors {
		addr, ok := cfg.DNS.Endpoint(col, listen)
		if !ok {
			continue
		}
		ln, err := bind("endpoint-"+string(col), addr)
		if err != nil {
			for _, l := range out {
				l.Close()
			}
			return nil, fmt.Errorf("listen on %s's endpoint %s (dns.targets.%s): %w", col, addr, col, err)
		}
		out[col] = ln
	}
	return out, nil
}
