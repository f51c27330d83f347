// Package dashboard is teal's web page: both colours side by side, the traffic split, the
// release's steps, the history, live over the API's event stream, and the Release, Rollback
// and Abort buttons.
//
// The page is rendered on the server (useful without JavaScript), then a small script keeps it
// live: it listens to GET /api/v1/events and refetches the status. Everything it changes goes
// through the API with the session cookie and the CSRF token; the dashboard itself only logs
// in and out. Templates, script and styles are embedded: the binary serves them, no build step.
package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// Defaults of the Handler's tunables.
const (
	// DefaultMaxLoginFailures is how many failed logins one client address may make per
	// LoginWindow before it must wait.
	DefaultMaxLoginFailures = 5
	// DefaultLoginWindow is the window failed logins are counted in.
	DefaultLoginWindow = time.Minute
	// HistoryLimit is how many releases the history shows.
	HistoryLimit = 10
)

// contentSecurityPolicy allows nothing but this server's own script, styles and API: no
// inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Source is what the page shows; *teal.Controller implements it.
type Source interface {
	Status(ctx context.Context) (*teal.Status, error)
	Releases(ctx context.Context, limit int) ([]*teal.Release, error)
}

// Auth logs users in and out and tells who a request is; *api.Server implements it.
type Auth interface {
	// Login sets the session cookie of token's name, or returns api.ErrBadToken.
	Login(w http.ResponseWriter, r *http.Request, token string) (api.Session, error)
	// Logout clears the session cookie.
	Logout(w http.ResponseWriter, r *http.Request)
	// Session returns r's session when its cookie is valid.
	Session(r *http.Request) (api.Session, bool)
}

var _ Auth = (*api.Server)(nil)

// Handler serves the dashboard: GET / (the login page, or the dashboard once logged in),
// POST /login, POST /logout and the static assets. Create it with New and mount it on the
// admin address (api.Server's Dashboard field).
type Handler struct {
	// Logger receives login failures and render errors; nil discards. Tokens are never logged.
	Logger *slog.Logger
	// MaxLoginFailures is how many failed logins a client address may make per LoginWindow;
	// = DefaultMaxLoginFailures.
	MaxLoginFailures int
	// LoginWindow is the window of MaxLoginFailures; = DefaultLoginWindow.
	LoginWindow time.Duration

	src    Source
	auth   Auth
	pages  *template.Template
	assets map[string]asset // by file name
	mux    *http.ServeMux

	mu       sync.Mutex
	failures map[string]*failureCount // by client address
}

// asset is one embedded static file, served under a name that changes with its content so
// that it can be cached for good.
type asset struct {
	body  []byte
	ctype string
	hash  string
}

type failureCount struct {
	n     int
	since time.Time
}

// New returns the dashboard of src, logging in with auth.
func New(src Source, auth Auth) *Handler {
	h := &Handler{
		MaxLoginFailures: DefaultMaxLoginFailures,
		LoginWindow:      DefaultLoginWindow,
		src:              src,
		auth:             auth,
		assets:           make(map[string]asset),
		failures:         make(map[string]*failureCount),
	}
	files, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	// The embedded files are part of the binary: failing to read them is a build error.
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		h.assets[p] = asset{body: b, ctype: mime.TypeByExtension(path.Ext(p)), hash: hex.EncodeToString(sum[:6])}
		return nil
	})
	h.pages = template.Must(template.New("").Funcs(template.FuncMap{
		"asset": func(name string) (string, error) {
			a, ok := h.assets[name]
			if !ok {
				return "", fmt.Errorf("no static file %q", name)
			}
			return "/static/" + name + "?v=" + a.hash, nil
		},
	}).ParseFS(templateFS, "templates/*.html"))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.index)
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("POST /logout", h.logout)
	mux.HandleFunc("GET /static/{name}", h.static)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 not found: the dashboard is at /", http.StatusNotFound)
	})
	h.mux = mux
	return h
}

// ServeHTTP serves the dashboard's routes with its security headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// index is the dashboard for a logged-in user, else the login page.
func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	sess, ok := h.auth.Session(r)
	if !ok {
		h.render(w, http.StatusOK, "login.html", loginPage{})
		return
	}
	h.render(w, http.StatusOK, "dashboard.html", h.dashboard(r.Context(), sess))
}

// loginPage is what login.html shows.
type loginPage struct {
	Error string
}

// login checks the posted token and sets the session cookie. A page elsewhere may not post
// here (it could log the browser in as someone else), and failures are rate limited per
// client address.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if err := api.CheckOrigin(r); err != nil {
		h.render(w, http.StatusForbidden, "login.html", loginPage{Error: "This login form was posted from another site."})
		return
	}
	client := clientAddr(r)
	if wait := h.loginWait(client); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
		h.render(w, http.StatusTooManyRequests, "login.html",
			loginPage{Error: fmt.Sprintf("Too many failed logins: try again in %s.", wait.Round(time.Second)+time.Second)})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := r.PostFormValue("token")
	sess, err := h.auth.Login(w, r, token)
	if err != nil {
		if !errors.Is(err, api.ErrBadToken) {
			h.log().Error("dashboard login", "err", err)
		}
		h.loginFailed(client)
		h.log().Warn("dashboard login failed", "client", client)
		h.render(w, http.StatusUnauthorized, "login.html", loginPage{Error: "That token is not valid."})
		return
	}
	h.log().Info("dashboard login", "user", sess.Name, "client", client)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout clears the session; it is a state change, so it needs the CSRF token.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if sess, ok := h.auth.Session(r); ok {
		if err := api.CheckCSRF(r, sess); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		h.auth.Logout(w, r)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// static serves an embedded asset: for good when asked with its content hash, else to be
// checked again.
func (h *Handler) static(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == a.hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("ETag", `"`+a.hash+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// render executes a page into a buffer first, so that a template error answers 500 instead of
// half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, name, data); err != nil {
		h.log().Error("render dashboard", "page", name, "err", err)
		http.Error(w, "the dashboard failed to render; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes()) // the client went away: nothing left to tell it
}

// clientAddr is the address failed logins are counted by: the peer's IP.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loginWait returns how long client must wait before it may try again, 0 if it may now.
func (h *Handler) loginWait(client string) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.failures[client]
	if f == nil {
		return 0
	}
	left := h.window() - time.Since(f.since)
	if left <= 0 {
		delete(h.failures, client)
		return 0
	}
	if f.n < h.maxFailures() {
		return 0
	}
	return left
}

func (h *Handler) loginFailed(client string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	// Forget old windows so that the map stays as small as the set of recent failers.
	for k, f := range h.failures {
		if now.Sub(f.since) >= h.window() {
			delete(h.failures, k)
		}
	}
	f := h.failures[client]
	if f == nil {
		f = &failureCount{since: now}
		h.failures[client] = f
	}
	f.n++
}

func (h *Handler) window() time.Duration {
	if h.LoginWindow > 0 {
		return h.LoginWindow
	}
	return DefaultLoginWindow
}

func (h *Handler) maxFailures() int {
	if h.MaxLoginFailures > 0 {
		return h.MaxLoginFailures
	}
	return DefaultMaxLoginFailures
}
