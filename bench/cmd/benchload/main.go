// Command benchload sends GET requests at a constant rate over kept-alive connections and
// reports the latency percentiles, measured from when each request was due, not from when a
// connection was free to send it: a slow answer delays the requests queued behind it, and
// that delay counts (no coordinated omission). It is bench/router.sh's second pass, which
// measures the latency a proxy adds at a given load; Debian has no wrk2.
//
//	benchload -url http://127.0.0.1:18080/ -rate 5000 -duration 10s -conns 64
//
// It prints one line of key=value pairs: rate, sent, ok, errors, p50_ms, p90_ms, p99_ms,
// p999_ms, max_ms.
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
	request := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: benchload\r\n\r\n")

	total := int(int64(*rate) * int64(*duration) / int64(time.Second))
	due := make(chan time.Time, total)
	results := make([][]time.Duration, *conns)
	errs := make([]int, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("connect %d: %w", i, err)
		}
		defer c.Close()
		results[i] = make([]time.Duration, 0, total / *conns + 16)
		wg.Go(func() { results[i], errs[i] = worker(c, u.Host, request, due, results[i]) })
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
				due <- at
			}
		}
	}
	ticker.Stop()
	close(due)
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	nerr := 0
	for i := range results {
		all = append(all, results[i]...)
		nerr += errs[i]
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p*float64(len(all))+0.5) - 1
		return float64(all[min(max(i, 0), len(all)-1)]) / float64(time.Millisecond)
	}
	fmt.Fprintf(stdout, "rate=%d sent=%d ok=%d errors=%d achieved=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
		*rate, sent, len(all), nerr, float64(len(all))/elapsed.Seconds(), pct(0.50), pct(0.90), pct(0.99), pct(0.999), pct(1))
	return nil
}

// worker sends the requests it takes from due on c, one at a time, and returns the latency
// of each answered one (from its due time) and how many failed. A failed connection is
// dialled again.
func worker(c net.Conn, addr string, request []byte, due <-chan time.Time, lat []time.Duration) ([]time.Duration, int) {
	br := bufio.NewReader(c)
	failed := 0
	for at := range due {
		if c == nil {
			var err error
			if c, err = net.Dial("tcp", addr); err != nil {
				failed++
				continue
			}
			br.Reset(c)
		}
		if err := roundTrip(c, br, request); err != nil {
			failed++
			_ = c.Close()
			c = nil
			continue
		}
		lat = append(lat, time.Since(at))
	}
	if c != nil {
		_ = c.Close()
	}
	return lat, failed
}

// roundTrip writes request and reads a 2xx response with its whole body.
func roundTrip(c net.Conn, br *bufio.Reader, request []byte) error {
	if _, err := c.Write(request); err != nil {
		return err
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return nil
}
