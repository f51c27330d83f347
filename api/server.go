package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"teal.dev/teal"
)

// Defaults of the Server's tunables.
const (
	// DefaultHeartbeat is how often an idle event stream gets a comment line, so that
	// proxies and clients can tell a quiet stream from a dead one.
	DefaultHeartbeat = 15 * time.Second
	// DefaultLogPoll is how often a followed log file is checked for growth.
	DefaultLogPoll = 250 * time.Millisecond
	// DefaultMaxArtifactSize caps an artifact upload, in bytes.
	DefaultMaxArtifactSize = 4 << 30
	// DefaultReleasesLimit is how many releases GET /api/v1/releases answers without ?limit.
	DefaultReleasesLimit = 20
	// MaxReleasesLimit caps ?limit.
	MaxReleasesLimit = 1000
	// AdminActor is the actor recorded for calls made with the admin token.
	AdminActor = "api:admin"
)

// maxJSONBody caps a JSON request body: they are all tiny.
const maxJSONBody = 1 << 20

// Server serves the API of spec/api.md for one controller. Create it with NewServer, mount
// Handler on the admin address, and call Close before shutting the http.Server down so that
// long-lived streams (events, followed logs) end.
type Server struct {
	// Logger receives request errors; nil discards. The token is never logged.
	Logger *slog.Logger
	// Controller is the controller the API drives. Required.
	Controller Controller
	// Artifacts stores uploaded artifacts; nil answers 501 on the artifact routes.
	Artifacts ArtifactStore
	// Logs finds instance output; nil answers 501 on the logs route.
	Logs LogSource
	// LogStreams, when set, streams instance output instead of Logs (pods' logs from the
	// Kubernetes API).
	LogStreams LogStreamer
	// Token is the admin bearer token; every /api/ call must present it, a token of Tokens,
	// or a dashboard session. Empty refuses every call: an API without a token is never open
	// by accident.
	Token string
	// Tokens are more bearer tokens, name → token (LoadTokens); each acts as api:NAME, and
	// logs in to the dashboard as dashboard:NAME. = nil (only the admin token).
	Tokens map[string]string
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
	// MetricsToken, when set, is the bearer token GET /metrics requires. = "" (open).
	MetricsToken string
	// Dashboard serves every path outside /api/, /healthz and /metrics (the web page, its
	// login and its assets); nil serves a plain page that points at the API.
	Dashboard http.Handler
	// Heartbeat is the comment interval of the event stream; = DefaultHeartbeat.
	Heartbeat time.Duration
	// LogPoll is the growth check interval of a followed log; = DefaultLogPoll.
	LogPoll time.Duration
	// MaxArtifactSize caps an upload in bytes; = DefaultMaxArtifactSize, 0 means no cap.
	MaxArtifactSize int64

	done      chan struct{}
	closeOnce sync.Once
}

// NewServer returns a Server for ctl. arts and logs may be nil (their routes answer 501);
// token is the admin token.
func NewServer(ctl Controller, arts ArtifactStore, logs LogSource, token string) *Server {
	return &Server{
		Controller:      ctl,
		Artifacts:       arts,
		Logs:            logs,
		Token:           token,
		Heartbeat:       DefaultHeartbeat,
		LogPoll:         DefaultLogPoll,
		MaxArtifactSize: DefaultMaxArtifactSize,
		done:            make(chan struct{}),
	}
}

// Close ends every open event stream and followed log; http.Server.Shutdown waits for
// handlers, and those would otherwise run until their clients go. It is safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Handler returns the routes of spec/api.md, and the Dashboard's.
func (s *Server) Handler() http.Handler {
	v1 := http.NewServeMux()
	v1.Handle("GET /api/v1/status", s.handle(s.status))
	v1.Handle("GET /api/v1/artifacts", s.handle(s.listArtifacts))
	v1.Handle("POST /api/v1/artifacts", s.handle(s.pushArtifact))
	v1.Handle("POST /api/v1/releases", s.handle(s.deploy))
	v1.Handle("GET /api/v1/releases", s.handle(s.releases))
	v1.Handle("GET /api/v1/releases/{id}", s.handle(s.release))
	v1.Handle("POST /api/v1/releases/current/promote", s.handle(s.promote))
	v1.Handle("POST /api/v1/releases/current/abort", s.handle(s.abort))
	v1.Handle("POST /api/v1/rollback", s.handle(s.rollback))
	v1.Handle("POST /api/v1/pause", s.handle(s.pause))
	v1.Handle("POST /api/v1/resume", s.handle(s.resume))
	v1.Handle("POST /api/v1/maintenance", s.handle(s.maintenance))
	v1.Handle("GET /api/v1/instances", s.handle(s.instances))
	v1.HandleFunc("GET /api/v1/events", s.events)
	v1.HandleFunc("GET /api/v1/instances/{color}/{n}/logs", s.logs)
	// Anything else under /api/ answers JSON too, so that clients always get {"error"}.
	v1.Handle("/api/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return httpError(http.StatusNotFound, "see spec/api.md for the routes", "no route %s %s", r.Method, r.URL.Path)
	}))

	mux := http.NewServeMux()
	mux.Handle("/api/", s.authenticate(v1))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	if s.Metrics != nil {
		m := s.Metrics
		if s.MetricsToken != "" {
			m = s.requireMetricsToken(m)
		}
		mux.Handle("GET /metrics", m)
	}
	if s.Dashboard != nil {
		mux.Handle("/", s.Dashboard)
	} else {
		mux.HandleFunc("GET /{$}", s.index)
	}
	return mux
}

// index is the page of a server without a dashboard.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.WriteString(w, `<!doctype html>
<title>teal</title>
<p>teal: this server has no dashboard.
<p>The API answers at <a href="/api/v1/status">/api/v1/status</a> (with the admin token).
`)
}

type actorKey struct{}

// actorOf returns the actor authenticate recorded for r.
func actorOf(r *http.Request) string {
	if a, ok := r.Context().Value(actorKey{}).(string); ok {
		return a
	}
	return AdminActor
}

// bearer extracts the token of an "Authorization: Bearer TOKEN" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// validActor accepts "cli:<user>": short, printable, and nothing a log or event reader could
// mistake for something else.
func validActor(a string) bool {
	name, ok := strings.CutPrefix(a, "cli:")
	if !ok || name == "" || len(a) > 100 {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// handle adapts a handler that returns an error, answering it as JSON.
func (s *Server) handle(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// writeError answers err as {"error","hint"} with the status its sentinel stands for.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		status = http.StatusRequestEntityTooLarge
	}
	lvl := slog.LevelDebug
	if status >= 500 {
		lvl = slog.LevelError
	}
	s.log().Log(r.Context(), lvl, "api error", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	writeJSON(w, status, ErrorBody{Error: err.Error(), Hint: hintOf(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing left to tell it
}

// decodeJSON reads a small JSON body into v; an empty body leaves v as it is.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return httpError(http.StatusBadRequest, "", "decode request body: %v", err)
	}
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	st, err := s.Controller.Status(r.Context())
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var body DeployBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	if body.Version == "" {
		return httpError(http.StatusBadRequest, `send {"version": "v2"}`, "deploy: no version given")
	}
	rel, err := s.Controller.Deploy(r.Context(), teal.DeployRequest{Version: body.Version, Actor: actorOf(r)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rel)
	return nil
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) error {
	var body PromoteBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	promote := s.Controller.Promote
	if body.Full {
		tc, err := s.traffic()
		if err != nil {
			return err
		}
		promote = tc.PromoteFull
	}
	rel, err := promote(r.Context(), actorOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request) error {
	rel, err := s.Controller.Abort(r.Context(), actorOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

// rollback answers the release that was rolled back, or null when traffic moved back without
// one (the controller's Rollback may return neither a release nor an error).
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) error {
	var body RollbackBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	rel, err := s.Controller.Rollback(r.Context(), teal.RollbackRequest{Force: body.Force, Actor: actorOf(r)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

func (s *Server) releases(w http.ResponseWriter, r *http.Request) error {
	limit := DefaultReleasesLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxReleasesLimit {
			return httpError(http.StatusBadRequest, "", "limit %q: want 1 to %d", v, MaxReleasesLimit)
		}
		limit = n
	}
	rels, err := s.Controller.Releases(r.Context(), limit)
	if err != nil {
		return fmt.Errorf("list releases: %w", err)
	}
	if rels == nil {
		rels = []*teal.Release{}
	}
	writeJSON(w, http.StatusOK, rels)
	return nil
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return httpError(http.StatusBadRequest, "", "release id %q: want a positive integer", r.PathValue("id"))
	}
	rel, evs, err := s.Controller.Release(r.Context(), id)
	if err != nil {
		return fmt.Errorf("release #%d: %w", id, err)
	}
	if evs == nil {
		evs = []*teal.Event{}
	}
	writeJSON(w, http.StatusOK, ReleaseDetail{Release: rel, Events: evs})
	return nil
}

func (s *Server) instances(w http.ResponseWriter, r *http.Request) error {
	st, err := s.Controller.Status(r.Context())
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	writeJSON(w, http.StatusOK, instancesOf(st))
	return nil
}

// instancesOf flattens both colours' instances, each with its latest health.
func instancesOf(st *teal.Status) []InstanceStatus {
	out := []InstanceStatus{}
	for _, env := range st.Environments {
		for _, in := range env.Instances {
			is := InstanceStatus{Instance: in, Version: env.Version}
			for _, h := range env.Health {
				if h.Index == in.Index {
					is.Healthy, is.LastError = h.Healthy, h.LastError
				}
			}
			out = append(out, is)
		}
	}
	return out
}

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request) error {
	if s.Artifacts == nil {
		return httpError(http.StatusNotImplemented, "", "this server stores no artifacts")
	}
	arts, err := s.Artifacts.List(r.Context())
	if err != nil {
		return fmt.Errorf("list artifacts: %w", err)
	}
	if arts == nil {
		arts = []*teal.Artifact{}
	}
	writeJSON(w, http.StatusOK, arts)
	return nil
}

// pushArtifact stores the body as version's artifact: a tar stream of a directory when sent
// as application/x-tar, else the single file ?name=; or, with ?image=REF@sha256:…, that
// image reference (no body). 201 when stored, 200 when the same digest was already stored
// under that version.
func (s *Server) pushArtifact(w http.ResponseWriter, r *http.Request) error {
	if s.Artifacts == nil {
		return httpError(http.StatusNotImplemented, "", "this server stores no artifacts")
	}
	q := r.URL.Query()
	version := q.Get("version")
	if version == "" {
		return httpError(http.StatusBadRequest, "teal artifact push PATH --version V", "push artifact: no version given")
	}
	body := r.Body
	if s.MaxArtifactSize > 0 {
		body = http.MaxBytesReader(w, r.Body, s.MaxArtifactSize)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		art     *teal.Artifact
		created bool
		err     error
	)
	if ref := q.Get("image"); ref != "" {
		art, created, err = s.Artifacts.PushImage(r.Context(), version, ref)
	} else if mt == TarType {
		art, created, err = s.Artifacts.PushTar(r.Context(), version, body)
	} else {
		// The store names the file when name is empty, and checks it too; a path never gets
		// that far.
		name := q.Get("name")
		if name != "" && (name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, `/\`)) {
			return httpError(http.StatusBadRequest, "", "artifact name %q: want a plain file name", name)
		}
		art, created, err = s.Artifacts.PushFile(r.Context(), version, name, body)
	}
	if err != nil {
		return fmt.Errorf("push artifact %s: %w", version, err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, art)
	return nil
}
