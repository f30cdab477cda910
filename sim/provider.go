package sim

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
)

// recorder is the memory provider as the scaler sees it, recording the
// creates and deletes of a reconcile so the simulation can bring each new
// agent online when its start latency has passed on the virtual clock,
// and take a deleted one offline. Start latencies are drawn from the
// instance name and how many times that name was created, not from a shared
// random stream, because the scaler creates in parallel and in no fixed
// order: the same seed must give the same run.
type recorder struct {
	inner   *memory.Provider
	latency Latency
	seed    uint64

	mu      sync.Mutex
	gens    map[string]int // creates so far, by name
	next    time.Duration  // the latency of the create in progress
	created []created
	deleted []string
}

// created is one instance the scaler started.
type created struct {
	name    string
	gen     int
	request int64
	at      time.Time
	latency time.Duration
}

var _ providers.Provider = (*recorder)(nil)

func newRecorder(now func() time.Time, latency Latency, seed int64) *recorder {
	r := &recorder{latency: latency, seed: uint64(seed), gens: map[string]int{}}
	// Called by inner.Create, which runs under r.mu.
	r.inner = memory.New(memory.Options{Now: now, StartLatency: func(providers.AgentSpec) time.Duration { return r.next }})
	return r
}

func (r *recorder) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, exists := r.inner.Get(spec.Name); exists {
		return r.inner.Create(ctx, spec) // idempotent: returns the existing one
	}
	gen := r.gens[spec.Name] + 1
	r.next = r.latency.at(unit(r.seed, spec.Name, gen))
	in, err := r.inner.Create(ctx, spec)
	if err != nil {
		return in, err
	}
	r.gens[spec.Name] = gen
	r.created = append(r.created, created{name: spec.Name, gen: gen, request: spec.Request, at: in.Created, latency: r.next})
	return in, nil
}

func (r *recorder) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	return r.inner.List(ctx, pool)
}

func (r *recorder) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, existed := r.inner.Get(name)
	if err := r.inner.Delete(ctx, name); err != nil {
		return err
	}
	if existed {
		r.deleted = append(r.deleted, name)
	}
	return nil
}

// drain returns what was created and deleted since the last drain.
func (r *recorder) drain() (c []created, d []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, d = r.created, r.deleted
	r.created, r.deleted = nil, nil
	return c, d
}

// unit maps (seed, name, gen) to a number uniform in [0, 1).
func unit(seed uint64, name string, gen int) float64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	x := h.Sum64() ^ seed ^ uint64(gen)*0x9e3779b97f4a7c15
	// splitmix64 finalizer: spreads nearby inputs over the whole range.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
