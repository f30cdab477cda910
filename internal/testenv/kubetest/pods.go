package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// No kubelet runs: these helpers write pod status the way a kubelet (and,
// for Unschedulable, the scheduler) would, so that controllers and the
// provider see the same objects they see in a cluster.

// callTimeout bounds one helper's API calls.
const callTimeout = 30 * time.Second

// Namespace creates a namespace with a random name and the labels, waits
// until its default service account exists (pods are refused before), and
// deletes it when the test ends.
func (cp *ControlPlane) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	c := cp.Admin(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("kubetest: namespace name: %v", err)
	}
	name := "kt-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("kubetest: delete namespace %s: %v", name, err)
		}
	})
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("kubetest: namespace %s: default service account: %v", name, err)
	}
	return name
}

// Pod waits until the Job controller has made a pod for the Job and returns
// it.
func (cp *ControlPlane) Pod(t testing.TB, namespace, job string) *corev1.Pod {
	t.Helper()
	c := cp.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pod *corev1.Pod
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		pods, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			if p := &pods.Items[i]; pod == nil || p.CreationTimestamp.After(pod.CreationTimestamp.Time) {
				pod = p
			}
		}
		return pod != nil, nil
	})
	if err != nil {
		t.Fatalf("kubetest: no pod for Job %s/%s: %v", namespace, job, err)
	}
	return pod
}

// SetPodRunning marks every container of the pod started and ready.
func (cp *ControlPlane) SetPodRunning(t testing.TB, namespace, pod string) {
	t.Helper()
	cp.setStatus(t, namespace, pod, running)
}

// SetPodExited ends every container of the pod with the exit code: the
// pod Succeeded for 0, Failed otherwise.
func (cp *ControlPlane) SetPodExited(t testing.TB, namespace, pod string, exitCode int32) {
	t.Helper()
	cp.setStatus(t, namespace, pod, func(p *corev1.Pod, now metav1.Time) { exited(p, now, exitCode) })
}

// SetPodWaiting leaves the pod Pending with its containers waiting for
// reason (ImagePullBackOff, ErrImagePull, CreateContainerConfigError, ...).
func (cp *ControlPlane) SetPodWaiting(t testing.TB, namespace, pod, reason, message string) {
	t.Helper()
	cp.setStatus(t, namespace, pod, func(p *corev1.Pod, now metav1.Time) {
		p.Status.Phase = corev1.PodPending
		p.Status.StartTime = &now
		setCondition(p, corev1.PodScheduled, corev1.ConditionTrue, "", "", now)
		p.Status.ContainerStatuses = nil
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
			})
		}
	})
}

// SetPodUnschedulable records, as the scheduler does, that no node fits
// the pod.
func (cp *ControlPlane) SetPodUnschedulable(t testing.TB, namespace, pod, message string) {
	t.Helper()
	cp.setStatus(t, namespace, pod, func(p *corev1.Pod, now metav1.Time) {
		p.Status.Phase = corev1.PodPending
		setCondition(p, corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable, message, now)
	})
}

// Kubelet plays the kubelet for the namespace until the test ends: every
// new pod is marked running as soon as it appears. Ending pods is left to
// the test (SetPodExited).
func (cp *ControlPlane) Kubelet(t testing.TB, namespace string) {
	t.Helper()
	cp.eachNewPod(t, namespace, "kubelet", startPod)
}

// eachNewPod calls act on every pod of the namespace, those there and
// those that appear, until the test ends; role names the caller in the
// test's log when the watch ends and starts again.
func (cp *ControlPlane) eachNewPod(t testing.TB, namespace, role string, act func(context.Context, kubernetes.Interface, *corev1.Pod) error) {
	t.Helper()
	c := cp.Admin(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := actOnPods(ctx, c, namespace, act); err != nil && ctx.Err() == nil {
				t.Logf("kubetest: %s for %s: %v (watching again)", role, namespace, err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
}

// actOnPods lists the namespace's pods, acts on each, then watches for more
// until the watch ends.
func actOnPods(ctx context.Context, c kubernetes.Interface, namespace string, act func(context.Context, kubernetes.Interface, *corev1.Pod) error) error {
	list, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		if err := act(ctx, c, &list.Items[i]); err != nil {
			return err
		}
	}
	w, err := c.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added:
			if err := act(ctx, c, ev.Object.(*corev1.Pod)); err != nil {
				return err
			}
		case watch.Error:
			return apierrors.FromObject(ev.Object)
		}
	}
	return nil
}

func startPod(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) error {
	if p.DeletionTimestamp != nil || (p.Status.Phase != "" && p.Status.Phase != corev1.PodPending) {
		return nil
	}
	err := updateStatus(ctx, c, p.Namespace, p.Name, running)
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	return err
}

// setStatus applies change to the pod's status, retrying on conflicts with
// the controllers that update the pod too.
func (cp *ControlPlane) setStatus(t testing.TB, namespace, pod string, change func(*corev1.Pod, metav1.Time)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := updateStatus(ctx, cp.Admin(t), namespace, pod, change); err != nil {
		t.Fatalf("kubetest: pod %s/%s status: %v", namespace, pod, err)
	}
}

func updateStatus(ctx context.Context, c kubernetes.Interface, namespace, name string, change func(*corev1.Pod, metav1.Time)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := c.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(p, metav1.Now())
		_, err = c.CoreV1().Pods(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

func running(p *corev1.Pod, now metav1.Time) {
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &now
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		setCondition(p, ct, corev1.ConditionTrue, "", "", now)
	}
	p.Status.ContainerStatuses = nil
	started := true
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "docker-pullable://" + c.Image,
			Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

func exited(p *corev1.Pod, now metav1.Time, code int32) {
	phase, reason := corev1.PodSucceeded, "Completed"
	if code != 0 {
		phase, reason = corev1.PodFailed, "Error"
	}
	p.Status.Phase = phase
	for _, ct := range []corev1.PodConditionType{corev1.ContainersReady, corev1.PodReady} {
		setCondition(p, ct, corev1.ConditionFalse, "PodCompleted", "", now)
	}
	started := map[string]metav1.Time{}
	for _, cs := range p.Status.ContainerStatuses {
		if r := cs.State.Running; r != nil {
			started[cs.Name] = r.StartedAt
		}
	}
	p.Status.ContainerStatuses = nil
	no := false
	for _, c := range p.Spec.Containers {
		from, ok := started[c.Name]
		if !ok {
			from = now
		}
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "docker-pullable://" + c.Image, Started: &no,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: code, Reason: reason, StartedAt: from, FinishedAt: now,
			}},
		})
	}
}

func setCondition(p *corev1.Pod, typ corev1.PodConditionType, status corev1.ConditionStatus, reason, message string, now metav1.Time) {
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == typ {
			if c.Status != status {
				c.LastTransitionTime = now
			}
			c.Status, c.Reason, c.Message = status, reason, message
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: typ, Status: status, Reason: reason, Message: message, LastTransitionTime: now,
	})
}

// poll calls cond until it reports done, fails, or ctx ends.
func poll(ctx context.Context, cond func(context.Context) (bool, error)) error {
	pause := 10 * time.Millisecond
	for {
		done, err := cond(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up: %w", ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}
