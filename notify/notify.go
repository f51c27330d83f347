// Package notify announces a release's progress to webhooks: a JSON POST, with a
// Slack-compatible "text" and structured fields, on every phase change, outcome, traffic move
// and error (notify.webhooks in teal.yaml).
//
// Notifications are best-effort and must never hold a release up. Run drains the controller's
// event channel without ever waiting on the network: each webhook has its own bounded queue,
// drained in order by its own goroutine, and a queue that is full drops its oldest message (a
// chat channel wants the latest news, not a backlog). Failed deliveries are retried with
// exponential backoff.
//
// A webhook URL is often a secret (a Slack hook's path is its credential), so only its
// scheme://host ever appears in logs and errors.
package notify

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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"teal.dev/teal"
)

// Defaults of the Notifier's fields.
const (
	DefaultMaxAttempts = 5
	DefaultBackoff     = time.Second
	DefaultQueueSize   = 256
	// DefaultTimeout bounds one attempt (the default Client's timeout).
	DefaultTimeout = 10 * time.Second
)

const (
	// maxDelay caps both the doubled backoff and a webhook's Retry-After: a chat message an
	// hour late is worse than none.
	maxDelay = time.Minute
	// shutdownGrace is how long queued messages still get after Run's context ends.
	shutdownGrace = 5 * time.Second
	// maxBody is how much of an answer is read: enough to log why a webhook refused a message
	// and to let the connection be reused, never an unbounded read.
	maxBody = 64 << 10
	// maxLoggedBody is how much of a refusal's body is logged.
	maxLoggedBody = 200
	// dropLogEvery limits the "queue full" warnings of one webhook: a webhook that is down
	// while a release runs would otherwise log once per event.
	dropLogEvery = 10 * time.Second
)

// Notifier posts events to webhooks. NewNotifier sets every field to its default; change
// fields before Run, not during it. One Notifier serves one Run at a time.
type Notifier struct {
	// App names the app in each message's text and app field.
	App string
	// Webhooks are the http(s) URLs each wanted event is POSTed to.
	Webhooks []string
	// Client performs the POSTs. The default has a DefaultTimeout (10s) timeout per attempt
	// and does not follow redirects: a redirected POST may arrive as a GET without its body,
	// so a 3xx is reported as a misconfigured webhook instead. nil = that default.
	Client *http.Client
	// Logger receives delivery failures and drops; nil discards them.
	Logger *slog.Logger
	// MaxAttempts is how many times one message is tried before it is given up;
	// = DefaultMaxAttempts (5).
	MaxAttempts int
	// Backoff is the delay before the first retry, doubled before each next one and capped
	// at a minute; = DefaultBackoff (1s).
	Backoff time.Duration
	// QueueSize is how many messages wait per webhook; when it is full the OLDEST queued
	// message is dropped (and counted); = DefaultQueueSize (256).
	QueueSize int

	sent, failed, dropped atomic.Int64
}

// NewNotifier returns a Notifier for app's webhooks with every other field at its default.
func NewNotifier(app string, webhooks []string) *Notifier {
	return &Notifier{
		App:         app,
		Webhooks:    webhooks,
		Client:      defaultClient(),
		MaxAttempts: DefaultMaxAttempts,
		Backoff:     DefaultBackoff,
		QueueSize:   DefaultQueueSize,
	}
}

func defaultClient() *http.Client {
	return &http.Client{
		Timeout: DefaultTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Stats reports how many messages were sent, failed (given up after MaxAttempts, or refused
// by the webhook), and dropped (pushed out of a full queue, or still unsent when Run stopped).
// A message posted to two webhooks counts once per webhook.
func (n *Notifier) Stats() (sent, failed, dropped int64) {
	return n.sent.Load(), n.failed.Load(), n.dropped.Load()
}

// Wants reports whether an event is announced: phase changes (which include a release's
// outcome), traffic moves and errors. Steps, health transitions and actions are not: they are
// too many for a chat channel and are in the release's event log.
func Wants(e *teal.Event) bool {
	if e == nil {
		return false
	}
	switch e.Kind {
	case teal.EventPhase, teal.EventTraffic, teal.EventError:
		return true
	}
	return false
}

// Message is the JSON body POSTed to a webhook. Text is what Slack (and compatible chats)
// show; the other fields are for programs.
type Message struct {
	// Text is a one-line summary, like "[shop] release #7 of v2: awaiting-release", with
	// &, < and > escaped as Slack requires.
	Text      string    `json:"text"`
	App       string    `json:"app"`
	Kind      string    `json:"kind"` // phase, traffic or error
	ReleaseID int64     `json:"release_id,omitempty"`
	Version   string    `json:"version,omitempty"`
	Phase     string    `json:"phase,omitempty"`
	Outcome   string    `json:"outcome,omitempty"`
	Color     string    `json:"color,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	Message   string    `json:"message"` // the event's own message, unescaped
	Time      time.Time `json:"time"`
	// Attrs are all of the event's attributes, including those copied into the fields
	// above (a traffic event's "blue" and "green" percentages are only here).
	Attrs map[string]any `json:"attrs,omitempty"`
}

// NewMessage describes e for app's webhooks.
func NewMessage(app string, e *teal.Event) Message {
	m := Message{
		App:       app,
		Kind:      e.Kind,
		ReleaseID: e.ReleaseID,
		Version:   attr(e.Attrs, "version"),
		Phase:     attr(e.Attrs, "phase"),
		Outcome:   attr(e.Attrs, "outcome"),
		Color:     attr(e.Attrs, "color"),
		Actor:     e.Actor,
		Message:   e.Message,
		Time:      e.Time,
	}
	if m.Time.IsZero() {
		m.Time = time.Now().UTC()
	}
	if len(e.Attrs) > 0 {
		// A copy: the controller's event is shared with other subscribers.
		m.Attrs = make(map[string]any, len(e.Attrs))
		for k, v := range e.Attrs {
			m.Attrs[k] = v
		}
	}
	m.Text = slackEscape(summary(m, e.Attrs))
	if app != "" {
		m.Text = "[" + slackEscape(app) + "] " + m.Text
	}
	return m
}

// summary is the text of m before escaping and without the app prefix.
func summary(m Message, attrs map[string]any) string {
	switch {
	case m.Kind == teal.EventPhase && m.Phase != "" && m.ReleaseID != 0:
		// Built rather than copied: the event's message does not name the version.
		s := fmt.Sprintf("release #%d", m.ReleaseID)
		if m.Version != "" {
			s += " of " + m.Version
		}
		return s + ": " + m.Phase
	case m.Message == "" && m.Outcome != "" && m.ReleaseID != 0:
		return fmt.Sprintf("release #%d %s", m.ReleaseID, m.Outcome)
	}
	s := m.Message
	if s == "" {
		s = m.Kind
	}
	if m.Kind == teal.EventTraffic {
		_, okB := attrs["blue"]
		_, okG := attrs["green"]
		if okB && okG {
			s += fmt.Sprintf(" (blue %v%%, green %v%%)", attrs["blue"], attrs["green"])
		}
	}
	if m.Kind == teal.EventError {
		s = "error: " + s
	}
	return s
}

// attr returns attrs[key] as a string: phases and colours may arrive typed (teal.Phase) from
// the controller or as plain strings from the store.
func attr(attrs map[string]any, key string) string {
	v, ok := attrs[key]
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// slackEscape escapes the three characters Slack reads as markup ("<nil>" would otherwise be
// taken for a link), and only those.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// redact returns the part of a webhook URL that may be logged: scheme://host. The path and
// query of a chat webhook are usually its secret.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}

// check validates the fields Run depends on; errors name the field and never show a URL's
// secret part.
func (n *Notifier) check() error {
	var errs []error
	for i, raw := range n.Webhooks {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			// url.Parse's error quotes the whole URL, secret included: not wrapped.
			errs = append(errs, fmt.Errorf("notify.webhooks[%d]: not a URL: want http(s)://host/path", i))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("notify.webhooks[%d]: scheme %q: want http or https", i, u.Scheme))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("notify.webhooks[%d]: no host: want http(s)://host/path", i))
		}
	}
	if n.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("notify: MaxAttempts %d: want 1 or more", n.MaxAttempts))
	}
	if n.Backoff < 0 {
		errs = append(errs, fmt.Errorf("notify: Backoff %s: want 0 or more", n.Backoff))
	}
	if n.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("notify: QueueSize %d: want 1 or more", n.QueueSize))
	}
	return errors.Join(errs...)
}

// item is one message on its way to one webhook.
type item struct {
	body    []byte
	kind    string
	release int64
}

// queue is one webhook's bounded FIFO. Pushing never blocks: a full queue drops its oldest.
type queue struct {
	url     string
	redact  string
	ready   chan struct{} // one pending wake-up is enough
	mu      sync.Mutex
	buf     []item // ring
	head, n int
	lastLog time.Time // of a drop warning
}

func newQueue(raw string, size int) *queue {
	return &queue{url: raw, redact: redact(raw), ready: make(chan struct{}, 1), buf: make([]item, size)}
}

// push appends it and reports whether the oldest message had to be dropped for it.
func (q *queue) push(it item) (dropped bool) {
	q.mu.Lock()
	if q.n == len(q.buf) {
		q.buf[q.head] = item{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		dropped = true
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

func (q *queue) pop() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return item{}, false
	}
	it := q.buf[q.head]
	q.buf[q.head] = item{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return it, true
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// shouldLogDrop rate-limits drop warnings.
func (q *queue) shouldLogDrop(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.lastLog) < dropLogEvery {
		return false
	}
	q.lastLog = now
	return true
}

// Run consumes events until ctx ends or the channel closes, queueing the wanted ones for each
// webhook; one goroutine per webhook delivers its queue in order. Run never waits on a webhook
// while reading events, so the controller's buffered channel keeps draining even when every
// webhook is down.
//
// When the channel closes, Run returns once every queued message has been delivered or given
// up. When ctx ends, queued messages get up to 5s more to go out; those still unsent then are
// counted as dropped. Run returns an error only for an invalid Notifier (a bad webhook URL, a
// field out of range), before reading any event.
func (n *Notifier) Run(ctx context.Context, events <-chan *teal.Event) error {
	if err := n.check(); err != nil {
		return err
	}
	log := n.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := n.Client
	if client == nil {
		client = defaultClient()
	}

	queues := make([]*queue, len(n.Webhooks))
	for i, raw := range n.Webhooks {
		queues[i] = newQueue(raw, n.QueueSize)
	}
	// Deliveries outlive ctx by the grace period, so they get their own context.
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	closing := make(chan struct{})
	var wg sync.WaitGroup
	for _, q := range queues {
		wg.Go(func() { n.deliverAll(dctx, client, log, q, closing) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	stopped := n.consume(ctx, events, queues, log)
	close(closing)
	if !stopped {
		// The channel closed: let the queues empty at their own pace, unless ctx ends first.
		select {
		case <-done:
			return nil
		case <-ctx.Done():
		}
	}
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
	}
	cancel()
	<-done
	for _, q := range queues {
		if left := q.len(); left > 0 {
			n.dropped.Add(int64(left))
			log.Warn("webhook messages not sent before shutdown", "webhook", q.redact, "dropped", left)
		}
	}
	return nil
}

// consume queues wanted events until ctx ends (true) or events closes (false).
func (n *Notifier) consume(ctx context.Context, events <-chan *teal.Event, queues []*queue, log *slog.Logger) bool {
	for {
		var e *teal.Event
		var ok bool
		select {
		case <-ctx.Done():
			return true
		case e, ok = <-events:
			if !ok {
				return false
			}
		}
		if !Wants(e) || len(queues) == 0 {
			continue
		}
		it := item{kind: e.Kind, release: e.ReleaseID, body: n.encode(e, log)}
		for _, q := range queues {
			if q.push(it) {
				total := n.dropped.Add(1)
				if q.shouldLogDrop(time.Now()) {
					log.Warn("webhook queue full: dropped the oldest message", "webhook", q.redact,
						"queue_size", n.QueueSize, "dropped_total", total)
				}
			}
		}
	}
}

// encode marshals e's message once for every webhook. An attribute JSON cannot encode (a NaN,
// a channel) costs the attributes, not the message.
func (n *Notifier) encode(e *teal.Event, log *slog.Logger) []byte {
	m := NewMessage(n.App, e)
	body, err := json.Marshal(m)
	if err != nil {
		log.Warn("webhook message attributes not encodable: sent without them", "kind", e.Kind, "release", e.ReleaseID, "err", err)
		m.Attrs = nil
		// Every remaining field is a string, number or time: this cannot fail.
		body, _ = json.Marshal(m)
	}
	return body
}

// deliverAll posts q's messages in order until closing is closed and q is empty, or ctx ends.
func (n *Notifier) deliverAll(ctx context.Context, client *http.Client, log *slog.Logger, q *queue, closing <-chan struct{}) {
	closed := false
	for ctx.Err() == nil {
		it, ok := q.pop()
		if ok {
			n.deliver(ctx, client, log, q, it)
			continue
		}
		if closed {
			return
		}
		select {
		case <-q.ready:
		case <-closing:
			// Look once more: a push may have come just before closing.
			closed = true
		case <-ctx.Done():
		}
	}
}

// deliver posts one message, retrying as the answer allows, and counts how it ended.
func (n *Notifier) deliver(ctx context.Context, client *http.Client, log *slog.Logger, q *queue, it item) {
	log = log.With("webhook", q.redact, "kind", it.kind, "release", it.release)
	delay := n.Backoff
	for attempt := 1; ; attempt++ {
		retryAfter, err := post(ctx, client, q.url, it.body)
		if err == nil {
			n.sent.Add(1)
			log.Debug("webhook message sent", "attempt", attempt)
			return
		}
		if ctx.Err() != nil {
			n.dropped.Add(1)
			log.Warn("webhook message not sent before shutdown", "attempt", attempt, "err", err)
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			n.failed.Add(1)
			log.Error("webhook refused the message; check notify.webhooks", "attempt", attempt, "err", err)
			return
		}
		if attempt >= n.MaxAttempts {
			n.failed.Add(1)
			log.Error("webhook message given up", "attempts", attempt, "err", err)
			return
		}
		wait := min(delay, maxDelay)
		if retryAfter >= 0 {
			wait = retryAfter
		}
		log.Info("webhook message not delivered, will retry", "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			n.dropped.Add(1)
			log.Warn("webhook message not sent before shutdown", "attempt", attempt, "err", err)
			return
		}
		delay = min(2*delay, maxDelay)
	}
}

// permanentError is an answer retrying cannot change: a 4xx other than 429, or a 3xx.
type permanentError struct {
	status int
	body   string
}

func (e *permanentError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("status %d", e.status)
	}
	return fmt.Sprintf("status %d: %q", e.status, e.body)
}

// post makes one attempt. It returns the delay the webhook asked for (-1 when it did not) and
// an error that never contains the URL.
func post(ctx context.Context, client *http.Client, raw string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return -1, errors.New("build request: invalid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "teal")
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error quotes the whole URL: keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return -1, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return -1, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		retryAfter := time.Duration(-1)
		if v := resp.Header.Get("Retry-After"); v != "" {
			if d, ok := parseRetryAfter(v, time.Now()); ok {
				retryAfter = d
			}
		}
		return retryAfter, fmt.Errorf("status %d", resp.StatusCode)
	default:
		b := strings.TrimSpace(string(answer))
		if len(b) > maxLoggedBody {
			b = b[:maxLoggedBody] + "…"
		}
		return -1, &permanentError{status: resp.StatusCode, body: b}
	}
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date, relative to now.
// The result is capped at a minute; a date in the past means no wait. ok is false for anything
// else.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			// All digits but too large is still a number: the cap applies.
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return maxDelay, true
			}
			return 0, false
		}
		if secs >= uint64(maxDelay/time.Second) {
			return maxDelay, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxDelay), true
}
