package teal

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
