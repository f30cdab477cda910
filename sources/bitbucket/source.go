package bitbucket

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/hookhttp"
)

// DefaultLabels are the labels every self-hosted Linux Docker runner carries.
var DefaultLabels = []string{"self.hosted", "linux"}

// Labels returns a pool's runner labels: DefaultLabels and its own, sorted,
// each once.
func Labels(own []string) []string {
	out := append(slices.Clone(DefaultLabels), own...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Source is one pool's runners as a scaler Source. Bitbucket names no
// waiting step, so Jobs is empty: a busy runner holds its step (ci.Agent.Job)
// and leaves the idle count, and the plan's min_idle replaces it.
type Source struct {
	c      *Client
	pool   string
	loc    Location
	labels []string
	own    func(string) bool
	// Grace is how long a just-registered runner of ours that is not online
	// yet is left alone: from its registration to its container's create
	// is one create call, bounded by the scaler's call timeout, and a
	// runner another reconciler registered a moment ago must neither look
	// like a leftover to delete nor be replaced by a second registration
	// (its container would start with the credentials of a deleted
	// runner). 0 leaves none alone.
	Grace time.Duration
	Now   func() time.Time // time.Now when nil

	mu    sync.Mutex
	uuids map[int64]string // the runners the last Agents listed, by agent id
}

// NewSource returns the source of the pool named pool, whose runners live
// at loc and carry labels (see Labels).
func NewSource(c *Client, pool string, loc Location, labels []string) *Source {
	return &Source{c: c, pool: pool, loc: loc, labels: Labels(labels), own: Naming.Own(pool), uuids: map[int64]string{}}
}

// RunnerLabels are the labels the pool's runners are created with.
func (s *Source) RunnerLabels() []string { return slices.Clone(s.labels) }

// Location is where the pool's runners live.
func (s *Source) Location() Location { return s.loc }

// Agents lists the pool's runners: those named like its instances. A runner
// is online when Bitbucket says ONLINE, enabled unless DISABLED, and holds
// the step its state names.
func (s *Source) Agents(ctx context.Context) ([]ci.Agent, error) {
	runners, err := s.c.Runners(ctx, s.loc)
	if err != nil {
		return nil, err
	}
	var out []ci.Agent
	uuids := map[int64]string{}
	for _, r := range runners {
		if !s.own(r.Name) || s.settling(r) {
			continue
		}
		a := Agent(r)
		uuids[a.ID] = r.UUID
		out = append(out, a)
	}
	s.mu.Lock()
	s.uuids = uuids
	s.mu.Unlock()
	return out, nil
}

// Agent is a runner in the ci model.
func Agent(r Runner) ci.Agent {
	caps := map[string]string{}
	for _, l := range r.Labels {
		caps[l] = ""
	}
	a := ci.Agent{
		ID: id(r.UUID), Name: r.Name, Caps: caps, StatusChanged: r.State.UpdatedOn,
		Online:  r.State.Status == StatusOnline,
		Enabled: r.State.Status != StatusDisabled,
	}
	if r.State.Step != nil {
		// The runner has the step: Bitbucket hands a step to a runner that
		// asked for one, so it is never unsure.
		a.Job = &ci.Held{ID: id(r.State.Step.UUID), Assigned: r.State.UpdatedOn}
	}
	return a
}

// Jobs is empty: Bitbucket tells no one that a step waits for a runner.
func (s *Source) Jobs(context.Context) ([]ci.Job, error) { return nil, nil }

// Free is -1: Bitbucket bounds runners per workspace (MaxRunners), not
// steps; a create beyond it fails with Bitbucket's reason.
func (s *Source) Free(context.Context) (int, error) { return -1, nil }

// Unregister deletes a runner the last Agents listed (an offline one of
// ours with no instance).
func (s *Source) Unregister(ctx context.Context, agentID int64) error {
	s.mu.Lock()
	uuid, ok := s.uuids[agentID]
	s.mu.Unlock()
	if !ok {
		return nil // gone since, or never ours
	}
	return s.c.DeleteRunner(ctx, s.loc, uuid)
}

// RegisterPlaceholder is not used: a step with runs-on labels waits for a
// matching runner in Bitbucket, so no placeholder is needed.
func (s *Source) RegisterPlaceholder(context.Context, string) error {
	return errors.New("bitbucket: runners need no placeholder")
}

// ErrRegistered is Register's answer when a runner of that name is online
// or was registered within Grace: another reconciler's create, whose
// instance is theirs.
var ErrRegistered = errors.New("bitbucket: a runner of that name is registered and live")

// settling reports a runner registered within Grace that is not online yet.
func (s *Source) settling(r Runner) bool {
	return r.State.Status != StatusOnline && hookhttp.Now(s.Now).Sub(r.CreatedOn) < s.Grace
}

// Register creates the runner for a new instance named name, after
// deleting a runner left under that name (the plan creates only names no
// instance holds, so such a runner has no process, and its secret is
// lost). A runner of that name that is online or settling is another
// reconciler's: ErrRegistered.
func (s *Source) Register(ctx context.Context, name string) (Runner, error) {
	r, err := s.byName(ctx, name)
	if err != nil {
		return Runner{}, err
	}
	if r != nil && (r.State.Status == StatusOnline || s.settling(*r)) {
		return Runner{}, ErrRegistered
	}
	if r != nil {
		if err := s.c.DeleteRunner(ctx, s.loc, r.UUID); err != nil {
			return Runner{}, fmt.Errorf("delete the leftover runner %s: %w", name, err)
		}
	}
	return s.c.CreateRunner(ctx, s.loc, name, s.labels)
}

// ErrBusy is Retire's answer for a runner that runs a step: its instance
// stays. It is not worth retrying within the pass (the step runs on), so
// it classifies itself as such (providers.Classify) with reason "busy".
var ErrBusy error = busyError{}

type busyError struct{}

func (busyError) Error() string { return "bitbucket: the runner runs a step" }

func (busyError) Classification() (retryable bool, after time.Duration, reason string) {
	return false, 0, "busy"
}

// Retire removes the runner of an instance about to be deleted: disabled
// first, so Bitbucket hands it no step, looked at again, then deleted. An
// online runner that holds a step is left alone (ErrBusy), enabled again
// if this call disabled it.
func (s *Source) Retire(ctx context.Context, name string) error {
	r, err := s.byName(ctx, name)
	if err != nil || r == nil {
		return err
	}
	busy := func(r Runner) bool { return r.State.Step != nil && r.State.Status == StatusOnline }
	if busy(*r) {
		return ErrBusy
	}
	if r.State.Status == StatusOnline {
		if err := s.c.SetRunnerStatus(ctx, s.loc, r.UUID, StatusDisabled); err != nil && !IsNotFound(err) {
			return err
		}
		again, err := s.c.Runner(ctx, s.loc, r.UUID)
		switch {
		case IsNotFound(err):
			return nil
		case err != nil:
			return err
		case again.State.Step != nil:
			// It took a step before it was disabled: let it run.
			if err := s.c.SetRunnerStatus(ctx, s.loc, r.UUID, StatusEnabled); err != nil {
				return fmt.Errorf("%w; enabling it again failed: %w", ErrBusy, err)
			}
			return ErrBusy
		}
	}
	return s.c.DeleteRunner(ctx, s.loc, r.UUID)
}

// Forget deletes the runner named name, whatever its state: the instance
// it was made for could not be created.
func (s *Source) Forget(ctx context.Context, uuid string) error {
	return s.c.DeleteRunner(ctx, s.loc, uuid)
}

func (s *Source) byName(ctx context.Context, name string) (*Runner, error) {
	runners, err := s.c.Runners(ctx, s.loc)
	if err != nil {
		return nil, err
	}
	for _, r := range runners {
		if r.Name == name {
			return &r, nil
		}
	}
	return nil, nil
}
