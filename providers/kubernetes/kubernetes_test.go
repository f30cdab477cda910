package kubernetes_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
	"github.com/agentscaler/agentscaler/providers/providertest"
)

// The tests run against a real kube-apiserver and kube-controller-manager
// (internal/testenv/kubetest); no kubelet runs, so the tests write pod status as a
// kubelet would.

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

const tokenSecret = "azp-token"

// env is one namespace of the shared control plane, with the token Secret
// an operator would have created.
type env struct {
	cp *kubetest.ControlPlane
	ns string
}

func newEnv(t *testing.T, nsLabels map[string]string) env {
	t.Helper()
	cp := kubetest.Start(t)
	e := env{cp: cp, ns: cp.Namespace(t, nsLabels)}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tokenSecret},
		StringData: map[string]string{kubernetes.DefaultTokenKey: "operator-token-value"},
	}
	if _, err := cp.Admin(t).CoreV1().Secrets(e.ns).Create(ctx(t), sec, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create token Secret: %v", err)
	}
	return e
}

// options are the provider's options in the env's namespace as the admin;
// tests change what they need.
func (e env) options() kubernetes.Options {
	return kubernetes.Options{
		Config:      e.cp.Config(kubetest.AdminUser),
		Namespace:   e.ns,
		TokenSecret: tokenSecret,
		CallTimeout: time.Minute, // a busy machine, not a slow API server
	}
}

func (e env) provider(t *testing.T, opt kubernetes.Options) *kubernetes.Provider {
	t.Helper()
	p, err := kubernetes.New(opt)
	if err != nil {
		t.Fatalf("kubernetes.New: %v", err)
	}
	return p
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func baseSpec() providers.AgentSpec {
	return providers.AgentSpec{
		Image: "azp-agent:linux",
		Env:   map[string]string{"AZP_URL": "https://dev.azure.com/contoso", "AZP_POOL": "Default", "AZP_WORK": "_work"},
	}
}

func TestConformance(t *testing.T) {
	e := newEnv(t, nil)
	e.cp.Kubelet(t, e.ns) // pods run as soon as the Job controller makes them
	providertest.Run(t, providertest.Harness{
		New:  func(t *testing.T) providers.Provider { return e.provider(t, e.options()) },
		Spec: func(*testing.T) providers.AgentSpec { return baseSpec() },
		Finish: func(t *testing.T, _ providers.Provider, name string, code int) {
			pod := e.cp.Pod(t, e.ns, name)
			e.cp.SetPodExited(t, e.ns, pod.Name, int32(code))
		},
		Foreign: func(t *testing.T, pool string) {
			// A Job of the pool's name pattern that some other tool made:
			// the pool label, no managed label.
			name := ci.Requests.JobName(pool, 424242)
			job := &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{providers.LabelPool: pool}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{providers.LabelPool: pool}},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						Containers:    []corev1.Container{{Name: "other", Image: "busybox"}},
					},
				}},
			}
			jobs := e.cp.Admin(t).BatchV1().Jobs(e.ns)
			if _, err := jobs.Create(ctx(t), job, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create foreign Job: %v", err)
			}
			t.Cleanup(func() {
				c, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				bg := metav1.DeletePropagationBackground
				if err := jobs.Delete(c, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("delete foreign Job: %v", err)
				}
			})
		},
		Wait: 2 * time.Minute, // a shared, busy machine: controllers may lag
	})
}

// TestNewRefusesIncompleteOptions checks that the required settings are
// named, so the operator knows what to add.
func TestNewRefusesIncompleteOptions(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	uid := int64(0)
	for _, tc := range []struct {
		opt  kubernetes.Options
		want string
	}{
		{kubernetes.Options{Config: cfg, TokenSecret: "t"}, "namespace"},
		{kubernetes.Options{Config: cfg, Namespace: "agents", TokenSecret: "t", RunAsUser: &uid}, "run_as_user"},
		{kubernetes.Options{Namespace: "agents", TokenSecret: "t", Kubeconfig: "/nonexistent/kubeconfig"}, "kubeconfig"},
	} {
		_, err := kubernetes.New(tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want an error naming %q", tc.opt, err, tc.want)
		}
	}
}

// classify returns the reason of a provider error, failing the test if err
// is not one.
func classify(t *testing.T, err error) (bool, time.Duration, string) {
	t.Helper()
	var pe *providers.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *providers.Error", err, err)
	}
	return providers.Classify(err)
}
