package scaler

import (
	"slices"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

// bbRunner is a runner of the Bitbucket pool "bb" in Bitbucket's terms,
// adapted as the Bitbucket source adapts it.
func bbRunner(name, status, step string) ci.Agent {
	r := bitbucket.Runner{UUID: "{" + name + "}", Name: name, Labels: []string{"self.hosted", "linux"}, State: bitbucket.RunnerState{Status: status}}
	if step != "" {
		r.State.Step = &bitbucket.Step{UUID: step}
	}
	return bitbucket.Agent(r)
}

func bbInst(name string, state providers.State, slot int) providers.Instance {
	return providers.Instance{Name: name, Pool: "bb", State: state, Slot: slot, Created: now.Add(-time.Minute)}
}

// TestPlanBitbucket: with no waiting step ever seen, min_idle alone keeps
// runners ready, and a runner that takes a step leaves the idle count, so
// the same pass starts its replacement; no rule of the plan is Bitbucket's
// own.
func TestPlanBitbucket(t *testing.T) {
	tests := []struct {
		name      string
		minIdle   int
		max       int
		runners   []ci.Agent
		instances []providers.Instance
		want      []string
	}{
		{name: "an empty pool gets its warm runner and no placeholder", minIdle: 1, max: 3,
			want: []string{"create bb-w1 min_idle"}},
		{name: "an idle runner is enough", minIdle: 1, max: 3,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1)}},
		{name: "a runner that takes a step is replaced at once", minIdle: 1, max: 3,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "{step-1}")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1)},
			want:      []string{"create bb-w2 min_idle"}},
		{name: "a starting runner counts as the idle one", minIdle: 1, max: 3,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "{step-1}"), bbRunner("bb-w2", bitbucket.StatusUnregistered, "")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1), bbInst("bb-w2", providers.StatePending, 2)}},
		{name: "two busy runners at min_idle 2 get two more", minIdle: 2, max: 4,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "{s1}"), bbRunner("bb-w2", bitbucket.StatusOnline, "{s2}")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1), bbInst("bb-w2", providers.StateRunning, 2)},
			want:      []string{"create bb-w3 min_idle", "create bb-w4 min_idle"}},
		{name: "the cap holds while every runner is busy", minIdle: 1, max: 2,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "{s1}"), bbRunner("bb-w2", bitbucket.StatusOnline, "{s2}")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1), bbInst("bb-w2", providers.StateRunning, 2)}},
		{name: "after the step, the idle runner beyond min_idle goes", minIdle: 1, max: 3,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, ""), bbRunner("bb-w2", bitbucket.StatusOnline, "")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1), bbInst("bb-w2", providers.StateRunning, 2)},
			want:      []string{"delete bb-w2 excess_warm"}},
		{name: "min_idle 0 drains to nothing", minIdle: 0, max: 3,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1)},
			want:      []string{"delete bb-w1 excess_warm"}},
		{name: "a busy runner is never removed at min_idle 0", minIdle: 0, max: 3,
			runners:   []ci.Agent{bbRunner("bb-w1", bitbucket.StatusOnline, "{s1}")},
			instances: []providers.Instance{bbInst("bb-w1", providers.StateRunning, 1)}},
		{name: "our offline runner without an instance is deleted; another's is not", minIdle: 0, max: 3,
			runners: []ci.Agent{bbRunner("bb-w3", bitbucket.StatusOffline, ""), bbRunner("build-01", bitbucket.StatusOffline, "")},
			want:    []string{"unregister bb-w3 offline_leftover"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Pool: "bb", Naming: bitbucket.Naming, MaxAgents: tc.max, MinIdle: tc.minIdle,
				StartupTimeout: 5 * time.Minute, MaxLifetime: 6 * time.Hour, FailureBackoff: 5 * time.Minute}
			d := Plan(p, Observation{Now: now, Agents: tc.runners, Instances: tc.instances, Free: -1})
			if got := render(d.Actions); !slices.Equal(got, tc.want) {
				t.Errorf("actions:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestPolicyForPlaceholderIsAzureDevOpsOnly(t *testing.T) {
	if !mustPolicy(t, config.Pool{Name: "ado"}, ci.Requests).Placeholder {
		t.Errorf("an Azure DevOps pool keeps no placeholder")
	}
	if mustPolicy(t, config.Pool{Name: "bb", Source: ci.Bitbucket}, bitbucket.Naming).Placeholder {
		t.Errorf("a Bitbucket pool keeps a placeholder")
	}
}
