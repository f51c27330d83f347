package kube

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"teal.dev/teal"
)

// System rebuilds teal's view of the app from the cluster alone, for a teal whose state was
// lost or that restarted: each colour's version, digest, state and pods from its Deployment
// (labels and teal.dev/* annotations), the live colour from the production Service's selector
// and the split from the HTTPRoute's weights when one is configured.
func (p *Provider) System(ctx context.Context) (*teal.System, error) {
	sys := &teal.System{}
	for _, c := range teal.Colors {
		env := sys.Env(c)
		d, err := p.kc.AppsV1().Deployments(p.ns).Get(ctx, p.DeploymentName(c), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("deployment %s/%s: %w", p.ns, p.DeploymentName(c), err)
		}
		env.Version = d.Annotations[AnnotationVersion]
		env.Digest = d.Annotations[AnnotationDigest]
		env.State = teal.EnvState(d.Annotations[AnnotationState])
		if t, err := time.Parse(time.RFC3339, d.Annotations[AnnotationSince]); err == nil {
			env.Since = t
		}
		if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
			env.State = teal.EnvTerminated
			continue
		}
		if env.Instances, err = p.Instances(ctx, c); err != nil {
			return nil, err
		}
	}
	svc, err := p.kc.CoreV1().Services(p.ns).Get(ctx, p.opts.Kube.Service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("service %s/%s: %w", p.ns, p.opts.Kube.Service, err)
	default:
		if c := teal.Color(svc.Spec.Selector[LabelColor]); c.Valid() && svc.Spec.Selector[LabelApp] == p.opts.App &&
			sys.Env(c).State != teal.EnvTerminated && sys.Env(c).Version != "" {
			sys.Live = c
			sys.Traffic = teal.All(c)
			sys.Env(c).State = teal.EnvLive
		}
	}
	if p.opts.Kube.HTTPRoute != "" && sys.Live != "" {
		t, ok, err := p.weights(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			sys.Traffic = t
		}
	}
	for _, c := range teal.Colors {
		// A colour that lost the selector without teal recording it (or a crash between the
		// switch and the annotation) is on standby, not live.
		if e := sys.Env(c); e.State == teal.EnvLive && c != sys.Live {
			e.State = teal.EnvStandby
		}
	}
	return sys, nil
}

// ImageOf is the pinned image colour c's Deployment runs, from its teal.dev/image annotation;
// "" when there is no such Deployment. A teal that lost its state registers it again as the
// artifact of the colour's version.
func (p *Provider) ImageOf(ctx context.Context, c teal.Color) (string, error) {
	d, err := p.kc.AppsV1().Deployments(p.ns).Get(ctx, p.DeploymentName(c), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("deployment %s/%s: %w", p.ns, p.DeploymentName(c), err)
	}
	return d.Annotations[AnnotationImage], nil
}
