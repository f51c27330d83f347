package dnsconfirm

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/dnsserver"
)

// startBuiltin starts a built-in authoritative server for example.test. on a free port,
// answering the colour c.
func startBuiltin(t *testing.T, weighted bool, tr teal.Traffic) *dnsserver.Server {
	t.Helper()
	cfg := teal.DefaultDNSConfig()
	cfg.Provider = "builtin"
	cfg.Zone, cfg.Record = "example.test.", "shop.example.test."
	cfg.Targets = map[teal.Color]string{teal.Blue: "127.0.0.2", teal.Green: "127.0.0.3"}
	cfg.Weighted = weighted
	cfg.Builtin.Listen = "127.0.0.1:0"
	s := dnsserver.NewServer(cfg)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start dns server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Set(context.Background(), tr, nil); err != nil {
		t.Fatalf("Set: %v", err)
	}
	return s
}

func fastConfirmer() *Confirmer {
	c := NewConfirmer()
	c.Interval = 10 * time.Millisecond
	c.QueryTimeout = 500 * time.Millisecond
	return c
}

func TestConfirmer_AllServersAnswer(t *testing.T) {
	a := startBuiltin(t, false, teal.All(teal.Green))
	b := startBuiltin(t, false, teal.All(teal.Green))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fastConfirmer().Confirm(ctx, "example.test.", "shop.example.test.", []string{"127.0.0.3"}, []string{a.Addr(), b.Addr()}); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
}

func TestConfirmer_DeadlineNamesLaggingServer(t *testing.T) {
	good := startBuiltin(t, false, teal.All(teal.Green))
	lagging := startBuiltin(t, false, teal.All(teal.Blue))
	down := deadAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := fastConfirmer().Confirm(ctx, "example.test.", "shop.example.test.", []string{"127.0.0.3"}, []string{good.Addr(), lagging.Addr(), down})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Confirm = %v, want a deadline error", err)
	}
	msg := err.Error()
	for _, want := range []string{"2 of 3", lagging.Addr() + " answers 127.0.0.2", down + " does not answer"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("Confirm error = %q, want %q in it", msg, want)
		}
	}
	if strings.Contains(msg, good.Addr()) {
		t.Fatalf("Confirm error = %q names the server that answers", msg)
	}
}

func TestConfirmer_WaitsForTheChange(t *testing.T) {
	s := startBuiltin(t, false, teal.All(teal.Blue))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- fastConfirmer().Confirm(ctx, "example.test.", "shop.example.test.", []string{"127.0.0.3"}, []string{s.Addr()})
	}()
	select {
	case err := <-done:
		t.Fatalf("Confirm returned %v before the record changed", err)
	default:
	}
	if _, err := s.Set(ctx, teal.All(teal.Green), nil); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Confirm after the change: %v", err)
	}
}

func TestConfirmer_Weighted(t *testing.T) {
	s := startBuiltin(t, true, teal.Traffic{Blue: 50, Green: 50})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fastConfirmer().Confirm(ctx, "example.test.", "shop.example.test.", []string{"127.0.0.3", "127.0.0.2"}, []string{s.Addr()}); err != nil {
		t.Fatalf("Confirm of a weighted record: %v", err)
	}
	other := startBuiltin(t, false, teal.All(teal.Blue))
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	err := fastConfirmer().Confirm(short, "example.test.", "shop.example.test.", []string{"127.0.0.3", "127.0.0.4"}, []string{other.Addr()})
	if err == nil || !strings.Contains(err.Error(), "answers 127.0.0.2") {
		t.Fatalf("Confirm of a split against a server answering another value = %v, want it named", err)
	}
}

func TestConfirmer_FindsNameServersThroughNS(t *testing.T) {
	s := startBuiltin(t, false, teal.All(teal.Green))
	_, port, _ := net.SplitHostPort(s.Addr())
	c := fastConfirmer()
	c.Port = port
	c.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Confirm(ctx, "example.test.", "shop.example.test.", []string{"127.0.0.3"}, nil); err != nil {
		t.Fatalf("Confirm through NS records: %v", err)
	}
	// The NS lookup fails for a zone nobody serves, and Confirm says so.
	err := c.Confirm(ctx, "other.test.", "shop.other.test.", []string{"127.0.0.3"}, nil)
	if err == nil || !strings.Contains(err.Error(), "name servers of other.test.") {
		t.Fatalf("Confirm for an unknown zone = %v, want a name server lookup error", err)
	}
}

func TestConfirm_NoValuesIsInvalid(t *testing.T) {
	if err := Confirm(context.Background(), "example.test.", "shop.example.test.", nil, []string{"127.0.0.1:53"}); !errors.Is(err, teal.ErrInvalid) {
		t.Fatalf("Confirm with nothing wanted = %v, want ErrInvalid", err)
	}
}

// deadAddr returns a UDP address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	a := pc.LocalAddr().String()
	if err := pc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return a
}
