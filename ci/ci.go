// Package ci is a CI system as the scaler sees it, whichever system it is:
// the jobs of a pool and the agents (runners) registered to run them. Each
// source (sources/azuredevops today) adapts its API to these types, so the
// plan, the loop, the providers and the metrics serve every CI system
// without knowing which one it is.
package ci

import (
	"regexp"
	"strconv"
	"time"
)

// The CI systems, as a pool's source setting and events name them.
const (
	AzureDevOps = "azuredevops"
	Bitbucket   = "bitbucket"
	GitHub      = "github"
)

// Job is an unfinished job of the pool.
type Job struct {
	ID int64 // the source's id for the job; it names the agent made for it
	// Ref is the id the source's events name the job by (Azure DevOps: the
	// job's GUID), empty when events do not name jobs.
	Ref    string
	Queued time.Time
	// Waiting: nobody has taken the job yet. A job an agent holds, or that
	// has a result, is listed too, as unfinished, with Waiting false.
	Waiting bool
	// Servable: this pool's agents meet the job's demands (or labels).
	Servable bool
	// Problem says why the job's demands could not be read, when they
	// could not; the job is then not servable.
	Problem string
	// Takes reports whether the CI system would hand the job to an agent
	// offering caps (an agent of another kind in the same pool); nil means
	// to none.
	Takes func(caps map[string]string) bool
}

// Agent is an agent (runner) registered in the pool.
type Agent struct {
	ID      int64 // the source's id, to unregister it
	Name    string
	Online  bool
	Enabled bool
	// Caps is what the agent offers: capabilities or labels.
	Caps map[string]string
	// StatusChanged is when the agent last went online or offline; zero
	// when the source does not say.
	StatusChanged time.Time
	// Job is the job the agent holds, nil for none.
	Job *Held
}

// Held is a job an agent holds.
type Held struct {
	ID       int64
	Queued   time.Time // zero when unknown
	Assigned time.Time // zero when unknown
	// Unsure: the agent has not received the job yet and this pool's
	// agents could serve it, so it may yet come back to the queue.
	Unsure bool
}

// Naming is a source's scheme for instance (and agent) names: an agent made
// for a job is <pool>-<Job><job id>, a warm agent <pool>-w<slot>. Names are
// deterministic, so every reconciler planning from one observation picks the
// same ones and their creates converge.
type Naming struct {
	Job string // one lowercase letter other than w
}

// Requests is Azure DevOps' naming, <pool>-r<request id>: deployments that
// are running keep their names.
var Requests = Naming{Job: "r"}

// JobName is the name of the agent made for a job.
func (n Naming) JobName(pool string, job int64) string {
	return pool + "-" + n.Job + strconv.FormatInt(job, 10)
}

// SlotName is the name of a warm agent.
func (n Naming) SlotName(pool string, slot int) string {
	return pool + "-w" + strconv.Itoa(slot)
}

// Own returns a matcher for exactly the names this scheme gives the pool's
// agents; anything else in the pool is someone else's.
func (n Naming) Own(pool string) func(string) bool {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(pool) + `-[` + regexp.QuoteMeta(n.Job) + `w][0-9]+$`)
	return re.MatchString
}

// Event is what a source's hook tells the scaler about a job: which CI
// system it comes from (only that system's pools are concerned), the ref
// the system names the job by, when known, and the pools that can serve
// it, when the source knows (empty: every pool of the system).
type Event struct {
	System string
	Ref    string
	Pools  []string
}
