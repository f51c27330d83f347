package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

func TestDatabase_Ready(t *testing.T) {
	c := startCluster(t, nil)
	ctx := context.Background()
	noVerify := func(c *teal.DatabaseConfig) { c.Verify = VerifyNone }

	t.Run("apply error fails within seconds", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, c, c, "rdy1", noVerify)
		blue := a.first(t, 10)
		green := a.prepare(t, teal.Green, "v2", blue)
		lag, err := a.d.Ready(ctx, green)
		if err != nil {
			t.Fatalf("Ready = %v, want nil", err)
		}
		if lag.Fence <= 0 || lag.Checked.IsZero() {
			t.Fatalf("lag = %+v, want a fence round trip", lag)
		}

		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		watched := make(chan error, 1)
		go a.d.Watch(wctx, green, 50*time.Millisecond, func(err error) { watched <- err })

		// A row written on the copy (as admin: the role cannot) whose key the live side then uses.
		mustExec(t, a.pool(t, green), "INSERT INTO items (id, v) VALUES (1000000, 1)")
		mustExec(t, a.pool(t, blue), "INSERT INTO items (id, v) VALUES (1000000, 2)")
		start := time.Now()
		var last error
		pollUntil(t, 15*time.Second, "Ready naming the stuck table", func() bool {
			_, last = a.d.Ready(ctx, green)
			return last != nil && strings.Contains(last.Error(), "INSERT on public.items")
		})
		t.Logf("apply error seen after %v: %v", time.Since(start), last)
		if !errors.Is(last, ErrReplication) {
			t.Fatalf("Ready = %v, want ErrReplication", last)
		}
		sub := a.d.SubName(teal.Blue, teal.Green)
		if !strings.Contains(last.Error(), sub+" was disabled by an error") {
			t.Fatalf("Ready = %v, want it to name subscription %s", last, sub)
		}
		if !strings.Contains(teal.HintOf(last), "SKIP") {
			t.Fatalf("hint %q does not warn against SKIP", teal.HintOf(last))
		}
		select {
		case err := <-watched:
			if !errors.Is(err, ErrReplication) {
				t.Fatalf("Watch reported %v, want ErrReplication", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Watch did not report the apply error")
		}
		if err := a.d.Teardown(ctx, green); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DDL on the live database", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, c, c, "rdy2", noVerify)
		blue := a.first(t, 10)
		green := a.prepare(t, teal.Green, "v2", blue)
		live := a.pool(t, blue)
		steps := []struct {
			ddl, want string
		}{
			{"ALTER TABLE items ADD COLUMN late text", "column public.items.late exists on the live database but not on the copy"},
			{"CREATE TABLE newer (id int PRIMARY KEY)", "table public.newer exists on the live database but not on the copy"},
		}
		for _, s := range steps {
			mustExec(t, live, s.ddl)
			_, err := a.d.Ready(ctx, green)
			if !errors.Is(err, ErrReplication) || !strings.Contains(err.Error(), "DDL on the live database during the release") ||
				!strings.Contains(err.Error(), s.want) {
				t.Fatalf("after %s: Ready = %v, want DDL reported: %s", s.ddl, err, s.want)
			}
		}
		// The same table created on the copy too is still not replicated.
		mustExec(t, a.pool(t, green), "CREATE TABLE newer (id int PRIMARY KEY); ALTER TABLE items ADD COLUMN late text")
		if _, err := a.d.Ready(ctx, green); err == nil || !strings.Contains(err.Error(), "table public.newer is not in publication") {
			t.Fatalf("Ready = %v, want the unpublished table named", err)
		}
		if err := a.d.Teardown(ctx, green); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("refused over max_lag", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, c, c, "rdy3", noVerify)
		blue := a.first(t, 10)
		green := a.prepare(t, teal.Green, "v2", blue)
		// Stop applying, then write: the copy falls behind by the WAL written.
		mustExec(t, a.pool(t, green), "ALTER SUBSCRIPTION "+a.d.SubName(teal.Blue, teal.Green)+" DISABLE")
		a.d.cfg.MaxLag = 1
		_, err := a.d.Ready(ctx, green)
		if err == nil || !errors.Is(err, ErrReplication) {
			t.Fatalf("Ready with the subscription disabled = %v, want ErrReplication", err)
		}
		mustExec(t, a.pool(t, green), "ALTER SUBSCRIPTION "+a.d.SubName(teal.Blue, teal.Green)+" ENABLE")
		mustExec(t, a.pool(t, blue), "INSERT INTO items (v) SELECT i FROM generate_series(1, 20000) i")
		var lag teal.DBLag
		pollUntil(t, 10*time.Second, "a lag refusal", func() bool {
			lag, err = a.d.Ready(ctx, green)
			return errors.Is(err, teal.ErrRefused)
		})
		if !strings.Contains(err.Error(), "max_lag") && !strings.Contains(err.Error(), "has not reported yet") {
			t.Fatalf("Ready = %v, want a lag refusal", err)
		}
		a.d.cfg.MaxLag = teal.DefaultMaxLag
		pollUntil(t, 15*time.Second, "the copy catching up", func() bool {
			lag, err = a.d.Ready(ctx, green)
			return err == nil
		})
		if lag.Bytes > int64(teal.DefaultMaxLag) {
			t.Fatalf("lag = %d bytes, want within max_lag", lag.Bytes)
		}
	})
}

// pgoutput messages, as pg_logical_slot_peek_binary_changes returns them.
func msgBegin() []byte { return msgBeginAt(1) }
func msgBeginAt(lsn uint64) []byte {
	b := make([]byte, 21)
	b[0] = 'B'
	binary.BigEndian.PutUint64(b[1:], lsn)
	return b
}
func msgCommit() []byte { return append([]byte{'C'}, make([]byte, 25)...) }
func msgChange(op byte, rel uint32) []byte {
	b := []byte{op, 0, 0, 0, 0, 'N', 0, 0}
	binary.BigEndian.PutUint32(b[1:], rel)
	return b
}
func msgTruncate(rels ...uint32) []byte {
	b := make([]byte, 6+4*len(rels))
	b[0] = 'T'
	binary.BigEndian.PutUint32(b[1:], uint32(len(rels)))
	for i, r := range rels {
		binary.BigEndian.PutUint32(b[6+4*i:], r)
	}
	return b
}

func TestFirstTransaction(t *testing.T) {
	tests := []struct {
		name    string
		msgs    [][]byte
		applied uint64
		want    []walChange
	}{
		{"none", nil, 0, nil},
		{"one insert", [][]byte{msgBegin(), {'R', 0, 0, 0x40, 0}, msgChange('I', 16384), msgCommit()}, 0,
			[]walChange{{"INSERT", 16384}}},
		{"transactions already applied skipped",
			[][]byte{msgBeginAt(100), msgChange('I', 1), msgCommit(), msgBeginAt(200), msgChange('U', 2), msgCommit()}, 100,
			[]walChange{{"UPDATE", 2}}},
		{"first transaction only, each change once",
			[][]byte{msgBegin(), msgChange('I', 1), msgChange('I', 1), msgChange('U', 2), msgChange('D', 1), msgCommit(),
				msgBegin(), msgChange('I', 3), msgCommit()}, 0,
			[]walChange{{"INSERT", 1}, {"UPDATE", 2}, {"DELETE", 1}}},
		{"truncate", [][]byte{msgBegin(), msgTruncate(7, 8), msgCommit()}, 0, []walChange{{"TRUNCATE", 7}, {"TRUNCATE", 8}}},
		{"empty transaction skipped", [][]byte{msgBegin(), msgCommit(), msgBegin(), msgChange('D', 9), msgCommit()}, 0,
			[]walChange{{"DELETE", 9}}},
		{"short messages ignored", [][]byte{{'I', 1}, {'T', 0, 0, 0, 9}, {'B', 1}, {}, msgChange('U', 4)}, 0, []walChange{{"UPDATE", 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstTransaction(tt.msgs, tt.applied); !slices.Equal(got, tt.want) {
				t.Fatalf("firstTransaction = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzFirstTransaction(f *testing.F) {
	f.Add(msgChange('I', 1), msgTruncate(1, 2))
	f.Add([]byte{'T', 0xff, 0xff, 0xff, 0xff, 0}, msgCommit())
	f.Fuzz(func(t *testing.T, a, b []byte) {
		got := firstTransaction([][]byte{a, b}, 0)
		if len(got) > len(a)+len(b) {
			t.Fatalf("%d changes from %d bytes", len(got), len(a)+len(b))
		}
	})
}

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0/0", 0, true},
		{"16/B374D848", 0x16B374D848, true},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1, true},
		{"16B374D848", 0, false},
		{"1/xyz", 0, false},
		{"100000000/0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLSN(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseLSN(%q) = %#x, %v; want %#x, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseLSN(f *testing.F) {
	f.Add("16/B374D848")
	f.Add("0/0")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseLSN(s)
		if err != nil {
			return
		}
		if back, err := parseLSN(fmt.Sprintf("%X/%X", n>>32, n&0xffffffff)); err != nil || back != n {
			t.Fatalf("parseLSN(%q) = %#x, does not round trip: %#x, %v", s, n, back, err)
		}
	})
}
