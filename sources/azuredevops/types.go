// Package azuredevops is the Azure DevOps side of the autoscaler: it
// authenticates and parses service hooks, reads pools, job requests and agents
// over the REST API, and matches job demands against agent capabilities the
// way Azure DevOps does. It knows nothing of providers.
package azuredevops

import "time"

// JobRequest is a TaskAgentJobRequest as returned by
// GET {org}/_apis/distributedtask/pools/{poolId}/jobrequests.
// Only the fields the autoscaler reads are declared.
type JobRequest struct {
	RequestID     int64             `json:"requestId"`
	QueueTime     time.Time         `json:"queueTime"`
	AssignTime    *time.Time        `json:"assignTime,omitempty"`
	ReceiveTime   *time.Time        `json:"receiveTime,omitempty"`
	FinishTime    *time.Time        `json:"finishTime,omitempty"`
	Result        *string           `json:"result,omitempty"`
	ServiceOwner  string            `json:"serviceOwner,omitempty"`
	HostID        string            `json:"hostId,omitempty"`
	ScopeID       string            `json:"scopeId,omitempty"`
	PlanType      string            `json:"planType,omitempty"`
	PlanID        string            `json:"planId,omitempty"`
	JobID         string            `json:"jobId,omitempty"`
	Demands       []string          `json:"demands,omitempty"`
	ReservedAgent *AgentReference   `json:"reservedAgent,omitempty"`
	Definition    *Reference        `json:"definition,omitempty"`
	Owner         *Reference        `json:"owner,omitempty"`
	Data          map[string]string `json:"data,omitempty"`
	PoolID        int               `json:"poolId,omitempty"`
	// MatchesAllAgentsInPool is true when the job has no demands beyond what
	// every agent in the pool offers.
	MatchesAllAgentsInPool bool `json:"matchesAllAgentsInPool,omitempty"`
}

// Waiting reports whether nobody has taken the request yet: no result, no
// receive or assign time, no reserved agent.
func (r JobRequest) Waiting() bool {
	return r.Result == nil && r.ReceiveTime == nil && r.AssignTime == nil && r.ReservedAgent == nil
}

// Reference is the {id, name} pair Azure DevOps uses for definitions and owners.
type Reference struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// AgentReference is a TaskAgentReference.
type AgentReference struct {
	ID      int    `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Status  string `json:"status,omitempty"` // online | offline
	Enabled bool   `json:"enabled"`
}

// Agent is a TaskAgent as returned by .../pools/{poolId}/agents?includeAssignedRequest=true
// (capabilities only when includeCapabilities=true).
type Agent struct {
	ID                 int               `json:"id"`
	Name               string            `json:"name"`
	Version            string            `json:"version,omitempty"`
	OSDescription      string            `json:"osDescription,omitempty"`
	Enabled            bool              `json:"enabled"`
	Status             string            `json:"status,omitempty"` // online | offline
	ProvisioningState  string            `json:"provisioningState,omitempty"`
	CreatedOn          time.Time         `json:"createdOn,omitzero"`
	StatusChangedOn    *time.Time        `json:"statusChangedOn,omitempty"`
	MaxParallelism     int               `json:"maxParallelism,omitempty"`
	AssignedRequest    *JobRequest       `json:"assignedRequest,omitempty"`
	SystemCapabilities map[string]string `json:"systemCapabilities,omitempty"`
	UserCapabilities   map[string]string `json:"userCapabilities,omitempty"`
	Authorization      *Authorization    `json:"authorization,omitempty"`
}

// Online reports whether the agent is connected to Azure DevOps.
func (a Agent) Online() bool { return a.Status == "online" }

// Authorization carries the public key an agent registers with.
type Authorization struct {
	PublicKey *PublicKey `json:"publicKey,omitempty"`
}

// PublicKey is an RSA public key as base64 exponent and modulus.
type PublicKey struct {
	Exponent string `json:"exponent"`
	Modulus  string `json:"modulus"`
}

// Pool is a TaskAgentPool.
type Pool struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	IsHosted bool   `json:"isHosted"`
	PoolType string `json:"poolType,omitempty"`
	Size     int    `json:"size,omitempty"`
}

// ResourceUsage is the answer of GET {org}/_apis/distributedtask/resourceusage
// for self-hosted (private) parallel jobs.
type ResourceUsage struct {
	ResourceLimit struct {
		ParallelismTag string `json:"parallelismTag"`
		IsHosted       bool   `json:"isHosted"`
		TotalCount     int    `json:"totalCount"`
		TotalMinutes   int    `json:"totalMinutes"`
	} `json:"resourceLimit"`
	UsedCount   int `json:"usedCount"`
	UsedMinutes int `json:"usedMinutes"`
}

// Free is the number of parallel jobs not in use; never negative.
func (u ResourceUsage) Free() int {
	if f := u.ResourceLimit.TotalCount - u.UsedCount; f > 0 {
		return f
	}
	return 0
}

// list is the envelope Azure DevOps wraps collections in.
type list[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}
