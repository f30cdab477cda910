package main

import (
	"context"
	"log/slog"
	"maps"
	"net/http"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

func init() { systemFactories[ci.Bitbucket] = newBitbucket }

// bitbucketSystem is Bitbucket Cloud: one client shared by its pools. It
// sends no hooks; each pool is looked at on its own short interval.
type bitbucketSystem struct {
	a      *app
	client *bitbucket.Client
}

func newBitbucket(_ context.Context, a *app) (ciSystem, error) {
	cfg := a.cfg.Bitbucket
	client, err := bitbucket.NewClient(bitbucketAuth(cfg, a.getenv, a.log), bitbucket.Options{
		URL:         cfg.URL,
		CallTimeout: a.cfg.Reconcile.CallTimeout,
		Logger:      a.log,
		UserAgent:   "agentscaler/" + version,
		Observe:     func(endpoint string, status int) { a.metrics.SourceRequest(ci.Bitbucket, endpoint, status) },
	})
	if err != nil {
		return nil, err
	}
	return &bitbucketSystem{a: a, client: client}, nil
}

// bitbucketAuth picks the credential the configuration names; it logs
// which, never the secret.
func bitbucketAuth(c config.Bitbucket, getenv func(string) string, log *slog.Logger) bitbucket.Authorizer {
	switch {
	case c.OAuth != nil:
		log.Info("Bitbucket authentication", "method", "oauth", "variable", c.OAuth.ClientSecretEnv)
		return bitbucket.ClientCredentials(c.TokenURL, getenv(c.OAuth.ClientIDEnv), getenv(c.OAuth.ClientSecretEnv), nil)
	case c.AppPassword != nil:
		log.Info("Bitbucket authentication", "method", "app_password", "variable", c.AppPassword.PasswordEnv)
		return bitbucket.AppPassword(c.AppPassword.Username, getenv(c.AppPassword.PasswordEnv))
	}
	log.Info("Bitbucket authentication", "method", "token", "variable", c.TokenEnv)
	return bitbucket.Bearer(getenv(c.TokenEnv))
}

func (s *bitbucketSystem) pool(pc config.Pool) (poolSource, error) {
	b := pc.Bitbucket
	src := bitbucket.NewSource(s.client, pc.Name, bitbucket.Location{Workspace: b.Workspace, Repository: b.Repository}, b.Labels)
	return poolSource{
		source:   src,
		naming:   bitbucket.Naming,
		pace:     s.client.Pace,
		spec:     runnerSpec(pc),
		interval: b.Interval,
		provider: func(p providers.Provider) providers.Provider {
			return bitbucketRunners(p, src, s.a.log.With("pool", pc.Name))
		},
	}, nil
}

func (s *bitbucketSystem) hook() http.Handler { return nil }

// Runner environment (docs/bitbucket.md): the runner's identity is added
// by bitbucketRunners at create, the secret only as a secret.
const (
	envAccountUUID    = "ACCOUNT_UUID"
	envRepositoryUUID = "REPOSITORY_UUID"
	envRunnerUUID     = "RUNNER_UUID"
	envClientID       = "OAUTH_CLIENT_ID"
	envClientSecret   = "OAUTH_CLIENT_SECRET"
	envWorkingDir     = "WORKING_DIRECTORY"
)

// runnerSpec is the runner container without its identity: the image,
// resources, the pool's agent.env, the working directory (the Docker
// shared_dir, else /tmp) and RUNTIME_PREREQUISITES_ENABLED.
func runnerSpec(pc config.Pool) func(context.Context, string) (providers.AgentSpec, error) {
	mem, _ := pc.Agent.MemoryMB()
	env := maps.Clone(pc.Agent.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[envWorkingDir] = "/tmp"
	if pc.Docker != nil && pc.Docker.SharedDir != "" {
		env[envWorkingDir] = pc.Docker.SharedDir
	}
	env["RUNTIME_PREREQUISITES_ENABLED"] = "true"
	env[envAccountUUID] = bitbucket.Braced(pc.Bitbucket.Workspace)
	if r := pc.Bitbucket.Repository; r != "" {
		env[envRepositoryUUID] = bitbucket.Braced(r)
	}
	return func(context.Context, string) (providers.AgentSpec, error) {
		return providers.AgentSpec{Image: pc.Agent.Image, CPU: pc.Agent.CPU, MemoryMB: mem, Env: maps.Clone(env)}, nil
	}
}

// bitbucketRunners makes a runner's registration part of its instance: a
// create registers the runner in Bitbucket first and hands the container
// its uuid and OAuth client (the secret as a secret only); a delete
// disables and deletes the runner first, and leaves a runner that took a
// step running.
func bitbucketRunners(p providers.Provider, src *bitbucket.Source, log *slog.Logger) providers.Provider {
	return &registeredProvider{
		Provider: p, log: log, busy: bitbucket.ErrBusy, work: "a step",
		register: func(ctx context.Context, name string) (registration, error) {
			r, err := src.Register(ctx, name)
			if err != nil {
				return registration{}, err
			}
			return registration{
				env:     map[string]string{envRunnerUUID: r.UUID, envClientID: r.OAuth.ID},
				secrets: map[string]string{envClientSecret: r.OAuth.Secret},
				forget:  func(ctx context.Context) error { return src.Forget(ctx, r.UUID) },
			}, nil
		},
		retire: src.Retire,
	}
}
