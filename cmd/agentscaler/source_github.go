package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/registered"
	"github.com/agentscaler/agentscaler/sources/github"
)

func init() { systemFactories[ci.GitHub] = newGitHub }

// gitHub is the organization (or repository) of the github pools: its
// client and queued jobs, shared by its pools, and its webhook route.
type gitHub struct {
	a      *app
	client *github.Client
	jobs   *github.Jobs
}

func newGitHub(_ context.Context, a *app) (ciSystem, error) {
	cfg := a.cfg.GitHub
	if cfg == nil {
		return nil, errors.New("the github section is missing")
	}
	opt := github.Options{
		BaseURL: cfg.URL, Org: cfg.Org, Repo: cfg.Repo, RunnerGroupID: cfg.RunnerGroupID,
		Observe:          func(op string, status int) { a.metrics.SourceRequest(ci.GitHub, op, status) },
		ObserveRateLimit: func(rem, limit int, reset time.Time) { a.metrics.SourceRateLimit(ci.GitHub, rem, limit, reset) },
		UserAgent:        "agentscaler/" + version,
	}
	if cfg.TokenEnv != "" {
		a.log.Info("GitHub authentication", "method", "token", "variable", cfg.TokenEnv)
		opt.Token = a.getenv(cfg.TokenEnv)
	} else {
		tr, err := appTransport(cfg, a.getenv)
		if err != nil {
			return nil, err
		}
		a.log.Info("GitHub authentication", "method", "app", "app_id", cfg.App.ID, "installation_id", cfg.App.InstallationID)
		opt.HTTPClient = &http.Client{Transport: tr}
	}
	client, err := github.NewClient(opt)
	if err != nil {
		return nil, err
	}
	jobs := github.NewJobs(client, github.JobsOptions{Repos: cfg.Repos, MaxRuns: cfg.MaxRuns, Resync: a.cfg.Reconcile.Interval})
	return &gitHub{a: a, client: client, jobs: jobs}, nil
}

// appTransport authenticates as the App's installation: ghinstallation
// signs a JWT with the private key and caches the installation token until
// shortly before it expires.
func appTransport(cfg *config.GitHub, getenv func(string) string) (http.RoundTripper, error) {
	var key []byte
	if cfg.App.PrivateKeyEnv != "" {
		key = []byte(getenv(cfg.App.PrivateKeyEnv))
	} else {
		var err error
		if key, err = os.ReadFile(cfg.App.PrivateKeyFile); err != nil {
			return nil, fmt.Errorf("github.app.private_key_file: %w", err)
		}
	}
	tr, err := ghinstallation.New(http.DefaultTransport, cfg.App.ID, cfg.App.InstallationID, key)
	if err != nil {
		// Never repeat the key.
		return nil, errors.New("github.app: the private key is not a PEM RSA key")
	}
	if cfg.URL != "" {
		tr.BaseURL = strings.TrimSuffix(cfg.URL, "/")
	}
	return tr, nil
}

func (s *gitHub) pool(pc config.Pool) (poolSource, error) {
	src := github.NewSource(s.client, s.jobs, pc.Name, pc.Labels)
	src.Grace = s.a.cfg.Reconcile.CallTimeout
	return poolSource{source: src, naming: github.Naming, pace: s.client.Pace, spec: jitSpec(pc),
		provider: func(p providers.Provider) providers.Provider {
			return jitRunners(p, src, s.a.log.With("pool", pc.Name))
		},
	}, nil
}

func (s *gitHub) hook() http.Handler {
	a := s.a
	return github.NewHookHandler([]byte(a.getenv(a.cfg.GitHub.WebhookSecretEnv)), a.cfg.GitHub.Org, s.jobs, a.scaler,
		func(d time.Duration) { a.metrics.WebhookLag(ci.GitHub, d) },
		func(event, outcome string) { a.metrics.WebhookRequest(ci.GitHub, event, outcome) },
		a.log)
}

// jitSpec is the runner container without its configuration, which
// jitRunners adds at create.
func jitSpec(pc config.Pool) func(context.Context, string) (providers.AgentSpec, error) {
	mem, _ := pc.Agent.MemoryMB()
	return func(context.Context, string) (providers.AgentSpec, error) {
		return providers.AgentSpec{Image: pc.Agent.Image, CPU: pc.Agent.CPU, MemoryMB: mem, Env: maps.Clone(pc.Agent.Env)}, nil
	}
}

// jitRunners registers each instance's single-use runner at create and
// hands the container its just-in-time configuration as a secret only; a
// name another reconciler registered is that reconciler's create, so the
// create counts as done. A delete removes the runner's registration first,
// and leaves a runner that runs a job (and its instance) alone.
func jitRunners(p providers.Provider, src *github.Source, log *slog.Logger) providers.Provider {
	return registered.Wrap(p, registered.Runners{
		Register: func(ctx context.Context, name string) (registered.Registration, error) {
			jit, err := src.JITConfig(ctx, name)
			switch {
			case errors.Is(err, github.ErrConflict):
				return registered.Registration{}, registered.ErrElsewhere
			case err != nil:
				return registered.Registration{}, err
			}
			return registered.Registration{
				Secrets: map[string]string{github.EnvJITConfig: jit},
				Forget:  func(ctx context.Context) error { return src.Retire(ctx, name) },
			}, nil
		},
		Retire: src.Retire, Busy: github.ErrBusy, Work: "a job",
	}, log)
}
