package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/api"
	"teal.dev/teal/internal/freeport"
	"teal.dev/teal/internal/load"
	"teal.dev/teal/internal/pgcluster"
	"teal.dev/teal/sampleapp"
)

func newDemoCmd(g *globals) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole blue-green story on this machine with a built-in sample app",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the server running at the end and print its addresses")
	return cmd
}

func newSampleAppCmd(g *globals) *cobra.Command {
	var version string
	var startDelay time.Duration
	cmd := &cobra.Command{
		Use:    "sample-app",
		Short:  "Serve the built-in sample app on $PORT (what teal demo releases)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			port := os.Getenv("PORT")
			if port == "" {
				return teal.Errorf(teal.ErrInvalid, "teal sets PORT for the instances it starts", "PORT is not set")
			}
			if startDelay > 0 {
				// A slow starter, for tests and demos of the health deadline.
				select {
				case <-time.After(startDelay):
				case <-cmd.Context().Done():
					return nil
				}
			}
			return sampleapp.Run(cmd.Context(), net.JoinHostPort("127.0.0.1", port), version)
		},
	}
	cmd.Flags().StringVar(&version, "version", "dev", "the version the app reports")
	cmd.Flags().DurationVar(&startDelay, "start-delay", 0, "wait this long before listening")
	return cmd
}

// demo is one run of teal demo: a server in-process, the sample app as two versions, and a
// steady load whose every response is counted.
type demo struct {
	out    io.Writer
	dir    string
	srv    *server
	client *api.Client
	reads  *load.Reads
	writes *load.Writes // nil without PostgreSQL

	clusters []*pgcluster.Cluster // production, preproduction; none without PostgreSQL
}

func runDemo(ctx context.Context, out io.Writer, keep bool) (err error) {
	dir, err := os.MkdirTemp("", "teal-demo-")
	if err != nil {
		return err
	}
	d := &demo{out: out, dir: dir}
	defer func() {
		if !keep || err != nil {
			if cerr := d.close(err == nil); cerr != nil && err == nil {
				err = cerr
			}
		}
		if err == nil && !keep {
			os.RemoveAll(dir)
		}
	}()
	if err := d.setUp(ctx); err != nil {
		return err
	}
	if err := d.story(ctx); err != nil {
		d.say("demo failed: %v (server log: %s)", err, filepath.Join(dir, "server.log"))
		return err
	}
	if keep {
		d.say("")
		d.say("The server keeps running. Try it:")
		d.say("  traffic    http://%s", d.srv.ListenAddr)
		d.say("  preview    http://%s", d.srv.PreviewAddr)
		d.say("  dashboard  http://%s  (log in with the token in %s)", d.srv.AdminAddr, d.srv.Config.AdminTokenFile)
		d.say("  teal -c %s status", filepath.Join(dir, "teal.yaml"))
		d.say("Ctrl-C stops it, its instances and its databases.")
		<-ctx.Done()
		return d.close(true)
	}
	return nil
}

// close stops the server with its instances, then the throwaway clusters, whose files are
// removed unless the demo failed (their logs tell why).
func (d *demo) close(removeData bool) error {
	var first error
	if d.srv != nil {
		d.srv.StopInstances = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		first = d.srv.Close(ctx)
		cancel()
		d.srv = nil
	}
	for _, c := range d.clusters {
		if err := c.Stop(context.Background()); err != nil && first == nil {
			first = err
		}
		if removeData {
			os.RemoveAll(c.Dir)
		} else {
			d.say("  PostgreSQL log: %s", filepath.Join(c.Dir, "server.log"))
		}
	}
	d.clusters = nil
	return first
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// setUp writes two versions of the sample app and a teal.yaml, starts two throwaway
// PostgreSQL clusters when the server binaries are installed, and starts the server.
func (d *demo) setUp(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the teal binary: %w", err)
	}
	d.say("teal demo — in %s", d.dir)
	dbYAML, err := d.startPostgres(ctx)
	if err != nil {
		return err
	}
	for _, v := range []string{"v1", "v2"} {
		dir := filepath.Join(d.dir, "build", v)
		if err := writeSampleArtifact(dir, self, v); err != nil {
			return err
		}
		if err := sampleapp.WriteMigrations(dir, v); err != nil {
			return err
		}
	}
	ports, err := freeport.Ports(3)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(d.dir, "teal.yaml")
	yaml := fmt.Sprintf(`app: shop
listen: 127.0.0.1:%d
preview: 127.0.0.1:%d
admin: 127.0.0.1:%d
run:
  command: ["{artifact}/app"]
  instances: 2
  stop_timeout: 5s
health:
  path: /healthz
  interval: 200ms
  timeout: 1s
  healthy_after: 2
  deadline: 30s
release:
  approval: manual
  drain_timeout: 5s
  keep_old: 30m
  post_check: 3s
  analysis: { max_error_rate: 1%%, max_p99: 2s, min_requests: 20 }
verify:
  smoke:
    - { name: home page, request: GET /, expect: { status: 200, body_contains: shop } }
    - { name: version, request: GET /version, expect: { status: 200 } }
%s`, ports[0], ports[1], ports[2], dbYAML)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		return err
	}
	cfg, err := teal.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.dir, "server.log"))
	if err != nil {
		return err
	}
	d.srv = &server{Config: cfg, Logger: slog.New(slog.NewTextHandler(logf, nil))}
	if err := d.srv.Start(ctx); err != nil {
		return err
	}
	d.client = api.NewClient("http://"+d.srv.AdminAddr, d.srv.token)
	d.client.Actor = "cli:demo"
	d.say("  server up: traffic http://%s, preview http://%s, admin http://%s", d.srv.ListenAddr, d.srv.PreviewAddr, d.srv.AdminAddr)
	return nil
}

// startPostgres starts a production and a preproduction cluster and returns the database
// section of teal.yaml; without PostgreSQL it says so and returns "".
func (d *demo) startPostgres(ctx context.Context) (string, error) {
	if _, err := pgcluster.Bin(); err != nil {
		d.say("  PostgreSQL server binaries are not installed: the demo runs without a database (apt-get install postgresql adds it)")
		return "", nil
	}
	d.say("  PostgreSQL found: starting two throwaway clusters, production and preproduction")
	for range 2 {
		// Not under d.dir: when root runs the demo, the postgres user must reach it.
		dir, err := os.MkdirTemp("", "teal-demo-pg-")
		if err != nil {
			return "", err
		}
		c, err := pgcluster.Start(ctx, dir, pgcluster.Options{})
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("start PostgreSQL: %w", err)
		}
		d.clusters = append(d.clusters, c)
	}
	if _, err := d.clusters[0].Psql(ctx, "postgres", "CREATE DATABASE shop"); err != nil {
		return "", err
	}
	return fmt.Sprintf(`database:
  mode: clone
  production: %s
  preproduction: %s
  freeze_timeout: 10s
`, d.clusters[0].DSN("shop"), d.clusters[1].DSN("postgres")), nil
}

// writeSampleArtifact makes a directory artifact: a copy of this binary and a script that runs
// it as the sample app of version v. Each version is a different, immutable directory.
func writeSampleArtifact(dir, self, v string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "teal"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	script := fmt.Sprintf("#!/bin/sh\n# The sample app, version %s.\nexec \"$(dirname \"$0\")/teal\" sample-app --version %s\n", v, v)
	return os.WriteFile(filepath.Join(dir, "app"), []byte(script), 0o755)
}

func (d *demo) story(ctx context.Context) error {
	c := d.client
	for _, v := range []string{"v1", "v2"} {
		a, err := c.PushArtifact(ctx, v, filepath.Join(d.dir, "build", v))
		if err != nil {
			return fmt.Errorf("push %s: %w", v, err)
		}
		d.say("  pushed %s  %s", v, a.Digest)
	}

	d.say("\n1. First release: v1 goes straight to blue (nothing live to protect)")
	if len(d.clusters) > 0 {
		d.say("   its migration 0001 creates the orders table in the production database, in place")
	}
	if _, err := c.Deploy(ctx, "v1"); err != nil {
		return err
	}
	if err := d.released(ctx, "v1"); err != nil {
		return err
	}
	d.say("   live: %s", d.get(ctx, d.srv.ListenAddr, "/"))

	base := "http://" + d.srv.ListenAddr
	d.reads = load.StartReads(base, load.ReadsOptions{Plain: 6, Slow: 1, Posts: 1})
	msg := "8 clients with keep-alive, one of them slow (1 s requests)"
	if len(d.clusters) > 0 {
		d.writes = load.StartWrites(base, 2)
		msg += ", and 2 clients writing orders (insert, then update)"
	}
	d.say("\n2. Steady load on the live address: %s", msg)
	if err := d.waitLoad(ctx, 200, ""); err != nil {
		return err
	}

	d.say("\n3. Deploy v2 to green while blue serves")
	if len(d.clusters) > 0 {
		d.say("   green gets its own copy of the data, kept in sync, and migration 0002 (a new column)")
	}
	if _, err := c.Deploy(ctx, "v2"); err != nil {
		return err
	}
	rel, err := d.waitRelease(ctx, func(r *teal.Release) bool { return r.Outcome != nil || r.Phase == teal.PhaseAwaitingRelease })
	if err != nil {
		return err
	}
	if rel.Outcome != nil {
		return fmt.Errorf("release of v2 ended %s: %s", *rel.Outcome, rel.Error)
	}
	for _, s := range rel.Steps {
		mark := "✓"
		if s.State == teal.StepRunning {
			mark = "…"
		}
		d.say("   %s %-22s %s", mark, s.Name, s.Duration(time.Now()).Round(time.Millisecond))
	}
	d.say("   preview (green): %s", d.get(ctx, d.srv.PreviewAddr, "/"))
	d.say("   live    (blue):  %s", d.get(ctx, d.srv.ListenAddr, "/"))

	d.say("\n4. Promote: the gate opens, traffic switches to green under load")
	if _, err := c.Promote(ctx); err != nil {
		return err
	}
	if err := d.released(ctx, "v2"); err != nil {
		return err
	}
	rel, err = d.waitRelease(ctx, func(r *teal.Release) bool { return r.Outcome != nil })
	if err != nil {
		return err
	}
	switchTime := stepDuration(rel, "switch")
	if err := d.waitLoad(ctx, 100, "v2"); err != nil {
		return err
	}
	d.say("   switched in %s; live: %s", switchTime, d.get(ctx, d.srv.ListenAddr, "/"))

	d.say("\n5. Roll back: blue is still warm, traffic goes back at once")
	if _, err := c.Rollback(ctx, false); err != nil {
		return err
	}
	if err := d.waitLoad(ctx, 100, "v1"); err != nil {
		return err
	}
	d.say("   live: %s", d.get(ctx, d.srv.ListenAddr, "/"))

	d.say("\n6. And forward again: promote re-releases the warm green")
	if _, err := c.Promote(ctx); err != nil {
		return err
	}
	if err := d.released(ctx, "v2"); err != nil {
		return err
	}
	if err := d.waitLoad(ctx, 100, "v2"); err != nil {
		return err
	}
	d.say("   live: %s", d.get(ctx, d.srv.ListenAddr, "/"))
	return d.summary(ctx, switchTime)
}

// summary stops the load and prints what it measured.
func (d *demo) summary(ctx context.Context, switchTime time.Duration) error {
	hits := d.reads.Stop()
	var ok, failed, slow int
	byVersion := map[string]int{}
	var failures []string
	for _, h := range hits {
		if h.Err != nil {
			failed++
			if len(failures) < 5 {
				failures = append(failures, h.Err.Error())
			}
			continue
		}
		ok++
		byVersion[h.Version]++
		if strings.HasPrefix(h.Path, "/slow") {
			slow++
		}
	}
	d.say("\nSummary")
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  requests served\t%d\t(v1 %d, v2 %d, and POSTs)\n", ok, byVersion["v1"], byVersion["v2"])
	fmt.Fprintf(tw, "  failed requests\t%d\t\n", failed)
	fmt.Fprintf(tw, "  slow (1 s) requests\t%d\t\n", slow)
	fmt.Fprintf(tw, "  switch time\t%s\t(the release's switch step, all of it)\n", switchTime)
	var lost []int64
	if d.writes != nil {
		acked, wfailed := d.writes.Stop()
		present, err := d.ordersOnLive(ctx)
		if err != nil {
			return err
		}
		lost = d.writes.Missing(present)
		failed += len(wfailed)
		failures = append(failures, wfailed...)
		if st, err := d.client.Status(ctx); err == nil && st.LastDBSwitch != nil {
			fmt.Fprintf(tw, "  writes frozen at the last switch\t%s\t(requests held in the router meanwhile)\n", st.LastDBSwitch.Freeze.Round(time.Millisecond))
		}
		fmt.Fprintf(tw, "  database writes acknowledged\t%d\t(orders inserted, then updated)\n", len(acked))
		fmt.Fprintf(tw, "  present on the live database\t%d\t\n", len(acked)-len(lost))
		fmt.Fprintf(tw, "  database writes lost\t%d\t\n", len(lost))
		fmt.Fprintf(tw, "  failed writes\t%d\t\n", len(wfailed))
	} else {
		fmt.Fprintf(tw, "  database writes lost\t-\t(no PostgreSQL on this machine)\n")
	}
	tw.Flush()
	for _, e := range failures {
		d.say("  failure: %s", e)
	}
	switch {
	case failed > 0:
		return fmt.Errorf("%d requests failed during the demo", failed)
	case len(lost) > 0:
		return fmt.Errorf("%d acknowledged writes are not on the live database", len(lost))
	}
	return nil
}

// ordersOnLive reads every order (id → note) from the live colour's database.
func (d *demo) ordersOnLive(ctx context.Context) (map[int64]string, error) {
	st, err := d.client.Status(ctx)
	if err != nil {
		return nil, err
	}
	var db *teal.DBEnv
	for _, e := range st.Environments {
		if st.Live != nil && e.Color == st.Live.Color {
			db = e.Database
		}
	}
	if db == nil {
		return nil, fmt.Errorf("the live colour has no database recorded")
	}
	cluster := d.clusters[0]
	if strings.HasSuffix(db.Server, fmt.Sprintf(":%d", d.clusters[1].Port)) {
		cluster = d.clusters[1]
	}
	conn, err := pgx.Connect(ctx, cluster.DSN(db.Name))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id, coalesce(note, '') FROM orders")
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			return nil, err
		}
		out[id] = note
	}
	return out, rows.Err()
}

// waitLoad waits for n more answers (from version v, if given) and checks no write failed.
func (d *demo) waitLoad(ctx context.Context, n int, v string) error {
	count := d.reads.Count
	if v != "" {
		count = func() int { return d.reads.CountVersion(v) }
	}
	start := count()
	if err := load.WaitFor(ctx, 30*time.Second, fmt.Sprintf("%d answers", n), func() bool { return count() >= start+n }); err != nil {
		return err
	}
	if d.writes != nil {
		return d.writes.WaitMore(ctx, 10, 30*time.Second)
	}
	return nil
}

// released waits for the current release of v to end and checks it was released.
func (d *demo) released(ctx context.Context, v string) error {
	rel, err := d.waitRelease(ctx, func(r *teal.Release) bool { return r.Outcome != nil })
	if err != nil {
		return err
	}
	if *rel.Outcome != teal.OutcomeReleased {
		return fmt.Errorf("release of %s ended %s: %s", v, *rel.Outcome, rel.Error)
	}
	return nil
}

func stepDuration(r *teal.Release, name string) time.Duration {
	for _, s := range r.Steps {
		if s.Name == name && s.Finished != nil {
			return s.Finished.Sub(s.Started).Round(time.Microsecond)
		}
	}
	return 0
}

// waitRelease polls the current release until done says so.
func (d *demo) waitRelease(ctx context.Context, done func(*teal.Release) bool) (*teal.Release, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		st, err := d.client.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.Release != nil && done(st.Release) {
			return st.Release, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the release: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *demo) get(ctx context.Context, addr, path string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return strings.TrimSpace(string(b))
}
