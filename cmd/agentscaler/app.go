package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/functions"
	"github.com/agentscaler/agentscaler/internal/azcred"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/scaler"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// app is the wired autoscaler: configuration, Azure DevOps client,
// providers, scaler and metrics.
type app struct {
	cfg     *config.Config
	getenv  func(string) string
	log     *slog.Logger
	metrics *metrics.Metrics
	auth    azuredevops.Authorizer
	scaler  *scaler.Scaler
	pusher  *metrics.Pusher // nil unless metrics.push (or AGENTSCALER_PUSHGATEWAY_URL) is set
}

// deps lets tests and the demo hand in what would otherwise be built from
// the configuration.
type deps struct {
	providers map[string]providers.Provider // by provider name, shared by the pools that name it
	auth      azuredevops.Authorizer
}

// providerEnv is what a provider factory may use beyond its pool's settings.
type providerEnv struct {
	getenv func(string) string
	log    *slog.Logger
}

// providerFactory builds the provider of one pool from its settings.
type providerFactory func(ctx context.Context, pool config.Pool, env providerEnv) (providers.Provider, error)

// providerFactories holds the providers compiled into this build, by the
// name pools give in `provider:`. Each provider adds itself from its own
// file, so that a build tag can leave it out of a build.
var providerFactories = map[string]providerFactory{
	"memory": func(context.Context, config.Pool, providerEnv) (providers.Provider, error) {
		return memory.New(memory.Options{}), nil
	},
}

func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, getenv func(string) string, d deps) (*app, error) {
	a := &app{cfg: cfg, getenv: getenv, log: log, metrics: metrics.New(version)}
	a.auth = d.auth
	if a.auth == nil {
		var err error
		if a.auth, err = authorizer(cfg.AzureDevOps, getenv, log); err != nil {
			return nil, err
		}
	}
	client, err := azuredevops.NewClient(cfg.AzureDevOps.URL, a.auth, azuredevops.Options{
		CallTimeout:            cfg.Reconcile.CallTimeout,
		JobRequestsPageSize:    cfg.AzureDevOps.PageSize,
		JobRequestsMaxPages:    cfg.AzureDevOps.MaxPages,
		Observe:                a.metrics.AzureDevOpsRequest,
		ObserveJobRequestPages: a.metrics.JobRequestPages,
		ObserveRateLimit:       a.metrics.RateLimitRemaining,
		Logger:                 log,
		UserAgent:              "agentscaler/" + version,
	})
	if err != nil {
		return nil, err
	}
	if a.pusher, err = newPusher(a.metrics, cfg.Metrics.Push, getenv, log); err != nil {
		return nil, err
	}

	var pools []scaler.Pool
	for _, pc := range cfg.Pools {
		prov, err := a.provider(ctx, pc, d.providers)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		src := azuredevops.NewSource(client, pc.AzurePool, pc.Capabilities, pc.AgentVersion)
		src.Parallel, src.ObserveParallel = cfg.AzureDevOps.RespectParallelJobs, a.metrics.SetParallelJobs
		pools = append(pools, scaler.Pool{
			Policy:       scaler.PolicyFor(pc),
			Source:       src,
			Provider:     prov,
			ProviderName: pc.Provider,
			Spec:         a.specFunc(pc),
		})
	}
	opts := scaler.Options{
		Pools:       pools,
		Metrics:     a.metrics,
		Logger:      log,
		Parallelism: cfg.Reconcile.Parallelism,
		CallTimeout: cfg.Reconcile.CallTimeout,
		Pace:        client.Pace,
		MaxBackoff:  cfg.Reconcile.Interval,
	}
	if a.pusher != nil {
		// Whatever triggered the reconcile: the timer, a service hook, the
		// Functions timer invocation.
		opts.AfterReconcile = a.pusher.Request
	}
	a.scaler = scaler.New(opts)
	return a, nil
}

// newPusher returns the Pushgateway pusher of the validated push settings,
// or nil when push mode is off. The password is read from the variable
// password_env names; neither it nor credentials in the URL are ever logged.
func newPusher(m *metrics.Metrics, c *config.Push, getenv func(string) string, log *slog.Logger) (*metrics.Pusher, error) {
	if c == nil {
		return nil, nil
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// Never repeat the value: it may hold a password.
		return nil, errors.New("metrics.push.url: not a URL; set it to the Pushgateway's base URL, like http://pushgateway:9091")
	}
	if c.Username != "" {
		u.User = url.UserPassword(c.Username, getenv(c.PasswordEnv))
	}
	p, err := m.NewPusher(metrics.PushOptions{URL: u.String(), Job: c.Job, Instance: c.Instance, Gather: c.Interval, Log: log})
	if err != nil {
		return nil, fmt.Errorf("metrics.push: %w", err)
	}
	log.Info("metrics push enabled", "pushgateway", p.String(), "job", c.Job, "interval", c.Interval)
	return p, nil
}

// provider returns the pool's provider: one handed in, or a new one built
// from the pool's settings.
func (a *app) provider(ctx context.Context, pc config.Pool, given map[string]providers.Provider) (providers.Provider, error) {
	if p, ok := given[pc.Provider]; ok {
		return p, nil
	}
	f, ok := providerFactories[pc.Provider]
	if !ok {
		return nil, fmt.Errorf("provider %q is not available in this build (available: %s)", pc.Provider, strings.Join(slices.Sorted(maps.Keys(providerFactories)), ", "))
	}
	p, err := f(ctx, pc, providerEnv{getenv: a.getenv, log: a.log.With("pool", pc.Name, "provider", pc.Provider)})
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", pc.Provider, err)
	}
	return p, nil
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
func (a *app) specFunc(pc config.Pool) func(context.Context) (providers.AgentSpec, error) {
	mem, _ := pc.Agent.MemoryMB()
	env := providers.AgentEnv(pc.Agent.Env, a.cfg.AzureDevOps.URL, pc.AzurePool, pc.Agent.Work)
	return func(ctx context.Context) (providers.AgentSpec, error) {
		token := ""
		if a.cfg.AzureDevOps.TokenEnv != "" {
			token = a.getenv(a.cfg.AzureDevOps.TokenEnv)
		} else {
			h, err := a.auth.Authorization(ctx)
			if err != nil {
				return providers.AgentSpec{}, fmt.Errorf("token for the agent: %w", err)
			}
			token = strings.TrimPrefix(h, "Bearer ")
		}
		return providers.AgentSpec{
			Image: pc.Agent.Image, CPU: pc.Agent.CPU, MemoryMB: mem,
			Env:     env,
			Secrets: map[string]string{providers.EnvToken: token},
		}, nil
	}
}

// handler is the HTTP surface: service hooks, metrics, health, the timer.
func (a *app) handler() http.Handler {
	hooks := azuredevops.NewHookHandler(webhookAuth(a.cfg.Webhook, a.getenv), a.cfg.AzureDevOps.URL, a.scaler,
		func(d time.Duration) { a.metrics.WebhookLag("azuredevops", d) },
		func(event, outcome string) { a.metrics.WebhookRequest("azuredevops", event, outcome) },
		a.log)
	// /reconcile is the Functions host's timer; elsewhere the timer runs in
	// process, and an open route would let anyone spend Azure DevOps calls.
	var timer functions.Reconciler
	if functions.UnderHost(a.getenv) {
		timer = a.scaler
	}
	return functions.NewHandler(functions.Options{
		Hooks:      map[string]http.Handler{"azuredevops": hooks},
		Metrics:    a.metrics.Handler(),
		Reconciler: timer,
		Logger:     a.log,
	})
}

// webhookAuth returns the authenticator the configuration names; validation
// guarantees exactly one is set.
func webhookAuth(w config.Webhook, getenv func(string) string) azuredevops.Authenticator {
	if w.BasicAuth != nil {
		return azuredevops.BasicAuth(w.BasicAuth.Username, getenv(w.BasicAuth.PasswordEnv))
	}
	return azuredevops.HeaderAuth(w.Header.Name, getenv(w.Header.ValueEnv))
}
