package teal

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DNSConfig is teal.yaml's dns section; Provider "" means DNS switching is off.
type DNSConfig struct {
	Provider string `yaml:"provider"` // builtin | rfc2136 | route53; "" = off
	Zone     string `yaml:"zone"`     // fully qualified, like "example.test."
	Record   string `yaml:"record"`   // fully qualified, like "shop.example.test."; inside Zone
	// TTL is the record's TTL while teal is in charge of it, and the longest a well-behaved
	// resolver keeps the old answer after a switch. = 30s.
	TTL time.Duration `yaml:"ttl"`
	// Targets is what the record answers per colour: an IPv4 address (A), an IPv6 address
	// (AAAA) or a host name (CNAME). Both colours are set, and of the same kind, so that a
	// switch changes the record's value, never its type.
	Targets map[Color]string `yaml:"targets"`
	// Weighted makes weighted steps answer by weight (builtin: per query; route53: weighted
	// records). Plain DNS has no weights, so rfc2136 refuses it.
	Weighted bool `yaml:"weighted"`
	Builtin  struct {
		Listen string `yaml:"listen"` // host:port, UDP and TCP; = 127.0.0.1:5353
	} `yaml:"builtin"`
	RFC2136 struct {
		Server        string `yaml:"server"`         // the primary's host:port
		TSIGName      string `yaml:"tsig_name"`      // key name, like "teal."
		TSIGSecret    string `yaml:"tsig_secret"`    // base64; a secret: never shown in errors
		TSIGAlgorithm string `yaml:"tsig_algorithm"` // hmac-sha256 | hmac-sha512 | hmac-sha1; = hmac-sha256
	} `yaml:"rfc2136"`
	Route53 struct {
		HostedZoneID string `yaml:"hosted_zone_id"`
		Region       string `yaml:"region"`
		// Endpoint replaces the AWS endpoint (a Route 53 compatible API elsewhere); "" = AWS.
		Endpoint string `yaml:"endpoint"`
	} `yaml:"route53"`
	// Confirm makes every change wait until the zone's authoritative servers answer it. = true.
	Confirm bool `yaml:"confirm"`
	// ConfirmTimeout bounds that wait; then the switch fails and is rolled back. = 60s.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// Quiet is how long the old colour's endpoint must have seen no request before the old
	// colour is terminated (or keep_old expired): clients that ignore TTLs still reach it.
	// = 1m.
	Quiet time.Duration `yaml:"quiet"`
	// RestTTL is the record's TTL between releases (an extension): when set, a release
	// lowers the record to TTL as it starts, its switch waits until RestTTL has passed since
	// (so caches forgot the long TTL), and the release's end restores RestTTL. 0 = TTL all
	// the time.
	RestTTL time.Duration `yaml:"rest_ttl"`
}

// DNS defaults.
const (
	DefaultDNSTTL            = 30 * time.Second
	DefaultDNSListen         = "127.0.0.1:5353"
	DefaultTSIGAlgorithm     = "hmac-sha256"
	DefaultDNSConfirm        = true
	DefaultDNSConfirmTimeout = 60 * time.Second
	DefaultDNSQuiet          = time.Minute
)

// DefaultDNSConfig returns the dns section's defaults, with DNS switching off.
func DefaultDNSConfig() DNSConfig {
	c := DNSConfig{
		TTL:            DefaultDNSTTL,
		Confirm:        DefaultDNSConfirm,
		ConfirmTimeout: DefaultDNSConfirmTimeout,
		Quiet:          DefaultDNSQuiet,
	}
	c.Builtin.Listen = DefaultDNSListen
	c.RFC2136.TSIGAlgorithm = DefaultTSIGAlgorithm
	return c
}

// DNSState is what teal last set, persisted (System gets a field for it — the lead adds that).
type DNSState struct {
	Traffic Traffic `json:"traffic"`
	// Values are the record's values as teal set them, in Answers order (canonical IP text,
	// or a lower-case fully qualified name).
	Values []string `json:"values"`
	TTL    uint32   `json:"ttl"` // seconds
	// Serial is the zone's SOA serial after the change, where teal owns the zone (builtin),
	// so that it never goes back after a restart.
	Serial  uint32    `json:"serial,omitempty"`
	Changed time.Time `json:"changed"`
}

// DNS switches the record between the colours' targets.
type DNS interface {
	// Check validates against the provider before any change: the zone is served,
	// credentials/TSIG work, the record is in the zone; an error names what failed.
	Check(ctx context.Context) error
	// Set makes the record answer for traffic t (the live colour's target; weighted answers
	// when both shares are > 0 and Weighted). prev is what teal set last (nil the first
	// time): providers that can compare-and-swap refuse with an error wrapping ErrConflict
	// ("record changed outside teal: …") when the record no longer holds it. Returns the new
	// state to persist.
	Set(ctx context.Context, t Traffic, prev *DNSState) (*DNSState, error)
}

// DNSTTLSetter is implemented by every provider teal has: SetTTL is Set with an explicit TTL,
// for the TTL discipline around a release (lower to dns.ttl before the switch, restore
// dns.rest_ttl after it). Set(ctx, t, prev) is SetTTL(ctx, t, cfg.TTL, prev).
type DNSTTLSetter interface {
	SetTTL(ctx context.Context, t Traffic, ttl time.Duration, prev *DNSState) (*DNSState, error)
}

// DNSTarget is one value the record answers, and its weight.
type DNSTarget struct {
	Color  Color
	Value  string // canonical: IP text, or a lower-case fully qualified name
	Weight int    // the colour's share; 100 when the record answers this value alone
}

// Answers returns what the record answers for traffic t: with Weighted and both shares
// over 0, both colours' targets (blue first) with their shares as weights; otherwise the
// target of the colour with the larger share alone. A 50/50 split without Weighted keeps the
// colour prev pointed at (blue when there is no prev). Traffic with no share at all is an
// error: the record cannot point at nothing.
func (c *DNSConfig) Answers(t Traffic, prev *DNSState) ([]DNSTarget, error) {
	if t.Blue < 0 || t.Green < 0 || t.Blue+t.Green != 100 {
		return nil, fmt.Errorf("traffic blue %d%% green %d%%: want shares adding up to 100: %w", t.Blue, t.Green, ErrInvalid)
	}
	target := func(col Color, w int) (DNSTarget, error) {
		v, ok := c.Targets[col]
		if !ok || v == "" {
			return DNSTarget{}, fmt.Errorf("dns.targets.%s: not set: %w", col, ErrInvalid)
		}
		return DNSTarget{Color: col, Value: CanonicalDNSValue(v), Weight: w}, nil
	}
	if c.Weighted && t.Blue > 0 && t.Green > 0 {
		b, err := target(Blue, t.Blue)
		if err != nil {
			return nil, err
		}
		g, err := target(Green, t.Green)
		if err != nil {
			return nil, err
		}
		return []DNSTarget{b, g}, nil
	}
	col := Blue
	switch {
	case t.Green > t.Blue:
		col = Green
	case t.Green == t.Blue && prev != nil && prev.Traffic.Green > prev.Traffic.Blue:
		col = Green
	}
	one, err := target(col, 100)
	if err != nil {
		return nil, err
	}
	return []DNSTarget{one}, nil
}

// DNSValues returns the values of targets, in order.
func DNSValues(targets []DNSTarget) []string {
	vs := make([]string, len(targets))
	for i, t := range targets {
		vs[i] = t.Value
	}
	return vs
}

// DNSRecordType is the type of record that answers value: "A" for an IPv4 address, "AAAA"
// for an IPv6 address, "CNAME" for anything else (a host name).
func DNSRecordType(value string) string {
	ip, err := netip.ParseAddr(value)
	switch {
	case err != nil:
		return "CNAME"
	case ip.Is4() || ip.Is4In6():
		return "A"
	default:
		return "AAAA"
	}
}

// CanonicalDNSValue writes a target the way DNS answers show it, so that values compare: an
// address in its canonical text (IPv4-mapped IPv6 as IPv4), a name lower-cased and fully
// qualified.
func CanonicalDNSValue(v string) string {
	if ip, err := netip.ParseAddr(v); err == nil {
		return ip.Unmap().String()
	}
	v = strings.ToLower(v)
	if !strings.HasSuffix(v, ".") {
		v += "."
	}
	return v
}

// TTLSeconds is d in whole seconds for a DNS TTL, at least 1.
func TTLSeconds(d time.Duration) uint32 {
	s := d / time.Second
	switch {
	case s < 1:
		return 1
	case s > 1<<31-1:
		return 1<<31 - 1
	}
	return uint32(s)
}

// Endpoint returns the address colour col's endpoint listens on: its target address with the
// port of listen (the production listener), like 127.0.0.2:8080. A target that is a host name
// is a load balancer teal does not run: then ok is false.
func (c *DNSConfig) Endpoint(col Color, listen string) (addr string, ok bool) {
	ip, err := netip.ParseAddr(c.Targets[col])
	if err != nil {
		return "", false
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", false
	}
	return net.JoinHostPort(ip.Unmap().String(), port), true
}

// MaxDNSTTL bounds dns.ttl and dns.rest_ttl: a longer TTL keeps clients on the old colour for
// longer than any release should wait.
const MaxDNSTTL = 24 * time.Hour

// Validate checks the dns section alone and returns a ConfigErrors with one error per problem,
// naming teal.yaml. ParseConfigDNS checks it with the rest of the file.
func (c *DNSConfig) Validate() error {
	v := &validator{file: "teal.yaml"}
	c.validate(v, nil)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

// validate checks the dns section. cfg, when given, is the rest of the file, for address
// clashes. Only the section of the chosen provider is checked: the others may hold settings
// kept for later. tsig_secret is never part of a message.
func (c *DNSConfig) validate(v *validator, cfg *Config) {
	switch c.Provider {
	case "":
		if c.Zone != "" || c.Record != "" || len(c.Targets) > 0 {
			v.add("dns.provider", "", "required to switch DNS: builtin, rfc2136 or route53 (leave the dns section out to switch the router only)")
		}
		return
	case "builtin", "rfc2136", "route53":
	default:
		v.add("dns.provider", c.Provider, "want builtin, rfc2136 or route53")
	}

	zoneOK := checkFQDN(v, "dns.zone", c.Zone, "example.test.")
	if checkFQDN(v, "dns.record", c.Record, "shop.example.test.") && zoneOK && !inZone(c.Record, c.Zone) {
		v.add("dns.record", c.Record, fmt.Sprintf("not inside dns.zone %s; want a name ending in .%s", c.Zone, c.Zone))
	}
	checkTTL(v, "dns.ttl", c.TTL)
	c.validateTargets(v)

	if c.Weighted && c.Provider == "rfc2136" {
		v.add("dns.weighted", "true", "needs provider builtin or route53: plain DNS (RFC 2136) has no weights")
	}
	v.positive("dns.confirm_timeout", c.ConfirmTimeout)
	v.nonNegative("dns.quiet", c.Quiet)
	if c.RestTTL != 0 {
		checkTTL(v, "dns.rest_ttl", c.RestTTL)
		if c.RestTTL > 0 && c.RestTTL < c.TTL {
			v.add("dns.rest_ttl", c.RestTTL.String(), fmt.Sprintf("shorter than dns.ttl (%s): the TTL between releases is the longer one; want 0 or at least %s", c.TTL, c.TTL))
		}
	}

	switch c.Provider {
	case "builtin":
		checkHostPort(v, "dns.builtin.listen", c.Builtin.Listen, true, "127.0.0.1:5353")
		if cfg != nil {
			for _, a := range []struct{ key, value string }{{"listen", cfg.Listen}, {"preview", cfg.Preview}, {"admin", cfg.Admin}} {
				if a.value != "" && a.value == c.Builtin.Listen && !strings.HasSuffix(a.value, ":0") {
					v.add("dns.builtin.listen", c.Builtin.Listen, fmt.Sprintf("same address as %s; DNS over TCP needs its own port", a.key))
				}
			}
		}
	case "rfc2136":
		r := &c.RFC2136
		checkHostPort(v, "dns.rfc2136.server", r.Server, false, "192.0.2.53:53")
		switch {
		case r.TSIGName == "":
			v.add("dns.rfc2136.tsig_name", "", "required: the name of the TSIG key the server allows to update the zone, like teal.")
		case !validDNSName(r.TSIGName):
			v.add("dns.rfc2136.tsig_name", r.TSIGName, "not a key name: want a DNS name, like teal. or teal-update")
		}
		if r.TSIGSecret == "" {
			v.add("dns.rfc2136.tsig_secret", "", "required: the key's secret, base64 as in BIND's key statement, like ${TSIG_SECRET}")
		} else if _, err := base64.StdEncoding.DecodeString(r.TSIGSecret); err != nil {
			v.add("dns.rfc2136.tsig_secret", "", "not base64 (the key's secret, as in BIND's key statement or tsig-keygen's output)")
		}
		switch strings.ToLower(r.TSIGAlgorithm) {
		case "hmac-sha256", "hmac-sha512", "hmac-sha1":
		default:
			v.add("dns.rfc2136.tsig_algorithm", r.TSIGAlgorithm, "want hmac-sha256, hmac-sha512 or hmac-sha1")
		}
	case "route53":
		r := &c.Route53
		if r.HostedZoneID == "" {
			v.add("dns.route53.hosted_zone_id", "", "required: the hosted zone's ID, like Z0123456789ABCDEFGHIJ")
		}
		if r.Region == "" {
			v.add("dns.route53.region", "", "required: the AWS region to sign requests for, like us-east-1")
		}
		if r.Endpoint != "" {
			u, err := url.Parse(r.Endpoint)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				v.add("dns.route53.endpoint", r.Endpoint, "want a URL like https://route53.example.net (leave it out for AWS)")
			}
		}
	}
}

// validateTargets checks dns.targets: both colours, each an address or a host name, of the same
// kind, different, and no CNAME that could not be.
func (c *DNSConfig) validateTargets(v *validator) {
	kinds := map[Color]string{}
	for _, col := range Colors {
		key := "dns.targets." + string(col)
		t, ok := c.Targets[col]
		if !ok || t == "" {
			v.add(key, "", fmt.Sprintf("required: what the record answers when %s is live, an address (A/AAAA) or a host name (CNAME), like 127.0.0.2", col))
			continue
		}
		if ip, err := netip.ParseAddr(t); err == nil {
			if ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
				v.add(key, t, "not an address a client can connect to")
				continue
			}
		} else if !validDNSName(t) {
			v.add(key, t, "not an IP address or a host name; want 127.0.0.2, 2001:db8::2 or blue-lb.example.net")
			continue
		}
		kind := DNSRecordType(t)
		if kind == "CNAME" {
			if c.Record != "" && strings.EqualFold(CanonicalDNSValue(t), CanonicalDNSValue(c.Record)) {
				v.add(key, t, "is dns.record itself: a CNAME to itself is a loop")
				continue
			}
			if c.Record != "" && c.Zone != "" && strings.EqualFold(CanonicalDNSValue(c.Record), CanonicalDNSValue(c.Zone)) {
				v.add(key, t, "a host name makes the record a CNAME, and dns.record is the zone's apex, where a CNAME cannot be; use addresses")
				continue
			}
		}
		kinds[col] = kind
	}
	if len(kinds) == 2 {
		switch {
		case kinds[Blue] != kinds[Green]:
			v.add("dns.targets.green", c.Targets[Green], fmt.Sprintf("a %s target while blue's is a %s; both colours must be of one kind, so that a switch changes the record's value, not its type", kinds[Green], kinds[Blue]))
		case CanonicalDNSValue(c.Targets[Blue]) == CanonicalDNSValue(c.Targets[Green]):
			v.add("dns.targets.green", c.Targets[Green], "same as dns.targets.blue: the record could not tell the colours apart")
		}
	}
}

// checkFQDN checks a required, fully qualified DNS name and reports whether it is one.
func checkFQDN(v *validator, key, name, example string) bool {
	switch {
	case name == "":
		v.add(key, "", "required: a fully qualified name, like "+example)
	case !validDNSName(name):
		v.add(key, name, "not a DNS name; want labels of letters, digits and -, like "+example)
	case !strings.HasSuffix(name, "."):
		v.add(key, name, fmt.Sprintf("want it fully qualified, with the final dot: %s.", name))
	default:
		return true
	}
	return false
}

// checkTTL checks a DNS TTL: whole seconds, 1s up to MaxDNSTTL.
func checkTTL(v *validator, key string, d time.Duration) {
	switch {
	case d < time.Second || d > MaxDNSTTL:
		v.add(key, d.String(), "want 1s to 24h")
	case d%time.Second != 0:
		v.add(key, d.String(), "want whole seconds: DNS TTLs are in seconds")
	}
}

// checkHostPort checks a host:port; port 0 (a free port) only when zeroOK.
func checkHostPort(v *validator, key, value string, zeroOK bool, example string) {
	if value == "" {
		v.add(key, "", "required: host:port, like "+example)
		return
	}
	host, port, err := net.SplitHostPort(value)
	if err != nil || host == "" {
		v.add(key, value, "want host:port, like "+example)
		return
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !zeroOK) {
		v.add(key, value, "want a port number 1..65535")
	}
}

// inZone reports whether name is zone or below it, ignoring case.
func inZone(name, zone string) bool {
	name, zone = strings.ToLower(name), strings.ToLower(zone)
	return name == zone || strings.HasSuffix(name, "."+zone)
}

// validDNSName reports whether s is a host-style DNS name, fully qualified or not: labels of
// 1 to 63 letters, digits, - and _ (not starting or ending with -), 253 bytes at most without
// the final dot. The root "." alone is not accepted: no record teal switches lives there.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '_') {
				return false
			}
		}
	}
	return true
}
