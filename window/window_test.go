package window

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zone database, whatever the machine has
)

// In 2025 June 2 is a Monday; Europe/Berlin springs forward on March 30 (02:00 CET -> 03:00
// CEST, at 01:00 UTC) and falls back on October 26 (03:00 CEST -> 02:00 CET, at 01:00 UTC).
const layout = "2006-01-02 15:04:05"

func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	tm, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return tm
}

func mustParse(t *testing.T, loc *time.Location, rules ...string) *Window {
	t.Helper()
	w, err := Parse(rules, loc)
	if err != nil {
		t.Fatalf("Parse(%q): %v", rules, err)
	}
	return w
}

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("no time zone data for Europe/Berlin (time/tzdata is imported): %v", err)
	}
	return loc
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, rule string
		wantErr    string // "" = valid; else a part the message must contain
	}{
		{"weekdays", "mon-fri 09:00-17:00", ""},
		{"list", "mon,wed,fri 10:00-12:00", ""},
		{"whole days", "sat-sun 00:00-24:00", ""},
		{"every day", "* 09:00-17:00", ""},
		{"wraps midnight", "fri-mon 22:00-06:00", ""},
		{"full names any case", "Monday-FRIDAY 9:00-17:00", ""},
		{"list and range", "mon,wed-thu,sun 08:30-09:45", ""},
		{"extra spaces", "  mon   09:00-17:00 ", ""},
		{"ends at midnight", "mon 22:00-00:00", ""},
		{"unknown day", "mon-fry 09:00-17:00", `unknown day "fry" (want mon, tue, wed, thu, fri, sat, sun or *)`},
		{"empty day", "mon,,tue 09:00-17:00", `unknown day ""`},
		{"star in list", "mon,* 09:00-17:00", `unknown day "*"`},
		{"no times", "mon-fri", "want DAYS HH:MM-HH:MM"},
		{"three fields", "mon 09:00 17:00", "want DAYS HH:MM-HH:MM"},
		{"empty", "", "want DAYS HH:MM-HH:MM"},
		{"no dash", "mon 09:00", `bad time range "09:00"`},
		{"hour too big", "mon 25:00-26:00", `bad start "25:00"`},
		{"start 24:00", "mon 24:00-06:00", `bad start "24:00"`},
		{"minute too big", "mon 09:00-17:60", `bad end "17:60"`},
		{"past 24:00", "mon 09:00-24:01", `bad end "24:01"`},
		{"no colon", "mon 0900-1700", `bad start "0900"`},
		{"signed", "mon +9:00-17:00", `bad start "+9:00"`},
		{"one-digit minute", "mon 09:0-17:00", `bad start "09:0"`},
		{"second dash", "mon 09:00-17:00-18:00", `bad end "17:00-18:00"`},
		{"empty window", "mon 09:00-09:00", "empty window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParseRule(tt.rule)
			_, perr := Parse([]string{tt.rule}, time.UTC)
			if tt.wantErr == "" {
				if err != nil || perr != nil {
					t.Fatalf("ParseRule = %v, Parse = %v, want no error", err, perr)
				}
				return
			}
			if err == nil || perr == nil {
				t.Fatalf("ParseRule = %v, Parse = %v, want error containing %q", err, perr, tt.wantErr)
			}
			for _, e := range []error{err, perr} {
				if !strings.Contains(e.Error(), tt.wantErr) || !strings.Contains(e.Error(), `"`+tt.rule+`"`) {
					t.Errorf("error = %q, want the rule %q and %q", e, tt.rule, tt.wantErr)
				}
			}
		})
	}
}

func TestParse_ReportsEveryBadRule(t *testing.T) {
	_, err := Parse([]string{"mon-fry 09:00-17:00", "mon 09:00-17:00", "tue 10:00-10:00"}, nil)
	if err == nil || !strings.Contains(err.Error(), "fry") || !strings.Contains(err.Error(), "empty window") {
		t.Fatalf("Parse error = %v, want both bad rules named", err)
	}
}

func TestWindow_Allows(t *testing.T) {
	tests := []struct {
		rules []string
		at    string
		want  bool
	}{
		{[]string{"mon-fri 09:00-17:00"}, "2025-06-02 08:59:59", false},
		{[]string{"mon-fri 09:00-17:00"}, "2025-06-02 09:00:00", true},
		{[]string{"mon-fri 09:00-17:00"}, "2025-06-02 16:59:59", true},
		{[]string{"mon-fri 09:00-17:00"}, "2025-06-02 17:00:00", false},
		{[]string{"mon-fri 09:00-17:00"}, "2025-06-07 12:00:00", false}, // Saturday
		{[]string{"mon,wed,fri 10:00-12:00"}, "2025-06-03 11:00:00", false},
		{[]string{"mon,wed,fri 10:00-12:00"}, "2025-06-04 11:00:00", true},
		{[]string{"sat-sun 00:00-24:00"}, "2025-06-07 00:00:00", true},
		{[]string{"sat-sun 00:00-24:00"}, "2025-06-08 23:59:59", true},
		{[]string{"sat-sun 00:00-24:00"}, "2025-06-09 00:00:00", false},
		{[]string{"* 09:00-17:00"}, "2025-06-08 09:30:00", true},
		// fri-mon 22:00-06:00 starts Fri, Sat, Sun and Mon night, and ends Tuesday 06:00.
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-06 21:59:59", false},
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-06 22:00:00", true},
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-07 05:59:59", true},
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-07 12:00:00", false},
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-10 05:00:00", true}, // Tuesday, from Monday
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-10 22:00:00", false},
		{[]string{"fri-mon 22:00-06:00"}, "2025-06-06 05:00:00", false}, // Thursday not listed
		// sun-tue wraps the week; sun 23:00-01:00 runs into Monday.
		{[]string{"sun-tue 12:00-13:00"}, "2025-06-08 12:30:00", true},
		{[]string{"sun-tue 12:00-13:00"}, "2025-06-04 12:30:00", false},
		{[]string{"sun 23:00-01:00"}, "2025-06-09 00:30:00", true},
		{[]string{"sat 23:00-01:00"}, "2025-06-08 00:59:59", true},
		{[]string{"mon 09:00-10:00", "mon 14:00-15:00"}, "2025-06-02 14:00:00", true},
		{nil, "2025-06-07 03:00:00", true},
	}
	for _, tt := range tests {
		w := mustParse(t, time.UTC, tt.rules...)
		if got := w.Allows(at(t, time.UTC, tt.at)); got != tt.want {
			t.Errorf("%v Allows(%s) = %v, want %v", w, tt.at, got, tt.want)
		}
	}
}

func TestWindow_NextAndCloseAt(t *testing.T) {
	tests := []struct {
		name      string
		rules     []string
		from      string
		next, end string // end = CloseAt(next); "" = never closes
	}{
		{"inside", []string{"mon-fri 09:00-17:00"}, "2025-06-02 12:00:00", "2025-06-02 12:00:00", "2025-06-02 17:00:00"},
		{"before", []string{"mon-fri 09:00-17:00"}, "2025-06-02 07:15:30", "2025-06-02 09:00:00", "2025-06-02 17:00:00"},
		{"after", []string{"mon-fri 09:00-17:00"}, "2025-06-02 17:00:00", "2025-06-03 09:00:00", "2025-06-03 17:00:00"},
		{"weekend", []string{"mon-fri 09:00-17:00"}, "2025-06-06 18:00:00", "2025-06-09 09:00:00", "2025-06-09 17:00:00"},
		{"next week", []string{"wed 10:00-11:00"}, "2025-06-04 11:00:00", "2025-06-11 10:00:00", "2025-06-11 11:00:00"},
		{"wrap", []string{"fri-mon 22:00-06:00"}, "2025-06-04 12:00:00", "2025-06-06 22:00:00", "2025-06-07 06:00:00"},
		{"wrap tail", []string{"fri-mon 22:00-06:00"}, "2025-06-10 03:00:00", "2025-06-10 03:00:00", "2025-06-10 06:00:00"},
		{"overlapping rules", []string{"mon 09:00-12:00", "mon 11:00-13:00"}, "2025-06-02 08:00:00", "2025-06-02 09:00:00", "2025-06-02 13:00:00"},
		{"adjoining days", []string{"sat-sun 00:00-24:00"}, "2025-06-05 10:00:00", "2025-06-07 00:00:00", "2025-06-09 00:00:00"},
		{"always", []string{"* 00:00-24:00"}, "2025-06-05 10:00:00", "2025-06-05 10:00:00", ""},
		{"no rules", nil, "2025-06-05 10:00:00", "2025-06-05 10:00:00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustParse(t, time.UTC, tt.rules...)
			got, ok := w.Next(at(t, time.UTC, tt.from))
			if want := at(t, time.UTC, tt.next); !ok || !got.Equal(want) {
				t.Fatalf("Next(%s) = %v, %v, want %v", tt.from, got, ok, want)
			}
			end := w.CloseAt(got)
			if tt.end == "" {
				if !end.IsZero() {
					t.Fatalf("CloseAt(%v) = %v, want zero (never closes)", got, end)
				}
				return
			}
			if want := at(t, time.UTC, tt.end); !end.Equal(want) {
				t.Fatalf("CloseAt(%v) = %v, want %v", got, end, want)
			}
		})
	}
}

func TestWindow_ClosedNow(t *testing.T) {
	w := mustParse(t, time.UTC, "mon 09:00-17:00")
	now := at(t, time.UTC, "2025-06-03 10:00:00")
	if got := w.CloseAt(now); !got.Equal(now) {
		t.Fatalf("CloseAt(closed) = %v, want %v", got, now)
	}
}

func TestWindow_DST(t *testing.T) {
	loc := berlin(t)
	utc := func(s string) time.Time { return at(t, time.UTC, s) }
	tests := []struct {
		name      string
		rule      string
		from      time.Time
		next, end time.Time
	}{
		// Monday after spring-forward: 09:00 is now UTC+2, so 07:00 UTC, not 08:00.
		{"office hours after spring", "mon-fri 09:00-17:00", at(t, loc, "2025-03-28 18:00:00"), utc("2025-03-31 07:00:00"), utc("2025-03-31 15:00:00")},
		{"office hours after fall", "mon-fri 09:00-17:00", at(t, loc, "2025-10-24 18:00:00"), utc("2025-10-27 08:00:00"), utc("2025-10-27 16:00:00")},
		// 02:00-03:00 does not exist on March 30: the next is a week later.
		{"skipped hour", "sun 02:00-03:00", at(t, loc, "2025-03-29 12:00:00"), utc("2025-04-06 00:00:00"), utc("2025-04-06 01:00:00")},
		// 02:30-03:30 is half skipped: it opens at the jump (03:00 CEST).
		{"half skipped", "sun 02:30-03:30", at(t, loc, "2025-03-29 12:00:00"), utc("2025-03-30 01:00:00"), utc("2025-03-30 01:30:00")},
		// 02:00-03:00 happens twice on October 26: open for two real hours.
		{"repeated hour", "sun 02:00-03:00", at(t, loc, "2025-10-25 12:00:00"), utc("2025-10-26 00:00:00"), utc("2025-10-26 02:00:00")},
		{"repeated, first", "sun 02:30-02:45", at(t, loc, "2025-10-25 12:00:00"), utc("2025-10-26 00:30:00"), utc("2025-10-26 00:45:00")},
		{"repeated, second", "sun 02:30-02:45", utc("2025-10-26 00:45:00"), utc("2025-10-26 01:30:00"), utc("2025-10-26 01:45:00")},
		{"overnight across spring", "sat 22:00-06:00", at(t, loc, "2025-03-29 12:00:00"), utc("2025-03-29 21:00:00"), utc("2025-03-30 04:00:00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustParse(t, loc, tt.rule)
			got, ok := w.Next(tt.from)
			if !ok || !got.Equal(tt.next) {
				t.Fatalf("Next(%v) = %v, %v, want %v", tt.from, got, ok, tt.next)
			}
			if end := w.CloseAt(got); !end.Equal(tt.end) {
				t.Fatalf("CloseAt(%v) = %v, want %v", got, end, tt.end)
			}
		})
	}
}

// TestWindow_NextMatchesScan checks Next and CloseAt against a minute-by-minute walk through
// both of Berlin's DST weeks; every edge there falls on a whole minute.
func TestWindow_NextMatchesScan(t *testing.T) {
	loc := berlin(t)
	rules := [][]string{
		{"mon-fri 09:00-17:00"}, {"sun 02:00-03:00"}, {"sun 02:30-02:45"}, {"sat-sun 01:30-02:30"},
		{"* 02:59-03:01"}, {"sat 23:00-02:15", "sun 02:45-04:00"}, {"sun 00:00-24:00"},
	}
	var starts []time.Time
	for _, day := range []string{"2025-03-28", "2025-10-24"} {
		for h := 0; h < 72; h += 5 {
			starts = append(starts, at(t, loc, day+" 00:00:00").Add(time.Duration(h)*time.Hour+7*time.Minute))
		}
	}
	scan := func(w *Window, from time.Time, open bool) time.Time {
		for c := from; c.Before(from.Add(15 * 24 * time.Hour)); c = c.Add(time.Minute) {
			if w.Allows(c) == open {
				return c
			}
		}
		return time.Time{}
	}
	for _, r := range rules {
		w := mustParse(t, loc, r...)
		for _, from := range starts {
			next, _ := w.Next(from)
			if want := scan(w, from, true); !next.Equal(want) {
				t.Errorf("%v Next(%v) = %v, want %v", w, from, next, want)
			}
			if end, want := w.CloseAt(next), scan(w, next, false); !end.Equal(want) {
				t.Errorf("%v CloseAt(%v) = %v, want %v", w, next, end, want)
			}
		}
	}
}

func TestWindow_String(t *testing.T) {
	loc := berlin(t)
	w := mustParse(t, loc, "mon-fri  09:00-17:00", "sat 10:00-12:00")
	if got, want := w.String(), "mon-fri 09:00-17:00, sat 10:00-12:00 (Europe/Berlin)"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	var zero Window
	if got, want := zero.String(), "any time"; got != want {
		t.Fatalf("zero String = %q, want %q", got, want)
	}
}
