package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"teal.dev/teal"
	"teal.dev/teal/internal/kubetest"
	"teal.dev/teal/kube"
)

// The package's Kubernetes control plane (etcd, kube-apiserver, controller manager, scheduler,
// kwok), started by the first test that needs it and stopped after the last.
var (
	kubeOnce sync.Once
	kubeEnv  kubetest.Env
)

func needKube(t *testing.T) *kubetest.Cluster {
	t.Helper()
	kubeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		kubeEnv.Cluster, kubeEnv.Err = kubetest.Start(ctx)
	})
	return kubeEnv.Need(t)
}

func stopKube() {
	if kubeEnv.Cluster != nil {
		kubeEnv.Cluster.Stop()
	}
}

// kubeApp is one app released by the teal binary into a namespace of its own, as the user
// "teal" with the Role of docs/kubernetes.md.
type kubeApp struct {
	*harness
	c  *kubetest.Cluster
	ns string
}

// newKubeApp starts `teal server` with provider: kubernetes; extra is more teal.yaml (release:,
// and keys of kubernetes: indented under it).
func newKubeApp(t *testing.T, release, kubeExtra string) *kubeApp {
	t.Helper()
	c := needKube(t)
	ns := c.Namespace(t)
	c.GrantDocRole(t, filepath.Join("..", "docs", "kubernetes.md"), ns, "teal")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, "teal", ns); err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf(`provider: kubernetes
run:
  instances: 2
  stop_timeout: 1s
  env: {LOG_LEVEL: debug}
health:
  interval: 1s
  timeout: 1s
  healthy_after: 1
  deadline: 20s
release:
  approval: manual
  drain_timeout: 1s
  keep_old: 10m
%skubernetes:
  kubeconfig: %s
  namespace: %s
  image: registry.example/shop
  service: shop
  preview_service: shop-preview
%s`, release, kubeconfig, ns, kubeExtra)
	return &kubeApp{harness: newHarness(t, options{raw: raw}), c: c, ns: ns}
}

func imageDigest(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pushImages stores each version as registry.example/shop@<digest of its name>, with the CLI.
func (k *kubeApp) pushImages(versions ...string) {
	k.t.Helper()
	for _, v := range versions {
		if code := runCLI(k.t, k.harness, "artifact", "push", "--image", "registry.example/shop@"+imageDigest(v), "--version", v); code != 0 {
			k.t.Fatalf("teal artifact push --image %s exited %d, want 0", v, code)
		}
	}
}

// wantServing checks that the production Service selects c and its endpoints are exactly c's
// two pods of version v (what kube-proxy would send traffic to).
func (k *kubeApp) wantServing(svc string, c teal.Color, v string) {
	k.t.Helper()
	want := []string{string(c) + "/" + v, string(c) + "/" + v}
	waitFor(k.t, 20*time.Second, fmt.Sprintf("%s to serve %s/%s", svc, c, v), func() bool {
		return k.c.Selects(k.t, k.ns, svc) == c && slices.Equal(k.c.EndpointColors(k.t, k.ns, svc), want)
	})
}

func (k *kubeApp) env(c teal.Color) teal.EnvStatus {
	k.t.Helper()
	for _, e := range k.status().Environments {
		if e.Color == c {
			return e
		}
	}
	k.t.Fatalf("status has no %s environment", c)
	return teal.EnvStatus{}
}

// TestKube_Release runs the teal binary against a real API server: v1 to production, v2
// previewed on the idle colour; then teal is killed mid-release and restarted with an empty
// data_dir, rebuilds its state from the cluster, adopts v2's pods without a new rollout,
// promotes and rolls back.
func TestKube_Release(t *testing.T) {
	k := newKubeApp(t, "", "")
	k.pushImages("v1", "v2")

	if code := runCLI(t, k.harness, "deploy", "v1", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("teal deploy v1 --wait exited %d, want 0:\n%s", code, k.serverLog())
	}
	first := k.waitRelease("v1 released", ended)
	if *first.Outcome != teal.OutcomeReleased {
		t.Fatalf("v1 ended %s: %s", *first.Outcome, first.Error)
	}
	live := first.Color
	k.wantServing("shop", live, "v1")
	// Pods' logs come from the API server, which asks the node; kwok's fake node serves none,
	// so what is checked here is that the failure names the pod and the cause.
	out, err := cliCmd(k.harness, "logs", "--tail", "5").CombinedOutput()
	t.Logf("teal logs --tail 5: %v\n%s", err, out)
	if err == nil || !strings.Contains(string(out), "logs of pod "+k.ns+"/"+k.app+"-"+string(live)) {
		t.Fatalf("teal logs on kwok = %v, %q; want a failure naming the pod", err, out)
	}

	if code := runCLI(t, k.harness, "deploy", "v2", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("teal deploy v2 --wait exited %d, want 0 (at the gate)", code)
	}
	rel := k.waitRelease("v2 at the gate", atGate)
	if rel.Outcome != nil || rel.Color != live.Other() {
		t.Fatalf("v2 = %s on %s, outcome %v; want awaiting release on %s", rel.Phase, rel.Color, rel.Outcome, live.Other())
	}
	k.wantServing("shop-preview", live.Other(), "v2")
	k.wantServing("shop", live, "v1") // production untouched until the decision
	if e := k.env(live.Other()); e.State != teal.EnvReady || len(e.Health) != 2 || !e.Health[0].Healthy || !e.Health[1].Healthy {
		t.Fatalf("status of %s at the gate = %s with health %+v; want ready, 2 healthy pods", live.Other(), e.State, e.Health)
	}
	rollouts := k.c.ReplicaSets(t, k.ns, live.Other())

	// teal dies mid-release and comes back without its state: the cluster tells it what runs
	// where.
	k.kill()
	if err := os.RemoveAll(filepath.Join(k.dir, ".teal")); err != nil {
		t.Fatal(err)
	}
	k.start()
	tok, err := os.ReadFile(filepath.Join(k.dir, ".teal", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	k.client.Token = strings.TrimSpace(string(tok))
	st := k.status()
	if st.Live == nil || st.Live.Color != live || st.Traffic != teal.All(live) {
		t.Fatalf("rebuilt status: live %+v, traffic %+v; want %s with all traffic", st.Live, st.Traffic, live)
	}
	if e := k.env(live); e.Version != "v1" || e.State != teal.EnvLive || len(e.Instances) != 2 {
		t.Fatalf("rebuilt %s: %s %s with %d instances; want v1 live with 2", live, e.Version, e.State, len(e.Instances))
	}
	if e := k.env(live.Other()); e.Version != "v2" || e.State != teal.EnvReady || len(e.Instances) != 2 {
		t.Fatalf("rebuilt %s: %s %s with %d instances; want v2 ready with 2", live.Other(), e.Version, e.State, len(e.Instances))
	}
	k.wantServing("shop", live, "v1")

	// The release again: the pods that run v2 are adopted, not rolled out anew.
	if code := runCLI(t, k.harness, "deploy", "v2", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("teal deploy v2 after the rebuild exited %d, want 0:\n%s", code, k.serverLog())
	}
	if got := k.c.ReplicaSets(t, k.ns, live.Other()); !slices.Equal(got, rollouts) {
		t.Fatalf("ReplicaSets of %s %v → %v: the rebuilt teal rolled v2 out again instead of adopting it", live.Other(), rollouts, got)
	}
	if code := runCLI(t, k.harness, "promote", "--wait"); code != 0 {
		t.Fatalf("teal promote --wait exited %d, want 0:\n%s", code, k.serverLog())
	}
	k.wantServing("shop", live.Other(), "v2")
	k.wantServing("shop-preview", live, "v1") // the standby, warm for a rollback

	if code := runCLI(t, k.harness, "rollback", "--wait"); code != 0 {
		t.Fatalf("teal rollback --wait exited %d, want 0:\n%s", code, k.serverLog())
	}
	k.wantServing("shop", live, "v1")
}

// TestKube_NeverReady: a version whose pods never become ready fails at provisioning with the
// pods' reasons, exit code 1, and production stays on the live colour.
func TestKube_NeverReady(t *testing.T) {
	k := newKubeApp(t, "", "")
	k.pushImages("v1")
	if code := runCLI(t, k.harness, "artifact", "push", "--image", kubetest.NeverReadyImage, "--version", "v2"); code != 0 {
		t.Fatalf("push never-ready image exited %d", code)
	}
	if code := runCLI(t, k.harness, "deploy", "v1", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("teal deploy v1 --wait exited %d, want 0:\n%s", code, k.serverLog())
	}
	live := k.waitRelease("v1 released", ended).Color

	out, err := cliCmd(k.harness, "deploy", "v2", "--wait", "--timeout", "90s").CombinedOutput()
	code := 0
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		code = ee.ExitCode()
	}
	if code != 1 {
		t.Fatalf("teal deploy v2 --wait exited %d (%v), want 1:\n%s", code, err, out)
	}
	rel := k.waitRelease("v2 failed", ended)
	if *rel.Outcome != teal.OutcomeFailed {
		t.Fatalf("v2 ended %s, want failed", *rel.Outcome)
	}
	for _, want := range []string{k.app + "-" + string(live.Other()), "not rolled out within health.deadline", "CrashLoopBackOff"} {
		if !strings.Contains(rel.Error, want) {
			t.Fatalf("release error does not name %q:\n%s", want, rel.Error)
		}
	}
	k.wantServing("shop", live, "v1")
}

// TestKube_Weighted: weighted steps carried by a Gateway API HTTPRoute's backend weights,
// each step seen in the cluster, then all traffic on the new colour.
func TestKube_Weighted(t *testing.T) {
	c := needKube(t)
	if err := c.ApplyFile(context.Background(), "", "crds/httproutes.yaml"); err != nil {
		t.Fatalf("install the HTTPRoute CRD: %v", err)
	}
	k := newKubeApp(t, "  strategy: weighted\n  steps: [10, 50]\n  step_hold: 2s\n", "  httproute: shop\n")
	route := `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: gateway}]
  rules:
  - backendRefs: [{name: shop, port: 80}]
`
	if err := c.Apply(context.Background(), k.ns, strings.NewReader(route)); err != nil {
		t.Fatalf("create httproute: %v", err)
	}
	k.pushImages("v1", "v2")
	if code := runCLI(t, k.harness, "deploy", "v1", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("teal deploy v1 --wait exited %d:\n%s", code, k.serverLog())
	}
	live := k.waitRelease("v1 released", ended).Color
	if code := runCLI(t, k.harness, "deploy", "v2", "--wait", "--timeout", "60s"); code != 0 {
		t.Fatalf("teal deploy v2 --wait exited %d", code)
	}
	// Record every split the HTTPRoute goes through while the release runs, from a watch.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.Dynamic.Resource(kube.HTTPRouteResource).Namespace(k.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=shop"})
	if err != nil {
		t.Fatalf("watch httproute: %v", err)
	}
	defer w.Stop()
	var mu sync.Mutex
	seen := map[string]bool{}
	go func() {
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			mu.Lock()
			seen[kubetest.BackendWeights(u)] = true
			mu.Unlock()
		}
	}()
	name := func(c teal.Color) string { return k.app + "-" + string(c) }
	if code := runCLI(t, k.harness, "promote", "--wait"); code != 0 {
		t.Fatalf("teal promote --wait exited %d:\n%s", code, k.serverLog())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, split := range [][2]int{{90, 10}, {50, 50}} {
		w := map[teal.Color]int{live: split[0], live.Other(): split[1]}
		want := fmt.Sprintf("%s=%d %s=%d", name(teal.Blue), w[teal.Blue], name(teal.Green), w[teal.Green])
		if !seen[want] {
			t.Errorf("the HTTPRoute never held %q; saw %v", want, seen)
		}
	}
	rel := k.waitRelease("v2 released", ended)
	if *rel.Outcome != teal.OutcomeReleased {
		t.Fatalf("v2 ended %s: %s", *rel.Outcome, rel.Error)
	}
	k.wantServing("shop", live.Other(), "v2")
	final := map[teal.Color]int{live.Other(): 100}
	if got, want := k.c.RouteWeights(t, k.ns, "shop"), fmt.Sprintf("%s=%d %s=%d", name(teal.Blue), final[teal.Blue], name(teal.Green), final[teal.Green]); got != want {
		t.Fatalf("httproute after the release = %q, want %q", got, want)
	}
}
