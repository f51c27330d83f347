package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

func TestDatabase_PreflightBlocks(t *testing.T) {
	logical := startCluster(t, nil)
	// A second server that lacks everything a clone needs.
	poor := startCluster(t, map[string]string{
		"wal_level": "replica", "max_replication_slots": "1", "max_logical_replication_workers": "1"})
	tests := []struct {
		name    string
		cluster *testutil.Cluster
		setup   string   // SQL on the live database
		want    []string // substrings of the error; none: preflight passes
	}{
		{name: "clean", cluster: logical, setup: "CREATE TABLE ok (id int PRIMARY KEY)"},
		{name: "no replica identity", cluster: logical, setup: "CREATE TABLE nokey (a int)",
			want: []string{"public.nokey", "ADD PRIMARY KEY", "REPLICA IDENTITY USING INDEX", "REPLICA IDENTITY FULL"}},
		{name: "replica identity full is enough", cluster: logical, setup: "CREATE TABLE full_ident (a int); ALTER TABLE full_ident REPLICA IDENTITY FULL"},
		{name: "unlogged table", cluster: logical, setup: "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)",
			want: []string{"public.scratch", "UNLOGGED", "SET LOGGED"}},
		{name: "large object", cluster: logical, setup: "SELECT lo_create(0)",
			want: []string{"1 large object", "bytea"}},
		{name: "leftover slot", cluster: logical, setup: "SELECT pg_create_logical_replication_slot('teal_pf5_green_blue', 'pgoutput')",
			want: []string{"leftover replication slot teal_pf5_green_blue", "inactive, retaining", "pg_drop_replication_slot('teal_pf5_green_blue')"}},
		{name: "wal_level replica", cluster: poor, setup: "CREATE TABLE ok (id int PRIMARY KEY)",
			want: []string{"wal_level=replica", "wal_level = logical", "rds.logical_replication"}},
		{name: "every problem at once", cluster: poor, setup: "CREATE TABLE a (x int); CREATE TABLE b (y int); CREATE UNLOGGED TABLE u (id int PRIMARY KEY)",
			want: []string{"6 problem(s)", "wal_level=replica", "public.a", "public.b", "public.u",
				"1 of max_replication_slots=1 free", "1 of max_logical_replication_workers=1 free"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := "pf" + string(rune('0'+i))
			a := newApp(t, tt.cluster, tt.cluster, name, nil)
			ctx := context.Background()
			// The first release only needs a recent server and privileges: it passes everywhere.
			if err := a.d.Preflight(ctx, a.target(teal.Blue, "v1", nil)); err != nil {
				t.Fatalf("Preflight(first release) = %v", err)
			}
			live := &teal.DBEnv{Name: name, Role: a.d.RoleName(teal.Blue), Server: a.d.prod.addr, Production: true}
			tt.cluster.Psql(t, name, tt.setup)

			err := a.d.Preflight(ctx, a.target(teal.Green, "v2", live))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Preflight = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, teal.ErrRefused) {
				t.Fatalf("Preflight = %v, want ErrRefused", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Preflight error lacks %q:\n%v", w, err)
				}
			}
			t.Log(err)
			if teal.HintOf(err) == "" {
				t.Errorf("Preflight error has no hint")
			}
			// Prepare refuses the same way, before creating anything.
			if _, err := a.d.Prepare(ctx, a.target(teal.Green, "v2", live), nil); !errors.Is(err, teal.ErrRefused) {
				t.Fatalf("Prepare = %v, want ErrRefused", err)
			}
			if got := tt.cluster.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+a.d.DBName(teal.Green, "v2")+"'"); got != "0" {
				t.Fatalf("Prepare created the copy despite the preflight")
			}
		})
	}
}
