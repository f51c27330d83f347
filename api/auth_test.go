package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
)

const (
	ciToken  = "ci-token-0123456789abcdef"
	bobToken = "bob-token-0123456789abcdef"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string // substring; "" = no error
	}{
		{"empty", "", map[string]string{}, ""},
		{"comments and blanks", "# who may deploy\n\n  \n# end\n", map[string]string{}, ""},
		{"two names", "ci " + ciToken + "\nbob\t" + bobToken + "\n", map[string]string{"ci": ciToken, "bob": bobToken}, ""},
		{"indented, crlf", "  ci   " + ciToken + "  \r\n", map[string]string{"ci": ciToken}, ""},
		{"name charset", "a.b_c-9 " + ciToken, map[string]string{"a.b_c-9": ciToken}, ""},
		{"one field", "ci\n", nil, "tokens:1: 1 fields, want NAME TOKEN"},
		{"three fields", "\nci " + ciToken + " extra\n", nil, "tokens:2: 3 fields, want NAME TOKEN"},
		{"upper-case name", "CI " + ciToken, nil, `tokens:1: name "CI": want lowercase letters`},
		{"name starts with dot", ".ci " + ciToken, nil, `name ".ci"`},
		{"name with colon", "ci:x " + ciToken, nil, `name "ci:x"`},
		{"admin is taken", "admin " + ciToken, nil, `tokens:1: name "admin" is the admin token's`},
		{"short token", "ci 0123456789abcde", nil, `tokens:1: the token of name "ci" has 15 characters, want at least 16`},
		{"duplicate name", "ci " + ciToken + "\nci " + bobToken, nil, `tokens:2: name "ci" again (first on line 1)`},
		{"duplicate token", "ci " + ciToken + "\n#\nbob " + ciToken, nil, `tokens:3: the token of name "bob" is also the token of name "ci" (line 1)`},
		{"every error", "CI " + ciToken + "\nx short", nil, "tokens:2:"},
		{"token first", "Tok3n-0123456789abcdef ci", nil, "tokens:1: a name of 22 characters: want lowercase"},
		{"hex token first", "0123456789abcdef01 ci", nil, "tokens:1: the token of a name of 18 characters has 2 characters"},
		{"long name shown by length", "ci-deploy-robot-01 " + ciToken + "\nci-deploy-robot-01 " + bobToken, nil, "tokens:2: a name of 18 characters again (first on line 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens(strings.NewReader(tt.in), "tokens")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTokens error = %v, want one containing %q", err, tt.wantErr)
				}
				for _, tok := range []string{ciToken, bobToken, "0123456789abcde"} {
					if strings.Contains(err.Error(), tok) {
						t.Fatalf("ParseTokens error %q shows a token", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTokens: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseTokens = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoadTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if _, err := LoadTokens(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadTokens of a missing file = %v, want an error naming it", err)
	}
	if err := os.WriteFile(path, []byte("ci "+ciToken+"\nbad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(path); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("LoadTokens = %v, want an error naming %s:2", err, path)
	}
	if err := os.WriteFile(path, []byte("ci "+ciToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadTokens(path)
	if err != nil || got["ci"] != ciToken {
		t.Fatalf("LoadTokens = %v, %v, want ci", got, err)
	}
}

// FuzzParseTokens checks that any input either parses into valid names and long, distinct
// tokens that parse again the same, or fails without showing a long field.
func FuzzParseTokens(f *testing.F) {
	f.Add("ci " + ciToken + "\n# c\n\nbob " + bobToken + "\n")
	f.Add("admin " + ciToken)
	f.Add("ci short\nci " + ciToken)
	f.Add("a b c\n\r\n\x00")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseTokens(strings.NewReader(in), "f")
		if err != nil {
			for _, field := range strings.Fields(in) {
				// Whatever its place on the line, a field as long as a token is never shown.
				if len(field) >= MinTokenLength && strings.Contains(err.Error(), field) {
					t.Fatalf("error %q shows the field %q", err, field)
				}
			}
			return
		}
		seen := make(map[string]bool)
		var b strings.Builder
		for name, tok := range got {
			if !validName(name) || name == AdminName || len(tok) < MinTokenLength || seen[tok] {
				t.Fatalf("ParseTokens(%q) accepted %q %q", in, name, tok)
			}
			seen[tok] = true
			b.WriteString(name + " " + tok + "\n")
		}
		again, err := ParseTokens(strings.NewReader(b.String()), "f")
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-parse = %v, %v, want %v", again, err, got)
		}
	})
}

// authEnv is an API server with named tokens and a recording controller.
type authEnv struct {
	*testEnv
	mu     sync.Mutex
	actors []string
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	a := &authEnv{}
	record := func(actor string) {
		a.mu.Lock()
		a.actors = append(a.actors, actor)
		a.mu.Unlock()
	}
	a.testEnv = newTestEnv(t, &fakeController{
		promote: func(_ context.Context, actor string) (*teal.Release, error) {
			record(actor)
			return &teal.Release{ID: 1, Actor: actor}, nil
		},
		rollback: func(_ context.Context, req teal.RollbackRequest) (*teal.Release, error) {
			record(req.Actor)
			return &teal.Release{ID: 1}, nil
		},
	})
	a.srv.Tokens = map[string]string{"ci": ciToken, "bob": bobToken}
	return a
}

func (a *authEnv) acted() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.actors...)
}

// login returns the session cookie and session of token, as the dashboard's login sets them.
func (a *authEnv) login(t *testing.T, token string) (*http.Cookie, Session) {
	t.Helper()
	rec := httptest.NewRecorder()
	sess, err := a.srv.Login(rec, httptest.NewRequest(http.MethodPost, "/login", nil), token)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != SessionCookie {
		t.Fatalf("Login set cookies %v, want one %s", cookies, SessionCookie)
	}
	return cookies[0], sess
}

// send makes a real request to the server and returns the status and the error body.
func (a *authEnv) send(t *testing.T, method, path string, hdr http.Header, cookie *http.Cookie, body string) (int, ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(method, a.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("%s %s: %d with body %q, want JSON", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, eb
}

func TestServer_NamedTokens(t *testing.T) {
	tests := []struct {
		name, token, actorHeader string
		want                     int
		wantActor                string
	}{
		{"admin", testToken, "", 200, AdminActor},
		{"admin as cli user", testToken, "cli:alice", 200, "cli:alice"},
		{"named", ciToken, "", 200, "api:ci"},
		{"named cannot claim another actor", bobToken, "cli:alice", 200, "api:bob"},
		{"unknown", "nobody-0123456789abcdef", "", 401, ""},
		{"named token prefix", ciToken[:10], "", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthEnv(t)
			hdr := http.Header{"Authorization": {"Bearer " + tt.token}}
			if tt.actorHeader != "" {
				hdr.Set(ActorHeader, tt.actorHeader)
			}
			code, eb := a.send(t, http.MethodPost, "/api/v1/releases/current/promote", hdr, nil, "")
			if code != tt.want {
				t.Fatalf("status = %d (%+v), want %d", code, eb, tt.want)
			}
			var want []string
			if tt.wantActor != "" {
				want = []string{tt.wantActor}
			}
			if got := a.acted(); !reflect.DeepEqual(got, want) {
				t.Fatalf("actors = %q, want %q", got, want)
			}
		})
	}
}

func TestServer_Session(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		path      string
		header    func(s Session) http.Header
		body      string
		want      int
		wantActor string
	}{
		{"get needs no csrf", "GET", "/api/v1/status", nil, "", 200, ""},
		{"post without csrf", "POST", "/api/v1/releases/current/promote", nil, "", 403, ""},
		{"post with csrf", "POST", "/api/v1/releases/current/promote",
			func(s Session) http.Header { return http.Header{CSRFHeader: {s.CSRF}} }, "", 200, "dashboard:admin"},
		{"post with wrong csrf", "POST", "/api/v1/releases/current/promote",
			func(s Session) http.Header { return http.Header{CSRFHeader: {s.CSRF[1:] + "A"}} }, "", 403, ""},
		{"post with csrf from another origin", "POST", "/api/v1/releases/current/promote",
			func(s Session) http.Header {
				return http.Header{CSRFHeader: {s.CSRF}, "Origin": {"http://evil.example"}}
			}, "", 403, ""},
		{"post with csrf, null origin", "POST", "/api/v1/releases/current/promote",
			func(s Session) http.Header { return http.Header{CSRFHeader: {s.CSRF}, "Origin": {"null"}} }, "", 403, ""},
		{"post with csrf, referer elsewhere", "POST", "/api/v1/releases/current/promote",
			func(s Session) http.Header {
				return http.Header{CSRFHeader: {s.CSRF}, "Referer": {"http://evil.example/page"}}
			}, "", 403, ""},
		{"post with csrf in a form", "POST", "/api/v1/releases/current/promote",
			func(s Session) http.Header {
				return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
			}, "csrf=", 200, "dashboard:admin"},
		{"rollback with csrf and json", "POST", "/api/v1/rollback",
			func(s Session) http.Header {
				return http.Header{CSRFHeader: {s.CSRF}, "Content-Type": {"application/json"}}
			}, `{"force": false}`, 200, "dashboard:admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthEnv(t)
			cookie, sess := a.login(t, testToken)
			var hdr http.Header
			if tt.header != nil {
				hdr = tt.header(sess)
			}
			body := tt.body
			if body == "csrf=" {
				body += url.QueryEscape(sess.CSRF)
			}
			code, eb := a.send(t, tt.method, tt.path, hdr, cookie, body)
			if code != tt.want {
				t.Fatalf("status = %d (%+v), want %d", code, eb, tt.want)
			}
			if code == 403 && (eb.Error == "" || eb.Hint == "") {
				t.Fatalf("403 body = %+v, want an error and a hint", eb)
			}
			var want []string
			if tt.wantActor != "" {
				want = []string{tt.wantActor}
			}
			if got := a.acted(); !reflect.DeepEqual(got, want) {
				t.Fatalf("actors = %q, want %q: a refused call must do nothing", got, want)
			}
		})
	}
}

func TestServer_SessionSameOriginAllowed(t *testing.T) {
	a := newAuthEnv(t)
	cookie, sess := a.login(t, bobToken)
	u, _ := url.Parse(a.http.URL)
	hdr := http.Header{CSRFHeader: {sess.CSRF}, "Origin": {"http://" + u.Host}, "Referer": {"http://evil.example/"}}
	if code, eb := a.send(t, "POST", "/api/v1/releases/current/promote", hdr, cookie, ""); code != 200 {
		t.Fatalf("status = %d (%+v), want 200", code, eb)
	}
	if got, want := a.acted(), []string{"dashboard:bob"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("actors = %q, want %q", got, want)
	}
}

func TestServer_SessionRefusals(t *testing.T) {
	a := newAuthEnv(t)
	cookie, sess := a.login(t, ciToken)
	_, bobSess := a.login(t, bobToken)

	// Bob's CSRF token does not go with ci's cookie.
	if code, _ := a.send(t, "POST", "/api/v1/releases/current/promote", http.Header{CSRFHeader: {bobSess.CSRF}}, cookie, ""); code != 403 {
		t.Fatalf("another session's CSRF token: status = %d, want 403", code)
	}
	// A wrong bearer token is refused even with a good cookie.
	hdr := http.Header{"Authorization": {"Bearer wrong"}, CSRFHeader: {sess.CSRF}}
	if code, _ := a.send(t, "POST", "/api/v1/releases/current/promote", hdr, cookie, ""); code != 401 {
		t.Fatalf("wrong bearer with a cookie: status = %d, want 401", code)
	}
	// A forged cookie: ci's signature under another name.
	forged := *cookie
	forged.Value = "bob" + strings.TrimPrefix(cookie.Value, "ci")
	if code, _ := a.send(t, "GET", "/api/v1/status", nil, &forged, ""); code != 401 {
		t.Fatalf("forged cookie: status = %d, want 401", code)
	}
	if got := a.acted(); len(got) != 0 {
		t.Fatalf("actors = %q, want none", got)
	}
}

func TestServer_SessionValidity(t *testing.T) {
	a := newAuthEnv(t)
	cookie, _ := a.login(t, ciToken)
	adminCookie, _ := a.login(t, testToken)
	now := time.Now()
	tests := []struct {
		name   string
		value  string
		change func(s *Server)
		at     time.Time
		want   bool
	}{
		{"valid", cookie.Value, nil, now, true},
		{"admin valid", adminCookie.Value, nil, now, true},
		{"expired", cookie.Value, nil, now.Add(SessionTTL + time.Second), false},
		{"new admin token ends every session", cookie.Value, func(s *Server) { s.Token = "another-admin-token" }, now, false},
		{"new admin token ends admin's", adminCookie.Value, func(s *Server) { s.Token = "another-admin-token" }, now, false},
		{"changed named token", cookie.Value, func(s *Server) { s.Tokens["ci"] = "ci-changed-0123456789" }, now, false},
		{"removed name", cookie.Value, func(s *Server) { delete(s.Tokens, "ci") }, now, false},
		{"other name changed", cookie.Value, func(s *Server) { delete(s.Tokens, "bob") }, now, true},
		{"empty", "", nil, now, false},
		{"garbage", "x:y:z", nil, now, false},
		{"bad signature", cookie.Value + "A", nil, now, false},
		{"longer expiry", strings.Replace(cookie.Value, ":1", ":9", 1), nil, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Token: a.srv.Token, Tokens: map[string]string{"ci": ciToken, "bob": bobToken}}
			if tt.change != nil {
				tt.change(s)
			}
			if _, ok := s.parseSession(tt.value, tt.at); ok != tt.want {
				t.Fatalf("session valid = %v, want %v", ok, tt.want)
			}
		})
	}
}

func TestServer_LoginCookie(t *testing.T) {
	a := newAuthEnv(t)
	cookie, sess := a.login(t, ciToken)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" || cookie.Secure {
		t.Fatalf("cookie = %+v, want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", cookie)
	}
	if strings.Contains(cookie.Value, ciToken) || strings.Contains(sess.CSRF, ciToken) {
		t.Fatalf("cookie %q or CSRF %q holds the token", cookie.Value, sess.CSRF)
	}
	if sess.Name != "ci" || sess.Actor() != "dashboard:ci" {
		t.Fatalf("session = %+v, want ci", sess)
	}
	if d := time.Until(sess.Expires); d < SessionTTL-time.Minute || d > SessionTTL {
		t.Fatalf("session expires in %s, want %s", d, SessionTTL)
	}

	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.TLS = &tls.ConnectionState{}
	rec := httptest.NewRecorder()
	if _, err := a.srv.Login(rec, req, testToken); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if c := rec.Result().Cookies(); len(c) != 1 || !c[0].Secure {
		t.Fatalf("cookie over TLS = %+v, want Secure", c)
	}

	rec = httptest.NewRecorder()
	if _, err := a.srv.Login(rec, httptest.NewRequest(http.MethodPost, "/login", nil), "wrong"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("Login with a wrong token = %v, want ErrBadToken", err)
	}
	if c := rec.Result().Cookies(); len(c) != 0 {
		t.Fatalf("a failed login set cookies %v", c)
	}

	rec = httptest.NewRecorder()
	a.srv.Logout(rec, httptest.NewRequest(http.MethodPost, "/logout", nil))
	if c := rec.Result().Cookies(); len(c) != 1 || c[0].Name != SessionCookie || c[0].MaxAge >= 0 {
		t.Fatalf("Logout cookies = %+v, want %s deleted", c, SessionCookie)
	}
}

func TestServer_EmptyAdminTokenRefusesNamedTokens(t *testing.T) {
	srv := NewServer(&fakeController{}, nil, nil, "")
	srv.Tokens = map[string]string{"ci": ciToken}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+ciToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", resp.StatusCode)
	}
}

func TestServer_MetricsToken(t *testing.T) {
	tests := []struct {
		name, header string
		want         int
	}{
		{"none", "", 401},
		{"admin token is not it", "Bearer " + testToken, 401},
		{"wrong", "Bearer nope", 401},
		{"right", "Bearer metrics-secret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthEnv(t)
			a.srv.MetricsToken = "metrics-secret"
			hs := httptest.NewServer(a.srv.Handler())
			t.Cleanup(hs.Close)
			req, _ := http.NewRequest(http.MethodGet, hs.URL+"/metrics", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 200 && !strings.Contains(string(b), "teal_up 1") {
				t.Fatalf("body = %q, want the metrics", b)
			}
		})
	}
}

func TestServer_DashboardMounted(t *testing.T) {
	srv := NewServer(&fakeController{}, nil, nil, testToken)
	srv.Dashboard = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "dashboard "+r.Method+" "+r.URL.Path)
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	tests := []struct{ method, path, want string }{
		{"GET", "/", "dashboard GET /"},
		{"POST", "/login", "dashboard POST /login"},
		{"GET", "/static/app.js", "dashboard GET /static/app.js"},
		{"GET", "/healthz", `"ok": true`},
		{"GET", "/api/v1/status", "unauthorised"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, hs.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), tt.want) {
			t.Fatalf("%s %s = %q, want %q", tt.method, tt.path, b, tt.want)
		}
	}
}
