// Package window decides when a release may be promoted: a set of weekly rules such as
// "mon-fri 09:00-17:00" in one time zone, like Spinnaker's execution windows. Rules are read
// in wall-clock time of the zone, so "09:00" stays 09:00 across daylight-saving changes.
package window

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	wantDays = "want mon, tue, wed, thu, fri, sat, sun or *"
	wantTime = "want HH:MM from 00:00 to 23:59, or 24:00 as an end"
	// horizon bounds how far ahead Next and CloseAt look. Every valid rule recurs weekly, so two
	// weeks are enough even when one occurrence falls into a daylight-saving gap.
	horizon = 15
)

// rule is one parsed rule: the days a window starts on and its wall-clock span in minutes after
// midnight. end <= start means the window runs past midnight into the next day.
type rule struct {
	text       string
	days       [7]bool
	start, end int
}

// Window is a set of rules in one time zone; the zero Window (no rules) allows any time.
type Window struct {
	rules []rule
	loc   *time.Location
}

// Parse parses rules in loc (nil = time.Local). Errors name the rule, the bad part and what is
// valid; every bad rule is reported, not only the first.
func Parse(rules []string, loc *time.Location) (*Window, error) {
	if loc == nil {
		loc = time.Local
	}
	w := &Window{loc: loc}
	var errs []error
	for _, s := range rules {
		r, err := parseRule(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w.rules = append(w.rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, nil
}

// ParseRule checks one rule alone, so a config validator can report each bad rule separately.
func ParseRule(rule string) error {
	_, err := parseRule(rule)
	return err
}

func parseRule(s string) (rule, error) {
	f := strings.Fields(s)
	r := rule{text: strings.Join(f, " ")}
	if len(f) != 2 {
		return r, fmt.Errorf("%q: want DAYS HH:MM-HH:MM, e.g. \"mon-fri 09:00-17:00\"", s)
	}
	if err := r.parseDays(f[0]); err != nil {
		return r, fmt.Errorf("%q: %w", s, err)
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return r, fmt.Errorf("%q: bad time range %q (want HH:MM-HH:MM)", s, f[1])
	}
	var err error
	if r.start, err = parseClock(from); err != nil || r.start == 24*60 {
		return r, fmt.Errorf("%q: bad start %q (want HH:MM from 00:00 to 23:59)", s, from)
	}
	if r.end, err = parseClock(to); err != nil {
		return r, fmt.Errorf("%q: bad end %q (%s)", s, to, wantTime)
	}
	if r.start == r.end {
		return r, fmt.Errorf("%q: empty window (start %s equals end)", s, from)
	}
	return r, nil
}

// parseDays reads "*", "mon", "mon,wed" or "fri-mon"; a range runs forward and may wrap the week.
func (r *rule) parseDays(s string) error {
	if s == "*" {
		r.days = [7]bool{true, true, true, true, true, true, true}
		return nil
	}
	for item := range strings.SplitSeq(s, ",") {
		a, b, isRange := strings.Cut(item, "-")
		first, err := parseDay(a)
		if err != nil {
			return err
		}
		last := first
		if isRange {
			if last, err = parseDay(b); err != nil {
				return err
			}
		}
		for d := first; ; d = (d + 1) % 7 {
			r.days[d] = true
			if d == last {
				break
			}
		}
	}
	return nil
}

// parseDay reads a short or full day name in any case.
func parseDay(s string) (time.Weekday, error) {
	for d := time.Sunday; d <= time.Saturday; d++ {
		full := strings.ToLower(d.String())
		if strings.EqualFold(s, full) || strings.EqualFold(s, full[:3]) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown day %q (%s)", s, wantDays)
}

// parseClock reads H:MM or HH:MM as minutes after midnight, allowing 24:00.
func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	digits := func(s string) bool { return strings.Trim(s, "0123456789") == "" }
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !digits(h) || !digits(m) {
		return 0, errors.New("not HH:MM")
	}
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	if hh > 24 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, errors.New("out of range")
	}
	return hh*60 + mm, nil
}

// Allows reports whether t is inside one of the rules (in the window's zone). Start inclusive,
// end exclusive.
func (w *Window) Allows(t time.Time) bool {
	if w == nil || len(w.rules) == 0 {
		return true
	}
	t = t.In(w.loc)
	wd := t.Weekday()
	prev := (wd + 6) % 7
	sec := t.Hour()*3600 + t.Minute()*60 + t.Second()
	for _, r := range w.rules {
		start, end := r.start*60, r.end*60
		if r.end > r.start {
			if r.days[wd] && sec >= start && sec < end {
				return true
			}
		} else if (r.days[wd] && sec >= start) || (r.days[prev] && sec < end) {
			return true
		}
	}
	return false
}

// Next returns the next moment at or after t when the window is open (t itself when open now),
// and false if it never opens. It is correct across daylight-saving changes: a start inside a
// skipped hour opens at the jump, a start inside a repeated hour opens at its first occurrence.
func (w *Window) Next(t time.Time) (time.Time, bool) {
	return w.edge(t, true)
}

// CloseAt returns when the window that is open at t closes: the first moment after t that no
// rule allows, across overlapping and adjoining rules. It returns t when the window is closed
// at t, and the zero Time when it never closes (e.g. "* 00:00-24:00").
func (w *Window) CloseAt(t time.Time) time.Time {
	c, _ := w.edge(t, false)
	return c
}

// edge returns the first moment at or after t whose Allows equals open. Allows is a function of
// wall-clock time, so it can only change where the wall clock crosses a rule's start or end, or
// where the zone's offset jumps; those moments (and t) are the only candidates checked.
func (w *Window) edge(t time.Time, open bool) (time.Time, bool) {
	if w == nil || len(w.rules) == 0 {
		if open {
			return t, true
		}
		return time.Time{}, false
	}
	if w.Allows(t) == open {
		return t, true
	}
	t = t.In(w.loc)
	limit := t.AddDate(0, 0, horizon+1)
	cands := []time.Time{t}
	_, off := t.Zone()
	offsets := []int{off}
	for cur := t; ; {
		_, next := cur.ZoneBounds()
		if next.IsZero() || !next.After(cur) || next.After(limit) {
			break
		}
		cands = append(cands, next)
		_, off = next.Zone()
		offsets = append(offsets, off)
		cur = next
	}
	// A wall time maps to an instant per offset in force; a repeated hour maps to two.
	y, m, d := t.Date()
	for i := -1; i <= horizon; i++ {
		day := time.Date(y, m, d+i, 0, 0, 0, 0, time.UTC)
		for _, r := range w.rules {
			if !r.days[day.Weekday()] {
				continue
			}
			end := r.end
			if end <= r.start {
				end += 24 * 60
			}
			for _, mins := range []int{r.start, end} {
				wall := day.Add(time.Duration(mins) * time.Minute)
				for _, o := range offsets {
					if c := wall.Add(-time.Duration(o) * time.Second); !c.Before(t) {
						cands = append(cands, c.In(w.loc))
					}
				}
			}
		}
	}
	slices.SortFunc(cands, func(a, b time.Time) int { return a.Compare(b) })
	for _, c := range cands {
		if w.Allows(c) == open {
			return c, true
		}
	}
	return time.Time{}, false
}

// String renders the rules and zone for messages, e.g. "mon-fri 09:00-17:00 (Europe/Berlin)".
func (w *Window) String() string {
	if w == nil || len(w.rules) == 0 {
		return "any time"
	}
	texts := make([]string, len(w.rules))
	for i, r := range w.rules {
		texts[i] = r.text
	}
	return strings.Join(texts, ", ") + " (" + w.loc.String() + ")"
}
