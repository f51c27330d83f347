// Package load generates steady traffic against the sample app through teal's router and
// records every answer, so that the demo and the end-to-end tests measure failed requests and
// lost writes instead of assuming them.
package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Writes inserts orders and updates each once, through base (http://host:port), and records
// each acknowledged write: order id → the note last acknowledged for it.
type Writes struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	acked  map[int64]string
	failed []string
	// maybe holds, per order, a note whose update got no answer at all (the server died
	// meanwhile): it may or may not have been applied, and either is correct.
	maybe map[int64]string
}

// StartWrites starts n writers.
func StartWrites(base string, n int) *Writes {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writes{cancel: cancel, acked: map[int64]string{}, maybe: map[int64]string{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				w.one(client, base, fmt.Sprintf("w%d-%d", i, seq))
			}
		}()
	}
	return w
}

// one inserts an order, then updates it: both writes must survive.
func (w *Writes) one(client *http.Client, base, note string) {
	code, body, err := do(client, http.MethodPost, base+"/orders", note)
	if err != nil || code != http.StatusCreated {
		w.fail(fmt.Sprintf("POST /orders: %d %s %v", code, body, err))
		return
	}
	var o struct{ ID int64 }
	if err := json.Unmarshal(body, &o); err != nil || o.ID == 0 {
		w.fail(fmt.Sprintf("POST /orders answered %s", body))
		return
	}
	w.ack(o.ID, note)
	note += "-upd"
	code, body, err = do(client, http.MethodPut, fmt.Sprintf("%s/orders/%d", base, o.ID), note)
	if err != nil && code == 0 {
		w.mu.Lock()
		w.maybe[o.ID] = note
		w.mu.Unlock()
	}
	if err != nil || code != http.StatusOK {
		w.fail(fmt.Sprintf("PUT /orders/%d: %d %s %v", o.ID, code, body, err))
		return
	}
	w.ack(o.ID, note)
}

func do(client *http.Client, method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (w *Writes) ack(id int64, note string) {
	w.mu.Lock()
	w.acked[id] = note
	w.mu.Unlock()
}

func (w *Writes) fail(msg string) {
	w.mu.Lock()
	w.failed = append(w.failed, msg)
	w.mu.Unlock()
}

// Counts returns how many orders were acknowledged and how many writes failed so far.
func (w *Writes) Counts() (acked, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked), len(w.failed)
}

// WaitMore waits until n more orders were acknowledged; it gives up early when a write fails.
func (w *Writes) WaitMore(ctx context.Context, n int, timeout time.Duration) error {
	start, _ := w.Counts()
	deadline := time.Now().Add(timeout)
	for {
		acked, failed := w.Counts()
		if failed > 0 {
			w.mu.Lock()
			defer w.mu.Unlock()
			return fmt.Errorf("a write failed: %s", w.failed[0])
		}
		if acked >= start+n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %d more acknowledged writes", timeout, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends the writers and returns what was acknowledged and what failed.
func (w *Writes) Stop() (acked map[int64]string, failed []string) {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.failed
}

// Missing compares acknowledged writes with what a database holds (id → note) and returns
// the ids whose last acknowledged note is absent or different — unless the database holds
// a later update that got no answer (sent, then the server died): applied or not, either is
// correct, only acknowledged writes are promised.
func (w *Writes) Missing(present map[int64]string) []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int64
	for id, note := range w.acked {
		got, ok := present[id]
		if ok && (got == note || got == w.maybe[id]) {
			continue
		}
		out = append(out, id)
	}
	return out
}
