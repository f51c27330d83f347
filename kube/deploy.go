package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"teal.dev/teal"
)

// Launch creates or updates colour req.Color's Deployment to run req.Version's image with
// run.instances replicas, and waits, watching the Deployment, until the rollout is complete:
// every replica of the new version ready (its readiness probe is health:), none of any other
// version left. When health.deadline passes first it fails with the pods' reasons and events.
func (p *Provider) Launch(ctx context.Context, req teal.LaunchRequest) ([]teal.Instance, error) {
	if !req.Color.Valid() {
		return nil, fmt.Errorf("launch: colour %q: want blue or green", req.Color)
	}
	img, err := p.imageFor(req.Artifact, req.Digest)
	if err != nil {
		return nil, fmt.Errorf("launch %s on %s: %w", req.Version, req.Color, err)
	}
	own, err := p.owner(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.ensureSecret(ctx, own, req); err != nil {
		return nil, err
	}
	if err := p.ensureColorService(ctx, own, req.Color); err != nil {
		return nil, err
	}
	if err := p.applyDeployment(ctx, own, req, img); err != nil {
		return nil, err
	}
	p.log.Info("rolling out", "color", req.Color, "version", req.Version, "image", img.String())
	return p.waitRollout(ctx, req.Color, req.Version)
}

// Adopt takes over colour req.Color's Deployment when it already runs req.Version's digest (a
// restarted teal), waiting for its rollout to complete; otherwise it launches. Pods replaced
// meanwhile by their ReplicaSet are simply the colour's instances now: on Kubernetes the
// identity that matters is the Deployment's, not a pod's.
func (p *Provider) Adopt(ctx context.Context, req teal.LaunchRequest, _ []teal.Instance) ([]teal.Instance, error) {
	d, err := p.kc.AppsV1().Deployments(p.ns).Get(ctx, p.DeploymentName(req.Color), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return p.Launch(ctx, req)
	case err != nil:
		return nil, fmt.Errorf("adopt %s: deployment %s/%s: %w", req.Color, p.ns, p.DeploymentName(req.Color), err)
	}
	if d.Annotations[AnnotationDigest] != req.Digest || d.Spec.Replicas == nil || *d.Spec.Replicas == 0 ||
		d.Annotations[AnnotationVersion] != req.Version {
		p.log.Info("adopt: deployment runs something else, relaunching", "color", req.Color,
			"has", d.Annotations[AnnotationVersion], "want", req.Version)
		return p.Launch(ctx, req)
	}
	return p.waitRollout(ctx, req.Color, req.Version)
}

// Stop scales colour c's Deployment to zero (the object stays, with its version, for the
// record) and waits until its pods are gone, within the termination grace period and a
// margin. Rollback to c is no longer possible after it.
func (p *Provider) Stop(ctx context.Context, c teal.Color) error {
	deps := p.kc.AppsV1().Deployments(p.ns)
	name := p.DeploymentName(c)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Replicas = ptr(int32(0))
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[AnnotationState] = string(teal.EnvTerminated)
		d.Annotations[AnnotationSince] = time.Now().UTC().Format(time.RFC3339)
		_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: scale deployment %s/%s to 0: %w", c, p.ns, name, err)
	}
	wait := p.opts.StopTimeout + 30*time.Second
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	pods := p.kc.CoreV1().Pods(p.ns)
	err = waitWatch(wctx, func(ctx context.Context) (string, bool, error) {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: p.colorSelector(c)})
		if err != nil {
			return "", false, err
		}
		return l.ResourceVersion, len(l.Items) == 0, nil
	}, func(ctx context.Context, rv string) (watchIface, error) {
		return pods.Watch(ctx, metav1.ListOptions{LabelSelector: p.colorSelector(c), ResourceVersion: rv})
	})
	if err != nil {
		return fmt.Errorf("stop %s: pods of %s still there after %s: %w", c, name, wait, err)
	}
	p.log.Info("stopped", "color", c)
	return nil
}

// Detach does nothing: pods outlive teal anyway, and nothing in teal supervises them.
func (p *Provider) Detach() {}

// ensureSecret writes the per-launch environment (DATABASE_URL, …) into the colour's Secret.
func (p *Provider) ensureSecret(ctx context.Context, own metav1.OwnerReference, req teal.LaunchRequest) error {
	secrets := p.kc.CoreV1().Secrets(p.ns)
	name := p.secretName(req.Color)
	data := map[string][]byte{}
	for k, v := range req.Env {
		data[k] = []byte(v)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: p.labels(req.Color), OwnerReferences: []metav1.OwnerReference{own}},
				Type:       corev1.SecretTypeOpaque,
				Data:       data,
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		s.Data, s.StringData = data, nil
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", p.ns, name, err)
	}
	return nil
}

// labelValue turns a version into a valid label value; the annotation keeps it verbatim.
var labelBad = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func labelValue(s string) string {
	s = labelBad.ReplaceAllString(s, "_")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "._-")
}

func ptr[T any](v T) *T { return &v }

// applyDeployment creates or updates the colour's Deployment (409: re-read and retry).
func (p *Provider) applyDeployment(ctx context.Context, own metav1.OwnerReference, req teal.LaunchRequest, img ImageRef) error {
	h := p.opts.Health
	port := int32(p.opts.Kube.Port)
	env := []corev1.EnvVar{
		{Name: "PORT", Value: strconv.Itoa(p.opts.Kube.Port)},
		{Name: "TEAL_APP", Value: p.opts.App},
		{Name: "TEAL_COLOR", Value: string(req.Color)},
		{Name: "TEAL_VERSION", Value: req.Version},
		{Name: "TEAL_INSTANCE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	for _, k := range slices.Sorted(maps.Keys(p.opts.Env)) {
		env = append(env, corev1.EnvVar{Name: k, Value: p.opts.Env[k]})
	}
	podLabels := p.labels(req.Color)
	podLabels[LabelVersion] = labelValue(req.Version)
	seconds := func(d time.Duration, min int32) int32 { return max(int32(d/time.Second), min) }
	probe := &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: h.Path, Port: intstr.FromString("http"),
		}},
		PeriodSeconds:    seconds(h.Interval, 1),
		TimeoutSeconds:   seconds(h.Timeout, 1),
		SuccessThreshold: int32(max(h.HealthyAfter, 1)),
		FailureThreshold: int32(max(h.UnhealthyAfter, 1)),
	}
	annotations := map[string]string{
		AnnotationVersion: req.Version,
		AnnotationDigest:  img.Digest,
		AnnotationImage:   img.String(),
		AnnotationState:   string(teal.EnvProvisioning),
		AnnotationSince:   time.Now().UTC().Format(time.RFC3339),
	}
	want := appsv1.DeploymentSpec{
		Replicas: ptr(int32(p.opts.Instances)),
		Selector: &metav1.LabelSelector{MatchLabels: p.selector(req.Color)},
		// The colour is idle while it rolls out: replacing every pod at once is faster
		// and never mixes two versions in one colour.
		Strategy:                appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
		ProgressDeadlineSeconds: ptr(seconds(h.Deadline, 1)),
		RevisionHistoryLimit:    ptr(int32(2)),
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{
				AnnotationVersion: req.Version, AnnotationDigest: img.Digest,
			}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr(int64(seconds(p.opts.StopTimeout, 0))),
				Containers: []corev1.Container{{
					Name:           p.opts.App,
					Image:          img.String(),
					Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
					Env:            env,
					EnvFrom:        []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: p.secretName(req.Color)}}}},
					ReadinessProbe: probe,
				}},
			},
		},
	}
	deps := p.kc.AppsV1().Deployments(p.ns)
	name := p.DeploymentName(req.Color)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deps.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = deps.Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: p.labels(req.Color), Annotations: annotations,
					OwnerReferences: []metav1.OwnerReference{own}},
				Spec: want,
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		maps.Copy(d.Annotations, annotations)
		if d.Labels == nil {
			d.Labels = map[string]string{}
		}
		maps.Copy(d.Labels, p.labels(req.Color))
		d.Spec = want
		_, err = deps.Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("deployment %s/%s: %w", p.ns, name, err)
	}
	return nil
}

// rolledOut reports whether d's rollout is complete (kubectl rollout status's test), and an
// error when the Deployment says it cannot progress.
func rolledOut(d *appsv1.Deployment) (bool, error) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return false, fmt.Errorf("deployment %s: %s", d.Name, c.Message)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want && s.ReadyReplicas == want, nil
}

// waitRollout watches colour c's Deployment until its rollout is complete, within
// health.deadline, and returns its pods as instances.
func (p *Provider) waitRollout(ctx context.Context, c teal.Color, version string) ([]teal.Instance, error) {
	deadline := p.opts.Health.Deadline
	if deadline <= 0 {
		deadline = teal.DefaultHealthDeadline
	}
	wctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	deps := p.kc.AppsV1().Deployments(p.ns)
	name := p.DeploymentName(c)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	err := waitWatch(wctx, func(ctx context.Context) (string, bool, error) {
		l, err := deps.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return "", false, err
		}
		if len(l.Items) == 0 {
			return "", false, fmt.Errorf("deployment %s/%s is gone", p.ns, name)
		}
		done, err := rolledOut(&l.Items[0])
		return l.ResourceVersion, done, err
	}, func(ctx context.Context, rv string) (watchIface, error) {
		return deps.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv})
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not rolled out within health.deadline %s", deadline)
		}
		// The reasons are read with the caller's context: the deadline's is spent.
		return nil, fmt.Errorf("%s %s: %w%s", name, version, err, p.diagnose(ctx, c))
	}
	if err := p.setState(ctx, c, teal.EnvReady); err != nil {
		return nil, err
	}
	p.log.Info("rolled out", "color", c, "version", version)
	return p.Instances(ctx, c)
}

// Instances lists colour c's pods as teal instances, in name order: Addr is the pod IP and
// the app's port, Identity the pod UID.
func (p *Provider) Instances(ctx context.Context, c teal.Color) ([]teal.Instance, error) {
	pods, err := p.colorPods(ctx, c)
	if err != nil {
		return nil, err
	}
	var out []teal.Instance
	for _, pod := range pods {
		in := teal.Instance{Color: c, Index: len(out), Identity: string(pod.UID), Started: pod.CreationTimestamp.UTC()}
		if pod.Status.PodIP != "" {
			in.Addr = net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(p.opts.Kube.Port))
		}
		for _, cs := range pod.Status.ContainerStatuses {
			in.Restarts += int(cs.RestartCount)
		}
		out = append(out, in)
	}
	return out, nil
}

// colorPods lists colour c's pods that are not being deleted, in name order: the order in
// which Instances numbers them.
func (p *Provider) colorPods(ctx context.Context, c teal.Color) ([]corev1.Pod, error) {
	l, err := p.kc.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: p.colorSelector(c)})
	if err != nil {
		return nil, fmt.Errorf("pods of %s: %w", c, err)
	}
	pods := slices.DeleteFunc(l.Items, func(pod corev1.Pod) bool { return pod.DeletionTimestamp != nil })
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// diagnose says why colour c's pods are not ready: each pod's phase, its containers' waiting
// or terminated reasons, its unready conditions and its latest events; and the Deployment's and
// ReplicaSets' warnings (quota, admission) when no pod could be created.
func (p *Provider) diagnose(ctx context.Context, c teal.Color) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var b strings.Builder
	l, err := p.kc.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: p.colorSelector(c)})
	if err != nil {
		return fmt.Sprintf("\n  (pods not readable: %v)", err)
	}
	pods := l.Items
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for _, pod := range pods {
		fmt.Fprintf(&b, "\n  pod %s: %s", pod.Name, podReason(&pod))
		for _, e := range p.events(ctx, "Pod", pod.Name, 3) {
			fmt.Fprintf(&b, "\n    event %s", e)
		}
	}
	if len(pods) == 0 {
		b.WriteString("\n  no pods were created")
		for _, e := range p.events(ctx, "Deployment", p.DeploymentName(c), 3) {
			fmt.Fprintf(&b, "\n    event %s", e)
		}
		rs, err := p.kc.AppsV1().ReplicaSets(p.ns).List(ctx, metav1.ListOptions{LabelSelector: p.colorSelector(c)})
		if err == nil {
			for _, r := range rs.Items {
				for _, e := range p.events(ctx, "ReplicaSet", r.Name, 3) {
					fmt.Fprintf(&b, "\n    event %s", e)
				}
			}
		}
	}
	return b.String()
}

// podReason summarises why a pod is not ready.
func podReason(pod *corev1.Pod) string {
	parts := []string{string(pod.Status.Phase)}
	if pod.Spec.NodeName == "" {
		parts = append(parts, "not scheduled")
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("container %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
			if t := cs.LastTerminationState.Terminated; t != nil {
				parts = append(parts, fmt.Sprintf("last terminated: %s (exit %d) %s", t.Reason, t.ExitCode, t.Message))
			}
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			parts = append(parts, fmt.Sprintf("container %s terminated: %s (exit %d) %s", cs.Name, t.Reason, t.ExitCode, t.Message))
		case !cs.Ready:
			parts = append(parts, fmt.Sprintf("container %s running, not ready", cs.Name))
		}
		if cs.RestartCount > 0 {
			parts = append(parts, fmt.Sprintf("%d restarts", cs.RestartCount))
		}
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && (cond.Reason != "" || cond.Message != "") {
			parts = append(parts, fmt.Sprintf("%s: %s %s", cond.Type, cond.Reason, cond.Message))
		}
	}
	return strings.Join(slices.Compact(parts), "; ")
}

// events returns the latest n events of an object, oldest first, as "Type Reason: message".
func (p *Provider) events(ctx context.Context, kind, name string, n int) []string {
	sel := fields.AndSelectors(
		fields.OneTermEqualSelector("involvedObject.kind", kind),
		fields.OneTermEqualSelector("involvedObject.name", name),
	).String()
	l, err := p.kc.CoreV1().Events(p.ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil
	}
	evs := l.Items
	sort.Slice(evs, func(i, j int) bool { return eventTime(&evs[i]).Before(eventTime(&evs[j])) })
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	var out []string
	for _, e := range evs {
		s := fmt.Sprintf("%s %s: %s", e.Type, e.Reason, strings.TrimSpace(e.Message))
		if e.Count > 1 {
			s += fmt.Sprintf(" (x%d)", e.Count)
		}
		out = append(out, s)
	}
	return out
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
