package rfc2136

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// testConfig is an rfc2136 dns section for n.
func testConfig(n *testutil.Named) teal.DNSConfig {
	cfg := teal.DefaultDNSConfig()
	cfg.Provider = "rfc2136"
	cfg.Zone = "example.test."
	cfg.Record = "shop.example.test."
	cfg.TTL = 30 * time.Second
	cfg.Targets = map[teal.Color]string{teal.Blue: "127.0.0.2", teal.Green: "127.0.0.3"}
	cfg.RFC2136.Server = n.Addr
	cfg.RFC2136.TSIGName = n.KeyName
	cfg.RFC2136.TSIGSecret = n.Secret
	cfg.RFC2136.TSIGAlgorithm = n.Algorithm
	return cfg
}

func newSwitcher(t *testing.T, cfg teal.DNSConfig) *Switcher {
	t.Helper()
	s := NewSwitcher(cfg)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSwitcher_ReleaseAndRollbackOnBIND(t *testing.T) {
	n := testutil.StartNamed(t)
	s := newSwitcher(t, testConfig(n))
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got, ttl := n.Lookup(t, "shop.example.test."); !slices.Equal(got, []string{"127.0.0.2"}) || ttl != 300 {
		t.Fatalf("before teal: %q TTL %d, want [127.0.0.2] TTL 300", got, ttl)
	}

	// The first Set reads the record (blue, TTL 300) and lowers the TTL on blue: the TTL
	// discipline before a switch.
	lowered, err := s.Set(ctx, teal.All(teal.Blue), nil)
	if err != nil {
		t.Fatalf("Set blue (first): %v", err)
	}
	if got, ttl := n.Lookup(t, "shop.example.test."); !slices.Equal(got, []string{"127.0.0.2"}) || ttl != 30 {
		t.Fatalf("after lowering the TTL: %q TTL %d, want [127.0.0.2] TTL 30", got, ttl)
	}

	green, err := s.Set(ctx, teal.All(teal.Green), lowered)
	if err != nil {
		t.Fatalf("Set green: %v", err)
	}
	if got, ttl := n.Lookup(t, "shop.example.test."); !slices.Equal(got, []string{"127.0.0.3"}) || ttl != 30 {
		t.Fatalf("after the release: %q TTL %d, want [127.0.0.3] TTL 30", got, ttl)
	}
	if !slices.Equal(green.Values, []string{"127.0.0.3"}) || green.TTL != 30 || green.Traffic != teal.All(teal.Green) {
		t.Fatalf("state = %+v, want green's value, TTL 30, all traffic on green", green)
	}

	blue, err := s.Set(ctx, teal.All(teal.Blue), green)
	if err != nil {
		t.Fatalf("Set blue (rollback): %v", err)
	}
	if got, _ := n.Lookup(t, "shop.example.test."); !slices.Equal(got, []string{"127.0.0.2"}) {
		t.Fatalf("after the rollback: %q, want [127.0.0.2]", got)
	}

	// Restoring the long TTL after the release.
	if _, err := s.SetTTL(ctx, teal.All(teal.Blue), 5*time.Minute, blue); err != nil {
		t.Fatalf("SetTTL 5m: %v", err)
	}
	if _, ttl := n.Lookup(t, "shop.example.test."); ttl != 300 {
		t.Fatalf("TTL after SetTTL(5m) = %d, want 300", ttl)
	}
}

func TestSwitcher_ConcurrentChangeIsAConflict(t *testing.T) {
	n := testutil.StartNamed(t)
	s := newSwitcher(t, testConfig(n))
	ctx := context.Background()
	green, err := s.Set(ctx, teal.All(teal.Green), nil)
	if err != nil {
		t.Fatalf("Set green: %v", err)
	}

	// Someone changes the record by hand.
	n.NSUpdate(t, "update delete shop.example.test. A\nupdate add shop.example.test. 60 A 10.9.9.9")

	_, err = s.Set(ctx, teal.All(teal.Blue), green)
	if err == nil {
		t.Fatalf("Set blue after a manual change succeeded, want a conflict")
	}
	if !errors.Is(err, teal.ErrConflict) || !strings.Contains(err.Error(), "record changed outside teal") {
		t.Fatalf("Set error = %v, want ErrConflict with \"record changed outside teal\"", err)
	}
	if !strings.Contains(err.Error(), "10.9.9.9") || !strings.Contains(err.Error(), "127.0.0.3") {
		t.Fatalf("Set error = %v, want it to name what teal expected and what the record holds", err)
	}
	if got, _ := n.Lookup(t, "shop.example.test."); !slices.Equal(got, []string{"10.9.9.9"}) {
		t.Fatalf("after the refused Set: %q, want the manual change [10.9.9.9] kept", got)
	}
}

func TestSwitcher_FirstSetRacingAManualChange(t *testing.T) {
	n := testutil.StartNamed(t)
	s := newSwitcher(t, testConfig(n))
	// teal's persisted state says blue, but the record was changed since.
	n.NSUpdate(t, "update delete shop.example.test. A\nupdate add shop.example.test. 60 A 10.1.1.1")
	prev := &teal.DNSState{Traffic: teal.All(teal.Blue), Values: []string{"127.0.0.2"}, TTL: 30}
	_, err := s.Set(context.Background(), teal.All(teal.Green), prev)
	if !errors.Is(err, teal.ErrConflict) {
		t.Fatalf("Set = %v, want ErrConflict", err)
	}
}

func TestSwitcher_WrongSecretFailsCheckBeforeAnyChange(t *testing.T) {
	n := testutil.StartNamed(t)
	tests := []struct {
		name   string
		modify func(*teal.DNSConfig)
		want   string
	}{
		{"wrong secret", func(c *teal.DNSConfig) {
			c.RFC2136.TSIGSecret = base64.StdEncoding.EncodeToString([]byte("not the key of the server at all"))
		}, "BADSIG"},
		{"unknown key", func(c *teal.DNSConfig) { c.RFC2136.TSIGName = "other." }, "BADKEY"},
		{"other algorithm", func(c *teal.DNSConfig) { c.RFC2136.TSIGAlgorithm = "hmac-sha512" }, "BADKEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(n)
			tt.modify(&cfg)
			s := newSwitcher(t, cfg)
			err := s.Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), "TSIG key") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want a TSIG error with %s", err, tt.want)
			}
			if strings.Contains(err.Error(), cfg.RFC2136.TSIGSecret) || strings.Contains(err.Error(), n.Secret) {
				t.Fatalf("Check error shows a secret: %v", err)
			}
			if _, err := s.Set(context.Background(), teal.All(teal.Green), nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Set with the bad key = %v, want the same TSIG error", err)
			}
			if got, _ := n.Lookup(t, "shop.example.test."); !slices.Equal(got, []string{"127.0.0.2"}) {
				t.Fatalf("record = %q after a refused key, want it unchanged [127.0.0.2]", got)
			}
		})
	}
}

func TestSwitcher_CheckNamesWhatFailed(t *testing.T) {
	n := testutil.StartNamed(t)
	tests := []struct {
		name   string
		modify func(*teal.DNSConfig)
		want   string
	}{
		{"zone not served", func(c *teal.DNSConfig) { c.Zone = "other.test."; c.Record = "shop.other.test." }, "does not serve zone other.test."},
		{"weighted", func(c *teal.DNSConfig) { c.Weighted = true }, "dns.weighted needs provider builtin or route53"},
		{"server down", func(c *teal.DNSConfig) { c.RFC2136.Server = "127.0.0.1:" + testutil.FreeUDPTCPPort(t) }, "query SOA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(n)
			tt.modify(&cfg)
			s := newSwitcher(t, cfg)
			s.Timeout = 2 * time.Second
			if err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSwitcher_WeightedSplitRefused(t *testing.T) {
	cfg := teal.DefaultDNSConfig()
	cfg.Zone, cfg.Record = "example.test.", "shop.example.test."
	cfg.Targets = map[teal.Color]string{teal.Blue: "127.0.0.2", teal.Green: "127.0.0.3"}
	cfg.Weighted = true
	cfg.RFC2136.Server, cfg.RFC2136.TSIGName = "127.0.0.1:1", "teal."
	cfg.RFC2136.TSIGSecret = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	s := newSwitcher(t, cfg)
	_, err := s.Set(context.Background(), teal.Traffic{Blue: 50, Green: 50}, nil)
	if !errors.Is(err, ErrWeighted) {
		t.Fatalf("Set of a weighted split = %v, want ErrWeighted", err)
	}
}

func TestSwitcher_OpenRefusesBadInput(t *testing.T) {
	good := func() teal.DNSConfig {
		cfg := teal.DefaultDNSConfig()
		cfg.Zone, cfg.Record = "example.test.", "shop.example.test."
		cfg.Targets = map[teal.Color]string{teal.Blue: "127.0.0.2", teal.Green: "127.0.0.3"}
		cfg.RFC2136.Server, cfg.RFC2136.TSIGName = "127.0.0.1:53", "teal."
		cfg.RFC2136.TSIGSecret = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
		return cfg
	}
	tests := []struct {
		name   string
		modify func(*teal.DNSConfig)
		want   string
	}{
		{"record outside the zone", func(c *teal.DNSConfig) { c.Record = "shop.other.test." }, "not inside zone"},
		{"secret not base64", func(c *teal.DNSConfig) { c.RFC2136.TSIGSecret = "s3cr3t!!" }, "not base64"},
		{"unknown algorithm", func(c *teal.DNSConfig) { c.RFC2136.TSIGAlgorithm = "hmac-md5" }, "want hmac-sha256"},
		{"server without port", func(c *teal.DNSConfig) { c.RFC2136.Server = "127.0.0.1" }, "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.modify(&cfg)
			err := NewSwitcher(cfg).Open(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, teal.ErrInvalid) {
				t.Fatalf("Open = %v, want %q wrapping ErrInvalid", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("Open error shows the secret: %v", err)
			}
		})
	}
}
