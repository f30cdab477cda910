package scaler

import (
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// PolicyFor is the plan's policy for a configured pool, the one mapping
// serve, reconcile, demo and simulate share. Every pool keeps a placeholder
// agent registered.
func PolicyFor(pc config.Pool) Policy {
	return Policy{
		Pool: pc.Name, MaxAgents: pc.MaxAgents, MinIdle: pc.MinIdle,
		StartupTimeout: pc.StartupTimeout, MaxLifetime: pc.MaxLifetime, FailureBackoff: pc.FailureBackoff,
		Capabilities: azuredevops.PoolCapabilities(pc.Capabilities, pc.AgentVersion),
		Placeholder:  true,
	}
}
