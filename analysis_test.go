package teal

import (
	"strings"
	"testing"
	"time"
)

func TestLatencyBucket_BoundsContainTheTime(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 7 * time.Microsecond, 8 * time.Microsecond, 999 * time.Microsecond,
		time.Millisecond, 1234567 * time.Nanosecond, 500 * time.Millisecond, time.Second, 90 * time.Second} {
		i := LatencyBucket(d)
		if i < 0 || i >= LatencyBuckets {
			t.Fatalf("LatencyBucket(%s) = %d, out of range", d, i)
		}
		hi := LatencyBound(i)
		us := max(d, 8)
		if us >= hi {
			t.Errorf("LatencyBucket(%s) = %d with bound %s: the time is not below its bound", d, i, hi)
		}
		if i > 0 && LatencyBound(i-1) > us {
			t.Errorf("LatencyBucket(%s) = %d but the bound of bucket %d, %s, is above the time", d, i, i-1, LatencyBound(i-1))
		}
		if float64(hi) > 1.126*float64(us) {
			t.Errorf("bound %s of %s is more than 12.5%% above it", hi, d)
		}
	}
}

func TestLatencyHistogram_Percentile(t *testing.T) {
	var h LatencyHistogram
	if got := h.Percentile(0.99); got != 0 {
		t.Fatalf("empty Percentile = %s, want 0", got)
	}
	for range 990 {
		h[LatencyBucket(2*time.Millisecond)]++
	}
	for range 10 {
		h[LatencyBucket(800*time.Millisecond)]++
	}
	if got := h.Percentile(0.99); got < 2*time.Millisecond || got > 3*time.Millisecond {
		t.Errorf("p99 of 990×2ms + 10×800ms = %s, want about 2ms", got)
	}
	if got := h.Percentile(0.995); got < 800*time.Millisecond || got > 900*time.Millisecond {
		t.Errorf("p99.5 = %s, want about 800ms", got)
	}
}

func sample(requests, failed int64, each time.Duration) TrafficSample {
	s := TrafficSample{Requests: requests, Failed: failed}
	s.Latency[LatencyBucket(each)] = requests
	return s
}

func TestAnalysisConfig_Judge(t *testing.T) {
	a := AnalysisConfig{MaxErrorRate: 0.01, MaxP99: 500 * time.Millisecond, MinRequests: 50}
	tests := []struct {
		name   string
		d      TrafficSample
		want   Verdict
		reason string
	}{
		{"healthy", sample(200, 1, 10*time.Millisecond), VerdictPass, "1 of 200"},
		{"no traffic", sample(0, 0, 0), VerdictInconclusive, "fewer than release.analysis.min_requests 50"},
		{"few requests all failing", sample(10, 10, time.Millisecond), VerdictInconclusive, "too few to judge"},
		{"errors", sample(200, 25, 10*time.Millisecond), VerdictFail, "error rate 12.5% (25 of 200 requests) is over release.analysis.max_error_rate 1%"},
		{"exactly the limit", sample(100, 1, 10*time.Millisecond), VerdictPass, ""},
		{"slow", sample(100, 0, 900*time.Millisecond), VerdictFail, "over release.analysis.max_p99 500ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := a.Judge(tt.d)
			if j.Verdict != tt.want {
				t.Fatalf("Judge = %s (%s), want %s", j.Verdict, j.Reason, tt.want)
			}
			if !strings.Contains(j.Reason, tt.reason) {
				t.Errorf("reason %q does not say %q", j.Reason, tt.reason)
			}
		})
	}
	// p99 is not checked when max_p99 is 0.
	a.MaxP99 = 0
	if j := a.Judge(sample(100, 0, 900*time.Millisecond)); j.Verdict != VerdictPass {
		t.Errorf("with max_p99 0, Judge of slow traffic = %s, want pass", j.Verdict)
	}
}

func TestTrafficSample_Sub(t *testing.T) {
	before := sample(100, 2, time.Millisecond)
	after := sample(150, 5, time.Millisecond)
	d := after.Sub(before)
	if d.Requests != 50 || d.Failed != 3 || d.Latency[LatencyBucket(time.Millisecond)] != 50 {
		t.Fatalf("Sub = %d requests, %d failed, %d in the 1ms bucket; want 50, 3, 50", d.Requests, d.Failed, d.Latency[LatencyBucket(time.Millisecond)])
	}
}
