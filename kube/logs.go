package kube

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"

	"teal.dev/teal"
)

// LogStream streams the output of colour c's instance index (its pod, in name order, as
// Instances numbers them) from the API server: its last tail lines (all with tail < 0), then,
// with follow, what it writes until ctx ends. Pods of a colour scaled to zero have no output.
func (p *Provider) LogStream(ctx context.Context, c teal.Color, index, tail int, follow bool) (io.ReadCloser, error) {
	pods, err := p.colorPods(ctx, c)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(pods) {
		return nil, fmt.Errorf("%s has %d pods, no instance %d: %w", c, len(pods), index, teal.ErrNotFound)
	}
	pod := pods[index].Name
	opts := &corev1.PodLogOptions{Container: p.opts.App, Follow: follow}
	if tail >= 0 {
		n := int64(tail)
		opts.TailLines = &n
	}
	rc, err := p.kc.CoreV1().Pods(p.ns).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("logs of pod %s/%s: %w", p.ns, pod, err)
	}
	return rc, nil
}
