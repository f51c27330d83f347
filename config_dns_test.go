package teal

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// goodDNS is a valid builtin dns section, one key a line, for cases to add to or override.
const goodDNS = `dns:
  provider: builtin
  zone: example.test.
  record: shop.example.test.
  targets: {blue: 127.0.0.2, green: 127.0.0.3}
`

// parseDNS parses src as teal.yaml with ParseConfig.
func parseDNS(t *testing.T, src string, vars map[string]string) (DNSConfig, error) {
	t.Helper()
	cfg, err := ParseConfig(strings.NewReader(src), "teal.yaml", configEnv(vars))
	d := cfg.DNS
	return d, err
}

const testTSIGSecret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="

func TestParseConfigDNS_Sections(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want func(*DNSConfig) // applied to the defaults
	}{
		{"absent", "", func(*DNSConfig) {}},
		{"builtin", goodDNS, func(d *DNSConfig) {
			d.Provider, d.Zone, d.Record = "builtin", "example.test.", "shop.example.test."
			d.Targets = map[Color]string{Blue: "127.0.0.2", Green: "127.0.0.3"}
		}},
		{"builtin weighted on a free port, IPv6", "dns:\n  provider: builtin\n  zone: Example.TEST.\n  record: shop.example.test.\n  targets: {blue: '2001:db8::2', green: '2001:db8::3'}\n  weighted: true\n  builtin: {listen: '[::1]:0'}\n  ttl: 5s\n", func(d *DNSConfig) {
			d.Provider, d.Zone, d.Record, d.Weighted, d.TTL = "builtin", "Example.TEST.", "shop.example.test.", true, 5*time.Second
			d.Targets = map[Color]string{Blue: "2001:db8::2", Green: "2001:db8::3"}
			d.Builtin.Listen = "[::1]:0"
		}},
		{"route53 with CNAME targets", "dns:\n  provider: route53\n  zone: example.com.\n  record: shop.example.com.\n  targets: {blue: blue-lb.elb.amazonaws.com, green: green-lb.elb.amazonaws.com.}\n  weighted: true\n  route53: {hosted_zone_id: Z123, region: eu-west-1, endpoint: 'http://127.0.0.1:9000'}\n  confirm: false\n", func(d *DNSConfig) {
			d.Provider, d.Zone, d.Record, d.Weighted, d.Confirm = "route53", "example.com.", "shop.example.com.", true, false
			d.Targets = map[Color]string{Blue: "blue-lb.elb.amazonaws.com", Green: "green-lb.elb.amazonaws.com."}
			d.Route53.HostedZoneID, d.Route53.Region, d.Route53.Endpoint = "Z123", "eu-west-1", "http://127.0.0.1:9000"
		}},
		{"rfc2136 at the apex", "dns:\n  provider: rfc2136\n  zone: example.test.\n  record: example.test.\n  targets: {blue: 10.0.0.2, green: 10.0.0.3}\n  rfc2136: {server: 'ns1.example.test:53', tsig_name: teal, tsig_secret: '" + testTSIGSecret + "', tsig_algorithm: HMAC-SHA512}\n  quiet: 0s\n", func(d *DNSConfig) {
			d.Provider, d.Zone, d.Record, d.Quiet = "rfc2136", "example.test.", "example.test.", 0
			d.Targets = map[Color]string{Blue: "10.0.0.2", Green: "10.0.0.3"}
			d.RFC2136.Server, d.RFC2136.TSIGName, d.RFC2136.TSIGSecret, d.RFC2136.TSIGAlgorithm = "ns1.example.test:53", "teal", testTSIGSecret, "HMAC-SHA512"
		}},
		{"nulls keep defaults", "dns:\n  ttl: ~\n  confirm:\n", func(*DNSConfig) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDNS(t, "app: shop\n"+tt.src, nil)
			if err != nil {
				t.Fatalf("ParseConfig:\n%v", err)
			}
			want := DefaultDNSConfig()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("DNS =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseConfigDNS_Testdata(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "config", "dns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(strings.NewReader(string(data)), "dns.yaml", configEnv(map[string]string{"TSIG_SECRET": testTSIGSecret}))
	d := cfg.DNS
	if err != nil {
		t.Fatalf("ParseConfig(dns.yaml):\n%v", err)
	}
	if d.Provider != "rfc2136" || d.RFC2136.TSIGSecret != testTSIGSecret || d.ConfirmTimeout != 45*time.Second || d.RestTTL != 5*time.Minute || d.Quiet != 2*time.Minute {
		t.Fatalf("dns = %+v, want rfc2136 with the secret from the environment, confirm_timeout 45s, rest_ttl 5m, quiet 2m", d)
	}
}

func TestLoadConfig_DNS(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "teal.yaml")
	if err := os.WriteFile(path, []byte("app: shop\n"+goodDNS), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	d := cfg.DNS
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Path != path || cfg.DataDir != filepath.Join(dir, ".teal") || d.Provider != "builtin" {
		t.Fatalf("LoadConfig = path %s data dir %s provider %q; want %s, %s, builtin", cfg.Path, cfg.DataDir, d.Provider, path, filepath.Join(dir, ".teal"))
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatalf("LoadConfig of a missing file succeeded")
	}
}

func TestParseConfigDNS_BadValues(t *testing.T) {
	tests := []struct {
		name string
		src  string // replaces or adds keys of goodDNS's section (indented two spaces)
		key  string
		want string
	}{
		{"unknown provider", "  provider: bind", "dns.provider", `"bind": want builtin, rfc2136 or route53`},
		{"provider missing", "  provider: ''", "dns.provider", "required to switch DNS"},
		{"zone not qualified", "  zone: example.test", "dns.zone", `want it fully qualified, with the final dot: example.test.`},
		{"zone not a name", "  zone: 'exa mple.test.'", "dns.zone", "not a DNS name"},
		{"record outside the zone", "  record: shop.other.test.", "dns.record", `"shop.other.test.": not inside dns.zone example.test.`},
		{"record in a zone that only ends alike", "  record: shop.myexample.test.", "dns.record", "not inside dns.zone"},
		{"record missing", "  record: ''", "dns.record", "required"},
		{"ttl zero", "  ttl: 0s", "dns.ttl", "want 1s to 24h"},
		{"ttl too long", "  ttl: 48h", "dns.ttl", "want 1s to 24h"},
		{"ttl fractional", "  ttl: 1500ms", "dns.ttl", "want whole seconds"},
		{"ttl not a duration", "  ttl: 30", "dns.ttl", "add a unit"},
		{"target not an address or name", "  targets: {blue: 'not an address!', green: 127.0.0.3}", "dns.targets.blue", `"not an address!": not an IP address or a host name`},
		{"target with a port", "  targets: {blue: '127.0.0.2:8080', green: 127.0.0.3}", "dns.targets.blue", "not an IP address or a host name"},
		{"target unspecified", "  targets: {blue: 0.0.0.0, green: 127.0.0.3}", "dns.targets.blue", "not an address a client can connect to"},
		{"target missing", "  targets: {blue: 127.0.0.2}", "dns.targets.green", "required"},
		{"targets of two kinds", "  targets: {blue: 127.0.0.2, green: green-lb.example.net}", "dns.targets.green", "a CNAME target while blue's is a A"},
		{"targets of two families", "  targets: {blue: 127.0.0.2, green: '::1'}", "dns.targets.green", "a AAAA target while blue's is a A"},
		{"targets the same", "  targets: {blue: 127.0.0.2, green: 127.0.0.2}", "dns.targets.green", "same as dns.targets.blue"},
		{"CNAME to the record itself", "  targets: {blue: SHOP.example.test, green: green-lb.example.net}", "dns.targets.blue", "a CNAME to itself is a loop"},
		{"unknown colour", "  targets: {blue: 127.0.0.2, green: 127.0.0.3, gren: 127.0.0.4}", "dns.targets.gren", "did you mean green?"},
		{"targets a list", "  targets: [127.0.0.2, 127.0.0.3]", "dns.targets", "want a mapping like { blue: 127.0.0.2, green: 127.0.0.3 }"},
		{"weighted not a bool", "  weighted: sometimes", "dns.weighted", "want true or false"},
		{"builtin listen without port", "  builtin: {listen: 127.0.0.1}", "dns.builtin.listen", "want host:port"},
		{"builtin listen on the http listener", "  builtin: {listen: '127.0.0.1:8080'}", "dns.builtin.listen", "same address as listen"},
		{"builtin unknown key", "  builtin: {lsten: 127.0.0.1:53}", "dns.builtin.lsten", "did you mean listen?"},
		{"confirm_timeout zero", "  confirm_timeout: 0s", "dns.confirm_timeout", "want a duration over 0"},
		{"quiet negative", "  quiet: -1s", "dns.quiet", "want a duration of 0 or more"},
		{"rest_ttl below ttl", "  rest_ttl: 10s", "dns.rest_ttl", "shorter than dns.ttl"},
		{"unknown key near a real one", "  recrod: x.example.test.", "dns.recrod", "did you mean record?"},
		{"key of a sub-section", "  tsig_name: teal.", "dns.tsig_name", "did you mean dns.rfc2136.tsig_name?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "app: shop\nlisten: 127.0.0.1:8080\n" + overrideDNS(tt.src)
			_, err := parseDNS(t, src, nil)
			var errs ConfigErrors
			if !errors.As(err, &errs) {
				t.Fatalf("ParseConfig(%q) = %v, want ConfigErrors", src, err)
			}
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			if errs[0].Key != tt.key || !strings.Contains(errs[0].Error(), tt.want) {
				t.Fatalf("error = %q (key %q), want key %q and %q", errs[0].Error(), errs[0].Key, tt.key, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("errors.Is(ErrInvalid) = false")
			}
		})
	}
}

// overrideDNS returns goodDNS with the keys of lines replaced or added.
func overrideDNS(lines string) string {
	out := goodDNS
	for line := range strings.SplitSeq(lines, "\n") {
		key, _, _ := strings.Cut(strings.TrimSpace(line), ":")
		replaced := false
		var b strings.Builder
		for l := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
			if strings.HasPrefix(l, "  "+key+":") {
				l, replaced = line, true
			}
			b.WriteString(l + "\n")
		}
		if !replaced {
			b.WriteString(line + "\n")
		}
		out = b.String()
	}
	return out
}

func TestParseConfigDNS_Providers(t *testing.T) {
	rfc := func(extra string) string {
		return "app: shop\ndns:\n  provider: rfc2136\n  zone: example.test.\n  record: shop.example.test.\n  targets: {blue: 127.0.0.2, green: 127.0.0.3}\n" + extra
	}
	r53 := func(extra string) string {
		return "app: shop\ndns:\n  provider: route53\n  zone: example.test.\n  record: shop.example.test.\n  targets: {blue: 127.0.0.2, green: 127.0.0.3}\n" + extra
	}
	goodKey := "  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: " + testTSIGSecret + "}\n"
	tests := []struct {
		name string
		src  string
		want []string // "key: message part", one per error, in order
	}{
		{"rfc2136 section missing", rfc(""), []string{
			"dns.rfc2136.server: required", "dns.rfc2136.tsig_name: required", "dns.rfc2136.tsig_secret: required"}},
		{"rfc2136 weighted", rfc(goodKey + "  weighted: true\n"), []string{`dns.weighted: "true": needs provider builtin or route53`}},
		{"rfc2136 server without port", rfc("  rfc2136: {server: 127.0.0.1, tsig_name: teal., tsig_secret: " + testTSIGSecret + "}\n"), []string{`dns.rfc2136.server: "127.0.0.1": want host:port`}},
		{"rfc2136 server port 0", rfc("  rfc2136: {server: '127.0.0.1:0', tsig_name: teal., tsig_secret: " + testTSIGSecret + "}\n"), []string{`dns.rfc2136.server: "127.0.0.1:0": want a port number`}},
		{"rfc2136 bad algorithm", rfc("  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: " + testTSIGSecret + ", tsig_algorithm: hmac-md5}\n"), []string{`dns.rfc2136.tsig_algorithm: "hmac-md5": want hmac-sha256, hmac-sha512 or hmac-sha1`}},
		{"rfc2136 bad key name", rfc("  rfc2136: {server: '127.0.0.1:53', tsig_name: 'te al', tsig_secret: " + testTSIGSecret + "}\n"), []string{"dns.rfc2136.tsig_name: \"te al\": not a key name"}},
		{"route53 section missing", r53(""), []string{"dns.route53.hosted_zone_id: required", "dns.route53.region: required"}},
		{"route53 bad endpoint", r53("  route53: {hosted_zone_id: Z1, region: us-east-1, endpoint: 'ftp://x'}\n"), []string{"dns.route53.endpoint: \"ftp://x\": want a URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDNS(t, tt.src, nil)
			var errs ConfigErrors
			if !errors.As(err, &errs) {
				t.Fatalf("ParseConfig = %v, want ConfigErrors", err)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), errs)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Fatalf("error %d = %q, want %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

// TestParseConfig_SecretNeverShown checks that no error about tsig_secret, or near it,
// shows the secret, whether written inline or expanded from the environment.
func TestParseConfigDNS_SecretNeverShown(t *testing.T) {
	const secret = "hunter2hunter2"
	head := "app: shop\ndns:\n  provider: rfc2136\n  zone: example.test.\n  record: shop.example.test.\n  targets: {blue: 127.0.0.2, green: 127.0.0.3}\n"
	tests := []struct {
		name string
		key  string
	}{
		{"inline, not base64", "  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: '" + secret + "!'}\n"},
		{"from the environment, not base64", "  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: '${SECRET}'}\n"},
		{"a list", "  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: ['" + secret + "']}\n"},
		{"an unset variable next to it", "  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: '" + secret + "${NOPE}'}\n"},
		{"other errors around it", "  rfc2136: {server: '" + secret + "', tsig_name: teal., tsig_secret: '" + secret + "', tsig_algorithm: x}\n  weighted: true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseDNS(t, head+tt.key, map[string]string{"SECRET": secret + "!"})
			if err == nil {
				t.Fatalf("ParseConfig accepted it, want errors")
			}
			msg := err.Error()
			if tt.name != "other errors around it" && !strings.Contains(msg, "tsig_secret") {
				t.Fatalf("errors = %q, want one about tsig_secret", msg)
			}
			for _, line := range strings.Split(msg, "\n") {
				if strings.Contains(line, "tsig_secret") && strings.Contains(line, secret) {
					t.Fatalf("error shows the secret: %q", line)
				}
			}
		})
	}
}

func TestConfigDNS_Answers(t *testing.T) {
	cfg := DefaultDNSConfig()
	cfg.Targets = map[Color]string{Blue: "127.0.0.2", Green: "Green-LB.example.net"}
	weighted := cfg
	weighted.Weighted = true
	tests := []struct {
		name    string
		cfg     DNSConfig
		traffic Traffic
		prev    *DNSState
		want    []DNSTarget
		wantErr bool
	}{
		{"blue", cfg, All(Blue), nil, []DNSTarget{{Blue, "127.0.0.2", 100}}, false},
		{"green, name canonical", cfg, All(Green), nil, []DNSTarget{{Green, "green-lb.example.net.", 100}}, false},
		{"split, not weighted: the larger share", cfg, Traffic{Blue: 30, Green: 70}, nil, []DNSTarget{{Green, "green-lb.example.net.", 100}}, false},
		{"50/50 keeps green", cfg, Traffic{Blue: 50, Green: 50}, &DNSState{Traffic: All(Green)}, []DNSTarget{{Green, "green-lb.example.net.", 100}}, false},
		{"50/50 without prev is blue", cfg, Traffic{Blue: 50, Green: 50}, nil, []DNSTarget{{Blue, "127.0.0.2", 100}}, false},
		{"weighted split", weighted, Traffic{Blue: 30, Green: 70}, nil, []DNSTarget{{Blue, "127.0.0.2", 30}, {Green, "green-lb.example.net.", 70}}, false},
		{"weighted, all on one", weighted, All(Blue), nil, []DNSTarget{{Blue, "127.0.0.2", 100}}, false},
		{"nothing live", cfg, Traffic{}, nil, nil, true},
		{"shares over 100", cfg, Traffic{Blue: 60, Green: 60}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.Answers(tt.traffic, tt.prev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Answers error = %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Answers = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConfigDNS_Endpoint(t *testing.T) {
	cfg := DefaultDNSConfig()
	cfg.Targets = map[Color]string{Blue: "127.0.0.2", Green: "2001:db8::3"}
	if got, ok := cfg.Endpoint(Blue, "0.0.0.0:8080"); !ok || got != "127.0.0.2:8080" {
		t.Fatalf("Endpoint(blue) = %q, %v; want 127.0.0.2:8080", got, ok)
	}
	if got, ok := cfg.Endpoint(Green, "127.0.0.1:8080"); !ok || got != "[2001:db8::3]:8080" {
		t.Fatalf("Endpoint(green) = %q, %v; want [2001:db8::3]:8080", got, ok)
	}
	cfg.Targets[Green] = "green-lb.example.net"
	if _, ok := cfg.Endpoint(Green, "127.0.0.1:8080"); ok {
		t.Fatalf("Endpoint of a host name target is ok, want none")
	}
}

func TestDNSRecordType(t *testing.T) {
	for v, want := range map[string]string{"127.0.0.2": "A", "::ffff:10.0.0.1": "A", "2001:db8::1": "AAAA", "lb.example.net.": "CNAME"} {
		if got := DNSRecordType(v); got != want {
			t.Errorf("DNSRecordType(%q) = %s, want %s", v, got, want)
		}
	}
}

func TestTTLSeconds(t *testing.T) {
	for d, want := range map[time.Duration]uint32{0: 1, 500 * time.Millisecond: 1, 30 * time.Second: 30, 90 * time.Minute: 5400} {
		if got := TTLSeconds(d); got != want {
			t.Errorf("TTLSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

// FuzzValidDNSName checks validDNSName against the DNS library teal's providers use: every
// name it accepts, the library accepts too, with the same number of labels.
func FuzzValidDNSName(f *testing.F) {
	for _, s := range []string{"example.test.", "shop.example.test", "a", "-a.b", "a..b", "xn--bcher-kva.example.", "_tcp.example.", strings.Repeat("a", 64) + ".b", strings.Repeat("a.", 127), "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !validDNSName(s) {
			return
		}
		n, ok := dns.IsDomainName(s)
		if !ok {
			t.Fatalf("validDNSName(%q) = true, but the DNS library refuses it", s)
		}
		if want := strings.Count(strings.TrimSuffix(s, "."), ".") + 1; n != want {
			t.Fatalf("validDNSName(%q): the library counts %d labels, want %d", s, n, want)
		}
	})
}

// FuzzParseConfigDNS checks that every dns section ParseConfig accepts, Validate accepts,
// and that failures are ConfigErrors.
func FuzzParseConfigDNS(f *testing.F) {
	for _, s := range []string{
		goodDNS,
		overrideDNS("  weighted: true\n  builtin: {listen: '[::1]:0'}"),
		overrideDNS("  provider: rfc2136\n  rfc2136: {server: '127.0.0.1:53', tsig_name: teal., tsig_secret: " + testTSIGSecret + "}"),
		overrideDNS("  provider: route53\n  route53: {hosted_zone_id: Z1, region: us-east-1}\n  targets: {blue: a.example.net, green: b.example.net}"),
		overrideDNS("  targets: {blue: '::1', green: '::2'}\n  ttl: 1s\n  rest_ttl: 24h"),
		"dns: {zone: x}\n",
	} {
		f.Add("app: shop\n" + s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := ParseConfig(strings.NewReader(src), "teal.yaml", nil)
		d := cfg.DNS
		if err != nil {
			var errs ConfigErrors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("ParseConfig(%q) error is %T %v, want ConfigErrors", src, err, err)
			}
			return
		}
		if verr := d.Validate(); verr != nil {
			t.Fatalf("ParseConfig accepted %q but Validate says:\n%v", src, verr)
		}
		if d.Provider != "" {
			if _, err := d.Answers(All(Green), nil); err != nil {
				t.Fatalf("accepted config cannot answer green: %v", err)
			}
		}
	})
}
