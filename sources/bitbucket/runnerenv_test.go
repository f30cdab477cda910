package bitbucket_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

// TestRunnerEnv: a runner container gets its location, working directory
// and registration as Atlassian's image reads them, the secret apart, and
// every name set is reserved from agent.env.
func TestRunnerEnv(t *testing.T) {
	emu, c := setup(t)
	loc := bitbucket.Location{Workspace: workspace, Repository: repo}
	env := bitbucket.RunnerEnv(loc, "/srv/builds")
	want := map[string]string{"ACCOUNT_UUID": workspace, "REPOSITORY_UUID": repo, "WORKING_DIRECTORY": "/srv/builds", "RUNTIME_PREREQUISITES_ENABLED": "true"}
	if !maps.Equal(env, want) {
		t.Errorf("RunnerEnv = %v, want %v", env, want)
	}
	if _, ok := bitbucket.RunnerEnv(bitbucket.Location{Workspace: workspace}, "/tmp")["REPOSITORY_UUID"]; ok {
		t.Error("a workspace runner gets REPOSITORY_UUID")
	}

	r, err := bitbucket.NewSource(c, "bb", bitbucket.Location{Workspace: workspace}, nil).Register(t.Context(), "bb-w1")
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ uuid, secret string }
	for _, ri := range emu.Runners() {
		info.uuid, info.secret = ri.UUID, ri.Secret
	}
	if got := r.Env(); got["RUNNER_UUID"] != info.uuid || got["OAUTH_CLIENT_ID"] == "" || len(got) != 2 {
		t.Errorf("Runner.Env = %v; want the runner's uuid %s and its client id", got, info.uuid)
	}
	if got := r.Secrets(); !maps.Equal(got, map[string]string{"OAUTH_CLIENT_SECRET": info.secret}) {
		t.Error("Runner.Secrets is not exactly the runner's OAuth client secret")
	}
	for _, m := range []map[string]string{env, r.Env(), r.Secrets()} {
		for name := range m {
			if !slices.Contains(bitbucket.ReservedEnv, name) {
				t.Errorf("%s is set for every runner but not in ReservedEnv", name)
			}
		}
	}
}
