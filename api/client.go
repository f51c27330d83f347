package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/artifact"
)

// DefaultTimeout bounds a Client call that is not a stream or an upload. It is generous
// because abort and rollback answer only once they took effect.
const DefaultTimeout = 5 * time.Minute

// maxErrorBody caps how much of an error answer is read.
const maxErrorBody = 64 << 10

// Client calls a teal server's API. Its zero value is not usable: use NewClient.
type Client struct {
	// BaseURL is the server, e.g. "http://127.0.0.1:7070".
	BaseURL string
	// Token is the admin bearer token.
	Token string
	// Actor is sent as X-Teal-Actor ("cli:alice"), recorded as who acted; "" sends none.
	Actor string
	// HTTP sends the requests; it must not have a Timeout, or streams would be cut.
	HTTP *http.Client
	// Timeout bounds each call except streams and uploads; = DefaultTimeout, 0 means none.
	Timeout time.Duration
}

// NewClient returns a client of the server at baseURL, authenticating with token.
func NewClient(baseURL, token string) *Client {
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		Token:   token,
		HTTP:    &http.Client{},
		Timeout: DefaultTimeout,
	}
}

// Status returns what GET /api/v1/status answers.
func (c *Client) Status(ctx context.Context) (*teal.Status, error) {
	var st teal.Status
	if err := c.call(ctx, http.MethodGet, "/api/v1/status", nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Deploy starts a release of version.
func (c *Client) Deploy(ctx context.Context, version string) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/releases", DeployBody{Version: version})
}

// Promote opens the gate of the release in progress.
func (c *Client) Promote(ctx context.Context) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/releases/current/promote", nil)
}

// Abort stops the release in progress before its switch.
func (c *Client) Abort(ctx context.Context) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/releases/current/abort", nil)
}

// Rollback sends traffic back to the previous colour. It returns the release that was rolled
// back, or nil when traffic moved back without one.
func (c *Client) Rollback(ctx context.Context, force bool) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/rollback", RollbackBody{Force: force})
}

func (c *Client) releaseCall(ctx context.Context, method, path string, body any) (*teal.Release, error) {
	var rel *teal.Release
	if err := c.call(ctx, method, path, nil, body, &rel); err != nil {
		return nil, err
	}
	return rel, nil
}

// Releases returns the latest limit releases, newest first; limit 0 leaves it to the server.
func (c *Client) Releases(ctx context.Context, limit int) ([]*teal.Release, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var rels []*teal.Release
	if err := c.call(ctx, http.MethodGet, "/api/v1/releases", q, nil, &rels); err != nil {
		return nil, err
	}
	return rels, nil
}

// Release returns one release and its events, oldest first.
func (c *Client) Release(ctx context.Context, id int64) (*teal.Release, []*teal.Event, error) {
	d := ReleaseDetail{Release: &teal.Release{}}
	if err := c.call(ctx, http.MethodGet, "/api/v1/releases/"+strconv.FormatInt(id, 10), nil, nil, &d); err != nil {
		return nil, nil, err
	}
	return d.Release, d.Events, nil
}

// Instances returns both colours' instances with their health.
func (c *Client) Instances(ctx context.Context) ([]InstanceStatus, error) {
	var out []InstanceStatus
	if err := c.call(ctx, http.MethodGet, "/api/v1/instances", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Artifacts lists the stored artifacts.
func (c *Client) Artifacts(ctx context.Context) ([]*teal.Artifact, error) {
	var out []*teal.Artifact
	if err := c.call(ctx, http.MethodGet, "/api/v1/artifacts", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// PushArtifact uploads the file or directory at path as version's artifact: a file as is, a
// directory as a tar stream (artifact.WriteTar). Pushing the same content again under the
// same version succeeds; different content is refused (409).
func (c *Client) PushArtifact(ctx context.Context, version, path string) (*teal.Artifact, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("push artifact: %w", err)
	}
	q := url.Values{"version": {version}}
	var (
		body  io.Reader
		ctype string
		size  int64 = -1
	)
	if fi.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(artifact.WriteTar(pw, path)) }()
		// Closing the reader stops WriteTar when the upload ends early.
		defer func() { _ = pr.Close() }()
		body, ctype = pr, TarType
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("push artifact: %w", err)
		}
		defer func() { _ = f.Close() }()
		q.Set("name", filepath.Base(path))
		body, ctype, size = f, "application/octet-stream", fi.Size()
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/api/v1/artifacts", q, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.ContentLength = size
	var art teal.Artifact
	if err := c.do(ctx, req, &art); err != nil {
		return nil, err
	}
	return &art, nil
}

// PushImage stores the container image reference ref, pinned by digest
// (registry.example/shop@sha256:…), as version's artifact. A tag alone is refused.
func (c *Client) PushImage(ctx context.Context, version, ref string) (*teal.Artifact, error) {
	q := url.Values{"version": {version}, "image": {ref}}
	req, err := c.newRequest(ctx, http.MethodPost, "/api/v1/artifacts", q, nil)
	if err != nil {
		return nil, err
	}
	var art teal.Artifact
	if err := c.do(ctx, req, &art); err != nil {
		return nil, err
	}
	return &art, nil
}

// LogsRequest says which instance's output Logs fetches.
type LogsRequest struct {
	Color    teal.Color
	Instance int
	// Follow keeps the stream open, copying output as it is written, until ctx ends.
	Follow bool
	// Tail limits the output to the last Tail lines; < 0 means all of it.
	Tail int
}

// Logs copies an instance's output to w. With req.Follow it returns when ctx ends (with
// ctx's error) or the server closes the stream.
func (c *Client) Logs(ctx context.Context, req LogsRequest, w io.Writer) error {
	q := url.Values{}
	if req.Follow {
		q.Set("follow", "1")
	}
	if req.Tail >= 0 {
		q.Set("tail", strconv.Itoa(req.Tail))
	}
	path := fmt.Sprintf("/api/v1/instances/%s/%d/logs", url.PathEscape(string(req.Color)), req.Instance)
	rctx := ctx
	if !req.Follow {
		var cancel context.CancelFunc
		rctx, cancel = c.withTimeout(ctx)
		defer cancel()
	}
	hreq, err := c.newRequest(rctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, hreq)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read logs: %w", err)
	}
	return nil
}

// Events subscribes to the server's live events. It returns once the server has subscribed
// (so nothing that happens after it returns is missed) or failed. The event channel closes
// when the stream ends; the error channel then holds why (ctx's error when ctx ended) and
// closes. Keep reading events or cancel ctx: an unread stream blocks.
func (c *Client) Events(ctx context.Context) (<-chan *teal.Event, <-chan error) {
	events := make(chan *teal.Event)
	errs := make(chan error, 1)
	end := func(err error) {
		errs <- err
		close(events)
		close(errs)
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/events", nil, nil)
	if err != nil {
		end(err)
		return events, errs
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.send(ctx, req)
	if err != nil {
		end(err)
		return events, errs
	}
	go func() {
		defer func() { _ = resp.Body.Close() }()
		err := readSSE(resp.Body, func(m sseMessage) error {
			if m.Data == "" {
				return nil
			}
			var ev teal.Event
			if err := json.Unmarshal([]byte(m.Data), &ev); err != nil {
				return nil // an event this client does not understand is not worth dying for
			}
			select {
			case events <- &ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if err == nil {
			err = errors.New("the server ended the event stream")
		}
		end(err)
	}()
	return events, errs
}

// sseMessage is one dispatched Server-Sent Event.
type sseMessage struct {
	ID, Event, Data string
}

// maxSSELine caps one line of an event stream.
const maxSSELine = 4 << 20

// readSSE parses a text/event-stream (the WHATWG format: "field: value" lines, ':' comments,
// a blank line dispatching) and calls fn for each message until r ends or fn fails.
func readSSE(r io.Reader, fn func(sseMessage) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var (
		m    sseMessage
		data []string
		has  bool // a field was set since the last dispatch
	)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			if has {
				m.Data = strings.Join(data, "\n")
				if err := fn(m); err != nil {
					return err
				}
			}
			m, data, has = sseMessage{}, nil, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			m.ID, has = value, true
		case "event":
			m.Event, has = value, true
		case "data":
			data, has = append(data, value), true
		}
	}
	return sc.Err()
}

// call sends a JSON request (body may be nil) and decodes a 2xx answer into out.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	tctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := c.newRequest(tctx, method, path, q, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(ctx, req, out)
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.Timeout)
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Actor != "" {
		req.Header.Set(ActorHeader, c.Actor)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "teal")
	return req, nil
}

// do sends req and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, req *http.Request, out any) error {
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s %s: decode answer: %w", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// send sends req and returns a 2xx response; anything else becomes an *Error, and a server
// that cannot be reached an error wrapping ErrUnreachable. ctx is the caller's, which req's
// may narrow with a timeout: only the caller's ending is reported as itself.
func (c *Client) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err() // the caller gave up: not the server's fault
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", c.Timeout)
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.BaseURL, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		e.Message, e.Hint = eb.Error, eb.Hint
	} else if s := strings.TrimSpace(string(b)); s != "" {
		e.Message = fmt.Sprintf("%s %s: %d %s: %s", req.Method, req.URL.Path, resp.StatusCode, http.StatusText(resp.StatusCode), s)
	}
	return nil, e
}
