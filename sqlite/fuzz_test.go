package sqlite

import (
	"context"
	"testing"
	"time"
	"unicode/utf8"

	"teal.dev/teal"
)

func FuzzTimeRoundTrip(f *testing.F) {
	f.Add(int64(0), int64(0), 0)
	f.Add(time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC).Unix(), int64(535897932), 330)
	f.Add(int64(-62135596800), int64(0), -720)        // year 1
	f.Add(int64(253402300799), int64(999999999), 840) // the last second of 9999
	f.Fuzz(func(t *testing.T, sec, nsec int64, offsetMinutes int) {
		offsetMinutes %= 24 * 60
		in := time.Unix(sec, nsec).In(time.FixedZone("z", offsetMinutes*60))
		s, err := formatTime(in)
		if err != nil {
			if y := in.Year(); y >= 0 && y <= 9999 {
				t.Fatalf("formatTime(%v): %v", in, err)
			}
			return
		}
		got, err := parseTime(s)
		if err != nil {
			t.Fatalf("parseTime(%q): %v", s, err)
		}
		if !got.Equal(in) {
			t.Fatalf("parseTime(formatTime(%v)) = %v, want it Equal", in, got)
		}
		if got.Location() != time.UTC {
			t.Fatalf("parseTime(%q) location = %v, want UTC", s, got.Location())
		}
	})
}

// FuzzEventRoundTrip checks that whatever text an event carries (NUL bytes, invalid UTF-8,
// SQL-looking strings) is stored and read back byte for byte.
func FuzzEventRoundTrip(f *testing.F) {
	f.Add("action", "alice", "deploy v2", "k", "v")
	f.Add("", "", "", "", "")
	f.Add("phase", "'; DROP TABLE events; --", "a\x00b", "\xff", "\xfe\x00")
	f.Add("step", "ünï", "line\nbreak\r\n\t", "nested", `{"a":1}`)
	s := newStore(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, kind, actor, message, key, value string) {
		// A release per input keeps Events short however long the fuzzing runs.
		r := &teal.Release{Version: "v1", Color: teal.Blue, Created: time.Unix(0, 0)}
		if err := s.CreateRelease(ctx, r); err != nil {
			t.Fatalf("CreateRelease: %v", err)
		}
		in := &teal.Event{ReleaseID: r.ID, Time: time.Unix(1, 2).UTC(), Kind: kind, Actor: actor, Message: message}
		// JSON replaces invalid UTF-8, so attrs round-trip exactly only when valid.
		exactAttrs := utf8.ValidString(key) && utf8.ValidString(value)
		if exactAttrs {
			in.Attrs = map[string]any{key: value}
		}
		if err := s.AddEvent(ctx, in); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
		es, err := s.Events(ctx, r.ID)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if len(es) != 1 {
			t.Fatalf("len(Events) = %d, want 1", len(es))
		}
		got := es[0]
		if got.ID != in.ID || got.Kind != kind || got.Actor != actor || got.Message != message {
			t.Fatalf("event = %+v, want %+v", *got, *in)
		}
		if exactAttrs && got.Attrs[key] != value {
			t.Fatalf("attrs = %v, want %v", got.Attrs, in.Attrs)
		}
	})
}
