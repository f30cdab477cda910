package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/agentscaler/agentscaler/internal/demo/ghemu"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/providers/providertest"
	"github.com/agentscaler/agentscaler/sources/github"
)

// TestJITRunners: a create registers the runner and hands its JIT config
// only as a secret; a name another reconciler registered counts as created
// (no second instance, no error); a delete removes the registration first
// and keeps the instance of a runner that runs a job.
func TestJITRunners(t *testing.T) {
	emu := ghemu.New(ghemu.Options{Org: "acme", Secret: []byte("s")})
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	emu.SetURL(srv.URL)
	c, err := github.NewClient(github.Options{BaseURL: srv.URL, Org: "acme", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	src := github.NewSource(c, github.NewJobs(c, github.JobsOptions{}), "cpu", nil)
	mem := memory.New(memory.Options{})
	rec := providertest.Record(mem)
	theirMem := memory.New(memory.Options{})
	ours := jitRunners(rec, src, slog.New(slog.DiscardHandler))
	theirs := jitRunners(theirMem, src, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	spec := func(name string) providers.AgentSpec {
		return providers.AgentSpec{Name: name, Pool: "cpu", Request: 1, Image: "runner", Env: map[string]string{"K": "v"}}
	}

	if _, err := ours.Create(ctx, spec("cpu-j1")); err != nil {
		t.Fatal(err)
	}
	if _, err := theirs.Create(ctx, spec("cpu-j1")); err != nil {
		t.Fatalf("a runner another reconciler registered: %v, want the create taken as done", err)
	}
	if n := len(theirMem.All()); n != 0 {
		t.Fatalf("the second reconciler made %d instances, want none", n)
	}
	if got := emu.Runners(); len(got) != 1 {
		t.Fatalf("runners %v, want one", got)
	}

	emu.Queue("acme/app", "self-hosted")
	if _, err := ours.Create(ctx, spec("cpu-j2")); err != nil {
		t.Fatal(err)
	}
	// The instance's runner takes the job with the configuration it was
	// given as a secret.
	got := rec.Spec("cpu-j2")
	if len(got.Secrets) != 1 || got.Env["K"] != "v" || len(got.Env) != 1 {
		t.Fatalf("spec env %v, %d secrets: want the pool's env and the configuration as the one secret", got.Env, len(got.Secrets))
	}
	if _, ok, err := ghemu.Take(got.Secrets[github.EnvJITConfig]); !ok || err != nil {
		t.Fatalf("the runner took no job: %v", err)
	}
	if err := ours.Delete(ctx, "cpu-j2"); !errors.Is(err, github.ErrBusy) {
		t.Fatalf("deleting the instance of a busy runner: %v, want ErrBusy", err)
	}
	if _, ok := mem.Get("cpu-j2"); !ok {
		t.Fatal("the instance of a busy runner was deleted")
	}
	if err := ours.Delete(ctx, "cpu-j1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.Get("cpu-j1"); ok {
		t.Fatal("the idle runner's instance stays")
	}
	if got := emu.Runners(); len(got) != 1 || got[0] != "cpu-j2" {
		t.Fatalf("runners %v, want only the busy cpu-j2", got)
	}
}
