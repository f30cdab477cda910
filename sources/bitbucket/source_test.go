package bitbucket_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/bbemu"
	"github.com/agentscaler/agentscaler/providers"

	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

func TestSourceAgents(t *testing.T) {
	emu, c := setup(t)
	loc := bitbucket.Location{Workspace: workspace}
	src := bitbucket.NewSource(c, "bb", loc, []string{"docker"})
	if got := src.RunnerLabels(); !slices.Equal(got, []string{"docker", "linux", "self.hosted"}) {
		t.Errorf("labels %v", got)
	}
	ctx := t.Context()
	idle, err := src.Register(ctx, "bb-w1")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := src.Register(ctx, "bb-w2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Register(ctx, "bb-w3"); err != nil { // never comes online
		t.Fatal(err)
	}
	emu.AddRunner(bbemuLoc(loc), "build-01", []string{"self.hosted", "linux"}) // not ours
	emu.Poll(idle.UUID)
	emu.QueueStep([]string{"self.hosted", "docker"}, 0)
	if emu.Poll(busy.UUID) == "" {
		t.Fatal("the busy runner took no step")
	}
	agents, err := src.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range agents {
		state := "offline"
		switch {
		case a.Job != nil:
			state = "busy"
		case a.Online:
			state = "idle"
		}
		got[a.Name] = state
		if _, ok := a.Caps["docker"]; !ok {
			t.Errorf("%s offers %v", a.Name, a.Caps)
		}
	}
	want := map[string]string{"bb-w1": "idle", "bb-w2": "busy", "bb-w3": "offline"}
	if len(got) != len(want) {
		t.Fatalf("agents %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s is %s, want %s", k, got[k], v)
		}
	}
	// Unregister deletes a runner of ours that the last listing showed.
	for _, a := range agents {
		if a.Name == "bb-w3" {
			if err := src.Unregister(ctx, a.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if names := runnerNames(emu); slices.Contains(names, "bb-w3") {
		t.Errorf("bb-w3 still registered: %v", names)
	}
	if jobs, _ := src.Jobs(ctx); len(jobs) != 0 {
		t.Errorf("jobs %v", jobs)
	}
	if free, _ := src.Free(ctx); free != -1 {
		t.Errorf("free %d", free)
	}
}

func TestSourceRetire(t *testing.T) {
	emu, c := setup(t)
	loc := bitbucket.Location{Workspace: workspace}
	src := bitbucket.NewSource(c, "bb", loc, nil)
	ctx := t.Context()
	idle, _ := src.Register(ctx, "bb-w1")
	busy, _ := src.Register(ctx, "bb-w2")
	emu.Poll(idle.UUID)
	emu.QueueStep([]string{"self.hosted"}, 0)
	emu.Poll(busy.UUID)

	err := src.Retire(ctx, "bb-w2")
	if !errors.Is(err, bitbucket.ErrBusy) {
		t.Errorf("retiring a busy runner: %v, want ErrBusy", err)
	}
	if again, _, reason := providers.Classify(fmt.Errorf("retire: %w", err)); again || reason != "busy" {
		t.Errorf("a busy runner classifies as retryable %t, %q", again, reason)
	}
	if err := src.Retire(ctx, "bb-w1"); err != nil {
		t.Fatal(err)
	}
	if err := src.Retire(ctx, "bb-w9"); err != nil {
		t.Errorf("retiring a runner that does not exist: %v", err)
	}
	if names := runnerNames(emu); !slices.Equal(names, []string{"bb-w2"}) {
		t.Errorf("runners left %v, want the busy one", names)
	}
}

// TestSourceRegisterOverAName: a runner left under a name (offline, older
// than Grace) is replaced on Register; one that is online, or registered
// within Grace (another reconciler's create in flight), is left alone and
// out of Agents until Grace has passed.
func TestSourceRegisterOverAName(t *testing.T) {
	emu, c := setup(t)
	src := bitbucket.NewSource(c, "bb", bitbucket.Location{Workspace: workspace}, nil)
	src.Grace = time.Minute
	ctx := t.Context()
	live, _ := src.Register(ctx, "bb-w1")
	emu.Poll(live.UUID)
	fresh, _ := src.Register(ctx, "bb-w2") // never polled: not online yet

	for _, name := range []string{"bb-w1", "bb-w2"} {
		if _, err := src.Register(ctx, name); !errors.Is(err, bitbucket.ErrRegistered) {
			t.Errorf("register over %s: %v, want ErrRegistered", name, err)
		}
	}
	agents, err := src.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].Name != "bb-w1" {
		t.Errorf("agents %+v, want bb-w1 alone: bb-w2 is settling", agents)
	}

	src.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if agents, _ := src.Agents(ctx); len(agents) != 2 {
		t.Errorf("after Grace: agents %+v, want bb-w2 shown too", agents)
	}
	again, err := src.Register(ctx, "bb-w2")
	if err != nil {
		t.Fatal(err)
	}
	if again.UUID == fresh.UUID || !slices.Equal(runnerNames(emu), []string{"bb-w1", "bb-w2"}) {
		t.Errorf("register over a leftover: %+v, want it replaced", emu.Runners())
	}
}

func runnerNames(emu *bbemu.Emulator) []string {
	var out []string
	for _, r := range emu.Runners() {
		out = append(out, r.Name)
	}
	return out
}

func bbemuLoc(l bitbucket.Location) bbemu.Location {
	return bbemu.Location{Workspace: l.Workspace, Repository: l.Repository}
}
