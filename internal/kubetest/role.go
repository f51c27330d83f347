package kubetest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"teal.dev/teal/internal/testutil"
)

// GrantDocRole applies the Role printed in the doc at docPath (the yaml block after its
// <!-- rbac-role marker: docs/kubernetes.md) in namespace ns and binds it to user, so that
// tests run teal with exactly the permissions the docs tell users to grant. It waits until the
// role takes effect.
func (c *Cluster) GrantDocRole(t testing.TB, docPath, ns, user string) {
	t.Helper()
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "<!-- rbac-role")
	if !ok {
		t.Fatalf("%s: no <!-- rbac-role marker", docPath)
	}
	_, after, _ = strings.Cut(after, "```yaml\n")
	role, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatalf("%s: no yaml block after the rbac-role marker", docPath)
	}
	binding := `
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: teal}
subjects: [{kind: User, name: ` + user + `, apiGroup: rbac.authorization.k8s.io}]
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: teal}
`
	if err := c.Apply(context.Background(), ns, strings.NewReader(role+binding)); err != nil {
		t.Fatalf("apply role: %v", err)
	}
	// The API server's RBAC authorizer learns of new roles through a watch: wait until it
	// lets user read a ConfigMap (not found is fine, forbidden is not).
	kc, err := kubernetes.NewForConfig(c.Config(user))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the teal Role to take effect", func() bool {
		_, err := kc.CoreV1().ConfigMaps(ns).Get(context.Background(), "probe", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}
