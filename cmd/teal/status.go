package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// statusRefresh is how often status --watch refreshes when no event says something changed.
const statusRefresh = 2 * time.Second

func newStatusCmd(g *globals) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the live and idle colours, traffic, the release and instance health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if watch {
				return watchStatus(cmd.Context(), g, c)
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(st)
			}
			printStatus(g.stdout, st, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep showing the status as it changes, until interrupted")
	return cmd
}

// watchStatus shows the status again whenever an event says it changed, and every
// statusRefresh anyway. On a terminal it redraws the screen; otherwise (and with --json) it
// prints the status again only when it changed.
func watchStatus(ctx context.Context, g *globals, c *api.Client) error {
	events, _ := c.Events(ctx)
	tick := time.NewTicker(statusRefresh)
	defer tick.Stop()
	var last []byte
	for {
		st, err := c.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cur, _ := json.Marshal(st)
		switch {
		case g.tty && !g.json:
			var b bytes.Buffer
			b.WriteString("\033[H\033[2J")
			printStatus(&b, st, time.Now())
			_, _ = g.stdout.Write(b.Bytes())
		case !bytes.Equal(cur, last):
			if g.json {
				_, _ = fmt.Fprintf(g.stdout, "%s\n", cur)
			} else {
				_, _ = fmt.Fprintf(g.stdout, "--- %s\n", time.Now().Format(time.TimeOnly))
				printStatus(g.stdout, st, time.Now())
			}
		}
		last = cur
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case _, ok := <-events:
			if !ok {
				events = nil // the stream broke: the ticker carries on alone
			}
			drain(events)
		}
	}
}

// drain discards the events already waiting: one refresh covers them all.
func drain(events <-chan *teal.Event) {
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// printStatus writes the human form of st.
func printStatus(w io.Writer, st *teal.Status, now time.Time) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-9s%s\n", label, fmt.Sprintf(format, args...))
	}
	line("app", "%s", st.App)
	if st.Live != nil {
		line("live", "%s  %s", st.Live.Color, orDash(st.Live.Version))
	} else {
		line("live", "nothing yet")
	}
	if st.Idle != nil {
		line("idle", "%s  %s  %s", st.Idle.Color, orDash(st.Idle.Version), st.Idle.State)
	}
	line("traffic", "blue %d%%  green %d%%", st.Traffic.Blue, st.Traffic.Green)
	if st.Maintenance {
		line("", "maintenance on: every request is answered 503 (teal maintenance off)")
	}
	if p := st.Paused; p != nil {
		if p.Release != "" {
			line("paused", "the release's weight, by %s (teal resume)", p.Release)
		}
		if p.Requests {
			line("paused", "new requests held: %d waiting (teal resume --requests)", p.Waiting)
		}
	}
	if a := st.Analysis; a != nil {
		line("analysis", "%s: %s", a.Verdict, a.Reason)
	}
	if sh := st.Shadow; sh != nil {
		line("shadow", "%d mirrored, %d compared, %d differed (%.2f%%)", sh.Mirrored, sh.Compared, sh.Mismatches, sh.MismatchRate*100)
	}
	if r := st.Release; r != nil {
		line("release", "#%d %s → %s  %s  by %s", r.ID, r.Version, r.Color, releaseState(r), orDash(r.Actor))
	} else {
		line("release", "none yet")
	}
	if r := st.Release; r != nil {
		for _, s := range r.Steps {
			fmt.Fprintf(w, "  %s\n", stepLine(s, now))
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
	}
	var insts [][]string
	for _, env := range st.Environments {
		for _, in := range env.Instances {
			health := "unknown"
			for _, h := range env.Health {
				if h.Index != in.Index {
					continue
				}
				health = "healthy"
				if !h.Healthy {
					health = "unhealthy"
					if h.LastError != "" {
						health += ": " + h.LastError
					}
				}
			}
			insts = append(insts, []string{string(env.Color), fmt.Sprint(in.Index), orDash(env.Version), in.Addr, health})
		}
	}
	if len(insts) == 0 {
		return
	}
	fmt.Fprintln(w, "instances")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range insts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", row[0], row[1], row[2], row[3], row[4])
	}
	_ = tw.Flush()
}

// releaseState is a release's outcome once it ended, else its phase.
func releaseState(r *teal.Release) string {
	if r.Outcome != nil {
		return string(*r.Outcome)
	}
	return string(r.Phase)
}

// stepLine formats one step: "✓ launch  2.1s", "✗ health  0.4s: <error>", "… verifying  3s".
func stepLine(s teal.Step, now time.Time) string {
	d := fmtDuration(s.Duration(now))
	switch s.State {
	case teal.StepDone:
		return fmt.Sprintf("✓ %s  %s", s.Name, d)
	case teal.StepFailed:
		if s.Error != "" {
			return fmt.Sprintf("✗ %s  %s: %s", s.Name, d, s.Error)
		}
		return fmt.Sprintf("✗ %s  %s", s.Name, d)
	case teal.StepSkipped:
		return fmt.Sprintf("- %s  skipped", s.Name)
	}
	return fmt.Sprintf("… %s  %s", s.Name, d)
}

// fmtDuration rounds d for people: tenths of a second under a minute, seconds above.
func fmtDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
