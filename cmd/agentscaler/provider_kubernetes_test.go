//go:build !nokubernetes

package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

// kubernetesPool loads a configuration with one kubernetes pool whose
// section is the YAML given, as the command would.
func kubernetesPool(t *testing.T, section string) config.Pool {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	body := `azuredevops: {url: https://dev.azure.com/contoso, token_env: AZP_TOKEN}
webhook: {basic_auth: {username: azdo, password_env: HOOK_PASSWORD}}
pools:
  - name: k8s
    azure_pool: Default
    provider: kubernetes
    max_lifetime: 2h
    startup_timeout: 3m
    agent: {image: azp-agent:linux}
    kubernetes:
` + section
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, testEnv)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return cfg.Pools[0]
}

func TestKubernetesOptions(t *testing.T) {
	pool := kubernetesPool(t, `      namespace: agents
      token_secret: azp-token
      tolerations: [{key: dedicated, operator: Equal, value: agents, effect: NoSchedule}]
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [agents]}]}]
`)
	opt, err := kubernetesOptions(pool)
	if err != nil {
		t.Fatalf("kubernetesOptions: %v", err)
	}
	if opt.Namespace != "agents" || opt.TokenSecret != "azp-token" || opt.TokenKey != kubernetes.DefaultTokenKey {
		t.Errorf("namespace/secret/key = %q/%q/%q", opt.Namespace, opt.TokenSecret, opt.TokenKey)
	}
	if opt.MaxLifetime != 2*time.Hour || opt.StartupTimeout != 3*time.Minute || opt.TTLAfterFinished != config.DefaultKubernetesTTLAfterFinished {
		t.Errorf("max lifetime %v, startup timeout %v, ttl %v; want the pool's 2h and 3m, and the default ttl", opt.MaxLifetime, opt.StartupTimeout, opt.TTLAfterFinished)
	}
	want := corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "agents", Effect: corev1.TaintEffectNoSchedule}
	if len(opt.Tolerations) != 1 || opt.Tolerations[0] != want {
		t.Errorf("tolerations = %+v, want [%+v]", opt.Tolerations, want)
	}
	a := opt.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatalf("affinity = %+v, want the node affinity of the file", a)
	}
	req := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	if req.Key != "pool" || req.Operator != corev1.NodeSelectorOpIn || len(req.Values) != 1 || req.Values[0] != "agents" {
		t.Errorf("affinity term = %+v", req)
	}
}

func TestKubernetesOptionsRefuse(t *testing.T) {
	for name, tc := range map[string]struct{ section, want string }{
		"misspelt affinity field": {`      token_secret: azp-token
      affinity: {nodeAffinity: {requiredDuringScheduling: {}}}
`, "kubernetes.affinity"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := kubernetesOptions(kubernetesPool(t, tc.section))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("kubernetesOptions = %v; want an error naming %s", err, tc.want)
			}
		})
	}
}

// TestKubernetesFactory builds the provider from a kubeconfig file, as
// serve would, and checks it logs where it connects and warns about a TTL
// that undercuts the failure back-off.
func TestKubernetesFactory(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	const kc = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: kubeconfig-token-not-logged}}]
contexts: [{name: agents, context: {cluster: c, user: u}}]
current-context: agents
`
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := kubernetesPool(t, `      token_secret: azp-token
      kubeconfig: `+kubeconfig+`
      context: agents
      ttl_after_finished: 1m
`)
	var logs syncbuf.Buffer
	p, err := providerFactories["kubernetes"](context.Background(), pool, providerEnv{getenv: testEnv, log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	if _, ok := p.(*kubernetes.Provider); !ok {
		t.Errorf("factory returned %T", p)
	}
	out := logs.String()
	for _, want := range []string{"config=kubeconfig", "context=agents", "namespace=default", "ttl_after_finished"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kubeconfig-token-not-logged") {
		t.Errorf("logs reveal the kubeconfig token:\n%s", out)
	}
}
