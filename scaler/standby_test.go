package scaler

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// TestPlanStandbyTarget: the observation's scheduled target takes the place
// of the policy's min_idle, by the same rules.
func TestPlanStandbyTarget(t *testing.T) {
	warmIdle := func(n int) adoObservation {
		var o adoObservation
		for i := 1; i <= n; i++ {
			name := ci.Requests.SlotName("linux", i)
			o.Agents = append(o.Agents, agent(i, name, "online", nil))
			o.Instances = append(o.Instances, withSlot(inst(name, providers.StateRunning, time.Minute), i))
		}
		return o
	}
	tests := []struct {
		name    string
		minIdle int  // the policy's
		target  *int // the observation's
		obs     adoObservation
		want    []string
	}{
		{name: "no target keeps the policy's min_idle", minIdle: 2,
			want: []string{"create linux-w1 min_idle", "create linux-w2 min_idle"}},
		{name: "a morning target above min_idle warms agents", minIdle: 0, target: new(3),
			want: []string{"create linux-w1 min_idle", "create linux-w2 min_idle", "create linux-w3 min_idle"}},
		{name: "an evening target of 0 removes the warm agents", minIdle: 2, target: new(0), obs: warmIdle(2),
			want: []string{"delete linux-w1 excess_warm", "delete linux-w2 excess_warm"}},
		{name: "a target met needs nothing", minIdle: 0, target: new(2), obs: warmIdle(2)},
		{name: "a lower target removes only the excess", minIdle: 3, target: new(1), obs: warmIdle(3),
			want: []string{"delete linux-w2 excess_warm", "delete linux-w3 excess_warm"}},
		{name: "a target beyond max_agents stops at max_agents", minIdle: 0, target: new(20), obs: warmIdle(9),
			want: []string{"create linux-w10 min_idle"}},
		{name: "a target of 0 removes no spare while a job waits", minIdle: 1, target: new(0),
			obs: func() adoObservation {
				o := warmIdle(2)
				o.Requests = []azuredevops.JobRequest{waiting(5, 0)}
				return o
			}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy()
			p.MinIdle = tc.minIdle
			o := tc.obs
			o.Now, o.FreeParallel = now, -1
			n := o.neutral()
			n.MinIdle = tc.target
			if got := render(Plan(p, n).Actions); !slices.Equal(got, tc.want) {
				t.Errorf("actions:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// stubSource is a pool with agents and no jobs.
type stubSource struct{ agents []ci.Agent }

func (s *stubSource) Agents(context.Context) ([]ci.Agent, error)      { return s.agents, nil }
func (*stubSource) Jobs(context.Context) ([]ci.Job, error)            { return nil, nil }
func (*stubSource) Free(context.Context) (int, error)                 { return -1, nil }
func (*stubSource) Unregister(context.Context, int64) error           { return nil }
func (*stubSource) RegisterPlaceholder(context.Context, string) error { return nil }

// TestObserveStandbyTarget: the scaler reads the target off the schedule at
// its clock's time, so the plan warms agents at 08:00 in the pool's zone.
func TestObserveStandbyTarget(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	monday := time.Date(2026, time.March, 2, 7, 59, 0, 0, berlin)
	clock := fakeclock.New(monday)
	pc := config.Pool{Name: "linux", MaxAgents: 10, MinIdle: 1, StartupTimeout: time.Hour, MaxLifetime: 6 * time.Hour,
		FailureBackoff: time.Minute, Timezone: "Europe/Berlin",
		Schedules: []config.Schedule{{Cron: "0 8 * * 1-5", MinIdle: 3}, {Cron: "0 19 * * 1-5", MinIdle: 0}}}
	mem := memory.New(memory.Options{Now: clock.Now})
	s := New(Options{Clock: clock, Pools: []Pool{{
		Policy: mustPolicy(t, pc, ci.Requests), Source: &stubSource{}, Provider: mem, ProviderName: "memory",
		Spec: func(context.Context, string) (providers.AgentSpec, error) {
			return providers.AgentSpec{Image: "x"}, nil
		},
	}}})
	ctx := context.Background()
	target := func() any {
		o, err := s.Observe(ctx, "linux")
		if err != nil {
			t.Fatal(err)
		}
		if o.MinIdle == nil {
			return nil
		}
		return *o.MinIdle
	}
	if got := target(); got != 0 {
		t.Errorf("Monday 07:59: target %v, want 0 (Friday 19:00's entry)", got)
	}
	clock.Advance(time.Minute)
	if got := target(); got != 3 {
		t.Errorf("Monday 08:00: target %v, want 3", got)
	}
	res, err := s.Reconcile(ctx, "linux")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(mem.All()); got != 3 || countKind(res.Decision.Actions, Create) != 3 {
		t.Errorf("08:00: %d instances after %v, want 3 warm", got, render(res.Decision.Actions))
	}

	// A pool whose entries have not fired in the past week keeps min_idle.
	pc.Schedules = []config.Schedule{{Cron: "0 8 1 1 *", MinIdle: 3}}
	if p := mustPolicy(t, pc, ci.Requests); p.minIdleAt(monday) != nil {
		t.Errorf("an entry that fired on January 1st applies on March 2nd: %d", *p.minIdleAt(monday))
	}
	pc.Schedules = nil
	if p := mustPolicy(t, pc, ci.Requests); p.Standby != nil || p.minIdleAt(monday) != nil {
		t.Error("a pool without schedules has a standby target")
	}
}

// mustPolicy is PolicyFor of a pool the test knows to be valid.
func mustPolicy(t *testing.T, pc config.Pool, naming ci.Naming) Policy {
	t.Helper()
	p, err := PolicyFor(pc, naming)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyForRefusesABadSchedule: a pool that was not validated gets an
// error naming it, not a panic.
func TestPolicyForRefusesABadSchedule(t *testing.T) {
	pc := config.Pool{Name: "linux", MaxAgents: 5, Schedules: []config.Schedule{{Cron: "61 * * * *", MinIdle: 1}}}
	if _, err := PolicyFor(pc, ci.Requests); err == nil || !strings.Contains(err.Error(), "pool linux: schedules") {
		t.Errorf("PolicyFor with cron 61 * * * *: %v, want an error naming pool linux's schedules", err)
	}
}
