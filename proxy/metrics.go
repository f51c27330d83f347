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
	latency        [teal.LatencyBuckets]atomic.Int64 // answer times, upgraded connections excluded
	inFlight       atomic.Int64                      // upgraded connections included
	openConns      atomic.Int64                      // upgraded connections only
}

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
	counters  *[2][3]counters
	requests  *prometheus.Desc
	open      *prometheus.Desc
	upstream  *prometheus.Desc
	duration  *prometheus.HistogramVec
	observers [2][3]prometheus.Observer
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(counters *[2][3]counters) *metrics {
	m := &metrics{
		counters: counters,
		requests: prometheus.NewDesc("teal_requests_total",
			"Requests answered by the router, by listener, colour and status class.",
			[]string{"listener", "color", "code"}, nil),
		open: prometheus.NewDesc("teal_open_connections",
			"Requests in flight through the router, upgraded (WebSocket) connections included.",
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
				float64(cnt.inFlight.Load()), listenerName(l), colorName(c))
			upstream[c] += cnt.upstreamErrors.Load()
		}
	}
	for c, n := range upstream {
		ch <- prometheus.MustNewConstMetric(m.upstream, prometheus.CounterValue, float64(n), colorName(c))
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
