package main

import (
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

func TestPercentile_NearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 20; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"p50 of 20", ds, 0.5, 10 * time.Millisecond},
		{"p99 of 20 is the largest", ds, 0.99, 20 * time.Millisecond},
		{"max", ds, 1, 20 * time.Millisecond},
		{"one sample", ds[:1], 0.5, 20 * time.Millisecond},
		{"none", nil, 0.5, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.ds, tc.p); got != tc.want {
				t.Fatalf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
	if ds[0] != 20*time.Millisecond {
		t.Fatalf("percentile sorted its argument: ds[0] = %v", ds[0])
	}
}

func TestUpdateDoc_KeepsOtherSections(t *testing.T) {
	router := "# Benchmarks\n\n## Router\n\n<!-- router:begin -->\nrouter table\n<!-- router:end -->\n\n### Router history\n\n<!-- router:history -->\n- router run\n"
	doc, err := updateDoc(router, "first table\n", "- run 1")
	if err != nil {
		t.Fatal(err)
	}
	doc, err = updateDoc(doc, "second table\n", "- run 2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc, router) {
		t.Fatalf("the Router section changed:\n%s", doc)
	}
	if strings.Contains(doc, "first table") || !strings.Contains(doc, markBegin+"\nsecond table\n"+markEnd) {
		t.Fatalf("table not replaced:\n%s", doc)
	}
	if !strings.Contains(doc, markHistory+"\n- run 2\n- run 1\n") {
		t.Fatalf("history not newest first:\n%s", doc)
	}
	if n := strings.Count(doc, "## Database\n"); n != 1 {
		t.Fatalf("Database sections = %d, want 1", n)
	}
}

func TestUpdateDoc_NewDocument(t *testing.T) {
	doc, err := updateDoc("", "table\n", "- run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc, "# Benchmarks\n") || !strings.Contains(doc, markBegin+"\ntable\n"+markEnd) {
		t.Fatalf("new document:\n%s", doc)
	}
}

func TestParsePgbench_FreezeIsExpected(t *testing.T) {
	out := `pgbench: error: client 2 aborted in command 5 (SQL) of script 0; perhaps the backend died while processing
pgbench: error: client 0 script 0 aborted in command 4 query 0: FATAL:  terminating connection due to administrator command
pgbench: error: client 3 script 0 aborted in command 8 query 0: ERROR:  duplicate key value violates unique constraint "pgbench_history_pkey"
transaction type: <builtin: TPC-B (sort of)>
number of transactions actually processed: 1234
pgbench: fatal: Run was aborted; the above results are incomplete.`
	acked, unexpected, known := parsePgbench(out)
	if !known || acked != 1234 {
		t.Fatalf("acked = %d (known %v), want 1234", acked, known)
	}
	if len(unexpected) != 1 || !strings.Contains(unexpected[0], "duplicate key") {
		t.Fatalf("unexpected = %q, want the duplicate key only", unexpected)
	}
}

func TestRender_Figures(t *testing.T) {
	r := &result{
		When: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC), Commit: "abc1234", PGVersion: "15.20",
		Cores: 2, CPU: "AMD EPYC", LoadStart: "1 2 3", LoadEnd: "4 5 6", Opts: defaultOptions(),
		DBBytes: 1 << 30, Accounts: 7000000,
		Baselines: []baselineRun{{Dump: 10 * time.Second, Restore: 30 * time.Second}, {Dump: 10 * time.Second, Restore: 50 * time.Second}},
		Clones: []cloneRun{{Strategy: "dump", Synced: 18 * time.Second, Total: 25 * time.Second, Tools: []toolRun{
			{"pg_dump", time.Second}, {"pg_restore", time.Second}, {"pg_dump", 5 * time.Second}, {"pg_restore", 5 * time.Second}, {"pg_restore", 4 * time.Second}}}},
		Switches: []teal.SwitchReport{{Freeze: 90 * time.Millisecond, Steps: []teal.TimedStep{{Name: "freeze", Duration: 30 * time.Millisecond}}}},
		Walls:    []time.Duration{300 * time.Millisecond},
		LoadRows: 1000, LoadTime: 2 * time.Second, Acked: 5, Present: 5, AckedKnown: true, Consistent: true,
	}
	table, line := render(r)
	for _, want := range []string{"| teal, `clone_strategy: dump` | 25.0 | 0.50 | in sync after 18.0 s (0.36×): schema dump 1.0 s, schema restore 1.0 s, data dump 5.0 s, data restore 5.0 s, indexes and keys 4.0 s, the rest 2.0 s;", "| **freeze window** (freeze → open) | **90.0** | **90.0** |", "load average 1 2 3 at the start"} {
		if !strings.Contains(table, want) {
			t.Fatalf("table lacks %q:\n%s", want, table)
		}
	}
	if !strings.Contains(line, "dump 25.0 s (0.50×)") || !strings.Contains(line, "500 tx/s") {
		t.Fatalf("history line = %q", line)
	}
}
