package sim

import (
	"bytes"
	"context"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
)

func testPool(maxAgents, minIdle int) config.Pool {
	return config.Pool{
		Name: "linux", AzurePool: "Default", Provider: "memory", MaxAgents: maxAgents, MinIdle: minIdle,
		StartupTimeout: config.DefaultStartupTimeout, MaxLifetime: config.DefaultMaxLifetime,
		FailureBackoff: config.DefaultFailureBackoff, AgentVersion: config.DefaultAgentVersion,
	}
}

func fixed(d time.Duration) Latency { return Latency{d, d} }

func mustRun(t testing.TB, jobs []Job, policy string, opt Options) Result {
	t.Helper()
	p, err := ParsePolicy(policy, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), jobs, p, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWebhookWaitsTheStartLatency: a job queued alone waits the hook delay
// plus the start latency, and costs the start plus its run.
func TestWebhookWaitsTheStartLatency(t *testing.T) {
	jobs := []Job{{QueuedAt: 100 * time.Second, Duration: 5 * time.Minute}, {QueuedAt: 1000 * time.Second, Duration: time.Minute}}
	r := mustRun(t, jobs, "webhook", Options{Pool: testPool(10, 0), StartLatency: fixed(30 * time.Second), HookDelay: 2 * time.Second})
	if r.Unserved != 0 || r.WaitMax != 32 || r.WaitP50 != 32 {
		t.Fatalf("result %+v; want both jobs served after 32 s", r)
	}
	// Each agent exists from create to its job's end: 30 s + run time.
	if want := 30 + 300 + 30 + 60.0; r.AgentSeconds != want || r.IdleAgentSeconds != 0 {
		t.Errorf("agent seconds %v, idle %v; want %v and 0", r.AgentSeconds, r.IdleAgentSeconds, want)
	}
	if r.PeakAgents != 1 || r.DuplicateAgents != 0 {
		t.Errorf("peak %d, duplicates %d; want 1 and 0", r.PeakAgents, r.DuplicateAgents)
	}
}

// TestBurstOfAThousand: 1,000 jobs queued within ten seconds, each with its
// own agent allowed: the webhook policy's p95 wait stays within a couple of
// seconds of the start latency, and no job gets two agents.
func TestBurstOfAThousand(t *testing.T) {
	var jobs []Job
	for i := range 1000 {
		jobs = append(jobs, Job{QueuedAt: time.Duration(i) * 10 * time.Millisecond, Duration: 5 * time.Minute, Demands: []string{"docker"}})
	}
	pool := testPool(1000, 0)
	pool.Capabilities = map[string]string{"docker": ""}
	r := mustRun(t, jobs, "webhook", Options{Pool: pool, StartLatency: fixed(5 * time.Second), HookDelay: time.Second})
	if r.Unserved != 0 || r.DuplicateAgents != 0 {
		t.Fatalf("result %+v; want every job served once", r)
	}
	if r.WaitP95 > 5+1+2 {
		t.Errorf("p95 wait %.1f s, want at most the 5 s start, the 1 s hook delay and 2 s more", r.WaitP95)
	}
}

// TestPollWaitsForTheTick: with a timer only, a job waits for the next tick.
func TestPollWaitsForTheTick(t *testing.T) {
	jobs := []Job{{QueuedAt: 31 * time.Second, Duration: time.Minute}}
	r := mustRun(t, jobs, "poll:30s", Options{Pool: testPool(10, 0), StartLatency: fixed(10 * time.Second), HookDelay: time.Second})
	// Ticks at 0, 30, 60: the job queued at 31 is seen at 60, online at 70.
	if r.WaitMax != 39 || r.Unserved != 0 {
		t.Fatalf("result %+v; want a wait of 39 s", r)
	}
}

// TestMaxAgentsCapsTheBurst: 20 jobs at once, at most 5 agents: the scaler
// never exceeds the cap and serves the burst in waves.
func TestMaxAgentsCapsTheBurst(t *testing.T) {
	var jobs []Job
	for range 20 {
		jobs = append(jobs, Job{QueuedAt: time.Minute, Duration: time.Minute})
	}
	r := mustRun(t, jobs, "webhook", Options{Pool: testPool(5, 0), StartLatency: fixed(30 * time.Second)})
	if r.PeakAgents != 5 || r.Unserved != 0 {
		t.Fatalf("peak %d, unserved %d; want 5 and 0", r.PeakAgents, r.Unserved)
	}
	// Four waves of 30 s start + 60 s run: the last starts after 3 waves.
	if r.WaitMax < 3*90 {
		t.Errorf("max wait %v s; the fourth wave cannot start before %d s", r.WaitMax, 3*90)
	}
}

// TestWarmAgentsServeAtOnce: min_idle keeps agents ready, which take jobs
// without a wait and cost idle time.
func TestWarmAgentsServeAtOnce(t *testing.T) {
	jobs := []Job{{QueuedAt: 10 * time.Minute, Duration: time.Minute}, {QueuedAt: 20 * time.Minute, Duration: time.Minute}}
	r := mustRun(t, jobs, "webhook", Options{Pool: testPool(10, 2), StartLatency: fixed(30 * time.Second)})
	if r.WaitMax != 0 {
		t.Errorf("max wait %v s; want warm agents to take the jobs at once", r.WaitMax)
	}
	if r.IdleAgentSeconds < 2*9*60 {
		t.Errorf("idle agent seconds %v; two warm agents idle for at least 9 minutes", r.IdleAgentSeconds)
	}
}

// TestStaticAgentsRestartAfterEachJob: one --once agent in a restart loop
// takes the oldest job, then is gone for a start latency.
func TestStaticAgentsRestartAfterEachJob(t *testing.T) {
	jobs := []Job{
		{QueuedAt: 0, Duration: 100 * time.Second},
		{QueuedAt: 10 * time.Second, Duration: 10 * time.Second, Demands: []string{"docker"}}, // the pool has no docker
		{QueuedAt: 20 * time.Second, Duration: 10 * time.Second},
	}
	opt := Options{Pool: testPool(10, 0), StartLatency: fixed(30 * time.Second), Horizon: time.Hour}
	r := mustRun(t, jobs, "static:1", opt)
	// Job 1 at once; the agent is back at 130 and takes job 3, queued at 20.
	if r.Unserved != 1 || r.WaitMax != 110 || r.WaitP50 != 0 {
		t.Fatalf("result %+v; want waits 0 and 110 s and the docker job unserved", r)
	}
	if r.AgentSeconds != 3600 || r.IdleAgentSeconds != 3600-100-30-10-30 {
		t.Errorf("agent seconds %v, idle %v; want the whole hour, idle but for two jobs (100 s, 10 s) and two restarts of 30 s", r.AgentSeconds, r.IdleAgentSeconds)
	}
	opt.Pool.Capabilities = map[string]string{"docker": ""}
	if r := mustRun(t, jobs, "static:1", opt); r.Unserved != 0 {
		t.Errorf("with the docker capability, %d jobs unserved", r.Unserved)
	}
}

// TestServiceAssignsOldestMatchingFirst checks the Azure DevOps model: an
// agent takes the oldest waiting job whose demands it satisfies.
func TestServiceAssignsOldestMatchingFirst(t *testing.T) {
	now := time.Unix(1000, 0)
	m := newAzureDevOps("Default", func() time.Time { return now })
	m.queue(1, 0, []string{"docker"})
	now = now.Add(time.Second)
	m.queue(2, 1, nil)
	now = now.Add(time.Second)
	m.queue(3, 2, nil)
	m.connect("a", map[string]string{"Agent.OS": "Linux"})
	got := m.assign()
	if len(got) != 1 || got[0].req.id != 2 || got[0].agent != "a" {
		t.Fatalf("assign = %+v; want request 2 (the oldest without the docker demand) to a", got)
	}
	m.connect("b", map[string]string{"Agent.OS": "Linux", "docker": ""})
	if got := m.assign(); len(got) != 1 || got[0].req.id != 1 {
		t.Fatalf("assign = %+v; want request 1 to the docker agent", got)
	}
	if idle, busy, waiting := m.counts(); idle != 0 || busy != 2 || waiting != 1 {
		t.Errorf("counts idle %d busy %d waiting %d; want 0, 2, 1", idle, busy, waiting)
	}
	if _, err := m.finish("a"); err != nil {
		t.Fatal(err)
	}
	agents, _ := m.Agents(context.Background(), 1)
	if len(agents) != 1 || agents[0].Name != "b" || agents[0].AssignedRequest.RequestID != 1 {
		t.Errorf("agents after a's job = %+v; want only b, holding request 1 (a unregistered on exit)", agents)
	}
}

// TestHookLossCostsAtMostOneTimerInterval: with a fifth of the hooks lost
// every job is still served, the worst no later than the timer interval
// after the start latency.
func TestHookLossCostsAtMostOneTimerInterval(t *testing.T) {
	jobs := Generate(GenerateOptions{Seed: 5})
	lat := Latency{20 * time.Second, 40 * time.Second}
	base := mustRun(t, jobs, "webhook", Options{Pool: testPool(100, 0), StartLatency: lat, HookDelay: time.Second, Seed: 5})
	lossy := mustRun(t, jobs, "webhook", Options{Pool: testPool(100, 0), StartLatency: lat, HookDelay: time.Second, HookLoss: 0.2, Seed: 5})
	if lossy.Unserved != 0 {
		t.Fatalf("%d jobs unserved with lost hooks", lossy.Unserved)
	}
	if bound := (lat.Max + time.Second + time.Minute).Seconds(); lossy.WaitMax > bound {
		t.Errorf("max wait %v s with lost hooks; want at most %v (latency, delay, one interval)", lossy.WaitMax, bound)
	}
	if lossy.WaitMax <= base.WaitMax {
		t.Errorf("max wait %v s with lost hooks, %v s without: the losses had no effect", lossy.WaitMax, base.WaitMax)
	}
	// Every hook lost: the timer alone serves every job.
	all := mustRun(t, jobs, "webhook", Options{Pool: testPool(100, 0), StartLatency: lat, HookLoss: 1, Seed: 5})
	if all.Unserved != 0 || all.WaitMax > (lat.Max+time.Minute).Seconds() {
		t.Errorf("every hook lost: unserved %d, max wait %v s", all.Unserved, all.WaitMax)
	}
}

// TestRunIsDeterministic: the scaler creates in parallel, yet the same seed
// gives the same figures and timeline.
func TestRunIsDeterministic(t *testing.T) {
	jobs := Generate(GenerateOptions{Seed: 9})
	opt := Options{Pool: testPool(30, 1), StartLatency: Latency{5 * time.Second, 50 * time.Second}, HookDelay: time.Second, HookLoss: 0.3, Seed: 9}
	a := mustRun(t, jobs, "webhook", opt)
	b := mustRun(t, jobs, "webhook", opt)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs differ:\n%+v\n%+v", a, b)
	}
	opt.Seed = 10
	if c := mustRun(t, jobs, "webhook", opt); c.WaitMean == a.WaitMean {
		t.Errorf("another seed gave the same mean wait %v", c.WaitMean)
	}
}

// TestStartThatTimesOutIsNoDuplicate: an agent slower than startup_timeout
// never serves its job; its instances are failed starts, and the run gives
// up a day past the horizon.
func TestStartThatTimesOutIsNoDuplicate(t *testing.T) {
	jobs := []Job{{QueuedAt: 0, Duration: time.Minute}}
	pool := testPool(10, 0)
	pool.StartupTimeout = time.Minute
	r := mustRun(t, jobs, "webhook", Options{Pool: pool, StartLatency: fixed(2 * time.Minute)})
	if r.Unserved != 1 || r.DuplicateAgents != 0 {
		t.Fatalf("unserved %d, duplicates %d; want 1 and 0", r.Unserved, r.DuplicateAgents)
	}
	if r.Window < giveUp {
		t.Errorf("the run stopped after %v; want it to wait %v for the job", r.Window, giveUp)
	}
}

// TestDuplicateCounting checks the definition on the instances themselves:
// an instance made for a job whose agent came online and ran nothing is a
// duplicate; a warm one, one that ran a job, or one that never came online
// is not.
func TestDuplicateCounting(t *testing.T) {
	e, err := newEngine(nil, Policy{Kind: Webhook, Interval: time.Minute}, Options{Pool: testPool(10, 0)})
	if err != nil {
		t.Fatal(err)
	}
	e.instances = map[string]*instance{
		"linux-r1": {request: 1, online: true},            // duplicate
		"linux-r2": {request: 2, online: true, ran: true}, // ran a job
		"linux-r3": {request: 3},                          // never online
		"linux-w1": {online: true},                        // warm slot
		"linux-r4": {request: 4, online: true},            // still there at the end
	}
	for _, name := range []string{"linux-r1", "linux-r2", "linux-r3", "linux-w1"} {
		e.removed(name)
	}
	if e.duplicates != 1 {
		t.Errorf("duplicates %d after the removals; want 1", e.duplicates)
	}
	if r := e.result(); r.DuplicateAgents != 2 {
		t.Errorf("result counts %d duplicates; want 2 (linux-r4 still there and idle)", r.DuplicateAgents)
	}
}

func TestWritePlot(t *testing.T) {
	jobs := Generate(GenerateOptions{Seed: 2})
	opt := Options{Pool: testPool(40, 0), StartLatency: fixed(30 * time.Second)}
	rs := []Result{mustRun(t, jobs, "webhook", opt), mustRun(t, jobs, "static:10", opt)}
	var buf bytes.Buffer
	if err := WritePlot(&buf, rs); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one panel title per policy, three areas and a line each.
	dec := xml.NewDecoder(bytes.NewReader(buf.Bytes()))
	counts := map[string]int{}
	var texts []string
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("the plot is not well-formed XML: %v", err)
			}
			break
		}
		switch el := tok.(type) {
		case xml.StartElement:
			counts[el.Name.Local]++
		case xml.CharData:
			texts = append(texts, string(el))
		}
	}
	if counts["polygon"] != 3*len(rs) || counts["polyline"] != len(rs) {
		t.Errorf("elements %v; want 3 polygons and 1 polyline per policy", counts)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"webhook", "static:10", "busy agents", "waiting jobs", "12:00"} {
		if !strings.Contains(all, want) {
			t.Errorf("the plot has no text %q", want)
		}
	}
}

// BenchmarkWorkingDay simulates one generated working day (about 860 jobs)
// through the real scaler, per policy.
func BenchmarkWorkingDay(b *testing.B) {
	jobs := Generate(GenerateOptions{Seed: 1})
	opt := Options{Pool: testPool(60, 0), StartLatency: Latency{20 * time.Second, 40 * time.Second}, HookDelay: time.Second, Seed: 1}
	for _, policy := range []string{"webhook", "poll:30s", "static:20"} {
		b.Run(policy, func(b *testing.B) {
			for b.Loop() {
				mustRun(b, jobs, policy, opt)
			}
			b.ReportMetric(float64(len(jobs)), "jobs/op")
		})
	}
}
