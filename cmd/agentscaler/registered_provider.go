package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/agentscaler/agentscaler/providers"
)

// registration is a runner registered in its CI system for an instance
// about to be created: what the container gets (env, and secrets through
// the provider's secret mechanism only), and how to undo it when the
// instance cannot be created.
type registration struct {
	env, secrets map[string]string
	forget       func(context.Context) error
}

// errCreatedElsewhere is register's answer when another reconciler has
// registered the runner and creates its instance: the create counts as
// done, and the plan converges on that one instance by name.
var errCreatedElsewhere = errors.New("the runner is registered by another reconciler")

// registeredProvider makes a runner's registration in its CI system part of
// its instance (Bitbucket runners, GitHub JIT runners): a create registers
// the runner first and passes its identity to the container; a delete
// removes the registration first, and leaves the instance of a runner that
// took work (retire's error wraps busy) running.
type registeredProvider struct {
	providers.Provider
	log      *slog.Logger
	register func(ctx context.Context, name string) (registration, error)
	retire   func(ctx context.Context, name string) error
	busy     error  // the retire error of a runner that took work
	work     string // what it took, for the log: "a step", "a job"
}

func (p *registeredProvider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	r, err := p.register(ctx, spec.Name)
	if errors.Is(err, errCreatedElsewhere) {
		p.log.Info("runner registered by another reconciler; its instance is theirs", "name", spec.Name)
		return providers.Instance{Name: spec.Name, Pool: spec.Pool, Request: spec.Request, Slot: spec.Slot, State: providers.StatePending, Existed: true}, nil
	}
	if err != nil {
		return providers.Instance{}, fmt.Errorf("register runner %s: %w", spec.Name, err)
	}
	spec.Env, spec.Secrets = merged(spec.Env, r.env), merged(spec.Secrets, r.secrets)
	in, err := p.Provider.Create(ctx, spec)
	if err != nil && r.forget != nil {
		// No container may hold the runner's credential: remove the
		// runner, or a later pass removes it as a leftover.
		if ferr := r.forget(context.WithoutCancel(ctx)); ferr != nil {
			p.log.Warn("removing the runner of a failed create failed; a later pass removes it", "name", spec.Name, "error", ferr)
		}
	}
	return in, err
}

func (p *registeredProvider) Delete(ctx context.Context, name string) error {
	if err := p.retire(ctx, name); err != nil {
		if errors.Is(err, p.busy) {
			p.log.Info("runner took "+p.work+"; its instance stays", "name", name)
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
