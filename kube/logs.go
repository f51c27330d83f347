package kube

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"teal.dev/teal"
)

// LogStream streams the output of colour c's instance index (its pod, in name order, as
// Instances numbers them) from the API server: its last tail lines (all with tail < 0), then,
// with follow, what it writes until ctx ends. Pods of a colour scaled to zero have no output.
func (p *Provider) LogStream(ctx context.Context, c teal.Color, index, tail int, follow bool) (io.ReadCloser, error) {
	insts, err := p.Instances(ctx, c)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(insts) {
		return nil, fmt.Errorf("%s has %d pods, no instance %d: %w", c, len(insts), index, teal.ErrNotFound)
	}
	pod, err := p.podByUID(ctx, c, insts[index].Identity)
	if err != nil {
		return nil, err
	}
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

// podByUID is the name of colour c's pod with uid.
func (p *Provider) podByUID(ctx context.Context, c teal.Color, uid string) (string, error) {
	l, err := p.kc.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: p.colorSelector(c)})
	if err != nil {
		return "", fmt.Errorf("pods of %s: %w", c, err)
	}
	for _, pod := range l.Items {
		if string(pod.UID) == uid {
			return pod.Name, nil
		}
	}
	return "", fmt.Errorf("%s: pod %s is gone: %w", c, uid, teal.ErrNotFound)
}
