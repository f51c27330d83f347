package dashboard

import (
	"context"
	"fmt"
	"strings"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// The page is rendered twice over: here, for the first paint, and by static/app.js on every
// update. Both follow the same rules (which buttons are enabled, how durations read); a
// change to one is a change to the other.

// page is what dashboard.html shows.
type page struct {
	App  string
	User string
	CSRF string
	// Err says why the status could not be read; the page then shows what it can.
	Err         string
	LiveVersion string // "—" when nothing is live
	LiveColor   teal.Color
	Release     *releaseView // the release in progress, else the latest; nil before any
	Traffic     teal.Traffic
	Colors      []colorView
	Steps       []stepView
	History     []releaseView
	Can         actions
	// Boot is the data the script starts from, as JSON in the page: no inline script.
	Boot boot
}

// boot is the page's JSON block.
type boot struct {
	CSRF     string          `json:"csrf"`
	User     string          `json:"user"`
	Now      time.Time       `json:"now"` // the server's clock, to measure running steps with
	Status   *teal.Status    `json:"status"`
	Releases []*teal.Release `json:"releases"`
}

// actions says which buttons are enabled: the controller's own rules, so that a button that
// would certainly be refused is greyed out. The API has the last word, and its refusals are
// shown.
type actions struct {
	Release, Abort, Rollback bool
}

type colorView struct {
	Color       teal.Color
	Live        bool
	Version     string
	Digest      string
	ShortDigest string
	State       teal.EnvState
	Since       string
	SinceTitle  string
	Traffic     int
	Instances   []instanceView
	Requests    int64
	Errors      int64
	Open        int64
	LongLived   int64
}

type instanceView struct {
	Index  int
	Addr   string
	Health string // healthy, unhealthy or unknown
	Note   string
}

type releaseView struct {
	ID           int64
	Version      string
	Color        teal.Color
	Phase        teal.Phase
	Outcome      string
	Badge        string // the outcome once ended, else the phase
	Actor        string
	Created      string
	CreatedTitle string
	Duration     string
	Error        string
	InProgress   bool
}

type stepView struct {
	Name     string
	State    teal.StepState
	Duration string
	// X and W place the step's bar on the release's timeline, in percent of its span from
	// creation to its end (or now): where it started and how long it took.
	X, W string
}

// dashboard reads the status and the history and lays them out.
func (h *Handler) dashboard(ctx context.Context, sess api.Session) page {
	now := time.Now()
	p := page{User: sess.Name, CSRF: sess.CSRF, LiveVersion: "—"}
	p.Boot = boot{CSRF: sess.CSRF, User: sess.Name, Now: now.UTC(), Releases: []*teal.Release{}}
	st, err := h.src.Status(ctx)
	if err != nil {
		h.log().Error("dashboard status", "err", err)
		p.Err = fmt.Sprintf("The status could not be read: %v", err)
		st = &teal.Status{}
	}
	rels, err := h.src.Releases(ctx, HistoryLimit)
	if err != nil {
		h.log().Error("dashboard history", "err", err)
		if p.Err == "" {
			p.Err = fmt.Sprintf("The history could not be read: %v", err)
		}
	}
	if rels != nil {
		p.Boot.Releases = rels
	}
	p.Boot.Status = st
	p.App = st.App
	p.Traffic = st.Traffic
	if st.Live != nil {
		p.LiveColor = st.Live.Color
		if st.Live.Version != "" {
			p.LiveVersion = st.Live.Version
		}
	}
	for _, c := range teal.Colors {
		p.Colors = append(p.Colors, colorOf(st, c, now))
	}
	if st.Release != nil {
		rv := releaseOf(st.Release, now)
		p.Release = &rv
		p.Steps = stepsOf(st.Release, now)
	}
	for _, r := range rels {
		p.History = append(p.History, releaseOf(r, now))
	}
	p.Can = actionsOf(st)
	return p
}

func colorOf(st *teal.Status, c teal.Color, now time.Time) colorView {
	v := colorView{Color: c, State: teal.EnvEmpty, Version: "—", Traffic: st.Traffic.Of(c)}
	v.Live = st.Live != nil && st.Live.Color == c
	for _, env := range st.Environments {
		if env.Color != c {
			continue
		}
		if env.Version != "" {
			v.Version = env.Version
		}
		v.Digest, v.ShortDigest = env.Digest, shortDigest(env.Digest)
		v.State = env.State
		if !env.Since.IsZero() {
			v.Since, v.SinceTitle = ago(now, env.Since), env.Since.UTC().Format(time.RFC3339)
		}
		v.Requests, v.Errors, v.Open, v.LongLived = env.Requests, env.Errors, env.OpenConnections, env.LongLived
		for _, in := range env.Instances {
			iv := instanceView{Index: in.Index, Addr: in.Addr, Health: "unknown", Note: "not checked yet"}
			for _, hh := range env.Health {
				if hh.Index != in.Index {
					continue
				}
				if hh.Healthy {
					iv.Health, iv.Note = "healthy", "healthy"
				} else {
					iv.Health, iv.Note = "unhealthy", "unhealthy"
					if hh.LastError != "" {
						iv.Note = hh.LastError
					}
				}
			}
			v.Instances = append(v.Instances, iv)
		}
	}
	return v
}

// shortDigest is "sha256:" and the first 12 hex digits: enough to tell builds apart.
func shortDigest(d string) string {
	algo, hexs, ok := strings.Cut(d, ":")
	if !ok {
		algo, hexs = "", d
	}
	if len(hexs) > 12 {
		hexs = hexs[:12]
	}
	if algo == "" {
		return hexs
	}
	return algo + ":" + hexs
}

func releaseOf(r *teal.Release, now time.Time) releaseView {
	v := releaseView{
		ID: r.ID, Version: r.Version, Color: r.Color, Phase: r.Phase, Actor: r.Actor, Error: r.Error,
		Badge: string(r.Phase), InProgress: r.Outcome == nil,
		Created: ago(now, r.Created), CreatedTitle: r.Created.UTC().Format(time.RFC3339),
	}
	end := now
	if r.Outcome != nil {
		v.Outcome, v.Badge = string(*r.Outcome), string(*r.Outcome)
		if r.Finished != nil {
			end = *r.Finished
		}
	}
	v.Duration = duration(end.Sub(r.Created))
	return v
}

func stepsOf(r *teal.Release, now time.Time) []stepView {
	end := now
	if r.Outcome != nil && r.Finished != nil {
		end = *r.Finished
	}
	span := end.Sub(r.Created)
	out := make([]stepView, 0, len(r.Steps))
	for _, s := range r.Steps {
		d := s.Duration(now)
		v := stepView{Name: s.Name, State: s.State, Duration: duration(d), X: "0", W: "0"}
		if span > 0 {
			x := min(100, max(0, 100*float64(s.Started.Sub(r.Created))/float64(span)))
			w := min(100-x, max(0.5, 100*float64(d)/float64(span)))
			v.X, v.W = fmt.Sprintf("%.1f", x), fmt.Sprintf("%.1f", w)
		}
		out = append(out, v)
	}
	return out
}

// actionsOf mirrors the controller: promote while a release has not switched yet (or right
// after a rollback, to release it again); abort before the switch; roll back the latest
// release once it is released and nothing is in progress.
func actionsOf(st *teal.Status) actions {
	r := st.Release
	if r == nil {
		return actions{}
	}
	beforeSwitch := r.Phase != teal.PhaseSwitching && r.Phase != teal.PhaseReleased
	if r.Outcome == nil {
		return actions{Release: beforeSwitch && r.Promoted == nil, Abort: beforeSwitch}
	}
	return actions{
		Release:  *r.Outcome == teal.OutcomeRolledBack,
		Rollback: *r.Outcome == teal.OutcomeReleased && st.Live != nil && st.Live.Color == r.Color && !r.First(),
	}
}

// duration reads like "340ms", "4.2s", "3m 04s", "2h 05m".
func duration(d time.Duration) string {
	switch {
	case d < 0:
		return "0ms"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// ago reads like "just now", "42s ago", "5m ago", "3h ago", "2d ago".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}
