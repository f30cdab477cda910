package scaler

import (
	"fmt"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/standby"
)

// PolicyFor is the plan's policy for a configured pool whose source names
// instances by naming, the one mapping serve, reconcile, demo and simulate
// share. An Azure DevOps pool keeps a placeholder agent registered, so that
// jobs queue into it while it has no agent; a GitHub job or a Bitbucket
// step waits for a runner of its labels without one. A validated pool
// (config.Load, config.ValidatePolicy) always has a policy; the error is
// for one that was not.
func PolicyFor(pc config.Pool, naming ci.Naming) (Policy, error) {
	p := Policy{
		Pool: pc.Name, Naming: naming, MaxAgents: pc.MaxAgents, MinIdle: pc.MinIdle,
		StartupTimeout: pc.StartupTimeout, MaxLifetime: pc.MaxLifetime, FailureBackoff: pc.FailureBackoff,
		Placeholder: pc.System() == ci.AzureDevOps,
	}
	if len(pc.Schedules) > 0 {
		entries := make([]standby.Entry, len(pc.Schedules))
		for i, e := range pc.Schedules {
			entries[i] = standby.Entry{Cron: e.Cron, MinIdle: e.MinIdle}
		}
		s, err := standby.Compile(entries, pc.Timezone)
		if err != nil {
			return Policy{}, fmt.Errorf("pool %s: schedules: %w", pc.Name, err)
		}
		p.Standby = s
	}
	return p, nil
}

// minIdleAt is the warm-agent target of the pool's standby schedule at t,
// for Observation.MinIdle: nil without a schedule, or when no entry fired
// in the week before t (the plan then keeps Policy.MinIdle).
func (p Policy) minIdleAt(t time.Time) *int {
	if p.Standby == nil {
		return nil
	}
	if n, ok := p.Standby.Target(t); ok {
		return &n
	}
	return nil
}

// warmTarget is the warm agents the plan keeps: the observation's scheduled
// target when it has one, else the policy's min_idle.
func warmTarget(p Policy, o Observation) int {
	if o.MinIdle != nil {
		return *o.MinIdle
	}
	return p.MinIdle
}
