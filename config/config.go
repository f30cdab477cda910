// Package config loads the autoscaler's configuration from one YAML file, or
// from environment variables alone for a single pool, and validates it,
// listing every problem by its key. Secrets are never read from the file:
// the file names the environment variables that hold them.
//
// Keys left out take the defaults of defaults.go; a key written as 0 is
// validated, never replaced by its default. Agent.env may not carry tokens,
// secrets or passwords. Durations are written with a unit (90s, 5m, 6h).
package config

import (
	"time"

	"github.com/agentscaler/agentscaler/ci"
)

// Config is the whole configuration.
type Config struct {
	AzureDevOps AzureDevOps `yaml:"azuredevops"`
	Bitbucket   Bitbucket   `yaml:"bitbucket"`
	Webhook     Webhook     `yaml:"webhook"`
	Reconcile   Reconcile   `yaml:"reconcile"`
	Pools       []Pool      `yaml:"pools"`
	Metrics     Metrics     `yaml:"metrics"`
	GitHub      *GitHub     `yaml:"github"`
}

// AzureDevOps says which organization to talk to and how to authenticate.
type AzureDevOps struct {
	URL      string `yaml:"url"`       // https://dev.azure.com/contoso
	TokenEnv string `yaml:"token_env"` // name of the variable holding a PAT
	// Entra is an Entra ID identity instead of TokenEnv; agents then
	// receive a short-lived token minted per create.
	Entra *AzureIdentity `yaml:"entra"`
	// RespectParallelJobs caps creates by the organization's free self-hosted parallel jobs.
	RespectParallelJobs bool `yaml:"respect_parallel_jobs"`
	// MaxPages bounds the pages of the paged job request list read for one
	// pool in one reconcile, once the unfinished-only list is full (200).
	MaxPages int `yaml:"max_pages"`
	// PageSize is the number of job requests asked per page ($top).
	PageSize int `yaml:"page_size"`
}

// Webhook says how service hooks authenticate: basic auth or a shared header.
type Webhook struct {
	BasicAuth *BasicAuth `yaml:"basic_auth"`
	Header    *Header    `yaml:"header"`
}

// BasicAuth is the user name and the variable holding the password.
type BasicAuth struct {
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
}

// Header is a shared-secret header name and the variable holding its value.
type Header struct {
	Name     string `yaml:"name"`
	ValueEnv string `yaml:"value_env"`
}

// Reconcile tunes the loop.
type Reconcile struct {
	Interval    time.Duration `yaml:"interval"`     // timer period when not under the Functions host (1m)
	Parallelism int           `yaml:"parallelism"`  // concurrent provider calls per pool (8)
	CallTimeout time.Duration `yaml:"call_timeout"` // per provider or Azure DevOps call (30s)
}

// System is the pool's CI system: its source, azuredevops when none is set.
func (p Pool) System() string {
	if p.Source == "" {
		return ci.AzureDevOps
	}
	return p.Source
}

// Pool is one autoscaled agent pool.
type Pool struct {
	Name      string `yaml:"name"`       // our key and the agent name prefix
	AzurePool string `yaml:"azure_pool"` // the Azure DevOps agent pool
	Provider  string `yaml:"provider"`   // docker | aci | kubernetes | memory
	// Source is the CI system whose jobs the pool serves: azuredevops
	// (the default; see System), bitbucket or github.
	Source    string `yaml:"source"`
	MaxAgents int    `yaml:"max_agents"`
	MinIdle   int    `yaml:"min_idle"`
	// Schedules change min_idle by time of day: from each time an entry's
	// cron expression fires, in Timezone (an IANA name, UTC when empty),
	// the pool keeps the entry's min_idle; MinIdle applies when no entry
	// fired in the past week. See package standby.
	Schedules      []Schedule        `yaml:"schedules"`
	Timezone       string            `yaml:"timezone"`
	StartupTimeout time.Duration     `yaml:"startup_timeout"`
	MaxLifetime    time.Duration     `yaml:"max_lifetime"`
	FailureBackoff time.Duration     `yaml:"failure_backoff"`
	Capabilities   map[string]string `yaml:"capabilities"`
	// Labels are the runner labels a github pool's runners carry, next to
	// self-hosted and the OS and architecture ones GitHub implies.
	Labels []string `yaml:"labels"`
	// AgentVersion is the Azure Pipelines agent version the image carries;
	// it satisfies Agent.Version demands.
	AgentVersion string `yaml:"agent_version"`
	Agent        Agent  `yaml:"agent"`
	// Bitbucket is a bitbucket pool's runners.
	Bitbucket *BitbucketPool `yaml:"bitbucket"`

	Docker     *Docker     `yaml:"docker"`
	ACI        *ACI        `yaml:"aci"`
	Kubernetes *Kubernetes `yaml:"kubernetes"`
}

// Schedule is one standby schedule entry: from each time Cron fires, keep
// MinIdle warm agents.
type Schedule struct {
	Cron    string `yaml:"cron"`
	MinIdle int    `yaml:"min_idle"`
}

// Agent describes the container that runs one agent.
type Agent struct {
	Image  string            `yaml:"image"`
	CPU    float64           `yaml:"cpu"`
	Memory string            `yaml:"memory"` // Kubernetes-style quantity: 512Mi, 2Gi
	Env    map[string]string `yaml:"env"`
	Work   string            `yaml:"work"` // AZP_WORK, default _work
}
