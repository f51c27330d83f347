package teal

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// KubernetesConfig is the kubernetes: section (provider: kubernetes). teal runs one Deployment
// per colour ({app}-{color}) and switches the selector of Service between them; the
// kube package implements the Provider and the Router on top of it.
type KubernetesConfig struct {
	// Kubeconfig is the kubeconfig file; "" = the in-cluster config when teal runs in a pod,
	// else $KUBECONFIG, else ~/.kube/config. A leading ~/ is the user's home.
	Kubeconfig string `yaml:"kubeconfig"`
	// Context is the kubeconfig context to use; "" = its current-context.
	Context string `yaml:"context"`
	// Namespace holds every object teal manages; = default.
	Namespace string `yaml:"namespace"`
	// Image is the image repository, without tag or digest (registry.example/shop). A
	// version's artifact is that image pinned by digest: {image}@sha256:….
	Image string `yaml:"image"`
	// Port is the container port the app listens on (PORT in its environment), which the
	// readiness probe and the Services target; = 8080.
	Port int `yaml:"port"`
	// Service is the Service whose selector is switched between colours (the production
	// entry point); = the app name. Created when missing; an existing one keeps its ports.
	Service string `yaml:"service"`
	// PreviewService always selects the idle colour; "" = none.
	PreviewService string `yaml:"preview_service"`
	// HTTPRoute is a Gateway API HTTPRoute whose backendRefs weights carry weighted steps
	// (strategy: weighted needs one); "" = none.
	HTTPRoute string `yaml:"httproute"`
}

// Defaults of the kubernetes: section.
const (
	DefaultKubeNamespace = "default"
	DefaultKubePort      = 8080
)

// kubeSchema adds the kubernetes: section.
func (d *decoder) kubeSchema(c *Config, section func(string) func(*yaml.Node, string)) {
	d.schema[""] = append(d.schema[""], field{"kubernetes", section("kubernetes")})
	k := &c.Kubernetes
	d.schema["kubernetes"] = []field{
		{"kubeconfig", d.str(&k.Kubeconfig)},
		{"context", d.str(&k.Context)},
		{"namespace", d.str(&k.Namespace)},
		{"image", d.str(&k.Image)},
		{"port", d.integer(&k.Port)},
		{"service", d.str(&k.Service)},
		{"preview_service", d.str(&k.PreviewService)},
		{"httproute", d.str(&k.HTTPRoute)},
	}
}

// kubeRunKeys are the run: keys of the local provider, which mean nothing on Kubernetes: the
// image's own entrypoint runs, and the kubelet restarts it.
var kubeRunKeys = []string{"run.command", "run.dir", "run.stop_signal", "run.restart"}

// providerDefaults applies the defaults that depend on the provider, once the file is decoded;
// set reports whether a key path was written in the file. With provider: kubernetes the Service
// is the router, so router defaults to none, and the production Service to the app's name.
// It returns the keys written in the file that the provider does not use.
func (c *Config) providerDefaults(set func(key string) bool) (unused []string) {
	if c.Provider != "kubernetes" {
		return nil
	}
	if !set("router") {
		c.Router = "none"
	}
	if c.Kubernetes.Service == "" {
		c.Kubernetes.Service = c.App
	}
	for _, k := range kubeRunKeys {
		if set(k) {
			unused = append(unused, k)
		}
	}
	return unused
}

// dnsLabel is an RFC 1123 label, what Kubernetes wants for namespaces and Service names.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// validateKube checks provider: kubernetes against the rest of the file: what the kubernetes:
// section holds, and the features that need teal's own router (per-colour counts, mirroring),
// which the Service does not give.
func (c *Config) validateKube(v *validator) {
	k := c.Kubernetes
	if c.Provider != "kubernetes" {
		if k != DefaultConfig().Kubernetes {
			v.add("kubernetes", "", "only used with provider: kubernetes; remove it or set provider: kubernetes")
		}
		if c.Router == "none" {
			v.add("router", c.Router, "none is for provider: kubernetes, where the Service is the router; want builtin or haproxy")
		}
		return
	}
	if c.Router != "none" {
		v.add("router", c.Router, "with provider: kubernetes the Service is the router: set router: none, or leave router out")
	}
	for _, f := range []struct{ key, value string }{
		{"kubernetes.namespace", k.Namespace}, {"kubernetes.service", k.Service},
		{"kubernetes.preview_service", k.PreviewService}, {"kubernetes.httproute", k.HTTPRoute},
	} {
		if f.value == "" && f.key != "kubernetes.namespace" {
			continue
		}
		if !dnsLabel.MatchString(f.value) || len(f.value) > 63 {
			v.add(f.key, f.value, "want a Kubernetes name: lowercase letters, digits and -, starting and ending with a letter or digit, at most 63 characters")
		}
	}
	if k.PreviewService != "" && k.PreviewService == k.Service {
		v.add("kubernetes.preview_service", k.PreviewService, "is the production service too (kubernetes.service); the preview needs a Service of its own")
	}
	if k.Port < 1 || k.Port > 65535 {
		v.add("kubernetes.port", strconv.Itoa(k.Port), "want the container port the app listens on, 1..65535 (= 8080)")
	}
	if k.Image != "" && (strings.ContainsAny(k.Image, "@ \t") || !strings.Contains(k.Image, "/") && strings.Contains(k.Image, ":")) {
		v.add("kubernetes.image", k.Image, "want an image repository without digest, like registry.example/shop: a version's image is {image}@sha256:…")
	}
	if c.Preview != "" {
		v.add("preview", c.Preview, "not used with provider: kubernetes: kubernetes.preview_service is the preview (remove preview)")
	}
	if c.Listen != DefaultListen {
		v.add("listen", c.Listen, "not used with provider: kubernetes: production traffic enters through kubernetes.service (remove listen)")
	}
	if c.Release.Strategy == "weighted" && k.HTTPRoute == "" {
		v.add("release.strategy", c.Release.Strategy, "needs kubernetes.httproute with provider: kubernetes: a Service selects one colour, only a Gateway API HTTPRoute splits traffic by weight")
	}
	const counts = "needs per-colour request counts, which teal's router and HAProxy give and a Kubernetes Service does not"
	if c.Release.PostCheck > 0 {
		v.add("release.post_check", c.Release.PostCheck.String(), counts+"; remove it (teal rollback stays instant)")
	}
	if c.Release.Analysis != DefaultConfig().Release.Analysis {
		v.add("release.analysis", "", counts+"; remove it: on Kubernetes weighted steps advance after step_hold")
	}
	if c.Verify.Shadow.Enabled() {
		v.add("verify.shadow", "", "needs router: builtin: it mirrors the requests it forwards, and a Kubernetes Service forwards them instead")
	}
	if c.DNS.Provider != "" {
		v.add("dns", "", "not used with provider: kubernetes: the Service (or its load balancer) is the entry point; remove dns")
	}
}

// unusedKeyError is the error for a key the provider does not use.
func unusedKeyError(file, key string) *ConfigError {
	return &ConfigError{File: file, Key: key, Msg: fmt.Sprintf("not used with provider: kubernetes (the image's entrypoint runs, the kubelet restarts it); remove %s", key)}
}
