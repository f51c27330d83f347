// Package sampleapp is the small web shop teal ships inside its binary for `teal demo` and for
// tests: it tells who it is (version, colour, instance), answers health checks, and has knobs,
// set through the environment, that make it misbehave on purpose.
//
// Environment read by New and Run:
//
//	TEAL_COLOR, TEAL_INSTANCE   shown in its answers (injected by teal's local provider)
//	DATABASE_URL                the PostgreSQL database of the /orders routes (injected by teal
//	                            when the database step is on); without it they answer 503
//	REDIS_URL                   the Redis the session routes (/login, /me, /logout) keep
//	                            sessions in, shared by both colours; without it they answer 503
//	SAMPLE_FAIL_HEALTH=1        GET /healthz answers 500, forever
//	SAMPLE_STATUS_ROOT=500      GET / answers with that status
//	SAMPLE_FAIL_FILE=PATH       GET / answers 500 while the file PATH exists: a version whose
//	                            errors start at a moment a test chooses (after a switch, say)
//	SAMPLE_CRASH=1              Run prints a message to stderr and exits the process with status 3
package sampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"teal.dev/teal/sessions"
)

// MaxSlow bounds the delay GET /slow accepts, so a typo cannot hold a connection for hours.
const MaxSlow = 30 * time.Second

// CrashExitCode is the exit status of the process when SAMPLE_CRASH=1.
const CrashExitCode = 3

// ShutdownTimeout is how long Run lets in-flight requests finish once its context ends.
const ShutdownTimeout = 10 * time.Second

// App is the sample app's HTTP handler. The zero value works; New fills it from the
// environment.
//
// Routes:
//
//	GET  /              200 "shop <version> (color <color>, instance <instance>)"
//	GET  /healthz       200 "ok", whatever the database does
//	GET  /version       JSON {"version","color","instance","pid"}
//	GET  /slow?d=1s     waits d (at most MaxSlow, less if the client goes away), then 200 "shop <version>"
//	POST /echo          the request body
//	GET  /ws            WebSocket echo: each message comes back as "<version>: <message>"
//	POST /orders        inserts an order, the body its note: 201 JSON {"id","version"}
//	PUT  /orders/{id}   sets the order's note to the body: 200 JSON Order, or 404
//	GET  /orders/{id}   200 JSON Order, or 404
//	GET  /orders/count  200 JSON {"count"}
//	POST /login         body user=NAME (form-encoded): a session in Redis for SessionTTL and
//	                    cookie sid (HttpOnly); 200 JSON {"user","version","color"}
//	GET  /me            200 JSON {"user","version","color"} for the session of cookie sid;
//	                    401 without one, or for one expired or logged out
//	POST /logout        ends the session of cookie sid and clears the cookie: 204
//
// The /orders routes answer 503 "no database" when DB is nil; the session routes answer 503
// "no session store" when Sessions is nil.
type App struct {
	Version  string
	Color    string // TEAL_COLOR
	Instance string // TEAL_INSTANCE
	// FailHealth makes /healthz answer 500 (SAMPLE_FAIL_HEALTH=1).
	FailHealth bool
	// RootStatus is the status GET / answers; 0 means 200 (SAMPLE_STATUS_ROOT).
	RootStatus int
	// FailFile makes GET / answer 500 while that file exists (SAMPLE_FAIL_FILE).
	FailFile string
	// DB is the database of the /orders routes (DATABASE_URL, connected by Run); nil for none.
	DB *pgxpool.Pool
	// Sessions is the store of the session routes (REDIS_URL, connected by Run); nil for none.
	Sessions *Sessions
}

// New returns the app for version, configured from the environment.
func New(version string) *App {
	a := &App{
		Version:    version,
		Color:      os.Getenv("TEAL_COLOR"),
		Instance:   os.Getenv("TEAL_INSTANCE"),
		FailHealth: os.Getenv("SAMPLE_FAIL_HEALTH") == "1",
		FailFile:   os.Getenv("SAMPLE_FAIL_FILE"),
	}
	if s, err := strconv.Atoi(os.Getenv("SAMPLE_STATUS_ROOT")); err == nil && s >= 100 && s <= 999 {
		a.RootStatus = s
	}
	return a
}

// Run serves the app for version on addr (":$PORT") until ctx ends, then shuts down
// gracefully, letting in-flight requests finish for up to ShutdownTimeout.
func Run(ctx context.Context, addr, version string) error {
	if os.Getenv("SAMPLE_CRASH") == "1" {
		// The knob simulates a broken build: the process itself must die at start with a
		// known status, whatever the caller does with errors, so exit here.
		fmt.Fprintf(os.Stderr, "sampleapp %s: crashing at start (SAMPLE_CRASH=1)\n", version)
		os.Exit(CrashExitCode)
	}
	app := New(version)
	if u := os.Getenv("DATABASE_URL"); u != "" {
		// The pool connects on first use, so the app starts, and answers its health checks,
		// whether or not the database is reachable yet.
		db, err := pgxpool.New(ctx, u)
		if err != nil {
			// pgx masks the password when it quotes the URL.
			return fmt.Errorf("sampleapp database: %w", err)
		}
		defer db.Close()
		app.DB = db
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		// Like the pool, the client connects on first use. sessions.ParseURL's errors
		// redact the password.
		opt, err := sessions.ParseURL(u)
		if err != nil {
			return fmt.Errorf("sampleapp REDIS_URL: %w", err)
		}
		rdb := redis.NewClient(opt)
		defer func() { _ = rdb.Close() }()
		app.Sessions = &Sessions{Client: rdb}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sampleapp listen: %w", err)
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stdout, "sampleapp %s listening on %s\n", version, ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sampleapp serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("sampleapp shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sampleapp serve: %w", err)
	}
	return nil
}

// ServeHTTP routes a request.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		if !allow(w, r, http.MethodGet) {
			return
		}
		status := a.RootStatus
		if status == 0 {
			status = http.StatusOK
		}
		if a.FailFile != "" {
			if _, err := os.Stat(a.FailFile); err == nil {
				status = http.StatusInternalServerError
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "shop %s (color %s, instance %s)\n", a.Version, a.Color, a.Instance)
	case "/healthz":
		if !allow(w, r, http.MethodGet) {
			return
		}
		if a.FailHealth {
			http.Error(w, "unhealthy (SAMPLE_FAIL_HEALTH=1)", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	case "/version":
		if !allow(w, r, http.MethodGet) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"version": a.Version, "color": a.Color, "instance": a.Instance, "pid": os.Getpid(),
		})
	case "/slow":
		if allow(w, r, http.MethodGet) {
			a.slow(w, r)
		}
	case "/echo":
		if !allow(w, r, http.MethodPost) {
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		_, _ = io.Copy(w, r.Body)
	case "/ws":
		if allow(w, r, http.MethodGet) {
			a.ws(w, r)
		}
	case "/orders":
		if allow(w, r, http.MethodPost) {
			a.createOrder(w, r)
		}
	case "/orders/count":
		if allow(w, r, http.MethodGet) {
			a.countOrders(w, r)
		}
	case "/login":
		if allow(w, r, http.MethodPost) {
			a.login(w, r)
		}
	case "/me":
		if allow(w, r, http.MethodGet) {
			a.me(w, r)
		}
	case "/logout":
		if allow(w, r, http.MethodPost) {
			a.logout(w, r)
		}
	default:
		if id, ok := strings.CutPrefix(r.URL.Path, "/orders/"); ok && !strings.Contains(id, "/") {
			a.order(w, r, id)
			return
		}
		http.NotFound(w, r)
	}
}

// allow answers 405 unless r uses method (HEAD counts as GET).
func allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func (a *App) slow(w http.ResponseWriter, r *http.Request) {
	d, err := ParseDelay(r.URL.Query().Get("d"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // the client is gone; nobody reads an answer
	}
	fmt.Fprintf(w, "shop %s\n", a.Version)
}

// ParseDelay parses the d parameter of GET /slow: a Go duration, or empty for none. It is
// refused when negative or over MaxSlow.
func ParseDelay(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("parameter d: %w", err)
	}
	if d < 0 || d > MaxSlow {
		return 0, fmt.Errorf("parameter d: %s is not between 0 and %s", d, MaxSlow)
	}
	return d, nil
}

func (a *App) ws(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has already answered the client
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return // closed by the peer or by server shutdown
		}
		if err := c.Write(ctx, typ, append([]byte(a.Version+": "), msg...)); err != nil {
			return
		}
	}
}
