package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"teal.dev/teal"
)

// ServicePort is the port of the Services teal creates (the production one when it does not
// exist yet, the preview one and the per-colour ones); they target the container's "http" port.
const ServicePort = 80

// DefaultSwitchTimeout bounds each confirmation of a switch: the new colour's endpoints ready
// before it, the Service's endpoints all of the new colour after it.
const DefaultSwitchTimeout = 30 * time.Second

// HTTPRouteResource is the Gateway API resource weighted steps are written to.
var HTTPRouteResource = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// SetBackends does nothing: a Service selects pods by label and the kubelet's readiness probe
// (health:) decides which of them receive traffic.
func (p *Provider) SetBackends(context.Context, teal.Color, []string) error { return nil }

// Route installs r. All traffic to one colour switches the production Service's selector to
// it, make-before-break: first the colour's own Service must show ready endpoints for every
// replica in its EndpointSlices, then the selector is switched, then Route waits until the
// production Service's EndpointSlices hold that colour's pods only. With kubernetes.httproute
// the backend weights are set too (first), and a split between both colours is only possible
// there. The preview Service is pointed at r.Preview. Every write re-reads the object and
// retries when the API server answers 409 Conflict.
func (p *Provider) Route(ctx context.Context, r teal.Routes) error {
	t := r.Traffic
	switch {
	case t.Blue > 0 && t.Green > 0:
		if p.opts.Kube.HTTPRoute == "" {
			return teal.Errorf(teal.ErrInvalid, "set kubernetes.httproute (a Gateway API HTTPRoute), or use release.strategy: switch",
				"route %d%% blue / %d%% green: a Service selector sends all traffic to one colour; weighted steps need kubernetes.httproute", t.Blue, t.Green)
		}
		for _, c := range teal.Colors {
			if t.Of(c) > 0 {
				if err := p.requireReady(ctx, c); err != nil {
					return err
				}
			}
		}
		if err := p.setWeights(ctx, t); err != nil {
			return err
		}
		p.log.Info("weighted", "blue", t.Blue, "green", t.Green)
	case t.Blue > 0 || t.Green > 0:
		live := teal.Blue
		if t.Green > 0 {
			live = teal.Green
		}
		if err := p.switchTo(ctx, live); err != nil {
			return err
		}
	}
	if r.Preview != "" && p.opts.Kube.PreviewService != "" {
		if _, err := p.setSelector(ctx, p.opts.Kube.PreviewService, r.Preview); err != nil {
			return fmt.Errorf("preview: %w", err)
		}
	}
	return nil
}

// Drain confirms that the production Service no longer sends anything to c: its
// EndpointSlices hold none of c's pods. Requests already on c's pods finish within their
// termination grace period (run.stop_timeout) when they are stopped.
func (p *Provider) Drain(ctx context.Context, c teal.Color) error {
	svc, err := p.kc.CoreV1().Services(p.ns).Get(ctx, p.opts.Kube.Service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("drain %s: service %s/%s: %w", c, p.ns, p.opts.Kube.Service, err)
	}
	if svc.Spec.Selector[LabelColor] == string(c) {
		return fmt.Errorf("drain %s: service %s/%s still selects it", c, p.ns, svc.Name)
	}
	return p.confirmOnly(ctx, svc.Name, c.Other(), false)
}

// switchTo moves the production Service (and the HTTPRoute, when set) to c, make-before-break.
func (p *Provider) switchTo(ctx context.Context, c teal.Color) error {
	svc, err := p.kc.CoreV1().Services(p.ns).Get(ctx, p.opts.Kube.Service, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("switch to %s: service %s/%s: %w", c, p.ns, p.opts.Kube.Service, err)
	}
	already := err == nil && svc.Spec.Selector[LabelColor] == string(c) && svc.Spec.Selector[LabelApp] == p.opts.App
	if !already {
		if err := p.requireReady(ctx, c); err != nil {
			return err
		}
	}
	if p.opts.Kube.HTTPRoute != "" {
		if err := p.setWeights(ctx, teal.All(c)); err != nil {
			return err
		}
	}
	if already {
		return nil
	}
	prev, err := p.setSelector(ctx, p.opts.Kube.Service, c)
	if err != nil {
		return fmt.Errorf("switch to %s: %w", c, err)
	}
	p.log.Info("switched", "service", p.opts.Kube.Service, "from", prev, "to", c)
	if err := p.setState(ctx, c, teal.EnvLive); err != nil {
		return err
	}
	if prev == c.Other() {
		if err := p.setState(ctx, prev, teal.EnvStandby); err != nil {
			return err
		}
	}
	if err := p.confirmOnly(ctx, p.opts.Kube.Service, c, true); err != nil {
		return fmt.Errorf("switch to %s: selector switched, but %w", c, err)
	}
	return nil
}

// setSelector points service name at colour c, creating it (owned by teal) when missing, and
// returns the colour it selected before ("" when none). Other selector keys are kept.
func (p *Provider) setSelector(ctx context.Context, name string, c teal.Color) (teal.Color, error) {
	svcs := p.kc.CoreV1().Services(p.ns)
	var prev teal.Color
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			own, err := p.owner(ctx)
			if err != nil {
				return err
			}
			_, err = svcs.Create(ctx, p.service(name, c, own), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("services"), name, err) // re-read
			}
			return err
		}
		if err != nil {
			return err
		}
		prev = teal.Color(svc.Spec.Selector[LabelColor])
		if svc.Spec.Selector == nil {
			svc.Spec.Selector = map[string]string{}
		}
		svc.Spec.Selector[LabelApp] = p.opts.App
		svc.Spec.Selector[LabelColor] = string(c)
		if err := p.selectsPods(ctx, svc.Name, svc.Spec.Selector, c); err != nil {
			return err
		}
		_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("service %s/%s selector to %s: %w", p.ns, name, c, err)
	}
	return prev, nil
}

// selectsPods refuses a selector that would not select colour c's pods: a Service of the
// user's with other selector keys (tier: web) that the pods teal creates do not carry.
func (p *Provider) selectsPods(ctx context.Context, svc string, sel map[string]string, c teal.Color) error {
	d, err := p.kc.AppsV1().Deployments(p.ns).Get(ctx, p.DeploymentName(c), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // nothing to select yet (a preview of a colour never launched)
	}
	if err != nil {
		return err
	}
	labels := d.Spec.Template.Labels
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		if labels[k] != sel[k] {
			return teal.Errorf(teal.ErrInvalid, "remove "+k+" from the selector of service "+svc+": teal selects by app and "+LabelColor,
				"service %s/%s selects %s=%s, which the pods of %s do not carry: it would select none of them", p.ns, svc, k, sel[k], d.Name)
		}
	}
	return nil
}

// service is a Service teal creates, selecting colour c.
func (p *Provider) service(name string, c teal.Color, own metav1.OwnerReference) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: p.labels(""), OwnerReferences: []metav1.OwnerReference{own}},
		Spec: corev1.ServiceSpec{
			Selector: p.selector(c),
			Ports: []corev1.ServicePort{{Name: "http", Port: ServicePort, TargetPort: intstr.FromString("http"),
				Protocol: corev1.ProtocolTCP}},
		},
	}
}

// ensureColorService creates {app}-{color}, the Service that selects colour c only.
func (p *Provider) ensureColorService(ctx context.Context, own metav1.OwnerReference, c teal.Color) error {
	svc := p.service(p.colorService(c), c, own)
	svc.Labels = p.labels(c)
	_, err := p.kc.CoreV1().Services(p.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("service %s/%s: %w", p.ns, svc.Name, err)
	}
	return nil
}

// requireReady waits, up to SwitchTimeout, until colour c's own Service has a ready
// endpoint in its EndpointSlices for every replica its Deployment asks for: the "make" of
// make-before-break.
func (p *Provider) requireReady(ctx context.Context, c teal.Color) error {
	d, err := p.kc.AppsV1().Deployments(p.ns).Get(ctx, p.DeploymentName(c), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return teal.Errorf(teal.ErrConflict, "", "switch to %s: deployment %s/%s does not exist", c, p.ns, p.DeploymentName(c))
	}
	if err != nil {
		return fmt.Errorf("switch to %s: deployment %s/%s: %w", c, p.ns, p.DeploymentName(c), err)
	}
	want := 1
	if d.Spec.Replicas != nil {
		want = int(*d.Spec.Replicas)
	}
	if want == 0 {
		return teal.Errorf(teal.ErrConflict, "", "switch to %s: deployment %s/%s is scaled to zero", c, p.ns, d.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, p.SwitchTimeout)
	defer cancel()
	var ready int
	err = p.watchSlices(wctx, p.colorService(c), func(slices []discoveryv1.EndpointSlice) bool {
		ready = 0
		for _, s := range slices {
			for _, ep := range s.Endpoints {
				if endpointReady(ep) {
					ready++
				}
			}
		}
		return ready >= want
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return teal.Errorf(teal.ErrNotHealthy, "", "switch to %s refused: service %s has %d ready endpoints of %d after %s; traffic stays where it is",
				c, p.colorService(c), ready, want, p.SwitchTimeout)
		}
		return fmt.Errorf("switch to %s: endpoints of %s: %w", c, p.colorService(c), err)
	}
	return nil
}

// confirmOnly waits until the EndpointSlices of service svc hold only pods of colour c (and,
// with needReady, at least one ready one): the "break" is over.
func (p *Provider) confirmOnly(ctx context.Context, svc string, c teal.Color, needReady bool) error {
	wctx, cancel := context.WithTimeout(ctx, p.SwitchTimeout)
	defer cancel()
	var stray []string
	err := p.watchSlices(wctx, svc, func(slices []discoveryv1.EndpointSlice) bool {
		pods, err := p.kc.CoreV1().Pods(p.ns).List(wctx, metav1.ListOptions{LabelSelector: p.colorSelector(c)})
		if err != nil {
			return false
		}
		mine := map[string]bool{}
		for _, pod := range pods.Items {
			mine[pod.Name] = true
		}
		stray = stray[:0]
		ready := 0
		for _, s := range slices {
			for _, ep := range s.Endpoints {
				if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || !mine[ep.TargetRef.Name] {
					name := "?"
					if ep.TargetRef != nil {
						name = ep.TargetRef.Name
					}
					stray = append(stray, name)
				} else if endpointReady(ep) {
					ready++
				}
			}
		}
		return len(stray) == 0 && (!needReady || ready > 0)
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("service %s still has endpoints not of %s after %s: %v", svc, c, p.SwitchTimeout, stray)
		}
		return fmt.Errorf("endpoints of %s: %w", svc, err)
	}
	return nil
}

// watchSlices waits until ok accepts the EndpointSlices of service svc, re-checking on each
// change.
func (p *Provider) watchSlices(ctx context.Context, svc string, ok func([]discoveryv1.EndpointSlice) bool) error {
	api := p.kc.DiscoveryV1().EndpointSlices(p.ns)
	sel := discoveryv1.LabelServiceName + "=" + svc
	return waitWatch(ctx, func(ctx context.Context) (string, bool, error) {
		l, err := api.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return "", false, err
		}
		return l.ResourceVersion, ok(l.Items), nil
	}, func(ctx context.Context, rv string) (watchIface, error) {
		return api.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: rv})
	})
}

func endpointReady(ep discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

// setWeights writes t into the HTTPRoute: in every rule that routes to the app (a backendRef
// naming the production Service or a colour Service), the backendRefs become the two colour
// Services with t's weights. A route without rules gets one.
func (p *Provider) setWeights(ctx context.Context, t teal.Traffic) error {
	routes := p.dyn.Resource(HTTPRouteResource).Namespace(p.ns)
	name := p.opts.Kube.HTTPRoute
	ours := map[string]bool{p.opts.Kube.Service: true, p.colorService(teal.Blue): true, p.colorService(teal.Green): true}
	refs := []any{}
	for _, c := range teal.Colors {
		refs = append(refs, map[string]any{
			"group": "", "kind": "Service", "name": p.colorService(c),
			"port": int64(ServicePort), "weight": int64(t.Of(c)),
		})
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := routes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		rules, _, err := unstructured.NestedSlice(u.Object, "spec", "rules")
		if err != nil {
			return err
		}
		if len(rules) == 0 {
			rules = []any{map[string]any{}}
		}
		n := 0
		for i, r := range rules {
			rule, ok := r.(map[string]any)
			if !ok {
				continue
			}
			brs, _, _ := unstructured.NestedSlice(rule, "backendRefs")
			match := len(brs) == 0 && len(rules) == 1
			for _, b := range brs {
				if bm, ok := b.(map[string]any); ok && ours[fmt.Sprint(bm["name"])] {
					match = true
				}
			}
			if !match {
				continue
			}
			rule["backendRefs"] = refs
			rules[i] = rule
			n++
		}
		if n == 0 {
			return teal.Errorf(teal.ErrInvalid, "point a rule's backendRefs at service "+p.opts.Kube.Service+" or "+p.colorService(teal.Blue),
				"httproute %s/%s: no rule routes to %s, %s or %s", p.ns, name, p.opts.Kube.Service, p.colorService(teal.Blue), p.colorService(teal.Green))
		}
		if err := unstructured.SetNestedSlice(u.Object, rules, "spec", "rules"); err != nil {
			return err
		}
		_, err = routes.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("httproute %s/%s weights %d/%d: %w", p.ns, name, t.Blue, t.Green, err)
	}
	return nil
}

// weights reads the colour backends' weights from the HTTPRoute (false when it has none).
func (p *Provider) weights(ctx context.Context) (teal.Traffic, bool, error) {
	u, err := p.dyn.Resource(HTTPRouteResource).Namespace(p.ns).Get(ctx, p.opts.Kube.HTTPRoute, metav1.GetOptions{})
	if err != nil {
		return teal.Traffic{}, false, fmt.Errorf("httproute %s/%s: %w", p.ns, p.opts.Kube.HTTPRoute, err)
	}
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	var w [2]int64
	found := false
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		brs, _, _ := unstructured.NestedSlice(rule, "backendRefs")
		for _, b := range brs {
			bm, _ := b.(map[string]any)
			for i, c := range teal.Colors {
				if bm["name"] == p.colorService(c) {
					wt, ok := bm["weight"].(int64)
					if !ok {
						wt = 1 // the Gateway API default
					}
					w[i] = wt
					found = true
				}
			}
		}
		if found {
			break
		}
	}
	if !found || w[0]+w[1] == 0 {
		return teal.Traffic{}, false, nil
	}
	blue := int(w[0] * 100 / (w[0] + w[1]))
	return teal.Traffic{Blue: blue, Green: 100 - blue}, true, nil
}

// PreviewURL is where the preview Service answers inside the cluster (its DNS name), for smoke
// checks run by a teal inside the cluster; "" without kubernetes.preview_service.
func (p *Provider) PreviewURL() string {
	if p.opts.Kube.PreviewService == "" {
		return ""
	}
	return fmt.Sprintf("http://%s.%s.svc:%d", p.opts.Kube.PreviewService, p.ns, ServicePort)
}
