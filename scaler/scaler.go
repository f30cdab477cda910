// Package scaler decides how many single-use agents each pool needs and
// makes it so. Plan is the pure decision: observations in, actions out, no
// I/O, so it is tested in a table and driven by the simulator. Scaler is the
// loop around it: observe Azure DevOps and the provider, plan, apply with
// bounded parallelism, and coalesce concurrent triggers per pool.
package scaler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// AzureDevOps is what the scaler asks of Azure DevOps.
type AzureDevOps interface {
	PoolID(ctx context.Context, name string) (int, error)
	JobRequests(ctx context.Context, poolID int) ([]azuredevops.JobRequest, error)
	Agents(ctx context.Context, poolID int) ([]azuredevops.Agent, error)
	DeleteAgent(ctx context.Context, poolID, agentID int) error
	AddAgent(ctx context.Context, poolID int, a azuredevops.Agent) (azuredevops.Agent, error)
	ResourceUsage(ctx context.Context) (azuredevops.ResourceUsage, error)
}

// Pool is one autoscaled pool: its policy, where its jobs come from and
// what starts its agents.
type Pool struct {
	Policy
	AzurePool    string // the Azure DevOps agent pool name
	AgentVersion string // reported by the placeholder agent
	Provider     providers.Provider
	ProviderName string // for metrics and logs
	// Spec returns the agent spec for an instance name: image, resources,
	// environment and secrets. The scaler fills in name, pool, request, slot.
	Spec func(ctx context.Context) (providers.AgentSpec, error)
}

// Options configures a Scaler.
type Options struct {
	AzureDevOps AzureDevOps
	Pools       []Pool
	Metrics     *metrics.Metrics // nil records nothing
	Logger      *slog.Logger     // nil logs nothing
	// Parallelism bounds concurrent provider and Azure DevOps writes per pool.
	Parallelism int
	// CallTimeout bounds each call that leaves the process.
	CallTimeout time.Duration
	// RunTimeout bounds one whole reconcile of a pool, retries included.
	RunTimeout time.Duration
	// RespectParallelJobs caps creates by the organization's free parallel jobs.
	RespectParallelJobs bool
	// Retries is how many times a retryable write is tried again.
	Retries int
	Now     func() time.Time
	// MinGap is the least time between the end of a reconcile of a pool and
	// the start of the run that trails it (triggered while it ran): a
	// trigger for an idle pool is served at once, and a flood of service
	// hooks costs a pass per MinGap, not one per pass time. 0 runs trailing
	// passes back to back.
	MinGap time.Duration
	// MaxBackoff caps the hold between failed reconciles of a pool (0.5 s
	// doubling to 16 s by default): serve sets its timer interval, so a
	// pool failing through an outage is looked at again within one interval
	// of its end, as the timer promises.
	MaxBackoff time.Duration
	// Pace, when set, is the least time between the end of one reconcile of
	// a pool and the start of the next, asked before each run: the source
	// slows passes as its rate-limit budget runs low. Triggers in the
	// meantime coalesce. Keep it short (seconds): Wait waits it out.
	Pace func() time.Duration
	// AfterReconcile, when set, is called at the end of every reconcile of a
	// pool, whatever its outcome, on the reconcile's goroutine, so it must
	// return at once: hand slow work (a metrics push) to another goroutine.
	AfterReconcile func()
}

// Scaler reconciles pools.
type Scaler struct {
	opt       Options
	pools     map[string]*Pool
	order     []string
	log       *slog.Logger
	mu        sync.Mutex
	flight    map[string]*flight
	quit      chan struct{}              // closed by Stop: runs are no longer held back, nor started
	seen      map[string]map[string]bool // by pool: the job ids its last observation listed
	stop      sync.Once
	soon      bool        // a lookAgain is pending
	soonTimer *time.Timer // its timer, stopped by Stop
	wg        sync.WaitGroup
	life      *lifecycle
}

// New returns a Scaler; it starts nothing until triggered.
func New(opt Options) *Scaler {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Parallelism <= 0 {
		opt.Parallelism = 8
	}
	if opt.CallTimeout <= 0 {
		opt.CallTimeout = 30 * time.Second
	}
	if opt.RunTimeout <= 0 {
		opt.RunTimeout = 4 * time.Minute
	}
	if opt.Retries < 0 {
		opt.Retries = 0
	} else if opt.Retries == 0 {
		opt.Retries = 3
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Scaler{opt: opt, pools: map[string]*Pool{}, log: opt.Logger, flight: map[string]*flight{}, quit: make(chan struct{}), seen: map[string]map[string]bool{}, life: newLifecycle()}
	for i := range opt.Pools {
		p := &opt.Pools[i]
		s.pools[p.Pool] = p
		s.order = append(s.order, p.Pool)
		opt.Metrics.SetPoolLimits(p.Pool, p.MaxAgents, p.MinIdle)
	}
	return s
}

// Pools returns the pool keys in configuration order.
func (s *Scaler) Pools() []string { return append([]string(nil), s.order...) }

// Result is what one reconcile of a pool did.
type Result struct {
	Pool     string
	Decision Decision
	Failed   []ActionError
}

// ActionError is an action that did not succeed, with its reason.
type ActionError struct {
	Action Action
	Err    error
}

// Observe reads the pool's state: job requests first, then agents, then
// instances (see Observation for why that order).
func (s *Scaler) Observe(ctx context.Context, pool string) (Observation, error) {
	p, ok := s.pools[pool]
	if !ok {
		return Observation{}, fmt.Errorf("unknown pool %q", pool)
	}
	o := Observation{FreeParallel: -1}
	poolID, err := s.poolID(ctx, p)
	if err != nil {
		return o, err
	}
	// Instances first, job requests last: a request seen waiting then was
	// still waiting after the instances were listed, so its agent cannot
	// have run it and been deleted (by another reconciler) in between; read
	// the other way round, that stale request would get a second agent.
	o.Instances, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) ([]providers.Instance, error) {
		return p.Provider.List(ctx, pool)
	})
	s.opt.Metrics.ProviderOperation(p.ProviderName, "list", result(err))
	if err != nil {
		return o, fmt.Errorf("pool %s: list instances: %w", pool, err)
	}
	if o.Agents, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) ([]azuredevops.Agent, error) {
		return s.opt.AzureDevOps.Agents(ctx, poolID)
	}); err != nil {
		return o, fmt.Errorf("pool %s: agents: %w", pool, err)
	}
	if o.Requests, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) ([]azuredevops.JobRequest, error) {
		return s.opt.AzureDevOps.JobRequests(ctx, poolID)
	}); err != nil {
		return o, fmt.Errorf("pool %s: job requests: %w", pool, err)
	}
	if s.opt.RespectParallelJobs {
		u, err := call(ctx, s.opt.CallTimeout, s.opt.AzureDevOps.ResourceUsage)
		if err != nil {
			return o, fmt.Errorf("parallel jobs: %w", err)
		}
		o.FreeParallel = u.Free()
		s.opt.Metrics.SetParallelJobs(u.UsedCount, u.ResourceLimit.TotalCount)
	}
	o.Now = s.opt.Now()
	return o, nil
}

func (s *Scaler) poolID(ctx context.Context, p *Pool) (int, error) {
	id, err := call(ctx, s.opt.CallTimeout, func(ctx context.Context) (int, error) {
		return s.opt.AzureDevOps.PoolID(ctx, p.AzurePool)
	})
	if err != nil {
		return 0, fmt.Errorf("pool %s: Azure DevOps pool %q: %w", p.Pool, p.AzurePool, err)
	}
	return id, nil
}

// Plan observes a pool and returns the decision without changing anything.
func (s *Scaler) Plan(ctx context.Context, pool string) (Decision, error) {
	o, err := s.Observe(ctx, pool)
	if err != nil {
		return Decision{}, err
	}
	return Plan(s.pools[pool].Policy, o), nil
}

// Reconcile observes, plans and applies for one pool, now, in the caller's
// goroutine. Most callers want the event methods (JobWaiting,
// JobCompleted) or Run, which coalesce.
func (s *Scaler) Reconcile(ctx context.Context, pool string) (Result, error) {
	if s.opt.AfterReconcile != nil {
		defer s.opt.AfterReconcile()
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.opt.RunTimeout)
	defer cancel()
	res := Result{Pool: pool}
	o, err := s.Observe(ctx, pool)
	if err != nil {
		s.opt.Metrics.Reconcile(pool, "observe_error", time.Since(start))
		return res, err
	}
	p := s.pools[pool]
	res.Decision = Plan(p.Policy, o)
	for _, msg := range res.Decision.Problems {
		s.log.Warn("unparsable demand", "pool", pool, "problem", msg)
	}
	s.life.observe(s.opt.Metrics, pool, o)
	s.noteJobs(pool, o.Requests)
	s.opt.Metrics.SetWaitingJobs(pool, res.Decision.Waiting)
	res.Failed = s.apply(ctx, p, res.Decision.Actions)
	// The gauges show the pool after this pass, not before it: what was
	// created is starting, what was removed is gone.
	s.opt.Metrics.SetAgents(pool, res.Decision.AgentsAfter(res.Failed))
	outcome := "ok"
	if len(res.Failed) > 0 {
		outcome = "partial"
	}
	s.opt.Metrics.Reconcile(pool, outcome, time.Since(start))
	s.log.Info("reconciled", "pool", pool, "waiting", res.Decision.Waiting, "unmatched", res.Decision.Unmatched,
		"actions", len(res.Decision.Actions), "failed", len(res.Failed), "duration", time.Since(start).Round(time.Millisecond))
	if len(res.Failed) > 0 {
		return res, fmt.Errorf("pool %s: %d of %d actions failed: %w", pool, len(res.Failed), len(res.Decision.Actions), res.Failed[0].Err)
	}
	return res, nil
}

// apply runs the actions with bounded parallelism; one failure never blocks
// the others.
func (s *Scaler) apply(ctx context.Context, p *Pool, actions []Action) []ActionError {
	var (
		mu     sync.Mutex
		failed []ActionError
		wg     sync.WaitGroup
		sem    = make(chan struct{}, s.opt.Parallelism)
	)
	for _, a := range actions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				failed = append(failed, ActionError{a, ctx.Err()})
				mu.Unlock()
				return
			}
			defer func() { <-sem }()
			do := func(ctx context.Context) error { return s.do(ctx, p, a) }
			switch a.Kind {
			// Azure DevOps calls retry inside the client; provider calls here.
			case Delete:
				do = func(ctx context.Context) error {
					return s.retry(ctx, retryable, func(ctx context.Context) error { return s.do(ctx, p, a) })
				}
			case Create:
				do = func(ctx context.Context) error {
					return s.retry(ctx, refused, func(ctx context.Context) error { return s.do(ctx, p, a) })
				}
			}
			if err := do(ctx); err != nil {
				_, _, reason := providers.Classify(err)
				s.log.Warn("action failed", "pool", a.Pool, "action", string(a.Kind), "name", a.Name, "reason", reason, "error", err)
				mu.Lock()
				failed = append(failed, ActionError{a, err})
				mu.Unlock()
				return
			}
			s.log.Info("applied", "pool", a.Pool, "action", string(a.Kind), "name", a.Name, "reason", a.Reason)
		}()
	}
	wg.Wait()
	return failed
}

func (s *Scaler) do(ctx context.Context, p *Pool, a Action) error {
	switch a.Kind {
	case Create:
		spec, err := p.Spec(ctx)
		if err != nil {
			return fmt.Errorf("agent spec: %w", err)
		}
		spec.Name, spec.Pool, spec.Request, spec.Slot = a.Name, a.Pool, a.Request, a.Slot
		spec.Env = providers.WithName(spec.Env, a.Name)
		_, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) (providers.Instance, error) {
			return p.Provider.Create(ctx, spec)
		})
		s.opt.Metrics.ProviderOperation(p.ProviderName, "create", result(err))
		if err == nil && !a.Queued.IsZero() {
			s.opt.Metrics.QueuedToCreated(a.Pool, s.opt.Now().Sub(a.Queued))
		}
		return err
	case Delete:
		_, err := call(ctx, s.opt.CallTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, p.Provider.Delete(ctx, a.Name)
		})
		s.opt.Metrics.ProviderOperation(p.ProviderName, "delete", result(err))
		return err
	case Unregister:
		poolID, err := s.poolID(ctx, p)
		if err != nil {
			return err
		}
		_, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.opt.AzureDevOps.DeleteAgent(ctx, poolID, a.AgentID)
		})
		return err
	case RegisterPlaceholder:
		poolID, err := s.poolID(ctx, p)
		if err != nil {
			return err
		}
		_, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) (azuredevops.Agent, error) {
			return s.opt.AzureDevOps.AddAgent(ctx, poolID, azuredevops.Agent{
				Name: a.Name, Version: p.AgentVersion, Enabled: true, Status: "offline",
				SystemCapabilities: p.Capabilities, MaxParallelism: 1,
			})
		})
		return err
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

// call runs f with its own deadline.
func call[T any](ctx context.Context, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(ctx)
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	_, _, reason := providers.Classify(err)
	return reason
}
