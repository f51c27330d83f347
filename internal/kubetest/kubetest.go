// Package kubetest runs a real Kubernetes control plane for tests: etcd, kube-apiserver,
// kube-controller-manager (deployment, replicaset, endpointslice and garbage-collector
// controllers), kube-scheduler, and kwok, which plays the kubelet for one fake node so that
// Deployments really roll out to Ready pods and EndpointSlices follow Services. The binaries are
// built by scripts/k8s-tools.sh into ${XDG_CACHE_HOME:-~/.cache}/teal/k8s-v1.37.2/bin.
//
// One control plane serves a whole test package: start it in TestMain with Run, and let each
// test take it with Env.Need, which skips the test when the binaries are not built (unless
// TEAL_REQUIRE_K8S is set, as make test does, in which case it fails).
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"teal.dev/teal/internal/freeport"
)

// Version is the Kubernetes release the tools are built from; the cache directory is named
// after it, so that a version bump never runs stale binaries.
const Version = "v1.37.2"

// NeverReadyImage is an image whose pods kwok starts but never makes ready: their container
// waits in CrashLoopBackOff and a BackOff warning event is recorded, like a real crash loop.
const NeverReadyImage = "registry.test/never-ready@sha256:0000000000000000000000000000000000000000000000000000000000000bad"

// RequireEnv is the environment variable that turns a missing control plane from a skip into
// a failure (make test sets it after building the tools).
const RequireEnv = "TEAL_REQUIRE_K8S"

// ErrNoBinaries means the control plane's binaries are not in the cache.
var ErrNoBinaries = errors.New("kubernetes test binaries not built")

// Dir is where scripts/k8s-tools.sh puts the binaries, CRDs and kwok stages.
func Dir() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "teal", "k8s-"+Version)
}

// Cluster is a running control plane.
type Cluster struct {
	// Dir holds the cluster's files: etcd data, certificates, kubeconfigs, logs.
	Dir string
	// Kubeconfig is an admin (system:masters) kubeconfig file.
	Kubeconfig string
	// Admin is the admin's client configuration, Client and Dynamic its clients.
	Admin   *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Server is the API server's URL.
	Server string

	tokens map[string]string // user → bearer token
	procs  []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Env is what TestMain leaves for the tests: the cluster, or why there is none.
type Env struct {
	Cluster *Cluster
	Err     error
}

// Need returns the package's cluster; without one it skips the test (binaries not built and
// TEAL_REQUIRE_K8S unset) or fails it.
func (e *Env) Need(t testing.TB) *Cluster {
	t.Helper()
	switch {
	case e.Cluster != nil:
		return e.Cluster
	case errors.Is(e.Err, ErrNoBinaries) && os.Getenv(RequireEnv) == "":
		t.Skipf("%v: run scripts/k8s-tools.sh (≈20 min cold) or make test; set %s=1 to fail instead", e.Err, RequireEnv)
	case e.Err != nil:
		t.Fatalf("kubernetes control plane: %v", e.Err)
	}
	t.Fatalf("kubernetes control plane: not started (call kubetest.Run from TestMain)")
	return nil
}

// Run starts a control plane into env, runs the package's tests and stops it: call it from
// TestMain as os.Exit(kubetest.Run(m, &env)). With -short nothing is started.
func Run(m *testing.M, env *Env) int {
	if !flag.Parsed() {
		flag.Parse() // testing.Short needs the flags; m.Run would parse them later
	}
	if testing.Short() {
		env.Err = fmt.Errorf("%w: -short", ErrNoBinaries)
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	start := time.Now()
	c, err := Start(ctx)
	cancel()
	if err == nil && testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kubetest: control plane up in %s (%s)\n", time.Since(start).Round(time.Millisecond), c.Dir)
	}
	env.Cluster, env.Err = c, err
	if err != nil && !errors.Is(err, ErrNoBinaries) {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
	}
	code := m.Run()
	if c != nil {
		c.Stop()
	}
	return code
}

// Start starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on free
// loopback ports, registers one fake node and waits until it is Ready. It returns an error
// wrapping ErrNoBinaries when a binary is missing.
func Start(ctx context.Context) (_ *Cluster, err error) {
	bin := filepath.Join(Dir(), "bin")
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%w: %s missing in %s", ErrNoBinaries, b, bin)
		}
	}
	dir, err := os.MkdirTemp("", "teal-kube-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, tokens: map[string]string{}}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	ports, err := freeport.Ports(6)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	// etcd: in-memory speed (no fsync), loopback only.
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.start("etcd", filepath.Join(bin, "etcd"),
		"--name=teal", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=teal="+peerURL, "--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "etcd", etcdURL+"/health", ""); err != nil {
		return nil, err
	}

	// Credentials: a service-account signing key and static bearer tokens.
	keyFile, err := writeKey(dir)
	if err != nil {
		return nil, err
	}
	var tokens bytes.Buffer
	for _, u := range []struct{ user, groups string }{{"admin", "system:masters"}, {"teal", ""}, {"nobody", ""}} {
		tok, err := randomToken()
		if err != nil {
			return nil, err
		}
		c.tokens[u.user] = tok
		fmt.Fprintf(&tokens, "%s,%s,%s,%q\n", tok, u.user, u.user, u.groups)
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, tokens.Bytes(), 0o600); err != nil {
		return nil, err
	}

	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := c.start("kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--token-auth-file="+tokenFile, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+keyFile, "--service-account-signing-key-file="+keyFile,
		"--service-cluster-ip-range=10.96.0.0/16",
		// No ServiceAccount admission: nothing here creates service-account tokens. No
		// TaintNodesByCondition: it taints a new node not-ready, and no node lifecycle
		// controller runs to lift the taint. No endpoint reconciler: the advertise address is
		// loopback.
		"--disable-admission-plugins=ServiceAccount,TaintNodesByCondition", "--endpoint-reconciler-type=none",
		"--v=1",
	); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", c.Server+"/readyz", c.tokens["admin"]); err != nil {
		return nil, err
	}
	c.Admin = c.Config("admin")
	if c.Client, err = kubernetes.NewForConfig(c.Admin); err != nil {
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Admin); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := c.WriteKubeconfig(c.Kubeconfig, "admin", "default"); err != nil {
		return nil, err
	}

	if err := c.start("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--controllers=deployment,replicaset,endpointslice,garbagecollector",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort),
		"--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
		"--v=1",
	); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort), "--v=1",
	); err != nil {
		return nil, err
	}
	stages, err := writeStages(dir)
	if err != nil {
		return nil, err
	}
	if err := c.start("kwok", filepath.Join(bin, "kwok"),
		"--kubeconfig="+c.Kubeconfig, "--config="+stages,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--cidr=10.244.0.0/16", "--node-ip=10.244.0.1",
		"--server-address=127.0.0.1:"+strconv.Itoa(kwokPort),
	); err != nil {
		return nil, err
	}
	if err := c.addNode(ctx, "kwok-node-0"); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop stops every process (TERM, then KILL after 10 s) and removes the cluster's files
// unless KUBETEST_KEEP is set.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	c.procs = nil
	if os.Getenv("KUBETEST_KEEP") == "" {
		os.RemoveAll(c.Dir)
	} else {
		fmt.Fprintf(os.Stderr, "kubetest: kept %s\n", c.Dir)
	}
}

// Config is a client configuration for one of the cluster's users: "admin" (system:masters),
// "teal" and "nobody" (no permissions until a test grants some with RBAC).
func (c *Cluster) Config(user string) *rest.Config {
	return &rest.Config{
		Host:            c.Server,
		BearerToken:     c.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200, Burst: 400,
	}
}

// WriteKubeconfig writes a kubeconfig for user, with namespace as its context's default.
func (c *Cluster) WriteKubeconfig(path, user, namespace string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["teal-test"] = &clientcmdapi.Cluster{Server: c.Server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: c.tokens[user]}
	cfg.Contexts[user] = &clientcmdapi.Context{Cluster: "teal-test", AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = user
	return clientcmd.WriteToFile(*cfg, path)
}

// Namespace creates a fresh namespace for the test and deletes it when the test ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	suffix, err := randomToken()
	if err != nil {
		t.Fatal(err)
	}
	name = strings.Trim(name, "-") + "-" + suffix[:6]
	ctx := context.Background()
	_, err = c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		// No namespace controller runs here: delete what the tests create, then the namespace.
		_ = c.Client.AppsV1().Deployments(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

// Apply creates every object of a multi-document YAML (or JSON) stream with the dynamic
// client, in namespace ns for namespaced ones; CustomResourceDefinitions are waited for until
// established.
func (c *Cluster) Apply(ctx context.Context, ns string, r io.Reader) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("decode: %w", err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		gvk := u.GroupVersionKind()
		var gvr schema.GroupVersionResource
		var namespaced bool
		// A CRD applied a moment ago may not be served yet.
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := poll(pctx, "resource of "+gvk.String(), func() (bool, error) {
			var err error
			gvr, namespaced, err = c.resourceFor(gvk)
			return err == nil, nil
		})
		cancel()
		if err != nil {
			_, _, err = c.resourceFor(gvk)
			return err
		}
		var ri dynamic.ResourceInterface = c.Dynamic.Resource(gvr)
		if namespaced {
			ri = c.Dynamic.Resource(gvr).Namespace(ns)
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s %s: %w", gvk.Kind, u.GetName(), err)
		}
		if gvk.Kind == "CustomResourceDefinition" {
			if err := c.waitEstablished(ctx, u.GetName()); err != nil {
				return err
			}
		}
	}
}

// ApplyFile applies a YAML file; a path relative to Dir() names one of the cached CRDs
// ("crds/httproutes.yaml").
func (c *Cluster) ApplyFile(ctx context.Context, ns, path string) error {
	if !filepath.IsAbs(path) {
		path = filepath.Join(Dir(), path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := c.Apply(ctx, ns, f); err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	return nil
}

// resourceFor maps a kind to its resource through discovery (CRDs appear after they are
// established).
func (c *Cluster) resourceFor(gvk schema.GroupVersionKind) (schema.GroupVersionResource, bool, error) {
	list, err := c.Client.Discovery().ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("discover %s: %w", gvk.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
			return gvk.GroupVersion().WithResource(r.Name), r.Namespaced, nil
		}
	}
	return schema.GroupVersionResource{}, false, fmt.Errorf("no resource for kind %s in %s", gvk.Kind, gvk.GroupVersion())
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (c *Cluster) waitEstablished(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(ctx, "CRD "+name+" established", func() (bool, error) {
		u, err := c.Dynamic.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cd := range conds {
			m, _ := cd.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

// addNode registers a node kwok manages and waits until kwok has made it Ready.
func (c *Cluster) addNode(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		Labels:      map[string]string{"kubernetes.io/hostname": name, "type": "kwok"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return poll(ctx, "node "+name+" Ready", func() (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return len(n.Spec.Taints) == 0, nil
			}
		}
		return false, nil
	})
}

// start runs one process of the control plane, its output in Dir/<name>.log. The process is
// killed if the test binary dies (Pdeathsig), so that no control plane outlives its tests.
func (c *Cluster) start(name, path string, args ...string) error {
	logPath := filepath.Join(c.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return nil
}

// exited returns an error naming the first process of the control plane that has exited, with
// the tail of its log.
func (c *Cluster) exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, tail(p.log, 2000))
		default:
		}
	}
	return nil
}

// Logs returns the tail of a process's log (for a failing test's message).
func (c *Cluster) Logs(name string, n int) string { return tail(filepath.Join(c.Dir, name+".log"), n) }

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitHTTP waits until url answers 200 (with a bearer token when given).
func (c *Cluster) waitHTTP(ctx context.Context, name, url, token string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the apiserver's self-signed cert, on loopback
	}}
	defer client.CloseIdleConnections()
	err := poll(ctx, name+" ready", func() (bool, error) {
		if err := c.exited(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%w\n%s log:\n%s", err, name, tail(filepath.Join(c.Dir, name+".log"), 2000))
	}
	return nil
}

// poll checks cond until it holds, it fails, or ctx ends; polls back off from 5 ms to 100 ms.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		ok, err := cond()
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeKey writes an RSA key (PKCS#1 PEM) that signs and verifies service-account tokens.
func writeKey(dir string) (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "sa.key")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return path, os.WriteFile(path, pemBytes, 0o600)
}
