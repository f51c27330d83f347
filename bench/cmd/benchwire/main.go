// Command benchwire measures the latency a proxy adds from a packet capture of its two sides:
// for each request, the time from the client's request reaching the proxy to the proxy's
// answer leaving it, less the time the upstream took, as the kernel's timestamps on the
// loopback device saw them. It is bench/router.sh's third measurement: what a proxy adds,
// free of the load generator's own lateness, which on a small machine is larger than what is
// measured (see docs/benchmarks.md).
//
//	tcpdump -i lo -w cap.pcap -s 200 'tcp[tcpflags] & tcp-push != 0 and (port 18080 or port 18081)'
//	benchload -tag -url http://127.0.0.1:18080/ ...
//	benchwire -proxy 18080 -upstream 18081 cap.pcap
//
// The requests must be numbered in their query (benchload -tag), so that each is paired
// with the request the proxy sent on for it, whichever upstream connection that went on.
// It prints one line of key=value pairs: requests (paired), unpaired, then added_p50_ms,
// added_p90_ms, added_p99_ms, added_p999_ms, added_max_ms (the proxy's time per request) and
// in_p99_ms, out_p99_ms (its two halves: from the client's request to the upstream request,
// and from the upstream's answer to the client's).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchwire:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchwire", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proxyPort := fs.Int("proxy", 18080, "the `port` the proxy listens on")
	upstreamPort := fs.Int("upstream", 18081, "the `port` the upstream listens on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one capture file (pcap), got %d arguments", fs.NArg())
	}
	if !validPort(*proxyPort) || !validPort(*upstreamPort) || *proxyPort == *upstreamPort {
		return fmt.Errorf("ports %d and %d: want two different ports from 1 to 65535", *proxyPort, *upstreamPort)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	p := newPairer(uint16(*proxyPort), uint16(*upstreamPort))
	if err := readPcap(bufio.NewReaderSize(f, 1<<20), p.packet); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	r := p.result()
	if r.requests == 0 {
		return fmt.Errorf("%s: no request was seen on both sides of the proxy (were they numbered with benchload -tag, and are the ports right?)", fs.Arg(0))
	}
	fmt.Fprintf(stdout, "requests=%d unpaired=%d added_p50_ms=%.3f added_p90_ms=%.3f added_p99_ms=%.3f added_p999_ms=%.3f added_max_ms=%.3f in_p99_ms=%.3f out_p99_ms=%.3f\n",
		r.requests, r.unpaired, ms(pct(r.added, 0.5)), ms(pct(r.added, 0.9)), ms(pct(r.added, 0.99)),
		ms(pct(r.added, 0.999)), ms(pct(r.added, 1)), ms(pct(r.in, 0.99)), ms(pct(r.out, 0.99)))
	return nil
}

func validPort(p int) bool { return p > 0 && p < 1<<16 }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct returns the p quantile of sorted d (nearest rank).
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(p*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// exchange is one request and its answer on one connection, by the capture's clock.
type exchange struct{ req, res time.Duration }

// pending is the request on a connection still waiting for its answer.
type pending struct {
	n  int64
	at time.Duration
}

// pairer follows the proxy's client connections and its upstream connections and pairs the
// exchanges of each numbered request on the two sides.
type pairer struct {
	proxy, upstream uint16
	front, back     map[int64]exchange // by request number
	waitFront       map[uint16]pending // by the client's port
	waitBack        map[uint16]pending // by the proxy's port to the upstream
}

func newPairer(proxy, upstream uint16) *pairer {
	return &pairer{proxy: proxy, upstream: upstream,
		front: map[int64]exchange{}, back: map[int64]exchange{},
		waitFront: map[uint16]pending{}, waitBack: map[uint16]pending{}}
}

// packet takes one TCP segment with a payload: its time, ports and first bytes.
func (p *pairer) packet(at time.Duration, src, dst uint16, payload []byte) {
	switch {
	case dst == p.proxy:
		p.request(p.waitFront, src, at, payload)
	case src == p.proxy:
		p.answer(p.waitFront, p.front, dst, at)
	case dst == p.upstream:
		p.request(p.waitBack, src, at, payload)
	case src == p.upstream:
		p.answer(p.waitBack, p.back, dst, at)
	}
}

// request notes a numbered request's first segment on the connection from port.
func (p *pairer) request(wait map[uint16]pending, port uint16, at time.Duration, payload []byte) {
	n, ok := requestNumber(payload)
	if !ok {
		return // a later segment of a request, or one that is not numbered
	}
	if w, ok := wait[port]; ok && w.n == n {
		return // sent again: the first time counts
	}
	wait[port] = pending{n: n, at: at}
}

// answer notes the first segment of the answer on the connection to port.
func (p *pairer) answer(wait map[uint16]pending, done map[int64]exchange, port uint16, at time.Duration) {
	w, ok := wait[port]
	if !ok {
		return // the rest of an answer
	}
	delete(wait, port)
	done[w.n] = exchange{req: w.at, res: at}
}

// result is what the capture measured: per paired request, the proxy's time (added) and its
// halves (in, out), each sorted.
type result struct {
	requests, unpaired int
	added, in, out     []time.Duration
}

func (p *pairer) result() result {
	var r result
	for n, f := range p.front {
		b, ok := p.back[n]
		if !ok {
			r.unpaired++
			continue
		}
		r.requests++
		r.added = append(r.added, (f.res-f.req)-(b.res-b.req))
		r.in = append(r.in, b.req-f.req)
		r.out = append(r.out, f.res-b.res)
	}
	for n := range p.back {
		if _, ok := p.front[n]; !ok {
			r.unpaired++
		}
	}
	slices.Sort(r.added)
	slices.Sort(r.in)
	slices.Sort(r.out)
	return r
}

// requestNumber returns n from a request line "GET /path?...n=N... HTTP/1.1" at the start
// of payload.
func requestNumber(payload []byte) (int64, bool) {
	_, target, ok := bytes.Cut(payload, []byte(" "))
	if !ok {
		return 0, false
	}
	if i := bytes.IndexAny(target, " \r\n"); i >= 0 {
		target = target[:i]
	}
	_, query, ok := bytes.Cut(target, []byte("?"))
	if !ok {
		return 0, false
	}
	var n int64
	found := false
	for _, param := range bytes.Split(query, []byte("&")) {
		v, ok := bytes.CutPrefix(param, []byte("n="))
		if !ok {
			continue
		}
		if u, err := strconv.ParseUint(string(v), 10, 63); err == nil {
			n, found = int64(u), true
		}
	}
	return n, found
}
