package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Markers of the Database section in docs/benchmarks.md: the table between begin and end is
// replaced by each run, and each run adds a line under history.
const (
	markBegin   = "<!-- db:begin -->"
	markEnd     = "<!-- db:end -->"
	markHistory = "<!-- db:history -->"
)

// docSection is the Database section, appended to the document the first time.
const docSection = `
## Database

teal's database step on PostgreSQL: how long cloning the production database into a new
colour's copy takes with each clone strategy, against a plain parallel ` + "`pg_dump`/`pg_restore`" + `,
and how long writes are frozen by a switchover while pgbench writes. Produced by
` + "`bench/db.sh`" + `.

` + markBegin + `
` + markEnd + `

### Database history

` + markHistory + `
`

// docHeader starts a benchmarks document that does not exist yet.
const docHeader = `# Benchmarks

How fast teal's own moving parts are, measured on the project's machines with the scripts in
` + "`bench/`" + ` (see ` + "`bench/README.md`" + `). Each section shows the latest run; earlier runs are kept as
a dated history under it. Re-run a script to refresh its section.
`

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 1) of ds: the smallest value
// at least p of the samples are at or under. For 20 samples, p99 is the largest.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.1f", d.Seconds()) }

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// formatBytes writes n in binary units, as PostgreSQL's pg_size_pretty does.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// render returns the markdown of a run for the Database section, and its history line.
func render(r *result) (table, line string) {
	var b strings.Builder
	o := r.Opts
	when := r.When.Format("2006-01-02 15:04 UTC")
	fmt.Fprintf(&b, "Run %s, commit %s: PostgreSQL %s, production and preproduction on two throwaway\n", when, r.Commit, r.PGVersion)
	fmt.Fprintf(&b, "clusters on this machine (fsync off, shared_buffers %s); the production database made by\n", settings["shared_buffers"])
	fmt.Fprintf(&b, "`pgbench -i -s %d`: %s, %d accounts.\n\n", o.Scale, formatBytes(r.DBBytes), r.Accounts)

	fmt.Fprintf(&b, "**Clone** of the production database into a new database on the preproduction cluster:\n\n")
	fmt.Fprintf(&b, "| method | time s | ÷ baseline | detail |\n|---|---:|---:|---|\n")
	base := baselineMean(r.Baselines)
	var runs []string
	for i, br := range r.Baselines {
		when := "before teal's clones"
		if i > 0 {
			when = "after them"
		}
		runs = append(runs, fmt.Sprintf("%s s %s (dump %s s, restore %s s; load %s)", secs(br.total()), when, secs(br.Dump), secs(br.Restore), br.Load))
	}
	var bytes int64
	if len(r.Baselines) > 0 {
		bytes = r.Baselines[0].Bytes
	}
	fmt.Fprintf(&b, "| `pg_dump -Fd -j2`, then `pg_restore -j2` (baseline) | %s | 1.00 | mean of %s; %s; a copy, not kept in sync |\n",
		secs(base), strings.Join(runs, " and "), formatBytes(bytes))
	for _, c := range r.Clones {
		fmt.Fprintf(&b, "| teal, `clone_strategy: %s` | %s | %s | in sync after %s s (%s×): %s; %s; load %s |\n",
			c.Strategy, secs(c.Total), ratio(c.Total, base), secs(c.Synced), ratio(c.Synced, base), phases(c), formatBytes(c.Bytes), c.Load)
	}
	fmt.Fprintf(&b, "\nteal's time is its whole `Prepare` of the new colour: pre-flight, schema, publication and slot,\n")
	fmt.Fprintf(&b, "the data, replication caught up (\"in sync\"), the colour's role, `ANALYZE` (`verify: none`).\n")
	fmt.Fprintf(&b, "Its phases are the client programs teal ran, timed by teal; the rest is teal's own SQL, the\n")
	fmt.Fprintf(&b, "subscription's copy (strategy subscription) and catching up. Load is the 1-minute load average\n")
	fmt.Fprintf(&b, "when each started.\n\n")

	n := len(r.Switches)
	var freezes []time.Duration
	for _, s := range r.Switches {
		freezes = append(freezes, s.Freeze)
	}
	tps := 0.0
	if r.LoadTime > 0 {
		tps = float64(r.LoadRows) / r.LoadTime.Seconds()
	}
	fmt.Fprintf(&b, "**Freeze window**, %d switchovers alternating blue → green and green → blue, each after %s of\n", n, o.Hold)
	fmt.Fprintf(&b, "`pgbench -n -b tpcb-like -M prepared -c %d -j %d` writing to the live colour as that colour's own\n", o.Clients, o.Threads)
	fmt.Fprintf(&b, "role (%.0f transactions/s on average before the switches; the freeze ends its sessions and a new\n", tps)
	fmt.Fprintf(&b, "pgbench starts on the new live colour):\n\n")
	fmt.Fprintf(&b, "| | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| **freeze window** (freeze → open) | **%s** | **%s** | %s |\n", ms(percentile(freezes, 0.5)), ms(percentile(freezes, 0.99)), ms(percentile(freezes, 1)))
	for _, name := range stepNames(r) {
		var ds []time.Duration
		for _, s := range r.Switches {
			for _, st := range s.Steps {
				if st.Name == name {
					ds = append(ds, st.Duration)
				}
			}
		}
		label := "step: " + name
		switch name {
		case "prepare":
			label += " (before the freeze)"
		case "drop forward":
			label += " (after the window)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", label, ms(percentile(ds, 0.5)), ms(percentile(ds, 0.99)), ms(percentile(ds, 1)))
	}
	fmt.Fprintf(&b, "| whole `Switchover` call | %s | %s | %s |\n", ms(percentile(r.Walls, 0.5)), ms(percentile(r.Walls, 0.99)), ms(percentile(r.Walls, 1)))
	fmt.Fprintf(&b, "\np99 is the nearest rank: of %d samples, ", n)
	if n <= 100 {
		fmt.Fprintf(&b, "the largest.")
	} else {
		fmt.Fprintf(&b, "the %d-th smallest.", int(math.Ceil(0.99*float64(n))))
	}
	acked := "pgbench's count is missing for some runs"
	if r.AckedKnown {
		acked = fmt.Sprintf("pgbench reported %d transactions committed", r.Acked)
	}
	consistent := "**balances do not add up**"
	if r.Consistent {
		consistent = "balances add up (Σ abalance = Σ tbalance = Σ bbalance = Σ history delta)"
	}
	fmt.Fprintf(&b, " Writes: %s; the final live database holds %d of them in\n", acked, r.Present)
	fmt.Fprintf(&b, "pgbench_history (more is possible: a commit can land as its session is ended, before pgbench\n")
	fmt.Fprintf(&b, "counts it); %s; other pgbench errors: %d.\n", consistent, len(r.Unexpected))
	if len(r.Unexpected) > 0 {
		fmt.Fprintf(&b, "\n")
		for _, u := range r.Unexpected[:min(len(r.Unexpected), 5)] {
			fmt.Fprintf(&b, "- `%s`\n", strings.ReplaceAll(u, "`", "'"))
		}
	}
	fmt.Fprintf(&b, "\nMachine: %d cores (%s), shared with other engineers' builds and tests while this ran:\n", r.Cores, r.CPU)
	fmt.Fprintf(&b, "load average %s at the start, %s at the end. Both clusters, pgbench and teal share\n", r.LoadStart, r.LoadEnd)
	fmt.Fprintf(&b, "the cores, so absolute times are noisy; compare the ratios within one run.\n")

	var clones []string
	for _, c := range r.Clones {
		clones = append(clones, fmt.Sprintf("%s %s s (%s×)", c.Strategy, secs(c.Total), ratio(c.Total, base)))
	}
	line = fmt.Sprintf("- %s, commit %s: clone of %s (scale %d): baseline %s s, %s; freeze p50 %s ms, p99 %s ms over %d switchovers at %.0f tx/s (%d cores, load %s)",
		when, r.Commit, formatBytes(r.DBBytes), o.Scale, secs(base), strings.Join(clones, ", "),
		ms(percentile(freezes, 0.5)), ms(percentile(freezes, 0.99)), n, tps, r.Cores, r.LoadEnd)
	return b.String(), line
}

// baselineMean is the mean total of the baseline's runs.
func baselineMean(runs []baselineRun) time.Duration {
	if len(runs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, r := range runs {
		sum += r.total()
	}
	return sum / time.Duration(len(runs))
}

// phases splits a clone's time into the client programs teal ran, named by their place in
// the strategy's sequence (postgres.Database.clone), and the rest.
func phases(c cloneRun) string {
	var names []string
	var tools time.Duration
	for _, t := range c.Tools {
		names = append(names, t.Name)
		tools += t.Took
	}
	var labels []string
	switch strings.Join(names, " ") {
	case "pg_dump pg_restore pg_dump pg_restore pg_restore":
		labels = []string{"schema dump", "schema restore", "data dump", "data restore", "indexes and keys"}
	case "pg_dump pg_restore":
		labels = []string{"schema dump", "schema restore"}
	default:
		labels = names
	}
	var parts []string
	for i, t := range c.Tools {
		parts = append(parts, fmt.Sprintf("%s %s s", labels[i], secs(t.Took)))
	}
	rest := "the rest"
	if c.Strategy == "subscription" {
		rest = "the subscription's copy and the rest"
	}
	return strings.Join(append(parts, fmt.Sprintf("%s %s s", rest, secs(c.Synced-tools))), ", ")
}

// stepNames lists the switchover steps in the order the first switchover ran them, then any
// the others ran besides.
func stepNames(r *result) []string {
	var names []string
	for _, s := range r.Switches {
		for _, st := range s.Steps {
			if !slices.Contains(names, st.Name) {
				names = append(names, st.Name)
			}
		}
	}
	return names
}

// updateDoc puts table into doc's Database section (adding the section at the end when it is
// missing) and line at the top of its history; the rest of doc is left as it is.
func updateDoc(doc, table, line string) (string, error) {
	if !strings.Contains(doc, markBegin) {
		if strings.TrimSpace(doc) == "" {
			doc = docHeader
		}
		doc = strings.TrimRight(doc, "\n") + "\n" + docSection
	}
	begin := strings.Index(doc, markBegin)
	end := strings.Index(doc, markEnd)
	if end < begin {
		return "", fmt.Errorf("%s comes before %s", markEnd, markBegin)
	}
	doc = doc[:begin+len(markBegin)] + "\n" + strings.TrimRight(table, "\n") + "\n" + doc[end:]
	h := strings.Index(doc, markHistory)
	if h < 0 {
		return "", fmt.Errorf("%s is missing", markHistory)
	}
	h += len(markHistory)
	return doc[:h] + "\n" + line + doc[h:], nil
}

// writeDoc updates the Database section of the markdown file at path, atomically.
func writeDoc(path, table, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	doc, err := updateDoc(string(old), table, line)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return nil
}
