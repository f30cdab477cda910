package scaler

import (
	"context"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/metrics/metricstest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
)

// agentSeconds reads agentscaler_agent_seconds_total{pool="linux"} by state.
func agentSeconds(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	return metricstest.ByLabel(t, m.Registry(), "agentscaler_agent_seconds_total", map[string]string{"pool": "linux"}, "state")
}

// TestAgentSecondsBetweenPasses: each pass adds the time since the previous
// one times the agents in each state as that one left them, on the
// scaler's clock; the first pass starts the series at 0.
func TestAgentSecondsBetweenPasses(t *testing.T) {
	clock := fakeclock.New(t0)
	m := metrics.New("test")
	src := &stubSource{}
	mem := memory.New(memory.Options{Now: clock.Now})
	pc := config.Pool{Name: "linux", MaxAgents: 10, MinIdle: 3, StartupTimeout: time.Hour, MaxLifetime: 6 * time.Hour, FailureBackoff: time.Minute}
	s := New(Options{Clock: clock, Metrics: m, Pools: []Pool{{
		Policy: mustPolicy(t, pc, ci.Requests), Source: src, Provider: mem, ProviderName: "memory",
		Spec: func(context.Context, string) (providers.AgentSpec, error) {
			return providers.AgentSpec{Image: "x"}, nil
		},
	}}})
	pass := func(after time.Duration, want map[string]float64) {
		t.Helper()
		clock.Advance(after)
		if _, err := s.Reconcile(context.Background(), "linux"); err != nil {
			t.Fatal(err)
		}
		got := agentSeconds(t, m)
		for _, state := range []string{"starting", "idle", "busy"} {
			if got[state] != want[state] {
				t.Errorf("after %s: agent_seconds_total{state=%q} = %v, want %v (all: %v)", clock.Now().Sub(t0), state, got[state], want[state], got)
			}
		}
		if _, ok := got["offline"]; ok || len(got) != 3 {
			t.Errorf("series %v, want starting, idle and busy only", got)
		}
	}
	// The first pass creates three warm agents: nothing before it is known.
	pass(0, map[string]float64{})
	// 30 s with three starting.
	pass(30*time.Second, map[string]float64{"starting": 90})
	// Two came online meanwhile, one took a job: the pass sees them, and
	// the 60 s before it still count as the previous pass left them.
	src.agents = []ci.Agent{
		{Name: "linux-w1", Online: true, Enabled: true},
		{Name: "linux-w2", Online: true, Enabled: true, Job: &ci.Held{ID: 9}},
	}
	pass(time.Minute, map[string]float64{"starting": 270})
	// The busy agent counts towards min_idle no more, so that pass created
	// a fourth: 10 s with one idle, one busy and two starting.
	pass(10*time.Second, map[string]float64{"starting": 290, "idle": 10, "busy": 10})
	pass(10*time.Second, map[string]float64{"starting": 310, "idle": 20, "busy": 20})

	// A pass observed before the last one counted, ending late, adds nothing.
	s.cost.pass(m, "linux", clock.Now().Add(-time.Minute), map[string]int{"idle": 100})
	clock.Advance(time.Second)
	if got := agentSeconds(t, m); got["idle"] != 20 {
		t.Errorf("a late pass changed the counter: %v", got)
	}
}

// TestMinIdleGaugeFollowsTheSchedule: pool_min_idle shows the target the
// plan kept at the last pass.
func TestMinIdleGaugeFollowsTheSchedule(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, time.March, 2, 7, 0, 0, 0, time.UTC)) // a Monday
	m := metrics.New("test")
	pc := config.Pool{Name: "linux", MaxAgents: 10, MinIdle: 1, StartupTimeout: time.Hour, MaxLifetime: 6 * time.Hour, FailureBackoff: time.Minute,
		Schedules: []config.Schedule{{Cron: "0 8 * * 1-5", MinIdle: 4}, {Cron: "0 19 * * 1-5", MinIdle: 0}}}
	s := New(Options{Clock: clock, Metrics: m, Pools: []Pool{{
		Policy: mustPolicy(t, pc, ci.Requests), Source: &stubSource{}, Provider: memory.New(memory.Options{Now: clock.Now}), ProviderName: "memory",
		Spec: func(context.Context, string) (providers.AgentSpec, error) {
			return providers.AgentSpec{Image: "x"}, nil
		},
	}}})
	gauge := func() float64 {
		v, ok := metricstest.ByLabel(t, m.Registry(), "agentscaler_pool_min_idle", nil, "pool")["linux"]
		if !ok {
			t.Fatal("no agentscaler_pool_min_idle")
		}
		return v
	}
	if got := gauge(); got != 1 {
		t.Errorf("before any pass: %v, want the configured min_idle 1", got)
	}
	for _, step := range []struct {
		after time.Duration
		want  float64
	}{{0, 0}, {time.Hour, 4}, {11 * time.Hour, 0}} {
		clock.Advance(step.after)
		if _, err := s.Reconcile(context.Background(), "linux"); err != nil {
			t.Fatal(err)
		}
		if got := gauge(); got != step.want {
			t.Errorf("at %s: pool_min_idle %v, want %v", clock.Now().Format("Mon 15:04"), got, step.want)
		}
	}
}
