package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestLimits(t *testing.T) {
	tests := []struct {
		reconcile, pool string
		key, says       string // "" when valid
	}{
		{"interval: 1ns", "", "reconcile.interval", "must be between 1s and 1h (got 1ns): a shorter timer spends the Azure DevOps rate limit"},
		{"interval: 2h", "", "reconcile.interval", "must be between 1s and 1h (got 2h)"},
		{"interval: 1s", "", "", ""},
		{"call_timeout: 500ms", "", "reconcile.call_timeout", "must be between 1s and 10m (got 500ms)"},
		{"parallelism: 101", "", "reconcile.parallelism", "must be between 1 and 100 (got 101)"},
		{"parallelism: 100", "", "", ""},
		{"", "    max_agents: 10001\n", "pools[0].max_agents", "must be between 1 and 10000 (got 10001)"},
		{"", "    max_agents: 10.9\n", "pools[0].max_agents", "must be a whole number (got 10.9)"},
		{"", "    min_idle: 1.5\n", "pools[0].min_idle", "must be a whole number (got 1.5)"},
		{"parallelism: 8.0", "", "reconcile.parallelism", "must be a whole number (got 8.0)"},
		{"", "    startup_timeout: 10s\n", "pools[0].startup_timeout", "must be between 30s and 2h (got 10s)"},
		{"", "    max_lifetime: 721h\n", "pools[0].max_lifetime", "must be between 1m and 720h (got 721h)"},
		{"", "    failure_backoff: 1s\n", "pools[0].failure_backoff", "must be between 10s and 24h (got 1s)"},
		{"", "    agent: {image: azp-agent:linux, cpu: 1e10}\n", "pools[0].agent.cpu", "between 0.01 and 1024 cores (got 1e+10)"},
		{"", "    agent: {image: azp-agent:linux, cpu: .nan}\n", "pools[0].agent.cpu", "between 0.01 and 1024 cores (got NaN)"},
		{"", "    agent: {image: azp-agent:linux, cpu: 0.5}\n", "", ""},
		{"", "    agent: {image: azp-agent:linux, memory: 9000000000Gi}\n", "pools[0].agent.memory", "must be between 128Mi and 4Ti (got 9000000000Gi)"},
		{"", "    agent: {image: azp-agent:linux, memory: 64Mi}\n", "pools[0].agent.memory", "must be between 128Mi and 4Ti (got 64Mi)"},
		{"", "    agent: {image: azp-agent:linux, memory: 4Ti}\n", "pools[0].agent.memory", "must be a quantity"},
		{"", "    agent: {image: azp-agent:linux, memory: 4096Gi}\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key+" "+tt.reconcile+strings.TrimSpace(tt.pool), func(t *testing.T) {
			// The agent key is written twice when a test sets it: drop the base's.
			body := base(tt.reconcile, tt.pool)
			if strings.Contains(tt.pool, "agent:") {
				body = strings.Replace(body, "    agent: {image: azp-agent:linux}\n", "", 1)
			}
			_, err := Load(writeTemp(t, body), fileEnv)
			if tt.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			ps := problemsOf(t, err)
			if len(ps) != 1 || ps[0].Key != tt.key || !strings.Contains(ps[0].Message, tt.says) {
				t.Errorf("problems:\n%v\nwant one on %s saying %q", err, tt.key, tt.says)
			}
		})
	}
}

func TestTwoPoolsOnOneAzurePool(t *testing.T) {
	_, err := Load(writeTemp(t, base("", `  - name: linux-big
    azure_pool: " default"
    agent: {image: azp-agent:linux, memory: 8Gi}
`)), fileEnv)
	ps := problemsOf(t, err)
	want := `"pools[1].azure_pool: \" default\" is also the Azure DevOps pool of pools[0]; pools \"linux\" and \"linux-big\" would each start ` +
		`an agent for every job queued there, two agents per job: give each its own Azure DevOps pool, or make them one pool (line 10)"`
	if len(ps) != 1 || fmt.Sprintf("%q", ps[0].String()) != want {
		t.Errorf("problems:\n%v\nwant %s", err, want)
	}
}

// TestCapabilitiesFromEnvBounded: the bound on entries holds for a pool
// described by the environment, which no YAML decoder sees.
func TestCapabilitiesFromEnvBounded(t *testing.T) {
	var list []string
	for i := range 1001 {
		list = append(list, fmt.Sprintf("c%d", i))
	}
	_, err := FromEnv(env(map[string]string{
		"AZP_URL": "https://dev.azure.com/contoso", "AZP_TOKEN": "pat", "AZP_POOL": "Default",
		"AGENTSCALER_IMAGE": "azp-agent:linux", "AGENTSCALER_WEBHOOK_PASSWORD": "pw",
		"AGENTSCALER_CAPABILITIES": strings.Join(list, ","),
	}))
	if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Key != "AGENTSCALER_CAPABILITIES" || !strings.Contains(ps[0].Message, "holds 1001 capabilities; at most 1000") {
		t.Errorf("1,001 capabilities from the environment:\n%v", err)
	}
}

// TestShortSecretNotEchoed: what a *_env key holds is repeated only when
// it has the shape of a variable name.
func TestShortSecretNotEchoed(t *testing.T) {
	for _, tt := range []struct {
		value string
		echo  bool
	}{
		{"hunter2", false},
		{"Tr0ub4dor", false},
		{"s3cr3t_pw", false},
		{"p@ss", false},
		{strings.Repeat("A", 65), false},
		{"HOOK_PASSWORD", true},
		{"AGENTSCALER_WEBHOOK_PASSWORD", true},
	} {
		_, err := Load(writeTemp(t, strings.Replace(base("", ""), "TEST_WEBHOOK_PASSWORD", tt.value, 1)), fileEnv)
		ps := problemsOf(t, err)
		if len(ps) != 1 || ps[0].Key != "webhook.basic_auth.password_env" {
			t.Fatalf("%q: problems %v, want one on password_env", tt.value, err)
		}
		if echoed := strings.Contains(ps[0].Message, tt.value); echoed != tt.echo {
			t.Errorf("%q: message %q; repeats the value: %v, want %v", tt.value, ps[0].Message, echoed, tt.echo)
		}
	}
}
