// Package sim is a discrete-event simulation on virtual time that drives
// the real scaler through a job trace, to compare ways of providing agents
// (agentscaler's webhooks, a polling scaler, a static pool) by how long
// jobs wait and how many agent-seconds they cost, before anything is
// deployed. It is what `agentscaler simulate` runs.
//
// The parts: the real scaler, driven through the event methods serve drives
// (a service hook's event through azuredevops.Dispatch, the timer's Tick),
// so its coalescing, minimum gap and second look run on the virtual clock;
// the memory provider with a start-latency model on that clock; and a model
// of the Azure DevOps service (azureDevOps) that assigns waiting jobs to
// idle matching agents oldest first. Agents are single-use (--once): an agent
// takes one job, then unregisters and its instance exits. Nothing sleeps:
// the clock jumps from one event to the next, so a day of jobs runs in
// well under a second.
//
// What it leaves out: the time a reconcile itself takes (its Azure DevOps
// and provider calls happen at one virtual instant), provider errors, and
// the service's own delay between assigning a job and the agent starting it.
package sim

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/scaler"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// Options configure a simulation run.
type Options struct {
	// Pool is the pool as in the configuration file, defaults applied:
	// name, azure_pool, max_agents, min_idle, the timeouts, capabilities
	// and agent_version are used.
	Pool config.Pool
	// StartLatency is how long an agent takes from create to online, and a
	// static agent from the end of its job to online again.
	StartLatency Latency
	// HookDelay is how long a service hook takes to arrive; HookLoss the
	// chance, from 0 to 1, that one never does.
	HookDelay time.Duration
	HookLoss  float64
	// Seed makes hook losses and latency draws repeatable.
	Seed int64
	// Horizon is how long the simulated window lasts from the start of the
	// trace; costs are counted over it. 0 means until 10 minutes after the
	// last job would end if it started at once. The run goes on past it
	// until every job that can be served has been.
	Horizon time.Duration
	// Metrics, when set, receives what the scaler records, on virtual
	// time: agentscaler_agent_seconds_total among them, the production
	// measure of what Result's agent-seconds count exactly.
	Metrics *metrics.Metrics
}

// epoch is the virtual time of the start of a trace: a Monday at midnight.
var epoch = time.Date(2025, time.January, 6, 0, 0, 0, 0, time.UTC)

// giveUp bounds how long past the horizon a run waits for jobs still not
// served (an agent that never comes online within startup_timeout, say).
const giveUp = 24 * time.Hour

// Run simulates the jobs under one policy and returns its figures.
func Run(ctx context.Context, jobs []Job, pol Policy, opt Options) (Result, error) {
	if err := opt.validate(pol); err != nil {
		return Result{}, err
	}
	e, err := newEngine(jobs, pol, opt)
	if err != nil {
		return Result{}, err
	}
	if err := e.run(ctx); err != nil {
		return Result{}, fmt.Errorf("simulate %s: %w", pol, err)
	}
	return e.result(), nil
}

// validate checks what the simulation adds to the pool; the pool itself is
// checked by config's rules.
func (o Options) validate(pol Policy) error {
	if err := config.ValidatePolicy(o.Pool); err != nil {
		return err
	}
	switch {
	case o.Pool.AzurePool == "":
		return fmt.Errorf("pool %s: azure_pool is required", o.Pool.Name)
	case o.HookLoss < 0 || o.HookLoss > 1:
		return fmt.Errorf("hook loss must be between 0 and 1 (got %g)", o.HookLoss)
	case o.HookDelay < 0 || o.Horizon < 0:
		return fmt.Errorf("hook delay and horizon must not be negative")
	case o.StartLatency.Min < 0 || o.StartLatency.Max < o.StartLatency.Min:
		return fmt.Errorf("start latency %s: the range must go from low to high", o.StartLatency)
	case pol.Kind != Static && pol.Interval <= 0:
		return fmt.Errorf("policy %s: the timer interval must be greater than 0", pol)
	case pol.Kind == Static && pol.Agents < 1:
		return fmt.Errorf("policy %s: at least one agent", pol)
	}
	return nil
}

type eventKind int

const (
	evQueue   eventKind = iota // a job is queued
	evHook                     // a service hook arrives
	evTimer                    // the reconcile timer fires
	evOnline                   // an instance's agent comes online
	evDone                     // an agent's job ends
	evRestart                  // a static agent's container has started again
)

type event struct {
	at   time.Duration // from the start of the trace
	seq  uint64        // ties keep the order of scheduling
	kind eventKind
	job  int               // evQueue
	name string            // evOnline, evDone, evRestart
	gen  int               // evOnline, evRestart: which start of that name
	hook azuredevops.Event // evHook
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// instance is what the simulation tracks of one start of an instance.
type instance struct {
	gen     int
	request int64 // the job request it was created for, 0 for a warm slot
	online  bool
	ran     bool // it ran a job
	exited  bool
}

// listener is what serve's hooks and timer tell the scaler.
type listener interface {
	azuredevops.Scaler
	Tick(pools ...string)
}

type engine struct {
	jobs    []Job
	pol     Policy
	opt     Options
	horizon time.Duration
	clock   *fakeclock.Clock
	ado     *azureDevOps
	rec     *recorder      // nil for Static
	sc      *scaler.Scaler // nil for Static
	target  listener       // sc, as the hooks and the timer reach it
	caps    map[string]string
	rng     *rand.Rand // hook losses, drawn in event order
	events  eventQueue
	seq     uint64

	servable, served int
	waits            []time.Duration
	instances        map[string]*instance
	restarting       map[string]int // static agents starting again, by name: their gen
	duplicates       int
	reconciles       int

	now               time.Duration
	cur               Sample
	agentSec, idleSec float64
	peak              int
	timeline          []Sample
}

func newEngine(jobs []Job, pol Policy, opt Options) (*engine, error) {
	e := &engine{
		jobs: jobs, pol: pol, opt: opt, horizon: opt.Horizon,
		clock:      fakeclock.New(epoch),
		caps:       azuredevops.PoolCapabilities(opt.Pool.Capabilities, opt.Pool.AgentVersion),
		rng:        rand.New(rand.NewPCG(uint64(opt.Seed), 0x6b00c5)),
		instances:  map[string]*instance{},
		restarting: map[string]int{},
	}
	if e.horizon == 0 {
		for _, j := range jobs {
			e.horizon = max(e.horizon, j.QueuedAt+j.Duration)
		}
		e.horizon += 10 * time.Minute
	}
	e.ado = newAzureDevOps(opt.Pool.AzurePool, e.clock.Now)
	for _, j := range jobs {
		if ok, _ := azuredevops.Satisfies(e.caps, j.Demands); ok {
			e.servable++
		}
	}
	if pol.Kind == Static {
		return e, nil
	}
	e.rec = newRecorder(e.clock.Now, opt.StartLatency, opt.Seed)
	p := opt.Pool
	policy, err := scaler.PolicyFor(p, ci.Requests)
	if err != nil {
		return nil, err
	}
	e.sc = scaler.New(scaler.Options{
		Pools: []scaler.Pool{{
			Policy:       policy,
			System:       ci.AzureDevOps,
			Source:       azuredevops.NewSource(e.ado, p.AzurePool, p.Capabilities, p.AgentVersion),
			Provider:     e.rec,
			ProviderName: "memory",
			Spec: func(context.Context, string) (providers.AgentSpec, error) {
				return providers.AgentSpec{Image: "simulated"}, nil
			},
		}},
		Logger:         slog.New(slog.DiscardHandler),
		Metrics:        opt.Metrics,
		Clock:          e.clock,
		AfterReconcile: func() { e.reconciles++ }, // while the engine waits in settle
	})
	e.target = e.sc
	return e, nil
}

func (e *engine) schedule(ev event) {
	ev.seq = e.seq
	e.seq++
	heap.Push(&e.events, ev)
}

func (e *engine) run(ctx context.Context) error {
	for i, j := range e.jobs {
		e.schedule(event{at: j.QueuedAt, kind: evQueue, job: i})
	}
	switch e.pol.Kind {
	case Static:
		for i := 1; i <= e.pol.Agents; i++ {
			e.ado.connect(staticName(i), e.agentCaps(staticName(i)))
		}
	default:
		e.schedule(event{at: e.pol.Interval, kind: evTimer})
		// The first pass registers the placeholder and warm agents, as a
		// deployment's first timer run does before any job.
		e.target.Tick()
		e.settle()
	}
	e.sample()
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		at, ok := e.next()
		if !ok || (e.served == e.servable && at > e.horizon) || at > e.horizon+giveUp {
			break
		}
		e.advance(at) // fires the scaler's timers due by then
		// The passes those timers started end before anything else happens
		// at this instant: an event handled while one of them observes would
		// make the run depend on goroutine scheduling.
		e.settle()
		if e.events.Len() > 0 && e.events[0].at <= e.now {
			if err := e.handle(heap.Pop(&e.events).(event)); err != nil {
				return err
			}
			e.settle()
		}
		e.sample()
	}
	e.advance(max(e.horizon, e.now))
	return nil
}

// next returns when the next thing happens: an event of the trace or of
// the agents, or a timer the scaler set (a held pass, a second look).
func (e *engine) next() (time.Duration, bool) {
	at, ok := time.Duration(0), false
	if e.events.Len() > 0 {
		at, ok = e.events[0].at, true
	}
	if t, set := e.clock.Next(); set && (!ok || t.Sub(epoch) < at) {
		at, ok = max(t.Sub(epoch), e.now), true
	}
	return at, ok
}

func (e *engine) handle(ev event) error {
	switch ev.kind {
	case evQueue:
		j := e.jobs[ev.job]
		e.ado.queue(int64(ev.job+1), ev.job, j.Demands)
		e.hook(azuredevops.Event{Type: azuredevops.EventJobStateChanged, State: "waiting", JobID: jobRef(ev.job)})
	case evHook:
		azuredevops.Dispatch(ev.hook, e.target)
	case evTimer:
		e.schedule(event{at: ev.at + e.pol.Interval, kind: evTimer})
		e.target.Tick()
	case evOnline:
		in := e.instances[ev.name]
		if in == nil || in.gen != ev.gen {
			return nil // deleted before its agent came online
		}
		in.online = true
		e.ado.connect(ev.name, e.agentCaps(ev.name))
	case evRestart:
		delete(e.restarting, ev.name)
		e.ado.connect(ev.name, e.agentCaps(ev.name))
	case evDone:
		job, err := e.ado.finish(ev.name)
		if err != nil {
			return err
		}
		if e.pol.Kind == Static {
			gen := e.restarting[ev.name] + 1
			e.restarting[ev.name] = gen
			e.schedule(event{at: e.now + e.opt.StartLatency.at(unit(uint64(e.opt.Seed), ev.name, gen)), kind: evRestart, name: ev.name, gen: gen})
		} else {
			if err := e.rec.inner.Exit(ev.name, 0); err != nil {
				return err
			}
			if in := e.instances[ev.name]; in != nil {
				in.exited = true
			}
		}
		e.hook(azuredevops.Event{Type: azuredevops.EventJobStateChanged, State: "completed", JobID: jobRef(job.job)})
	}
	return nil
}

// hook delivers the service hook the service sends for an event to the
// webhook policy, late by the hook delay, or loses it.
func (e *engine) hook(ev azuredevops.Event) {
	if e.pol.Kind != Webhook {
		return
	}
	if e.opt.HookLoss > 0 && e.rng.Float64() < e.opt.HookLoss {
		return
	}
	e.schedule(event{at: e.now + e.opt.HookDelay, kind: evHook, hook: ev})
}

// settle waits until the passes the last event or timer started have
// ended, then plays out what they did to the instances, and lets the
// service hand waiting jobs to idle agents.
func (e *engine) settle() {
	if e.sc != nil {
		e.sc.Settle()
		e.playOut()
	}
	e.assign()
}

// playOut brings what the scaler created and deleted into the simulation.
func (e *engine) playOut() {
	made, gone := e.rec.drain()
	// The scaler creates and deletes in parallel, in no fixed order; events
	// at one instant run in the order they were scheduled, so schedule them
	// in name order, or agents coming online together would register (and
	// be handed jobs) in a different order from run to run.
	slices.Sort(gone)
	slices.SortFunc(made, func(a, b created) int { return strings.Compare(a.name, b.name) })
	for _, name := range gone {
		e.removed(name)
	}
	for _, c := range made {
		e.instances[c.name] = &instance{gen: c.gen, request: c.request}
		e.schedule(event{at: c.at.Sub(epoch) + c.latency, kind: evOnline, name: c.name, gen: c.gen})
	}
}

// removed plays out the deletion of an instance: its agent goes offline,
// and one made for a job that came online and ran none was a duplicate.
func (e *engine) removed(name string) {
	in := e.instances[name]
	if in == nil {
		return
	}
	if in.duplicate() {
		e.duplicates++
	}
	e.ado.disconnect(name) // its container is gone
	delete(e.instances, name)
}

// duplicate reports whether the instance was made for a job and its agent
// came online but ran no job: another agent ran the job. One deleted before
// its agent came online (a start that timed out) is a failed start, not a
// duplicate.
func (in *instance) duplicate() bool { return in.request > 0 && in.online && !in.ran }

// assign lets the service hand waiting jobs to idle agents, and starts them.
func (e *engine) assign() {
	for _, a := range e.ado.assign() {
		e.served++
		e.waits = append(e.waits, a.req.assigned.Sub(a.req.queued))
		if in := e.instances[a.agent]; in != nil {
			in.ran = true
		}
		e.schedule(event{at: e.now + e.jobs[a.req.job].Duration, kind: evDone, name: a.agent})
	}
}

// agentCaps is what an agent of the pool registers with.
func (e *engine) agentCaps(name string) map[string]string {
	c := maps.Clone(e.caps)
	c["Agent.Name"] = name
	return c
}

func staticName(i int) string { return fmt.Sprintf("static-%d", i) }

// advance moves the virtual clock to t, counting agent time on the way.
func (e *engine) advance(t time.Duration) {
	if t < e.now {
		return
	}
	dt := (t - e.now).Seconds()
	e.agentSec += float64(e.cur.Starting+e.cur.Idle+e.cur.Busy) * dt
	e.idleSec += float64(e.cur.Idle) * dt
	e.clock.Advance(t - e.now)
	e.now = t
}

// sample records the state after an event when it changed.
func (e *engine) sample() {
	s := Sample{At: e.now}
	s.Idle, s.Busy, s.Waiting = e.ado.counts()
	s.Starting = len(e.restarting)
	for _, in := range e.instances {
		if !in.online && !in.exited {
			s.Starting++
		}
	}
	e.peak = max(e.peak, s.Starting+s.Idle+s.Busy)
	if len(e.timeline) > 0 && s.counts() == e.cur.counts() {
		return
	}
	e.cur = s
	e.timeline = append(e.timeline, s)
}

func (e *engine) result() Result {
	r := Result{
		Policy:           e.pol.String(),
		Jobs:             len(e.jobs),
		Unserved:         len(e.jobs) - e.served,
		AgentSeconds:     round1(e.agentSec),
		IdleAgentSeconds: round1(e.idleSec),
		DuplicateAgents:  e.duplicates,
		PeakAgents:       e.peak,
		Reconciles:       e.reconciles,
		Window:           e.now,
		Timeline:         e.timeline,
	}
	// Instances made for a job that are still there at the end and never
	// ran one count as duplicates too.
	for _, in := range e.instances {
		if in.duplicate() {
			r.DuplicateAgents++
		}
	}
	r.setWaits(e.waits)
	return r
}
