package kubetest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestControlPlane checks what the provider tests rely on: the version,
// authentication and RBAC, and that the controllers run.
func TestControlPlane(t *testing.T) {
	cp := kubetest.Start(t)
	admin := cp.Admin(t)
	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != kubetest.Version {
		t.Errorf("the API server reports %s, want %s (the -X ldflags did not take)", v.GitVersion, kubetest.Version)
	}

	ns := cp.Namespace(t, nil)
	user, err := kubernetes.NewForConfig(cp.Config(kubetest.Users[0]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.BatchV1().Jobs(ns).List(ctx(t), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a user with no role bound lists Jobs: %v; want Forbidden (RBAC is not enforced)", err)
	}

	// The kubeconfig reaches the same server as the same user.
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cp.WriteKubeconfig(path, kubetest.AdminUser, "test"); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	viaFile, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := viaFile.CoreV1().Namespaces().Get(ctx(t), ns, metav1.GetOptions{}); err != nil {
		t.Errorf("through the kubeconfig: %v", err)
	}
}

// TestJobLifecycle moves a Job's pod through its phases with the helpers
// and checks that the Job controller follows: it makes the pod, and marks
// the Job complete when the pod succeeds, failed when it fails.
func TestJobLifecycle(t *testing.T) {
	cp := kubetest.Start(t)
	ns := cp.Namespace(t, nil)
	jobs := cp.Admin(t).BatchV1().Jobs(ns)
	for name, code := range map[string]int32{"ok": 0, "bad": 2} {
		zero := int32(0)
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: batchv1.JobSpec{BackoffLimit: &zero, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
			}}},
		}
		if _, err := jobs.Create(ctx(t), job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := cp.Pod(t, ns, name)
		cp.SetPodRunning(t, ns, pod.Name)
		cp.SetPodExited(t, ns, pod.Name, code)
		want := batchv1.JobComplete
		if code != 0 {
			want = batchv1.JobFailed
		}
		deadline := time.Now().Add(2 * time.Minute)
		for !hasCondition(t, jobs, name, want) {
			if time.Now().After(deadline) {
				t.Fatalf("Job %s: no %s condition 2m after its pod exited with %d", name, want, code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestKubelet checks that pods of a namespace with a Kubelet start on
// their own.
func TestKubelet(t *testing.T) {
	cp := kubetest.Start(t)
	ns := cp.Namespace(t, nil)
	cp.Kubelet(t, ns)
	pods := cp.Admin(t).CoreV1().Pods(ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if _, err := pods.Create(ctx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := pods.Get(ctx(t), "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase == corev1.PodRunning {
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Running == nil {
				t.Errorf("running pod without a running container: %+v", p.Status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still %s a minute after it was created", p.Status.Phase)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasCondition(t *testing.T, jobs interface {
	Get(context.Context, string, metav1.GetOptions) (*batchv1.Job, error)
}, name string, typ batchv1.JobConditionType) bool {
	t.Helper()
	j, err := jobs.Get(ctx(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range j.Status.Conditions {
		if c.Type == typ && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
