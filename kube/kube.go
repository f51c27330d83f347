// Package kube runs teal's two colours on Kubernetes: one Deployment per colour, a Service whose
// selector is switched between them, a preview Service that selects the idle colour and,
// optionally, a Gateway API HTTPRoute whose backend weights carry weighted steps.
//
// Provider implements both teal.Provider (the Deployments) and teal.Router (the Services and
// the HTTPRoute): on Kubernetes the Service is the router. Every object teal creates is
// labelled (app, app.kubernetes.io/managed-by=teal, teal.dev/color) and owned by one ConfigMap,
// {app}-teal, so that the state can be rebuilt from the cluster (Provider.System) and deleting
// that ConfigMap removes everything.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"teal.dev/teal"
)

// Labels and annotations teal puts on what it manages.
const (
	LabelApp       = "app"
	LabelColor     = "teal.dev/color"
	LabelVersion   = "teal.dev/version"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "teal"

	AnnotationVersion = "teal.dev/version" // the version as given (labels are restricted)
	AnnotationDigest  = "teal.dev/digest"  // the artifact digest: the image digest
	AnnotationImage   = "teal.dev/image"   // the pinned image reference
	AnnotationState   = "teal.dev/state"   // a teal.EnvState
	AnnotationSince   = "teal.dev/since"   // when the state was entered, RFC 3339
)

// Options configure a Provider.
type Options struct {
	// App is the app name (teal.yaml app:); objects are named {app}-{color}.
	App string
	// Kube is the kubernetes: section.
	Kube teal.KubernetesConfig
	// Instances is the replica count of each colour's Deployment (run.instances).
	Instances int
	// Env is extra environment for the app's container (run.env), set in the clear; the
	// per-launch environment (DATABASE_URL, …) goes into a Secret teal manages.
	Env map[string]string
	// StopTimeout is the pods' termination grace period (run.stop_timeout).
	StopTimeout time.Duration
	// Health configures the readiness probe and the rollout deadline (health.deadline).
	Health teal.HealthConfig
	// Log receives the provider's events; nil discards them.
	Log *slog.Logger
}

// Provider runs the colours as Deployments and routes between them with Services. It is safe
// for concurrent use: it keeps no state of its own beyond its configuration, the cluster is
// the state.
type Provider struct {
	// SwitchTimeout bounds each confirmation of a switch (= DefaultSwitchTimeout).
	SwitchTimeout time.Duration

	opts Options
	ns   string
	kc   kubernetes.Interface
	dyn  dynamic.Interface
	log  *slog.Logger
}

var (
	_ teal.Provider = (*Provider)(nil)
	_ teal.Router   = (*Provider)(nil)
)

// New resolves the cluster from opts.Kube (kubeconfig, then in-cluster, $KUBECONFIG,
// ~/.kube/config) and returns a Provider for it. It does not contact the cluster.
func New(opts Options) (*Provider, error) {
	rc, err := RESTConfig(opts.Kube.Kubeconfig, opts.Kube.Context)
	if err != nil {
		return nil, err
	}
	return NewForConfig(rc, opts)
}

// NewForConfig returns a Provider talking to the cluster rc describes.
func NewForConfig(rc *rest.Config, opts Options) (*Provider, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "teal"
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ns := opts.Kube.Namespace
	if ns == "" {
		ns = teal.DefaultKubeNamespace
	}
	if opts.Kube.Port == 0 {
		opts.Kube.Port = teal.DefaultKubePort
	}
	if opts.Kube.Service == "" {
		opts.Kube.Service = opts.App
	}
	return &Provider{SwitchTimeout: DefaultSwitchTimeout, opts: opts, ns: ns, kc: kc, dyn: dyn, log: log.With("provider", "kubernetes", "app", opts.App)}, nil
}

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func (o *Options) validate() error {
	if !dns1123.MatchString(o.App) || len(o.App) > 40 {
		return fmt.Errorf("kube: app %q: want a DNS label ([a-z0-9-], at most 40 characters)", o.App)
	}
	for field, v := range map[string]string{
		"kubernetes.service": o.Kube.Service, "kubernetes.preview_service": o.Kube.PreviewService,
		"kubernetes.httproute": o.Kube.HTTPRoute, "kubernetes.namespace": o.Kube.Namespace,
	} {
		if v != "" && (!dns1123.MatchString(v) || len(v) > 63) {
			return fmt.Errorf("kube: %s %q: want a DNS label ([a-z0-9-], at most 63 characters)", field, v)
		}
	}
	if o.Kube.Service != "" && o.Kube.Service == o.Kube.PreviewService {
		return fmt.Errorf("kube: kubernetes.preview_service %q is the production service too", o.Kube.PreviewService)
	}
	if o.Kube.Port < 0 || o.Kube.Port > 65535 {
		return fmt.Errorf("kube: kubernetes.port %d: want 1-65535", o.Kube.Port)
	}
	if o.Instances < 0 {
		return fmt.Errorf("kube: run.instances %d: want 0 or more", o.Instances)
	}
	return nil
}

// RESTConfig resolves the cluster to talk to: kubeconfig when set (~/ expanded), else the
// in-cluster config when running in a pod, else $KUBECONFIG, else ~/.kube/config. context
// picks a kubeconfig context ("" = its current-context).
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	if kubeconfig == "" && context == "" {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("kubernetes in-cluster config: %w", err)
		}
	}
	// The rules are built here rather than with clientcmd's defaults, whose ~/.kube/config is
	// fixed when the program starts.
	rules := &clientcmd.ClientConfigLoadingRules{}
	where := kubeconfig
	switch {
	case kubeconfig != "":
		if rest, ok := strings.CutPrefix(kubeconfig, "~/"); ok {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("kubernetes.kubeconfig %s: %w", kubeconfig, err)
			}
			kubeconfig = filepath.Join(home, rest)
		}
		rules.ExplicitPath = kubeconfig
	case os.Getenv("KUBECONFIG") != "":
		rules.Precedence = filepath.SplitList(os.Getenv("KUBECONFIG"))
		where = "$KUBECONFIG=" + os.Getenv("KUBECONFIG")
	default:
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("kubernetes config: not in a cluster, no $KUBECONFIG, and no home directory: %w", err)
		}
		rules.ExplicitPath = filepath.Join(home, ".kube", "config")
		where = rules.ExplicitPath
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes config %s (not in a cluster): %w", where, err)
	}
	return rc, nil
}

// Namespace is the namespace the provider manages.
func (p *Provider) Namespace() string { return p.ns }

// Clientset is the typed client the provider uses (tests and diagnostics).
func (p *Provider) Clientset() kubernetes.Interface { return p.kc }

// DeploymentName is the Deployment of colour c: {app}-{color}.
func (p *Provider) DeploymentName(c teal.Color) string { return p.opts.App + "-" + string(c) }

// colorService is the Service selecting only colour c, used for the readiness check before a
// switch and as the HTTPRoute's backend: {app}-{color}, like the Deployment.
func (p *Provider) colorService(c teal.Color) string { return p.opts.App + "-" + string(c) }

// ownerName is the ConfigMap that owns every object teal creates.
func (p *Provider) ownerName() string { return p.opts.App + "-teal" }

func (p *Provider) secretName(c teal.Color) string { return p.opts.App + "-" + string(c) + "-env" }

// labels are the labels of everything teal manages for colour c ("" = not colour-specific).
func (p *Provider) labels(c teal.Color) map[string]string {
	l := map[string]string{LabelApp: p.opts.App, LabelManagedBy: ManagedBy}
	if c != "" {
		l[LabelColor] = string(c)
	}
	return l
}

// selector selects colour c's pods.
func (p *Provider) selector(c teal.Color) map[string]string {
	return map[string]string{LabelApp: p.opts.App, LabelColor: string(c)}
}

func (p *Provider) colorSelector(c teal.Color) string {
	return LabelApp + "=" + p.opts.App + "," + LabelColor + "=" + string(c)
}

// owner returns the reference to the owning ConfigMap, creating it when missing.
func (p *Provider) owner(ctx context.Context) (metav1.OwnerReference, error) {
	cms := p.kc.CoreV1().ConfigMaps(p.ns)
	cm, err := cms.Get(ctx, p.ownerName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: p.ownerName(), Labels: p.labels("")},
			Data: map[string]string{
				"about": "teal manages the objects this ConfigMap owns; deleting it deletes them",
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			cm, err = cms.Get(ctx, p.ownerName(), metav1.GetOptions{})
		}
	}
	if err != nil {
		return metav1.OwnerReference{}, fmt.Errorf("owner configmap %s/%s: %w", p.ns, p.ownerName(), err)
	}
	return metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID}, nil
}

// annotate sets annotations on colour c's Deployment, re-reading it on a conflict.
func (p *Provider) annotate(ctx context.Context, c teal.Color, kv map[string]string) error {
	deps := p.kc.AppsV1().Deployments(p.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deps.Get(ctx, p.DeploymentName(c), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		for k, v := range kv {
			d.Annotations[k] = v
		}
		_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("annotate deployment %s/%s: %w", p.ns, p.DeploymentName(c), err)
	}
	return nil
}

// setState records colour c's state on its Deployment, unless it is recorded already: an
// annotation change bumps a Deployment's generation (annotations are copied to its ReplicaSets).
func (p *Provider) setState(ctx context.Context, c teal.Color, s teal.EnvState) error {
	d, err := p.kc.AppsV1().Deployments(p.ns).Get(ctx, p.DeploymentName(c), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil && d.Annotations[AnnotationState] == string(s) {
		return nil
	}
	// A rollout completing makes a provisioning colour ready; a live or standby colour that
	// is adopted stays what it is.
	if err == nil && s == teal.EnvReady && d.Annotations[AnnotationState] != "" &&
		d.Annotations[AnnotationState] != string(teal.EnvProvisioning) {
		return nil
	}
	err = p.annotate(ctx, c, map[string]string{
		AnnotationState: string(s), AnnotationSince: time.Now().UTC().Format(time.RFC3339),
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
