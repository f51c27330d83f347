package kube_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"teal.dev/teal"
	"teal.dev/teal/internal/kubetest"
	"teal.dev/teal/internal/testutil"
	"teal.dev/teal/kube"
)

// fixture is one test's namespace, with teal's Role from docs/kubernetes.md bound to the user
// "teal", and a Provider running as that user.
type fixture struct {
	t    *testing.T
	c    *kubetest.Cluster
	ns   string
	opts kube.Options
	p    *kube.Provider
}

func newFixture(t *testing.T, mod func(*kube.Options)) *fixture {
	t.Helper()
	c := env.Need(t)
	f := &fixture{t: t, c: c, ns: c.Namespace(t)}
	f.grantRole()
	f.opts = kube.Options{
		App: "shop",
		Kube: teal.KubernetesConfig{
			Namespace: f.ns, Image: "registry.example/shop", PreviewService: "shop-preview",
		},
		Instances:   2,
		Env:         map[string]string{"LOG_LEVEL": "debug"},
		StopTimeout: time.Second,
		Health: teal.HealthConfig{Path: "/healthz", Interval: time.Second, Timeout: time.Second,
			HealthyAfter: 1, UnhealthyAfter: 3, Deadline: 90 * time.Second},
	}
	if mod != nil {
		mod(&f.opts)
	}
	f.p = f.provider(nil)
	return f
}

// provider returns a new Provider as the user "teal" (a restarted teal is a new one).
func (f *fixture) provider(wrap func(http.RoundTripper) http.RoundTripper) *kube.Provider {
	f.t.Helper()
	rc := f.c.Config("teal")
	rc.WrapTransport = wrap
	p, err := kube.NewForConfig(rc, f.opts)
	if err != nil {
		f.t.Fatalf("NewForConfig: %v", err)
	}
	return p
}

// grantRole applies the Role printed in docs/kubernetes.md and binds it to the user "teal".
func (f *fixture) grantRole() {
	f.t.Helper()
	f.c.GrantDocRole(f.t, filepath.Join("..", "docs", "kubernetes.md"), f.ns, "teal")
}

func digestOf(version string) string {
	sum := sha256.Sum256([]byte(version))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func launchReq(c teal.Color, version string) teal.LaunchRequest {
	return teal.LaunchRequest{Color: c, Version: version, Digest: digestOf(version),
		Env: map[string]string{"DATABASE_URL": "postgres://shop_" + string(c) + "@db/shop"}}
}

func (f *fixture) launch(c teal.Color, version string) []teal.Instance {
	f.t.Helper()
	start := time.Now()
	insts, err := f.p.Launch(context.Background(), launchReq(c, version))
	if err != nil {
		f.t.Fatalf("Launch(%s, %s): %v", c, version, err)
	}
	f.t.Logf("Launch(%s, %s): %d instances in %s", c, version, len(insts), time.Since(start).Round(time.Millisecond))
	if len(insts) != f.opts.Instances {
		f.t.Fatalf("Launch(%s, %s) = %d instances, want %d", c, version, len(insts), f.opts.Instances)
	}
	return insts
}

func (f *fixture) route(r teal.Routes) {
	f.t.Helper()
	start := time.Now()
	if err := f.p.Route(context.Background(), r); err != nil {
		f.t.Fatalf("Route(%+v): %v", r, err)
	}
	f.t.Logf("Route(%+v) in %s", r, time.Since(start).Round(time.Millisecond))
}

// selects returns the colour a Service selects.
func (f *fixture) selects(svc string) teal.Color {
	f.t.Helper()
	return f.c.Selects(f.t, f.ns, svc)
}

// endpointColors returns the colours of the pods in a Service's EndpointSlices, one entry per
// ready endpoint, sorted.
func (f *fixture) endpointColors(svc string) []string {
	f.t.Helper()
	return f.c.EndpointColors(f.t, f.ns, svc)
}

func (f *fixture) wantEndpoints(svc string, want ...string) {
	f.t.Helper()
	if got := f.endpointColors(svc); !slices.Equal(got, want) {
		f.t.Fatalf("endpoints of %s = %v, want %v", svc, got, want)
	}
}

func (f *fixture) annotation(c teal.Color, key string) string {
	f.t.Helper()
	d, err := f.c.Client.AppsV1().Deployments(f.ns).Get(context.Background(), f.p.DeploymentName(c), metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("get deployment: %v", err)
	}
	return d.Annotations[key]
}

// TestProvider_Release takes v1 to production, then v2 through preview, promotion, rollback
// and the retirement of the standby colour, checking the Services' EndpointSlices at each step.
func TestProvider_Release(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()

	// Nothing live yet: routing nothing is a no-op, not an error.
	f.route(teal.Routes{})

	blue := f.launch(teal.Blue, "v1")
	for i, in := range blue {
		if in.Index != i || in.Addr == "" || in.Identity == "" || in.Color != teal.Blue {
			t.Fatalf("instance %d = %+v, want index %d, an address and an identity", i, in, i)
		}
	}
	d, err := f.c.Client.AppsV1().Deployments(f.ns).Get(ctx, "shop-blue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := d.Spec.Template.Spec.Containers[0]
	if got, want := tmpl.Image, "registry.example/shop@"+digestOf("v1"); got != want {
		t.Fatalf("image = %q, want %q", got, want)
	}
	if got := tmpl.ReadinessProbe.HTTPGet.Path; got != "/healthz" {
		t.Fatalf("readiness probe path = %q, want /healthz", got)
	}
	if got := d.Spec.Template.Labels; got[kube.LabelApp] != "shop" || got[kube.LabelColor] != "blue" || got[kube.LabelVersion] != "v1" {
		t.Fatalf("pod labels = %v, want app=shop, color blue, version v1", got)
	}
	for _, e := range tmpl.Env {
		if e.Name == "DATABASE_URL" {
			t.Fatalf("DATABASE_URL is in the Deployment in the clear: %+v", e)
		}
	}
	sec, err := f.c.Client.CoreV1().Secrets(f.ns).Get(ctx, "shop-blue-env", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("secret: %v", err)
	}
	if got := string(sec.Data["DATABASE_URL"]); got != "postgres://shop_blue@db/shop" {
		t.Fatalf("secret DATABASE_URL = %q", got)
	}
	if len(d.OwnerReferences) != 1 || d.OwnerReferences[0].Name != "shop-teal" {
		t.Fatalf("deployment owners = %+v, want the ConfigMap shop-teal", d.OwnerReferences)
	}

	// First release: all to blue.
	f.route(teal.Routes{Traffic: teal.All(teal.Blue)})
	if got := f.selects("shop"); got != teal.Blue {
		t.Fatalf("shop selects %q, want blue", got)
	}
	f.wantEndpoints("shop", "blue/v1", "blue/v1")

	// v2 on green, previewed.
	f.launch(teal.Green, "v2")
	f.route(teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	if got := f.selects("shop-preview"); got != teal.Green {
		t.Fatalf("shop-preview selects %q, want green", got)
	}
	testutil.WaitFor(t, 30*time.Second, "preview endpoints green/v2", func() bool {
		return slices.Equal(f.endpointColors("shop-preview"), []string{"green/v2", "green/v2"})
	})
	f.wantEndpoints("shop", "blue/v1", "blue/v1")

	// Promote: green takes production, blue stays at full size as standby.
	f.route(teal.Routes{Traffic: teal.All(teal.Green), Preview: teal.Blue})
	f.wantEndpoints("shop", "green/v2", "green/v2") // Route returns only once the slices hold green only
	if err := f.p.Drain(ctx, teal.Blue); err != nil {
		t.Fatalf("Drain(blue): %v", err)
	}
	if got := f.annotation(teal.Blue, kube.AnnotationState); got != string(teal.EnvStandby) {
		t.Fatalf("blue state = %q, want standby", got)
	}
	if got := f.annotation(teal.Green, kube.AnnotationState); got != string(teal.EnvLive) {
		t.Fatalf("green state = %q, want live", got)
	}
	d, _ = f.c.Client.AppsV1().Deployments(f.ns).Get(ctx, "shop-blue", metav1.GetOptions{})
	if d.Status.ReadyReplicas != 2 {
		t.Fatalf("standby blue ready replicas = %d, want 2", d.Status.ReadyReplicas)
	}

	// Rollback: the selector flips back to the warm standby.
	f.route(teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	f.wantEndpoints("shop", "blue/v1", "blue/v1")

	// Promote again, then retire blue (keep_old over): scaled to zero, object kept.
	f.route(teal.Routes{Traffic: teal.All(teal.Green), Preview: teal.Blue})
	if err := f.p.Stop(ctx, teal.Blue); err != nil {
		t.Fatalf("Stop(blue): %v", err)
	}
	pods, err := f.c.Client.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "teal.dev/color=blue"})
	if err != nil || len(pods.Items) != 0 {
		t.Fatalf("blue pods after Stop = %d (%v), want 0", len(pods.Items), err)
	}
	if got := f.annotation(teal.Blue, kube.AnnotationVersion); got != "v1" {
		t.Fatalf("stopped blue keeps version %q, want v1", got)
	}
	f.wantEndpoints("shop", "green/v2", "green/v2")
	// Rolling back to a stopped colour is refused, and changes nothing.
	err = f.p.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)})
	if !errors.Is(err, teal.ErrConflict) {
		t.Fatalf("Route(all blue) after Stop(blue) = %v, want ErrConflict", err)
	}
	if got := f.selects("shop"); got != teal.Green {
		t.Fatalf("shop selects %q after a refused switch, want green", got)
	}
}

// TestProvider_NeverReady launches a version whose pods never become ready: the launch fails
// within health.deadline naming the pods' reasons and events, production is untouched, and a
// switch to that colour is refused.
func TestProvider_NeverReady(t *testing.T) {
	f := newFixture(t, func(o *kube.Options) { o.Health.Deadline = 8 * time.Second })
	ctx := context.Background()
	f.launch(teal.Blue, "v1")
	f.route(teal.Routes{Traffic: teal.All(teal.Blue)})

	// The artifact is an image artifact: a file holding the pinned reference.
	art := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(art, []byte(kubetest.NeverReadyImage+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref, err := kube.ParseImageRef(kubetest.NeverReadyImage)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = f.p.Launch(ctx, teal.LaunchRequest{Color: teal.Green, Version: "v2", Digest: ref.Digest, Artifact: art})
	took := time.Since(start)
	if err == nil {
		t.Fatal("Launch of a never-ready image succeeded, want an error")
	}
	t.Logf("Launch failed after %s:\n%v", took.Round(time.Millisecond), err)
	for _, want := range []string{"shop-green", "CrashLoopBackOff", "Warning BackOff", "exit 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Launch error does not mention %q:\n%v", want, err)
		}
	}
	if took > 30*time.Second {
		t.Fatalf("Launch took %s, want about health.deadline (8s)", took)
	}
	f.wantEndpoints("shop", "blue/v1", "blue/v1")

	f.p.SwitchTimeout = 2 * time.Second
	err = f.p.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green)})
	if !errors.Is(err, teal.ErrNotHealthy) || !strings.Contains(err.Error(), "0 ready endpoints of 2") {
		t.Fatalf("Route(all green) = %v, want ErrNotHealthy with 0 ready endpoints of 2", err)
	}
	if got := f.selects("shop"); got != teal.Blue {
		t.Fatalf("shop selects %q after a refused switch, want blue", got)
	}
	f.wantEndpoints("shop", "blue/v1", "blue/v1")
}

// TestProvider_Weighted carries weighted steps in an HTTPRoute's backend weights, and refuses a
// split without one.
func TestProvider_Weighted(t *testing.T) {
	c := env.Need(t)
	ctx := context.Background()
	if err := c.ApplyFile(ctx, "", "crds/httproutes.yaml"); err != nil {
		t.Fatalf("install the HTTPRoute CRD: %v", err)
	}

	// Without kubernetes.httproute a split is refused, with the reason.
	plain := newFixture(t, nil)
	plain.launch(teal.Blue, "v1")
	err := plain.p.Route(ctx, teal.Routes{Traffic: teal.Traffic{Blue: 90, Green: 10}})
	if !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), "kubernetes.httproute") {
		t.Fatalf("weighted Route without httproute = %v, want ErrInvalid naming kubernetes.httproute", err)
	}

	f := newFixture(t, func(o *kube.Options) { o.Kube.HTTPRoute = "shop" })
	route := `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gateway}]
  hostnames: [shop.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: shop, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: cdn, port: 80}]
`
	if err := f.c.Apply(ctx, f.ns, strings.NewReader(route)); err != nil {
		t.Fatalf("create httproute: %v", err)
	}
	f.launch(teal.Blue, "v1")
	f.route(teal.Routes{Traffic: teal.All(teal.Blue)})
	f.launch(teal.Green, "v2")
	for _, step := range []teal.Traffic{{Blue: 90, Green: 10}, {Blue: 50, Green: 50}, {Green: 100}} {
		f.route(teal.Routes{Traffic: step, Epoch: 7})
		if got, want := f.weights(), fmt.Sprintf("shop-blue=%d shop-green=%d | cdn=1", step.Blue, step.Green); got != want {
			t.Fatalf("after %+v: httproute backends = %q, want %q", step, got, want)
		}
	}
	// All to green also moved the Service; the rebuilt state shows the split.
	if got := f.selects("shop"); got != teal.Green {
		t.Fatalf("shop selects %q, want green", got)
	}
	sys, err := f.provider(nil).System(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.Live != teal.Green || sys.Traffic != teal.All(teal.Green) {
		t.Fatalf("System() live %q traffic %+v, want green, all green", sys.Live, sys.Traffic)
	}
	f.route(teal.Routes{Traffic: teal.Traffic{Blue: 25, Green: 75}})
	sys, err = f.provider(nil).System(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (teal.Traffic{Blue: 25, Green: 75}); sys.Traffic != want {
		t.Fatalf("System() traffic %+v, want %+v", sys.Traffic, want)
	}
}

// weights renders the HTTPRoute's backends per rule: "name=weight ... | ...".
func (f *fixture) weights() string {
	f.t.Helper()
	return f.c.RouteWeights(f.t, f.ns, "shop")
}

// TestProvider_RestartMidRelease drops the Provider mid-release (v2 provisioned and previewed,
// v1 live) and rebuilds everything from the cluster with a new one, which then finishes the
// release without a new rollout.
func TestProvider_RestartMidRelease(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.launch(teal.Blue, "v1")
	f.route(teal.Routes{Traffic: teal.All(teal.Blue)})
	green := f.launch(teal.Green, "v2")
	f.route(teal.Routes{Traffic: teal.All(teal.Blue), Preview: teal.Green})
	replicaSets := func() []string { return f.c.ReplicaSets(t, f.ns, teal.Green) }
	before := replicaSets()

	// teal restarts: a new Provider, no memory of the old one.
	p2 := f.provider(nil)
	sys, err := p2.System(ctx)
	if err != nil {
		t.Fatalf("System: %v", err)
	}
	if sys.Live != teal.Blue || sys.Traffic != teal.All(teal.Blue) {
		t.Fatalf("rebuilt live %q traffic %+v, want blue, all blue", sys.Live, sys.Traffic)
	}
	for _, tc := range []struct {
		c              teal.Color
		version, state string
	}{{teal.Blue, "v1", "live"}, {teal.Green, "v2", "ready"}} {
		e := sys.Env(tc.c)
		if e.Version != tc.version || e.Digest != digestOf(tc.version) || string(e.State) != tc.state || len(e.Instances) != 2 {
			t.Fatalf("rebuilt %s = version %q digest %q state %q %d instances, want %s %s %s 2",
				tc.c, e.Version, e.Digest, e.State, len(e.Instances), tc.version, digestOf(tc.version), tc.state)
		}
	}

	// The resumed release adopts green: same pods, no new rollout.
	adopted, err := p2.Adopt(ctx, launchReq(teal.Green, "v2"), sys.Env(teal.Green).Instances)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if len(adopted) != len(green) {
		t.Fatalf("Adopt = %d instances, want %d", len(adopted), len(green))
	}
	for i := range green {
		if adopted[i].Identity != green[i].Identity {
			t.Fatalf("adopted instance %d is pod %s, launched was %s: Adopt rolled out again", i, adopted[i].Identity, green[i].Identity)
		}
	}
	if after := replicaSets(); !slices.Equal(after, before) {
		t.Fatalf("ReplicaSets of green %v → %v after Adopt, want no new rollout", before, after)
	}
	// Adopting a different version relaunches.
	if _, err := p2.Adopt(ctx, launchReq(teal.Green, "v3"), nil); err != nil {
		t.Fatalf("Adopt(v3): %v", err)
	}
	if got := f.annotation(teal.Green, kube.AnnotationVersion); got != "v3" {
		t.Fatalf("green runs %q after Adopt(v3), want v3", got)
	}

	// Adopting the live colour leaves it live.
	if _, err := p2.Adopt(ctx, launchReq(teal.Blue, "v1"), nil); err != nil {
		t.Fatalf("Adopt(blue v1): %v", err)
	}
	if got := f.annotation(teal.Blue, kube.AnnotationState); got != string(teal.EnvLive) {
		t.Fatalf("blue state after Adopt = %q, want live", got)
	}
	if err := p2.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green), Preview: teal.Blue}); err != nil {
		t.Fatalf("Route after restart: %v", err)
	}
	f.wantEndpoints("shop", "green/v3", "green/v3")
	sys, err = f.provider(nil).System(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.Live != teal.Green || sys.Env(teal.Blue).State != teal.EnvStandby || sys.Env(teal.Green).State != teal.EnvLive {
		t.Fatalf("rebuilt after promotion: live %q, blue %q, green %q; want green, standby, live",
			sys.Live, sys.Env(teal.Blue).State, sys.Env(teal.Green).State)
	}
}

// TestProvider_Conflict makes the API server answer 409 to teal's first update of the
// production Service (someone else updates it in between) and checks that the switch re-reads
// and retries, keeping the other writer's change.
func TestProvider_Conflict(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.launch(teal.Blue, "v1")
	f.route(teal.Routes{Traffic: teal.All(teal.Blue)})
	f.launch(teal.Green, "v2")

	var interfered, conflicts atomic.Int32
	p := f.provider(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/services/shop") && interfered.Add(1) == 1 {
				// Another writer changes the Service after teal read it.
				err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
					s, err := f.c.Client.CoreV1().Services(f.ns).Get(ctx, "shop", metav1.GetOptions{})
					if err != nil {
						return err
					}
					if s.Annotations == nil {
						s.Annotations = map[string]string{}
					}
					s.Annotations["example.com/owner"] = "platform-team"
					_, err = f.c.Client.CoreV1().Services(f.ns).Update(ctx, s, metav1.UpdateOptions{})
					return err
				})
				if err != nil {
					return nil, err
				}
			}
			resp, err := rt.RoundTrip(req)
			if err == nil && resp.StatusCode == http.StatusConflict {
				conflicts.Add(1)
			}
			return resp, err
		})
	})
	if err := p.Route(ctx, teal.Routes{Traffic: teal.All(teal.Green)}); err != nil {
		t.Fatalf("Route with a concurrent writer: %v", err)
	}
	if got := conflicts.Load(); got < 1 {
		t.Fatalf("the API server answered 409 %d times, want at least 1 (the test did not interfere)", got)
	}
	s, err := f.c.Client.CoreV1().Services(f.ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Spec.Selector[kube.LabelColor]; got != "green" {
		t.Fatalf("selector colour = %q, want green", got)
	}
	if got := s.Annotations["example.com/owner"]; got != "platform-team" {
		t.Fatalf("the other writer's annotation = %q, want platform-team (lost update)", got)
	}
	f.wantEndpoints("shop", "green/v2", "green/v2")
}

// TestProvider_ExistingService keeps the ports of a Service teal did not create.
func TestProvider_ExistingService(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	_, err := f.c.Client.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "shop", "tier": "web"},
			Ports:    []corev1.ServicePort{{Name: "web", Port: 8443}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.launch(teal.Blue, "v1")
	// tier=web is not on teal's pods: switching would select none of them, so it is refused.
	err = f.p.Route(ctx, teal.Routes{Traffic: teal.All(teal.Blue)})
	if !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), "tier=web") {
		t.Fatalf("Route with selector tier=web = %v, want ErrInvalid naming tier=web", err)
	}
	if got := f.selects("shop"); got != "" {
		t.Fatalf("shop selects colour %q after a refused switch, want none", got)
	}
	s, err := f.c.Client.CoreV1().Services(f.ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(s.Spec.Selector, "tier")
	if _, err := f.c.Client.CoreV1().Services(f.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.route(teal.Routes{Traffic: teal.All(teal.Blue)})
	s, err = f.c.Client.CoreV1().Services(f.ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 8443 || s.Spec.Selector[kube.LabelColor] != "blue" {
		t.Fatalf("service = ports %+v selector %v, want its own port 8443, colour blue", s.Spec.Ports, s.Spec.Selector)
	}
	f.wantEndpoints("shop", "blue/v1", "blue/v1")
	if len(s.OwnerReferences) != 0 {
		t.Fatalf("teal took ownership of a Service it did not create: %+v", s.OwnerReferences)
	}
}

// TestProvider_Forbidden: a user without the Role gets the API server's refusal, named.
func TestProvider_Forbidden(t *testing.T) {
	c := env.Need(t)
	ns := c.Namespace(t)
	p, err := kube.NewForConfig(c.Config("nobody"), kube.Options{App: "shop", Instances: 1,
		Kube: teal.KubernetesConfig{Namespace: ns, Image: "registry.example/shop"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Launch(context.Background(), launchReq(teal.Blue, "v1"))
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), ns) {
		t.Fatalf("Launch as nobody = %v, want a forbidden error naming the namespace", err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRESTConfig(t *testing.T) {
	dir := t.TempDir()
	kc := func(name, server string) string {
		path := filepath.Join(dir, name)
		body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: %s}}
- {name: b, cluster: {server: https://b.example:6443}}
users: [{name: u, user: {token: t}}]
contexts:
- {name: a, context: {cluster: a, user: u}}
- {name: b, context: {cluster: b, user: u}}
current-context: a
`, server)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	explicit := kc("explicit", "https://explicit.example:6443")
	viaEnv := kc("env", "https://env.example:6443")
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(kc("home", "https://home.example:6443"))
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "tilde"), bytes.ReplaceAll(b, []byte("home.example"), []byte("tilde.example")), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a cluster
	t.Setenv("HOME", home)

	tests := []struct {
		name, kubeconfig, context, env string
		want                           string // host, or "error:<substring>"
	}{
		{name: "explicit file", kubeconfig: explicit, want: "https://explicit.example:6443"},
		{name: "explicit context", kubeconfig: explicit, context: "b", want: "https://b.example:6443"},
		{name: "KUBECONFIG", env: viaEnv, want: "https://env.example:6443"},
		{name: "home", want: "https://home.example:6443"},
		{name: "tilde", kubeconfig: "~/tilde", want: "https://tilde.example:6443"},
		{name: "missing file", kubeconfig: filepath.Join(dir, "nope"), want: "error:nope"},
		{name: "unknown context", kubeconfig: explicit, context: "zz", want: "error:zz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.env)
			rc, err := kube.RESTConfig(tc.kubeconfig, tc.context)
			if want, isErr := strings.CutPrefix(tc.want, "error:"); isErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("RESTConfig(%q, %q) error = %v, want one naming %q", tc.kubeconfig, tc.context, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("RESTConfig(%q, %q): %v", tc.kubeconfig, tc.context, err)
			}
			if rc.Host != tc.want {
				t.Fatalf("RESTConfig(%q, %q).Host = %q, want %q", tc.kubeconfig, tc.context, rc.Host, tc.want)
			}
		})
	}
}

func TestNewForConfig_Validates(t *testing.T) {
	tests := []struct {
		name string
		opts kube.Options
		want string
	}{
		{"bad app", kube.Options{App: "Shop"}, `app "Shop"`},
		{"bad service", kube.Options{App: "shop", Kube: teal.KubernetesConfig{Service: "a_b"}}, "kubernetes.service"},
		{"preview is production", kube.Options{App: "shop", Kube: teal.KubernetesConfig{Service: "x", PreviewService: "x"}}, "preview_service"},
		{"bad port", kube.Options{App: "shop", Kube: teal.KubernetesConfig{Port: 70000}}, "kubernetes.port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kube.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"}, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewForConfig error = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// TestHealth_PodReadiness follows the pods' Ready condition: the set of ready addresses, Wait,
// and the reasons of pods that are not ready.
func TestHealth_PodReadiness(t *testing.T) {
	f := newFixture(t, func(o *kube.Options) { o.Health.Deadline = 5 * time.Second })
	ctx := context.Background()
	blue := f.launch(teal.Blue, "v1")
	h := f.p.Health()
	var latest atomic.Pointer[[]string]
	var calls atomic.Int32
	h.Watch(teal.Blue, blue, func(healthy []string) {
		calls.Add(1)
		latest.Store(&healthy)
	})
	defer h.Unwatch(teal.Blue)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.Wait(wctx, teal.Blue); err != nil {
		t.Fatalf("Wait(blue): %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "onChange with 2 ready pods", func() bool {
		l := latest.Load()
		return l != nil && len(*l) == 2
	})
	want := []string{blue[0].Addr, blue[1].Addr}
	slices.Sort(want)
	if got := *latest.Load(); !slices.Equal(got, want) {
		t.Fatalf("healthy = %v, want the instances' addresses %v", got, want)
	}
	if st := h.State(teal.Blue); len(st) != 2 || !st[0].Healthy || !st[1].Healthy {
		t.Fatalf("State(blue) = %+v, want 2 healthy", st)
	}

	// A colour whose pods never get ready: Wait names them and their reason.
	art := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(art, []byte(kubetest.NeverReadyImage), 0o644); err != nil {
		t.Fatal(err)
	}
	ref, _ := kube.ParseImageRef(kubetest.NeverReadyImage)
	if _, err := f.p.Launch(ctx, teal.LaunchRequest{Color: teal.Green, Version: "bad", Digest: ref.Digest, Artifact: art}); err == nil {
		t.Fatal("Launch of a never-ready image succeeded")
	}
	h.Watch(teal.Green, make([]teal.Instance, 2), func([]string) {})
	defer h.Unwatch(teal.Green)
	wctx2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	err := h.Wait(wctx2, teal.Green)
	if err == nil || !strings.Contains(err.Error(), "0 of 2 pods ready") || !strings.Contains(err.Error(), "CrashLoopBackOff") {
		t.Fatalf("Wait(green) = %v, want 0 of 2 ready with CrashLoopBackOff", err)
	}

	// Stopping blue empties its healthy set.
	n := calls.Load()
	if err := f.p.Stop(ctx, teal.Blue); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "onChange with no ready pod", func() bool {
		l := latest.Load()
		return calls.Load() > n && l != nil && len(*l) == 0
	})
}

// TestHealth_Probe: an instance passes the probe while its pod is Ready, and fails it by name
// when the pod is gone.
func TestHealth_Probe(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	blue := f.launch(teal.Blue, "v1")
	h := f.p.Health()
	for _, in := range blue {
		if err := h.Probe(ctx, in); err != nil {
			t.Fatalf("Probe(%s) of a ready pod: %v", in.Identity, err)
		}
	}
	gone := blue[0]
	gone.Identity = "00000000-0000-0000-0000-000000000000"
	if err := h.Probe(ctx, gone); err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("Probe of a pod that does not exist = %v, want an error saying it is gone", err)
	}
}
