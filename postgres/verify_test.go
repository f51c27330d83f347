package postgres

import (
	"context"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestDatabase_Verify(t *testing.T) {
	c := startCluster(t, nil)
	a := newApp(t, c, c, "ver", func(c *teal.DatabaseConfig) { c.Verify = VerifyNone })
	ctx := context.Background()
	blue := a.first(t, 25000) // three ranges of keys
	live := a.pool(t, blue)
	mustExec(t, live, "CREATE TABLE tk (k text PRIMARY KEY); INSERT INTO tk SELECT 'k' || i FROM generate_series(1, 50) i")
	green := a.prepare(t, teal.Green, "v2", blue)
	cp := a.pool(t, green)

	tables, err := verifyTables(ctx, live)
	if err != nil {
		t.Fatal(err)
	}
	pks := map[string]string{}
	for _, tb := range tables {
		pks[tb.name] = tb.pk
	}
	if pks["public.items"] != "id" || pks["public.tk"] != "" {
		t.Fatalf("primary keys for checksums = %v, want items: id, tk: none (rowcounts)", pks)
	}

	// A column only the copy has (added by its migration) is not compared.
	mustExec(t, cp, "UPDATE items SET extra = 'new' WHERE id % 7 = 0")
	for _, mode := range []string{VerifyRowCounts, VerifyChecksums, VerifyNone} {
		if err := a.d.verify(ctx, live, cp, mode); err != nil {
			t.Fatalf("verify(%s) of a copy in sync = %v", mode, err)
		}
	}
	if err := a.d.verify(ctx, live, cp, "bytes"); err == nil {
		t.Fatal("verify(bytes) = nil, want an error")
	}

	tests := []struct {
		name, tamper, undo string
		mode               string
		want               []string // substrings; none: passes
	}{
		{"extra row: rowcounts", "INSERT INTO items (id, v) VALUES (9000000, 1)", "DELETE FROM items WHERE id = 9000000",
			VerifyRowCounts, []string{"public.items has 25000 rows on the live database and 25001 on the copy"}},
		{"extra row: checksums", "INSERT INTO items (id, v) VALUES (9000000, 1)", "DELETE FROM items WHERE id = 9000000",
			VerifyChecksums, []string{"public.items differs in id ranges [9000000, 9010000)"}},
		{"changed value: rowcounts pass", "UPDATE items SET v = -1 WHERE id = 12345", "UPDATE items SET v = 12345 WHERE id = 12345",
			VerifyRowCounts, nil},
		{"changed value: checksums", "UPDATE items SET v = -1 WHERE id IN (12345, 20001)", "UPDATE items SET v = id WHERE id IN (12345, 20001)",
			VerifyChecksums, []string{"public.items differs in id ranges [10000, 20000), [20000, 30000)"}},
		{"table without an integer key: rowcounts", "DELETE FROM tk WHERE k = 'k1'", "INSERT INTO tk VALUES ('k1')",
			VerifyChecksums, []string{"public.tk has 50 rows on the live database and 49 on the copy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustExec(t, cp, tt.tamper)
			defer mustExec(t, cp, tt.undo)
			err := a.d.verify(ctx, live, cp, tt.mode)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("verify = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("verify of a tampered copy = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("verify = %v, want it to say %q", err, w)
				}
			}
		})
	}
}
