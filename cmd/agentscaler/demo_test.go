//go:build !nodemo

package main

import (
	"context"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
)

// TestDemoSummaryTellsInstancesOfOneNameApart: a name comes back when the
// agent made for a job took another and that job got a new agent later;
// the summary counts both instances and gives each job the one that ran it.
func TestDemoSummaryTellsInstancesOfOneNameApart(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	clock := t0
	mem := memory.New(memory.Options{Now: func() time.Time { return clock }})
	d := &demo{prov: mem, seen: map[string][]seenInstance{}}
	ctx := context.Background()
	look := func() {
		t.Helper()
		if _, err := d.instances(ctx); err != nil {
			t.Fatal(err)
		}
	}
	spec := providers.AgentSpec{Name: "linux-r13", Pool: demoPool, Request: 13, Image: "x"}
	if _, err := mem.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	look()
	clock = t0.Add(time.Second)
	look() // the same instance seen again
	if err := mem.Delete(ctx, "linux-r13"); err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(3 * time.Second)
	if _, err := mem.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	look()

	if n := d.agentsStarted(); n != 2 {
		t.Errorf("agents started: %d, want 2 (two instances named linux-r13)", n)
	}
	if created, _ := d.instanceFor("linux-r13", t0.Add(2*time.Second)); !created.Equal(t0) {
		t.Errorf("the job started at +2s ran on the instance created at %v, want the first (%v)", created, t0)
	}
	if created, _ := d.instanceFor("linux-r13", t0.Add(4*time.Second)); !created.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("the job started at +4s ran on the instance created at %v, want the second", created)
	}
}
