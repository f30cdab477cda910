package kubernetes_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

// TestRealPods runs agents as real pods: a kubelet over containerd and
// runc (kubetest.StartNode), host-network pods, the waiter standing in for
// the agent in an image built here and imported into containerd. An agent
// runs once and its Job and pod are gone after ttl_after_finished; an image
// that cannot be pulled is a failed start, cleaned up by Delete.
func TestRealPods(t *testing.T) {
	node := kubetest.StartNode(t)
	e := newEnv(t, nil)
	node.Bind(t, e.ns)
	t.Cleanup(func() {
		if t.Failed() {
			if list, err := e.cp.Admin(t).CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{}); err == nil {
				for _, p := range list.Items {
					t.Logf("pod %s on %q: %s %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.ContainerStatuses)
				}
			}
			t.Logf("node logs:\n%s", node.Logs())
		}
	})
	long, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const image = "kubetest.local/waiter:1"
	err := node.Import(long, kubetest.Image{
		Ref:        image,
		Files:      map[string][]byte{dockertest.WaiterPath: dockertest.WaiterBinary(t)},
		Entrypoint: []string{dockertest.WaiterPath},
		User:       dockertest.WaiterUser,
	})
	if err != nil {
		t.Fatal(err)
	}
	opt := e.options()
	opt.HostNetwork = true // the node has no pod network
	opt.TTLAfterFinished = 2 * time.Second
	p := e.provider(t, opt)
	jobs := e.cp.Admin(t).BatchV1().Jobs(e.ns)
	pods := e.cp.Admin(t).CoreV1().Pods(e.ns)

	t.Run("runs once and goes after ttl_after_finished", func(t *testing.T) {
		spec := baseSpec()
		spec.Name, spec.Pool, spec.Request, spec.Image = "real-r1", "real", 1, image
		if _, err := p.Create(long, spec); err != nil {
			t.Fatal(err)
		}
		in := waitInstance(t, long, p, spec, func(in providers.Instance) bool { return in.State == providers.StateRunning })
		if in.Started.IsZero() {
			t.Errorf("running instance without a start time: %+v", in)
		}
		pod := e.cp.Pod(t, e.ns, spec.Name)
		node.ExitContainer(t, runningPod(t, long, e.ns, pod.Name, pods.Get), 0)
		in = waitInstance(t, long, p, spec, func(in providers.Instance) bool { return in.State != providers.StateRunning })
		if in.State != providers.StateExited || in.ExitCode != 0 {
			t.Errorf("after the agent exited 0: %+v; want exited with 0", in)
		}
		// Run once: one pod, its container never restarted, and the Job
		// counts one success and no failure (until the TTL removes it).
		if list, err := pods.List(long, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + spec.Name}); err != nil {
			t.Fatal(err)
		} else if len(list.Items) > 1 {
			t.Errorf("the Job made %d pods; want one", len(list.Items))
		}
		for long.Err() == nil {
			job, err := jobs.Get(long, spec.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break // removed by its TTL already
			}
			if err != nil {
				t.Fatal(err)
			}
			if job.Status.Succeeded+job.Status.Failed > 0 {
				if job.Status.Succeeded != 1 || job.Status.Failed != 0 {
					t.Errorf("Job status succeeded=%d failed=%d; want one success", job.Status.Succeeded, job.Status.Failed)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		waitGone(t, "Job "+spec.Name, func(c context.Context) error { _, err := jobs.Get(c, spec.Name, metav1.GetOptions{}); return err })
		waitGone(t, "pod "+pod.Name, func(c context.Context) error { _, err := pods.Get(c, pod.Name, metav1.GetOptions{}); return err })
	})

	t.Run("an image that cannot be pulled is a failed start", func(t *testing.T) {
		spec := baseSpec()
		// Nothing listens on port 1: the pull fails at once.
		spec.Name, spec.Pool, spec.Request, spec.Image = "real-r2", "real", 2, "127.0.0.1:1/kubetest/missing:1"
		if _, err := p.Create(long, spec); err != nil {
			t.Fatal(err)
		}
		in := waitInstance(t, long, p, spec, func(in providers.Instance) bool { return in.State == providers.StateFailed })
		if !strings.Contains(in.Reason, "ImagePull") {
			t.Errorf("failed start reason %q; want the image pull named", in.Reason)
		}
		pod := e.cp.Pod(t, e.ns, spec.Name)
		if err := p.Delete(long, spec.Name); err != nil {
			t.Fatal(err)
		}
		waitGone(t, "Job "+spec.Name, func(c context.Context) error { _, err := jobs.Get(c, spec.Name, metav1.GetOptions{}); return err })
		waitGone(t, "pod "+pod.Name, func(c context.Context) error { _, err := pods.Get(c, pod.Name, metav1.GetOptions{}); return err })
	})
}

// waitInstance polls List until the spec's instance satisfies ok.
func waitInstance(t *testing.T, ctx context.Context, p *kubernetes.Provider, spec providers.AgentSpec, ok func(providers.Instance) bool) providers.Instance {
	t.Helper()
	var last []providers.Instance
	for ctx.Err() == nil {
		list, err := p.List(ctx, spec.Pool)
		if err != nil {
			t.Fatal(err)
		}
		last = list
		for _, in := range list {
			if in.Name == spec.Name && ok(in) {
				return in
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("instance %s: not in the state wanted in time; last list %+v", spec.Name, last)
	return providers.Instance{}
}

// runningPod waits until the pod's container runs on the node.
func runningPod(t *testing.T, ctx context.Context, ns, name string, get func(context.Context, string, metav1.GetOptions) (*corev1.Pod, error)) *corev1.Pod {
	t.Helper()
	for ctx.Err() == nil {
		pod, err := get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cs := pod.Status.ContainerStatuses; len(cs) > 0 && cs[0].State.Running != nil && cs[0].ContainerID != "" {
			return pod
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("pod %s/%s: container not running in time", ns, name)
	return nil
}
