// Package scaler decides how many single-use agents each pool needs and
// makes it so, whichever CI system the pool's jobs come from. Plan is the
// pure decision: observations in, actions out, no I/O, so it is tested in a
// table and driven by the simulator. Scaler is the loop around it: observe
// the pool's source and provider, plan, apply with bounded parallelism; its
// event methods (JobWaiting, JobCompleted, Tick) decide which passes run
// when, and coalesce them per pool.
package scaler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
)

// Source is where a pool's jobs come from: a CI system's pool, adapted to
// the ci model. Each call is one deadline's worth of work.
type Source interface {
	// Agents lists the agents registered in the pool, with the jobs they hold.
	Agents(ctx context.Context) ([]ci.Agent, error)
	// Jobs lists the pool's unfinished jobs.
	Jobs(ctx context.Context) ([]ci.Job, error)
	// Free returns how many more jobs the CI system lets run at once, or -1
	// for no limit.
	Free(ctx context.Context) (int, error)
	// Unregister removes an agent's registration.
	Unregister(ctx context.Context, agentID int64) error
	// RegisterPlaceholder registers an offline agent named name.
	RegisterPlaceholder(ctx context.Context, name string) error
}

// Pool is one autoscaled pool: its policy, where its jobs come from and
// what starts its agents.
type Pool struct {
	Policy
	// System names the CI system of Source (azuredevops, bitbucket,
	// github): events concern the pools of their system.
	System       string
	Source       Source
	Provider     providers.Provider
	ProviderName string // for metrics and logs
	// Pace, when set, is the least time between the end of one reconcile of
	// the pool and the start of the next, asked before each run: the source
	// slows passes as its rate-limit budget runs low. Triggers in the
	// meantime coalesce. Keep it short (seconds): Wait waits it out.
	Pace func() time.Duration
	// Spec returns the agent spec for the instance named name, asked just
	// before it is created: image, resources, environment and secrets (a
	// source may mint a credential for that name, such as GitHub's
	// just-in-time runner configuration). The scaler fills in name, pool,
	// request, slot.
	Spec func(ctx context.Context, name string) (providers.AgentSpec, error)
}

// Options configures a Scaler.
type Options struct {
	Pools   []Pool
	Metrics *metrics.Metrics // nil records nothing
	Logger  *slog.Logger     // nil logs nothing
	// Parallelism bounds concurrent provider and source writes per pool.
	Parallelism int
	// CallTimeout bounds each call that leaves the process.
	CallTimeout time.Duration
	// RunTimeout bounds one whole reconcile of a pool, retries included.
	RunTimeout time.Duration
	// Retries is how many times a retryable write is tried again.
	Retries int
	// Clock is the time the scaler runs on; nil is the real one.
	Clock Clock
	// MinGap is the least time between the end of a reconcile of a pool and
	// the start of the run that trails it (triggered while it ran): a
	// trigger for an idle pool is served at once, and a flood of service
	// hooks costs a pass per MinGap, not one per pass time. 0 is
	// DefaultMinGap.
	MinGap time.Duration
	// Recheck is how long after a job completed the pools are looked at
	// again; 0 is DefaultRecheck.
	Recheck time.Duration
	// MaxBackoff caps the hold between failed reconciles of a pool (0.5 s
	// doubling to 16 s by default): serve sets its timer interval, so a
	// pool failing through an outage is looked at again within one interval
	// of its end, as the timer promises.
	MaxBackoff time.Duration
	// AfterReconcile, when set, is called at the end of every reconcile of a
	// pool, whatever its outcome, on the reconcile's goroutine, so it must
	// return at once: hand slow work (a metrics push) to another goroutine.
	AfterReconcile func()
}

// Scaler reconciles pools.
type Scaler struct {
	opt      Options
	pools    map[string]*Pool
	order    []string
	log      *slog.Logger
	mu       sync.Mutex
	flight   map[string]*flight
	quit     chan struct{}              // closed by Stop: runs are no longer held back, nor started
	seen     map[string]map[string]bool // by pool: the job ids its last observation listed
	stop     sync.Once
	soon     bool            // a lookAgain is pending
	again    map[string]bool // the pools it will tick
	soonStop func() bool     // cancels its timer
	busy     int             // runs in progress
	idle     *sync.Cond      // on mu: signalled when a run ends
	clock    Clock
	life     *lifecycle
	cost     agentTime // agent-seconds between passes, by pool (cost.go)
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
	if opt.Clock == nil {
		opt.Clock = realClock{}
	}
	if opt.MinGap <= 0 {
		opt.MinGap = DefaultMinGap
	}
	if opt.Recheck <= 0 {
		opt.Recheck = DefaultRecheck
	}
	s := &Scaler{opt: opt, pools: map[string]*Pool{}, log: opt.Logger, flight: map[string]*flight{}, quit: make(chan struct{}), seen: map[string]map[string]bool{}, again: map[string]bool{}, clock: opt.Clock, life: newLifecycle()}
	s.idle = sync.NewCond(&s.mu)
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

// Observe reads the pool's state: instances first, then agents, then jobs.
// A job seen waiting then was still waiting after the instances were
// listed, so its agent cannot have run it and been deleted (by another
// reconciler) in between; read the other way round, that stale job would
// get a second agent.
func (s *Scaler) Observe(ctx context.Context, pool string) (Observation, error) {
	p, ok := s.pools[pool]
	if !ok {
		return Observation{}, fmt.Errorf("unknown pool %q", pool)
	}
	var o Observation
	var err error
	o.Instances, err = call(ctx, s.opt.CallTimeout, func(ctx context.Context) ([]providers.Instance, error) {
		return p.Provider.List(ctx, pool)
	})
	s.opt.Metrics.ProviderOperation(p.ProviderName, "list", result(err))
	if err != nil {
		return o, fmt.Errorf("pool %s: list instances: %w", pool, err)
	}
	if o.Agents, err = call(ctx, s.opt.CallTimeout, p.Source.Agents); err != nil {
		return o, fmt.Errorf("pool %s: agents: %w", pool, err)
	}
	if o.Jobs, err = call(ctx, s.opt.CallTimeout, p.Source.Jobs); err != nil {
		return o, fmt.Errorf("pool %s: jobs: %w", pool, err)
	}
	if o.Free, err = call(ctx, s.opt.CallTimeout, p.Source.Free); err != nil {
		return o, fmt.Errorf("pool %s: %w", pool, err)
	}
	o.Now = s.clock.Now()
	o.MinIdle = p.minIdleAt(o.Now)
	return o, nil
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
	s.noteJobs(pool, o.Jobs)
	s.opt.Metrics.SetWaitingJobs(pool, res.Decision.Waiting)
	res.Failed = s.apply(ctx, p, res.Decision.Actions)
	// The gauges show the pool after this pass, not before it: what was
	// created is starting, what was removed is gone.
	s.opt.Metrics.SetAgents(pool, res.Decision.AgentsAfter(res.Failed))
	s.cost.pass(s.opt.Metrics, pool, o.Now, res.Decision.AgentsAfter(res.Failed))
	s.opt.Metrics.SetPoolLimits(pool, p.MaxAgents, warmTarget(p.Policy, o))
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
			// Sources retry inside their clients; provider calls retry here.
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
		spec, err := p.Spec(ctx, a.Name)
		if err != nil {
			return fmt.Errorf("agent spec: %w", err)
		}
		spec.Name, spec.Pool, spec.Request, spec.Slot = a.Name, a.Pool, a.Request, a.Slot
		in, err := call(ctx, s.opt.CallTimeout, func(ctx context.Context) (providers.Instance, error) {
			return p.Provider.Create(ctx, spec)
		})
		s.opt.Metrics.ProviderOperation(p.ProviderName, "create", result(err))
		// An instance another process made was timed by that process.
		if err == nil && !in.Existed && !a.Queued.IsZero() {
			s.opt.Metrics.QueuedToCreated(a.Pool, s.clock.Now().Sub(a.Queued))
		}
		return err
	case Delete:
		_, err := call(ctx, s.opt.CallTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, p.Provider.Delete(ctx, a.Name)
		})
		s.opt.Metrics.ProviderOperation(p.ProviderName, "delete", result(err))
		return err
	case Unregister:
		_, err := call(ctx, s.opt.CallTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, p.Source.Unregister(ctx, a.AgentID)
		})
		return err
	case RegisterPlaceholder:
		_, err := call(ctx, s.opt.CallTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, p.Source.RegisterPlaceholder(ctx, a.Name)
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
