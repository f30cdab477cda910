package providers

import "maps"

// The agent environment: what every agent container is given, next to the
// labels every instance carries (docs/architecture.md, "The agent
// environment"). The token travels only in AgentSpec.Secrets, under
// EnvToken; a provider that mounts secrets as files passes EnvToken+"_FILE".
const (
	EnvURL   = "AZP_URL"        // the organization URL
	EnvPool  = "AZP_POOL"       // the Azure DevOps agent pool
	EnvName  = "AZP_AGENT_NAME" // the agent's name: the instance name
	EnvWork  = "AZP_WORK"       // the agent's work folder
	EnvToken = "AZP_TOKEN"      // the token the agent registers with (a secret)
)

// ReservedEnv are the variables the autoscaler sets for every agent, which
// a pool's own environment may not set.
var ReservedEnv = []string{EnvURL, EnvPool, EnvName, EnvWork}

// AgentEnv returns the pool's own environment with the autoscaler's
// variables for an agent of that pool set over it; the agent's name is
// added per instance (WithName).
func AgentEnv(own map[string]string, orgURL, pool, work string) map[string]string {
	env := maps.Clone(own)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvURL], env[EnvPool], env[EnvWork] = orgURL, pool, work
	return env
}

// WithName returns a copy of env naming the agent: it registers under its
// instance's name.
func WithName(env map[string]string, name string) map[string]string {
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvName] = name
	return env
}
