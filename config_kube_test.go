package teal

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfig_Kubernetes(t *testing.T) {
	cfg := mustParseConfig(t, `app: shop
provider: kubernetes
kubernetes:
  kubeconfig: ~/.kube/prod
  context: prod
  namespace: shop-prod
  image: registry.example/shop
  port: 9090
  preview_service: shop-preview
  httproute: shop
release:
  strategy: weighted
  steps: [10, 50]
`, nil)
	want := KubernetesConfig{Kubeconfig: "~/.kube/prod", Context: "prod", Namespace: "shop-prod", Image: "registry.example/shop",
		Port: 9090, Service: "shop", PreviewService: "shop-preview", HTTPRoute: "shop"}
	if cfg.Kubernetes != want {
		t.Errorf("kubernetes = %+v\nwant %+v", cfg.Kubernetes, want)
	}
	if cfg.Router != "none" {
		t.Errorf("router = %q, want none (the default with provider: kubernetes)", cfg.Router)
	}

	// Defaults: namespace default, port 8080, service = app.
	cfg = mustParseConfig(t, "app: shop\nprovider: kubernetes\nrouter: none\n", nil)
	if got, want := cfg.Kubernetes, (KubernetesConfig{Namespace: "default", Port: 8080, Service: "shop"}); got != want {
		t.Errorf("defaults: kubernetes = %+v, want %+v", got, want)
	}
	// Other providers keep the built-in router.
	if cfg := mustParseConfig(t, "app: shop\n", nil); cfg.Router != "builtin" || cfg.Kubernetes.Service != "" {
		t.Errorf("provider local: router %q, kubernetes.service %q; want builtin and empty", cfg.Router, cfg.Kubernetes.Service)
	}
}

func TestParseConfig_KubernetesErrors(t *testing.T) {
	k := "provider: kubernetes\n"
	checkOneConfigError(t, []configErrorCase{
		{"section without the provider", "kubernetes: {namespace: shop}", "kubernetes", "only used with provider: kubernetes"},
		{"router none elsewhere", "router: none", "router", "none is for provider: kubernetes"},
		{"builtin router", k + "router: builtin", "router", "the Service is the router: set router: none"},
		{"haproxy router", k + "router: haproxy\nhaproxy: {socket: /x.sock, backend: b}", "router", "set router: none"},
		{"bad provider", "provider: nomad", "provider", "want local, exec or kubernetes"},
		{"bad router", "router: envoy", "router", "want builtin, haproxy or none"},
		{"namespace", k + "kubernetes: {namespace: Shop_Prod}", "kubernetes.namespace", "want a Kubernetes name"},
		{"empty namespace", k + "kubernetes: {namespace: ''}", "kubernetes.namespace", "want a Kubernetes name"},
		{"service", k + "kubernetes: {service: shop.prod}", "kubernetes.service", "want a Kubernetes name"},
		{"long httproute", k + "kubernetes: {httproute: " + strings.Repeat("a", 64) + "}", "kubernetes.httproute", "at most 63 characters"},
		{"preview is production", k + "kubernetes: {service: shop, preview_service: shop}", "kubernetes.preview_service", "is the production service too"},
		{"preview defaults to app", k + "kubernetes: {preview_service: shop}", "kubernetes.preview_service", "is the production service too"},
		{"port", k + "kubernetes: {port: 70000}", "kubernetes.port", "want the container port"},
		{"port zero", k + "kubernetes: {port: 0}", "kubernetes.port", "1..65535"},
		{"image with digest", k + "kubernetes: {image: 'registry.example/shop@sha256:00'}", "kubernetes.image", "without digest"},
		{"image with tag only", k + "kubernetes: {image: 'shop:latest'}", "kubernetes.image", "without digest"},
		{"unknown key", k + "kubernetes: {namspace: x}", "kubernetes.namspace", "did you mean namespace"},
		{"preview listener", k + "preview: 127.0.0.1:8081", "preview", "kubernetes.preview_service is the preview"},
		{"listen", k + "listen: 127.0.0.1:9999", "listen", "enters through kubernetes.service"},
		{"weighted without httproute", k + "release: {strategy: weighted, steps: [10]}", "release.strategy", "needs kubernetes.httproute"},
		{"post_check", k + "release: {post_check: 1m}", "release.post_check", "per-colour request counts"},
		{"analysis", k + "release: {analysis: {max_error_rate: 2%}}", "release.analysis", "weighted steps advance after step_hold"},
		{"shadow", k + "verify: {shadow: {percent: 5}}", "verify.shadow", "needs router: builtin"},
		{"run.command", k + "run: {command: [./app]}", "run.command", "not used with provider: kubernetes"},
		{"run.restart", k + "run: {restart: never}", "run.restart", "the kubelet restarts it"},
		{"dns", k + "dns: {provider: builtin, zone: example.test., record: shop.example.test., targets: {blue: 127.0.0.2, green: 127.0.0.3}}", "dns", "not used with provider: kubernetes"},
	})
}

func TestLoadConfig_KubeconfigPath(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ in, want string }{
		{"kube/config", filepath.Join(dir, "kube", "config")},
		{"~/.kube/prod", "~/.kube/prod"}, // the kube package expands ~/ for the user teal runs as
		{"/etc/teal/kubeconfig", "/etc/teal/kubeconfig"},
	} {
		path := filepath.Join(dir, "teal.yaml")
		writeConfigFile(t, path, "app: shop\nprovider: kubernetes\nkubernetes: {kubeconfig: '"+tc.in+"'}\n")
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Kubernetes.Kubeconfig != tc.want {
			t.Errorf("kubeconfig %q resolved to %q, want %q", tc.in, cfg.Kubernetes.Kubeconfig, tc.want)
		}
	}
}

// TestExampleKubernetesConfig keeps examples/kubernetes/teal.yaml valid.
func TestExampleKubernetesConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("examples", "kubernetes", "teal.yaml"))
	if err != nil {
		t.Fatalf("examples/kubernetes/teal.yaml: %v", err)
	}
	if cfg.Provider != "kubernetes" || cfg.Router != "none" || cfg.Kubernetes.HTTPRoute != "shop" || cfg.Release.Strategy != "weighted" {
		t.Fatalf("example parsed as provider %q router %q httproute %q strategy %q", cfg.Provider, cfg.Router, cfg.Kubernetes.HTTPRoute, cfg.Release.Strategy)
	}
}
