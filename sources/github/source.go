package github

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/hookhttp"
)

// Naming is GitHub's: runners are named for jobs, <pool>-j<job id>.
var Naming = ci.Naming{Job: "j"}

// EnvJITConfig is the variable the runner image reads its just-in-time
// configuration from (as ARC passes it); a secret, so on Docker with secret
// files it is EnvJITConfig+"_FILE".
const EnvJITConfig = "ACTIONS_RUNNER_INPUT_JITCONFIG"

// Source is one pool of GitHub runners as the scaler sees it.
type Source struct {
	API    API
	State  *Jobs
	Pool   string
	Labels []string // Offered: what the pool's runners carry
	// Grace is how long a runner of ours stays out of Agents while it is
	// offline: from its registration to its container's create is one
	// create call, bounded by the scaler's call timeout, and a runner
	// another reconciler registered a moment ago must not look like a
	// leftover to unregister (its container would start with the
	// configuration of a removed runner). 0 shows them at once.
	Grace time.Duration
	Now   func() time.Time
	own   func(string) bool

	mu      sync.Mutex
	offline map[string]time.Time // our offline runners, when first seen so
}

// NewSource returns the pool whose runners carry labels (and those GitHub
// implies), and registers it with jobs.
func NewSource(api API, jobs *Jobs, pool string, labels []string) *Source {
	jobs.AddPool(pool, labels)
	return &Source{API: api, State: jobs, Pool: pool, Labels: Offered(labels), own: Naming.Own(pool)}
}

// Agents lists the pool's runners: ours, and anyone else's that offers all
// the pool's labels (it may take the pool's jobs). A runner of ours that is
// offline shows only once it has been seen so for Grace. A busy runner holds the
// job a hook or a check said it took; one whose job is unknown holds job -1.
func (p *Source) Agents(ctx context.Context) ([]ci.Agent, error) {
	runners, err := p.API.Runners(ctx)
	if err != nil {
		return nil, err
	}
	now := hookhttp.Now(p.Now)
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := make(map[string]time.Time, len(p.offline))
	var out []ci.Agent
	for _, r := range runners {
		if !p.own(r.Name) && !Takes(r.Labels, p.Labels) {
			continue
		}
		if p.own(r.Name) && !r.Online && !r.Busy {
			first, ok := p.offline[r.Name]
			if !ok {
				first = now
			}
			seen[r.Name] = first
			if now.Sub(first) < p.Grace {
				continue
			}
		}
		caps := make(map[string]string, len(r.Labels))
		for _, l := range r.Labels {
			caps[strings.ToLower(l)] = ""
		}
		a := ci.Agent{ID: r.ID, Name: r.Name, Online: r.Online, Enabled: true, Caps: caps}
		if r.Busy {
			id, ok := p.State.Holds(r.Name)
			if !ok {
				id = -1
			}
			a.Job = &ci.Held{ID: id}
		}
		out = append(out, a)
	}
	p.offline = seen
	return out, nil
}

// Jobs lists the pool's queued jobs, each checked still queued.
func (p *Source) Jobs(ctx context.Context) ([]ci.Job, error) { return p.State.For(ctx, p.Pool) }

// Free is -1: GitHub sets no limit on self-hosted runners' jobs.
func (p *Source) Free(context.Context) (int, error) { return -1, nil }

// Unregister removes a runner's registration.
func (p *Source) Unregister(ctx context.Context, id int64) error { return p.API.RemoveRunner(ctx, id) }

// RegisterPlaceholder does nothing: GitHub keeps a job queued while no
// runner matches its labels (the pool's policy asks for no placeholder).
func (p *Source) RegisterPlaceholder(context.Context, string) error { return nil }

// JITConfig registers the single-use runner name, offering the pool's
// labels, and returns its just-in-time configuration.
func (p *Source) JITConfig(ctx context.Context, name string) (string, error) {
	return p.API.JITConfig(ctx, name, p.Labels)
}

// Retire removes the registration of the runner named name, before its
// instance is deleted: GitHub then hands it no job, and a container that
// is gone leaves no runner that looks online. A runner that runs a job is
// left alone: Retire returns an error wrapping ErrBusy (classified "busy",
// not retryable), seen in the listing or as GitHub's refusal to remove it,
// whichever comes first, so a job taken between the pass's look and the
// removal keeps its runner. A runner already gone is fine.
func (p *Source) Retire(ctx context.Context, name string) error {
	runners, err := p.API.Runners(ctx)
	if err != nil {
		return err
	}
	for _, r := range runners {
		if r.Name != name {
			continue
		}
		if r.Busy {
			return &APIError{Op: opRemoveRunner, Status: http.StatusUnprocessableEntity, Err: ErrBusy}
		}
		return p.API.RemoveRunner(ctx, r.ID)
	}
	return nil
}
