package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
)

// openStore opens a Store at path and closes it when the test ends.
func openStore(t testing.TB, path string) *Store {
	t.Helper()
	s := NewStore(path)
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newStore opens a Store in a fresh temporary directory.
func newStore(t testing.TB) *Store {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "teal.db"))
}

// at returns a UTC time on a fixed day with nanoseconds, so round trips are checked to the
// nanosecond; UTC values compare with reflect.DeepEqual after a round trip.
func at(minute, nsec int) time.Time {
	return time.Date(2026, 3, 14, 15, minute, 26, nsec, time.UTC)
}

func ptr[T any](v T) *T { return &v }

func TestStore_OpenSettings(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"writer journal mode", s.w, "journal_mode", "wal"},
		{"writer synchronous full", s.w, "synchronous", "2"},
		{"writer foreign keys", s.w, "foreign_keys", "1"},
		{"writer busy timeout", s.w, "busy_timeout", "5000"},
		{"writer schema version", s.w, "user_version", fmt.Sprint(len(migrations()))},
		{"reader journal mode", s.r, "journal_mode", "wal"},
		{"reader query only", s.r, "query_only", "1"},
		{"reader busy timeout", s.r, "busy_timeout", "5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := tt.db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
			}
			if got != tt.want {
				t.Fatalf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
}

func TestStore_ReadersCannotWrite(t *testing.T) {
	s := newStore(t)
	_, err := s.r.ExecContext(context.Background(), `DELETE FROM releases`)
	if err == nil {
		t.Fatalf("DELETE on a reader connection succeeded, want an error")
	}
}

func TestStore_OpenErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) *Store
		want    string
	}{
		{"no path", func(t *testing.T, path string) *Store { return NewStore("") }, "no path"},
		{"no readers", func(t *testing.T, path string) *Store {
			s := NewStore(path)
			s.MaxReaders = 0
			return s
		}, "max readers"},
		{"negative busy timeout", func(t *testing.T, path string) *Store {
			s := NewStore(path)
			s.BusyTimeout = -time.Second
			return s
		}, "busy timeout"},
		{"schema from a newer teal", func(t *testing.T, path string) *Store {
			s := openStore(t, path)
			if _, err := s.w.Exec(`PRAGMA user_version = 99`); err != nil {
				t.Fatalf("set user_version: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return NewStore(path)
		}, "newer than this teal"},
		{"open twice", func(t *testing.T, path string) *Store { return openStore(t, path) }, "already open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.prepare(t, filepath.Join(t.TempDir(), "teal.db"))
			err := s.Open(context.Background())
			if err == nil {
				_ = s.Close()
				t.Fatalf("Open = nil, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestStore_OpenCreatesDirectoryAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data dir?#x", "sub", "teal.db")
	s := NewStore(path)
	ctx := context.Background()
	if err := s.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	r := &teal.Release{Version: "v1", Color: teal.Blue, Phase: teal.PhaseProvisioning, Created: at(0, 0)}
	if err := s.CreateRelease(ctx, r); err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
	s = openStore(t, path)
	got, err := s.Release(ctx, r.ID)
	if err != nil {
		t.Fatalf("Release after reopen: %v", err)
	}
	if got.Version != "v1" {
		t.Fatalf("Version = %q, want v1", got.Version)
	}
}

func TestStore_CloseTwice(t *testing.T) {
	s := NewStore(filepath.Join(t.TempDir(), "teal.db"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close before Open = %v, want nil", err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}

func TestStore_ReleaseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    teal.Release
	}{
		{"first release just created", teal.Release{
			Version: "v1", Digest: "sha256:aa", Color: teal.Blue, Phase: teal.PhaseProvisioning,
			Actor: "alice", Created: at(0, 1),
		}},
		{"empty steps stay empty", teal.Release{
			Version: "v1", Color: teal.Blue, Phase: teal.PhaseProvisioning, Steps: []teal.Step{},
			Created: at(0, 0),
		}},
		{"in progress with a running step", teal.Release{
			Version: "v2", Digest: "sha256:bb", Color: teal.Green, From: teal.Blue,
			Phase: teal.PhaseVerifying, Actor: "jenkins",
			Steps: []teal.Step{
				{Name: "provisioning", State: teal.StepDone, Started: at(1, 0), Finished: ptr(at(2, 999999999))},
				{Name: "database", State: teal.StepSkipped, Started: at(2, 5), Finished: ptr(at(2, 5))},
				{Name: "verifying", State: teal.StepRunning, Started: at(3, 123456789)},
			},
			Created: at(1, 0), Promoted: ptr(at(4, 0)),
		}},
		{"released with every time", teal.Release{
			Version: "v3", Digest: "sha256:cc", Color: teal.Blue, From: teal.Green,
			Phase: teal.PhaseReleased, Outcome: ptr(teal.OutcomeReleased), Actor: "dashboard:bob",
			Steps: []teal.Step{
				{Name: "switching", State: teal.StepDone, Started: at(5, 0), Finished: ptr(at(6, 1))},
			},
			Created: at(1, 0), Promoted: ptr(at(4, 10)), Switched: ptr(at(5, 20)), Finished: ptr(at(6, 30)),
		}},
		{"failed with an error and quotes", teal.Release{
			Version: `v4 "quoted" 'and' ünïcode`, Color: teal.Green, From: teal.Blue,
			Phase: teal.PhaseProvisioning, Outcome: ptr(teal.OutcomeFailed), Actor: "auto",
			Error: "instance green/1: not healthy\nafter 2m", Created: at(7, 0), Finished: ptr(at(9, 0)),
			Steps: []teal.Step{
				{Name: "provisioning", State: teal.StepFailed, Started: at(7, 0), Finished: ptr(at(9, 0)), Error: "timeout"},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			r := tt.r
			if err := s.CreateRelease(ctx, &r); err != nil {
				t.Fatalf("CreateRelease: %v", err)
			}
			if r.ID != 1 {
				t.Fatalf("ID = %d, want 1", r.ID)
			}
			got, err := s.Release(ctx, r.ID)
			if err != nil {
				t.Fatalf("Release: %v", err)
			}
			if !reflect.DeepEqual(got, &r) {
				t.Fatalf("Release = %+v, want %+v", got, &r)
			}

			// Update to the next state, then back: every field is replaced both ways.
			next := teal.Release{
				ID: r.ID, Version: "other", Digest: "sha256:ff", Color: r.Color.Other(), From: "",
				Phase: teal.PhaseSwitching, Outcome: ptr(teal.OutcomeRolledBack), Actor: "carol",
				Error: "analysis refused", Steps: []teal.Step{{Name: "x", State: teal.StepDone, Started: at(50, 7)}},
				Created: at(40, 0), Promoted: ptr(at(41, 0)), Switched: ptr(at(42, 0)), Finished: ptr(at(43, 0)),
			}
			for _, want := range []*teal.Release{&next, &r} {
				if err := s.UpdateRelease(ctx, want); err != nil {
					t.Fatalf("UpdateRelease: %v", err)
				}
				got, err := s.Release(ctx, r.ID)
				if err != nil {
					t.Fatalf("Release: %v", err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("after UpdateRelease, Release = %+v, want %+v", got, want)
				}
				list, err := s.Releases(ctx, 0)
				if err != nil {
					t.Fatalf("Releases: %v", err)
				}
				if len(list) != 1 || !reflect.DeepEqual(list[0], want) {
					t.Fatalf("Releases = %+v, want [%+v]", list, want)
				}
			}
		})
	}
}

func TestStore_TimesComeBackUTCAndEqual(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	local := time.Date(2026, 1, 2, 3, 4, 5, 600700800, zone)
	now := time.Now() // carries a monotonic reading and the local zone

	r := &teal.Release{
		Version: "v1", Color: teal.Blue, Phase: teal.PhaseReleased, Created: now,
		Promoted: &local, Switched: &now,
		Steps: []teal.Step{{Name: "provisioning", State: teal.StepDone, Started: local, Finished: &now}},
	}
	if err := s.CreateRelease(ctx, r); err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	if r.Created != now || r.Steps[0].Started != local {
		t.Fatalf("CreateRelease changed the caller's times")
	}
	e := &teal.Event{ReleaseID: r.ID, Time: local, Kind: teal.EventPhase, Message: "m"}
	if err := s.AddEvent(ctx, e); err != nil {
		t.Fatalf("AddEvent: %v", err)
	}
	sys := &teal.System{Live: teal.Blue, Environments: map[teal.Color]*teal.Environment{
		teal.Blue: {Color: teal.Blue, State: teal.EnvLive, Since: local, RetireAt: &now,
			Instances: []teal.Instance{{Color: teal.Blue, Started: now}}},
	}}
	if err := s.SaveSystem(ctx, sys); err != nil {
		t.Fatalf("SaveSystem: %v", err)
	}
	if sys.Environments[teal.Blue].Since != local {
		t.Fatalf("SaveSystem changed the caller's times")
	}

	gotR, err := s.Release(ctx, r.ID)
	if err != nil {
		t.Fatalf("Release: %v", err)
	}
	events, err := s.Events(ctx, r.ID)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(events) != 1 {
		t.Fatalf("len(Events) = %d, want 1", len(events))
	}
	gotS, err := s.System(ctx)
	if err != nil {
		t.Fatalf("System: %v", err)
	}
	blue := gotS.Environments[teal.Blue]
	if blue == nil || len(blue.Instances) != 1 || blue.RetireAt == nil {
		t.Fatalf("System blue = %+v, want an environment with one instance and a retire time", blue)
	}
	tests := []struct {
		name      string
		got, want time.Time
	}{
		{"release created", gotR.Created, now},
		{"release promoted", *gotR.Promoted, local},
		{"release switched", *gotR.Switched, now},
		{"step started", gotR.Steps[0].Started, local},
		{"step finished", *gotR.Steps[0].Finished, now},
		{"event time", events[0].Time, local},
		{"environment since", blue.Since, local},
		{"environment retire at", *blue.RetireAt, now},
		{"instance started", blue.Instances[0].Started, now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.got.Equal(tt.want) {
				t.Fatalf("time = %v, want %v", tt.got, tt.want)
			}
			if tt.got.Location() != time.UTC {
				t.Fatalf("location = %v, want UTC", tt.got.Location())
			}
		})
	}
}

func TestStore_TimeOutOfRange(t *testing.T) {
	s := newStore(t)
	r := &teal.Release{Version: "v1", Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.CreateRelease(context.Background(), r); err == nil {
		t.Fatalf("CreateRelease with year 10000 = nil, want an error")
	}
}

func TestStore_NotFound(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"Release", func() error { _, err := s.Release(ctx, 42); return err }},
		{"UpdateRelease", func() error { return s.UpdateRelease(ctx, &teal.Release{ID: 42, Version: "v1"}) }},
		{"AddEvent of an unknown release", func() error {
			return s.AddEvent(ctx, &teal.Event{ReleaseID: 42, Kind: teal.EventAction, Message: "m"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, teal.ErrNotFound) {
				t.Fatalf("error = %v, want one wrapping teal.ErrNotFound", err)
			}
		})
	}
}

func TestStore_ReleasesNewestFirst(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for i := 1; i <= 25; i++ {
		r := &teal.Release{Version: fmt.Sprintf("v%d", i), Color: teal.Blue, Created: at(i, 0)}
		if err := s.CreateRelease(ctx, r); err != nil {
			t.Fatalf("CreateRelease: %v", err)
		}
		if r.ID != int64(i) {
			t.Fatalf("ID = %d, want %d", r.ID, i)
		}
	}
	tests := []struct {
		name        string
		limit       int
		first, last int64
		n           int
	}{
		{"zero means the default", 0, 25, 6, DefaultReleasesLimit},
		{"negative means the default", -1, 25, 6, DefaultReleasesLimit},
		{"one", 1, 25, 25, 1},
		{"three", 3, 25, 23, 3},
		{"more than there are", 100, 25, 1, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := s.Releases(ctx, tt.limit)
			if err != nil {
				t.Fatalf("Releases: %v", err)
			}
			if len(rs) != tt.n {
				t.Fatalf("len(Releases(%d)) = %d, want %d", tt.limit, len(rs), tt.n)
			}
			for i := 1; i < len(rs); i++ {
				if rs[i].ID >= rs[i-1].ID {
					t.Fatalf("Releases[%d].ID = %d after %d, want newest first", i, rs[i].ID, rs[i-1].ID)
				}
			}
			if rs[0].ID != tt.first || rs[len(rs)-1].ID != tt.last {
				t.Fatalf("Releases ids %d..%d, want %d..%d", rs[0].ID, rs[len(rs)-1].ID, tt.first, tt.last)
			}
		})
	}
}

func TestStore_ReleasesEmpty(t *testing.T) {
	s := newStore(t)
	rs, err := s.Releases(context.Background(), 0)
	if err != nil {
		t.Fatalf("Releases: %v", err)
	}
	if len(rs) != 0 {
		t.Fatalf("Releases = %v, want none", rs)
	}
}

func TestStore_EventsRoundTrip(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	r1 := &teal.Release{Version: "v1", Color: teal.Blue, Created: at(0, 0)}
	r2 := &teal.Release{Version: "v2", Color: teal.Green, Created: at(1, 0)}
	for _, r := range []*teal.Release{r1, r2} {
		if err := s.CreateRelease(ctx, r); err != nil {
			t.Fatalf("CreateRelease: %v", err)
		}
	}
	// Attrs hold what JSON gives back: strings, float64, bools, nil, []any and map[string]any.
	events := []*teal.Event{
		{ReleaseID: r1.ID, Time: at(2, 1), Kind: teal.EventPhase, Actor: "alice", Message: "provisioning",
			Attrs: map[string]any{"phase": "provisioning", "n": float64(2), "ok": true, "none": nil,
				"list": []any{"a", float64(1)}, "nested": map[string]any{"color": "blue"}}},
		{ReleaseID: 0, Time: at(2, 2), Kind: teal.EventHealth, Message: "blue/0 unhealthy"},
		{ReleaseID: r2.ID, Time: at(2, 3), Kind: teal.EventAction, Actor: "bob", Message: "deploy v2"},
		// Earlier time but added later: order is the order of adding.
		{ReleaseID: r1.ID, Time: at(1, 0), Kind: teal.EventStep, Actor: teal.ActorSystem, Message: "step done",
			Attrs: map[string]any{"step": "database"}},
		{ReleaseID: 0, Time: at(2, 4), Kind: teal.EventTraffic, Actor: teal.ActorAuto, Message: "all to blue"},
	}
	for i, e := range events {
		if err := s.AddEvent(ctx, e); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
		if e.ID != int64(i+1) {
			t.Fatalf("event ID = %d, want %d", e.ID, i+1)
		}
	}
	tests := []struct {
		name      string
		releaseID int64
		want      []*teal.Event
	}{
		{"first release", r1.ID, []*teal.Event{events[0], events[3]}},
		{"second release", r2.ID, []*teal.Event{events[2]}},
		{"no release", 0, []*teal.Event{events[1], events[4]}},
		{"unknown release", 99, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Events(ctx, tt.releaseID)
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Events(%d) = %s, want %s", tt.releaseID, eventsString(got), eventsString(tt.want))
			}
		})
	}
}

func eventsString(es []*teal.Event) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%+v ", *e)
	}
	return "[" + b.String() + "]"
}

func TestStore_SystemRoundTrip(t *testing.T) {
	full := &teal.System{
		Live:    teal.Green,
		Traffic: teal.Traffic{Blue: 10, Green: 90},
		Environments: map[teal.Color]*teal.Environment{
			teal.Blue: {Color: teal.Blue, Version: "v1", Digest: "sha256:aa", State: teal.EnvStandby,
				Since: at(1, 2), RetireAt: ptr(at(31, 2)),
				Instances: []teal.Instance{
					{Color: teal.Blue, Index: 0, Addr: "127.0.0.1:4001", PID: 101, Started: at(0, 5), Identity: "12345", Restarts: 1},
					{Color: teal.Blue, Index: 1, Addr: "127.0.0.1:4002", PID: 102, Started: at(0, 6), Identity: "12346"},
				}},
			teal.Green: {Color: teal.Green, Version: "v2", Digest: "sha256:bb", State: teal.EnvLive, Since: at(2, 3),
				Instances: []teal.Instance{{Color: teal.Green, Addr: "127.0.0.1:4003", Started: at(1, 0)}}},
		},
	}
	tests := []struct {
		name  string
		saves []*teal.System
		want  *teal.System
	}{
		{"none saved", nil, &teal.System{Environments: map[teal.Color]*teal.Environment{}}},
		{"both environments", []*teal.System{full}, full},
		{"nil environments come back empty", []*teal.System{{Live: teal.Blue, Traffic: teal.All(teal.Blue)}},
			&teal.System{Live: teal.Blue, Traffic: teal.All(teal.Blue), Environments: map[teal.Color]*teal.Environment{}}},
		{"the last save wins", []*teal.System{full, {Traffic: teal.All(teal.Green),
			Environments: map[teal.Color]*teal.Environment{teal.Green: {Color: teal.Green, State: teal.EnvReady, Since: at(5, 0)}}}},
			&teal.System{Traffic: teal.All(teal.Green),
				Environments: map[teal.Color]*teal.Environment{teal.Green: {Color: teal.Green, State: teal.EnvReady, Since: at(5, 0)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			for _, sys := range tt.saves {
				if err := s.SaveSystem(ctx, sys); err != nil {
					t.Fatalf("SaveSystem: %v", err)
				}
			}
			got, err := s.System(ctx)
			if err != nil {
				t.Fatalf("System: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("System = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStore_SaveSystemNil(t *testing.T) {
	s := newStore(t)
	if err := s.SaveSystem(context.Background(), nil); err == nil {
		t.Fatalf("SaveSystem(nil) = nil, want an error")
	}
}

func TestStore_IDsMonotonicAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "teal.db")
	ctx := context.Background()
	s := NewStore(path)
	if err := s.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i := 0; i < 3; i++ {
		r := &teal.Release{Version: fmt.Sprintf("v%d", i), Color: teal.Blue, Created: at(i, 0)}
		if err := s.CreateRelease(ctx, r); err != nil {
			t.Fatalf("CreateRelease: %v", err)
		}
		if err := s.AddEvent(ctx, &teal.Event{Kind: teal.EventAction, Message: "m", Time: at(i, 0)}); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
	}
	// Delete the newest rows behind the store's back: their ids must still not come back.
	if _, err := s.w.ExecContext(ctx, `DELETE FROM releases WHERE id = 3; DELETE FROM events WHERE id = 3`); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openStore(t, path)
	r := &teal.Release{Version: "v9", Color: teal.Green, Created: at(9, 0)}
	if err := s.CreateRelease(ctx, r); err != nil {
		t.Fatalf("CreateRelease after reopen: %v", err)
	}
	if r.ID != 4 {
		t.Fatalf("release ID after reopen = %d, want 4", r.ID)
	}
	e := &teal.Event{ReleaseID: r.ID, Kind: teal.EventAction, Message: "m", Time: at(9, 0)}
	if err := s.AddEvent(ctx, e); err != nil {
		t.Fatalf("AddEvent after reopen: %v", err)
	}
	if e.ID != 4 {
		t.Fatalf("event ID after reopen = %d, want 4", e.ID)
	}
}

func TestStore_ConcurrentWritersAndReaders(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const writers, perWriter, readers = 4, 6, 2

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = make(map[int64]bool)
		errs    = make(chan error, writers+readers)
		done    = make(chan struct{})
		readsWG sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			var last int64
			for i := 0; i < perWriter; i++ {
				r := &teal.Release{Version: fmt.Sprintf("w%d-%d", w, i), Color: teal.Blue,
					Phase: teal.PhaseProvisioning, Created: at(i, w)}
				if err := s.CreateRelease(ctx, r); err != nil {
					errs <- err
					return
				}
				if r.ID <= last {
					errs <- fmt.Errorf("writer %d: id %d after %d, want increasing", w, r.ID, last)
					return
				}
				last = r.ID
				mu.Lock()
				ids[r.ID] = true
				mu.Unlock()
				for _, msg := range []string{"start", "end"} {
					if err := s.AddEvent(ctx, &teal.Event{ReleaseID: r.ID, Kind: teal.EventPhase, Message: msg, Time: at(i, 0)}); err != nil {
						errs <- err
						return
					}
				}
				r.Phase, r.Outcome = teal.PhaseReleased, ptr(teal.OutcomeReleased)
				if err := s.UpdateRelease(ctx, r); err != nil {
					errs <- err
					return
				}
				sys := &teal.System{Live: teal.Blue, Traffic: teal.All(teal.Blue)}
				sys.Env(teal.Blue).Version = r.Version
				if err := s.SaveSystem(ctx, sys); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range readers {
		readsWG.Go(func() {
			for {
				rs, err := s.Releases(ctx, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(rs) > 0 {
					got, err := s.Release(ctx, rs[0].ID)
					if err != nil {
						errs <- err
						return
					}
					if got.Version != rs[0].Version {
						errs <- fmt.Errorf("release %d version %q, then %q", got.ID, rs[0].Version, got.Version)
						return
					}
					if _, err := s.Events(ctx, got.ID); err != nil {
						errs <- err
						return
					}
				}
				if _, err := s.System(ctx); err != nil {
					errs <- err
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readsWG.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent use: %v", err)
	}
	if t.Failed() {
		return
	}

	if len(ids) != writers*perWriter {
		t.Fatalf("distinct release ids = %d, want %d", len(ids), writers*perWriter)
	}
	rs, err := s.Releases(ctx, 1000)
	if err != nil {
		t.Fatalf("Releases: %v", err)
	}
	if len(rs) != writers*perWriter {
		t.Fatalf("len(Releases) = %d, want %d", len(rs), writers*perWriter)
	}
	for _, r := range rs {
		if !r.Done() {
			t.Fatalf("release %d not done, want every update stored", r.ID)
		}
		es, err := s.Events(ctx, r.ID)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if len(es) != 2 || es[0].Message != "start" || es[1].Message != "end" {
			t.Fatalf("Events(%d) = %s, want start then end", r.ID, eventsString(es))
		}
	}
}

// killChildEnv names the database a re-executed test binary writes before it kills itself.
const killChildEnv = "TEAL_SQLITE_KILL_CHILD_DB"

// killFixture is what the child writes and the parent expects to find.
func killFixture() (*teal.Release, *teal.Event, *teal.System) {
	r := &teal.Release{Version: "v7", Digest: "sha256:77", Color: teal.Green, From: teal.Blue,
		Phase: teal.PhaseReleased, Outcome: ptr(teal.OutcomeReleased), Actor: "alice",
		Steps:   []teal.Step{{Name: "switching", State: teal.StepDone, Started: at(1, 1), Finished: ptr(at(2, 2))}},
		Created: at(0, 0), Switched: ptr(at(2, 2)), Finished: ptr(at(2, 3))}
	e := &teal.Event{Time: at(2, 3), Kind: teal.EventTraffic, Actor: teal.ActorSystem, Message: "all to green",
		Attrs: map[string]any{"green": float64(100)}}
	sys := &teal.System{Live: teal.Green, Traffic: teal.All(teal.Green)}
	sys.Env(teal.Green).State = teal.EnvLive
	sys.Env(teal.Green).Instances = []teal.Instance{{Color: teal.Green, Addr: "127.0.0.1:4100", PID: 4242, Started: at(1, 0)}}
	sys.Env(teal.Blue).State = teal.EnvStandby
	return r, e, sys
}

// killChild writes the fixture, then SIGKILLs its own process the moment SaveSystem returns:
// no Close, no deferred functions, no buffers flushed.
func killChild(path string) {
	ctx := context.Background()
	s := NewStore(path)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	if err := s.Open(ctx); err != nil {
		fail(err)
	}
	r, e, sys := killFixture()
	want := *r
	r.Phase, r.Outcome, r.Finished = teal.PhaseSwitching, nil, nil
	if err := s.CreateRelease(ctx, r); err != nil {
		fail(err)
	}
	want.ID = r.ID
	if err := s.UpdateRelease(ctx, &want); err != nil {
		fail(err)
	}
	e.ReleaseID = r.ID
	if err := s.AddEvent(ctx, e); err != nil {
		fail(err)
	}
	if err := s.SaveSystem(ctx, sys); err != nil {
		fail(err)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

func TestStore_SurvivesKill(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		killChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "teal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestStore_SurvivesKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child: %v, want it killed; output:\n%s", err, out)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL; output:\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("WAL file after the kill: %v (the test wants recovery from the WAL)", err)
	}

	s := openStore(t, path)
	ctx := context.Background()
	wantR, wantE, wantS := killFixture()
	wantR.ID, wantE.ID, wantE.ReleaseID = 1, 1, 1
	gotR, err := s.Release(ctx, 1)
	if err != nil {
		t.Fatalf("Release after kill: %v", err)
	}
	if !reflect.DeepEqual(gotR, wantR) {
		t.Fatalf("Release after kill = %+v, want %+v", gotR, wantR)
	}
	gotE, err := s.Events(ctx, 1)
	if err != nil {
		t.Fatalf("Events after kill: %v", err)
	}
	if !reflect.DeepEqual(gotE, []*teal.Event{wantE}) {
		t.Fatalf("Events after kill = %s, want %s", eventsString(gotE), eventsString([]*teal.Event{wantE}))
	}
	gotS, err := s.System(ctx)
	if err != nil {
		t.Fatalf("System after kill: %v", err)
	}
	if !reflect.DeepEqual(gotS, wantS) {
		t.Fatalf("System after kill = %+v, want %+v", gotS, wantS)
	}
}
