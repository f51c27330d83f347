package sampleapp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// SessionTTL is how long a session lives after POST /login.
const SessionTTL = time.Hour

// SessionCookie is the cookie that carries the session id.
const SessionCookie = "sid"

// MaxUserLen bounds the user name POST /login accepts, in bytes.
const MaxUserLen = 64

// sessionIDLen is the length of a session id: crypto/rand.Text's 26 base32 characters.
const sessionIDLen = 26

// maxLoginBytes bounds the body of POST /login: "user=" and a user name, percent-encoded.
const maxLoginBytes = 1 << 10

// Sessions is the session store of /login, /me and /logout. It keeps nothing in the process:
// every instance of both colours reads the same Redis, so a user logged in on blue is still
// logged in on green after a switch, and on blue again after a rollback.
type Sessions struct {
	// Client is the Redis server (REDIS_URL, connected by Run). Required.
	Client *redis.Client
	// Prefix starts every key: a session is "<Prefix>sess:<id>" → user. "" in production;
	// tests sharing a server use one each.
	Prefix string
	// TTL is the lifetime of a session; = SessionTTL.
	TTL time.Duration
}

func (s *Sessions) key(id string) string { return s.Prefix + "sess:" + id }

func (s *Sessions) ttl() time.Duration {
	if s.TTL <= 0 {
		return SessionTTL
	}
	return s.TTL
}

// sessionAnswer is what /login and /me answer: who the user is, and who answered.
type sessionAnswer struct {
	User    string `json:"user"`
	Version string `json:"version"`
	Color   string `json:"color"`
}

// haveSessions answers 503 and returns false when there is no session store.
func (a *App) haveSessions(w http.ResponseWriter) bool {
	if a.Sessions == nil || a.Sessions.Client == nil {
		http.Error(w, "no session store (set REDIS_URL)", http.StatusServiceUnavailable)
		return false
	}
	return true
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	if !a.haveSessions(w) {
		return
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && r.Header.Get("Content-Type") != "" {
		http.Error(w, "Content-Type: "+err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	switch ct {
	case "", "application/x-www-form-urlencoded", "text/plain":
	default:
		http.Error(w, fmt.Sprintf("Content-Type %q: want application/x-www-form-urlencoded (a body user=NAME)", ct),
			http.StatusUnsupportedMediaType)
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("body over %d bytes: want user=NAME", maxLoginBytes), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	user, err := ParseLogin(string(b))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s := a.Sessions
	id := rand.Text() // 128 random bits: a session id nobody can guess
	if err := s.Client.Set(r.Context(), s.key(id), user, s.ttl()).Err(); err != nil {
		http.Error(w, "session store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: id, Path: "/", MaxAge: int(s.ttl() / time.Second),
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	writeJSON(w, http.StatusOK, sessionAnswer{User: user, Version: a.Version, Color: a.Color})
}

func (a *App) me(w http.ResponseWriter, r *http.Request) {
	if !a.haveSessions(w) {
		return
	}
	id, ok := sessionID(r)
	if !ok {
		http.Error(w, "not logged in: no "+SessionCookie+" cookie", http.StatusUnauthorized)
		return
	}
	user, err := a.Sessions.Client.Get(r.Context(), a.Sessions.key(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		http.Error(w, "not logged in: no such session (expired, or logged out)", http.StatusUnauthorized)
	case err != nil:
		http.Error(w, "session store: "+err.Error(), http.StatusServiceUnavailable)
	default:
		writeJSON(w, http.StatusOK, sessionAnswer{User: user, Version: a.Version, Color: a.Color})
	}
}

func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	if !a.haveSessions(w) {
		return
	}
	if id, ok := sessionID(r); ok {
		if err := a.Sessions.Client.Del(r.Context(), a.Sessions.key(id)).Err(); err != nil {
			http.Error(w, "session store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.WriteHeader(http.StatusNoContent)
}

// sessionID returns the session id of r's cookie, if it has one that could have been made
// by rand.Text: anything else never reaches Redis.
func sessionID(r *http.Request) (string, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || len(c.Value) != sessionIDLen {
		return "", false
	}
	for _, ch := range c.Value {
		if !('A' <= ch && ch <= 'Z' || '2' <= ch && ch <= '7') {
			return "", false
		}
	}
	return c.Value, true
}

// ParseLogin returns the user name of a POST /login body: form-encoded, "user=NAME". The
// name must be 1 to MaxUserLen bytes of printable UTF-8.
func ParseLogin(body string) (string, error) {
	q, err := url.ParseQuery(strings.TrimSpace(body))
	if err != nil {
		return "", fmt.Errorf("body: %w; want user=NAME, form-encoded", err)
	}
	vs, ok := q["user"]
	switch {
	case !ok:
		return "", errors.New("body: no user: want user=NAME, form-encoded")
	case len(vs) > 1:
		return "", fmt.Errorf("body: user given %d times: want it once", len(vs))
	}
	user := vs[0]
	if user == "" || len(user) > MaxUserLen {
		return "", fmt.Errorf("user: %d bytes: want 1 to %d", len(user), MaxUserLen)
	}
	if !utf8.ValidString(user) {
		return "", errors.New("user: not valid UTF-8")
	}
	for _, ch := range user {
		if !unicode.IsPrint(ch) {
			return "", fmt.Errorf("user %q: %U is not printable", user, ch)
		}
	}
	return user, nil
}
