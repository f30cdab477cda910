// Package memory is a provider that records agent instances and starts
// nothing. It exists for `agentscaler simulate` (which drives it on virtual
// time), for `agentscaler demo` without a container engine, and for tests of
// the scaler. Its controls (Exit, Get, All, Stats, FailNext) let a caller play
// the part of the agents and of a misbehaving backend.
package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/providers"
)

// Options tune the provider. The zero value runs on the wall clock and starts
// every instance at once.
type Options struct {
	// Now is the clock; the simulator passes its virtual time. Default time.Now.
	Now func() time.Time
	// StartLatency says how long an instance stays pending before it runs:
	// it is running once Now >= Created+latency. Nil or 0 means at once.
	StartLatency func(spec providers.AgentSpec) time.Duration
}

// Stats counts what the provider did, for assertions on the scaler's calls.
type Stats struct {
	Creates     int // instances created
	CreateNoops int // creates of a name that already existed
	Deletes     int // instances removed (deleting a missing name is not counted)
}

// Operation names accepted by FailNext; the same words as providers.Error.Op.
const (
	OpCreate = "create"
	OpList   = "list"
	OpDelete = "delete"
)

// Provider is the in-memory provider. It is safe for concurrent use.
type Provider struct {
	now     func() time.Time
	latency func(providers.AgentSpec) time.Duration

	mu     sync.Mutex
	items  map[string]*record
	stats  Stats
	faults map[string][]error // queued errors per operation
}

// record is what the provider keeps of an instance. The spec's environment
// and secrets are not kept: nothing runs that would need them.
type record struct {
	in      providers.Instance // Started and State are derived on read
	startAt time.Time          // Created + start latency
	ended   bool
}

var _ providers.Provider = (*Provider)(nil)

// New returns an empty provider.
func New(opts Options) *Provider {
	p := &Provider{
		now:     opts.Now,
		latency: opts.StartLatency,
		items:   map[string]*record{},
		faults:  map[string][]error{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// Create records the instance, or returns the existing one of that name.
func (p *Provider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	if err := ctx.Err(); err != nil {
		return providers.Instance{}, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	if err := providers.ValidateName(spec.Name); err != nil {
		return providers.Instance{}, &providers.Error{Op: OpCreate, Name: spec.Name, Reason: "invalid_name", Err: err}
	}
	if spec.Pool == "" {
		return providers.Instance{}, &providers.Error{Op: OpCreate, Name: spec.Name, Reason: "invalid_pool", Err: errors.New("pool is empty")}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.fault(OpCreate); err != nil {
		return providers.Instance{}, err
	}
	now := p.now()
	if r, ok := p.items[spec.Name]; ok {
		p.stats.CreateNoops++
		in := r.view(now)
		in.Existed = true
		return in, nil
	}
	var latency time.Duration
	if p.latency != nil {
		latency = max(p.latency(spec), 0)
	}
	r := &record{
		in: providers.Instance{
			Name:    spec.Name,
			Pool:    spec.Pool,
			Request: spec.Request,
			Slot:    spec.Slot,
			Created: now,
		},
		startAt: now.Add(latency),
	}
	p.items[spec.Name] = r
	p.stats.Creates++
	return r.view(now), nil
}

// List returns the pool's instances, sorted by name.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", pool, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.fault(OpList); err != nil {
		return nil, err
	}
	return p.snapshot(func(in providers.Instance) bool { return in.Pool == pool }), nil
}

// Delete forgets the instance; a missing name is not an error.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.fault(OpDelete); err != nil {
		return err
	}
	if _, ok := p.items[name]; ok {
		delete(p.items, name)
		p.stats.Deletes++
	}
	return nil
}

// Exit makes the instance's agent end now with the exit code: exited for 0,
// failed otherwise. An instance that had not started yet keeps a zero Started,
// as one that never ran (an image that could not be pulled) would.
func (p *Provider) Exit(name string, code int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.items[name]
	if !ok {
		return fmt.Errorf("exit %s: no such instance", name)
	}
	if r.ended {
		return fmt.Errorf("exit %s: already ended with code %d", name, r.in.ExitCode)
	}
	now := p.now()
	if now.Before(r.startAt) {
		r.startAt = time.Time{} // never started
	}
	r.ended = true
	r.in.ExitCode = code
	r.in.Finished = now
	if code != 0 {
		r.in.Reason = fmt.Sprintf("agent exited with code %d", code)
	}
	return nil
}

// Get returns the instance of that name, in any pool.
func (p *Provider) Get(name string) (providers.Instance, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.items[name]
	if !ok {
		return providers.Instance{}, false
	}
	return r.view(p.now()), true
}

// All returns every instance of every pool, sorted by name.
func (p *Provider) All() []providers.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snapshot(func(providers.Instance) bool { return true })
}

// Stats returns the counts so far.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// FailNext makes the next call of op (OpCreate, OpList or OpDelete) return err
// as it is, without doing anything. Calls queue: two FailNext for one op fail
// its next two calls. A call refused for a canceled context or an invalid name
// does not consume the fault, as it would never have reached a backend.
// An unknown op panics: a misspelt fault would otherwise never fire.
func (p *Provider) FailNext(op string, err error) {
	switch op {
	case OpCreate, OpList, OpDelete:
	default:
		panic(fmt.Sprintf("memory: FailNext: unknown operation %q (want create, list or delete)", op))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[op] = append(p.faults[op], err)
}

// fault pops the next injected error of op. The caller holds mu.
func (p *Provider) fault(op string) error {
	q := p.faults[op]
	if len(q) == 0 {
		return nil
	}
	p.faults[op] = q[1:]
	return q[0]
}

// snapshot returns the instances that keep says, sorted by name. The caller holds mu.
func (p *Provider) snapshot(keep func(providers.Instance) bool) []providers.Instance {
	now := p.now()
	out := []providers.Instance{}
	for _, r := range p.items {
		if in := r.view(now); keep(in) {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b providers.Instance) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// view is the instance as seen at now.
func (r *record) view(now time.Time) providers.Instance {
	in := r.in
	switch {
	case r.ended && in.ExitCode == 0:
		in.State = providers.StateExited
	case r.ended:
		in.State = providers.StateFailed
	case now.Before(r.startAt):
		in.State = providers.StatePending
	default:
		in.State = providers.StateRunning
	}
	if !r.startAt.IsZero() && !now.Before(r.startAt) {
		in.Started = r.startAt
	}
	return in
}
