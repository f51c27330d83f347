package sampleapp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
	"teal.dev/teal/proxy"
)

// testRedisAddr is the Redis server of the session tests: TEAL_TEST_REDIS_ADDR, else the one
// on the default port. They use database testRedisDB, not 0, and keys under a prefix each.
func testRedisAddr() string { return redisAddr }

// redisAddr is the throwaway Redis server TestMain started (testutil.StartRedis).
var redisAddr string

const testRedisDB = 9

// testSessions returns a Redis client on the test server, failing the test if there is none,
// and a key prefix of the test's own whose keys are deleted when it ends.
func testSessions(t *testing.T) (*redis.Client, string) {
	t.Helper()
	rdb := newTestClient(t)
	return rdb, testutil.RedisPrefix(t, rdb)
}

// newTestClient returns a client of its own on the test server's test database: each
// instance of the app has one.
func newTestClient(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr(), DB: testRedisDB})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// session sends a request with the session cookie sid (none if ""), and returns the
// response, its body read.
func session(t *testing.T, base, method, path, sid, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: sid})
	}
	// A client of its own per request and no cookie jar: only the session cookie is sent,
	// so nothing else (a router's sticky cookie) pins a request to a colour.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// decodeAnswer decodes a /login or /me answer.
func decodeAnswer(t *testing.T, body string) sessionAnswer {
	t.Helper()
	var got sessionAnswer
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return got
}

// login logs user in at base and returns the session id of the cookie it got.
func login(t *testing.T, base, user string) (string, sessionAnswer) {
	t.Helper()
	resp, body := session(t, base, "POST", "/login", "", "application/x-www-form-urlencoded",
		url.Values{"user": {user}}.Encode())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /login user=%s = %d %q, want 200", user, resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c.Value, decodeAnswer(t, body)
		}
	}
	t.Fatalf("POST /login user=%s set no %s cookie (Set-Cookie %q)", user, SessionCookie, resp.Header.Values("Set-Cookie"))
	return "", sessionAnswer{}
}

func TestApp_SessionsWithoutStore(t *testing.T) {
	srv := httptest.NewServer(&App{Version: "v1"})
	t.Cleanup(srv.Close)
	for _, tt := range []struct{ method, path string }{
		{"POST", "/login"}, {"GET", "/me"}, {"POST", "/logout"},
	} {
		resp, body := session(t, srv.URL, tt.method, tt.path, "", "", "user=alice")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no session store") {
			t.Fatalf("%s %s = %d %q, want 503 no session store", tt.method, tt.path, resp.StatusCode, body)
		}
	}
}

func TestApp_Sessions(t *testing.T) {
	rdb, prefix := testSessions(t)
	ctx := context.Background()
	srv := httptest.NewServer(&App{Version: "v1", Color: "blue", Sessions: &Sessions{Client: rdb, Prefix: prefix}})
	t.Cleanup(srv.Close)

	resp, body := session(t, srv.URL, "POST", "/login", "", "", "user=alice")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /login = %d %q, want 200", resp.StatusCode, body)
	}
	want := sessionAnswer{User: "alice", Version: "v1", Color: "blue"}
	if got := decodeAnswer(t, body); got != want {
		t.Fatalf("POST /login = %+v, want %+v", got, want)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies = %v, want one", cookies)
	}
	c := cookies[0]
	if c.Name != "sid" || !c.HttpOnly || c.Path != "/" || c.MaxAge != 3600 || len(c.Value) != sessionIDLen {
		t.Fatalf("cookie = %+v, want sid, HttpOnly, Path=/, Max-Age=3600, a %d-character id", c, sessionIDLen)
	}
	sid := c.Value
	key := prefix + "sess:" + sid
	if got, err := rdb.Get(ctx, key).Result(); err != nil || got != "alice" {
		t.Fatalf("GET %s = %q, %v; want alice", key, got, err)
	}
	if ttl, err := rdb.TTL(ctx, key).Result(); err != nil || ttl <= SessionTTL-time.Minute || ttl > SessionTTL {
		t.Fatalf("TTL %s = %s, %v; want about %s", key, ttl, err, SessionTTL)
	}

	resp, body = session(t, srv.URL, "GET", "/me", sid, "", "")
	if resp.StatusCode != http.StatusOK || decodeAnswer(t, body) != want {
		t.Fatalf("GET /me = %d %q, want 200 %+v", resp.StatusCode, body, want)
	}

	// A second login is a second session.
	sid2, _ := login(t, srv.URL, "bob b")
	if sid2 == sid {
		t.Fatalf("two logins got the same session id %s", sid)
	}
	resp, body = session(t, srv.URL, "GET", "/me", sid2, "", "")
	if resp.StatusCode != http.StatusOK || decodeAnswer(t, body).User != "bob b" {
		t.Fatalf("GET /me as bob = %d %q, want 200 bob b", resp.StatusCode, body)
	}

	for _, tt := range []struct{ name, sid string }{
		{"no cookie", ""},
		{"malformed id", "../../etc"},
		{"unknown id", rand.Text()},
	} {
		resp, body := session(t, srv.URL, "GET", "/me", tt.sid, "", "")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not logged in") {
			t.Fatalf("GET /me, %s = %d %q, want 401 not logged in", tt.name, resp.StatusCode, body)
		}
	}

	resp, body = session(t, srv.URL, "POST", "/logout", sid, "", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /logout = %d %q, want 204", resp.StatusCode, body)
	}
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].Name != SessionCookie || cs[0].MaxAge >= 0 {
		t.Fatalf("POST /logout cookies = %v, want sid cleared", cs)
	}
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS %s after logout = %d, %v; want 0", key, n, err)
	}
	if resp, _ := session(t, srv.URL, "GET", "/me", sid, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /me after logout = %d, want 401", resp.StatusCode)
	}
	if resp, _ := session(t, srv.URL, "GET", "/me", sid2, "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /me as bob after alice's logout = %d, want 200", resp.StatusCode)
	}
	if resp, _ := session(t, srv.URL, "POST", "/logout", "", "", ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /logout without a session = %d, want 204", resp.StatusCode)
	}
}

func TestApp_LoginRefused(t *testing.T) {
	rdb, prefix := testSessions(t)
	srv := httptest.NewServer(&App{Version: "v1", Sessions: &Sessions{Client: rdb, Prefix: prefix}})
	t.Cleanup(srv.Close)
	tests := []struct {
		name, method, contentType, body string
		status                          int
		want                            string
	}{
		{"no user", "POST", "", "name=alice", 400, "no user: want user=NAME"},
		{"empty user", "POST", "", "user=", 400, "want 1 to 64"},
		{"user too long", "POST", "", "user=" + strings.Repeat("a", 65), 400, "65 bytes: want 1 to 64"},
		{"two users", "POST", "", "user=a&user=b", 400, "user given 2 times"},
		{"control character", "POST", "", "user=a%00b", 400, "is not printable"},
		{"bad encoding", "POST", "", "user=%zz", 400, "want user=NAME"},
		{"JSON", "POST", "application/json", `{"user":"alice"}`, 415, "want application/x-www-form-urlencoded"},
		{"body too big", "POST", "", "user=" + strings.Repeat("a", 2000), 413, "body over 1024 bytes"},
		{"GET", "GET", "", "", 405, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := session(t, srv.URL, tt.method, "/login", "", tt.contentType, tt.body)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%s /login %q = %d %q, want %d %q", tt.method, tt.body, resp.StatusCode, body, tt.status, tt.want)
			}
			if len(resp.Cookies()) != 0 {
				t.Fatalf("cookies = %v, want none", resp.Cookies())
			}
		})
	}
	if n, err := rdb.Keys(context.Background(), prefix+"*").Result(); err != nil || len(n) != 0 {
		t.Fatalf("keys after refused logins = %q, %v; want none", n, err)
	}
}

func TestApp_SessionExpires(t *testing.T) {
	rdb, prefix := testSessions(t)
	srv := httptest.NewServer(&App{Version: "v1", Sessions: &Sessions{Client: rdb, Prefix: prefix, TTL: time.Second}})
	t.Cleanup(srv.Close)
	sid, _ := login(t, srv.URL, "alice")
	testutil.WaitFor(t, 5*time.Second, "the session to expire", func() bool {
		resp, _ := session(t, srv.URL, "GET", "/me", sid, "", "")
		return resp.StatusCode == http.StatusUnauthorized
	})
}

func TestApp_SessionStoreDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testutil.DeadAddr(t), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	srv := httptest.NewServer(&App{Version: "v1", Sessions: &Sessions{Client: rdb}})
	t.Cleanup(srv.Close)
	for _, tt := range []struct{ method, path string }{
		{"POST", "/login"}, {"GET", "/me"}, {"POST", "/logout"},
	} {
		resp, body := session(t, srv.URL, tt.method, tt.path, rand.Text(), "", "user=alice")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "session store:") {
			t.Fatalf("%s %s with Redis down = %d %q, want 503 session store", tt.method, tt.path, resp.StatusCode, body)
		}
	}
	if resp, _ := session(t, srv.URL, "GET", "/healthz", "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz with Redis down = %d, want 200", resp.StatusCode)
	}
}

// TestSessions_SurviveSwitch is the release seen by a user: blue (v1) and green (v2), each
// instance with its own Redis client, behind teal's router. The user logs in on blue; the
// traffic moves to green at once, or in weighted steps; the user stays logged in throughout,
// on whichever colour answers, and after a rollback to blue.
func TestSessions_SurviveSwitch(t *testing.T) {
	_, prefix := testSessions(t)
	ctx := context.Background()
	backend := func(version, color string) string {
		srv := httptest.NewServer(&App{Version: version, Color: color,
			Sessions: &Sessions{Client: newTestClient(t), Prefix: prefix}})
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	blue, green := backend("v1", "blue"), backend("v2", "green")
	rt := proxy.NewRouter()
	t.Cleanup(func() { _ = rt.Close() })
	if err := rt.SetBackends(ctx, teal.Blue, []string{blue}); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetBackends(ctx, teal.Green, []string{green}); err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(rt.Handler())
	t.Cleanup(front.Close)
	route := func(t *testing.T, b, g int) {
		t.Helper()
		if err := rt.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: b, Green: g}}); err != nil {
			t.Fatal(err)
		}
	}
	// me asks n times who is logged in, and returns the colours that answered.
	me := func(t *testing.T, sid, user string, n int) map[string]int {
		t.Helper()
		colors := map[string]int{}
		for range n {
			resp, body := session(t, front.URL, "GET", "/me", sid, "", "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /me = %d %q, want 200: the user was logged out", resp.StatusCode, body)
			}
			got := decodeAnswer(t, body)
			if got.User != user {
				t.Fatalf("GET /me user = %q, want %q", got.User, user)
			}
			colors[got.Color]++
		}
		return colors
	}

	t.Run("instant", func(t *testing.T) {
		route(t, 100, 0)
		sid, on := login(t, front.URL, "alice")
		if on.Color != "blue" {
			t.Fatalf("logged in on %s, want blue", on.Color)
		}
		route(t, 0, 100)
		if got := me(t, sid, "alice", 3); got["green"] != 3 {
			t.Fatalf("after the switch /me answered by %v, want green only", got)
		}
		route(t, 100, 0) // rollback
		if got := me(t, sid, "alice", 3); got["blue"] != 3 {
			t.Fatalf("after the rollback /me answered by %v, want blue only", got)
		}
	})
	t.Run("weighted", func(t *testing.T) {
		route(t, 100, 0)
		sid, _ := login(t, front.URL, "bob")
		for _, step := range []int{10, 50, 100} {
			route(t, 100-step, step)
			// The router spreads each colour's share evenly over every 100 requests.
			got := me(t, sid, "bob", 100)
			if got["green"] != step || got["blue"] != 100-step {
				t.Fatalf("at green %d%%, /me answered by %v, want green %d, blue %d", step, got, step, 100-step)
			}
		}
		// A session made on green is one blue knows too.
		route(t, 50, 50)
		sid2, _ := login(t, front.URL, "carol")
		if got := me(t, sid2, "carol", 4); got["blue"] == 0 || got["green"] == 0 {
			t.Fatalf("at 50/50, /me answered by %v, want both colours", got)
		}
		// Logging out on one colour logs out on both.
		if resp, _ := session(t, front.URL, "POST", "/logout", sid2, "", ""); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("POST /logout = %d, want 204", resp.StatusCode)
		}
		for i := range 2 {
			if resp, _ := session(t, front.URL, "GET", "/me", sid2, "", ""); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("GET /me #%d after logout = %d, want 401 on both colours", i+1, resp.StatusCode)
			}
		}
	})
}

func TestRun_Sessions(t *testing.T) {
	rdb, _ := testSessions(t)
	t.Setenv("REDIS_URL", fmt.Sprintf("redis://%s/%d", testRedisAddr(), testRedisDB))
	t.Setenv("TEAL_COLOR", "green")
	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, addr, "v7") }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	base := "http://" + addr
	testutil.WaitFor(t, 5*time.Second, "the app to listen", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	sid, got := login(t, base, "dave")
	// Run keeps sessions under no prefix: delete this one whatever happens next.
	t.Cleanup(func() { _ = rdb.Del(context.Background(), "sess:"+sid).Err() })
	if want := (sessionAnswer{User: "dave", Version: "v7", Color: "green"}); got != want {
		t.Fatalf("POST /login = %+v, want %+v", got, want)
	}
	if u, err := rdb.Get(context.Background(), "sess:"+sid).Result(); err != nil || u != "dave" {
		t.Fatalf("GET sess:%s = %q, %v; want dave", sid, u, err)
	}
	if resp, body := session(t, base, "GET", "/me", sid, "", ""); resp.StatusCode != http.StatusOK || decodeAnswer(t, body).User != "dave" {
		t.Fatalf("GET /me = %d %q, want 200 dave", resp.StatusCode, body)
	}
}

func TestRun_RedisURLInvalid(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://shop:hunter2@cache:99999/0")
	err := Run(context.Background(), testutil.FreeAddr(t), "v1")
	if err == nil || !strings.Contains(err.Error(), "sampleapp REDIS_URL") || !strings.Contains(err.Error(), "port") ||
		strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Run with a bad REDIS_URL = %v, want a REDIS_URL error about the port, without the password", err)
	}
}

func TestParseLogin(t *testing.T) {
	tests := []struct {
		name, body, want, err string
	}{
		{"plain", "user=alice", "alice", ""},
		{"encoded", "user=bob+b%C3%A9", "bob bé", ""},
		{"other fields", "user=alice&remember=1", "alice", ""},
		{"trailing newline", "user=alice\n", "alice", ""},
		{"64 bytes", "user=" + strings.Repeat("x", 64), strings.Repeat("x", 64), ""},
		{"empty body", "", "", "no user"},
		{"no user", "name=alice", "", "no user"},
		{"empty user", "user=", "", "0 bytes: want 1 to 64"},
		{"65 bytes", "user=" + strings.Repeat("x", 65), "", "65 bytes"},
		{"twice", "user=a&user=b", "", "given 2 times"},
		{"newline inside", "user=a%0Ab", "", "U+000A is not printable"},
		{"bad UTF-8", "user=%FF", "", "not valid UTF-8"},
		{"bad escape", "user=%z", "", "invalid URL escape"},
		{"semicolon", "user=a;b", "", "invalid semicolon separator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLogin(tt.body)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseLogin(%q) = %q, %v; want error %q", tt.body, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseLogin(%q) = %q, %v; want %q", tt.body, got, err, tt.want)
			}
		})
	}
}

func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{"user=alice", "user=bob+b%C3%A9", "user=", "user=a&user=b", "user=%FF", "user=a;b", "x=1&user=%20"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		user, err := ParseLogin(body)
		if err != nil {
			return
		}
		if user == "" || len(user) > MaxUserLen || !utf8.ValidString(user) {
			t.Fatalf("ParseLogin(%q) = %q: want 1 to %d bytes of UTF-8", body, user, MaxUserLen)
		}
		for _, ch := range user {
			if !unicode.IsPrint(ch) {
				t.Fatalf("ParseLogin(%q) = %q: %U is not printable", body, user, ch)
			}
		}
		// What a browser would send for that user parses back to it.
		if again, err := ParseLogin(url.Values{"user": {user}}.Encode()); err != nil || again != user {
			t.Fatalf("ParseLogin of the encoding of %q = %q, %v", user, again, err)
		}
	})
}
