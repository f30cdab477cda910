package bitbucket

// The runner container's environment, as Atlassian's runner image reads it
// (docs/bitbucket.md).
const (
	EnvAccountUUID          = "ACCOUNT_UUID"
	EnvRepositoryUUID       = "REPOSITORY_UUID"
	EnvRunnerUUID           = "RUNNER_UUID"
	EnvClientID             = "OAUTH_CLIENT_ID"
	EnvClientSecret         = "OAUTH_CLIENT_SECRET"
	EnvWorkingDirectory     = "WORKING_DIRECTORY"
	EnvRuntimePrerequisites = "RUNTIME_PREREQUISITES_ENABLED"
)

// ReservedEnv is what the autoscaler sets for every runner, which a pool's
// agent.env may not set.
var ReservedEnv = []string{EnvAccountUUID, EnvRepositoryUUID, EnvRunnerUUID, EnvClientID, EnvClientSecret,
	EnvWorkingDirectory, EnvRuntimePrerequisites}

// RunnerEnv is the environment of every runner container of loc, before its
// registration adds the runner's own (Runner.Env): the account, the
// repository of a repository runner, the working directory shared with the
// Docker host, and the runtime prerequisites check on.
func RunnerEnv(loc Location, workingDirectory string) map[string]string {
	env := map[string]string{
		EnvAccountUUID:          Braced(loc.Workspace),
		EnvWorkingDirectory:     workingDirectory,
		EnvRuntimePrerequisites: "true",
	}
	if loc.Repository != "" {
		env[EnvRepositoryUUID] = Braced(loc.Repository)
	}
	return env
}

// Env is what a just-registered runner's container needs to know of it
// besides its secret: its uuid and OAuth client id.
func (r Runner) Env() map[string]string {
	env := map[string]string{EnvRunnerUUID: r.UUID}
	if r.OAuth != nil {
		env[EnvClientID] = r.OAuth.ID
	}
	return env
}

// Secrets is the runner's OAuth client secret, which reaches its container
// only through the provider's secret mechanism.
func (r Runner) Secrets() map[string]string {
	if r.OAuth == nil {
		return nil
	}
	return map[string]string{EnvClientSecret: r.OAuth.Secret}
}
