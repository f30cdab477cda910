package docker_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

// benchProvider returns a provider on the shared engine with the waiter image.
func benchProvider(b *testing.B, tokenFile bool) *docker.Provider {
	e := dockertest.Shared(b)
	e.WaiterImage(b, waiterRef)
	p, err := docker.New(docker.Options{Host: e.Host, Network: "none", Pull: docker.PullNever, TokenFile: tokenFile, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// BenchmarkCreateDelete measures one agent's container from Create (which
// returns once the engine has started it) to its removal.
func BenchmarkCreateDelete(b *testing.B) {
	for _, tokenFile := range []bool{false, true} {
		b.Run(fmt.Sprintf("token_file=%v", tokenFile), func(b *testing.B) {
			p := benchProvider(b, tokenFile)
			ctx := context.Background()
			pool := fmt.Sprintf("bench%v", tokenFile)
			i := int64(0)
			for b.Loop() {
				i++
				spec := providers.AgentSpec{Name: ci.Requests.JobName(pool, i), Pool: pool, Request: i, Image: waiterRef,
					Secrets: map[string]string{"AZP_TOKEN": "bench-token-value"}}
				if _, err := p.Create(ctx, spec); err != nil {
					b.Fatal(err)
				}
				if err := p.Delete(ctx, spec.Name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkList measures listing a pool of ten running agents, the call
// every reconcile makes.
func BenchmarkList(b *testing.B) {
	p := benchProvider(b, false)
	ctx := context.Background()
	const pool = "benchlist"
	for i := range int64(10) {
		spec := providers.AgentSpec{Name: ci.Requests.JobName(pool, i+1), Pool: pool, Request: i + 1, Image: waiterRef}
		if _, err := p.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = p.Delete(context.Background(), spec.Name) })
	}
	for b.Loop() {
		ins, err := p.List(ctx, pool)
		if err != nil || len(ins) != 10 {
			b.Fatalf("List = %d instances, %v", len(ins), err)
		}
	}
}
