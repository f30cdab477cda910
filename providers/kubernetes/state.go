package kubernetes

import (
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentscaler/agentscaler/providers"
)

// startFailures are the waiting reasons of a container that will not start
// without someone changing the image, the pull secret or the Secret it
// reads; waiting longer only delays the clean-up.
var startFailures = map[string]bool{
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true, // a missing Secret or key, a root image under runAsNonRoot
	"CreateContainerError":       true,
}

// neverExited is the ExitCode of a failed instance whose agent did not
// exit by itself.
const neverExited = -1

// instance reads the instance's state from its Job and the Job's newest pod
// (nil when there is none yet).
func (p *Provider) instance(job *batchv1.Job, pod *corev1.Pod) providers.Instance {
	in := providers.Instance{Name: job.Name, Created: job.CreationTimestamp.Time}
	providers.FromLabels(job.Labels, &in)
	ctr := agentStatus(pod)
	if ctr != nil {
		switch {
		case ctr.State.Running != nil:
			in.Started = ctr.State.Running.StartedAt.Time
		case ctr.State.Terminated != nil:
			in.Started = ctr.State.Terminated.StartedAt.Time
		}
	}
	jobFailed := condition(job, batchv1.JobFailed, batchv1.JobFailureTarget)

	// The container's own end is the most precise: it has the exit code.
	if ctr != nil && ctr.State.Terminated != nil {
		t := ctr.State.Terminated
		in.Finished, in.ExitCode = t.FinishedAt.Time, int(t.ExitCode)
		if t.ExitCode == 0 && jobFailed == nil {
			in.State = providers.StateExited
			return in
		}
		in.State = providers.StateFailed
		in.Reason = joinReasons(jobReason(jobFailed), exitReason(t))
		return in
	}
	if c := condition(job, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet); c != nil {
		in.State, in.Finished = providers.StateExited, c.LastTransitionTime.Time
		if job.Status.CompletionTime != nil {
			in.Finished = job.Status.CompletionTime.Time
		}
		return in
	}
	if jobFailed != nil {
		return failed(in, jobFailed.LastTransitionTime.Time, jobReason(jobFailed))
	}
	if pod != nil && pod.Status.Phase == corev1.PodFailed { // evicted, or the node went away
		return failed(in, podChanged(pod), joinReasons(pod.Status.Reason, pod.Status.Message))
	}
	if ctr != nil && ctr.State.Waiting != nil && startFailures[ctr.State.Waiting.Reason] {
		w := ctr.State.Waiting
		// The kubelet keeps retrying and rewriting the message; the time
		// it took the pod on does not move.
		at := pod.CreationTimestamp.Time
		if pod.Status.StartTime != nil {
			at = pod.Status.StartTime.Time
		}
		return failed(in, at, joinReasons(w.Reason, w.Message))
	}
	if pod != nil && pod.Status.Phase == corev1.PodRunning {
		in.State = providers.StateRunning
		if in.Started.IsZero() && pod.Status.StartTime != nil {
			in.Started = pod.Status.StartTime.Time
		}
		return in
	}
	in.State = providers.StatePending
	if t := p.opt.StartupTimeout; t > 0 && p.opt.Now().Sub(in.Created) >= t {
		return failed(in, in.Created.Add(t), stuckReason(job, pod, ctr, t))
	}
	return in
}

// failed marks the instance failed at finished. The time must not move
// between Lists: the scaler keeps a failed instance for failure_backoff
// from it.
func failed(in providers.Instance, finished time.Time, reason string) providers.Instance {
	in.State, in.Finished, in.ExitCode, in.Reason = providers.StateFailed, finished, neverExited, reason
	return in
}

// stuckReason says why an instance is still pending after the timeout.
func stuckReason(job *batchv1.Job, pod *corev1.Pod, ctr *corev1.ContainerStatus, timeout time.Duration) string {
	if pod != nil {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return joinReasons(corev1.PodReasonUnschedulable, c.Message)
			}
		}
	}
	why := fmt.Sprintf("startup timeout: not running %v after the Job was created", timeout)
	switch {
	case ptrTrue(job.Spec.Suspend):
		why += " (the Job is still suspended)"
	case pod == nil:
		why += " (no pod yet)"
	case ctr != nil && ctr.State.Waiting != nil && ctr.State.Waiting.Reason != "":
		why += " (container waiting: " + ctr.State.Waiting.Reason + ")"
	}
	return why
}

func exitReason(t *corev1.ContainerStateTerminated) string {
	r := fmt.Sprintf("agent exited with code %d", t.ExitCode)
	if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
		r += " (" + t.Reason + ")" // OOMKilled, ContainerCannotRun, ...
	}
	return r
}

func jobReason(c *batchv1.JobCondition) string {
	if c == nil {
		return ""
	}
	return joinReasons(c.Reason, c.Message)
}

func joinReasons(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, ": ")
}

// agentStatus is the status of the agent container, nil if none is known.
func agentStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	if pod == nil {
		return nil
	}
	for i := range pod.Status.ContainerStatuses {
		if cs := &pod.Status.ContainerStatuses[i]; cs.Name == ContainerName {
			return cs
		}
	}
	return nil
}

// condition returns the first of the Job's conditions of the types that
// holds.
func condition(job *batchv1.Job, types ...batchv1.JobConditionType) *batchv1.JobCondition {
	for _, typ := range types {
		for i := range job.Status.Conditions {
			if c := &job.Status.Conditions[i]; c.Type == typ && c.Status == corev1.ConditionTrue {
				return c
			}
		}
	}
	return nil
}

// podChanged is the last time the failed pod's conditions changed, a
// stand-in for when it failed that no longer moves; its creation when it
// has none.
func podChanged(pod *corev1.Pod) time.Time {
	t := pod.CreationTimestamp.Time
	for _, c := range pod.Status.Conditions {
		if c.LastTransitionTime.After(t) {
			t = c.LastTransitionTime.Time
		}
	}
	return t
}
