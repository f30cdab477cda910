package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// kubernetesFile is a configuration with one kubernetes pool whose section
// is the YAML given (indented under kubernetes:).
func kubernetesFile(section string) []byte {
	return []byte(`azuredevops: {url: https://dev.azure.com/contoso, token_env: TEST_AZP_TOKEN}
webhook: {basic_auth: {username: azdo, password_env: TEST_WEBHOOK_PASSWORD}}
pools:
  - name: k8s
    azure_pool: Default
    provider: kubernetes
    agent: {image: azp-agent:linux}
    kubernetes:
` + section)
}

func TestKubernetesSection(t *testing.T) {
	cfg, err := parse(kubernetesFile(`      namespace: agents
      token_secret: azp-token
      token_key: pat
      kubeconfig: /etc/agentscaler/kubeconfig
      context: prod
      service_account: agent
      image_pull_secrets: [regcred]
      node_selector: {kubernetes.io/os: linux}
      tolerations:
        - {key: dedicated, operator: Equal, value: agents, effect: NoSchedule}
        - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 30}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [agents]}]}]
      annotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: "false"}
      run_as_user: 1000
      ttl_after_finished: 30m
`), fileEnv)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	kc := cfg.Pools[0].Kubernetes
	if kc.Namespace != "agents" || kc.TokenSecret != "azp-token" || kc.TokenKey != "pat" || kc.Kubeconfig != "/etc/agentscaler/kubeconfig" ||
		kc.Context != "prod" || kc.ServiceAccount != "agent" || !slices.Equal(kc.ImagePullSecrets, []string{"regcred"}) {
		t.Errorf("section = %+v", kc)
	}
	if kc.NodeSelector["kubernetes.io/os"] != "linux" || kc.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "false" {
		t.Errorf("node selector %v, annotations %v", kc.NodeSelector, kc.Annotations)
	}
	if len(kc.Tolerations) != 2 || kc.Tolerations[1].TolerationSeconds == nil || *kc.Tolerations[1].TolerationSeconds != 30 {
		t.Errorf("tolerations = %+v", kc.Tolerations)
	}
	if _, ok := kc.Affinity["nodeAffinity"].(map[string]any); !ok {
		t.Errorf("affinity = %#v, want the nodeAffinity mapping", kc.Affinity)
	}
	if kc.RunAsUser == nil || *kc.RunAsUser != 1000 || kc.TTLAfterFinished == nil || *kc.TTLAfterFinished != 30*time.Minute {
		t.Errorf("run_as_user %v, ttl_after_finished %v", kc.RunAsUser, kc.TTLAfterFinished)
	}
}

func TestKubernetesDefaults(t *testing.T) {
	cfg, err := parse(kubernetesFile("      token_secret: azp-token\n"), fileEnv)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	kc := cfg.Pools[0].Kubernetes
	if kc.Namespace != DefaultKubernetesNamespace || kc.TokenKey != DefaultKubernetesTokenKey ||
		kc.TTLAfterFinished == nil || *kc.TTLAfterFinished != DefaultKubernetesTTLAfterFinished || kc.RunAsUser != nil {
		t.Errorf("defaults: namespace %q, token_key %q, ttl %v, run_as_user %v", kc.Namespace, kc.TokenKey, kc.TTLAfterFinished, kc.RunAsUser)
	}
}

func TestKubernetesProblems(t *testing.T) {
	const k = "pools[0].kubernetes."
	_, err := parse(kubernetesFile(`      namespace: Agents
      token_secret: azp-token
      token_key: "not a key"
      service_account: Agent
      image_pull_secrets: [ok, Not_OK]
      node_selector: {"bad key!": linux, pool: "not a value"}
      tolerations:
        - {key: dedicated, operator: Exist, value: agents}
        - {operator: Equal, value: x}
        - {key: a, operator: Exists, value: x, effect: NoSchedul}
        - {key: b, effect: NoSchedule, tolerationSeconds: 30}
      affinity: {nodeAfinity: {}}
      annotations: {"/no-prefix": x}
      run_as_user: 0
      ttl_after_finished: 0s
`), fileEnv)
	want := map[string]string{
		k + "namespace":                        "namespace name",
		k + "token_key":                        "key of the Secret",
		k + "service_account":                  "ServiceAccount name",
		k + "image_pull_secrets[1]":            "Secret name",
		k + "node_selector.bad key!":           "not a label key",
		k + "node_selector.pool":               "not a label value",
		k + "tolerations[0].operator":          `did you mean "Exists"?`,
		k + "tolerations[1].key":               "required unless operator is Exists",
		k + "tolerations[2].value":             "must be empty when operator is Exists",
		k + "tolerations[2].effect":            `did you mean "NoSchedule"?`,
		k + "tolerations[3].tolerationSeconds": "only to effect NoExecute",
		k + "affinity.nodeAfinity":             "nodeAffinity, podAffinity, podAntiAffinity",
		k + "annotations./no-prefix":           "not an annotation key",
		k + "run_as_user":                      "non-root uid",
		k + "ttl_after_finished":               "must be greater than 0",
	}
	ps := problemsOf(t, err)
	got := map[string]string{}
	for _, p := range ps {
		got[p.Key] = p.Message
	}
	for key, phrase := range want {
		if msg, ok := got[key]; !ok {
			t.Errorf("no problem for %s; problems: %v", key, keysOf(ps))
		} else if !strings.Contains(msg, phrase) {
			t.Errorf("%s: %q, want it to say %q", key, msg, phrase)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(ps), len(want), keysOf(ps))
	}
}

// TestKubernetesTokenSecretNamedLikeAnAgent: the provider writes each
// instance's own Secret under the instance's name, so a token Secret named
// like an instance of any kubernetes pool in its namespace would be
// overwritten; one in another namespace is fine.
func TestKubernetesTokenSecretNamedLikeAnAgent(t *testing.T) {
	gh := `  - name: gh
    source: github
    provider: kubernetes
    agent: {image: gh-runner:2.329.0}
    kubernetes: {namespace: %s}
github: {org: acme, token_env: TEST_AZP_TOKEN, webhook_secret_env: TEST_WEBHOOK_PASSWORD}
`
	for _, c := range []struct {
		secret, ghNamespace string
		bad                 bool
	}{
		{"k8s-r12", "other", true}, // the pool's own request agents
		{"k8s-w1", "other", true},  // its warm slots
		{"gh-j7", "agents", true},  // the GitHub pool's runners, same namespace
		{"gh-j7", "other", false},  // another namespace
		{"azp-token", "agents", false},
	} {
		file := string(kubernetesFile("      namespace: agents\n      token_secret: "+c.secret+"\n")) + fmt.Sprintf(gh, c.ghNamespace)
		_, err := parse([]byte(file), fileEnv)
		if got := err != nil && strings.Contains(err.Error(), "pools[0].kubernetes.token_secret"); got != c.bad {
			t.Errorf("token_secret %s beside a github pool in namespace %s: %v; want refused %v", c.secret, c.ghNamespace, err, c.bad)
		}
	}
}
