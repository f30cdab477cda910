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

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/functions"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/scaler"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// app is the wired autoscaler: configuration, CI systems, providers, scaler
// and metrics.
type app struct {
	cfg     *config.Config
	getenv  func(string) string
	log     *slog.Logger
	metrics *metrics.Metrics
	deps    deps
	hooks   map[string]http.Handler // each CI system's webhook, by route name
	// intervals are the pools reconciled on their own period, by pool.
	intervals map[string]time.Duration
	scaler    *scaler.Scaler
	pusher    *metrics.Pusher // nil unless metrics.push (or AGENTSCALER_PUSHGATEWAY_URL) is set
}

// deps lets tests and the demo hand in what would otherwise be built from
// the configuration.
type deps struct {
	providers map[string]providers.Provider // by provider name, shared by the pools that name it
	auth      azuredevops.Authorizer
}

// ciSystem is one CI system as the app wires it: the scaler's view of each
// of its pools, and the route its events come in by.
type ciSystem interface {
	pool(pc config.Pool) (poolSource, error)
	// hook is the system's webhook handler, nil when it sends none.
	hook() http.Handler
}

// poolSource is what a pool's CI system gives the scaler.
type poolSource struct {
	source scaler.Source
	naming ci.Naming
	pace   func() time.Duration // nil: no pace
	// spec returns the agent spec of the instance named name: image,
	// resources, environment, secrets (scaler.Pool.Spec).
	spec func(ctx context.Context, name string) (providers.AgentSpec, error)
	// interval, when set, is the pool's own reconcile period in serve,
	// for a system whose state is its only signal (Bitbucket).
	interval time.Duration
	// provider, when set, wraps the pool's provider: a system whose agents
	// are registered at create time and deleted with their instance.
	provider func(providers.Provider) providers.Provider
}

// systemFactories holds the CI systems compiled into this build, by the
// name pools give in `source:`; each adds itself from its own file.
var systemFactories = map[string]func(ctx context.Context, a *app) (ciSystem, error){}

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
	a := &app{cfg: cfg, getenv: getenv, log: log, metrics: metrics.New(version), deps: d, hooks: map[string]http.Handler{}, intervals: map[string]time.Duration{}}
	var err error
	if a.pusher, err = newPusher(a.metrics, cfg.Metrics.Push, getenv, log); err != nil {
		return nil, err
	}

	var pools []scaler.Pool
	systems := map[string]ciSystem{}
	for _, pc := range cfg.Pools {
		prov, err := a.provider(ctx, pc, d.providers)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		sys, ok := systems[pc.System()]
		if !ok {
			if sys, err = a.system(ctx, pc.System()); err != nil {
				return nil, err
			}
			systems[pc.System()] = sys
		}
		ps, err := sys.pool(pc)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", pc.Name, err)
		}
		if ps.provider != nil {
			prov = ps.provider(prov)
		}
		if ps.interval > 0 {
			a.intervals[pc.Name] = ps.interval
		}
		policy, err := scaler.PolicyFor(pc, ps.naming)
		if err != nil {
			return nil, err
		}
		pools = append(pools, scaler.Pool{
			Policy:       policy,
			System:       pc.System(),
			Source:       ps.source,
			Pace:         ps.pace,
			Provider:     prov,
			ProviderName: pc.Provider,
			Spec:         ps.spec,
		})
	}
	opts := scaler.Options{
		Pools:       pools,
		Metrics:     a.metrics,
		Logger:      log,
		Parallelism: cfg.Reconcile.Parallelism,
		CallTimeout: cfg.Reconcile.CallTimeout,
		MaxBackoff:  cfg.Reconcile.Interval,
	}
	if a.pusher != nil {
		// Whatever triggered the reconcile: the timer, a service hook, the
		// Functions timer invocation.
		opts.AfterReconcile = a.pusher.Request
	}
	a.scaler = scaler.New(opts)
	for name, sys := range systems { // their hooks reach the scaler
		if h := sys.hook(); h != nil {
			a.hooks[name] = h
		}
	}
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

// system builds the wiring of one CI system, once for all its pools.
func (a *app) system(ctx context.Context, name string) (ciSystem, error) {
	f, ok := systemFactories[name]
	if !ok {
		return nil, fmt.Errorf("source %q is not available in this build (available: %s)", name, strings.Join(slices.Sorted(maps.Keys(systemFactories)), ", "))
	}
	sys, err := f(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", name, err)
	}
	return sys, nil
}

// handler is the HTTP surface: each CI system's hooks, metrics, health,
// the timer.
func (a *app) handler() http.Handler {
	// /reconcile is the Functions host's timer; elsewhere the timer runs in
	// process, and an open route would let anyone spend the CI systems' calls.
	var timer functions.Reconciler
	if functions.UnderHost(a.getenv) {
		timer = a.scaler
	}
	return functions.NewHandler(functions.Options{
		Hooks:      a.hooks,
		Metrics:    a.metrics.Handler(),
		Reconciler: timer,
		Logger:     a.log,
	})
}
