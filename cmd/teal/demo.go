package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/api"
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
	load   *loadGen
}

func runDemo(ctx context.Context, out io.Writer, keep bool) (err error) {
	dir, err := os.MkdirTemp("", "teal-demo-")
	if err != nil {
		return err
	}
	d := &demo{out: out, dir: dir}
	defer func() {
		if d.srv != nil && !keep {
			d.srv.StopInstances = true
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if cerr := d.srv.Close(cctx); cerr != nil && err == nil {
				err = cerr
			}
			cancel()
		}
		if !keep && err == nil {
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
		d.say("  API        http://%s  (token in %s)", d.srv.AdminAddr, d.srv.Config.AdminTokenFile)
		d.say("  teal -c %s status", filepath.Join(dir, "teal.yaml"))
		d.say("Ctrl-C stops it and its instances.")
		<-ctx.Done()
		d.srv.StopInstances = true
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return d.srv.Close(cctx)
	}
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// setUp writes two versions of the sample app and a teal.yaml, and starts the server.
func (d *demo) setUp(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the teal binary: %w", err)
	}
	for _, v := range []string{"v1", "v2"} {
		if err := writeSampleArtifact(filepath.Join(d.dir, "build", v), self, v); err != nil {
			return err
		}
	}
	ports, err := freePorts(3)
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
`, ports[0], ports[1], ports[2])
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
	d.say("teal demo — in %s", d.dir)
	d.say("  server up: traffic http://%s, preview http://%s, admin http://%s", d.srv.ListenAddr, d.srv.PreviewAddr, d.srv.AdminAddr)
	return nil
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
	if _, err := c.Deploy(ctx, "v1"); err != nil {
		return err
	}
	if _, err := d.waitRelease(ctx, func(r *teal.Release) bool { return r.Outcome != nil }); err != nil {
		return err
	}
	d.say("   live: %s", d.get(ctx, d.srv.ListenAddr, "/"))

	d.load = startLoad(ctx, "http://"+d.srv.ListenAddr)
	d.say("\n2. Steady load on the live address: 8 clients with keep-alive, one slow (1s) client, POSTs")
	if err := d.load.waitRequests(ctx, 200); err != nil {
		return err
	}

	d.say("\n3. Deploy v2 to green while blue serves")
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
	rel, err = d.waitRelease(ctx, func(r *teal.Release) bool { return r.Outcome != nil })
	if err != nil {
		return err
	}
	if *rel.Outcome != teal.OutcomeReleased {
		return fmt.Errorf("release of v2 ended %s: %s", *rel.Outcome, rel.Error)
	}
	switchTime := stepDuration(rel, "switch")
	if err := d.load.waitVersion(ctx, "v2", 100); err != nil {
		return err
	}
	d.say("   switched in %s; live: %s", switchTime, d.get(ctx, d.srv.ListenAddr, "/"))

	d.say("\n5. Roll back: blue is still warm, traffic goes back at once")
	if _, err := c.Rollback(ctx, false); err != nil {
		return err
	}
	if err := d.load.waitVersion(ctx, "v1", 100); err != nil {
		return err
	}
	d.say("   live: %s", d.get(ctx, d.srv.ListenAddr, "/"))

	d.say("\n6. And forward again: promote re-releases the warm green")
	if _, err := c.Promote(ctx); err != nil {
		return err
	}
	rel, err = d.waitRelease(ctx, func(r *teal.Release) bool { return r.Outcome != nil })
	if err != nil {
		return err
	}
	if *rel.Outcome != teal.OutcomeReleased {
		return fmt.Errorf("re-release of v2 ended %s: %s", *rel.Outcome, rel.Error)
	}
	if err := d.load.waitVersion(ctx, "v2", 100); err != nil {
		return err
	}
	d.say("   live: %s", d.get(ctx, d.srv.ListenAddr, "/"))

	res := d.load.stop()
	d.say("\nSummary")
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  requests served\t%d\t(v1 %d, v2 %d)\n", res.ok, res.byVersion["v1"], res.byVersion["v2"])
	fmt.Fprintf(tw, "  failed requests\t%d\t\n", res.failed)
	fmt.Fprintf(tw, "  slow (1s) requests across switches\t%d\t\n", res.slow)
	fmt.Fprintf(tw, "  switch time\t%s\t(router table swap, as recorded in the release)\n", switchTime)
	fmt.Fprintf(tw, "  database writes lost\t-\t(no database in this demo yet)\n")
	tw.Flush()
	if res.failed > 0 {
		for _, e := range res.errors {
			d.say("  failure: %s", e)
		}
		return fmt.Errorf("%d requests failed during the demo", res.failed)
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
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
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

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// loadGen sends steady traffic and counts every answer.
type loadGen struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ok, failed, slow atomic.Int64
	mu               sync.Mutex
	byVersion        map[string]int64
	errors           []string
}

type loadResult struct {
	ok, failed, slow int64
	byVersion        map[string]int64
	errors           []string
}

func startLoad(ctx context.Context, base string) *loadGen {
	ctx, cancel := context.WithCancel(ctx)
	l := &loadGen{cancel: cancel, byVersion: map[string]int64{}}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	worker := func(method, path string, pause time.Duration) {
		defer l.wg.Done()
		for ctx.Err() == nil {
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader("order")
			}
			req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), method, base+path, body)
			resp, err := client.Do(req)
			if err != nil {
				l.fail(fmt.Sprintf("%s %s: %v", method, path, err))
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				l.fail(fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b))))
				continue
			}
			l.ok.Add(1)
			if path != "/" {
				if strings.HasPrefix(path, "/slow") {
					l.slow.Add(1)
				}
			} else if f := strings.Fields(string(b)); len(f) >= 2 {
				l.mu.Lock()
				l.byVersion[f[1]]++
				l.mu.Unlock()
			}
			if pause > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}
	}
	for range 8 {
		l.wg.Add(1)
		go worker(http.MethodGet, "/", 2*time.Millisecond)
	}
	l.wg.Add(2)
	go worker(http.MethodGet, "/slow?d=1s", 0)
	go worker(http.MethodPost, "/echo", 5*time.Millisecond)
	return l
}

func (l *loadGen) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errors) < 5 {
		l.errors = append(l.errors, msg)
	}
	l.mu.Unlock()
}

func (l *loadGen) waitRequests(ctx context.Context, n int64) error {
	return waitUntil(ctx, 30*time.Second, func() bool { return l.ok.Load()+l.failed.Load() >= n })
}

// waitVersion waits until n more answers came from version v.
func (l *loadGen) waitVersion(ctx context.Context, v string, n int64) error {
	l.mu.Lock()
	start := l.byVersion[v]
	l.mu.Unlock()
	return waitUntil(ctx, 30*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.byVersion[v] >= start+n
	})
}

func (l *loadGen) stop() loadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadResult{ok: l.ok.Load(), failed: l.failed.Load(), slow: l.slow.Load(), byVersion: l.byVersion, errors: l.errors}
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for the load to see it")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
