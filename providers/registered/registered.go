// Package registered makes a runner's registration in its CI system part of
// its instance, for systems that register runners one by one (Bitbucket
// runners, GitHub just-in-time runners): a create registers the runner
// first and passes its identity to the container; a delete removes the
// registration first, and leaves the instance of a runner that took work
// running. It wraps any provider, so every provider serves those systems.
package registered

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/agentscaler/agentscaler/providers"
)

// Registration is a runner registered for an instance about to be created:
// what its container gets (Env, and Secrets through the provider's secret
// mechanism only), and how to undo it when the instance cannot be created.
type Registration struct {
	Env, Secrets map[string]string
	Forget       func(context.Context) error
}

// ErrElsewhere is Register's answer when another reconciler has registered
// the runner and creates its instance: the create counts as done, with
// Existed set, and the plan converges on that one instance by name.
var ErrElsewhere = errors.New("the runner is registered by another reconciler")

// Runners is how a CI system registers and retires the runner of an
// instance.
type Runners struct {
	Register func(ctx context.Context, name string) (Registration, error)
	// Retire removes the runner of an instance about to be deleted; an
	// error wrapping Busy means the runner took work, and its instance
	// stays.
	Retire func(ctx context.Context, name string) error
	Busy   error
	Work   string // what a runner takes, for the log: "a step", "a job"
}

// Wrap returns p with each instance's runner registered at create and
// retired at delete.
func Wrap(p providers.Provider, r Runners, log *slog.Logger) providers.Provider {
	return &provider{Provider: p, r: r, log: log}
}

type provider struct {
	providers.Provider
	r   Runners
	log *slog.Logger
}

func (p *provider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	reg, err := p.r.Register(ctx, spec.Name)
	if errors.Is(err, ErrElsewhere) {
		p.log.Info("runner registered by another reconciler; its instance is theirs", "name", spec.Name)
		return providers.Instance{Name: spec.Name, Pool: spec.Pool, Request: spec.Request, Slot: spec.Slot, State: providers.StatePending, Existed: true}, nil
	}
	if err != nil {
		return providers.Instance{}, fmt.Errorf("register runner %s: %w", spec.Name, err)
	}
	spec.Env, spec.Secrets = merged(spec.Env, reg.Env), merged(spec.Secrets, reg.Secrets)
	in, err := p.Provider.Create(ctx, spec)
	if (err != nil || in.Existed) && reg.Forget != nil {
		// No container holds the runner's credential (none was made, or
		// the instance there already has its own runner): remove the
		// runner, or a later pass removes it as a leftover.
		if ferr := reg.Forget(context.WithoutCancel(ctx)); ferr != nil {
			p.log.Warn("removing an unused runner failed; a later pass removes it", "name", spec.Name, "error", ferr)
		}
	}
	return in, err
}

func (p *provider) Delete(ctx context.Context, name string) error {
	if err := p.r.Retire(ctx, name); err != nil {
		if errors.Is(err, p.r.Busy) {
			p.log.Info("runner took "+p.r.Work+"; its instance stays", "name", name)
		}
		return fmt.Errorf("retire runner %s: %w", name, err)
	}
	return p.Provider.Delete(ctx, name)
}

// merged returns a copy of base with add's entries.
func merged(base, add map[string]string) map[string]string {
	if len(add) == 0 {
		return base
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	return out
}
