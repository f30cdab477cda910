package kubernetes_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

// TestJobSpec creates an agent with every setting and reads back, as the
// admin, the Job, its pod and its Secret as the API server stored them. The
// namespace enforces the "restricted" Pod Security Standard, so the pod
// exists only if the security defaults meet it.
func TestJobSpec(t *testing.T) {
	e := newEnv(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	admin := e.cp.Admin(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}
	if _, err := admin.CoreV1().ServiceAccounts(e.ns).Create(ctx(t), sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service account: %v", err)
	}
	uid := int64(1001)
	opt := e.options()
	opt.TokenKey = "pat"
	opt.ServiceAccount = "agent"
	opt.ImagePullSecrets = []string{"regcred"}
	opt.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	opt.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "agents", Effect: corev1.TaintEffectNoSchedule}}
	opt.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"agents"},
		}}}},
	}}}
	opt.Annotations = map[string]string{"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
	opt.RunAsUser = &uid
	opt.MaxLifetime = 6 * time.Hour
	opt.TTLAfterFinished = 15 * time.Minute
	p := e.provider(t, opt)

	const token, extra = "scaler-token-must-not-be-used", "extra-secret-must-stay-in-a-secret"
	spec := baseSpec()
	spec.Name, spec.Pool, spec.Request = "linux-r77", "linux", 77
	spec.Env = providers.WithName(spec.Env, spec.Name)
	spec.CPU, spec.MemoryMB = 1.5, 2048
	spec.Secrets = map[string]string{"AZP_TOKEN": token, "AZP_CLIENTSECRET": extra}
	in, err := p.Create(ctx(t), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if in.State != providers.StatePending || in.Request != 77 || in.Pool != "linux" {
		t.Errorf("Create returned %+v; want pending, pool linux, request 77", in)
	}

	job, err := admin.BatchV1().Jobs(e.ns).Get(ctx(t), spec.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Job: %v", err)
	}
	pod := e.cp.Pod(t, e.ns, spec.Name) // the Job controller made it: admission passed
	for what, obj := range map[string]any{"Job": job, "pod": pod} {
		raw, _ := json.Marshal(obj)
		for _, secret := range []string{token, extra, "operator-token-value"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("the %s holds the literal secret %q", what, secret)
			}
		}
	}

	wantLabels := providers.Labels(spec)
	for what, l := range map[string]map[string]string{"Job": job.Labels, "pod template": job.Spec.Template.Labels, "pod": pod.Labels} {
		for k, v := range wantLabels {
			if l[k] != v {
				t.Errorf("%s label %s = %q, want %q (labels %v)", what, k, l[k], v, l)
			}
		}
	}
	js := job.Spec
	if js.BackoffLimit == nil || *js.BackoffLimit != 0 {
		t.Errorf("backoffLimit = %v, want 0", deref(js.BackoffLimit))
	}
	if js.ActiveDeadlineSeconds == nil || *js.ActiveDeadlineSeconds != 6*3600 {
		t.Errorf("activeDeadlineSeconds = %v, want %d (max_lifetime)", deref(js.ActiveDeadlineSeconds), 6*3600)
	}
	if js.TTLSecondsAfterFinished == nil || *js.TTLSecondsAfterFinished != 900 {
		t.Errorf("ttlSecondsAfterFinished = %v, want 900", deref(js.TTLSecondsAfterFinished))
	}
	if js.Suspend == nil || *js.Suspend {
		t.Errorf("the Job is still suspended after Create returned")
	}

	ps := pod.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %s, want Never", ps.RestartPolicy)
	}
	if ps.ServiceAccountName != "agent" || ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("service account %q, automount %v; want agent, false", ps.ServiceAccountName, deref(ps.AutomountServiceAccountToken))
	}
	if len(ps.ImagePullSecrets) != 1 || ps.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("imagePullSecrets = %v, want [regcred]", ps.ImagePullSecrets)
	}
	if !maps.Equal(ps.NodeSelector, opt.NodeSelector) {
		t.Errorf("nodeSelector = %v, want %v", ps.NodeSelector, opt.NodeSelector)
	}
	if !hasToleration(ps.Tolerations, opt.Tolerations[0]) {
		t.Errorf("tolerations = %v, want one of them %v", ps.Tolerations, opt.Tolerations[0])
	}
	if a := ps.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Errorf("affinity = %+v, want the node affinity given", a)
	}
	if pod.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" {
		t.Errorf("pod annotations = %v, want the extra annotation", pod.Annotations)
	}
	sc := ps.SecurityContext
	if sc == nil || !deref(sc.RunAsNonRoot) || deref(sc.RunAsUser) != 1001 || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v; want runAsNonRoot, runAsUser 1001, seccomp RuntimeDefault", sc)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(ps.Containers))
	}
	c := ps.Containers[0]
	csc := c.SecurityContext
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 || csc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container securityContext = %+v; want allowPrivilegeEscalation false, drop ALL", csc)
	}
	for kind, rl := range map[string]corev1.ResourceList{"limits": c.Resources.Limits, "requests": c.Resources.Requests} {
		if q := rl[corev1.ResourceCPU]; q.Cmp(resource.MustParse("1500m")) != 0 {
			t.Errorf("cpu %s = %s, want 1500m", kind, q.String())
		}
		if q := rl[corev1.ResourceMemory]; q.Cmp(resource.MustParse("2Gi")) != 0 {
			t.Errorf("memory %s = %s, want 2Gi", kind, q.String())
		}
	}

	env := map[string]corev1.EnvVar{}
	for _, v := range c.Env {
		env[v.Name] = v
	}
	for k, v := range map[string]string{"AZP_URL": "https://dev.azure.com/contoso", "AZP_POOL": "Default", "AZP_WORK": "_work", "AZP_AGENT_NAME": spec.Name} {
		if env[k].Value != v {
			t.Errorf("env %s = %q, want %q", k, env[k].Value, v)
		}
	}
	checkRef := func(name, secret, key string) {
		t.Helper()
		v := env[name]
		if v.Value != "" || v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil {
			t.Errorf("env %s = %+v; want a secretKeyRef", name, v)
			return
		}
		if r := v.ValueFrom.SecretKeyRef; r.Name != secret || r.Key != key {
			t.Errorf("env %s refers to Secret %s key %s; want %s key %s", name, r.Name, r.Key, secret, key)
		}
	}
	checkRef("AZP_TOKEN", tokenSecret, "pat")
	checkRef("AZP_CLIENTSECRET", spec.Name, "AZP_CLIENTSECRET")

	sec, err := admin.CoreV1().Secrets(e.ns).Get(ctx(t), spec.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the instance's Secret: %v", err)
	}
	if string(sec.Data["AZP_CLIENTSECRET"]) != extra {
		t.Errorf("the instance's Secret does not hold the extra secret")
	}
	if _, ok := sec.Data["AZP_TOKEN"]; ok {
		t.Errorf("the instance's Secret holds AZP_TOKEN; the token comes from the operator's Secret only")
	}
	owner := metav1.GetControllerOf(sec)
	if owner == nil || owner.Kind != "Job" || owner.UID != job.UID {
		t.Errorf("the instance's Secret is owned by %+v; want the Job %s", owner, job.UID)
	}

	// Delete takes the pod and the Secret along.
	if err := p.Delete(ctx(t), spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	waitGone(t, "Secret "+spec.Name, func(c context.Context) error {
		_, err := admin.CoreV1().Secrets(e.ns).Get(c, spec.Name, metav1.GetOptions{})
		return err
	})
	waitGone(t, "pod "+pod.Name, func(c context.Context) error {
		_, err := admin.CoreV1().Pods(e.ns).Get(c, pod.Name, metav1.GetOptions{})
		return err
	})
}

// TestCreateWithoutExtraSecrets checks the usual path: a Job that starts
// at once, and no Secret of the instance's own.
func TestCreateWithoutExtraSecrets(t *testing.T) {
	e := newEnv(t, nil)
	p := e.provider(t, e.options())
	spec := baseSpec()
	spec.Name, spec.Pool, spec.Slot = "plain-w1", "plain", 1
	spec.Secrets = map[string]string{"AZP_TOKEN": "scaler-token"}
	if _, err := p.Create(ctx(t), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	admin := e.cp.Admin(t)
	job, err := admin.BatchV1().Jobs(e.ns).Get(ctx(t), spec.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Job: %v", err)
	}
	if job.Spec.Suspend != nil && *job.Spec.Suspend {
		t.Errorf("a Job without extra secrets was created suspended")
	}
	if job.Spec.ActiveDeadlineSeconds != nil {
		t.Errorf("activeDeadlineSeconds = %d with no max lifetime set; want none", *job.Spec.ActiveDeadlineSeconds)
	}
	if _, err := admin.CoreV1().Secrets(e.ns).Get(ctx(t), spec.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get Secret %s: %v; want NotFound (no extra secrets, no Secret)", spec.Name, err)
	}
	if got := *job.Spec.TTLSecondsAfterFinished; got != int32(kubernetes.DefaultTTLAfterFinished.Seconds()) {
		t.Errorf("ttlSecondsAfterFinished = %d, want the default %v", got, kubernetes.DefaultTTLAfterFinished)
	}
}

// TestRunnerWithoutToken: a runner of another CI system (no token Secret)
// gets no Azure DevOps token in its pod, only its own secret, from the
// Secret the provider writes for it.
func TestRunnerWithoutToken(t *testing.T) {
	e := newEnv(t, nil)
	opt := e.options()
	opt.TokenSecret = ""
	p := e.provider(t, opt)
	spec := providers.AgentSpec{Image: "gh-runner:test", Env: map[string]string{"RUNNER_LABELS": "gpu"}}
	spec.Name, spec.Pool, spec.Request = "gh-j7", "gh", 7
	spec.Secrets = map[string]string{"ACTIONS_RUNNER_INPUT_JITCONFIG": "jit-config-must-stay-in-a-secret"}
	if _, err := p.Create(ctx(t), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	job, err := e.cp.Admin(t).BatchV1().Jobs(e.ns).Get(ctx(t), spec.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Job: %v", err)
	}
	var refs []string
	for _, v := range job.Spec.Template.Spec.Containers[0].Env {
		if strings.HasPrefix(v.Name, "AZP_") {
			t.Errorf("the runner's pod has the Azure Pipelines agent's %s (%+v)", v.Name, v)
		}
		if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
			refs = append(refs, v.Name+"<-"+v.ValueFrom.SecretKeyRef.Name)
		}
	}
	if want := []string{"ACTIONS_RUNNER_INPUT_JITCONFIG<-gh-j7"}; !slices.Equal(refs, want) {
		t.Errorf("secret references %v, want only %v", refs, want)
	}
}

func waitGone(t *testing.T, what string, get func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := get(ctx(t))
		if apierrors.IsNotFound(err) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 2m after the Job was deleted", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasToleration(got []corev1.Toleration, want corev1.Toleration) bool {
	for _, tol := range got {
		if tol.Key == want.Key && tol.Operator == want.Operator && tol.Value == want.Value && tol.Effect == want.Effect {
			return true
		}
	}
	return false
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
