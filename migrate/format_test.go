package migrate

import (
	"strings"
	"testing"
	"time"
)

func TestFormatPlan(t *testing.T) {
	stmts := func(sql string) []Statement {
		t.Helper()
		s, err := newClassifier(testCatalog()).classify(sql)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mig := func(v int64, name, sql string) Migration {
		m := Migration{Version: v, Name: name}
		m.setStatements(stmts(sql))
		return m
	}
	p := &Plan{
		Applied: []AppliedMigration{{Version: 1, Name: "0001_orders.sql", Actor: "alice", ReleaseID: 3,
			AppliedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}},
		Pending:  []Migration{mig(2, "0002_note.sql", "ALTER TABLE orders ADD COLUMN discount numeric")},
		HeldBack: []Migration{mig(3, "0003_drop.sql", "ALTER TABLE orders DROP COLUMN note")},
		Refused:  []Migration{mig(4, "0004_status.sql", "ALTER TABLE orders ADD COLUMN status text NOT NULL")},
	}
	tests := []struct {
		name    string
		withSQL bool
		want    []string
		notWant []string
	}{
		{"summary", false, []string{
			"Applied: 1, the latest 0001_orders.sql at 2026-01-02 03:04:05Z by alice (release 3)",
			"Pending (1)", "0002_note.sql  [safe before cutover]",
			"Held back (1)", "0003_drop.sql  [after cutover only]", "ALTER TABLE orders DROP COLUMN note", "drops the column orders.note",
			"Refused (1)", "0004_status.sql  [breaks replication]", "without a default", "fix: add the column with a DEFAULT",
		}, []string{"ADD COLUMN discount"}},
		{"with SQL", true, []string{
			"      ALTER TABLE orders ADD COLUMN discount numeric", "-> safe before cutover: adds a nullable column",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := FormatPlan(&b, p, tt.withSQL); err != nil {
				t.Fatalf("FormatPlan: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Fatalf("output does not contain %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(b.String(), w) {
					t.Fatalf("output contains %q:\n%s", w, b.String())
				}
			}
		})
	}

	var b strings.Builder
	if err := FormatPlan(&b, &Plan{}, false); err != nil {
		t.Fatalf("FormatPlan: %v", err)
	}
	if got, want := b.String(), "Applied: none\nNothing to run.\n"; got != want {
		t.Fatalf("empty plan = %q, want %q", got, want)
	}
}
