package providertest

import (
	"context"
	"sync"

	"github.com/agentscaler/agentscaler/providers"
)

// Recorder is a provider that keeps the spec of each create before passing
// it on, for tests of what wraps a provider (what reaches the container, and
// what reaches it only as a secret).
type Recorder struct {
	providers.Provider
	mu    sync.Mutex
	specs map[string]providers.AgentSpec
}

// Record returns p, recording.
func Record(p providers.Provider) *Recorder {
	return &Recorder{Provider: p, specs: map[string]providers.AgentSpec{}}
}

func (r *Recorder) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	r.mu.Lock()
	r.specs[spec.Name] = spec
	r.mu.Unlock()
	return r.Provider.Create(ctx, spec)
}

// Spec returns the spec of the last create of name.
func (r *Recorder) Spec(name string) providers.AgentSpec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[name]
}
