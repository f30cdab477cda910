package scaler

import (
	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
)

// PolicyFor is the plan's policy for a configured pool whose source names
// instances by naming, the one mapping serve, reconcile, demo and simulate
// share. An Azure DevOps pool keeps a placeholder agent registered, so that
// jobs queue into it while it has no agent; a GitHub job or a Bitbucket
// step waits for a runner of its labels without one.
func PolicyFor(pc config.Pool, naming ci.Naming) Policy {
	return Policy{
		Pool: pc.Name, Naming: naming, MaxAgents: pc.MaxAgents, MinIdle: pc.MinIdle,
		StartupTimeout: pc.StartupTimeout, MaxLifetime: pc.MaxLifetime, FailureBackoff: pc.FailureBackoff,
		Placeholder: pc.System() == ci.AzureDevOps,
	}
}
