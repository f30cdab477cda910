package scaler

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// Policy is what the plan needs to know about one pool.
type Policy struct {
	Pool           string // our pool key, the instance name prefix
	MaxAgents      int
	MinIdle        int
	StartupTimeout time.Duration
	MaxLifetime    time.Duration
	FailureBackoff time.Duration
	// Capabilities are what this pool's agents offer, system ones included
	// (azuredevops.PoolCapabilities); waiting jobs are matched against them.
	Capabilities map[string]string
	// Placeholder keeps an offline agent registered so that Azure DevOps
	// queues jobs into the pool while it has no agent.
	Placeholder bool
}

// Observation is what reconcile saw of one pool, read in this order: job
// requests, then agents, then instances. An agent's assigned request
// overrides a stale "waiting" request, so that order never makes a running
// job look unserved.
type Observation struct {
	Now       time.Time
	Requests  []azuredevops.JobRequest // unfinished requests of the Azure DevOps pool
	Agents    []azuredevops.Agent      // agents registered in the Azure DevOps pool
	Instances []providers.Instance     // the provider's instances for this pool
	// FreeParallel is the organization's free self-hosted parallel jobs, or
	// -1 when not checked.
	FreeParallel int
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
	Request int64 // the job request a create is for, 0 for none
	Slot    int   // the warm slot a create is for, 0 for none
	AgentID int   // the Azure DevOps agent to unregister
	Reason  string
	Queued  time.Time // when the request was queued, for the queue-to-create metric
	counted string    // the Decision.Agents state the deleted or unregistered agent was counted in
}

// Decision is the plan for one pool and the counts it was made from.
type Decision struct {
	Actions   []Action
	Waiting   int            // waiting requests this pool's agents can serve
	Unmatched int            // waiting requests whose demands this pool does not meet
	Agents    map[string]int // our agents by state: starting, idle, busy, offline
	// Problems are demands that could not be parsed; the requests carrying
	// them are treated as unmatched.
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
	d := Decision{Agents: map[string]int{"starting": 0, "idle": 0, "busy": 0, "offline": 0}}
	ours := ownName(p.Pool)

	agents := map[string]azuredevops.Agent{}
	assigned := map[int64]bool{} // requests an agent already holds
	for _, a := range o.Agents {
		agents[a.Name] = a
		if a.AssignedRequest != nil {
			assigned[a.AssignedRequest.RequestID] = true
		}
	}

	waiting := d.waitingRequests(p, o.Requests, assigned)
	unfinished := map[int64]bool{}
	for _, r := range o.Requests {
		unfinished[r.RequestID] = true
	}

	instances := append([]providers.Instance(nil), o.Instances...)
	sort.Slice(instances, func(i, j int) bool { return instances[i].Name < instances[j].Name })
	taken := map[string]bool{} // names in use by an instance in any state
	live := 0
	var spare []providers.Instance // live instances whose agent holds no job
	deleted := map[string]bool{}
	counted := map[string]string{} // the Agents state each name is counted in
	del := func(in providers.Instance, reason string) {
		d.Actions = append(d.Actions, Action{Kind: Delete, Pool: p.Pool, Name: in.Name, Request: in.Request, Slot: in.Slot, Reason: reason, counted: counted[in.Name]})
		deleted[in.Name] = true
	}
	for _, in := range instances {
		taken[in.Name] = true
		a, registered := agents[in.Name]
		online := registered && a.Online()
		busy := registered && a.AssignedRequest != nil
		switch {
		case in.State == providers.StateExited:
			del(in, ReasonExited)
			continue
		case in.State == providers.StateFailed:
			if o.Now.Sub(finishedAt(in)) >= p.FailureBackoff {
				del(in, ReasonFailed)
			}
			continue
		case !online && !busy && o.Now.Sub(in.Created) >= p.StartupTimeout:
			del(in, ReasonStartup)
			continue
		case !busy && p.MaxLifetime > 0 && o.Now.Sub(in.Created) >= p.MaxLifetime:
			del(in, ReasonLifetime)
			continue
		}
		live++
		switch {
		case busy:
			counted[in.Name] = "busy"
		case online:
			counted[in.Name] = "idle"
			spare = append(spare, in)
		default:
			counted[in.Name] = "starting"
			spare = append(spare, in)
		}
		d.Agents[counted[in.Name]]++
	}
	for _, a := range o.Agents {
		if ours(a.Name) && !a.Online() && !taken[a.Name] {
			d.Agents["offline"]++
		}
	}

	// Spare capacity absorbs waiting requests: first each request's own
	// instance, then, oldest request first, an idle agent that is not ours
	// and that Azure DevOps would hand the job to (ForeignGrace), else any
	// other spare instance. A job is never given a second agent while one is
	// on its way.
	byName := map[string]bool{}
	for _, in := range spare {
		byName[in.Name] = true
	}
	used := map[string]bool{}
	var unserved []azuredevops.JobRequest
	for _, r := range waiting {
		name := providers.RequestName(p.Pool, r.RequestID)
		if byName[name] {
			used[name] = true
			continue
		}
		unserved = append(unserved, r)
	}
	var free []string
	for _, in := range spare {
		if !used[in.Name] {
			free = append(free, in.Name)
		}
	}
	foreign := foreignIdle(o.Agents, ours)
	var need []azuredevops.JobRequest
	for _, r := range unserved {
		if i := foreignTaker(foreign, r, o.Now); i >= 0 {
			foreign = slices.Delete(foreign, i, i+1)
			continue
		}
		if len(free) > 0 {
			used[free[0]] = true
			free = free[1:]
			continue
		}
		need = append(need, r)
	}

	budget := p.MaxAgents - live
	if o.FreeParallel >= 0 && o.FreeParallel < budget {
		budget = o.FreeParallel
	}
	for _, r := range need {
		if budget <= 0 {
			break
		}
		name := providers.RequestName(p.Pool, r.RequestID)
		if taken[name] {
			// The request's own name is held by an instance whose agent took
			// another job X (or that is ending). Instance <pool>-r<X> is then
			// not needed for X: use that name, the same one every reconciler
			// picks from this observation.
			name = swapName(p.Pool, name, agents, taken)
			if name == "" {
				continue
			}
		}
		taken[name] = true
		budget--
		d.Actions = append(d.Actions, Action{Kind: Create, Pool: p.Pool, Name: name, Request: r.RequestID, Reason: ReasonWaitingJob, Queued: r.QueueTime})
	}

	// Spare instances no waiting job took: warm ones count towards min_idle;
	// request ones whose request is gone are removed, others stay for the
	// next job or until max_lifetime. None is removed while a job of the
	// pool is pending: the agent it seems to have may be a single-use one
	// that already ran a job and is on its way out (an agent that finished
	// its job is offered the next one before it closes its session, and its
	// container runs on a moment after it unregisters). A spare removed then
	// leaves that job to a new agent later, under a name used before.
	pending := len(waiting) > 0 || tentative(p, o.Agents)
	idle := 0
	for _, in := range spare {
		if used[in.Name] {
			continue
		}
		switch {
		case pending:
			idle++
		case in.Slot > 0 && idle >= p.MinIdle:
			del(in, ReasonExcessWarm)
			live--
		case in.Request > 0 && !unfinished[in.Request] && in.Slot == 0 && idle >= p.MinIdle:
			del(in, ReasonRequestGone)
			live--
		default:
			idle++
		}
	}
	budget = p.MaxAgents - live - countKind(d.Actions, Create)
	for slot := 1; idle < p.MinIdle && budget > 0; slot++ {
		name := providers.SlotName(p.Pool, slot)
		if taken[name] {
			continue
		}
		taken[name] = true
		idle++
		budget--
		d.Actions = append(d.Actions, Action{Kind: Create, Pool: p.Pool, Name: name, Slot: slot, Reason: ReasonWarmSlot})
	}

	// Leftover registrations: offline agents of ours with no job and no
	// instance. Anything not named exactly like ours is someone else's.
	for _, a := range o.Agents {
		if ours(a.Name) && !a.Online() && a.AssignedRequest == nil && (!taken[a.Name] || deleted[a.Name]) {
			u := Action{Kind: Unregister, Pool: p.Pool, Name: a.Name, AgentID: a.ID, Reason: ReasonOffline}
			if !taken[a.Name] {
				u.counted = "offline"
			}
			d.Actions = append(d.Actions, u)
		}
	}
	if p.Placeholder {
		if _, ok := agents[PlaceholderName(p.Pool)]; !ok {
			d.Actions = append(d.Actions, Action{Kind: RegisterPlaceholder, Pool: p.Pool, Name: PlaceholderName(p.Pool), Reason: ReasonPlaceholder})
		}
	}
	return d
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

// waitingRequests returns the requests nobody has taken that this pool's
// agents can serve, oldest first, and counts the rest.
func (d *Decision) waitingRequests(p Policy, requests []azuredevops.JobRequest, assigned map[int64]bool) []azuredevops.JobRequest {
	var out []azuredevops.JobRequest
	seen := map[int64]bool{}
	for _, r := range requests {
		if !r.Waiting() || assigned[r.RequestID] || seen[r.RequestID] {
			continue
		}
		seen[r.RequestID] = true
		ok, err := azuredevops.Satisfies(p.Capabilities, r.Demands)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("request %d: %v", r.RequestID, err))
		}
		if !ok {
			d.Unmatched++
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].QueueTime.Equal(out[j].QueueTime) {
			return out[i].QueueTime.Before(out[j].QueueTime)
		}
		return out[i].RequestID < out[j].RequestID
	})
	d.Waiting = len(out)
	return out
}

// tentative reports whether an agent holds a job of the pool that it has
// not received yet: it may never run it.
func tentative(p Policy, agents []azuredevops.Agent) bool {
	for _, a := range agents {
		r := a.AssignedRequest
		if r == nil || r.ReceiveTime != nil || r.Result != nil {
			continue
		}
		if ok, _ := azuredevops.Satisfies(p.Capabilities, r.Demands); ok {
			return true
		}
	}
	return false
}

// ForeignGrace is how long a waiting job may be counted as going to an idle
// agent that is not ours. Azure DevOps hands a job to a matching idle agent
// at once, so a job still waiting after this is not going to that agent.
const ForeignGrace = 30 * time.Second

// foreignIdle returns the online, enabled, idle agents that are not ours,
// with their system and user capabilities merged, in name order.
func foreignIdle(agents []azuredevops.Agent, ours func(string) bool) []foreignAgent {
	var out []foreignAgent
	for _, a := range agents {
		if ours(a.Name) || !a.Online() || !a.Enabled || a.AssignedRequest != nil {
			continue
		}
		caps := maps.Clone(a.SystemCapabilities)
		if caps == nil {
			caps = map[string]string{}
		}
		maps.Copy(caps, a.UserCapabilities)
		out = append(out, foreignAgent{name: a.Name, caps: caps})
	}
	slices.SortFunc(out, func(a, b foreignAgent) int { return strings.Compare(a.name, b.name) })
	return out
}

type foreignAgent struct {
	name string
	caps map[string]string
}

// foreignTaker returns the index of the first foreign agent that Azure
// DevOps would hand the request to, or -1: one whose capabilities satisfy
// the request's demands, while the request has waited less than
// ForeignGrace.
func foreignTaker(foreign []foreignAgent, r azuredevops.JobRequest, now time.Time) int {
	if now.Sub(r.QueueTime) >= ForeignGrace {
		return -1
	}
	for i, a := range foreign {
		if ok, _ := azuredevops.Satisfies(a.caps, r.Demands); ok {
			return i
		}
	}
	return -1
}

// swapName finds a free name for a request whose own name is held by an
// agent that took another job X: the name of X, or, when an agent took
// another job in turn from X's name, the next one along that chain, as a
// burst's agents take each other's jobs. The chain follows assignments only,
// so every reconciler picks the same name from one observation.
func swapName(pool, name string, agents map[string]azuredevops.Agent, taken map[string]bool) string {
	for range len(agents) {
		a, ok := agents[name]
		if !ok || a.AssignedRequest == nil {
			return ""
		}
		name = providers.RequestName(pool, a.AssignedRequest.RequestID)
		if !taken[name] {
			return name
		}
	}
	return "" // a cycle of names
}

// ownName matches exactly the agent names this pool's instances get.
func ownName(pool string) func(string) bool {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(pool) + `-[rw][0-9]+$`)
	return re.MatchString
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
