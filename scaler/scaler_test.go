package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

const testPAT = "scaler-test-pat"

// fixture is the real loop without HTTP hooks: the Azure DevOps emulator
// behind the real REST client, the memory provider, and a Scaler.
type fixture struct {
	emu *adoemu.Emulator
	mem *memory.Provider
	s   *Scaler
}

func newFixture(t *testing.T, emuOpts adoemu.Options, pol func(*Policy)) *fixture {
	t.Helper()
	emuOpts.PAT = testPAT
	emu := adoemu.New(emuOpts)
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	emu.AddPool("Default")
	client, err := azuredevops.NewClient(emu.OrgURL(), azuredevops.PAT(testPAT), azuredevops.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := policy()
	p.Placeholder = true
	if pol != nil {
		pol(&p)
	}
	mem := memory.New(memory.Options{})
	s := New(Options{
		Metrics: metrics.New("test"),
		Logger:  slog.New(slog.DiscardHandler),
		Pools: []Pool{{
			Policy: p, Provider: mem, ProviderName: "memory",
			Source: &azuredevops.Source{API: client, Name: "Default", Capabilities: poolCaps, AgentVersion: "4.275.0"},
			Spec: func(context.Context, string) (providers.AgentSpec, error) {
				return providers.AgentSpec{Image: "azp-agent:linux", Secrets: map[string]string{"AZP_TOKEN": "t"}}, nil
			},
		}},
	})
	t.Cleanup(s.Wait)
	return &fixture{emu: emu, mem: mem, s: s}
}

func names(ins []providers.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.Name)
	}
	return out
}

// TestTriggersCoalesce: a burst of triggers for one pool costs one run in
// flight plus one trailing run, not one run each.
func TestTriggersCoalesce(t *testing.T) {
	f := newFixture(t, adoemu.Options{Latency: map[string]time.Duration{adoemu.EndpointJobRequests: 50 * time.Millisecond}}, func(p *Policy) { p.MaxAgents = 50 })
	for range 20 {
		f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	}
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		go func() { defer wg.Done(); f.s.JobWaiting(ci.Event{}) }()
	}
	wg.Wait()
	f.s.Wait()
	if calls := f.emu.Calls()[adoemu.EndpointJobRequests]; calls < 1 || calls > 3 {
		t.Errorf("1000 triggers made %d job-request reads, want 1 to 3", calls)
	}
	if got := len(f.mem.All()); got != 20 {
		t.Errorf("%d instances for 20 waiting jobs", got)
	}
	// A Run after the burst is answered by a run that starts after it.
	before := f.emu.Calls()[adoemu.EndpointJobRequests]
	if err := f.s.Run(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	if after := f.emu.Calls()[adoemu.EndpointJobRequests]; after != before+1 {
		t.Errorf("Run made %d reads, want 1", after-before)
	}
}

// TestReconcileAppliesEveryKind runs one reconcile that creates, deletes,
// unregisters and registers the placeholder, against the emulator.
func TestReconcileAppliesEveryKind(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	id := f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "linux-r77", Online: false})
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "build-vm-01", Online: false})
	if _, err := f.mem.Create(context.Background(), providers.AgentSpec{Name: "linux-r5", Pool: "linux", Request: 5}); err != nil {
		t.Fatal(err)
	}
	if err := f.mem.Exit("linux-r5", 0); err != nil {
		t.Fatal(err)
	}

	res, err := f.s.Reconcile(context.Background(), "linux")
	if err != nil {
		t.Fatal(err)
	}
	if got := render(res.Decision.Actions); len(got) != 4 {
		t.Errorf("actions %q, want a create, a delete, an unregister and a placeholder", got)
	}
	if got, want := names(f.mem.All()), []string{ci.Requests.JobName("linux", id)}; !slices.Equal(got, want) {
		t.Errorf("instances %v, want %v", got, want)
	}
	in, _ := f.mem.Get(ci.Requests.JobName("linux", id))
	if in.Request != id {
		t.Errorf("instance carries request %d, want %d", in.Request, id)
	}
	var agents []string
	for _, a := range f.emu.Agents("Default") {
		agents = append(agents, a.Name)
	}
	slices.Sort(agents)
	if want := []string{"build-vm-01", "linux-placeholder"}; !slices.Equal(agents, want) {
		t.Errorf("agents %v, want %v", agents, want)
	}
	// A second pass finds nothing to do: the plan converged.
	res, err = f.s.Reconcile(context.Background(), "linux")
	if err != nil || len(res.Decision.Actions) != 0 {
		t.Errorf("second pass: %v, actions %q", err, render(res.Decision.Actions))
	}
}

// TestApplyFailures: one failing create never blocks the others; retryable
// errors are tried again, permanent ones are reported with their reason.
func TestApplyFailures(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, func(p *Policy) { p.Placeholder = false })
	for range 5 {
		f.emu.QueueJob("Default", adoemu.Job{})
	}
	f.mem.FailNext(memory.OpCreate, &providers.Error{Op: "create", Reason: "throttled", Retryable: true, RetryAfter: 10 * time.Millisecond, Err: errors.New("429")})
	f.mem.FailNext(memory.OpCreate, &providers.Error{Op: "create", Reason: "image", Err: errors.New("manifest unknown")})

	res, err := f.s.Reconcile(context.Background(), "linux")
	if err == nil {
		t.Fatal("a permanent failure was not reported")
	}
	if len(res.Failed) != 1 {
		t.Fatalf("%d failed actions, want 1: %+v", len(res.Failed), res.Failed)
	}
	if _, _, reason := providers.Classify(res.Failed[0].Err); reason != "image" {
		t.Errorf("failure reason %q, want image", reason)
	}
	if got := len(f.mem.All()); got != 4 {
		t.Errorf("%d instances, want 4: the throttled create retried, the broken one alone failed", got)
	}
	// The next pass creates the one that failed.
	if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	if got := len(f.mem.All()); got != 5 {
		t.Errorf("%d instances after the next pass, want 5", got)
	}
}

// TestPlanWritesNothing: Plan reads Azure DevOps and the provider only.
func TestPlanWritesNothing(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	f.emu.QueueJob("Default", adoemu.Job{})
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "linux-r3", Online: false})
	before := f.emu.Writes()
	d, err := f.s.Plan(context.Background(), "linux")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Actions) != 3 {
		t.Errorf("plan %q, want create, unregister and placeholder", render(d.Actions))
	}
	if f.emu.Writes() != before || len(f.mem.All()) != 0 {
		t.Errorf("Plan changed something: %d writes, %d instances", f.emu.Writes()-before, len(f.mem.All()))
	}
}

// samples returns how many observations the scaler's histogram name holds.
func samples(t *testing.T, s *Scaler, name string) uint64 {
	t.Helper()
	mfs, err := s.opt.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestQueuedToAssignedOncePerJob: the wait of a job is recorded when it is
// first seen assigned, and never again on later passes.
func TestQueuedToAssignedOncePerJob(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	id := f.emu.QueueJob("Default", adoemu.Job{})
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "build-vm-01", Online: true})
	if err := f.emu.Assign(id, "build-vm-01"); err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 2; pass++ {
		if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
			t.Fatal(err)
		}
		if got := samples(t, f.s, "agentscaler_job_queued_to_assigned_seconds"); got != 1 {
			t.Errorf("pass %d: %d queue-to-assignment samples, want 1", pass, got)
		}
	}
}

// TestQueuedToCreatedOncePerInstance: a create that finds its instance made
// already (by another process) is not timed again.
func TestQueuedToCreatedOncePerInstance(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	a := Action{Kind: Create, Pool: "linux", Name: "linux-r7", Request: 7, Queued: f.s.clock.Now().Add(-time.Second)}
	for i := 1; i <= 2; i++ {
		if err := f.s.do(t.Context(), f.s.pools["linux"], a); err != nil {
			t.Fatal(err)
		}
		if got := samples(t, f.s, "agentscaler_job_queued_to_agent_created_seconds"); got != 1 {
			t.Errorf("after create %d of %s: %d queued-to-created samples, want 1", i, a.Name, got)
		}
	}
}

// TestLifecycleThroughEmulator runs a job's whole life through the real REST
// client and the emulator's payloads: the agent's status change and the
// assigned request's times reach the histograms, each once.
func TestLifecycleThroughEmulator(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, func(p *Policy) { p.Placeholder = false })
	m := f.s.opt.Metrics
	start := time.Now()
	id := f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	name := ci.Requests.JobName("linux", id)
	reconcile := func() {
		t.Helper()
		if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() [3]uint64 {
		var c [3]uint64
		for i, n := range []string{"agentscaler_agent_created_to_online_seconds", "agentscaler_job_queued_to_assigned_seconds", "agentscaler_job_duration_seconds"} {
			c[i], _ = histogram(t, m, n)
		}
		return c
	}
	reconcile() // creates the job's instance
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: name, Online: true, SystemCapabilities: map[string]string{"docker": ""}})
	reconcile()
	if got := counts(); got != [3]uint64{1, 0, 0} {
		t.Fatalf("after the agent came online: samples (online, assigned, duration) = %v, want [1 0 0]", got)
	}
	if err := f.emu.Assign(id, name); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if got := counts(); got != [3]uint64{1, 1, 0} {
		t.Fatalf("after assignment: samples = %v, want [1 1 0]", got)
	}
	// The agent does what `--once` does: offline, result, exit.
	if err := f.emu.SetAgentStatus("Default", name, false); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.Finish(id, "succeeded"); err != nil {
		t.Fatal(err)
	}
	if err := f.mem.Exit(name, 0); err != nil {
		t.Fatal(err)
	}
	reconcile()
	reconcile()
	if got := counts(); got != [3]uint64{1, 1, 1} {
		t.Fatalf("after the job ended: samples = %v, want [1 1 1]", got)
	}
	if _, sum := histogram(t, m, "agentscaler_job_duration_seconds"); sum < 0 || sum > time.Since(start).Seconds() {
		t.Errorf("job duration %gs, want between 0 and the %gs the test has run", sum, time.Since(start).Seconds())
	}
}

// TestAfterReconcileEveryOutcome: the hook follows every reconcile, the ones
// that fail to observe included (their outcome is a metric worth pushing).
func TestAfterReconcileEveryOutcome(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	var calls int
	f.s.opt.AfterReconcile = func() { calls++ }
	if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	f.emu.FailNext(adoemu.EndpointJobRequests, http.StatusUnauthorized, 0)
	if _, err := f.s.Reconcile(context.Background(), "linux"); err == nil {
		t.Fatal("a reconcile whose job-request read was refused succeeded")
	}
	if calls != 2 {
		t.Errorf("AfterReconcile called %d times for 2 reconciles, want 2", calls)
	}
}

// TestWaitIdleWhileTriggered: WaitIdle returns only once every run it saw,
// trailing runs included, has ended, even while other goroutines keep
// triggering; and it gives up when its context ends.
func TestWaitIdleWhileTriggered(t *testing.T) {
	f := newFixture(t, adoemu.Options{Latency: map[string]time.Duration{adoemu.EndpointJobRequests: 100 * time.Millisecond}}, func(p *Policy) { p.MaxAgents = 50 })
	f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	f.s.JobWaiting(ci.Event{})
	// Once the run is reading job requests, a trigger queues a trailing run.
	for f.emu.Calls()[adoemu.EndpointJobRequests] == 0 {
		time.Sleep(time.Millisecond)
	}
	f.s.JobWaiting(ci.Event{})
	if err := f.s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls := f.emu.Calls()[adoemu.EndpointJobRequests]; calls != 2 {
		t.Errorf("WaitIdle returned after %d job-request reads, want 2 (the run and its trailing run)", calls)
	}
	if len(f.mem.All()) != 1 {
		t.Errorf("WaitIdle returned before the create: %v", names(f.mem.All()))
	}

	// A run takes at least the 100ms read: a shorter context gives up.
	f.s.JobWaiting(ci.Event{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	err := f.s.WaitIdle(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitIdle with a 10ms context during a 100ms run: %v, want the deadline", err)
	}

	// Triggers while waiting, as concurrent Lambda invocations of one
	// process make: WaitIdle keeps waiting for the runs they add, without
	// the WaitGroup misuse Wait would be.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			select {
			case <-stop:
				return
			default:
				f.s.JobWaiting(ci.Event{})
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	if err := f.s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := f.s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLookAgain: calls while one is pending make one reconcile, after
// the delay; once it has run, it can be asked for again.
func TestLookAgain(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	reads := func() int { return f.emu.Calls()[adoemu.EndpointJobRequests] }
	waitReads := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for reads() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d job-request reads, want %d", reads(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := f.s.WaitIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		f.s.lookAgain(200*time.Millisecond, []string{"linux"})
	}
	waitReads(1)
	if got := reads(); got != 1 {
		t.Errorf("10 calls while one was pending made %d reconciles, want 1", got)
	}
	f.s.lookAgain(10*time.Millisecond, []string{"linux"})
	waitReads(2)
}

// TestAgentGaugesShowThePassOutcome: the agents gauge shows the pool after a
// pass's actions, not the observation before them.
func TestAgentGaugesShowThePassOutcome(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, func(p *Policy) { p.Placeholder = false })
	var ids []int64
	for range 5 {
		ids = append(ids, f.emu.QueueJob("Default", adoemu.Job{}))
	}
	starting := func() float64 {
		t.Helper()
		families, err := f.s.opt.Metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range families {
			if mf.GetName() != "agentscaler_agents" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["pool"] == "linux" && labels["state"] == "starting" {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatal("no agentscaler_agents{pool=linux,state=starting}")
		return 0
	}
	if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	if got := starting(); got != 5 {
		t.Errorf("after the pass that created 5 agents: starting = %v, want 5", got)
	}
	for _, id := range ids {
		if err := f.emu.Finish(id, "canceled"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	if got := starting(); got != 0 {
		t.Errorf("after the pass that removed them: starting = %v, want 0", got)
	}
}

// TestStaticAgentHoldsNoJobBack: an idle Windows agent in the pool, which
// Azure DevOps never gives a Linux job, leaves every Linux job an agent of
// ours, pass after pass.
func TestStaticAgentHoldsNoJobBack(t *testing.T) {
	f := newFixture(t, adoemu.Options{AutoAssign: true, ParallelJobs: 10}, func(p *Policy) { p.Placeholder = false })
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "win-build-01", Online: true, OSDescription: "Windows",
		SystemCapabilities: map[string]string{"Agent.OS": "Windows_NT"}})
	var want []string
	for range 5 {
		id := f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"Agent.OS -equals Linux"}})
		want = append(want, ci.Requests.JobName("linux", id))
	}
	slices.Sort(want)
	for pass := range 3 {
		if _, err := f.s.Reconcile(context.Background(), "linux"); err != nil {
			t.Fatal(err)
		}
		got := names(f.mem.All())
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("pass %d: instances %v, want %v", pass+1, got, want)
		}
	}
}

// TestPaceHoldsTheNextRun: with a pace, a pool's next reconcile starts no
// sooner than the pace after the last one ended, and the triggers that
// arrive while it is held back all join it.
func TestPaceHoldsTheNextRun(t *testing.T) {
	const pace = 300 * time.Millisecond
	f := newFixture(t, adoemu.Options{}, nil)
	var mu sync.Mutex
	var ends []time.Time
	f.s.pools["linux"].Pace = func() time.Duration { return pace }
	f.s.opt.AfterReconcile = func() { mu.Lock(); ends = append(ends, time.Now()); mu.Unlock() }
	if err := f.s.Run(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		f.s.JobWaiting(ci.Event{})
	}
	if err := f.s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ends) != 2 {
		t.Fatalf("%d reconciles, want 2: the triggers during the hold join one run", len(ends))
	}
	if gap := ends[1].Sub(ends[0]); gap < pace {
		t.Errorf("the second run ended %s after the first, want at least the pace %s", gap, pace)
	}
}

// downProvider stands in for a provider whose engine is down: List fails
// while down is set.
type downProvider struct {
	providers.Provider
	down atomic.Bool
}

func (p *downProvider) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	if p.down.Load() {
		return nil, errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
	}
	return p.Provider.List(ctx, pool)
}

// TestFailingReconcilesBackOff: while the provider is down, reconciles of
// the pool back off, doubling, and the failure is logged once as a warning
// however often it repeats; the recovery is logged too.
func TestFailingReconcilesBackOff(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	prov := &downProvider{Provider: f.mem}
	prov.down.Store(true)
	f.s.pools["linux"].Provider = prov
	var logs syncbuf.Buffer
	f.s.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var mu sync.Mutex
	var ends []time.Time
	f.s.opt.AfterReconcile = func() { mu.Lock(); ends = append(ends, time.Now()); mu.Unlock() }
	for range 4 {
		if err := f.s.Run(context.Background(), "linux"); err == nil {
			t.Fatal("a reconcile with the provider down succeeded")
		}
	}
	prov.down.Store(false)
	if err := f.s.Run(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Failures 1, 2, 3, 4 hold the next run 0.5, 1, 2 and 4 s.
	for i, want := range []time.Duration{failureBackoffMin, 2 * failureBackoffMin, 4 * failureBackoffMin, 8 * failureBackoffMin} {
		if gap := ends[i+1].Sub(ends[i]); gap < want {
			t.Errorf("run %d ended %s after run %d, want at least %s", i+2, gap, i+1, want)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one failure repeated 4 times, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "reconcile recovered") || !strings.Contains(out, "failed_in_a_row=4") {
		t.Errorf("no recovery line after 4 failures:\n%s", out)
	}
}

// TestHold: the hold before a pool's next run is the longest of the
// minimum gap (for a trailing run only), the source's pace and the failure
// backoff.
func TestHold(t *testing.T) {
	const gap = 500 * time.Millisecond
	tests := []struct {
		trailing bool
		pace     time.Duration
		fails    int
		want     time.Duration
	}{
		{false, 0, 0, 0},
		{true, 0, 0, gap},
		{true, 3 * time.Second, 0, 3 * time.Second},
		{false, 3 * time.Second, 0, 3 * time.Second},
		{true, 0, 3, 4 * failureBackoffMin},
		{false, 0, 100, failureBackoffMax},
	}
	for _, tc := range tests {
		s := New(Options{MinGap: gap, Pools: []Pool{{Policy: Policy{Pool: "linux"}, Pace: func() time.Duration { return tc.pace }}}})
		if got := s.hold("linux", tc.trailing, tc.fails); got != tc.want {
			t.Errorf("trailing %v, pace %s, %d failures: hold %s, want %s", tc.trailing, tc.pace, tc.fails, got, tc.want)
		}
	}
	// The backoff never outgrows the timer interval serve gives as its cap.
	if got := New(Options{MaxBackoff: 2 * time.Second}).hold("linux", false, 100); got != 2*time.Second {
		t.Errorf("hold after 100 failures with a 2 s cap: %s", got)
	}
}

// TestJobWaitingUrgency: a waiting job's event reconciles at once when the
// last pass did not list the job, and waits out the minimum gap when it did
// (a flood of hooks for jobs a pass already saw costs no extra passes).
func TestJobWaitingUrgency(t *testing.T) {
	f := newFixture(t, adoemu.Options{Latency: map[string]time.Duration{adoemu.EndpointJobRequests: 100 * time.Millisecond}}, nil)
	f.s.opt.MinGap = time.Hour
	t.Cleanup(f.s.Stop)
	f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	if err := f.s.Run(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	seen := f.emu.Requests("Default")[0].JobID
	reads := func() int { return f.emu.Calls()[adoemu.EndpointJobRequests] }

	// A pass in flight, and the event of a job it already knows: the run
	// that trails it is held back by the gap.
	f.s.Tick()
	for reads() < 2 {
		time.Sleep(time.Millisecond)
	}
	f.s.JobWaiting(ci.Event{Ref: seen})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := f.s.WaitIdle(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || reads() != 2 {
		t.Fatalf("the event of a known job: WaitIdle %v after %d reads, want the trailing run held back after 2", err, reads())
	}
	// The event of a job no pass has seen lifts the gap.
	f.s.JobWaiting(ci.Event{Ref: "6f1c2b0e-0000-4000-8000-00000000abcd"})
	if err := f.s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reads() != 3 {
		t.Errorf("%d job-request reads, want 3: the held run ran once", reads())
	}
}

// TestNothingStartsAfterStop: once Stop has returned, triggers and the
// second look after a completed job start no reconcile, so none races the
// shutdown or reaches a closed provider.
func TestNothingStartsAfterStop(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	if err := f.s.Run(context.Background(), "linux"); err != nil {
		t.Fatal(err)
	}
	f.s.opt.Recheck = time.Millisecond
	f.s.JobCompleted(ci.Event{}) // its second look is due while we stop
	f.s.Stop()
	reads := f.emu.Calls()[adoemu.EndpointJobRequests]
	f.s.JobWaiting(ci.Event{})
	f.s.JobWaiting(ci.Event{})
	if err := f.s.Run(context.Background(), "linux"); !errors.Is(err, ErrStopped) {
		t.Errorf("Run after Stop: %v, want ErrStopped", err)
	}
	f.s.Wait()
	if after := f.emu.Calls()[adoemu.EndpointJobRequests]; after != reads {
		t.Errorf("%d job-request reads after Stop", after-reads)
	}
}

// lostAnswerProvider stands in for a provider whose create happens but whose
// answer is lost (the call times out), once per name.
type lostAnswerProvider struct {
	providers.Provider
	mu    sync.Mutex
	calls map[string]int
}

func (p *lostAnswerProvider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	p.mu.Lock()
	p.calls[spec.Name]++
	first := p.calls[spec.Name] == 1
	p.mu.Unlock()
	in, err := p.Provider.Create(ctx, spec)
	if first && err == nil {
		return providers.Instance{}, fmt.Errorf("create %s: %w", spec.Name, context.DeadlineExceeded)
	}
	return in, err
}

// TestCreateOfUnknownOutcomeIsPlannedAgain: a create that timed out may have
// happened, so the pass does not try it again (a retry landing after the
// instance ran its job and was removed would make a second one); a pass of
// its own plans it again from a fresh look, which finds the instance.
func TestCreateOfUnknownOutcomeIsPlannedAgain(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, func(p *Policy) { p.Placeholder = false })
	prov := &lostAnswerProvider{Provider: f.mem, calls: map[string]int{}}
	f.s.pools["linux"].Provider = prov
	id := f.emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	f.s.JobWaiting(ci.Event{})
	if err := f.s.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	name := ci.Requests.JobName("linux", id)
	prov.mu.Lock()
	calls := prov.calls[name]
	prov.mu.Unlock()
	if calls != 1 {
		t.Errorf("%d create calls for %s, want 1: no retry of a create that may have happened", calls, name)
	}
	if reads := f.emu.Calls()[adoemu.EndpointJobRequests]; reads != 2 {
		t.Errorf("%d job-request reads, want 2: the pass and the one planning the create again", reads)
	}
	if got := names(f.mem.All()); !slices.Equal(got, []string{name}) {
		t.Errorf("instances %v, want %s alone", got, name)
	}
}

// TestEventsOnVirtualTime: what the event methods trigger runs on the
// scaler's clock, so the simulator measures serve's timing: a job completed
// is looked at now and again DefaultRecheck later; a trigger while a pass is
// in progress trails it by DefaultMinGap; nothing runs while the clock
// stands still.
func TestEventsOnVirtualTime(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, nil)
	clock := fakeclock.New(t0)
	var (
		mu     sync.Mutex
		passes []time.Duration
		nested bool
	)
	f.s.clock = clock
	f.s.opt.AfterReconcile = func() {
		mu.Lock()
		defer mu.Unlock()
		passes = append(passes, clock.Now().Sub(t0))
		if nested {
			nested = false
			f.s.Tick() // while this pass is still in progress
		}
	}
	got := func() []time.Duration {
		f.s.Settle()
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(passes)
	}
	want := func(w ...time.Duration) {
		t.Helper()
		if g := got(); !slices.Equal(g, w) {
			t.Fatalf("passes at %v, want %v", g, w)
		}
	}

	f.s.JobCompleted(ci.Event{})
	want(0)
	clock.Advance(DefaultRecheck - time.Millisecond)
	want(0)
	clock.Advance(time.Millisecond)
	want(0, DefaultRecheck)

	mu.Lock()
	nested = true
	mu.Unlock()
	f.s.JobWaiting(ci.Event{})
	want(0, DefaultRecheck, DefaultRecheck)
	clock.Advance(DefaultMinGap - time.Millisecond)
	want(0, DefaultRecheck, DefaultRecheck)
	clock.Advance(time.Millisecond)
	want(0, DefaultRecheck, DefaultRecheck, DefaultRecheck+DefaultMinGap)
}

// TestEventsConcernTheirPools: an event reaches the pools of its CI system,
// and of those only the ones it names, when it names any.
func TestEventsConcernTheirPools(t *testing.T) {
	s := New(Options{Pools: []Pool{
		{Policy: Policy{Pool: "ado-linux"}, System: "azuredevops"},
		{Policy: Policy{Pool: "gh-linux"}, System: "github"},
		{Policy: Policy{Pool: "gh-arm"}, System: "github"},
	}})
	for _, tc := range []struct {
		e    ci.Event
		want []string
	}{
		{ci.Event{System: "azuredevops"}, []string{"ado-linux"}},
		{ci.Event{System: "github"}, []string{"gh-linux", "gh-arm"}},
		{ci.Event{System: "github", Pools: []string{"gh-arm"}}, []string{"gh-arm"}},
		{ci.Event{System: "github", Pools: []string{"ado-linux"}}, nil},
		{ci.Event{System: "bitbucket"}, nil},
		{ci.Event{}, []string{"ado-linux", "gh-linux", "gh-arm"}},
	} {
		if got := s.concerned(tc.e); !slices.Equal(got, tc.want) {
			t.Errorf("%+v concerns %v, want %v", tc.e, got, tc.want)
		}
	}
	// An event that concerns no pool starts nothing, second look included.
	s.JobCompleted(ci.Event{System: "bitbucket"})
	s.JobWaiting(ci.Event{System: "github", Pools: []string{"ado-linux"}})
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.flight) != 0 || s.soon {
		t.Errorf("events of no pool started passes in %d pools (second look pending: %v)", len(s.flight), s.soon)
	}
}
