package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

// naiveTail is tailOffset's specification: the offset of the last n lines.
func naiveTail(s string, n int) int {
	if n == 0 {
		return len(s)
	}
	body := strings.TrimSuffix(s, "\n")
	off := len(body)
	for range n {
		i := strings.LastIndexByte(body[:off], '\n')
		if i < 0 {
			return 0
		}
		off = i
	}
	return off + 1
}

func TestTailOffset(t *testing.T) {
	long := strings.Repeat("x", 20000) + "\n" + strings.Repeat("y", 9000) + "\nlast\n"
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"empty", "", 3, ""},
		{"last line", "a\nb\nc\n", 1, "c\n"},
		{"two lines", "a\nb\nc\n", 2, "b\nc\n"},
		{"all", "a\nb\nc\n", 3, "a\nb\nc\n"},
		{"more than all", "a\nb\nc\n", 9, "a\nb\nc\n"},
		{"zero", "a\nb\n", 0, ""},
		{"no final newline", "a\nb\nc", 1, "c"},
		{"no final newline two", "a\nb\nc", 2, "b\nc"},
		{"empty lines", "a\n\n\n", 2, "\n\n"},
		{"across chunks", long, 2, strings.Repeat("y", 9000) + "\nlast\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, err := tailOffset(strings.NewReader(tt.in), int64(len(tt.in)), tt.n)
			if err != nil {
				t.Fatalf("tailOffset: %v", err)
			}
			if got := tt.in[off:]; got != tt.want {
				t.Fatalf("tail = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzTailOffset(f *testing.F) {
	f.Add("a\nb\nc\n", 2)
	f.Add("\n\n\n", 1)
	f.Add("no newline", 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1000 {
			return
		}
		off, err := tailOffset(strings.NewReader(s), int64(len(s)), n)
		if err != nil {
			t.Fatalf("tailOffset: %v", err)
		}
		if want := naiveTail(s, n); int(off) != want {
			t.Fatalf("tailOffset(%q, %d) = %d, want %d", s, n, off, want)
		}
	})
}

func TestReadSSE(t *testing.T) {
	in := ": subscribed\n\n" +
		"id: 1\nevent: phase\ndata: {\"id\":1}\n\n" +
		": heartbeat\r\n\r\n" +
		"data: line one\ndata: line two\n\n" +
		"event: bare\n" // not dispatched: no blank line
	var got []sseMessage
	err := readSSE(strings.NewReader(in), func(m sseMessage) error {
		got = append(got, m)
		return nil
	})
	if err != nil {
		t.Fatalf("readSSE: %v", err)
	}
	want := []sseMessage{
		{ID: "1", Event: "phase", Data: `{"id":1}`},
		{Data: "line one\nline two"},
	}
	if len(got) != len(want) {
		t.Fatalf("messages = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// FuzzReadSSE checks that what writeEvent writes, readSSE reads back, whatever the event
// holds, and that arbitrary input never breaks the parser.
func FuzzReadSSE(f *testing.F) {
	f.Add(int64(1), "phase", "release #1: verifying", "id: 3\ndata: x\n\n")
	f.Add(int64(0), "a\nb", "multi\nline\r\nmessage", ":\n\ndata\n\n")
	f.Fuzz(func(t *testing.T, id int64, kind, msg, raw string) {
		_ = readSSE(strings.NewReader(raw), func(sseMessage) error { return nil })

		ev := &teal.Event{ID: id, Kind: kind, Message: msg, Time: time.Unix(0, 0).UTC()}
		var b bytes.Buffer
		if err := writeEvent(&b, ev); err != nil {
			t.Fatalf("writeEvent: %v", err)
		}
		var got []sseMessage
		if err := readSSE(&b, func(m sseMessage) error { got = append(got, m); return nil }); err != nil {
			t.Fatalf("readSSE: %v", err)
		}
		if len(got) != 1 {
			t.Fatalf("read %d messages, want 1", len(got))
		}
		var back teal.Event
		if err := json.Unmarshal([]byte(got[0].Data), &back); err != nil {
			t.Fatalf("decode data %q: %v", got[0].Data, err)
		}
		// Compare as JSON decodes it: Marshal turns invalid UTF-8 into U+FFFD.
		var direct teal.Event
		b0, _ := json.Marshal(ev)
		if err := json.Unmarshal(b0, &direct); err != nil {
			t.Fatalf("decode %s: %v", b0, err)
		}
		want, _ := json.Marshal(&direct)
		have, _ := json.Marshal(&back)
		if !bytes.Equal(want, have) {
			t.Fatalf("event = %s, want %s", have, want)
		}
	})
}
