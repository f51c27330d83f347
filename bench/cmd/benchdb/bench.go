package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/pgcluster"
	"teal.dev/teal/postgres"
)

// Names in the benchmark's clusters.
const (
	app        = "bench"          // teal's app: roles bench_blue and bench_green
	prodDB     = "bench"          // the production database, blue's from the first release
	baselineDB = "bench_baseline" // the baseline's restore target on the preproduction cluster
)

// settings are the clusters' server settings on top of pgcluster's (fsync off, logical WAL):
// the same for teal and the baseline, and closer to a real server's memory than the tests'.
var settings = map[string]string{
	"shared_buffers":       "256MB",
	"maintenance_work_mem": "256MB",
	"max_wal_size":         "4GB",
}

// bench is one run of the benchmark.
type bench struct {
	opts   options
	stderr io.Writer
	log    *slog.Logger

	prod, preprod *pgcluster.Cluster
	secrets       string // role passwords of teal's colours
	tools         toolRuns
}

// result is what a run measured.
type result struct {
	When               time.Time
	Commit, PGVersion  string
	CPU                string
	Cores              int
	LoadStart, LoadEnd string
	Opts               options
	Accounts, DBBytes  int64
	Baselines          []baselineRun // before and after teal's clones
	Clones             []cloneRun
	Switches           []teal.SwitchReport
	Walls              []time.Duration // each Switchover call, start to return
	LoadRows           int64           // transactions committed during the holds before switchovers
	LoadTime           time.Duration   // the holds' total
	Acked, Present     int64           // pgbench's committed transactions; history rows on the final live side
	AckedKnown         bool            // every pgbench run printed its count
	Unexpected         []string        // pgbench errors other than its sessions being ended by the freeze
	Consistent         bool            // the final live side's balances add up
}

// baselineRun is pg_dump -Fd -j2 then pg_restore -j2 into a fresh database.
type baselineRun struct {
	Dump, Restore time.Duration
	Bytes         int64
	Load          string // the 1-minute load average when it started
}

func (b baselineRun) total() time.Duration { return b.Dump + b.Restore }

// cloneRun is one teal Prepare of green from blue.
type cloneRun struct {
	Strategy string
	Synced   time.Duration // until "copy in sync": every table copied and caught up
	Total    time.Duration // the whole Prepare: preflight … ANALYZE
	Bytes    int64         // the copy's size
	Tools    []toolRun     // the PostgreSQL client programs teal ran, in order
	Load     string        // the 1-minute load average when it started
}

func (b *bench) say(format string, args ...any) {
	fmt.Fprintf(b.stderr, "benchdb: "+format+"\n", args...)
}

func (o options) strategies() []string {
	var out []string
	for s := range strings.SplitSeq(o.Strategies, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// run starts the clusters, generates the data, measures and cleans up.
func (b *bench) run(ctx context.Context) (*result, error) {
	r := &result{Opts: b.opts, LoadStart: loadAvg(), Cores: runtime.NumCPU(), CPU: cpuModel(), Commit: gitCommit(b.opts.Doc)}
	if len(b.opts.strategies()) == 0 {
		return nil, errors.New("-strategies: at least one strategy is needed (the switchovers use its copy)")
	}
	defer b.stopClusters()
	if err := b.startClusters(ctx); err != nil {
		return nil, err
	}
	var err error
	if r.PGVersion, err = b.prod.Psql(ctx, "postgres", "SHOW server_version"); err != nil {
		return nil, err
	}
	r.PGVersion, _, _ = strings.Cut(r.PGVersion, " ") // "15.20 (Debian 15.20-0+deb12u1)"
	if err := b.generate(ctx, r); err != nil {
		return nil, err
	}

	// The first release: blue is the production database, migrated in place.
	d, err := b.database(ctx, "dump")
	if err != nil {
		return nil, err
	}
	blue, err := d.Prepare(ctx, teal.DBTarget{Color: teal.Blue, Version: "v1"}, nil)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("first release (blue in place): %w", err)
	}

	// The baseline runs before and after teal's clones: the machine is shared, and its load
	// changes over minutes.
	base, err := b.baseline(ctx)
	if err != nil {
		return nil, err
	}
	r.Baselines = append(r.Baselines, base)
	var green *teal.DBEnv
	strategies := b.opts.strategies()
	for i, s := range strategies {
		d, err := b.database(ctx, s)
		if err != nil {
			return nil, err
		}
		c, env, err := b.clone(ctx, d, s, blue)
		if err == nil && i < len(strategies)-1 {
			err = d.Teardown(ctx, env)
		}
		d.Close()
		if err != nil {
			return nil, err
		}
		r.Clones = append(r.Clones, c)
		green = env
	}
	if base, err = b.baseline(ctx); err != nil {
		return nil, err
	}
	r.Baselines = append(r.Baselines, base)

	// The last strategy's copy is in sync: switch back and forth under load.
	d, err = b.database(ctx, strategies[len(strategies)-1])
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := b.switchovers(ctx, d, blue, green, r); err != nil {
		return nil, err
	}
	r.When = time.Now().UTC()
	r.LoadEnd = loadAvg()
	return r, nil
}

// startClusters starts the production and the preproduction cluster, each in a directory of
// its own under the system's temporary directory: when root runs this, initdb runs as the
// postgres user, which must reach it.
func (b *bench) startClusters(ctx context.Context) error {
	for _, c := range []**pgcluster.Cluster{&b.prod, &b.preprod} {
		dir, err := os.MkdirTemp("", "teal-benchdb-pg-")
		if err != nil {
			return err
		}
		cl, err := pgcluster.Start(ctx, dir, pgcluster.Options{Settings: settings})
		if err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("start PostgreSQL: %w", err)
		}
		*c = cl
	}
	secrets, err := os.MkdirTemp("", "teal-benchdb-secrets-")
	if err != nil {
		return err
	}
	b.secrets = secrets
	b.say("clusters up: production on port %d, preproduction on port %d", b.prod.Port, b.preprod.Port)
	return nil
}

// stopClusters stops and removes both clusters, whatever happened before.
func (b *bench) stopClusters() {
	ctx := context.Background()
	for _, c := range []*pgcluster.Cluster{b.prod, b.preprod} {
		if c == nil {
			continue
		}
		if err := c.Stop(ctx); err != nil {
			b.say("stop cluster in %s: %v", c.Dir, err)
		}
		if err := os.RemoveAll(c.Dir); err != nil {
			b.say("remove %s: %v", c.Dir, err)
		}
	}
	if b.secrets != "" {
		os.RemoveAll(b.secrets)
	}
}

// generate makes the production database with pgbench and gives pgbench_history the primary
// key logical replication needs (pre-flight refuses a published table without one).
func (b *bench) generate(ctx context.Context, r *result) error {
	if _, err := b.prod.Psql(ctx, "postgres", "CREATE DATABASE "+prodDB); err != nil {
		return err
	}
	b.say("generating the production database: pgbench -i -s %d", b.opts.Scale)
	start := time.Now()
	if _, err := b.tool(ctx, b.prod, "pgbench", "-i", "-q", "-I", "dtGvp", "-s", strconv.Itoa(b.opts.Scale), b.prod.DSN(prodDB)); err != nil {
		return err
	}
	if _, err := b.prod.Psql(ctx, prodDB, "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY; CHECKPOINT"); err != nil {
		return err
	}
	out, err := b.prod.Psql(ctx, prodDB, "SELECT pg_database_size(current_database()), (SELECT count(*) FROM pgbench_accounts)")
	if err != nil {
		return err
	}
	if _, err := fmt.Sscanf(out, "%d|%d", &r.DBBytes, &r.Accounts); err != nil {
		return fmt.Errorf("size of %s: %q: %w", prodDB, out, err)
	}
	b.say("generated %s (%d accounts) in %s", formatBytes(r.DBBytes), r.Accounts, time.Since(start).Round(time.Second))
	if r.DBBytes < 1<<30 {
		b.say("note: %s is under 1 GB; raise -scale for the figure the issue asks for", formatBytes(r.DBBytes))
	}
	return nil
}

// database returns teal's database step for the two clusters with clone strategy s; every
// instance shares the role passwords.
func (b *bench) database(ctx context.Context, s string) (*postgres.Database, error) {
	d := postgres.NewDatabase(app, teal.DatabaseConfig{
		Mode:          "clone",
		Engine:        teal.DefaultDatabaseEngine,
		Production:    b.prod.DSN(prodDB),
		Preproduction: b.preprod.DSN("postgres"),
		NameTemplate:  teal.DefaultNameTemplate,
		Verify:        postgres.VerifyNone,
		MaxLag:        teal.DefaultMaxLag,
		FreezeTimeout: teal.DefaultFreezeTimeout,
		ReverseSync:   true,
		CloneStrategy: s,
	}, b.secrets)
	d.Logger = slog.New(&toolTimer{next: b.log.Handler(), runs: &b.tools})
	if err := d.Open(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// baseline times pg_dump -Fd -j2 of the production database, then pg_restore -j2 of it into
// a fresh database on the preproduction cluster, and drops that database again. Owners,
// privileges and teal's publications are left out, as teal's clone leaves them out.
func (b *bench) baseline(ctx context.Context) (baselineRun, error) {
	run := baselineRun{Load: loadAvg1()}
	tmp, err := os.MkdirTemp("", "teal-benchdb-dump-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(tmp)
	dump := filepath.Join(tmp, "dump")
	b.say("baseline: pg_dump -Fd -j2")
	start := time.Now()
	if _, err := b.tool(ctx, b.prod, "pg_dump", "-Fd", "-j2", "--no-publications", "--no-subscriptions", "-f", dump, b.prod.DSN(prodDB)); err != nil {
		return run, err
	}
	run.Dump = time.Since(start)
	if _, err := b.preprod.Psql(ctx, "postgres", "CREATE DATABASE "+baselineDB); err != nil {
		return run, err
	}
	b.say("baseline: pg_restore -j2 (the dump took %s)", run.Dump.Round(10*time.Millisecond))
	start = time.Now()
	if _, err := b.tool(ctx, b.preprod, "pg_restore", "-j2", "--no-owner", "--no-privileges", "--exit-on-error", "-d", b.preprod.DSN(baselineDB), dump); err != nil {
		return run, err
	}
	run.Restore = time.Since(start)
	out, err := b.preprod.Psql(ctx, baselineDB, "SELECT pg_database_size(current_database())")
	if err != nil {
		return run, err
	}
	if run.Bytes, err = strconv.ParseInt(out, 10, 64); err != nil {
		return run, fmt.Errorf("size of %s: %w", baselineDB, err)
	}
	if _, err := b.preprod.Psql(ctx, "postgres", "DROP DATABASE "+baselineDB); err != nil {
		return run, err
	}
	b.say("baseline: %s (dump %s, restore %s)", run.total().Round(10*time.Millisecond),
		run.Dump.Round(10*time.Millisecond), run.Restore.Round(10*time.Millisecond))
	return run, nil
}

// clone times teal's Prepare of green v2 from blue with strategy s and returns the copy, in
// sync.
func (b *bench) clone(ctx context.Context, d *postgres.Database, s string, blue *teal.DBEnv) (cloneRun, *teal.DBEnv, error) {
	c := cloneRun{Strategy: s, Load: loadAvg1()}
	b.tools.reset()
	b.say("teal, clone_strategy %s: Prepare green from blue", s)
	var last time.Time
	start := time.Now()
	progress := func(msg string, attrs map[string]any) {
		if msg == "copy in sync" && c.Synced == 0 {
			c.Synced = time.Since(start)
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			b.say("  %s: %s", time.Since(start).Round(time.Second), msg)
		}
	}
	env, err := d.Prepare(ctx, teal.DBTarget{Color: teal.Green, Version: "v2", Live: blue}, progress)
	if err != nil {
		return c, nil, fmt.Errorf("clone by %s: %w", s, err)
	}
	c.Total = time.Since(start)
	c.Tools = b.tools.take()
	pool, err := d.Admin(ctx, env.Server, env.Name)
	if err != nil {
		return c, nil, err
	}
	if err := pool.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&c.Bytes); err != nil {
		return c, nil, fmt.Errorf("size of %s: %w", env.Name, err)
	}
	b.say("teal, clone_strategy %s: in sync after %s, Prepare done in %s", s,
		c.Synced.Round(10*time.Millisecond), c.Total.Round(10*time.Millisecond))
	return c, env, nil
}

// switchovers runs opts.Switches switchovers, alternating blue → green and green → blue, each
// after opts.Hold of pgbench writing to the live colour as that colour's own role. The freeze
// ends pgbench's sessions (the role is frozen and its backends terminated), so a new pgbench
// is started against the new live colour after each switch.
func (b *bench) switchovers(ctx context.Context, d *postgres.Database, blue, green *teal.DBEnv, r *result) error {
	live, other := blue, green
	r.AckedKnown = true
	before, err := b.historyRows(ctx, d, live)
	if err != nil {
		return err
	}
	for i := range b.opts.Switches {
		env, err := d.InstanceEnv(ctx, live)
		if err != nil {
			return err
		}
		load, err := b.startLoad(ctx, env["DATABASE_URL"])
		if err != nil {
			return err
		}
		rows, held, err := b.hold(ctx, d, live, load)
		if err != nil {
			load.kill()
			return fmt.Errorf("switchover %d: %w", i+1, err)
		}
		r.LoadRows += rows
		r.LoadTime += held
		start := time.Now()
		rep, err := d.Switchover(ctx, live, other, func(context.Context) error { return nil })
		wall := time.Since(start)
		acked, unexpected, known := load.stop()
		r.Acked += acked
		r.AckedKnown = r.AckedKnown && known
		r.Unexpected = append(r.Unexpected, unexpected...)
		if err != nil {
			return fmt.Errorf("switchover %d (%s → %s): %w", i+1, colorOf(live), colorOf(other), err)
		}
		r.Switches = append(r.Switches, *rep)
		r.Walls = append(r.Walls, wall)
		b.say("switchover %d/%d %s → %s: freeze %s (%.0f tx/s before it)", i+1, b.opts.Switches,
			colorOf(live), colorOf(other), rep.Freeze.Round(100*time.Microsecond), float64(rows)/held.Seconds())
		live, other = other, live
	}
	after, err := b.historyRows(ctx, d, live)
	if err != nil {
		return err
	}
	r.Present = after - before
	pool, err := d.Admin(ctx, live.Server, live.Name)
	if err != nil {
		return err
	}
	// pgbench's tpcb-like transaction adds its delta to one account, teller and branch and
	// records it in pgbench_history, all in one transaction: the sums agree unless part of a
	// transaction was lost or applied twice.
	err = pool.QueryRow(ctx, `SELECT (SELECT coalesce(sum(delta), 0) FROM pgbench_history) = ALL (ARRAY[
		(SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
		(SELECT sum(bbalance) FROM pgbench_branches)])`).Scan(&r.Consistent)
	if err != nil {
		return fmt.Errorf("balances on %s: %w", live.Name, err)
	}
	return nil
}

// hold waits until pgbench is writing to env's database, then lets it write for opts.Hold,
// and returns how many transactions it committed meanwhile.
func (b *bench) hold(ctx context.Context, d *postgres.Database, env *teal.DBEnv, load *pgbenchRun) (int64, time.Duration, error) {
	start, err := b.historyRows(ctx, d, env)
	if err != nil {
		return 0, 0, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := b.historyRows(ctx, d, env)
		if err != nil {
			return 0, 0, err
		}
		if n >= start+int64(b.opts.Clients) {
			start = n
			break
		}
		if load.exited() || time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("pgbench is not writing to %s: %s", env.Name, load.output())
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return 0, 0, err
		}
	}
	began := time.Now()
	if err := sleep(ctx, b.opts.Hold); err != nil {
		return 0, 0, err
	}
	n, err := b.historyRows(ctx, d, env)
	if err != nil {
		return 0, 0, err
	}
	if load.exited() {
		return 0, 0, fmt.Errorf("pgbench stopped writing to %s: %s", env.Name, load.output())
	}
	return n - start, time.Since(began), nil
}

// historyRows counts pgbench_history on env's database: one row per committed transaction.
func (b *bench) historyRows(ctx context.Context, d *postgres.Database, env *teal.DBEnv) (int64, error) {
	pool, err := d.Admin(ctx, env.Server, env.Name)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&n); err != nil {
		return 0, fmt.Errorf("count pgbench_history on %s: %w", env.Name, err)
	}
	return n, nil
}

// pgbenchRun is a pgbench writing until its sessions are ended.
type pgbenchRun struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// startLoad starts pgbench's tpcb-like transactions (updates of an account, a teller and a
// branch, an insert into pgbench_history) against url, as the role url names.
func (b *bench) startLoad(ctx context.Context, url string) (*pgbenchRun, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(b.prod.Bin, "pgbench"), "-n", "-b", "tpcb-like", "-M", "prepared",
		"-c", strconv.Itoa(b.opts.Clients), "-j", strconv.Itoa(b.opts.Threads), "-T", "3600", url)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbench: %w", err)
	}
	r := &pgbenchRun{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // it exits 2 when its sessions are terminated, as they are meant to be
		close(r.done)
	}()
	return r, nil
}

func (r *pgbenchRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *pgbenchRun) output() string { return strings.TrimSpace(r.out.String()) }

func (r *pgbenchRun) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// stop waits for pgbench to end (the freeze terminated its sessions; it is killed if it has
// not ended within 10 s) and returns the transactions it reports committed, its errors other
// than the freeze ending its sessions, and whether it printed its count.
func (r *pgbenchRun) stop() (acked int64, unexpected []string, known bool) {
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.kill()
	}
	return parsePgbench(r.output())
}

// parsePgbench reads pgbench's report: "number of transactions actually processed: N" and
// the lines that say a client aborted or an error happened. The freeze ends every session of
// the role ("terminating connection due to administrator command"), and a client reconnecting
// meanwhile is refused ("not permitted to log in"): those are expected.
func parsePgbench(out string) (acked int64, unexpected []string, known bool) {
	expected := []string{"administrator command", "not permitted to log in", "server closed the connection",
		"connection to server", "Run was aborted", "perhaps the backend died", "SSL SYSCALL", "no connection to the server",
		"could not receive data from server", "permission denied for table", "permission denied for sequence"}
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "number of transactions actually processed:"); ok {
			v, _, _ = strings.Cut(strings.TrimSpace(v), "/")
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				acked, known = n, true
			}
			continue
		}
		if !strings.Contains(line, "aborted") && !strings.Contains(line, "ERROR") && !strings.Contains(line, "FATAL") && !strings.Contains(line, "error:") {
			continue
		}
		ok := false
		for _, e := range expected {
			if strings.Contains(line, e) {
				ok = true
				break
			}
		}
		if !ok {
			unexpected = append(unexpected, line)
		}
	}
	return acked, unexpected, known
}

// tool runs one of the server's client programs (pgbench, pg_dump, pg_restore) of cluster c.
func (b *bench) tool(ctx context.Context, c *pgcluster.Cluster, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, name), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", name, err, tail(string(out), 2000))
	}
	return string(out), nil
}

func colorOf(env *teal.DBEnv) string {
	_, c, _ := strings.Cut(env.Role, "_")
	return c
}

// sleep waits for d or until ctx ends. The benchmark's load runs for a fixed time: this is a
// duration, not a wait for a condition.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// loadAvg1 is the machine's 1-minute load average.
func loadAvg1() string {
	l, _, _ := strings.Cut(loadAvg(), " ")
	return l
}

// loadAvg is the machine's load average over 1, 5 and 15 minutes.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// gitCommit is the short commit of the repository the document (or else the working
// directory) is in.
func gitCommit(doc string) string {
	dir := "."
	if doc != "" {
		dir = filepath.Dir(doc)
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// lockedBuffer collects a process's output while other goroutines read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// toolRun is one PostgreSQL client program teal ran, and how long it took.
type toolRun struct {
	Name string
	Took time.Duration
}

// toolRuns collects the toolRuns of a clone.
type toolRuns struct {
	mu   sync.Mutex
	runs []toolRun
}

func (t *toolRuns) reset() {
	t.mu.Lock()
	t.runs = nil
	t.mu.Unlock()
}

func (t *toolRuns) take() []toolRun {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.runs
	t.runs = nil
	return out
}

// toolTimer is the log handler given to teal: it picks out teal's debug records of the client
// programs it ran ("ran pg_dump", took=…), so that a clone's time can be split into its dump
// and restore phases, and passes every record its next handler wants on to it.
type toolTimer struct {
	next slog.Handler
	runs *toolRuns
}

func (h *toolTimer) Enabled(context.Context, slog.Level) bool { return true }

func (h *toolTimer) Handle(ctx context.Context, r slog.Record) error {
	if name, ok := strings.CutPrefix(r.Message, "ran "); ok {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "took" && a.Value.Kind() == slog.KindDuration {
				h.runs.mu.Lock()
				h.runs.runs = append(h.runs.runs, toolRun{Name: name, Took: a.Value.Duration()})
				h.runs.mu.Unlock()
				return false
			}
			return true
		})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *toolTimer) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &toolTimer{next: h.next.WithAttrs(attrs), runs: h.runs}
}

func (h *toolTimer) WithGroup(name string) slog.Handler {
	return &toolTimer{next: h.next.WithGroup(name), runs: h.runs}
}
