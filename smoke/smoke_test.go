package smoke

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// app is the new colour behind the preview endpoint, as an httptest server.
func app(t *testing.T) (url string, hits *atomic.Int32) {
	t.Helper()
	hits = new(atomic.Int32)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "welcome to the shop") })
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok": true, "n": 3, "items": [{"id": 7}], "name": "shop"}`)
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom "+strings.Repeat("x", 300), http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /old", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://shop.example.test/", http.StatusFound)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

func get(path string, expect teal.SmokeExpect) teal.SmokeCheck {
	return teal.SmokeCheck{Name: "check " + path, Method: "GET", Path: path, Expect: expect}
}

func jsonIs(path, value string) []teal.JSONExpect {
	return []teal.JSONExpect{{Path: path, Value: json.RawMessage(value)}}
}

func TestRunner_ChecksPass(t *testing.T) {
	url, hits := app(t)
	checks := []teal.SmokeCheck{
		get("/", teal.SmokeExpect{Status: 200, BodyContains: "shop"}),
		get("/api/health", teal.SmokeExpect{Status: 200, JSON: []teal.JSONExpect{
			{Path: "$.ok", Value: json.RawMessage("true")},
			{Path: "$.n", Value: json.RawMessage("3.0")},
			{Path: "$.items[-1].id", Value: json.RawMessage("7")},
			{Path: `$["name"]`, Value: json.RawMessage(`"shop"`)},
		}}),
		get("/old", teal.SmokeExpect{Status: 302}), // a redirect is not followed
		{Method: "GET", Path: "/"},                 // default name and status 200
	}
	results, err := (&Runner{}).Checks(context.Background(), url+"/", checks, 5*time.Second)
	if err != nil {
		t.Fatalf("Checks: %v", err)
	}
	if len(results) != 4 || hits.Load() != 4 {
		t.Fatalf("Checks = %d results after %d requests, want 4 and 4", len(results), hits.Load())
	}
	wantStatus := []int{200, 200, 302, 200}
	for i, res := range results {
		if res.Err != nil || res.Status != wantStatus[i] || res.Duration <= 0 {
			t.Fatalf("results[%d] = %+v, want status %d, no error", i, res, wantStatus[i])
		}
	}
	if got := results[3].Check; got != "GET /" {
		t.Fatalf("unnamed check's name = %q, want %q", got, "GET /")
	}
}

func TestRunner_ChecksFail(t *testing.T) {
	url, _ := app(t)
	tests := []struct {
		name  string
		check teal.SmokeCheck
		want  string // the Failure's Error()
	}{
		{"wrong status", get("/boom", teal.SmokeExpect{Status: 200}),
			`smoke check "check /boom" (GET /boom): want status 200, got 500; body: "boom ` + strings.Repeat("x", 192) + `…"`},
		{"redirect", get("/old", teal.SmokeExpect{}),
			`smoke check "check /old" (GET /old): want status 200, got 302 to http://shop.example.test/; body: "<a href=\"http://shop.example.test/\">Found</a>.\n\n"`},
		{"missing substring", get("/", teal.SmokeExpect{Status: 200, BodyContains: "cart"}),
			`smoke check "check /" (GET /): want body containing "cart", got a body without it; body: "welcome to the shop"`},
		{"json mismatch", get("/api/health", teal.SmokeExpect{Status: 200, JSON: jsonIs("$.ok", " false ")}),
			`smoke check "check /api/health" (GET /api/health): want $.ok = false, got $.ok = true; body: "{\"ok\": true, \"n\": 3, \"items\": [{\"id\": 7}], \"name\": \"shop\"}"`},
		{"json type", get("/api/health", teal.SmokeExpect{Status: 200, JSON: jsonIs("$.n", `"3"`)}),
			`want $.n = "3", got $.n = 3;`},
		{"json missing", get("/api/health", teal.SmokeExpect{Status: 200, JSON: jsonIs("$.items[3].id", "7")}),
			`want $.items[3].id = 7, got $.items[3]: index 3 out of range (length 1);`},
		{"not json", get("/", teal.SmokeExpect{Status: 200, JSON: jsonIs("$.ok", "true")}),
			`smoke check "check /" (GET /): want a JSON body, got not JSON, text/plain; charset=utf-8 (invalid character 'w' looking for beginning of value); body: "welcome to the shop"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, err := (&Runner{}).Checks(context.Background(), url, []teal.SmokeCheck{tt.check}, 5*time.Second)
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("Checks error = %v, want a *Failure", err)
			}
			if got := err.Error(); got != tt.want && !(strings.HasPrefix(tt.want, "want") && strings.Contains(got, tt.want)) {
				t.Fatalf("error = %s\nwant     %s", got, tt.want)
			}
			if len(f.Body) > maxExcerpt {
				t.Fatalf("Failure.Body is %d bytes, want at most %d", len(f.Body), maxExcerpt)
			}
			if len(results) != 1 || results[0].Err != err {
				t.Fatalf("results = %+v, want the one failed check carrying the error", results)
			}
		})
	}
}

func TestRunner_ChecksStopAtFirstFailure(t *testing.T) {
	url, hits := app(t)
	checks := []teal.SmokeCheck{
		get("/", teal.SmokeExpect{Status: 200}),
		get("/boom", teal.SmokeExpect{Status: 200}),
		get("/", teal.SmokeExpect{Status: 200}),
	}
	results, err := (&Runner{}).Checks(context.Background(), url, checks, 5*time.Second)
	if err == nil || len(results) != 2 || hits.Load() != 2 {
		t.Fatalf("Checks = %d results, %d requests, %v; want 2, 2 and a failure", len(results), hits.Load(), err)
	}
	if results[0].Err != nil || results[1].Status != 500 {
		t.Fatalf("results = %+v, want a pass then the 500", results)
	}
}

func TestRunner_ChecksSendHeadersAndBody(t *testing.T) {
	type seen struct{ method, path, host, token, smoke, body string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("Authorization"), r.Header.Get("X-Teal-Smoke"), string(b)}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	check := teal.SmokeCheck{Name: "create order", Method: "POST", Path: "/orders?dry=1",
		Headers: map[string]string{"Authorization": "Bearer t", "Host": "shop.example.test"},
		Body:    `{"sku": 1}`, Expect: teal.SmokeExpect{Status: 201}}
	if _, err := (&Runner{}).Checks(context.Background(), srv.URL, []teal.SmokeCheck{check}, 5*time.Second); err != nil {
		t.Fatalf("Checks: %v", err)
	}
	want := seen{"POST", "/orders?dry=1", "shop.example.test", "Bearer t", "create order", `{"sku": 1}`}
	if g := <-got; g != want {
		t.Fatalf("server saw %+v, want %+v", g, want)
	}
}

func TestRunner_ChecksTimeout(t *testing.T) {
	url, _ := app(t)
	start := time.Now()
	_, err := (&Runner{}).Checks(context.Background(), url, []teal.SmokeCheck{get("/slow", teal.SmokeExpect{})}, 100*time.Millisecond)
	var f *Failure
	if !errors.As(err, &f) || f.Expected != "an answer within 100ms" || f.Got != "none in time" {
		t.Fatalf("Checks error = %#v, want a Failure for no answer within 100ms", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Checks took %s, want about 100ms", d)
	}
}

func TestRunner_ChecksContextCancel(t *testing.T) {
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err := (&Runner{}).Checks(ctx, srv.URL, []teal.SmokeCheck{get("/", teal.SmokeExpect{})}, time.Minute)
	var f *Failure
	if !errors.Is(err, context.Canceled) || errors.As(err, &f) {
		t.Fatalf("Checks error = %v, want context.Canceled and no Failure", err)
	}
}

func TestRunner_ChecksConnectionRefused(t *testing.T) {
	_, err := (&Runner{}).Checks(context.Background(), "http://"+testutil.DeadAddr(t), []teal.SmokeCheck{get("/", teal.SmokeExpect{Status: 200})}, 5*time.Second)
	var f *Failure
	if !errors.As(err, &f) || !strings.HasSuffix(f.Got, "connection refused") || f.Expected != "status 200" {
		t.Fatalf("Checks error = %v, want a Failure whose got is a refused connection", err)
	}
	if strings.Contains(f.Got, `Get "`) {
		t.Fatalf("Failure.Got = %q, want it without the request, which the check names", f.Got)
	}
}

func TestRunner_ChecksBadDefinition(t *testing.T) {
	url, hits := app(t)
	tests := []struct {
		name, baseURL string
		check         teal.SmokeCheck
		want          string
	}{
		{"bad path", url, get("/", teal.SmokeExpect{JSON: jsonIs("$[*]", "1")}), "wildcards are not supported"},
		{"bad value", url, get("/", teal.SmokeExpect{JSON: jsonIs("$.ok", "yes")}), `expected value "yes" is not JSON`},
		{"bad base", "127.0.0.1:8081", get("/", teal.SmokeExpect{}), "want one like http://127.0.0.1:8081"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks := []teal.SmokeCheck{get("/", teal.SmokeExpect{}), tt.check}
			_, err := (&Runner{}).Checks(context.Background(), tt.baseURL, checks, time.Second)
			var f *Failure
			if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Checks error = %v, want a non-Failure containing %q", err, tt.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests were sent, want none before the definitions are checked", n)
	}
}
