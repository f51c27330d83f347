package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeStages writes kwok's configuration: its own fast stages for nodes and pods (copied into
// the cache by scripts/k8s-tools.sh from the kwok module), except that pods of NeverReadyImage
// are left to a stage of ours that puts them in a crash loop instead of making them ready.
func writeStages(dir string) (string, error) {
	src := filepath.Join(Dir(), "stages")
	var docs []string
	for _, name := range []string{"node-initialize.yaml", "pod-ready.yaml", "pod-delete.yaml"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", fmt.Errorf("kwok stage (run scripts/k8s-tools.sh): %w", err)
		}
		s := string(b)
		if name == "pod-ready.yaml" {
			const anchor = "    matchExpressions:\n"
			if !strings.Contains(s, anchor) {
				return "", fmt.Errorf("kwok stage %s: no %q to extend", name, strings.TrimSpace(anchor))
			}
			s = strings.Replace(s, anchor, anchor+imageIs("NotIn"), 1)
		}
		docs = append(docs, s)
	}
	docs = append(docs, neverReadyStage())
	path := filepath.Join(dir, "kwok.yaml")
	return path, os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")), 0o644)
}

// imageIs is a stage selector expression on the pod's first container's image.
func imageIs(op string) string {
	return "    - key: '.spec.containers[0].image'\n" +
		"      operator: '" + op + "'\n" +
		"      values:\n" +
		"      - '" + NeverReadyImage + "'\n"
}

// neverReadyStage runs pods of NeverReadyImage into a crash loop: Running, not ready, the
// container waiting in CrashLoopBackOff after exiting 1, and a BackOff warning event.
func neverReadyStage() string {
	return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-never-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
` + imageIs("In") + `    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
  next:
    event:
      type: Warning
      reason: BackOff
      message: Back-off restarting failed container app in pod
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        message: "containers with unready status"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        message: "containers with unready status"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 4
        lastState:
          terminated:
            exitCode: 1
            reason: Error
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
        state:
          waiting:
            reason: CrashLoopBackOff
            message: "back-off 40s restarting failed container"
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`
}
