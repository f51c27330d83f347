package proxy

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"teal.dev/teal"
)

// counters are what one listener forwarded to one colour. They are plain atomics, read by
// Stats and turned into metrics only when scraped, so a request pays a few atomic adds.
type counters struct {
	codes          [6]atomic.Int64 // by status class: codes[2] counts 2xx; codes[0] is unused
	upstreamErrors atomic.Int64
	failed         atomic.Int64                      // 5xx or broken off, each request once
	latency        [teal.LatencyBuckets]atomic.Int64 // answer times, long-lived connections excluded
	// active counts the ordinary requests being served: in flight, and not long-lived. It is
	// what Drain waits for; a request leaves it when it becomes long-lived.
	active    atomic.Int64
	longLived atomic.Int64 // long-lived connections open now: upgraded and event streams
	openConns atomic.Int64 // upgraded connections open now, a part of longLived
}

// inFlight is every request being served, long-lived connections included. Its two parts
// are read one after the other: a snapshot for reports, not for decisions.
func (c *counters) inFlight() int64 { return c.active.Load() + c.longLived.Load() }

// count counts one answered request by its status class.
func (c *counters) count(status int) {
	class := status / 100
	if class < 1 {
		class = 1
	} else if class > 5 {
		class = 5
	}
	c.codes[class].Add(1)
}

// metrics exposes the counters as Prometheus metrics, and keeps the duration histogram,
// whose children are made up front so that observing one is an index, not a label lookup.
type metrics struct {
	r         *Router
	counters  *[2][3]counters
	requests  *prometheus.Desc
	open      *prometheus.Desc
	upstream  *prometheus.Desc
	longLived *prometheus.Desc
	shadow    *prometheus.Desc
	duration  *prometheus.HistogramVec
	observers [2][3]prometheus.Observer
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(r *Router) *metrics {
	m := &metrics{
		r:        r,
		counters: &r.counters,
		longLived: prometheus.NewDesc("teal_long_lived_connections",
			"Long-lived connections (upgraded connections and event streams) open now to a colour, through any listener.",
			[]string{"color"}, nil),
		shadow: prometheus.NewDesc("teal_shadow_requests_total",
			"Shadow (mirrored) requests by result: match, mismatch, error, or skipped at the concurrency cap.",
			[]string{"result"}, nil),
		requests: prometheus.NewDesc("teal_requests_total",
			"Requests answered by the router, by listener, colour and status class.",
			[]string{"listener", "color", "code"}, nil),
		open: prometheus.NewDesc("teal_open_connections",
			"Requests in flight through the router, long-lived connections (upgraded, event streams) included.",
			[]string{"listener", "color"}, nil),
		upstream: prometheus.NewDesc("teal_upstream_errors_total",
			"Requests whose backend could not be reached or broke off its response.",
			[]string{"color"}, nil),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "teal_request_duration_seconds",
			Help:    "Time to answer a request through the router; upgraded connections excluded.",
			Buckets: prometheus.DefBuckets,
		}, []string{"listener", "color"}),
	}
	for l := range m.observers {
		for c := range m.observers[l] {
			m.observers[l][c] = m.duration.WithLabelValues(listenerName(l), colorName(c))
		}
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.requests
	ch <- m.open
	ch <- m.upstream
	ch <- m.longLived
	ch <- m.shadow
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	var upstream [3]int64
	for l := range m.counters {
		for c := range m.counters[l] {
			cnt := &m.counters[l][c]
			for class := 1; class < len(cnt.codes); class++ {
				ch <- prometheus.MustNewConstMetric(m.requests, prometheus.CounterValue,
					float64(cnt.codes[class].Load()), listenerName(l), colorName(c), codeName(class))
			}
			ch <- prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue,
				float64(cnt.inFlight()), listenerName(l), colorName(c))
			upstream[c] += cnt.upstreamErrors.Load()
		}
	}
	for c, n := range upstream {
		ch <- prometheus.MustNewConstMetric(m.upstream, prometheus.CounterValue, float64(n), colorName(c))
	}
	for _, c := range teal.Colors {
		ch <- prometheus.MustNewConstMetric(m.longLived, prometheus.GaugeValue, float64(m.r.LongLived(c)), string(c))
	}
	for i, name := range shadowResultNames {
		ch <- prometheus.MustNewConstMetric(m.shadow, prometheus.CounterValue, float64(m.r.shadowCounts[i].Load()), name)
	}
}

func listenerName(l int) string {
	if l == preview {
		return "preview"
	}
	return "live"
}

// colorName is the colour label; "none" for requests that found no colour to go to.
func colorName(c int) string {
	switch c {
	case blue:
		return "blue"
	case green:
		return "green"
	}
	return "none"
}

func codeName(class int) string {
	switch class {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	}
	return "5xx"
}
