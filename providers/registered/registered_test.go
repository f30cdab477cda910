package registered_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"testing"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/providers/providertest"
	"github.com/agentscaler/agentscaler/providers/registered"
)

// system records the runners a CI system holds, as Bitbucket and GitHub
// would: registered by name, retired unless busy.
type system struct {
	runners   map[string]bool // name -> busy
	elsewhere map[string]bool // names another reconciler registered
	forgot    []string        // registrations undone
}

var errBusy = errors.New("the runner runs a job")

func (s *system) registered() registered.Runners {
	return registered.Runners{
		Register: func(_ context.Context, name string) (registered.Registration, error) {
			if s.elsewhere[name] {
				return registered.Registration{}, registered.ErrElsewhere
			}
			s.runners[name] = false
			return registered.Registration{
				Env:     map[string]string{"RUNNER_ID": name},
				Secrets: map[string]string{"RUNNER_SECRET": "s3cret-" + name},
				Forget: func(context.Context) error {
					s.forgot = append(s.forgot, name)
					delete(s.runners, name)
					return nil
				},
			}, nil
		},
		Retire: func(_ context.Context, name string) error {
			if s.runners[name] {
				return errBusy
			}
			delete(s.runners, name)
			return nil
		},
		Busy: errBusy, Work: "a job",
	}
}

// TestWrap: a create registers the runner and adds its identity to the
// spec (the secret only as a secret); a failed create removes the runner;
// a name registered elsewhere is an existing instance; a delete retires the
// runner first and keeps a busy runner's instance.
func TestWrap(t *testing.T) {
	ctx := context.Background()
	sys := &system{runners: map[string]bool{}, elsewhere: map[string]bool{"p-j3": true}}
	mem := memory.New(memory.Options{})
	rec := providertest.Record(mem)
	p := registered.Wrap(rec, sys.registered(), slog.New(slog.DiscardHandler))
	spec := func(name string) providers.AgentSpec {
		return providers.AgentSpec{Name: name, Pool: "p", Image: "runner", Env: map[string]string{"K": "v"}}
	}

	in, err := p.Create(ctx, spec("p-j1"))
	if err != nil || in.Existed {
		t.Fatalf("create p-j1: %+v, %v", in, err)
	}
	got := rec.Spec("p-j1")
	if want := map[string]string{"K": "v", "RUNNER_ID": "p-j1"}; !maps.Equal(got.Env, want) {
		t.Errorf("env %v, want %v", got.Env, want)
	}
	if want := map[string]string{"RUNNER_SECRET": "s3cret-p-j1"}; !maps.Equal(got.Secrets, want) {
		t.Errorf("secrets %v, want %v", got.Secrets, want)
	}

	mem.FailNext(memory.OpCreate, errors.New("no capacity"))
	if _, err := p.Create(ctx, spec("p-j2")); err == nil {
		t.Fatal("create p-j2 with a failing provider: no error")
	}
	if _, ok := sys.runners["p-j2"]; ok {
		t.Error("the runner of a failed create is still registered")
	}

	// An instance another process made already holds its own runner: the
	// registration just made is unused, and undone.
	if _, err := mem.Create(ctx, spec("p-j4")); err != nil {
		t.Fatal(err)
	}
	in, err = p.Create(ctx, spec("p-j4"))
	if err != nil || !in.Existed {
		t.Errorf("create over an existing instance: %+v, %v; want it, Existed", in, err)
	}
	if _, ok := sys.runners["p-j4"]; ok || !slices.Equal(sys.forgot, []string{"p-j2", "p-j4"}) {
		t.Errorf("registrations undone %v, want p-j2 (failed create) and p-j4 (instance there already)", sys.forgot)
	}

	in, err = p.Create(ctx, spec("p-j3"))
	if err != nil || !in.Existed || in.Name != "p-j3" {
		t.Errorf("create of a runner registered elsewhere: %+v, %v; want an existing instance", in, err)
	}
	if _, ok := mem.Get("p-j3"); ok {
		t.Error("a runner registered elsewhere got a second instance here")
	}

	sys.runners["p-j1"] = true // took a job
	if err := p.Delete(ctx, "p-j1"); !errors.Is(err, errBusy) {
		t.Errorf("delete of a busy runner's instance: %v, want errBusy", err)
	}
	if _, ok := mem.Get("p-j1"); !ok {
		t.Error("the instance of a busy runner was deleted")
	}
	sys.runners["p-j1"] = false
	if err := p.Delete(ctx, "p-j1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.Get("p-j1"); ok || len(sys.runners) != 0 {
		t.Errorf("after delete: instance %v, runners %v; want neither", ok, sys.runners)
	}
}
