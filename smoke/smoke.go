// Package smoke runs a release's verify checks against the preview endpoint, which always
// routes to the idle (new) colour: the HTTP checks of verify.smoke, then verify.command.
package smoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"teal.dev/teal"
	"teal.dev/teal/jsonpath"
)

const (
	// maxBody is how much of an answer is read for body_contains and JSON checks; a longer
	// answer with such checks fails rather than being judged on a part.
	maxBody = 4 << 20
	// maxExcerpt bounds a body (or value) excerpt in a Failure.
	maxExcerpt = 200
)

// Runner runs a release's smoke checks and verify command. The zero value is ready to use.
type Runner struct {
	// Client sends the checks. Nil uses a client that does not follow redirects (a redirect
	// may lead away from the preview endpoint, to the live colour, and a check can expect
	// the 3xx itself) and ignores proxy settings (the preview endpoint is reached directly).
	Client *http.Client
	// Logger receives each passed check and each command run; nil discards them.
	Logger *slog.Logger
}

// Failure is a failed check: what was expected and what came back.
type Failure struct {
	Check    string // the check's name
	Request  string // "GET /api/health"
	Expected string // like "status 200", `body containing "shop"`, "$.ok = true"
	Got      string // like "500", "connection refused", "$.ok = false"
	Body     string // an excerpt of the answer's body (≤ 200 bytes, "…" when cut); "" if none
}

// Error reads like `smoke check "home page" (GET /): want status 200, got 500; body: "boom"`.
func (f *Failure) Error() string {
	s := fmt.Sprintf("smoke check %q (%s): want %s, got %s", f.Check, f.Request, f.Expected, f.Got)
	if f.Body != "" {
		s += fmt.Sprintf("; body: %q", f.Body)
	}
	return s
}

// Result is one passed or failed check, for the release's events.
type Result struct {
	Check    string
	Request  string
	Status   int // 0 when no answer came
	Duration time.Duration
	Err      error // nil when the check passed; a *Failure when it failed, else what stopped it
}

// check is a SmokeCheck with its JSON paths parsed, so a bad path fails before any request.
type check struct {
	teal.SmokeCheck
	request string
	paths   []*jsonpath.Path
}

// Checks runs checks in order against baseURL (like http://127.0.0.1:8081) and stops at the
// first failure, returned as a *Failure after the results so far (the failed one last). Each
// request is bounded by timeout (0 = only by ctx) and carries the check's headers and body and
// the header X-Teal-Smoke: <check name>. Any other error is a bad check definition (found
// before any request is sent) or ctx ending, which is not a failure of the new colour.
func (r *Runner) Checks(ctx context.Context, baseURL string, checks []teal.SmokeCheck, timeout time.Duration) ([]Result, error) {
	base, err := url.Parse(baseURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("smoke checks: base URL %q: want one like http://127.0.0.1:8081", baseURL)
	}
	prepared := make([]check, len(checks))
	for i, c := range checks {
		if c.Method == "" {
			c.Method = http.MethodGet
		}
		if !strings.HasPrefix(c.Path, "/") {
			c.Path = "/" + c.Path
		}
		request := c.Method + " " + c.Path
		if c.Name == "" {
			c.Name = request
		}
		if c.Expect.Status == 0 {
			c.Expect.Status = teal.DefaultSmokeStatus
		}
		prepared[i] = check{SmokeCheck: c, request: request}
		for _, je := range c.Expect.JSON {
			p, err := jsonpath.Parse(je.Path)
			if err != nil {
				return nil, fmt.Errorf("smoke check %q: %w", c.Name, err)
			}
			if !json.Valid(je.Value) {
				return nil, fmt.Errorf("smoke check %q: %s: expected value %q is not JSON (like true, 3, \"ok\" or null)", c.Name, je.Path, je.Value)
			}
			prepared[i].paths = append(prepared[i].paths, p)
		}
	}

	client := r.Client
	if client == nil {
		client = &http.Client{
			Transport:     &http.Transport{Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	prefix := base.String()

	var results []Result
	for _, c := range prepared {
		start := time.Now()
		status, err := r.run(ctx, client, prefix, c, timeout)
		res := Result{Check: c.Name, Request: c.request, Status: status, Duration: time.Since(start), Err: err}
		results = append(results, res)
		if err != nil {
			return results, err
		}
		r.logger().Info("smoke check passed", "check", c.Name, "request", c.request,
			"status", status, "duration", res.Duration)
	}
	return results, nil
}

// run sends one check and judges its answer.
func (r *Runner) run(ctx context.Context, client *http.Client, prefix string, c check, timeout time.Duration) (int, error) {
	reqCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(reqCtx, c.Method, prefix+c.Path, body)
	if err != nil {
		return 0, fmt.Errorf("smoke check %q: request %s: %w", c.Name, c.request, err)
	}
	for k, v := range c.Headers {
		if strings.EqualFold(k, "Host") { // the client sends req.Host, not a Host header
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Teal-Smoke", c.Name)

	fail := func(expected, got string, body []byte) *Failure {
		return &Failure{Check: c.Name, Request: c.request, Expected: expected, Got: got, Body: excerpt(body)}
	}
	// noAnswer turns a transport error into a Failure, or ctx's end into itself: the
	// release being stopped says nothing about the new colour.
	noAnswer := func(what string, err error, body []byte) error {
		if ctx.Err() != nil {
			return fmt.Errorf("smoke check %q: %w", c.Name, ctx.Err())
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fail(fmt.Sprintf("an answer within %s", timeout), what+"none in time", body)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) { // drop its `Get "http://…":`, the check names the request
			err = uerr.Err
		}
		return fail(fmt.Sprintf("status %d", c.Expect.Status), what+err.Error(), body)
	}

	resp, err := client.Do(req)
	if err != nil {
		return 0, noAnswer("", err, nil)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return resp.StatusCode, noAnswer(fmt.Sprintf("status %d, then reading the body: ", resp.StatusCode), err, data)
	}

	want := c.Expect
	if resp.StatusCode != want.Status {
		got := fmt.Sprint(resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" { // a redirect is not followed: say where to
			got += " to " + loc
		}
		return resp.StatusCode, fail(fmt.Sprintf("status %d", want.Status), got, data)
	}
	if (want.BodyContains != "" || len(c.paths) > 0) && len(data) > maxBody {
		return resp.StatusCode, fail("a body to check", fmt.Sprintf("a body over %d bytes", maxBody), data)
	}
	if want.BodyContains != "" && !bytes.Contains(data, []byte(want.BodyContains)) {
		return resp.StatusCode, fail(fmt.Sprintf("body containing %q", want.BodyContains), "a body without it", data)
	}
	if len(c.paths) == 0 {
		return resp.StatusCode, nil
	}
	doc, err := decodeJSON(data)
	if err != nil {
		got := "not JSON"
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			got += ", " + ct
		}
		return resp.StatusCode, fail("a JSON body", fmt.Sprintf("%s (%v)", got, err), data)
	}
	for i, p := range c.paths {
		wantV := want.JSON[i].Value
		expected := p.String() + " = " + compact(wantV)
		v, ok, reason := p.Lookup(doc)
		if !ok {
			return resp.StatusCode, fail(expected, reason, data)
		}
		if eq, err := jsonpath.Equal(v, wantV); err != nil || !eq {
			got, _ := json.Marshal(v) // decoded JSON always encodes
			return resp.StatusCode, fail(expected, p.String()+" = "+excerpt(got), data)
		}
	}
	return resp.StatusCode, nil
}

// decodeJSON decodes a whole body as one JSON value, numbers kept as json.Number.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more data after the JSON value")
	}
	return v, nil
}

// compact returns JSON text on one line, for messages.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// excerpt returns at most maxExcerpt bytes of b: when longer, cut at a rune boundary and
// ended with "…".
func excerpt(b []byte) string {
	if len(b) <= maxExcerpt {
		return string(b)
	}
	cut := maxExcerpt - len("…")
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
