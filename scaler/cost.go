package scaler

import (
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/metrics"
)

// agentTime accumulates agentscaler_agent_seconds_total for each pool: at
// each reconcile, the time since the pool's previous one times its agents
// in each state (starting, idle, busy) as that one left them, which is what
// the agentscaler_agents gauge showed in between. The counter is the
// integral over time of that gauge, held as a step between passes, so it
// approximates what the provider bills: an agent that came online or took
// a job between two passes keeps its earlier state until the second, and an
// instance made and gone between two passes is not counted. The error is
// at most the time between passes for each agent that changed state, and
// it averages out over many passes (see docs/architecture.md).
//
// A pass that could not observe the pool records nothing: the next one
// that can covers the gap with the counts of the last. The first pass of a
// process only starts the series, at 0.
type agentTime struct {
	mu    sync.Mutex
	pools map[string]lastPass
}

type lastPass struct {
	at     time.Time
	agents map[string]int
}

// pass records a reconcile of pool that observed at at and left agents.
func (a *agentTime) pass(m *metrics.Metrics, pool string, at time.Time, agents map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev, seen := a.pools[pool]
	if seen && at.Before(prev.at) {
		return // an older pass that ended late: a newer one already counted its time
	}
	var d time.Duration
	if seen {
		d = at.Sub(prev.at)
	}
	m.AddAgentSeconds(pool, prev.agents, d)
	if a.pools == nil {
		a.pools = map[string]lastPass{}
	}
	a.pools[pool] = lastPass{at, agents}
}
