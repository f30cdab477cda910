package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/ci"
)

// Kubernetes holds the Kubernetes provider's settings; see
// docs/providers/kubernetes.md. Tolerations and affinity are written as in
// a pod spec (camelCase keys), so they can be pasted from one.
type Kubernetes struct {
	Namespace   string `yaml:"namespace"`
	TokenSecret string `yaml:"token_secret"` // Secret holding the agent token, by reference
	TokenKey    string `yaml:"token_key"`    // its key, AZP_TOKEN by default
	Kubeconfig  string `yaml:"kubeconfig"`   // in-cluster config when empty (and no context)
	Context     string `yaml:"context"`

	ServiceAccount   string            `yaml:"service_account"` // the agent pods' own; the namespace default when empty
	ImagePullSecrets []string          `yaml:"image_pull_secrets"`
	NodeSelector     map[string]string `yaml:"node_selector"`
	Tolerations      []Toleration      `yaml:"tolerations"`
	// Affinity is a pod spec's affinity (nodeAffinity, podAffinity,
	// podAntiAffinity), checked in full when the provider starts.
	Affinity    map[string]any    `yaml:"affinity"`
	Annotations map[string]string `yaml:"annotations"` // added to every agent pod
	// RunAsUser is the agents' uid; the image's (numeric, non-root) user when unset.
	RunAsUser *int64 `yaml:"run_as_user"`
	// HostNetwork runs the agents in their node's network (hostNetwork).
	HostNetwork bool `yaml:"host_network"`
	// TTLAfterFinished is how long Kubernetes keeps a finished agent Job.
	TTLAfterFinished *time.Duration `yaml:"ttl_after_finished"`
}

// Toleration is a pod spec toleration.
type Toleration struct {
	Key               string `yaml:"key"`
	Operator          string `yaml:"operator"` // Equal (default) or Exists
	Value             string `yaml:"value"`
	Effect            string `yaml:"effect"` // NoSchedule, PreferNoSchedule, NoExecute, or empty for all
	TolerationSeconds *int64 `yaml:"tolerationSeconds"`
}

// Defaults of the kubernetes section.
const (
	DefaultKubernetesTokenKey = "AZP_TOKEN"
	// Longer than the default failure_backoff, so a failed agent's Job is
	// still there for the scaler to hold its name until the back-off ends.
	DefaultKubernetesTTLAfterFinished = 10 * time.Minute
)

func (kc *Kubernetes) defaults() {
	if kc.Namespace == "" {
		kc.Namespace = DefaultKubernetesNamespace
	}
	if kc.TokenKey == "" {
		kc.TokenKey = DefaultKubernetesTokenKey
	}
	if kc.TTLAfterFinished == nil {
		ttl := DefaultKubernetesTTLAfterFinished
		kc.TTLAfterFinished = &ttl
	}
}

// Kubernetes names, as the API server checks them.
var (
	secretKeyRE      = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
	labelValueRE     = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$`)
	qualifiedNameRE  = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$`)
	tolerationOps    = []string{"Equal", "Exists"}
	taintEffects     = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
	affinityKinds    = []string{"nodeAffinity", "podAffinity", "podAntiAffinity"}
	qualifiedExample = "kubernetes.io/os or dedicated"
)

func (v *validator) kubernetes(k string, kc *Kubernetes, system string) {
	if !dnsLabelRE.MatchString(kc.Namespace) {
		v.add(k+"namespace", "must be a Kubernetes namespace name: lowercase letters, digits and '-', at most 63 characters (got %q)", kc.Namespace)
	}
	switch {
	case system != ci.AzureDevOps && kc.TokenSecret != "":
		// A runner of another system must not see the Azure DevOps token.
		v.add(k+"token_secret", "is the Secret of the Azure Pipelines agent token, which a %s pool's runners must not get: they get their own credential through a Secret the provider writes per runner; remove it", system)
	case system != ci.AzureDevOps:
	case kc.TokenSecret == "":
		v.add(k+"token_secret", "required when provider is kubernetes: the Secret that holds AZP_TOKEN for the agents")
	case !dnsSubdomRE.MatchString(kc.TokenSecret):
		v.add(k+"token_secret", "must be a Kubernetes Secret name: lowercase letters, digits, '-' and '.' (got %q)", kc.TokenSecret)
	}
	if system != ci.AzureDevOps && kc.TokenKey != DefaultKubernetesTokenKey {
		v.add(k+"token_key", "is the key of token_secret, which a %s pool has none of; remove it", system)
	} else if !secretKeyRE.MatchString(kc.TokenKey) {
		v.add(k+"token_key", "must be a key of the Secret: letters, digits, '-', '_' and '.' (got %q); the default is %s", kc.TokenKey, DefaultKubernetesTokenKey)
	}
	if kc.ServiceAccount != "" && !dnsSubdomRE.MatchString(kc.ServiceAccount) {
		v.add(k+"service_account", "must be a ServiceAccount name: lowercase letters, digits, '-' and '.' (got %q)", kc.ServiceAccount)
	}
	for i, s := range kc.ImagePullSecrets {
		if !dnsSubdomRE.MatchString(s) {
			v.add(fmt.Sprintf("%simage_pull_secrets[%d]", k, i), "must be a Secret name: lowercase letters, digits, '-' and '.' (got %q)", s)
		}
	}
	for _, key := range sortedKeys(kc.NodeSelector) {
		if !qualifiedName(key) {
			v.add(k+"node_selector."+key, "is not a label key, such as %s", qualifiedExample)
		} else if !labelValueRE.MatchString(kc.NodeSelector[key]) {
			v.add(k+"node_selector."+key, "value %q is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", kc.NodeSelector[key])
		}
	}
	for i, tol := range kc.Tolerations {
		v.toleration(fmt.Sprintf("%stolerations[%d]", k, i), tol)
	}
	for _, kind := range slices.Sorted(maps.Keys(kc.Affinity)) {
		if !slices.Contains(affinityKinds, kind) {
			v.add(k+"affinity."+kind, "is not a kind of affinity; use %s, as in a pod spec", strings.Join(affinityKinds, ", "))
		}
	}
	for _, key := range sortedKeys(kc.Annotations) {
		if !qualifiedName(key) {
			v.add(k+"annotations."+key, "is not an annotation key, such as cluster-autoscaler.kubernetes.io/safe-to-evict")
		}
	}
	if kc.RunAsUser != nil && *kc.RunAsUser < 1 {
		v.add(k+"run_as_user", "must be a non-root uid, 1 or more (got %d): agents run as non-root", *kc.RunAsUser)
	}
	if kc.TTLAfterFinished != nil && *kc.TTLAfterFinished <= 0 {
		v.add(k+"ttl_after_finished", "must be greater than 0 (got %s), such as %s: the scaler reads a finished agent's exit before deleting it", *kc.TTLAfterFinished, DefaultKubernetesTTLAfterFinished)
	}
}

func (v *validator) toleration(k string, tol Toleration) {
	op := tol.Operator
	if op == "" {
		op = "Equal"
	}
	if !slices.Contains(tolerationOps, op) {
		v.oneOf(k+".operator", tol.Operator, tolerationOps)
	}
	switch {
	case tol.Key == "" && op != "Exists":
		v.add(k+".key", "required unless operator is Exists (which then tolerates every taint)")
	case tol.Key != "" && !qualifiedName(tol.Key):
		v.add(k+".key", "is not a taint key, such as %s", qualifiedExample)
	}
	if op == "Exists" && tol.Value != "" {
		v.add(k+".value", "must be empty when operator is Exists")
	}
	if tol.Effect != "" && !slices.Contains(taintEffects, tol.Effect) {
		v.oneOf(k+".effect", tol.Effect, taintEffects)
	}
	if tol.TolerationSeconds != nil && tol.Effect != "NoExecute" {
		v.add(k+".tolerationSeconds", "applies only to effect NoExecute; remove it or set effect: NoExecute")
	}
}

// qualifiedName reports whether s is a label, annotation or taint key:
// a name of at most 63 characters, optionally after a DNS subdomain prefix
// and a '/'.
func qualifiedName(s string) bool {
	prefix, name, found := strings.Cut(s, "/")
	if !found {
		return qualifiedNameRE.MatchString(s)
	}
	return dnsSubdomRE.MatchString(prefix) && qualifiedNameRE.MatchString(name)
}
