package sim

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// eventLog records what reaches the scaler.
type eventLog struct {
	mu    sync.Mutex
	inner listener // the scaler, when the run goes on
	got   []loggedEvent
}

type loggedEvent struct {
	what string // waiting, completed
	ci.Event
}

func (l *eventLog) add(what string, e ci.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, loggedEvent{what, e})
}

// lines renders the events, naming jobs by their index in the script
// through ref.
func (l *eventLog) lines(ref func(string) string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.got {
		line := e.System + " " + e.what
		if e.what == "waiting" {
			line += " " + ref(e.Ref)
		}
		out = append(out, line)
	}
	return out
}

func (l *eventLog) JobWaiting(e ci.Event) {
	l.add("waiting", e)
	if l.inner != nil {
		l.inner.JobWaiting(e)
	}
}

func (l *eventLog) JobCompleted(e ci.Event) {
	l.add("completed", e)
	if l.inner != nil {
		l.inner.JobCompleted(e)
	}
}

func (l *eventLog) Tick(pools ...string) {
	if l.inner != nil {
		l.inner.Tick(pools...)
	}
}

// TestSimulatedHooksAreServes: for the same jobs queued, started and ended,
// the simulator's webhook path tells the scaler what serve's tells it from
// the service hooks Azure DevOps sends (the emulator's, in their real
// payload shapes, through the handler serve runs): the same events, in the
// same order, naming the same jobs by the ids their job requests carry. Both
// then run the scaler's own event methods, so the passes they cause are
// the same.
func TestSimulatedHooksAreServes(t *testing.T) {
	// Three jobs: B ends first, then C, then A.
	jobs := []Job{
		{QueuedAt: 0, Duration: time.Minute},
		{QueuedAt: time.Second, Duration: 10 * time.Second},
		{QueuedAt: 2 * time.Second, Duration: 30 * time.Second},
	}

	// The simulator.
	p, err := ParsePolicy("webhook", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newEngine(jobs, p, Options{Pool: testPool(10, 0), StartLatency: fixed(5 * time.Second), Horizon: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	sim := &eventLog{inner: e.target}
	e.target = sim
	if err := e.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.result(); r.Unserved != 0 {
		t.Fatalf("the simulation left %d jobs unserved", r.Unserved)
	}

	// serve's handler, fed by the emulator's hooks for the same story.
	emu := adoemu.New(adoemu.Options{PAT: "pat"})
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	emu.AddPool("Default")
	byJobID := map[string]string{}
	serve := &eventLog{}
	h := azuredevops.NewHookHandler(azuredevops.BasicAuth("hooks", "secret"), emu.OrgURL(), serve, nil, nil, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	emu.Subscribe(adoemu.Subscription{URL: srv.URL, Username: "hooks", Password: "secret"})
	settle := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := emu.Quiesce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var ids []int64
	for i := range jobs {
		id := emu.QueueJob("Default", adoemu.Job{})
		ids = append(ids, id)
		for _, r := range emu.Requests("Default") {
			if r.ID == id {
				byJobID[r.JobID] = fmt.Sprint(i)
			}
		}
		settle()
	}
	for i, id := range ids {
		name := fmt.Sprintf("linux-r%d", id)
		emu.RegisterAgent("Default", adoemu.AgentInfo{Name: name, Online: true})
		if err := emu.Assign(id, name); err != nil {
			t.Fatalf("assign job %d: %v", i, err)
		}
		settle()
	}
	for _, i := range []int{1, 2, 0} {
		if err := emu.Finish(ids[i], "succeeded"); err != nil {
			t.Fatal(err)
		}
		settle()
	}

	want := []string{"azuredevops waiting 0", "azuredevops waiting 1", "azuredevops waiting 2", "azuredevops completed", "azuredevops completed", "azuredevops completed"}
	// The hooks are all in (settled): byJobID is complete.
	served := serve.lines(func(ref string) string { return byJobID[ref] })
	simulated := sim.lines(func(ref string) string { return strings.TrimPrefix(ref, "job-") })
	if !slices.Equal(served, want) {
		t.Errorf("serve's handler told the scaler %q, want %q", served, want)
	}
	if !slices.Equal(simulated, served) {
		t.Errorf("the simulator told the scaler %q; serve's handler, for the same jobs, %q", simulated, served)
	}
}
