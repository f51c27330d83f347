package kube

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"teal.dev/teal"
)

// Health is teal.Health for pods: an instance is healthy when its pod is Ready, which the
// kubelet decides with the readiness probe built from health:. teal does not probe pods
// itself: their addresses are usually not reachable from where teal runs. It watches the pods
// (no polling).
type Health struct {
	p *Provider

	mu     sync.Mutex
	colors map[teal.Color]*podWatch
}

var _ teal.Health = (*Health)(nil)

type podWatch struct {
	cancel  context.CancelFunc
	done    chan struct{}
	want    int // instances handed to Watch: Wait needs at least that many ready pods
	state   []teal.InstanceHealth
	seen    bool          // state reflects a first list
	changed chan struct{} // closed and replaced on every change of state
}

// Health returns the pod-readiness health monitor of the provider's colours.
func (p *Provider) Health() *Health {
	return &Health{p: p, colors: map[teal.Color]*podWatch{}}
}

// Watch watches colour c's pods and calls onChange with the addresses of the ready ones every
// time that set changes (never concurrently for one colour). The pods are those of the colour's
// Deployment, so pods the ReplicaSet replaces are followed; instances gives the count Wait
// expects.
func (h *Health) Watch(c teal.Color, instances []teal.Instance, onChange func(healthy []string)) {
	h.Unwatch(c)
	ctx, cancel := context.WithCancel(context.Background())
	w := &podWatch{cancel: cancel, done: make(chan struct{}), want: len(instances), changed: make(chan struct{})}
	h.mu.Lock()
	h.colors[c] = w
	h.mu.Unlock()
	pods := h.p.kc.CoreV1().Pods(h.p.ns)
	sel := h.p.colorSelector(c)
	go func() {
		defer close(w.done)
		var last []string
		first := true
		check := func(ctx context.Context) (string, bool, error) {
			l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return "", false, err
			}
			state, healthy := h.p.podHealth(c, l.Items)
			h.mu.Lock()
			w.state, w.seen = state, true
			close(w.changed)
			w.changed = make(chan struct{})
			h.mu.Unlock()
			if first || !slices.Equal(healthy, last) {
				first, last = false, healthy
				onChange(healthy)
			}
			return l.ResourceVersion, false, nil
		}
		for ctx.Err() == nil {
			err := waitWatch(ctx, check, func(ctx context.Context, rv string) (watchIface, error) {
				return pods.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: rv})
			})
			if err != nil && ctx.Err() == nil {
				h.p.log.Warn("watch pods", "color", c, "err", err)
				select { // the API server is away: try again shortly
				case <-ctx.Done():
				case <-timeAfter(h.p.opts.Health.Interval):
				}
			}
		}
	}()
}

// Unwatch stops watching c's pods.
func (h *Health) Unwatch(c teal.Color) {
	h.mu.Lock()
	w := h.colors[c]
	delete(h.colors, c)
	h.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
}

// State is the latest health of c's pods, in name order.
func (h *Health) State(c teal.Color) []teal.InstanceHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := h.colors[c]; w != nil {
		return slices.Clone(w.state)
	}
	return nil
}

// Wait returns nil once c has at least as many pods as were watched and all are Ready; when
// ctx ends first it names each pod that is not, with its reason.
func (h *Health) Wait(ctx context.Context, c teal.Color) error {
	for {
		h.mu.Lock()
		w := h.colors[c]
		if w == nil {
			h.mu.Unlock()
			return fmt.Errorf("%s: not watched", c)
		}
		ready := 0
		var bad []string
		for _, s := range w.state {
			if s.Healthy {
				ready++
			} else {
				bad = append(bad, s.Addr+": "+s.LastError)
			}
		}
		ok := w.seen && len(bad) == 0 && ready >= max(w.want, 1)
		changed, want := w.changed, w.want
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if len(bad) == 0 {
				return fmt.Errorf("%s: %d of %d pods ready", c, ready, want)
			}
			return fmt.Errorf("%s: %d of %d pods ready; %s", c, ready, want, strings.Join(bad, "; "))
		}
	}
}

// podHealth turns pods into instance health (Addr is the pod IP and port, or the pod name
// before it has an IP) and the sorted addresses of the ready ones.
func (p *Provider) podHealth(c teal.Color, pods []corev1.Pod) ([]teal.InstanceHealth, []string) {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	var state []teal.InstanceHealth
	var healthy []string
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		addr := pod.Name
		if pod.Status.PodIP != "" {
			addr = net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(p.opts.Kube.Port))
		}
		ih := teal.InstanceHealth{Index: len(state), Addr: addr, Healthy: podReady(&pod)}
		if ih.Healthy {
			healthy = append(healthy, addr)
		} else {
			ih.LastError = "pod " + pod.Name + ": " + podReason(&pod)
		}
		state = append(state, ih)
	}
	sort.Strings(healthy)
	return state, healthy
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Probe checks one instance now, for a teal that re-adopts its instances at start: the pod
// with in's UID must exist and be Ready. It never connects to the pod: its address is the
// cluster's, often not reachable from where teal runs.
func (h *Health) Probe(ctx context.Context, in teal.Instance) error {
	l, err := h.p.kc.CoreV1().Pods(h.p.ns).List(ctx, metav1.ListOptions{LabelSelector: h.p.colorSelector(in.Color)})
	if err != nil {
		return fmt.Errorf("pods of %s: %w", in.Color, err)
	}
	for i := range l.Items {
		pod := &l.Items[i]
		if string(pod.UID) != in.Identity {
			continue
		}
		if pod.DeletionTimestamp != nil || !podReady(pod) {
			return fmt.Errorf("pod %s: %s", pod.Name, podReason(pod))
		}
		return nil
	}
	return fmt.Errorf("%s instance %d: pod %s is gone", in.Color, in.Index, in.Identity)
}
