// Command benchload sends GET requests at a constant rate over kept-alive connections and
// reports the latency percentiles, measured from when each request was due, not from when a
// connection was free to send it: a slow answer delays the requests queued behind it, and
// that delay counts (no coordinated omission). It is bench/router.sh's second pass, which
// measures the latency a proxy adds at a given load; Debian has no wrk2.
//
//	benchload -url http://127.0.0.1:18080/ -rate 5000 -duration 10s -conns 64
//
// It prints one line of key=value pairs: rate, sent, ok, errors, p50_ms, p90_ms, p99_ms,
// p999_ms, max_ms, then wait_p99_ms and rt_p99_ms: the two parts of the latency, how long a
// due request waited before it was written (the generator's own lateness and a free
// connection's) and the round trip from its write to the end of its answer.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
}

// tick is how often the scheduler wakes up to release the requests that have come due.
const tick = 200 * time.Microsecond

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://127.0.0.1:18080/", "the `URL` to GET (http only)")
	rate := fs.Int("rate", 1000, "requests per second")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	conns := fs.Int("conns", 64, "kept-alive connections")
	tag := fs.Bool("tag", false, "number the requests in their query (n=0, n=1, ...), so that a capture can pair each with what a proxy sent on (benchwire)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("url %q: want http://host:port/path", *target)
	}
	if *rate <= 0 || *conns <= 0 || *duration <= 0 {
		return fmt.Errorf("rate %d, conns %d, duration %v: want all above 0", *rate, *conns, *duration)
	}
	req := request{line: "GET " + u.RequestURI(), rest: " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: benchload\r\n\r\n"}
	if *tag {
		req.tag = "?n="
		if u.RawQuery != "" {
			req.tag = "&n="
		}
	}

	total := int(int64(*rate) * int64(*duration) / int64(time.Second))
	due := make(chan dueRequest, total)
	results := make([][]time.Duration, *conns)
	waits := make([][]time.Duration, *conns)
	trips := make([][]time.Duration, *conns)
	errs := make([]int, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("connect %d: %w", i, err)
		}
		defer c.Close()
		n := total / *conns + 16
		s := samples{lat: make([]time.Duration, 0, n), wait: make([]time.Duration, 0, n), trip: make([]time.Duration, 0, n)}
		wg.Go(func() {
			s, errs[i] = worker(c, u.Host, req, due, s)
			results[i], waits[i], trips[i] = s.lat, s.wait, s.trip
		})
	}

	// The schedule: request n is due at start + n/rate. Every tick, those that came due are
	// released with their due time; a late tick releases them late, but their latency still
	// counts from when they were due.
	start := time.Now()
	interval := time.Second / time.Duration(*rate)
	ticker := time.NewTicker(tick)
	sent := 0
schedule:
	for sent < total {
		select {
		case <-ctx.Done():
			break schedule
		case now := <-ticker.C:
			for ; sent < total; sent++ {
				at := start.Add(time.Duration(sent) * interval)
				if at.After(now) {
					break
				}
				due <- dueRequest{n: sent, at: at}
			}
		}
	}
	ticker.Stop()
	close(due)
	wg.Wait()
	elapsed := time.Since(start)

	nerr := 0
	for i := range errs {
		nerr += errs[i]
	}
	all, wait, trip := slices.Concat(results...), slices.Concat(waits...), slices.Concat(trips...)
	fmt.Fprintf(stdout, "rate=%d sent=%d ok=%d errors=%d achieved=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f wait_p99_ms=%.3f rt_p99_ms=%.3f\n",
		*rate, sent, len(all), nerr, float64(len(all))/elapsed.Seconds(), pct(all, 0.50), pct(all, 0.90), pct(all, 0.99), pct(all, 0.999), pct(all, 1),
		pct(wait, 0.99), pct(trip, 0.99))
	return nil
}

// pct returns the p quantile of d (nearest rank) in milliseconds; it sorts d.
func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		slices.Sort(d)
	}
	i := int(p*float64(len(d))+0.5) - 1
	return float64(d[min(max(i, 0), len(d)-1)]) / float64(time.Millisecond)
}

// samples are one worker's measurements of its answered requests: the latency from the due
// time, and its two parts, the wait before the write and the round trip after it.
type samples struct{ lat, wait, trip []time.Duration }

// request is the request benchload sends: line and rest, with tag and the request's number
// between them when tag is set.
type request struct{ line, tag, rest string }

// append appends request n to b.
func (r request) append(b []byte, n int) []byte {
	b = append(b, r.line...)
	if r.tag != "" {
		b = strconv.AppendInt(append(b, r.tag...), int64(n), 10)
	}
	return append(b, r.rest...)
}

// dueRequest is request n, due at at.
type dueRequest struct {
	n  int
	at time.Time
}

// worker sends the requests it takes from due on c, one at a time, and returns the latency
// of each answered one (from its due time, and its parts) and how many failed. A failed
// connection is dialled again.
func worker(c net.Conn, addr string, req request, due <-chan dueRequest, s samples) (samples, int) {
	br := bufio.NewReader(c)
	failed := 0
	var buf []byte
	for d := range due {
		at := d.at
		buf = req.append(buf[:0], d.n)
		if c == nil {
			var err error
			if c, err = net.Dial("tcp", addr); err != nil {
				failed++
				continue
			}
			br.Reset(c)
		}
		sent := time.Now()
		closing, err := roundTrip(c, br, buf)
		if err != nil || closing {
			// A server that says Connection: close (nginx does after keepalive_requests)
			// has answered; the next request goes on a new connection.
			_ = c.Close()
			c = nil
		}
		if err != nil {
			failed++
			continue
		}
		done := time.Now()
		s.lat = append(s.lat, done.Sub(at))
		s.wait = append(s.wait, sent.Sub(at))
		s.trip = append(s.trip, done.Sub(sent))
	}
	if c != nil {
		_ = c.Close()
	}
	return s, failed
}

// roundTrip writes request and reads a 2xx response with its whole body; closing is true
// when the server closes the connection after it.
func roundTrip(c net.Conn, br *bufio.Reader, request []byte) (closing bool, err error) {
	if _, err := c.Write(request); err != nil {
		return false, err
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if err != nil {
		return false, err
	}
	if res.StatusCode/100 != 2 {
		return res.Close, fmt.Errorf("status %d", res.StatusCode)
	}
	return res.Close, nil
}
