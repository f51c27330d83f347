package window

import (
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds rules (separated by ";") and a moment: Parse must never panic, and a window
// it accepts must be open at what Next returns and closed at what CloseAt returns.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"mon-fri 09:00-17:00", "mon,wed,fri 10:00-12:00", "sat-sun 00:00-24:00", "* 09:00-17:00",
		"fri-mon 22:00-06:00", "sun 02:30-02:45;sun 02:00-03:00", "Monday 9:00-24:00", "mon 24:00-01:00",
		"mon-fry 09:00-17:00", "tue 10:00-10:00", "* 00:00-24:00",
	} {
		f.Add(s, int64(1743289200)) // 2025-03-30 01:00 UTC, Berlin springs forward
		f.Add(s, int64(1761440400)) // 2025-10-26 01:00 UTC, Berlin falls back
	}
	locs := []*time.Location{time.UTC, time.FixedZone("X", -(9*3600 + 30*60))}
	if berlin, err := time.LoadLocation("Europe/Berlin"); err == nil {
		locs = append(locs, berlin)
	}
	f.Fuzz(func(t *testing.T, rules string, unix int64) {
		for _, r := range strings.Split(rules, ";") {
			_ = ParseRule(r)
		}
		from := time.Unix(unix%(1<<34), 0) // about ±540 years
		for _, loc := range locs {
			w, err := Parse(strings.Split(rules, ";"), loc)
			if err != nil {
				continue
			}
			next, ok := w.Next(from)
			if !ok || next.Before(from) || !w.Allows(next) {
				t.Fatalf("%v: Next(%v) = %v, %v: want an open moment at or after it", w, from, next, ok)
			}
			if end := w.CloseAt(next); !end.IsZero() && (!end.After(next) || w.Allows(end)) {
				t.Fatalf("%v: CloseAt(%v) = %v: want a closed moment after it", w, next, end)
			}
			_ = w.String()
		}
	})
}
