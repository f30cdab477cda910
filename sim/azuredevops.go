package sim

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// azureDevOps models one Azure DevOps agent pool as the service runs it:
// job requests wait in the queue until the service gives each, oldest
// first, to an idle online agent whose capabilities satisfy its demands
// (azuredevops.Satisfies, the scaler's own matching). It answers the
// scaler's reads with the payload shapes of the REST API. It is safe for
// concurrent use, as the scaler's apply calls it from several goroutines.
type azureDevOps struct {
	pool   string // the Azure DevOps pool name
	poolID int
	now    func() time.Time

	mu       sync.Mutex
	nextID   int
	agents   []*agentRec // registration order
	requests []*request  // unfinished, queue order
}

type agentRec struct {
	id            int
	name          string
	caps          map[string]string
	online        bool
	statusChanged time.Time
	job           *request // the job it holds, nil when idle
}

type request struct {
	id       int64
	queued   time.Time
	demands  []string
	assigned time.Time // zero while waiting
	agent    string
	job      int // index in the trace
}

var _ azuredevops.API = (*azureDevOps)(nil)

func newAzureDevOps(pool string, now func() time.Time) *azureDevOps {
	return &azureDevOps{pool: pool, poolID: 1, now: now, nextID: 1}
}

// PoolID answers for the one modelled pool.
func (m *azureDevOps) PoolID(_ context.Context, name string) (int, error) {
	if name != m.pool {
		return 0, fmt.Errorf("agent pool %q not found (the simulation has %q)", name, m.pool)
	}
	return m.poolID, nil
}

// JobRequests returns the unfinished requests, as the list with
// completedRequestCount=0 does.
func (m *azureDevOps) JobRequests(_ context.Context, poolID int) ([]azuredevops.JobRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]azuredevops.JobRequest, 0, len(m.requests))
	for _, r := range m.requests {
		out = append(out, m.wireRequest(r))
	}
	return out, nil
}

func (m *azureDevOps) wireRequest(r *request) azuredevops.JobRequest {
	w := azuredevops.JobRequest{RequestID: r.id, JobID: jobRef(r.job), QueueTime: r.queued, Demands: r.demands, PoolID: m.poolID}
	if !r.assigned.IsZero() {
		at := r.assigned
		w.AssignTime, w.ReceiveTime = &at, &at
		w.ReservedAgent = &azuredevops.AgentReference{Name: r.agent, Status: "online", Enabled: true}
	}
	return w
}

// Agents returns the registered agents with their assigned requests.
func (m *azureDevOps) Agents(_ context.Context, poolID int) ([]azuredevops.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]azuredevops.Agent, 0, len(m.agents))
	for _, a := range m.agents {
		changed := a.statusChanged
		w := azuredevops.Agent{
			ID: a.id, Name: a.name, Enabled: true, Status: "offline", StatusChangedOn: &changed,
			MaxParallelism: 1, SystemCapabilities: a.caps,
		}
		if a.online {
			w.Status = "online"
		}
		if a.job != nil {
			r := m.wireRequest(a.job)
			w.AssignedRequest = &r
		}
		out = append(out, w)
	}
	return out, nil
}

// DeleteAgent unregisters an agent; a job it held goes back to waiting.
func (m *azureDevOps) DeleteAgent(_ context.Context, poolID, agentID int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.agents, func(a *agentRec) bool { return a.id == agentID })
	if i < 0 {
		return fmt.Errorf("agent %d not found", agentID)
	}
	if r := m.agents[i].job; r != nil {
		r.assigned, r.agent = time.Time{}, ""
	}
	m.agents = slices.Delete(m.agents, i, i+1)
	return nil
}

// AddAgent registers an agent (the scaler's offline placeholder).
func (m *azureDevOps) AddAgent(_ context.Context, poolID int, a azuredevops.Agent) (azuredevops.Agent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.agentLocked(a.Name) != nil {
		return azuredevops.Agent{}, fmt.Errorf("agent %q already exists in pool %q", a.Name, m.pool)
	}
	rec := &agentRec{id: m.nextID, name: a.Name, caps: maps.Clone(a.SystemCapabilities), online: a.Online(), statusChanged: m.now()}
	m.nextID++
	m.agents = append(m.agents, rec)
	a.ID = rec.id
	return a, nil
}

// ResourceUsage reports parallel jobs without limit: the simulation models
// capacity with max_agents.
func (m *azureDevOps) ResourceUsage(context.Context) (azuredevops.ResourceUsage, error) {
	var u azuredevops.ResourceUsage
	u.ResourceLimit.TotalCount = 1 << 20
	return u, nil
}

func (m *azureDevOps) agentLocked(name string) *agentRec {
	for _, a := range m.agents {
		if a.name == name {
			return a
		}
	}
	return nil
}

// queue adds a job request.
// jobRef is the id hooks and job requests name trace job i by (a GUID in
// the service).
func jobRef(i int) string { return fmt.Sprintf("job-%d", i) }

func (m *azureDevOps) queue(id int64, job int, demands []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, &request{id: id, queued: m.now(), demands: demands, job: job})
}

// connect brings an agent online, registering it first, or replacing an
// earlier registration of that name in place as `config --replace` does.
func (m *azureDevOps) connect(name string, caps map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agentLocked(name)
	if a == nil {
		a = &agentRec{id: m.nextID, name: name}
		m.nextID++
		m.agents = append(m.agents, a)
	}
	a.caps = caps
	a.online = true
	a.statusChanged = m.now()
}

// disconnect takes an agent offline, keeping its registration, as when its
// container is killed. A job it held that had not started goes back to the
// queue; in the simulation jobs start when assigned, so it holds none.
func (m *azureDevOps) disconnect(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a := m.agentLocked(name); a != nil && a.online {
		a.online = false
		a.statusChanged = m.now()
	}
}

// finish ends the agent's job, and with it the --once agent: it
// unregisters itself on the way out. It returns the request.
func (m *azureDevOps) finish(agent string) (*request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agentLocked(agent)
	if a == nil || a.job == nil {
		return nil, fmt.Errorf("agent %q holds no job", agent)
	}
	r := a.job
	m.requests = slices.DeleteFunc(m.requests, func(x *request) bool { return x == r })
	m.agents = slices.DeleteFunc(m.agents, func(x *agentRec) bool { return x == a })
	return r, nil
}

// assignment is a job the service has just given to an agent.
type assignment struct {
	req   *request
	agent string
}

// assign gives waiting requests, oldest first, to idle online agents that
// satisfy their demands, the first registered first.
func (m *azureDevOps) assign() []assignment {
	m.mu.Lock()
	defer m.mu.Unlock()
	var idle []*agentRec
	for _, a := range m.agents {
		if a.online && a.job == nil {
			idle = append(idle, a)
		}
	}
	var out []assignment
	for _, r := range m.requests {
		if len(idle) == 0 {
			break
		}
		if !r.assigned.IsZero() {
			continue
		}
		for i, a := range idle {
			if ok, _ := azuredevops.Satisfies(a.caps, r.demands); !ok {
				continue
			}
			a.job, r.assigned, r.agent = r, m.now(), a.name
			out = append(out, assignment{r, a.name})
			idle = slices.Delete(idle, i, i+1)
			break
		}
	}
	return out
}

// counts returns the online agents by idle and busy, and the waiting requests.
func (m *azureDevOps) counts() (idle, busy, waiting int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.agents {
		switch {
		case a.online && a.job != nil:
			busy++
		case a.online:
			idle++
		}
	}
	for _, r := range m.requests {
		if r.assigned.IsZero() {
			waiting++
		}
	}
	return idle, busy, waiting
}
