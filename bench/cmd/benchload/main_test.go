package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRun_TagsAndReconnects: every request carries its number with -tag, and a server that
// closes connections now and then (as nginx does after keepalive_requests) costs no failed
// request.
func TestRun_TagsAndReconnects(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	served := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Query().Get("n")] = true
		served++
		if served%5 == 0 {
			w.Header().Set("Connection", "close")
		}
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"-tag", "-url", srv.URL + "/?a=1", "-rate", "200", "-duration", "500ms", "-conns", "4"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v (%s)", err, errOut.String())
	}
	line := out.String()
	for _, want := range []string{"sent=100 ", "ok=100 ", "errors=0 ", "wait_p99_ms=", "rt_p99_ms="} {
		if !strings.Contains(line, want) {
			t.Errorf("output %q: want %q in it", line, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 100 || !seen["0"] || !seen["99"] {
		t.Errorf("the server saw %d request numbers (0: %v, 99: %v), want 0 to 99", len(seen), seen["0"], seen["99"])
	}
}

func TestRequest_Append(t *testing.T) {
	for _, tc := range []struct {
		r    request
		want string
	}{
		{request{line: "GET /", rest: " HTTP/1.1\r\n\r\n"}, "GET / HTTP/1.1\r\n\r\n"},
		{request{line: "GET /", tag: "?n=", rest: " HTTP/1.1\r\n\r\n"}, "GET /?n=42 HTTP/1.1\r\n\r\n"},
		{request{line: "GET /?a=1", tag: "&n=", rest: " X"}, "GET /?a=1&n=42 X"},
	} {
		if got := string(tc.r.append(nil, 42)); got != tc.want {
			t.Errorf("append = %q, want %q", got, tc.want)
		}
	}
}
