package teal

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus metrics: traffic split, switches, outcomes and how
// long each phase took. They are registered by the caller; nothing here is global.
type Metrics struct {
	traffic  *prometheus.GaugeVec
	switches prometheus.Counter
	outcomes *prometheus.CounterVec
	phases   *prometheus.HistogramVec
	freezes  prometheus.Histogram
	downs    prometheus.Histogram

	mu      sync.Mutex
	entered map[int64]time.Time // release id → when its current phase began
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		traffic: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "teal_traffic_percent", Help: "Share of production traffic each colour receives.",
		}, []string{"color"}),
		switches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "teal_switches_total", Help: "Traffic switches, releases and rollbacks alike.",
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "teal_releases_total", Help: "Releases ended, by outcome.",
		}, []string{"outcome"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "teal_phase_duration_seconds",
			Help:    "Time releases spent in each phase.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 7200},
		}, []string{"phase"}),
		freezes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "teal_db_freeze_seconds",
			Help:    "How long writes were frozen by each database switchover.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		downs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "teal_db_downtime_seconds",
			Help:    "How long the maintenance page was shown by each switchover in database.mode snapshot.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		entered: make(map[int64]time.Time),
	}
}

// Collectors returns the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.traffic, m.switches, m.outcomes, m.phases, m.freezes, m.downs}
}

func (m *Metrics) freeze(d time.Duration) { m.freezes.Observe(d.Seconds()) }

func (m *Metrics) downtime(d time.Duration) { m.downs.Observe(d.Seconds()) }

func (m *Metrics) setTraffic(t Traffic) {
	m.traffic.WithLabelValues(string(Blue)).Set(float64(t.Blue))
	m.traffic.WithLabelValues(string(Green)).Set(float64(t.Green))
}

func (m *Metrics) switched(t Traffic) {
	m.switches.Inc()
	m.setTraffic(t)
}

func (m *Metrics) outcome(o Outcome) { m.outcomes.WithLabelValues(string(o)).Inc() }

// phase observes how long rel spent in prev, now that it entered its current phase.
func (m *Metrics) phase(prev Phase, rel *Release) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	start, ok := m.entered[rel.ID]
	if !ok {
		start = rel.Created
	}
	m.phases.WithLabelValues(string(prev)).Observe(now.Sub(start).Seconds())
	if rel.Phase == PhaseReleased {
		delete(m.entered, rel.ID)
		return
	}
	m.entered[rel.ID] = now
}
