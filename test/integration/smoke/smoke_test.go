package smoke

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/localcluster/controlplane"
	"github.com/gpuslice/gpuslice/test/framework"
)

const gpuResource corev1.ResourceName = "nvidia.com/gpu"

// TestControlPlane starts one control plane and checks what the integration
// tests of the scheduler and the exporter rely on.
func TestControlPlane(t *testing.T) {
	cp := framework.StartControlPlane(t, controlplane.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	admin := cp.Client()

	t.Run("ServiceAccountTokenAndRBAC", func(t *testing.T) {
		testServiceAccountRBAC(ctx, t, cp)
	})
	t.Run("FakeGPUNode", func(t *testing.T) {
		testFakeGPUNode(ctx, t, admin)
	})
	t.Run("Kubectl", func(t *testing.T) {
		testKubectl(ctx, t, cp)
	})
	t.Run("ValidatingAdmissionPolicy", func(t *testing.T) {
		testValidatingAdmissionPolicy(ctx, t, admin)
	})
}

func testServiceAccountRBAC(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) {
	admin := cp.Client()
	const ns, sa = "smoke", "gpuslice-scheduler"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	if tr.Status.Token == "" {
		t.Fatal("TokenRequest returned no token")
	}
	saClient, err := kubernetes.NewForConfig(cp.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}

	// The token authenticates as the ServiceAccount.
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with the ServiceAccount token: %v", err)
	}
	if got, want := review.Status.UserInfo.Username, "system:serviceaccount:"+ns+":"+sa; got != want {
		t.Errorf("ServiceAccount token authenticates as %q, want %q", got, want)
	}

	// RBAC: the ServiceAccount may not list nodes, the admin may.
	_, err = saClient.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("ServiceAccount lists nodes: err = %v, want Forbidden", err)
	}
	if _, err := cp.Client().CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("admin lists nodes: %v", err)
	}

	// Bound to a ClusterRole, it may (once the RBAC authorizer's informers
	// saw the binding).
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke-node-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke-node-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "smoke-node-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, lastErr = saClient.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return lastErr == nil, nil
	}); err != nil {
		t.Fatalf("ServiceAccount still cannot list nodes after the ClusterRoleBinding: %v", lastErr)
	}
}

func testFakeGPUNode(ctx context.Context, t *testing.T, admin kubernetes.Interface) {
	// Admission taints every new node not-ready; no controller removes it.
	plain, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "plain-node"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasTaint(plain, controlplane.TaintNodeNotReady) {
		t.Errorf("new node has taints %v, want %s (TaintNodesByCondition)", plain.Spec.Taints, controlplane.TaintNodeNotReady)
	}

	node, err := controlplane.CreateReadyNode(ctx, admin, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "gpu-node-0",
			Labels: map[string]string{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
		},
	}, corev1.ResourceList{gpuResource: resource.MustParse("8")})
	if err != nil {
		t.Fatal(err)
	}

	got, err := admin.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for what, list := range map[string]corev1.ResourceList{"capacity": got.Status.Capacity, "allocatable": got.Status.Allocatable} {
		if q, ok := list[gpuResource]; !ok || q.Value() != 8 {
			t.Errorf("status.%s[%s] = %v (present %v), want 8", what, gpuResource, q.String(), ok)
		}
	}
	ready := false
	for _, c := range got.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		t.Errorf("node conditions %v: not Ready", got.Status.Conditions)
	}
	if hasTaint(got, controlplane.TaintNodeNotReady) {
		t.Errorf("node still has the %s taint: %v", controlplane.TaintNodeNotReady, got.Spec.Taints)
	}
	if got.Labels["nvidia.com/gpu.product"] == "" {
		t.Errorf("node lost its labels: %v", got.Labels)
	}

	// The main resource ignores status: an update of it leaves status alone.
	got.Status.Allocatable[gpuResource] = resource.MustParse("1")
	upd, err := admin.CoreV1().Nodes().Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q := upd.Status.Allocatable[gpuResource]; q.Value() != 8 {
		t.Errorf("an update of the node (not its status) changed allocatable %s to %s", gpuResource, q.String())
	}
}

func testKubectl(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) {
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, cp.KubectlPath(), append([]string{"--kubeconfig", cp.KubeconfigPath()}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	var v struct {
		ClientVersion struct{ GitVersion string } `json:"clientVersion"`
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	out := kubectl("version", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version -o json: %v\n%s", err, out)
	}
	if v.ClientVersion.GitVersion != "v1.37.1" || v.ServerVersion.GitVersion != "v1.37.1" {
		t.Errorf("kubectl version: client %q, server %q, want v1.37.1 (stamped by hack/control-plane.sh)",
			v.ClientVersion.GitVersion, v.ServerVersion.GitVersion)
	}
	if got := kubectl("auth", "can-i", "list", "nodes"); strings.TrimSpace(got) != "yes" {
		t.Errorf("kubectl auth can-i list nodes (admin) = %q, want yes", got)
	}
	// The fake GPU node of FakeGPUNode, as kubectl sees it.
	if got := kubectl("get", "node", "gpu-node-0", "-o", `jsonpath={.status.allocatable.nvidia\.com/gpu}`); got != "8" {
		t.Errorf("kubectl get node gpu-node-0: allocatable %s = %q, want 8", gpuResource, got)
	}
}

// testValidatingAdmissionPolicy checks that ValidatingAdmissionPolicy is on
// by default: a policy that denies labelled ConfigMaps is enforced.
func testValidatingAdmissionPolicy(ctx context.Context, t *testing.T, admin kubernetes.Interface) {
	const name, label = "smoke-deny-labelled", "smoke.gpuslice.io/deny"
	if _, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: new(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule: admissionregistrationv1.Rule{
							APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"},
						},
					},
				}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!has(object.metadata.labels) || !('" + label + "' in object.metadata.labels)",
				Message:    "labelled " + label,
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy takes effect once the apiserver's informers saw it.
	i := 0
	var lastErr error
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		i++
		_, lastErr = admin.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("denied-%d", i), Labels: map[string]string{label: "true"}},
		}, metav1.CreateOptions{})
		return lastErr != nil, nil
	}); err != nil {
		t.Fatalf("a labelled ConfigMap is still admitted: %v", err)
	}
	if !strings.Contains(lastErr.Error(), name) {
		t.Fatalf("labelled ConfigMap: err = %v, want a denial by ValidatingAdmissionPolicy %s", lastErr, name)
	}
	if _, err := admin.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "admitted"},
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("an unlabelled ConfigMap is denied: %v", err)
	}
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
