package sim

import (
	"math"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/metrics/metricstest"
)

// TestAgentSecondsMatchTheMetric: the simulator's agent-seconds and idle
// agent-seconds are the integral, event by event, of the states the
// scaler's agentscaler_agent_seconds_total samples at each pass (starting,
// idle: online without a job, busy). Over a working day the two agree
// within a few percent; the metric lags each change by at most the time to
// the next pass.
func TestAgentSecondsMatchTheMetric(t *testing.T) {
	jobs := Generate(GenerateOptions{Seed: 1})
	pool := testPool(60, 0)
	pool.Schedules = []config.Schedule{{Cron: "0 8 * * 1-5", MinIdle: 3}, {Cron: "0 19 * * 1-5", MinIdle: 0}}
	for _, policy := range []string{"webhook", "poll:30s"} {
		t.Run(policy, func(t *testing.T) {
			m := metrics.New("sim")
			r := mustRun(t, jobs, policy, Options{Pool: pool, StartLatency: fixed(30 * time.Second), HookDelay: time.Second, Seed: 1, Metrics: m})
			got := metricstest.ByLabel(t, m.Registry(), "agentscaler_agent_seconds_total", map[string]string{"pool": "linux"}, "state")
			total := got["starting"] + got["idle"] + got["busy"]
			t.Logf("%s: simulated %.0f agent-s (%.0f idle), metered %.0f (%.0f idle; starting %.0f, busy %.0f)",
				policy, r.AgentSeconds, r.IdleAgentSeconds, total, got["idle"], got["starting"], got["busy"])
			if r.IdleAgentSeconds < 3600 {
				t.Fatalf("only %v idle agent-seconds: the schedule kept no warm agent", r.IdleAgentSeconds)
			}
			for _, c := range []struct {
				name             string
				simulated, meter float64
				within           float64
			}{
				{"agent-seconds", r.AgentSeconds, total, 0.05},
				{"idle agent-seconds", r.IdleAgentSeconds, got["idle"], 0.10},
			} {
				if math.Abs(c.meter-c.simulated) > c.within*c.simulated {
					t.Errorf("%s: metered %.0f, simulated %.0f: more than %.0f%% apart", c.name, c.meter, c.simulated, 100*c.within)
				}
			}
		})
	}
}
