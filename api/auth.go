package api

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Names and limits of the authentication.
const (
	// AdminName is the name the admin token acts as: api:admin, dashboard:admin.
	AdminName = "admin"
	// MinTokenLength is the shortest token a tokens file may hold.
	MinTokenLength = 16
	// SessionCookie is the dashboard's session cookie.
	SessionCookie = "teal_session"
	// SessionTTL is how long a dashboard login lasts.
	SessionTTL = 12 * time.Hour
	// CSRFHeader carries the session's CSRF token on a state-changing call from the page.
	CSRFHeader = "X-CSRF-Token"
	// CSRFField carries it in a posted form instead.
	CSRFField = "csrf"
)

// ErrBadToken is what Login returns for a token that is not the admin token nor a named one.
var ErrBadToken = errors.New("unknown token")

// Session is a dashboard login, as its signed cookie says. Sessions are stateless: the cookie
// holds the name and the expiry, signed with a key derived from the admin token and the
// name's own token, so that a restart keeps them and a changed token ends them.
type Session struct {
	// Name is the token's name: AdminName or a name from the tokens file.
	Name string
	// Expires is when the login ends.
	Expires time.Time
	// CSRF is the token every state-changing request of this session must carry, in the
	// X-CSRF-Token header or the csrf form field. It is an HMAC of the cookie: safe to put in
	// the page, useless without the cookie.
	CSRF string
}

// Actor is who a session's calls are recorded as: "dashboard:NAME".
func (s Session) Actor() string { return "dashboard:" + s.Name }

// LoadTokens reads a tokens file: one "NAME TOKEN" per line, # comments and blank lines
// allowed. It returns name → token.
func LoadTokens(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens_file: %w", err)
	}
	defer func() { _ = f.Close() }()
	return ParseTokens(f, path)
}

// ParseTokens parses the tokens file format of LoadTokens from r; file names it in errors.
// Errors name the file and line and never include a token.
func ParseTokens(r io.Reader, file string) (map[string]string, error) {
	tokens := make(map[string]string)
	nameLine := make(map[string]int)
	tokenName := make(map[string]string)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var errs []error
	fail := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", file, n, fmt.Sprintf(format, args...)))
	}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			// The fields may be tokens: say how many, never what.
			fail(n, "%d fields, want NAME TOKEN", len(f))
			continue
		}
		name, tok := f[0], f[1]
		if !validName(name) {
			fail(n, "%s: want lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64", showName(name))
			continue
		}
		if name == AdminName {
			fail(n, "name %q is the admin token's: choose another", name)
			continue
		}
		if prev, ok := nameLine[name]; ok {
			fail(n, "%s again (first on line %d)", showName(name), prev)
			continue
		}
		if len(tok) < MinTokenLength {
			fail(n, "the token of %s has %d characters, want at least %d", showName(name), len(tok), MinTokenLength)
			continue
		}
		if other, ok := tokenName[tok]; ok {
			fail(n, "the token of %s is also the token of %s (line %d): every name needs its own", showName(name), showName(other), nameLine[other])
			continue
		}
		tokens[name], nameLine[name], tokenName[tok] = tok, n, name
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return tokens, nil
}

// validName accepts [a-z0-9][a-z0-9._-]*, at most 64 characters: it is shown and recorded.
func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// showName quotes a name for an error, unless it is as long as a token could be: a line
// written TOKEN NAME by mistake must not print the token.
func showName(name string) string {
	if len(name) >= MinTokenLength {
		return fmt.Sprintf("a name of %d characters", len(name))
	}
	return fmt.Sprintf("name %q", name)
}

// identify returns the name of tok: AdminName for the admin token, else its name in Tokens.
// Every known token is compared, by digest, so the time taken says nothing about which
// matched or how much of one did.
func (s *Server) identify(tok string) (string, bool) {
	got := sha256.Sum256([]byte(tok))
	match := func(known string) bool {
		want := sha256.Sum256([]byte(known))
		return known != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1
	}
	found := ""
	if match(s.Token) {
		found = AdminName
	}
	for name, known := range s.Tokens {
		if match(known) && found == "" {
			found = name
		}
	}
	return found, found != "" && s.Token != ""
}

// tokenOf returns the token name stands for now.
func (s *Server) tokenOf(name string) (string, bool) {
	if name == AdminName {
		return s.Token, s.Token != ""
	}
	tok, ok := s.Tokens[name]
	return tok, ok && s.Token != ""
}

// sessionKey is the key that signs name's sessions: derived from the admin token, so that a
// new admin token ends every session, and from name's own token, so that a changed or removed
// named token ends that name's.
func (s *Server) sessionKey(name string) ([]byte, bool) {
	tok, ok := s.tokenOf(name)
	if !ok {
		return nil, false
	}
	m := hmac.New(sha256.New, []byte(s.Token))
	m.Write([]byte("teal dashboard session v1\x00" + name + "\x00" + tok))
	return m.Sum(nil), true
}

func mac(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// Login checks token and, when it is the admin token or a named one, sets the session
// cookie of that name. The cookie is Secure only when r came over TLS: the admin address is
// often plain HTTP on loopback, where a Secure cookie would never come back.
func (s *Server) Login(w http.ResponseWriter, r *http.Request, token string) (Session, error) {
	name, ok := s.identify(token)
	if !ok {
		return Session{}, ErrBadToken
	}
	key, _ := s.sessionKey(name)
	exp := time.Now().Add(SessionTTL).Truncate(time.Second)
	payload := name + ":" + strconv.FormatInt(exp.Unix(), 10)
	value := payload + ":" + b64.EncodeToString(mac(key, "session", payload))
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    value,
		Path:     "/",
		Expires:  exp,
		MaxAge:   int(SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	return Session{Name: name, Expires: exp, CSRF: csrfOf(key, value)}, nil
}

// Logout clears the session cookie. The session itself stays valid until it expires (it is
// stateless): the browser just forgets it.
func (s *Server) Logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

// Session returns r's dashboard session, when its cookie is valid and unexpired.
func (s *Server) Session(r *http.Request) (Session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return Session{}, false
	}
	return s.parseSession(c.Value, time.Now())
}

func (s *Server) parseSession(value string, now time.Time) (Session, bool) {
	payload, sig, ok := cutLast(value, ":")
	if !ok {
		return Session{}, false
	}
	name, expS, ok := strings.Cut(payload, ":")
	if !ok || !validName(name) {
		return Session{}, false
	}
	key, ok := s.sessionKey(name)
	if !ok {
		return Session{}, false
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(key, "session", payload)) {
		return Session{}, false
	}
	unix, err := strconv.ParseInt(expS, 10, 64)
	if err != nil {
		return Session{}, false
	}
	exp := time.Unix(unix, 0)
	if !now.Before(exp) {
		return Session{}, false
	}
	return Session{Name: name, Expires: exp, CSRF: csrfOf(key, value)}, true
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func csrfOf(key []byte, cookie string) string {
	return b64.EncodeToString(mac(key, "csrf", cookie))
}

// CheckCSRF returns nil when r, a request made with sess's cookie, may change state: a GET or
// HEAD; or it carries sess's CSRF token (X-CSRF-Token, or the csrf field of a posted form) and
// its Origin (or, without one, its Referer) — when present — is r's own host. Else it
// returns a 403 *Error.
func CheckCSRF(r *http.Request, sess Session) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if err := CheckOrigin(r); err != nil {
		return err
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" && isForm(r) {
		got = r.PostFormValue(CSRFField)
	}
	if got == "" {
		return httpError(http.StatusForbidden, "the dashboard sends it in "+CSRFHeader+"; reload the page",
			"forbidden: no CSRF token")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		return httpError(http.StatusForbidden, "reload the page: the session changed", "forbidden: wrong CSRF token")
	}
	return nil
}

// CheckOrigin returns nil when r's Origin header (or, without one, its Referer) is absent or
// names r's own host, else a 403 *Error: a page elsewhere may not post here.
func CheckOrigin(r *http.Request) error {
	from, hdr := r.Header.Get("Origin"), "Origin"
	if from == "" {
		from, hdr = r.Header.Get("Referer"), "Referer"
	}
	if from == "" {
		return nil
	}
	u, err := url.Parse(from)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return httpError(http.StatusForbidden, "post from the dashboard's own page",
			"forbidden: %s %q is not this server (%s)", hdr, from, r.Host)
	}
	return nil
}

func isForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

// authenticate lets through only calls with a known bearer token, or with a dashboard
// session cookie (and, when they change anything, its CSRF token from this origin), and
// records who acts.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		actor, err := s.actor(r)
		if err != nil {
			if statusOf(err) == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="teal"`)
			}
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	})
}

// actor returns who r acts as, or why it may not act.
func (s *Server) actor(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		// A bearer token is no ambient credential: a page elsewhere cannot make the browser
		// send it, so it needs no CSRF token. A wrong one is refused even with a cookie.
		tok, ok := bearer(h)
		name, known := s.identify(tok)
		if !ok || !known {
			return "", errUnauthorised()
		}
		if name != AdminName {
			// The token says who acts; a header cannot claim otherwise.
			return "api:" + name, nil
		}
		if a := r.Header.Get(ActorHeader); validActor(a) {
			return a, nil
		}
		return AdminActor, nil
	}
	if sess, ok := s.Session(r); ok {
		if err := CheckCSRF(r, sess); err != nil {
			return "", err
		}
		return sess.Actor(), nil
	}
	return "", errUnauthorised()
}

func errUnauthorised() *Error {
	return httpError(http.StatusUnauthorized,
		"pass the admin token (--token, $TEAL_TOKEN, or the config's admin_token_file) or a token of the tokens_file",
		"unauthorised: missing or wrong token")
}

// requireMetricsToken guards GET /metrics with the metrics token.
func (s *Server) requireMetricsToken(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.MetricsToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r.Header.Get("Authorization"))
		got := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="teal metrics"`)
			s.writeError(w, r, httpError(http.StatusUnauthorized, "pass the config's metrics_token as a bearer token",
				"unauthorised: missing or wrong metrics token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
