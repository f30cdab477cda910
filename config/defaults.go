package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// The defaults, all in one place. DefaultAgentVersion is the last release
// of the Azure Pipelines agent 4.x line (.NET 8); pools whose image carries
// another version say so with agent_version.
const (
	DefaultProvider       = "docker"
	DefaultMaxAgents      = 10
	DefaultMinIdle        = 0
	DefaultStartupTimeout = 5 * time.Minute
	DefaultMaxLifetime    = 6 * time.Hour
	DefaultFailureBackoff = 5 * time.Minute
	DefaultAgentWork      = "_work"
	DefaultAgentVersion   = "4.275.0"

	// The job request list's paging, as the Azure DevOps client's own.
	DefaultMaxPages = azuredevops.DefaultJobRequestsMaxPages
	DefaultPageSize = azuredevops.DefaultJobRequestsPageSize

	DefaultReconcileInterval    = time.Minute
	DefaultReconcileParallelism = 8
	DefaultCallTimeout          = 30 * time.Second

	DefaultPushJob      = "agentscaler" // the job label of pushed metrics, as metrics.PushJob
	DefaultPushInterval = time.Second   // as metrics.DefaultPushGather

	DefaultDockerNetwork       = "host"
	DefaultDockerPull          = "missing"
	DefaultACIOSType           = "Linux"
	DefaultKubernetesNamespace = "default"
)

// applyDefaults fills every key that was not written. set reports whether
// a key (as a user writes it, "pools[0].max_agents") was given, so that an
// explicit 0 reaches validation instead of turning into the default.
func applyDefaults(c *Config, set func(key string) bool) {
	// Consumers append /_apis/... to the URL.
	c.AzureDevOps.URL = strings.TrimRight(strings.TrimSpace(c.AzureDevOps.URL), "/")

	if !set("azuredevops.max_pages") {
		c.AzureDevOps.MaxPages = DefaultMaxPages
	}
	if !set("azuredevops.page_size") {
		c.AzureDevOps.PageSize = DefaultPageSize
	}
	c.Bitbucket.defaults()
	if !set("reconcile.interval") {
		c.Reconcile.Interval = DefaultReconcileInterval
	}
	if !set("reconcile.parallelism") {
		c.Reconcile.Parallelism = DefaultReconcileParallelism
	}
	if !set("reconcile.call_timeout") {
		c.Reconcile.CallTimeout = DefaultCallTimeout
	}

	if p := c.Metrics.Push; p != nil {
		if p.Job == "" {
			p.Job = DefaultPushJob
		}
		if !set("metrics.push.interval") {
			p.Interval = DefaultPushInterval
		}
	}

	for i := range c.Pools {
		p := &c.Pools[i]
		key := func(k string) string { return fmt.Sprintf("pools[%d].%s", i, k) }
		if p.Provider == "" {
			p.Provider = DefaultProvider
		}
		if !set(key("max_agents")) {
			p.MaxAgents = DefaultMaxAgents
		}
		if !set(key("min_idle")) {
			p.MinIdle = DefaultMinIdle
		}
		for j := range p.Schedules {
			if !set(key(fmt.Sprintf("schedules[%d].min_idle", j))) {
				p.Schedules[j].MinIdle = unsetMinIdle
			}
		}
		if !set(key("startup_timeout")) {
			p.StartupTimeout = DefaultStartupTimeout
		}
		if !set(key("max_lifetime")) {
			p.MaxLifetime = DefaultMaxLifetime
		}
		if !set(key("failure_backoff")) {
			p.FailureBackoff = DefaultFailureBackoff
		}
		if p.AgentVersion == "" {
			p.AgentVersion = DefaultAgentVersion
		}
		if p.Agent.Work == "" {
			p.Agent.Work = DefaultAgentWork
		}

		if b := p.Bitbucket; b != nil && !set(key("bitbucket.interval")) {
			b.Interval = DefaultBitbucketInterval
		}

		// The section of the pool's own provider always exists afterwards,
		// so its consumer never checks for nil.
		if p.Docker == nil && p.Provider == "docker" {
			p.Docker = &Docker{}
		}
		if p.Docker != nil {
			p.Docker.defaults()
		}
		if p.ACI == nil && p.Provider == "aci" {
			p.ACI = &ACI{}
		}
		if p.ACI != nil {
			p.ACI.defaults()
		}
		if p.Kubernetes == nil && p.Provider == "kubernetes" {
			p.Kubernetes = &Kubernetes{}
		}
		if p.Kubernetes != nil {
			p.Kubernetes.defaults()
		}
	}
}
