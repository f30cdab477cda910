package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/azcred"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

func init() { systemFactories[ci.AzureDevOps] = newAzureDevOps }

// azureDevOps is the organization of azuredevops: its client, shared by its
// pools, and its service hook route.
type azureDevOps struct {
	a      *app
	auth   azuredevops.Authorizer
	client *azuredevops.Client
}

func newAzureDevOps(_ context.Context, a *app) (ciSystem, error) {
	cfg := a.cfg.AzureDevOps
	s := &azureDevOps{a: a, auth: a.deps.auth}
	if s.auth == nil {
		var err error
		if s.auth, err = authorizer(cfg, a.getenv, a.log); err != nil {
			return nil, err
		}
	}
	client, err := azuredevops.NewClient(cfg.URL, s.auth, azuredevops.Options{
		CallTimeout:            a.cfg.Reconcile.CallTimeout,
		JobRequestsPageSize:    cfg.PageSize,
		JobRequestsMaxPages:    cfg.MaxPages,
		Observe:                a.metrics.AzureDevOpsRequest,
		ObserveJobRequestPages: a.metrics.JobRequestPages,
		ObserveRateLimit:       a.metrics.RateLimitRemaining,
		Logger:                 a.log,
		UserAgent:              "agentscaler/" + version,
	})
	if err != nil {
		return nil, err
	}
	s.client = client
	return s, nil
}

func (s *azureDevOps) pool(pc config.Pool) (poolSource, error) {
	src := azuredevops.NewSource(s.client, pc.AzurePool, pc.Capabilities, pc.AgentVersion)
	src.Parallel, src.ObserveParallel = s.a.cfg.AzureDevOps.RespectParallelJobs, s.a.metrics.SetParallelJobs
	return poolSource{source: src, naming: ci.Requests, pace: s.client.Pace, spec: s.specFunc(pc)}, nil
}

func (s *azureDevOps) hook() http.Handler {
	a := s.a
	return azuredevops.NewHookHandler(webhookAuth(a.cfg.Webhook, a.getenv), a.cfg.AzureDevOps.URL, a.scaler,
		func(d time.Duration) { a.metrics.WebhookLag(ci.AzureDevOps, d) },
		func(event, outcome string) { a.metrics.WebhookRequest(ci.AzureDevOps, event, outcome) },
		a.log)
}

// authorizer picks the PAT or the Entra identity the configuration names.
// It logs which, never the secret.
func authorizer(c config.AzureDevOps, getenv func(string) string, log *slog.Logger) (azuredevops.Authorizer, error) {
	if c.TokenEnv != "" {
		log.Info("Azure DevOps authentication", "method", "pat", "variable", c.TokenEnv)
		return azuredevops.PAT(getenv(c.TokenEnv)), nil
	}
	cred, err := azcred.New("azuredevops.entra", c.Entra, getenv, log)
	if err != nil {
		return nil, err
	}
	return azuredevops.Entra(cred), nil
}

// specFunc builds the agent environment (docs/architecture.md). The token
// travels as a secret: the PAT, or a short-lived Entra token minted now.
func (s *azureDevOps) specFunc(pc config.Pool) func(context.Context, string) (providers.AgentSpec, error) {
	mem, _ := pc.Agent.MemoryMB()
	cfg, getenv := s.a.cfg.AzureDevOps, s.a.getenv
	env := providers.AgentEnv(pc.Agent.Env, cfg.URL, pc.AzurePool, pc.Agent.Work)
	return func(ctx context.Context, name string) (providers.AgentSpec, error) {
		token := ""
		if cfg.TokenEnv != "" {
			token = getenv(cfg.TokenEnv)
		} else {
			h, err := s.auth.Authorization(ctx)
			if err != nil {
				return providers.AgentSpec{}, fmt.Errorf("token for the agent: %w", err)
			}
			token = strings.TrimPrefix(h, "Bearer ")
		}
		return providers.AgentSpec{
			Image: pc.Agent.Image, CPU: pc.Agent.CPU, MemoryMB: mem,
			Env:     providers.WithName(env, name), // it registers under its instance's name
			Secrets: map[string]string{providers.EnvToken: token},
		}, nil
	}
}

// webhookAuth returns the authenticator the configuration names; validation
// guarantees exactly one is set.
func webhookAuth(w config.Webhook, getenv func(string) string) azuredevops.Authenticator {
	if w.BasicAuth != nil {
		return azuredevops.BasicAuth(w.BasicAuth.Username, getenv(w.BasicAuth.PasswordEnv))
	}
	return azuredevops.HeaderAuth(w.Header.Name, getenv(w.Header.ValueEnv))
}
