package scaler

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/standby"
)

// Policy is what the plan needs to know about one pool.
type Policy struct {
	Pool           string    // our pool key, the instance name prefix
	Naming         ci.Naming // the source's instance names
	MaxAgents      int
	MinIdle        int
	StartupTimeout time.Duration
	MaxLifetime    time.Duration
	FailureBackoff time.Duration
	// Placeholder keeps an offline agent registered so that the CI system
	// queues jobs into the pool while it has no agent.
	Placeholder bool
	// Standby changes MinIdle by time of day; nil keeps MinIdle. Plan
	// never reads it: Scaler.Observe turns it into Observation.MinIdle.
	Standby *standby.Schedule
}

// Observation is what reconcile saw of one pool, read in this order:
// instances, agents, jobs (see Scaler.Observe for why). An agent's held job
// overrides a stale "waiting" job, so that order never makes a running job
// look unserved.
type Observation struct {
	Now       time.Time
	Jobs      []ci.Job             // the pool's unfinished jobs
	Agents    []ci.Agent           // the agents registered in the pool
	Instances []providers.Instance // the provider's instances for this pool
	// Free is how many more jobs the CI system lets run at once (Azure
	// DevOps' free parallel jobs), or -1 for no limit.
	Free int
	// MinIdle, when set, is the warm agents to keep at Now by the pool's
	// standby schedule, in place of Policy.MinIdle.
	MinIdle *int
}

// Kind is what an action does.
type Kind string

const (
	Create              Kind = "create"
	Delete              Kind = "delete"
	Unregister          Kind = "unregister"
	RegisterPlaceholder Kind = "register-placeholder"
)

// Action is one change the plan asks for.
type Action struct {
	Kind    Kind
	Pool    string
	Name    string
	Request int64 // the job a create is for, 0 for none
	Slot    int   // the warm slot a create is for, 0 for none
	AgentID int64 // the agent to unregister
	Reason  string
	Queued  time.Time // when the job was queued, for the queue-to-create metric
	counted string    // the Decision.Agents state the deleted or unregistered agent was counted in
}

// Decision is the plan for one pool and the counts it was made from.
type Decision struct {
	Actions   []Action
	Waiting   int            // waiting jobs this pool's agents can serve
	Unmatched int            // waiting jobs whose demands this pool does not meet
	Agents    map[string]int // our agents by state: starting, idle, busy, offline
	// Problems are demands that could not be read; the jobs carrying them
	// are treated as unmatched.
	Problems []string
}

// Reasons, stable strings for logs, metrics and --output json.
const (
	ReasonWaitingJob  = "waiting_job"
	ReasonWarmSlot    = "min_idle"
	ReasonExited      = "exited"
	ReasonFailed      = "failed_after_backoff"
	ReasonStartup     = "startup_timeout"
	ReasonLifetime    = "max_lifetime"
	ReasonRequestGone = "request_gone"
	ReasonExcessWarm  = "excess_warm"
	ReasonOffline     = "offline_leftover"
	ReasonPlaceholder = "empty_pool_guard"
)

// PlaceholderName is the name of the pool's offline placeholder agent. It
// does not follow the instance naming pattern, so clean-up never touches it.
func PlaceholderName(pool string) string { return pool + "-placeholder" }

// Plan decides, without any I/O, what to create, delete and unregister so
// that every waiting job this pool can serve has exactly one agent on the
// way, min_idle agents are warm, nothing exceeds max_agents, and nothing is
// left behind. Any number of reconcilers planning from the same observation
// produce the same names, so their creates converge.
func Plan(p Policy, o Observation) Decision {
	pl := newPlanner(p, o)
	pl.expire()
	pl.absorb()
	pl.create()
	pl.warm()
	pl.cleanUp()
	pl.placeholder()
	return pl.d
}

// planner holds one Plan's working state; each phase reads what the ones
// before it left.
type planner struct {
	p    Policy
	o    Observation
	d    Decision
	ours func(string) bool

	agents     map[string]ci.Agent // by name
	waiting    []ci.Job            // servable, untaken, oldest first
	unfinished map[int64]bool      // jobs listed at all

	taken   map[string]bool      // names in use by an instance in any state
	live    int                  // instances not being removed
	spare   []providers.Instance // live instances whose agent holds no job
	deleted map[string]bool
	counted map[string]string // the Agents state each name is counted in
	used    map[string]bool   // spare instances a waiting job took
	need    []ci.Job          // waiting jobs that need a new agent
}

func newPlanner(p Policy, o Observation) *planner {
	pl := &planner{
		p: p, o: o, ours: p.Naming.Own(p.Pool),
		d:      Decision{Agents: map[string]int{"starting": 0, "idle": 0, "busy": 0, "offline": 0}},
		agents: map[string]ci.Agent{}, unfinished: map[int64]bool{},
		taken: map[string]bool{}, deleted: map[string]bool{}, counted: map[string]string{}, used: map[string]bool{},
	}
	held := map[int64]bool{} // jobs an agent already holds
	for _, a := range o.Agents {
		pl.agents[a.Name] = a
		if a.Job != nil {
			held[a.Job.ID] = true
		}
	}
	for _, j := range o.Jobs {
		pl.unfinished[j.ID] = true
	}
	pl.waiting = pl.d.waitingJobs(o.Jobs, held)
	return pl
}

// expire removes instances that ended, failed (after the failure backoff),
// never brought their agent online, or outlived max_lifetime without a job,
// and counts the rest by state.
func (pl *planner) expire() {
	p, o := pl.p, pl.o
	instances := append([]providers.Instance(nil), o.Instances...)
	sort.Slice(instances, func(i, j int) bool { return instances[i].Name < instances[j].Name })
	for _, in := range instances {
		pl.taken[in.Name] = true
		a, registered := pl.agents[in.Name]
		online := registered && a.Online
		busy := registered && a.Job != nil
		switch {
		case in.State == providers.StateExited:
			pl.del(in, ReasonExited)
			continue
		case in.State == providers.StateFailed:
			if o.Now.Sub(finishedAt(in)) >= p.FailureBackoff {
				pl.del(in, ReasonFailed)
			}
			continue
		case !online && !busy && o.Now.Sub(in.Created) >= p.StartupTimeout:
			pl.del(in, ReasonStartup)
			continue
		case !busy && p.MaxLifetime > 0 && o.Now.Sub(in.Created) >= p.MaxLifetime:
			pl.del(in, ReasonLifetime)
			continue
		}
		pl.live++
		switch {
		case busy:
			pl.counted[in.Name] = "busy"
		case online:
			pl.counted[in.Name] = "idle"
			pl.spare = append(pl.spare, in)
		default:
			pl.counted[in.Name] = "starting"
			pl.spare = append(pl.spare, in)
		}
		pl.d.Agents[pl.counted[in.Name]]++
	}
	for _, a := range o.Agents {
		if pl.ours(a.Name) && !a.Online && !pl.taken[a.Name] {
			pl.d.Agents["offline"]++
		}
	}
}

func (pl *planner) del(in providers.Instance, reason string) {
	pl.d.Actions = append(pl.d.Actions, Action{Kind: Delete, Pool: pl.p.Pool, Name: in.Name, Request: in.Request, Slot: in.Slot, Reason: reason, counted: pl.counted[in.Name]})
	pl.deleted[in.Name] = true
}

// absorb lets spare capacity take waiting jobs: first each job's own
// instance, then, oldest job first, an idle agent that is not ours and that
// the CI system would hand the job to (ForeignGrace), else any other spare
// instance. A job is never given a second agent while one is on its way;
// the jobs left need a new one.
func (pl *planner) absorb() {
	byName := map[string]bool{}
	for _, in := range pl.spare {
		byName[in.Name] = true
	}
	var unserved []ci.Job
	for _, j := range pl.waiting {
		if name := pl.p.Naming.JobName(pl.p.Pool, j.ID); byName[name] {
			pl.used[name] = true
			continue
		}
		unserved = append(unserved, j)
	}
	var free []string
	for _, in := range pl.spare {
		if !pl.used[in.Name] {
			free = append(free, in.Name)
		}
	}
	foreign := foreignIdle(pl.o.Agents, pl.ours)
	for _, j := range unserved {
		if i := foreignTaker(foreign, j, pl.o.Now); i >= 0 {
			foreign = slices.Delete(foreign, i, i+1)
			continue
		}
		if len(free) > 0 {
			pl.used[free[0]] = true
			free = free[1:]
			continue
		}
		pl.need = append(pl.need, j)
	}
}

// create makes an agent for each job left, oldest first, within max_agents
// and the CI system's free capacity.
func (pl *planner) create() {
	p := pl.p
	budget := p.MaxAgents - pl.live
	if pl.o.Free >= 0 && pl.o.Free < budget {
		budget = pl.o.Free
	}
	for _, j := range pl.need {
		if budget <= 0 {
			break
		}
		name := p.Naming.JobName(p.Pool, j.ID)
		if pl.taken[name] {
			// The job's own name is held by an instance whose agent took
			// another job X (or that is ending). The instance named for X
			// is then not needed for X: use that name, the same one every
			// reconciler picks from this observation.
			name = pl.swapName(name)
			if name == "" {
				continue
			}
		}
		pl.taken[name] = true
		budget--
		pl.d.Actions = append(pl.d.Actions, Action{Kind: Create, Pool: p.Pool, Name: name, Request: j.ID, Reason: ReasonWaitingJob, Queued: j.Queued})
	}
}

// warm settles the spare instances no waiting job took: warm ones count
// towards min_idle; ones made for a job that is gone are removed, others
// stay for the next job or until max_lifetime. None is removed while a job
// of the pool is pending: the agent it seems to have may be a single-use
// one that already ran a job and is on its way out (an agent that finished
// its job is offered the next one before it closes its session, and its
// container runs on a moment after it unregisters). A spare removed then
// leaves that job to a new agent later, under a name used before. Then warm
// slots are created up to min_idle.
func (pl *planner) warm() {
	p := pl.p
	minIdle := warmTarget(p, pl.o)
	pending := len(pl.waiting) > 0 || unsure(pl.o.Agents)
	idle := 0
	for _, in := range pl.spare {
		if pl.used[in.Name] {
			continue
		}
		switch {
		case pending:
			idle++
		case in.Slot > 0 && idle >= minIdle:
			pl.del(in, ReasonExcessWarm)
			pl.live--
		case in.Request > 0 && !pl.unfinished[in.Request] && in.Slot == 0 && idle >= minIdle:
			pl.del(in, ReasonRequestGone)
			pl.live--
		default:
			idle++
		}
	}
	budget := p.MaxAgents - pl.live - countKind(pl.d.Actions, Create)
	for slot := 1; idle < minIdle && budget > 0; slot++ {
		name := p.Naming.SlotName(p.Pool, slot)
		if pl.taken[name] {
			continue
		}
		pl.taken[name] = true
		idle++
		budget--
		pl.d.Actions = append(pl.d.Actions, Action{Kind: Create, Pool: p.Pool, Name: name, Slot: slot, Reason: ReasonWarmSlot})
	}
}

// cleanUp unregisters leftover registrations: offline agents of ours with
// no job and no instance. Anything not named exactly like ours is someone
// else's.
func (pl *planner) cleanUp() {
	for _, a := range pl.o.Agents {
		if pl.ours(a.Name) && !a.Online && a.Job == nil && (!pl.taken[a.Name] || pl.deleted[a.Name]) {
			u := Action{Kind: Unregister, Pool: pl.p.Pool, Name: a.Name, AgentID: a.ID, Reason: ReasonOffline}
			if !pl.taken[a.Name] {
				u.counted = "offline"
			}
			pl.d.Actions = append(pl.d.Actions, u)
		}
	}
}

// placeholder registers the pool's placeholder agent when it is missing.
func (pl *planner) placeholder() {
	if !pl.p.Placeholder {
		return
	}
	if _, ok := pl.agents[PlaceholderName(pl.p.Pool)]; !ok {
		pl.d.Actions = append(pl.d.Actions, Action{Kind: RegisterPlaceholder, Pool: pl.p.Pool, Name: PlaceholderName(pl.p.Pool), Reason: ReasonPlaceholder})
	}
}

// AgentsAfter returns Agents as they stand once the actions that did not
// fail are applied: created instances are starting, deleted and unregistered
// ones are gone.
func (d Decision) AgentsAfter(failed []ActionError) map[string]int {
	out := maps.Clone(d.Agents)
	for _, a := range d.Actions {
		if slices.ContainsFunc(failed, func(f ActionError) bool { return f.Action.Kind == a.Kind && f.Action.Name == a.Name }) {
			continue
		}
		switch {
		case a.Kind == Create:
			out["starting"]++
		case a.counted != "":
			out[a.counted]--
		}
	}
	return out
}

// waitingJobs returns the jobs nobody has taken that this pool's agents can
// serve, oldest first, and counts the rest.
func (d *Decision) waitingJobs(jobs []ci.Job, held map[int64]bool) []ci.Job {
	var out []ci.Job
	seen := map[int64]bool{}
	for _, j := range jobs {
		if !j.Waiting || held[j.ID] || seen[j.ID] {
			continue
		}
		seen[j.ID] = true
		if j.Problem != "" {
			d.Problems = append(d.Problems, j.Problem)
		}
		if !j.Servable {
			d.Unmatched++
			continue
		}
		out = append(out, j)
	}
	sort.SliceStable(out, func(i, k int) bool {
		if !out[i].Queued.Equal(out[k].Queued) {
			return out[i].Queued.Before(out[k].Queued)
		}
		return out[i].ID < out[k].ID
	})
	d.Waiting = len(out)
	return out
}

// unsure reports whether an agent holds a job of the pool that it has not
// received yet: it may never run it.
func unsure(agents []ci.Agent) bool {
	return slices.ContainsFunc(agents, func(a ci.Agent) bool { return a.Job != nil && a.Job.Unsure })
}

// ForeignGrace is how long a waiting job may be counted as going to an idle
// agent that is not ours. Azure DevOps hands a job to a matching idle agent
// at once, so a job still waiting after this is not going to that agent.
const ForeignGrace = 30 * time.Second

// foreignIdle returns the online, enabled, idle agents that are not ours,
// in name order.
func foreignIdle(agents []ci.Agent, ours func(string) bool) []ci.Agent {
	var out []ci.Agent
	for _, a := range agents {
		if ours(a.Name) || !a.Online || !a.Enabled || a.Job != nil {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ci.Agent) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// foreignTaker returns the index of the first foreign agent that the CI
// system would hand the job to, or -1: one whose capabilities meet the
// job's demands, while the job has waited less than ForeignGrace.
func foreignTaker(foreign []ci.Agent, j ci.Job, now time.Time) int {
	if now.Sub(j.Queued) >= ForeignGrace || j.Takes == nil {
		return -1
	}
	for i, a := range foreign {
		if j.Takes(a.Caps) {
			return i
		}
	}
	return -1
}

// swapName finds a free name for a job whose own name is held by an agent
// that took another job X: the name of X, or, when an agent took another
// job in turn from X's name, the next one along that chain, as a burst's
// agents take each other's jobs. The chain follows assignments only, so
// every reconciler picks the same name from one observation.
func (pl *planner) swapName(name string) string {
	for range len(pl.agents) {
		a, ok := pl.agents[name]
		if !ok || a.Job == nil {
			return ""
		}
		name = pl.p.Naming.JobName(pl.p.Pool, a.Job.ID)
		if !pl.taken[name] {
			return name
		}
	}
	return "" // a cycle of names
}

func finishedAt(in providers.Instance) time.Time {
	if !in.Finished.IsZero() {
		return in.Finished
	}
	return in.Created
}

func countKind(actions []Action, k Kind) int {
	n := 0
	for _, a := range actions {
		if a.Kind == k {
			n++
		}
	}
	return n
}

// String renders an action for logs and the plain dry-run output.
func (a Action) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %s/%s", a.Kind, a.Pool, a.Name)
	if a.Request > 0 {
		b.WriteString(" request=" + strconv.FormatInt(a.Request, 10))
	}
	b.WriteString(" reason=" + a.Reason)
	return b.String()
}
