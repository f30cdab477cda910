// Package kubernetes is the provider that runs each agent as a batch/v1 Job
// in one namespace of a Kubernetes cluster, through client-go.
//
// One Job per instance, named after it: backoffLimit 0 (a single-use agent
// is never run twice), restartPolicy Never, activeDeadlineSeconds from the
// pool's max_lifetime (a hard cap: Kubernetes ends the pod then, busy or
// not), ttlSecondsAfterFinished so that a finished Job the autoscaler never
// got to delete goes away by itself. The Job and its pod template carry the
// labels of providers.Labels; List selects on them.
//
// Secrets never appear in a Job. An Azure Pipelines agent's token
// (AZP_TOKEN) comes from the Secret the operator names (Options.TokenSecret,
// key Options.TokenKey) through a secretKeyRef: the provider never reads
// that Secret, and the AZP_TOKEN value the scaler hands in is not used.
// Without a TokenSecret (GitHub and Bitbucket runners) no pod refers to
// such a Secret, so no runner sees another system's token. Any other spec secret
// goes into a Secret the provider creates for the instance, named like the
// Job and owned by it, so the garbage collector removes it with the Job;
// the container reads it through secretKeyRefs too. The owner reference
// needs the Job's UID, and a pod must not start before its Secret exists,
// so such a Job is created suspended, then its Secret, then the Job is
// resumed. Without extra secrets, the usual case, Create is one API call.
//
// Pods run as non-root by default: runAsNonRoot, no privilege escalation,
// every capability dropped, the RuntimeDefault seccomp profile, no service
// account token mounted (the agent does not talk to the cluster). These
// meet the "restricted" Pod Security Standard.
//
// State comes from the Job and its pod: pending until the pod runs,
// running, exited (0) or failed with the container's exit code. A pod that
// cannot start (ImagePullBackOff, ErrImagePull, InvalidImageName,
// CreateContainerConfigError, ...) is failed at once, with that reason; a
// pod still pending after Options.StartupTimeout (unschedulable, or stuck)
// is failed too, so the scaler removes it after its failure back-off.
// ExitCode is -1 for a failed instance whose agent never exited by itself.
//
// Errors are providers.Error: throttling (429), server errors and timeouts
// are retryable (client-go has already waited out the server's Retry-After
// up to ten times within the call's deadline); a request RBAC forbids is
// permanent, with the verb and resource to grant in its reason; invalid
// objects are permanent.
//
// The RBAC the provider needs, and nothing more, is in
// infra/kubernetes/rbac.yaml: jobs create, get, list, patch, delete; pods
// list; secrets create, update. It can read no Secret.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentscaler/agentscaler/providers"
)

// Defaults of Options.
const (
	DefaultTokenKey         = "AZP_TOKEN"
	DefaultTTLAfterFinished = 10 * time.Minute
	DefaultCallTimeout      = 30 * time.Second
	// Enough for parallel reconciles of several pools; client-go's own
	// default (5 per second) would queue them.
	DefaultQPS   = 20
	DefaultBurst = 50
)

// ContainerName is the name of the agent's container in the pod.
const ContainerName = "agent"

// tokenEnv is the variable the agent reads its token from.
const tokenEnv = providers.EnvToken

// Options configure the provider. Namespace is required.
type Options struct {
	// Config reaches the API server. When nil, Kubeconfig and Context
	// select a kubeconfig (the default loading rules when Kubeconfig is
	// empty), or, when both are empty, the in-cluster configuration.
	Config     *rest.Config
	Kubeconfig string
	Context    string

	Namespace   string
	TokenSecret string // the Secret holding the Azure Pipelines agent token; empty for other runners
	TokenKey    string // its key; DefaultTokenKey when empty

	ServiceAccount   string // the pods' service account; the namespace default when empty
	ImagePullSecrets []string
	NodeSelector     map[string]string
	Tolerations      []corev1.Toleration
	Affinity         *corev1.Affinity
	Annotations      map[string]string // added to every pod
	RunAsUser        *int64            // the image's user when nil; it must be numeric and not root
	// HostNetwork runs the pods in their node's network namespace: for
	// clusters without a pod network (and the tests' node, which has none).
	HostNetwork bool

	// TTLAfterFinished is how long Kubernetes keeps a finished Job; keep
	// it above the pool's failure_backoff. DefaultTTLAfterFinished when 0.
	TTLAfterFinished time.Duration
	// MaxLifetime becomes the Job's activeDeadlineSeconds; 0 sets none.
	MaxLifetime time.Duration
	// StartupTimeout fails an instance whose pod is not running this long
	// after the Job was created; 0 never does.
	StartupTimeout time.Duration
	// CallTimeout bounds each API call; DefaultCallTimeout when 0.
	CallTimeout time.Duration

	Now    func() time.Time // time.Now when nil
	Logger *slog.Logger     // nil logs nothing
}

// Provider runs agents as Jobs. It is safe for concurrent use.
type Provider struct {
	client kubernetes.Interface
	opt    Options
}

var _ providers.Provider = (*Provider)(nil)

// New checks the options and builds the client. It makes no API call.
func New(opt Options) (*Provider, error) {
	if opt.Namespace == "" {
		return nil, errors.New("kubernetes provider: namespace is required: the namespace the agent Jobs run in")
	}
	if opt.RunAsUser != nil && *opt.RunAsUser < 1 {
		return nil, fmt.Errorf("kubernetes provider: run_as_user %d: must be a non-root uid (1 or more)", *opt.RunAsUser)
	}
	if opt.TokenKey == "" {
		opt.TokenKey = DefaultTokenKey
	}
	if opt.TTLAfterFinished <= 0 {
		opt.TTLAfterFinished = DefaultTTLAfterFinished
	}
	if opt.CallTimeout <= 0 {
		opt.CallTimeout = DefaultCallTimeout
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := restConfig(opt)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes provider: client: %w", err)
	}
	return &Provider{client: client, opt: opt}, nil
}

func restConfig(opt Options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case opt.Config != nil:
		cfg = rest.CopyConfig(opt.Config)
	case opt.Kubeconfig == "" && opt.Context == "":
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes provider: in-cluster configuration (set kubeconfig when running outside the cluster): %w", err)
		}
	default:
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = opt.Kubeconfig
		overrides := &clientcmd.ConfigOverrides{CurrentContext: opt.Context}
		if cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes provider: kubeconfig %q context %q: %w", opt.Kubeconfig, opt.Context, err)
		}
	}
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "agentscaler"
	}
	return cfg, nil
}

// Operation names, as in providers.Error.Op.
const (
	opCreate = "create"
	opList   = "list"
	opDelete = "delete"
)

// Resources as RBAC names them, for the forbidden message.
const (
	resJobs    = "jobs.batch"
	resPods    = "pods"
	resSecrets = "secrets"
)

// Create starts the Job, or returns the instance already of that name.
func (p *Provider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	if err := providers.ValidateName(spec.Name); err != nil {
		return providers.Instance{}, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "invalid_name", Err: err}
	}
	if spec.Pool == "" {
		return providers.Instance{}, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "invalid_pool", Err: errors.New("pool is empty")}
	}
	ctx, cancel := context.WithTimeout(ctx, p.opt.CallTimeout)
	defer cancel()
	extra := p.extraSecrets(spec)
	job, err := p.client.BatchV1().Jobs(p.opt.Namespace).Create(ctx, p.job(spec, extra), metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return p.existing(ctx, spec, extra)
	case err != nil:
		return providers.Instance{}, p.fail(opCreate, spec.Name, "create", resJobs, err)
	}
	p.opt.Logger.Debug("job created", "namespace", p.opt.Namespace, "name", job.Name)
	if ptrTrue(job.Spec.Suspend) {
		if job, err = p.resume(ctx, job, extra); err != nil {
			return providers.Instance{}, err
		}
	}
	return p.instance(job, nil), nil
}

// existing returns the instance a create found in place, finishing its
// start if an earlier create left it suspended.
func (p *Provider) existing(ctx context.Context, spec providers.AgentSpec, extra map[string]string) (providers.Instance, error) {
	job, err := p.client.BatchV1().Jobs(p.opt.Namespace).Get(ctx, spec.Name, metav1.GetOptions{})
	if err != nil {
		return providers.Instance{}, p.fail(opCreate, spec.Name, "get", resJobs, err)
	}
	var in providers.Instance
	if !providers.FromLabels(job.Labels, &in) || in.Pool != spec.Pool {
		return providers.Instance{}, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "conflict",
			Err: fmt.Errorf("a Job %s/%s exists that is not this pool's agent (labels %v); delete or rename it", p.opt.Namespace, spec.Name, job.Labels)}
	}
	if ptrTrue(job.Spec.Suspend) {
		if job, err = p.resume(ctx, job, extra); err != nil {
			return providers.Instance{}, err
		}
	}
	pods, err := p.pods(ctx, labels.Set{batchv1.ControllerUidLabel: string(job.UID)})
	if err != nil {
		return providers.Instance{}, p.fail(opCreate, spec.Name, "list", resPods, err)
	}
	in = p.instance(job, pods[job.UID])
	in.Existed = true
	return in, nil
}

// resume writes the instance's Secret, owned by the Job, and lets the Job
// start. Both steps are idempotent, so a create that finds a Job left
// suspended completes it.
func (p *Provider) resume(ctx context.Context, job *batchv1.Job, extra map[string]string) (*batchv1.Job, error) {
	if len(extra) > 0 {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: job.Name, Namespace: job.Namespace, Labels: job.Labels,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr(true),
				}},
			},
			Type:       corev1.SecretTypeOpaque,
			StringData: extra,
		}
		secrets := p.client.CoreV1().Secrets(job.Namespace)
		_, err := secrets.Create(ctx, sec, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Left by a create that stopped halfway, or by an earlier Job
			// of this name that the garbage collector has not reached:
			// take it over for this Job.
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
			if err != nil {
				return nil, p.fail(opCreate, job.Name, "update", resSecrets, err)
			}
		} else if err != nil {
			return nil, p.fail(opCreate, job.Name, "create", resSecrets, err)
		}
	}
	job, err := p.client.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType,
		[]byte(`{"spec":{"suspend":false}}`), metav1.PatchOptions{})
	if err != nil {
		return nil, p.fail(opCreate, job.Name, "patch", resJobs, err)
	}
	return job, nil
}

// List returns the pool's instances, sorted by name.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opt.CallTimeout)
	defer cancel()
	sel := labels.Set{providers.LabelManaged: "true", providers.LabelPool: pool}
	jobs, err := p.client.BatchV1().Jobs(p.opt.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, p.fail(opList, pool, "list", resJobs, err)
	}
	out := []providers.Instance{}
	if len(jobs.Items) == 0 {
		return out, nil
	}
	pods, err := p.pods(ctx, sel)
	if err != nil {
		return nil, p.fail(opList, pool, "list", resPods, err)
	}
	for i := range jobs.Items {
		job := &jobs.Items[i]
		in := p.instance(job, pods[job.UID])
		if in.Pool == pool {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b providers.Instance) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// pods returns the newest pod of each Job among the pods sel selects, by
// the Job's UID.
func (p *Provider) pods(ctx context.Context, sel labels.Set) (map[types.UID]*corev1.Pod, error) {
	list, err := p.client.CoreV1().Pods(p.opt.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	byJob := map[types.UID]*corev1.Pod{}
	for i := range list.Items {
		pod := &list.Items[i]
		owner := metav1.GetControllerOf(pod)
		if owner == nil || owner.Kind != "Job" {
			continue
		}
		if cur := byJob[owner.UID]; cur == nil || pod.CreationTimestamp.After(cur.CreationTimestamp.Time) {
			byJob[owner.UID] = pod
		}
	}
	return byJob, nil
}

// Delete removes the Job; its pods and its Secret go with it (background
// propagation: the garbage collector removes them). A missing Job is not an
// error.
func (p *Provider) Delete(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, p.opt.CallTimeout)
	defer cancel()
	err := p.client.BatchV1().Jobs(p.opt.Namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: ptr(metav1.DeletePropagationBackground),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return p.fail(opDelete, name, "delete", resJobs, err)
	}
	p.opt.Logger.Debug("job deleted", "namespace", p.opt.Namespace, "name", name, "existed", err == nil)
	return nil
}

// extraSecrets returns the spec's secrets other than the token, which comes
// from the operator's Secret.
func (p *Provider) extraSecrets(spec providers.AgentSpec) map[string]string {
	extra := maps.Clone(spec.Secrets)
	if p.opt.TokenSecret != "" {
		delete(extra, tokenEnv)
	}
	return extra
}

// job builds the Job of an instance. It is suspended when it needs a
// Secret of its own, which does not exist yet.
func (p *Provider) job(spec providers.AgentSpec, extra map[string]string) *batchv1.Job {
	lbl := providers.Labels(spec)
	o := p.opt
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Namespace: o.Namespace, Labels: lbl},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			Completions:             ptr(int32(1)),
			Parallelism:             ptr(int32(1)),
			TTLSecondsAfterFinished: ptr(int32(min(o.TTLAfterFinished.Seconds(), math.MaxInt32))),
			Suspend:                 ptr(len(extra) > 0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(lbl), Annotations: maps.Clone(o.Annotations)},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           o.ServiceAccount,
					AutomountServiceAccountToken: ptr(false),
					EnableServiceLinks:           ptr(false),
					HostNetwork:                  o.HostNetwork,
					NodeSelector:                 maps.Clone(o.NodeSelector),
					Tolerations:                  slices.Clone(o.Tolerations),
					Affinity:                     o.Affinity,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr(true),
						RunAsUser:      o.RunAsUser,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:      ContainerName,
						Image:     spec.Image,
						Env:       p.env(spec, extra),
						Resources: resources(spec),
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	if o.MaxLifetime > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr(int64(math.Ceil(o.MaxLifetime.Seconds())))
	}
	for _, s := range o.ImagePullSecrets {
		job.Spec.Template.Spec.ImagePullSecrets = append(job.Spec.Template.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return job
}

// env is the container's environment, sorted by name: the spec's plain
// values, then every secret by reference.
func (p *Provider) env(spec providers.AgentSpec, extra map[string]string) []corev1.EnvVar {
	var env []corev1.EnvVar
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if _, secret := spec.Secrets[k]; secret || k == tokenEnv {
			continue
		}
		env = append(env, corev1.EnvVar{Name: k, Value: spec.Env[k]})
	}
	if p.opt.TokenSecret != "" {
		env = append(env, secretEnv(tokenEnv, p.opt.TokenSecret, p.opt.TokenKey))
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env = append(env, secretEnv(k, spec.Name, k))
	}
	return env
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key,
	}}}
}

// resources requests what the spec asks and limits the container to it
// (Guaranteed QoS: an agent is not evicted for a neighbour's burst).
func resources(spec providers.AgentSpec) corev1.ResourceRequirements {
	rl := corev1.ResourceList{}
	if spec.CPU > 0 {
		rl[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Ceil(spec.CPU*1000)), resource.DecimalSI)
	}
	if spec.MemoryMB > 0 {
		rl[corev1.ResourceMemory] = *resource.NewQuantity(spec.MemoryMB<<20, resource.BinarySI)
	}
	if len(rl) == 0 {
		return corev1.ResourceRequirements{}
	}
	return corev1.ResourceRequirements{Requests: rl, Limits: rl.DeepCopy()}
}

func ptr[T any](v T) *T { return &v }

func ptrTrue(b *bool) bool { return b != nil && *b }
