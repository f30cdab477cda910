// Package bitbucket is Bitbucket Pipelines' self-hosted runners as an
// agentscaler source. Bitbucket sends no event when a step waits for a
// runner, so a pool is scaled from its runners' state alone: the plan keeps
// min_idle runners idle, and a runner that takes a step leaves the idle
// count, so the next pass starts its replacement.
//
// The runner endpoints the client calls (api.bitbucket.org/internal/...)
// are the ones Atlassian's own runners-autoscaler uses. They are not a
// documented public API: Atlassian may change them, so every call goes
// through the one small Client of this package.
package bitbucket

import (
	"hash/fnv"
	"time"

	"github.com/agentscaler/agentscaler/ci"
)

// Runner statuses (Runner.State.Status).
const (
	StatusOnline       = "ONLINE"
	StatusOffline      = "OFFLINE"
	StatusUnregistered = "UNREGISTERED"
	StatusDisabled     = "DISABLED"
	StatusEnabled      = "ENABLED"
)

// MaxRunners is how many runners Bitbucket accepts in one workspace.
const MaxRunners = 100

// Runner is a runner as the runners endpoints return it.
type Runner struct {
	UUID      string       `json:"uuid"`
	Name      string       `json:"name"`
	Labels    []string     `json:"labels"`
	State     RunnerState  `json:"state"`
	CreatedOn time.Time    `json:"created_on"`
	UpdatedOn time.Time    `json:"updated_on"`
	OAuth     *OAuthClient `json:"oauth_client,omitempty"` // only in the answer to a create
}

// RunnerState is where a runner is: its status, and the step it runs.
type RunnerState struct {
	Status    string    `json:"status"`
	UpdatedOn time.Time `json:"updated_on"`
	Cordoned  bool      `json:"cordoned,omitempty"`
	Step      *Step     `json:"step,omitempty"`
}

// Step is the step a busy runner runs.
type Step struct {
	UUID string `json:"uuid"`
}

// OAuthClient is the runner's own credential, returned once, by the create
// call: the runner container needs it, and nothing else may see the secret.
type OAuthClient struct {
	ID            string `json:"id"`
	Secret        string `json:"secret"`
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	Audience      string `json:"audience,omitempty"`
}

// page is one page of a paged list.
type page[T any] struct {
	Values  []T    `json:"values"`
	Pagelen int    `json:"pagelen"`
	Size    int    `json:"size,omitempty"`
	Page    int    `json:"page,omitempty"`
	Next    string `json:"next,omitempty"`
}

// Naming is Bitbucket's instance naming: warm runners only, <pool>-w<n>
// (no runner is made for a step, since no step is ever seen waiting). The
// letter s is kept for step-named runners.
var Naming = ci.Naming{Job: "s"}

// id maps a Bitbucket UUID to the int64 id the ci model carries: a stable
// positive hash, so every pass gives a runner and a step the same id.
func id(uuid string) int64 {
	h := fnv.New64a()
	h.Write([]byte(uuid))
	return int64(h.Sum64() >> 1)
}
