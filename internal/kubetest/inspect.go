package kubetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"teal.dev/teal"
	"teal.dev/teal/kube"
)

// Selects returns the colour Service svc of namespace ns selects ("" for none).
func (c *Cluster) Selects(t testing.TB, ns, svc string) teal.Color {
	t.Helper()
	s, err := c.Client.CoreV1().Services(ns).Get(context.Background(), svc, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service %s/%s: %v", ns, svc, err)
	}
	return teal.Color(s.Spec.Selector[kube.LabelColor])
}

// EndpointColors returns "color/version" of the pod behind each ready endpoint in Service
// svc's EndpointSlices, sorted: what the cluster would really send traffic to.
func (c *Cluster) EndpointColors(t testing.TB, ns, svc string) []string {
	t.Helper()
	ctx := context.Background()
	l, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range l.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
			if err != nil {
				out = append(out, "gone:"+ep.TargetRef.Name)
				continue
			}
			out = append(out, pod.Labels[kube.LabelColor]+"/"+pod.Labels[kube.LabelVersion])
		}
	}
	slices.Sort(out)
	return out
}

// RouteWeights renders HTTPRoute name's backends per rule: "name=weight ... | ...".
func (c *Cluster) RouteWeights(t testing.TB, ns, name string) string {
	t.Helper()
	u, err := c.Dynamic.Resource(kube.HTTPRouteResource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return BackendWeights(u)
}

// BackendWeights renders an HTTPRoute's backends per rule: "name=weight ... | ...".
func BackendWeights(u *unstructured.Unstructured) string {
	rules, _, _ := unstructured.NestedSlice(u.Object, "spec", "rules")
	var parts []string
	for _, r := range rules {
		brs, _, _ := unstructured.NestedSlice(r.(map[string]any), "backendRefs")
		var b []string
		for _, x := range brs {
			m := x.(map[string]any)
			b = append(b, fmt.Sprintf("%v=%v", m["name"], m["weight"]))
		}
		parts = append(parts, strings.Join(b, " "))
	}
	return strings.Join(parts, " | ")
}

// ReplicaSets names colour c's ReplicaSets in namespace ns, sorted: a new name is a new rollout.
func (c *Cluster) ReplicaSets(t testing.TB, ns string, color teal.Color) []string {
	t.Helper()
	l, err := c.Client.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelColor + "=" + string(color)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, rs := range l.Items {
		names = append(names, rs.Name)
	}
	slices.Sort(names)
	return names
}
