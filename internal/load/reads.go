package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Hit is one answer (or failure) of the read load.
type Hit struct {
	Start, End time.Time
	Path       string
	Version    string // from the sample app's body, for GET / and /slow
	Code       int    // HTTP status; 0 when no answer came
	Err        error  // transport error or unexpected answer
	Refused    bool   // nothing was listening (the router was down)
}

// Reads sends steady traffic to the sample app — plain GETs, 1-second requests and POSTs —
// and records every answer with when it started.
type Reads struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	hits []Hit
}

// ReadsOptions say how many clients of each kind run.
type ReadsOptions struct {
	Plain, Slow, Posts int
}

// StartReads starts the clients against base (http://host:port).
func StartReads(base string, o ReadsOptions) *Reads {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reads{cancel: cancel}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 15 * time.Second}
	start := func(n int, method, path string) {
		for range n {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				for ctx.Err() == nil {
					h := hit(client, method, base, path)
					r.mu.Lock()
					r.hits = append(r.hits, h)
					r.mu.Unlock()
					if h.Err != nil {
						select { // do not spin while the router is down
						case <-ctx.Done():
						case <-time.After(5 * time.Millisecond):
						}
					}
				}
			}()
		}
	}
	start(o.Plain, http.MethodGet, "/")
	start(o.Slow, http.MethodGet, "/slow?d=1s")
	start(o.Posts, http.MethodPost, "/echo")
	return r
}

func hit(client *http.Client, method, base, path string) Hit {
	const sent = "order-42"
	h := Hit{Start: time.Now(), Path: path}
	defer func() { h.End = time.Now() }()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(sent)
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		h.Err = err
		return h
	}
	resp, err := client.Do(req)
	if err != nil {
		h.Err = err
		h.Refused = errors.Is(err, syscall.ECONNREFUSED)
		h.End = time.Now()
		return h
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h.Code = resp.StatusCode
	switch {
	case resp.StatusCode != http.StatusOK:
		h.Err = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	case method == http.MethodPost && string(b) != sent:
		h.Err = fmt.Errorf("POST %s echoed %q", path, b)
	case method == http.MethodGet:
		if f := strings.Fields(string(b)); len(f) >= 2 {
			h.Version = f[1]
		}
	}
	h.End = time.Now()
	return h
}

// Count returns how many answers came so far.
func (r *Reads) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hits)
}

// CountVersion returns how many answers came from version v so far.
func (r *Reads) CountVersion(v string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, h := range r.hits {
		if h.Version == v && h.Err == nil {
			n++
		}
	}
	return n
}

// WaitFor waits until cond holds, polling, or timeout.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Stop ends the clients and returns every hit.
func (r *Reads) Stop() []Hit {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits
}
