package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/registered"
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
	src.Grace = s.a.cfg.Reconcile.CallTimeout
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

// runnerSpec is the runner container without its registration: the image,
// resources, the pool's agent.env and the runner environment of its
// location, its working directory the Docker shared_dir, else /tmp.
func runnerSpec(pc config.Pool) func(context.Context, string) (providers.AgentSpec, error) {
	mem, _ := pc.Agent.MemoryMB()
	work := "/tmp"
	if pc.Docker != nil && pc.Docker.SharedDir != "" {
		work = pc.Docker.SharedDir
	}
	env := maps.Clone(pc.Agent.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, bitbucket.RunnerEnv(bitbucket.Location{Workspace: pc.Bitbucket.Workspace, Repository: pc.Bitbucket.Repository}, work))
	return func(context.Context, string) (providers.AgentSpec, error) {
		return providers.AgentSpec{Image: pc.Agent.Image, CPU: pc.Agent.CPU, MemoryMB: mem, Env: maps.Clone(env)}, nil
	}
}

// bitbucketRunners registers each instance's runner in Bitbucket at create
// (its uuid and OAuth client to the container, the secret as a secret only)
// and disables and deletes it at delete, leaving a runner that took a step
// running.
func bitbucketRunners(p providers.Provider, src *bitbucket.Source, log *slog.Logger) providers.Provider {
	return registered.Wrap(p, registered.Runners{
		Register: func(ctx context.Context, name string) (registered.Registration, error) {
			r, err := src.Register(ctx, name)
			switch {
			case errors.Is(err, bitbucket.ErrRegistered):
				return registered.Registration{}, registered.ErrElsewhere
			case err != nil:
				return registered.Registration{}, err
			}
			return registered.Registration{Env: r.Env(), Secrets: r.Secrets(),
				Forget: func(ctx context.Context) error { return src.Forget(ctx, r.UUID) }}, nil
		},
		Retire: src.Retire, Busy: bitbucket.ErrBusy, Work: "a step",
	}, log)
}
