package route53

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

func weight(n int64) *int64 { return &n }

// simpleA is a simple A record set.
func simpleA(value string, ttl int64) fakeSet {
	return fakeSet{Name: "shop.example.test.", Type: "A", TTL: ttl, Values: []string{value}}
}

// weightedA is a weighted A record set of colour id.
func weightedA(id, value string, w, ttl int64) fakeSet {
	return fakeSet{Name: "shop.example.test.", Type: "A", SetIdentifier: id, Weight: weight(w), TTL: ttl, Values: []string{value}}
}

// awsEnv points the SDK's default credential chain at static keys in the environment and at
// nothing else (no shared files, no instance metadata), as a CI job with keys would.
func awsEnv(t *testing.T, keyID string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", keyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func testConfig(f *fakeRoute53, weighted bool) teal.DNSConfig {
	cfg := teal.DefaultDNSConfig()
	cfg.Provider = "route53"
	cfg.Zone = "example.test."
	cfg.Record = "shop.example.test."
	cfg.TTL = 30 * time.Second
	cfg.Targets = map[teal.Color]string{teal.Blue: "127.0.0.2", teal.Green: "127.0.0.3"}
	cfg.Weighted = weighted
	cfg.Route53.HostedZoneID = f.zoneID
	cfg.Route53.Region = "us-east-1"
	cfg.Route53.Endpoint = f.srv.URL
	return cfg
}

func openSwitcher(t *testing.T, cfg teal.DNSConfig) *Switcher {
	t.Helper()
	s := NewSwitcher(cfg)
	s.PollInterval = 10 * time.Millisecond
	s.SyncTimeout = 10 * time.Second
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func set(t *testing.T, s *Switcher, tr teal.Traffic, prev *teal.DNSState) *teal.DNSState {
	t.Helper()
	st, err := s.Set(context.Background(), tr, prev)
	if err != nil {
		t.Fatalf("Set(%+v): %v", tr, err)
	}
	return st
}

// show writes sets or changes one per line, for comparing and for failure messages.
func show[T any](items []T) string {
	lines := make([]string, len(items))
	for i, it := range items {
		lines[i] = describeItem(it)
	}
	return strings.Join(lines, "\n")
}

func describeItem(v any) string {
	switch v := v.(type) {
	case fakeChange:
		return v.Action + " " + describeItem(v.Set)
	case fakeSet:
		w := ""
		if v.Weight != nil {
			w = fmt.Sprintf(" id=%s weight=%d", v.SetIdentifier, *v.Weight)
		}
		return fmt.Sprintf("%s %s%s ttl=%d %s", v.Name, v.Type, w, v.TTL, strings.Join(v.Values, ","))
	}
	return fmt.Sprint(v)
}

func TestRoute53Fake_SimpleSwitchAndRollback(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300))
	s := openSwitcher(t, testConfig(f, false))
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	green := set(t, s, teal.All(teal.Green), nil)
	batches := f.Batches()
	if len(batches) != 1 {
		t.Fatalf("%d batches after one switch, want 1", len(batches))
	}
	if got, want := show(batches[0]), "UPSERT shop.example.test. A ttl=30 127.0.0.3"; got != want {
		t.Fatalf("batch =\n%s\nwant\n%s", got, want)
	}
	if got := f.Polls("C0001FAKE"); got != 3 {
		t.Fatalf("GetChange polled %d times, want 3 (PENDING, PENDING, INSYNC)", got)
	}
	if got, want := show(f.Sets()), "shop.example.test. A ttl=30 127.0.0.3"; got != want {
		t.Fatalf("records =\n%s\nwant\n%s", got, want)
	}
	if green.TTL != 30 || green.Traffic != teal.All(teal.Green) || len(green.Values) != 1 || green.Values[0] != "127.0.0.3" {
		t.Fatalf("state = %+v, want green's target with TTL 30", green)
	}

	// Rollback: Set back, checked against the stored state of the switch.
	set(t, s, teal.All(teal.Blue), green)
	batches = f.Batches()
	if len(batches) != 2 {
		t.Fatalf("%d batches after switch and rollback, want 2", len(batches))
	}
	if got, want := show(batches[1]), "UPSERT shop.example.test. A ttl=30 127.0.0.2"; got != want {
		t.Fatalf("rollback batch =\n%s\nwant\n%s", got, want)
	}
	if got, want := show(f.Sets()), "shop.example.test. A ttl=30 127.0.0.2"; got != want {
		t.Fatalf("records after rollback =\n%s\nwant\n%s", got, want)
	}
}

func TestRoute53Fake_WeightedBatches(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	// The record is a simple one, as it was before teal: the first weighted switch deletes it
	// in the same batch that creates the weighted pair.
	other := fakeSet{Name: "www.example.test.", Type: "CNAME", TTL: 300, Values: []string{"shop.example.test."}}
	f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300), other)
	s := openSwitcher(t, testConfig(f, true))

	steps := []struct {
		name    string
		traffic teal.Traffic
		batch   string
		records string
	}{
		{"first weighted step", teal.Traffic{Blue: 90, Green: 10},
			"UPSERT shop.example.test. A id=blue weight=90 ttl=30 127.0.0.2\n" +
				"UPSERT shop.example.test. A id=green weight=10 ttl=30 127.0.0.3\n" +
				"DELETE shop.example.test. A ttl=300 127.0.0.2",
			"shop.example.test. A id=blue weight=90 ttl=30 127.0.0.2\n" +
				"shop.example.test. A id=green weight=10 ttl=30 127.0.0.3"},
		{"half", teal.Traffic{Blue: 50, Green: 50},
			"UPSERT shop.example.test. A id=blue weight=50 ttl=30 127.0.0.2\n" +
				"UPSERT shop.example.test. A id=green weight=50 ttl=30 127.0.0.3",
			"shop.example.test. A id=blue weight=50 ttl=30 127.0.0.2\n" +
				"shop.example.test. A id=green weight=50 ttl=30 127.0.0.3"},
		{"switched", teal.All(teal.Green),
			"UPSERT shop.example.test. A id=blue weight=0 ttl=30 127.0.0.2\n" +
				"UPSERT shop.example.test. A id=green weight=100 ttl=30 127.0.0.3",
			"shop.example.test. A id=blue weight=0 ttl=30 127.0.0.2\n" +
				"shop.example.test. A id=green weight=100 ttl=30 127.0.0.3"},
		{"rolled back", teal.All(teal.Blue),
			"UPSERT shop.example.test. A id=blue weight=100 ttl=30 127.0.0.2\n" +
				"UPSERT shop.example.test. A id=green weight=0 ttl=30 127.0.0.3",
			"shop.example.test. A id=blue weight=100 ttl=30 127.0.0.2\n" +
				"shop.example.test. A id=green weight=0 ttl=30 127.0.0.3"},
	}
	var prev *teal.DNSState
	for i, step := range steps {
		prev = set(t, s, step.traffic, prev)
		batches := f.Batches()
		if len(batches) != i+1 {
			t.Fatalf("%s: %d batches, want %d: one per switch", step.name, len(batches), i+1)
		}
		if got := show(batches[i]); got != step.batch {
			t.Fatalf("%s: batch =\n%s\nwant\n%s", step.name, got, step.batch)
		}
		var records []fakeSet
		for _, r := range f.Sets() {
			if r.Name == "shop.example.test." {
				records = append(records, r)
			}
		}
		if got := show(records); got != step.records {
			t.Fatalf("%s: records =\n%s\nwant\n%s", step.name, got, step.records)
		}
	}
	if got := show(f.Sets()); !strings.Contains(got, "www.example.test. CNAME") {
		t.Fatalf("a record of another name was touched: %s", got)
	}
}

func TestRoute53Fake_ChangedOutsideTealIsAConflict(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300))
	s := openSwitcher(t, testConfig(f, false))
	green := set(t, s, teal.All(teal.Green), nil)

	f.Replace(simpleA("10.9.9.9", 60)) // someone, in the console
	_, err := s.Set(context.Background(), teal.All(teal.Blue), green)
	if !errors.Is(err, teal.ErrConflict) || !strings.Contains(err.Error(), "record changed outside teal") {
		t.Fatalf("Set = %v, want ErrConflict \"record changed outside teal\"", err)
	}
	if !strings.Contains(err.Error(), "10.9.9.9") {
		t.Fatalf("Set error = %v, want it to say what the record answers", err)
	}
	if n := len(f.Batches()); n != 1 {
		t.Fatalf("%d batches, want 1: nothing sent after the conflict", n)
	}
	if got, want := show(f.Sets()), "shop.example.test. A ttl=60 10.9.9.9"; got != want {
		t.Fatalf("records =\n%s\nwant the manual change kept:\n%s", got, want)
	}
}

func TestRoute53Fake_ReweightedOutsideTealIsAConflict(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	f := newFakeRoute53(t, "Z123", "example.test.")
	s := openSwitcher(t, testConfig(f, true))
	st := set(t, s, teal.Traffic{Blue: 75, Green: 25}, nil)
	f.Replace(weightedA("blue", "127.0.0.2", 50, 30), weightedA("green", "127.0.0.3", 50, 30))
	if _, err := s.Set(context.Background(), teal.All(teal.Green), st); !errors.Is(err, teal.ErrConflict) {
		t.Fatalf("Set = %v, want ErrConflict for weights changed by someone else", err)
	}
}

func TestRoute53Fake_NotInsyncByTheDeadline(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300))
	f.pending = 1 << 30
	s := openSwitcher(t, testConfig(f, false))
	s.SyncTimeout = 300 * time.Millisecond
	_, err := s.Set(context.Background(), teal.All(teal.Green), nil)
	if err == nil || !strings.Contains(err.Error(), "GetChange") || !strings.Contains(err.Error(), "INSYNC") {
		t.Fatalf("Set = %v, want an error naming GetChange and INSYNC", err)
	}
	if f.Polls("C0001FAKE") < 2 {
		t.Fatalf("GetChange polled %d times, want it polled until the deadline", f.Polls("C0001FAKE"))
	}
}

func TestRoute53Fake_ErrorsNameTheCall(t *testing.T) {
	tests := []struct {
		name  string
		keyID string
		setup func(*fakeRoute53, *teal.DNSConfig)
		want  []string
	}{
		{"wrong credentials", "AKIDSOMEONEELSE", nil, []string{"GetHostedZone", "AccessDenied"}},
		{"unknown zone", "AKIDTEALFAKE", func(_ *fakeRoute53, c *teal.DNSConfig) { c.Route53.HostedZoneID = "ZNOPE" }, []string{"GetHostedZone ZNOPE", "NoSuchHostedZone"}},
		{"zone of another name", "AKIDTEALFAKE", func(f *fakeRoute53, _ *teal.DNSConfig) { f.zoneName = "other.test." }, []string{"is other.test., not dns.zone example.test."}},
		{"weighted sets of someone else", "AKIDTEALFAKE", func(f *fakeRoute53, _ *teal.DNSConfig) {
			f.Replace(weightedA("canary", "10.0.0.9", 10, 60))
		}, []string{"record sets teal does not manage", `"canary"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			awsEnv(t, tt.keyID)
			f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300))
			cfg := testConfig(f, false)
			if tt.setup != nil {
				tt.setup(f, &cfg)
			}
			s := openSwitcher(t, cfg)
			err := s.Check(context.Background())
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Check = %v, want %q in it", err, w)
				}
			}
			if n := len(f.Batches()); n != 0 {
				t.Fatalf("%d batches sent by Check, want none", n)
			}
		})
	}
}

func TestRoute53Fake_RefusedBatchIsAnError(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	// A batch Route 53 refuses (here: the zone is not the one the record is in) comes back
	// as the error of the call, with Route 53's code.
	f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300))
	cfg := testConfig(f, false)
	f.zoneName = "elsewhere.test."
	s := openSwitcher(t, cfg)
	_, err := s.Set(context.Background(), teal.All(teal.Green), nil)
	if err == nil || !strings.Contains(err.Error(), "ChangeResourceRecordSets") || !strings.Contains(err.Error(), "InvalidChangeBatch") {
		t.Fatalf("Set = %v, want the ChangeResourceRecordSets call and InvalidChangeBatch named", err)
	}
}

func TestRoute53Fake_CNAMETargets(t *testing.T) {
	awsEnv(t, "AKIDTEALFAKE")
	f := newFakeRoute53(t, "Z123", "example.test.", simpleA("127.0.0.2", 300))
	cfg := testConfig(f, false)
	cfg.Targets = map[teal.Color]string{teal.Blue: "blue-lb.example.net", teal.Green: "green-lb.example.net"}
	s := openSwitcher(t, cfg)
	set(t, s, teal.All(teal.Green), nil)
	want := "UPSERT shop.example.test. CNAME ttl=30 green-lb.example.net.\nDELETE shop.example.test. A ttl=300 127.0.0.2"
	if got := show(f.Batches()[0]); got != want {
		t.Fatalf("batch =\n%s\nwant\n%s", got, want)
	}
}

func TestSwitcher_OpenRefusesBadInput(t *testing.T) {
	cfg := teal.DefaultDNSConfig()
	cfg.Zone, cfg.Record = "example.test.", "shop.example.test."
	if err := NewSwitcher(cfg).Open(context.Background()); !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), "hosted_zone_id and region are required") {
		t.Fatalf("Open without zone id and region = %v, want ErrInvalid", err)
	}
	cfg.Route53.HostedZoneID, cfg.Route53.Region = "Z1", "us-east-1"
	cfg.Record = "shop.other.test."
	if err := NewSwitcher(cfg).Open(context.Background()); !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), "not inside zone") {
		t.Fatalf("Open with a record outside the zone = %v, want ErrInvalid", err)
	}
}
