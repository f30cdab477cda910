package docker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

// containersNamed counts the engine's containers of exactly this name.
func containersNamed(t *testing.T, cli *client.Client, name string) int {
	t.Helper()
	cs, err := cli.ContainerList(ctxFor(t), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", "^/"+name+"$"))})
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}

// deleteAtEnd removes the instance when the test ends.
func deleteAtEnd(t *testing.T, p *docker.Provider, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := p.Delete(ctx, name); err != nil {
			t.Errorf("cleanup: Delete(%s): %v", name, err)
		}
	})
}

// TestCreateLosingTheNameToAVanishingContainer: a create that lost the name
// finds no container of that name when it looks (the winner's is still
// being registered, or already removed). That is a retry of the create,
// never a permanent not_found. The hook removes the winner's container
// exactly in that gap, so the race is hit every time.
func TestCreateLosingTheNameToAVanishingContainer(t *testing.T) {
	cli := engineClient(t)
	winner := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever})
	loser := newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever})
	for i := range 3 {
		s := spec(t, fmt.Sprintf("gone%d", i))
		create(t, winner, s)
		var removed atomic.Int32
		docker.SetLostNameHook(loser, func(name string) {
			if removed.Add(1) == 1 {
				if err := cli.ContainerRemove(context.Background(), name, container.RemoveOptions{Force: true}); err != nil {
					t.Errorf("remove %s behind the provider's back: %v", name, err)
				}
			}
		})
		in, err := loser.Create(ctxFor(t), s)
		if err != nil {
			retry, _, reason := providers.Classify(err)
			t.Fatalf("Create after losing the name to a container that vanished: %v (retryable %v, reason %q); want success", err, retry, reason)
		}
		if removed.Load() != 1 || in.Name != s.Name || in.Pool != s.Pool {
			t.Errorf("lost the name %d times; instance %+v", removed.Load(), in)
		}
		if n := containersNamed(t, cli, s.Name); n != 1 {
			t.Errorf("%d containers named %s, want 1", n, s.Name)
		}
	}
}

// TestConcurrentCreatesOfOneName: two providers (two processes) with four
// creators each race for one name, over several names. Every create
// succeeds or is retryable, and each name ends with one container.
func TestConcurrentCreatesOfOneName(t *testing.T) {
	cli := engineClient(t)
	procs := []*docker.Provider{
		newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever}),
		newProvider(t, docker.Options{Network: "none", Pull: docker.PullNever}),
	}
	const names, perProcess = 6, 4
	var retried atomic.Int32
	for i := range names {
		s := spec(t, fmt.Sprintf("race%d", i))
		deleteAtEnd(t, procs[0], s.Name)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, p := range procs {
			for range perProcess {
				wg.Go(func() {
					<-start
					_, err := p.Create(ctxFor(t), s)
					if err == nil {
						return
					}
					if retry, _, reason := providers.Classify(err); !retry {
						t.Errorf("Create(%s) in a race: %v (reason %q); want success or a retry", s.Name, err, reason)
						return
					}
					retried.Add(1)
				})
			}
		}
		close(start)
		wg.Wait()
		if n := containersNamed(t, cli, s.Name); n != 1 {
			t.Errorf("%d containers named %s after %d concurrent creates, want 1", n, s.Name, len(procs)*perProcess)
		}
	}
	t.Logf("%d creates of %d asked to retry", retried.Load(), names*len(procs)*perProcess)
}
