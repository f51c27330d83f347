package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"teal.dev/teal"
)

// Defaults of ShadowConfig.
const (
	// DefaultShadowMaxBody is how much of each body a body comparison reads.
	DefaultShadowMaxBody = 1 << 20
	// DefaultShadowConcurrency is how many mirrors may be in flight at once.
	DefaultShadowConcurrency = 64
	// DefaultShadowTimeout bounds one mirror, answer and body included.
	DefaultShadowTimeout = 10 * time.Second
	// ShadowExamples is how many distinct method and path pairs a ShadowReport gives as
	// examples of mismatches.
	ShadowExamples = 10
)

// Shadow comparison modes.
const (
	CompareStatus = "status"
	CompareBody   = "body"
)

// ShadowHeader is the request header every mirrored request carries, so that the idle colour
// (and its logs) can tell a mirror from a real request.
const ShadowHeader = "X-Teal-Shadow"

// shadowPrefix is how much of the live body a body comparison keeps as it is, to say at which
// byte the bodies differ; beyond it only the hash tells.
const shadowPrefix = 1024

// ShadowConfig configures shadow traffic (verify.shadow): mirrors of live requests sent to
// the idle colour, whose answers are compared with the live ones.
type ShadowConfig struct {
	// Percent of the eligible live requests to mirror, more than 0 and at most 100. The
	// choice is by an exact counter, not at random: 10 mirrors every tenth request.
	Percent float64
	// Compare is what must match: CompareStatus (the status code; = when empty) or
	// CompareBody (the status and the first MaxBody bytes of the body, by SHA-256).
	Compare string
	// Methods are the methods mirrored, upper case. = GET, HEAD. A request with a body is
	// never mirrored, whatever its method, and neither is an upgrade.
	Methods []string
	// MaxBody is how many bytes of each body a body comparison reads. = DefaultShadowMaxBody.
	MaxBody int64
	// Concurrency caps the mirrors in flight; a request chosen beyond it is not mirrored
	// and is counted as skipped. = DefaultShadowConcurrency.
	Concurrency int
	// Timeout bounds each mirror; one that takes longer counts as an error.
	// = DefaultShadowTimeout.
	Timeout time.Duration
}

// ShadowReport is what shadow traffic found so far.
type ShadowReport struct {
	Mirrored   int64 // mirrors sent
	Compared   int64 // mirrors answered and compared with the live answer
	Mismatches int64 // compared, and different
	Errors     int64 // mirrors that got no answer: unreachable, broken off or timed out
	Skipped    int64 // requests chosen but not mirrored, the Concurrency cap being reached
	// MismatchRate is (Mismatches + Errors) / (Compared + Errors): a colour that does not
	// answer is as wrong as one that answers wrongly. 0 before any mirror ended.
	MismatchRate float64
	// Examples are the first ShadowExamples distinct method and path pairs that mismatched
	// or failed, in the order first seen.
	Examples []ShadowMismatch
}

// ShadowMismatch is one method and path whose mirrors differed from the live answers.
type ShadowMismatch struct {
	Method       string
	Path         string
	LiveStatus   int    // of the first mismatch
	ShadowStatus int    // of the first mismatch; 0 when the mirror got no answer
	Note         string // what differed, or the mirror's error
	Count        int64  // mismatches and errors of this method and path
}

// StartShadow begins mirroring live production requests to colour to, per cfg, until
// StopShadow. Mirrors are sent after the live response is complete, from their own goroutine,
// to to's backends of that moment, with the header X-Teal-Shadow: 1; they never delay or
// change a live answer and are not counted by Stats, Drain, analysis or the request metrics
// (teal_shadow_requests_total counts them). A live request routed to to itself is not
// mirrored. It fails with teal.ErrInvalid for a bad cfg or colour, and teal.ErrConflict when
// shadow traffic is already running.
func (r *Router) StartShadow(cfg ShadowConfig, to teal.Color) error {
	if !to.Valid() {
		return fmt.Errorf("start shadow: colour %q: %w", to, teal.ErrInvalid)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("start shadow: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &shadow{
		r:          r,
		cfg:        cfg,
		to:         colorIndex(to),
		millionths: uint64(cfg.Percent*10000 + 0.5),
		ctx:        ctx,
		cancel:     cancel,
		examples:   make(map[string]int),
	}
	if !r.shadow.CompareAndSwap(nil, s) {
		cancel()
		return fmt.Errorf("start shadow to %s: shadow traffic is already running: %w", to, teal.ErrConflict)
	}
	r.logger().Info("shadow traffic started", "color", to, "percent", cfg.Percent, "compare", cfg.Compare)
	return nil
}

// StopShadow stops mirroring and returns the final report. Mirrors still in flight are
// abandoned and not counted. Without shadow traffic running it returns an empty report.
func (r *Router) StopShadow() ShadowReport {
	s := r.shadow.Swap(nil)
	if s == nil {
		return ShadowReport{}
	}
	s.stopped.Store(true)
	s.cancel()
	rep := s.report()
	r.logger().Info("shadow traffic stopped", "color", colorName(s.to), "mirrored", rep.Mirrored,
		"mismatches", rep.Mismatches, "errors", rep.Errors)
	return rep
}

// ShadowReport returns what the running shadow traffic found so far; an empty report when
// none is running.
func (r *Router) ShadowReport() ShadowReport {
	s := r.shadow.Load()
	if s == nil {
		return ShadowReport{}
	}
	return s.report()
}

// withDefaults fills in cfg's defaults and checks it.
func (cfg ShadowConfig) withDefaults() (ShadowConfig, error) {
	if !(cfg.Percent > 0 && cfg.Percent <= 100) {
		return cfg, fmt.Errorf("shadow percent %v: want more than 0 and at most 100: %w", cfg.Percent, teal.ErrInvalid)
	}
	switch cfg.Compare {
	case "":
		cfg.Compare = CompareStatus
	case CompareStatus, CompareBody:
	default:
		return cfg, fmt.Errorf("shadow compare %q: want %q or %q: %w", cfg.Compare, CompareStatus, CompareBody, teal.ErrInvalid)
	}
	if len(cfg.Methods) == 0 {
		cfg.Methods = []string{http.MethodGet, http.MethodHead}
	}
	for _, m := range cfg.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t\r\n/()<>@,;:\\\"[]?={}") {
			return cfg, fmt.Errorf("shadow method %q: want an upper-case HTTP method such as GET: %w", m, teal.ErrInvalid)
		}
	}
	cfg.Methods = slices.Clone(cfg.Methods)
	switch {
	case cfg.MaxBody < 0:
		return cfg, fmt.Errorf("shadow max body %d: want 0 or more: %w", cfg.MaxBody, teal.ErrInvalid)
	case cfg.MaxBody == 0:
		cfg.MaxBody = DefaultShadowMaxBody
	}
	switch {
	case cfg.Concurrency < 0:
		return cfg, fmt.Errorf("shadow concurrency %d: want 0 or more: %w", cfg.Concurrency, teal.ErrInvalid)
	case cfg.Concurrency == 0:
		cfg.Concurrency = DefaultShadowConcurrency
	}
	switch {
	case cfg.Timeout < 0:
		return cfg, fmt.Errorf("shadow timeout %v: want 0 or more: %w", cfg.Timeout, teal.ErrInvalid)
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultShadowTimeout
	}
	return cfg, nil
}

// Results of mirrors, the label values of teal_shadow_requests_total.
const (
	shadowMatch = iota
	shadowMismatch
	shadowError
	shadowSkipped
	shadowResults
)

var shadowResultNames = [shadowResults]string{"match", "mismatch", "error", "skipped"}

// shadow is one run of shadow traffic, from StartShadow to StopShadow.
type shadow struct {
	r          *Router
	cfg        ShadowConfig
	to         int
	millionths uint64 // cfg.Percent in millionths of the eligible requests
	ctx        context.Context
	cancel     context.CancelFunc
	stopped    atomic.Bool

	seq      atomic.Uint64 // eligible requests seen
	inFlight atomic.Int64  // mirrors chosen and not yet done

	mirrored, compared, mismatches, errors, skipped atomic.Int64

	mu       sync.Mutex
	list     []ShadowMismatch
	examples map[string]int // method and path → index in list
}

// choose decides whether the live request req, routed to colour c, is mirrored, and if so
// returns its mirror. It is on the hot path while shadow traffic runs: the requests not
// chosen cost a few comparisons and an atomic add.
func (s *shadow) choose(req *http.Request, c int) *mirror {
	if c == s.to || req.ContentLength != 0 || !slices.Contains(s.cfg.Methods, req.Method) ||
		len(req.Header["Upgrade"]) > 0 {
		return nil
	}
	// The n-th eligible request is chosen when the running quota crosses an integer at n,
	// as spread does for the split: exact, and evenly spaced.
	n := s.seq.Add(1)
	if n*s.millionths/1e6 == (n-1)*s.millionths/1e6 {
		return nil
	}
	if s.inFlight.Add(1) > int64(s.cfg.Concurrency) {
		s.inFlight.Add(-1)
		s.skipped.Add(1)
		s.r.shadowCounts[shadowSkipped].Add(1)
		return nil
	}
	m := &mirror{s: s, req: s.outbound(req), method: req.Method, path: req.URL.Path}
	if s.cfg.Compare == CompareBody && req.Method != http.MethodHead {
		m.hash = sha256.New()
		m.max = s.cfg.MaxBody
	}
	return m
}

// outbound builds the mirror's request from the live one while the handler still owns it:
// the same method, path, query, Host and end-to-end headers, the X-Forwarded-* headers the
// router sets, and X-Teal-Shadow. Its target is filled in when it is sent.
func (s *shadow) outbound(in *http.Request) *http.Request {
	out := in.Clone(s.ctx)
	out.Body = nil
	out.ContentLength = 0
	out.RequestURI = ""
	out.URL = &url.URL{Scheme: "http", Path: in.URL.Path, RawPath: in.URL.RawPath, RawQuery: in.URL.RawQuery}
	out.Close = false
	h := out.Header
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		h.Del(name)
	}
	(&httputil.ProxyRequest{In: in, Out: out}).SetXForwarded()
	h.Set(ShadowHeader, "1")
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // as ReverseProxy: no Go default User-Agent
	}
	return out
}

// mirror is one mirrored request: the live answer as it streams, then the mirror's.
type mirror struct {
	s      *shadow
	req    *http.Request
	method string
	path   string

	// The live body, for a body comparison (hash is nil otherwise).
	hash   hash.Hash
	max    int64
	n      int64 // live body bytes seen, up to max
	prefix []byte
}

// capture tees the live body, up to max bytes, as the recorder writes it.
func (m *mirror) capture(p []byte) {
	if m.hash == nil || m.n >= m.max {
		return
	}
	if rest := m.max - m.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	m.hash.Write(p)
	if len(m.prefix) < shadowPrefix {
		k := min(len(p), shadowPrefix-len(m.prefix))
		m.prefix = append(m.prefix, p[:k]...)
	}
	m.n += int64(len(p))
}

// abandon gives the mirror's place back without sending it.
func (m *mirror) abandon() { m.s.inFlight.Add(-1) }

// send sends the mirror and compares its answer with the live status and body; it runs on
// its own goroutine, after the live response is complete.
func (m *mirror) send(liveStatus int) {
	s := m.s
	defer s.inFlight.Add(-1)
	if s.stopped.Load() {
		return
	}
	s.mirrored.Add(1)
	p := s.r.table.Load().pools[s.to]
	if p == nil {
		m.record(shadowError, liveStatus, 0, "no healthy backend for "+colorName(s.to))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req := m.req.WithContext(ctx)
	req.URL.Host = p.backends[p.pick()].addr
	res, err := s.r.Transport.RoundTrip(req)
	if err != nil {
		m.record(shadowError, liveStatus, 0, err.Error())
		return
	}
	defer res.Body.Close()
	if res.StatusCode != liveStatus {
		m.record(shadowMismatch, liveStatus, res.StatusCode,
			fmt.Sprintf("status %d, live %d", res.StatusCode, liveStatus))
		return
	}
	if m.hash == nil {
		m.record(shadowMatch, liveStatus, res.StatusCode, "")
		return
	}
	note, err := m.compareBody(res.Body)
	switch {
	case err != nil:
		m.record(shadowError, liveStatus, res.StatusCode, "reading the body: "+err.Error())
	case note != "":
		m.record(shadowMismatch, liveStatus, res.StatusCode, note)
	default:
		m.record(shadowMatch, liveStatus, res.StatusCode, "")
	}
}

// compareBody reads up to max bytes of the mirror's body and compares them with the live
// body's: "" when they are the same, else what differs.
func (m *mirror) compareBody(body io.Reader) (string, error) {
	h := sha256.New()
	var prefix bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &limitedBuffer{b: &prefix, max: shadowPrefix}), io.LimitReader(body, m.max))
	if err != nil {
		return "", err
	}
	if n == m.n && bytes.Equal(h.Sum(nil), m.hash.Sum(nil)) {
		return "", nil
	}
	sp, lp := prefix.Bytes(), m.prefix
	for i := 0; i < min(len(sp), len(lp)); i++ {
		if sp[i] != lp[i] {
			return fmt.Sprintf("body differs at byte %d", i), nil
		}
	}
	if n != m.n && (len(sp) < shadowPrefix || len(lp) < shadowPrefix) {
		// One body is the other's beginning.
		return fmt.Sprintf("body differs at byte %d (%d bytes, live %d)", min(n, m.n), n, m.n), nil
	}
	return fmt.Sprintf("body differs after byte %d (%d bytes, live %d)", shadowPrefix, n, m.n), nil
}

// limitedBuffer keeps the first max bytes written to it and accepts the rest unkept.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if rest := l.max - l.b.Len(); rest > 0 {
		l.b.Write(p[:min(len(p), rest)])
	}
	return len(p), nil
}

// record counts the mirror's result, and keeps an example of a mismatch or error.
func (m *mirror) record(result, liveStatus, shadowStatus int, note string) {
	s := m.s
	if s.stopped.Load() {
		return // StopShadow came first: the report is final
	}
	s.r.shadowCounts[result].Add(1)
	switch result {
	case shadowMatch:
		s.compared.Add(1)
		return
	case shadowMismatch:
		s.compared.Add(1)
		s.mismatches.Add(1)
	case shadowError:
		s.errors.Add(1)
	}
	key := m.method + " " + m.path
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.examples[key]; ok {
		s.list[i].Count++
		return
	}
	if len(s.list) >= ShadowExamples {
		return
	}
	s.examples[key] = len(s.list)
	s.list = append(s.list, ShadowMismatch{Method: m.method, Path: m.path, LiveStatus: liveStatus,
		ShadowStatus: shadowStatus, Note: note, Count: 1})
}

// report returns a snapshot of s's counts and examples.
func (s *shadow) report() ShadowReport {
	rep := ShadowReport{
		Mirrored:   s.mirrored.Load(),
		Compared:   s.compared.Load(),
		Mismatches: s.mismatches.Load(),
		Errors:     s.errors.Load(),
		Skipped:    s.skipped.Load(),
	}
	if d := rep.Compared + rep.Errors; d > 0 {
		rep.MismatchRate = float64(rep.Mismatches+rep.Errors) / float64(d)
	}
	s.mu.Lock()
	rep.Examples = slices.Clone(s.list)
	s.mu.Unlock()
	return rep
}
