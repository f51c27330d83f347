package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// Intervals of --wait.
const (
	// defaultWaitTimeout is --timeout's default.
	defaultWaitTimeout = 30 * time.Minute
	// waitPoll is how often --wait asks for the status once the event stream broke.
	waitPoll = 500 * time.Millisecond
	// waitSafetyPoll is how often it asks anyway: the server drops events for a subscriber
	// that falls behind, and a missed last event must not leave --wait hanging.
	waitSafetyPoll = 5 * time.Second
	// spinInterval paces the live line on a terminal.
	spinInterval = 100 * time.Millisecond
)

// goal is what a --wait waits for.
type goal int

const (
	goalDeploy   goal = iota // awaiting-release, or released
	goalPromote              // released
	goalRollback             // rolled-back, or traffic on the previous colour
)

// addWaitFlags adds --wait and --timeout to cmd.
func addWaitFlags(cmd *cobra.Command, wait *bool, timeout *time.Duration, what string) {
	cmd.Flags().BoolVar(wait, "wait", false, "wait until "+what+", showing progress")
	cmd.Flags().DurationVar(timeout, "timeout", defaultWaitTimeout, "with --wait, give up waiting after this long (exit 5; the release goes on)")
}

// waiter follows a release until it reaches a goal, printing one line per step as it changes.
// It subscribes to events when created, before the action it waits on is sent, so that no
// event of that action is missed.
type waiter struct {
	c      *api.Client
	out    io.Writer // nil: no progress (--json)
	tty    bool
	events <-chan *teal.Event
	errs   <-chan error
	cancel context.CancelFunc

	printed []teal.StepState // the state last printed for each step, by index
	live    string           // the live line on a terminal, "" when none is drawn
	spin    int
}

// newWaiter subscribes to the server's events. Call close when done.
func newWaiter(ctx context.Context, g *globals, c *api.Client) *waiter {
	ctx, cancel := context.WithCancel(ctx)
	w := &waiter{c: c, tty: g.tty, cancel: cancel}
	if !g.json {
		w.out = g.stdout
	}
	w.events, w.errs = c.Events(ctx)
	return w
}

func (w *waiter) close() { w.cancel() }

// wait follows start, the release an action answered, until it reaches gl, the release
// fails, or timeout passes. Steps start already shows as ended are not printed again: they
// happened before the action. For goalRollback, traffic should be back on start.From.
func (w *waiter) wait(ctx context.Context, start *teal.Release, gl goal, timeout time.Duration) (*teal.Release, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id, from := start.ID, start.From
	for _, s := range start.Steps {
		st := s.State
		if st == teal.StepRunning {
			st = "" // still to be seen ending
		}
		w.printed = append(w.printed, st)
	}

	poll := time.NewTicker(waitSafetyPoll)
	defer poll.Stop()
	var spin <-chan time.Time
	if w.tty && w.out != nil {
		t := time.NewTicker(spinInterval)
		defer t.Stop()
		spin = t.C
	}

	var rel *teal.Release
	lostServer := false
	for fetch := true; ; {
		if fetch {
			r, st, err := w.fetch(tctx, id)
			switch {
			case err == nil:
				rel, lostServer = r, false
				w.progress(rel, time.Now())
				if done, err := reached(gl, rel, st, from); done {
					w.endLive()
					return rel, err
				}
			case tctx.Err() != nil:
				// Handled below, by the select.
			case errors.Is(err, api.ErrUnreachable):
				// A server restart resumes the release: keep asking until the timeout.
				if !lostServer {
					w.println(fmt.Sprintf("lost the server (%v); retrying", err))
				}
				lostServer = true
				poll.Reset(waitPoll)
			default:
				w.endLive()
				return rel, err
			}
		}
		fetch = true
		select {
		case <-tctx.Done():
			w.endLive()
			return rel, waitEnded(ctx, id, rel, timeout)
		case <-spin:
			w.drawLive(rel, time.Now())
			fetch = false
		case <-poll.C:
		case _, ok := <-w.events:
			if !ok {
				w.events = nil
				poll.Reset(waitPoll) // no more events: poll instead
			}
			drain(w.events)
		}
	}
}

// fetch returns release id and the status. The status carries the release in progress; an
// ended one is asked for on its own.
func (w *waiter) fetch(ctx context.Context, id int64) (*teal.Release, *teal.Status, error) {
	st, err := w.c.Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	if st.Release != nil && st.Release.ID == id {
		return st.Release, st, nil
	}
	rel, _, err := w.c.Release(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return rel, st, nil
}

// reached says whether rel reached gl, and with which error if it ended otherwise.
func reached(gl goal, rel *teal.Release, st *teal.Status, from teal.Color) (bool, error) {
	if gl == goalRollback {
		if rel.Outcome != nil && *rel.Outcome == teal.OutcomeRolledBack {
			return true, nil
		}
		if from != "" && st != nil && st.Live != nil && st.Live.Color == from && st.Traffic.Of(from) == 100 {
			return true, nil
		}
		return false, nil
	}
	if rel.Outcome != nil {
		if *rel.Outcome == teal.OutcomeReleased {
			return true, nil
		}
		return true, releaseFailed(rel)
	}
	return gl == goalDeploy && rel.Phase == teal.PhaseAwaitingRelease, nil
}

// releaseFailed is the exit-1 error of a release that ended without being released.
func releaseFailed(rel *teal.Release) error {
	msg := fmt.Sprintf("release #%d of %s %s", rel.ID, rel.Version, *rel.Outcome)
	if rel.Error != "" {
		msg += ": " + rel.Error
	}
	return &exitError{
		code: exitFailed,
		err:  errors.New(msg),
		hint: fmt.Sprintf("see teal status, and the instances' output with teal logs --color %s", rel.Color),
	}
}

// waitEnded is the error of a wait that ran out of time (exit 5) or was interrupted.
func waitEnded(ctx context.Context, id int64, rel *teal.Release, timeout time.Duration) error {
	where := ""
	if rel != nil {
		where = fmt.Sprintf(" (%s)", rel.Phase)
	}
	if ctx.Err() != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("interrupted: release #%d%s goes on", id, where)}
	}
	return &exitError{
		code: exitTimeout,
		err:  fmt.Errorf("timed out after %s waiting for release #%d%s; the release goes on", timeout, id, where),
		hint: "follow it with teal status --watch",
	}
}

// progress prints each step whose state changed since last printed. On a terminal the
// running step is the live line instead.
func (w *waiter) progress(rel *teal.Release, now time.Time) {
	if w.out == nil {
		return
	}
	for i, s := range rel.Steps {
		if i >= len(w.printed) {
			w.printed = append(w.printed, "")
		}
		if w.printed[i] == s.State || (s.State == teal.StepRunning && w.tty) {
			continue
		}
		if s.State == teal.StepRunning {
			w.println("… " + s.Name) // it just started: a duration would say nothing
		} else {
			w.println(stepLine(s, now))
		}
		w.printed[i] = s.State
	}
	w.drawLive(rel, now)
}

// drawLive redraws the line of the running step on a terminal.
func (w *waiter) drawLive(rel *teal.Release, now time.Time) {
	if !w.tty || w.out == nil || rel == nil {
		return
	}
	line := ""
	for _, s := range rel.Steps {
		if s.State == teal.StepRunning {
			line = stepLine(s, now)
		}
	}
	if line == "" && rel.Outcome == nil {
		line = fmt.Sprintf("… %s", rel.Phase)
	}
	if line == "" {
		w.endLive()
		return
	}
	frames := []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
	w.spin++
	w.live = line
	fmt.Fprintf(w.out, "\r\033[K%c %s", frames[w.spin%len(frames)], line)
}

// endLive erases the live line.
func (w *waiter) endLive() {
	if w.live != "" {
		fmt.Fprint(w.out, "\r\033[K")
		w.live = ""
	}
}

// println prints a permanent line, above the live line.
func (w *waiter) println(line string) {
	if w.out == nil {
		return
	}
	w.endLive()
	fmt.Fprintln(w.out, line)
}
