package azuredevops

import (
	"context"
	"fmt"
	"maps"

	"github.com/agentscaler/agentscaler/ci"
)

// API is what a Source asks of Azure DevOps: the Client, or the simulator's
// model of the service.
type API interface {
	PoolID(ctx context.Context, name string) (int, error)
	JobRequests(ctx context.Context, poolID int) ([]JobRequest, error)
	Agents(ctx context.Context, poolID int) ([]Agent, error)
	DeleteAgent(ctx context.Context, poolID, agentID int) error
	AddAgent(ctx context.Context, poolID int, a Agent) (Agent, error)
	ResourceUsage(ctx context.Context) (ResourceUsage, error)
}

// Source is one Azure DevOps agent pool as the scaler sees it:
// job requests and agents in the ci model, demands matched against the
// capabilities the pool's agents offer.
type Source struct {
	API  API
	Name string // the Azure DevOps agent pool
	// Capabilities are what the pool's agents offer, system ones included
	// (PoolCapabilities).
	Capabilities map[string]string
	AgentVersion string // reported by the placeholder agent
	// Parallel caps creates by the organization's free self-hosted parallel
	// jobs; ObserveParallel, when set, is told the usage read.
	Parallel        bool
	ObserveParallel func(used, total int)
}

// NewSource returns the pool whose agents declare capabilities and run
// agentVersion.
func NewSource(api API, name string, capabilities map[string]string, agentVersion string) *Source {
	return &Source{API: api, Name: name, Capabilities: PoolCapabilities(capabilities, agentVersion), AgentVersion: agentVersion}
}

func (p *Source) id(ctx context.Context) (int, error) {
	id, err := p.API.PoolID(ctx, p.Name)
	if err != nil {
		return 0, fmt.Errorf("agent pool %q: %w", p.Name, err)
	}
	return id, nil
}

// Agents lists the pool's agents with the requests they hold.
func (p *Source) Agents(ctx context.Context) ([]ci.Agent, error) {
	id, err := p.id(ctx)
	if err != nil {
		return nil, err
	}
	agents, err := p.API.Agents(ctx, id)
	if err != nil {
		return nil, err
	}
	return Agents(p.Capabilities, agents), nil
}

// Jobs lists the pool's unfinished job requests.
func (p *Source) Jobs(ctx context.Context) ([]ci.Job, error) {
	id, err := p.id(ctx)
	if err != nil {
		return nil, err
	}
	requests, err := p.API.JobRequests(ctx, id)
	if err != nil {
		return nil, err
	}
	return Jobs(p.Capabilities, requests), nil
}

// Free returns the organization's free self-hosted parallel jobs, or -1
// when the pool does not respect them.
func (p *Source) Free(ctx context.Context) (int, error) {
	if !p.Parallel {
		return -1, nil
	}
	u, err := p.API.ResourceUsage(ctx)
	if err != nil {
		return 0, fmt.Errorf("parallel jobs: %w", err)
	}
	if p.ObserveParallel != nil {
		p.ObserveParallel(u.UsedCount, u.ResourceLimit.TotalCount)
	}
	return u.Free(), nil
}

// Unregister deletes an agent's registration.
func (p *Source) Unregister(ctx context.Context, agentID int64) error {
	id, err := p.id(ctx)
	if err != nil {
		return err
	}
	return p.API.DeleteAgent(ctx, id, int(agentID))
}

// RegisterPlaceholder registers an offline agent under name, so that Azure
// DevOps queues jobs into the pool while it has no agent.
func (p *Source) RegisterPlaceholder(ctx context.Context, name string) error {
	id, err := p.id(ctx)
	if err != nil {
		return err
	}
	_, err = p.API.AddAgent(ctx, id, Agent{
		Name: name, Version: p.AgentVersion, Enabled: true, Status: "offline",
		SystemCapabilities: p.Capabilities, MaxParallelism: 1,
	})
	return err
}

// Jobs adapts job requests to the ci model for a pool whose agents offer
// caps.
func Jobs(caps map[string]string, requests []JobRequest) []ci.Job {
	out := make([]ci.Job, 0, len(requests))
	for _, r := range requests {
		j := ci.Job{ID: r.RequestID, Ref: r.JobID, Queued: r.QueueTime, Waiting: r.Waiting()}
		ok, err := Satisfies(caps, r.Demands)
		if err != nil {
			j.Problem = fmt.Sprintf("request %d: %v", r.RequestID, err)
		}
		j.Servable = ok
		if demands := r.Demands; j.Waiting {
			j.Takes = func(offer map[string]string) bool {
				ok, _ := Satisfies(offer, demands)
				return ok
			}
		}
		out = append(out, j)
	}
	return out
}

// Agents adapts agents to the ci model for a pool whose agents offer caps:
// an agent offers its system and user capabilities.
func Agents(caps map[string]string, agents []Agent) []ci.Agent {
	out := make([]ci.Agent, 0, len(agents))
	for _, a := range agents {
		offer := maps.Clone(a.SystemCapabilities)
		if offer == nil {
			offer = map[string]string{}
		}
		maps.Copy(offer, a.UserCapabilities)
		c := ci.Agent{ID: int64(a.ID), Name: a.Name, Online: a.Online(), Enabled: a.Enabled, Caps: offer}
		if a.StatusChangedOn != nil {
			c.StatusChanged = *a.StatusChangedOn
		}
		if r := a.AssignedRequest; r != nil {
			h := &ci.Held{ID: r.RequestID, Queued: r.QueueTime}
			if r.AssignTime != nil {
				h.Assigned = *r.AssignTime
			}
			if r.ReceiveTime == nil && r.Result == nil {
				h.Unsure, _ = Satisfies(caps, r.Demands)
			}
			c.Job = h
		}
		out = append(out, c)
	}
	return out
}
