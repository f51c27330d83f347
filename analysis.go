package teal

import (
	"fmt"
	"math/bits"
	"time"
)

// LatencyBuckets is the number of buckets of a LatencyHistogram: eight per doubling of the
// answer time, up to about 2 minutes, so that a percentile read from it is within 12.5% of the
// true value however the answer times spread.
const LatencyBuckets = 38 * 8

// LatencyHistogram counts answers by answer time; LatencyBucket says which bucket a time is in.
type LatencyHistogram [LatencyBuckets]int64

// LatencyBucket returns the bucket of d. It costs a few shifts: routers call it per request.
func LatencyBucket(d time.Duration) int {
	ns := uint64(max(d, 8))   // below 8ns the eighths of a doubling are not whole nanoseconds
	oct := bits.Len64(ns) - 1 // ns is in [2^oct, 2^(oct+1)), oct ≥ 3
	i := oct*8 + int((ns>>(oct-3))&7)
	if i >= LatencyBuckets {
		return LatencyBuckets - 1
	}
	return i
}

// LatencyBound returns the upper bound of bucket i: every time counted in it is below.
func LatencyBound(i int) time.Duration {
	oct, sub := i/8, i%8
	return time.Duration((uint64(9+sub) << oct) >> 3)
}

// Percentile returns the answer time below which the fraction p (0.99 for p99) of the counted
// answers fell, as the upper bound of its bucket; 0 when nothing was counted.
func (h *LatencyHistogram) Percentile(p float64) time.Duration {
	var total int64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := int64(p*float64(total) + 0.999999) // the ceil of p·total: at least that many answers
	var seen int64
	for i, n := range h {
		seen += n
		if seen >= rank {
			return LatencyBound(i)
		}
	}
	return LatencyBound(LatencyBuckets - 1)
}

// TrafficSample is what a router counted for one colour's production traffic up to a moment.
// Counts only grow; the difference of two samples (Sub) is what happened between them.
type TrafficSample struct {
	Requests int64 // answered, whatever the status
	Failed   int64 // answered 5xx, or broken off by the backend
	Latency  LatencyHistogram
}

// Sub returns what s counted since before.
func (s TrafficSample) Sub(before TrafficSample) TrafficSample {
	d := TrafficSample{Requests: s.Requests - before.Requests, Failed: s.Failed - before.Failed}
	for i := range d.Latency {
		d.Latency[i] = s.Latency[i] - before.Latency[i]
	}
	return d
}

// Verdict is the outcome of an analysis.
type Verdict string

// Verdicts.
const (
	VerdictPass         Verdict = "pass"
	VerdictFail         Verdict = "fail"
	VerdictInconclusive Verdict = "inconclusive" // too few requests to judge: never a pass
)

// Judgement is an analysis of a colour's traffic over some time.
type Judgement struct {
	Verdict   Verdict       `json:"verdict"`
	Requests  int64         `json:"requests"`
	Failed    int64         `json:"failed"`
	ErrorRate float64       `json:"error_rate"` // Failed / Requests
	P99       time.Duration `json:"p99"`
	Reason    string        `json:"reason"` // why, with the numbers and the limits
}

// Judge analyses d, the traffic of a colour over some time, against a's limits. Below
// min_requests nothing is concluded, a failure included: more requests may dilute a few early
// errors, and a verdict on a handful of requests would be noise.
func (a AnalysisConfig) Judge(d TrafficSample) Judgement {
	j := Judgement{Requests: d.Requests, Failed: d.Failed}
	if d.Requests > 0 {
		j.ErrorRate = float64(d.Failed) / float64(d.Requests)
		j.P99 = d.Latency.Percentile(0.99)
	}
	counts := fmt.Sprintf("%d of %d requests failed (%s), p99 %s", d.Failed, d.Requests, pct(j.ErrorRate), j.P99)
	switch {
	case d.Requests < int64(a.MinRequests):
		j.Verdict = VerdictInconclusive
		j.Reason = fmt.Sprintf("%d requests, fewer than release.analysis.min_requests %d: too few to judge (%s)", d.Requests, a.MinRequests, counts)
	case j.ErrorRate > a.MaxErrorRate:
		j.Verdict = VerdictFail
		j.Reason = fmt.Sprintf("error rate %s (%d of %d requests) is over release.analysis.max_error_rate %s", pct(j.ErrorRate), d.Failed, d.Requests, pct(a.MaxErrorRate))
	case a.MaxP99 > 0 && j.P99 > a.MaxP99:
		j.Verdict = VerdictFail
		j.Reason = fmt.Sprintf("p99 %s is over release.analysis.max_p99 %s (%d requests)", j.P99, a.MaxP99, d.Requests)
	default:
		j.Verdict = VerdictPass
		j.Reason = counts
	}
	return j
}

// pct formats a fraction as a percentage: 0.0125 is 1.25%.
func pct(f float64) string {
	return fmt.Sprintf("%.4g%%", f*100)
}
