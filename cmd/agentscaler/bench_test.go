package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/functions"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// The benchmarks of the whole path: service hooks through the real HTTP
// server, basic auth and dedup, the reconciles they trigger against the
// Azure DevOps emulator, and the provider. `make bench` runs them and
// prints their metrics one per line (tools/benchfmt).

const benchPool = "linux"

// BenchmarkServeHooks measures how many authenticated service hooks one
// serve handles per second on loopback, each with the reconcile it
// triggers, and how long from a waiting job's hook reaching the handler to
// the provider's Create call for that job (p50, p99). Every iteration is a
// batch of jobs queued at once, so the emulator posts their hooks
// concurrently; when every job of the batch has its create, the jobs finish
// and their instances exit, which posts one "completed" hook per job and
// keeps the pool under the 200 requests the job request list shows.
//
// A create issued before its own job's hook arrived (a reconcile triggered
// by an earlier hook already saw the job) counts as 0.
func BenchmarkServeHooks(b *testing.B) {
	const batch = 100
	emu := benchEmulator(b, adoemu.Options{})
	mem := memory.New(memory.Options{})
	creates := newCreateClock(mem)
	a := benchApp(b, emu, "memory", creates, 10*batch, time.Hour, "")
	hooks := newHookClock(a.handler())
	// serve's own server and timer, with the handler wrapped so that the
	// time is taken where a hook arrives.
	addr, _ := benchServe(b, func(ctx context.Context, onListen func(string)) error {
		defer a.scaler.Wait()
		return functions.Serve(ctx, functions.ServeOptions{
			Handler: hooks, Addr: "127.0.0.1:0", Getenv: a.getenv, Interval: a.cfg.Reconcile.Interval,
			Reconciler: a.scaler, Logger: a.log, OnListen: onListen,
		})
	})
	emu.Subscribe(adoemu.Subscription{URL: "http://" + addr + "/api/webhook/azuredevops", Username: "azdo", Password: testPassword})

	var jobs []int64
	start := time.Now()
	for b.Loop() {
		ids := make([]int64, batch)
		for i := range ids {
			ids[i] = emu.QueueJob("Default", adoemu.Job{Name: fmt.Sprintf("job-%d", len(jobs)+i)})
		}
		jobs = append(jobs, ids...)
		waitFor(b, time.Minute, "a create for every job of the batch", func() bool {
			for _, id := range ids {
				if _, ok := creates.first(ci.Requests.JobName(benchPool, id)); !ok {
					return false
				}
			}
			return true
		}, func() string { return fmt.Sprintf("%d instances created for %d jobs", creates.names(), len(jobs)) })
		for _, id := range ids {
			if err := emu.Finish(id, "succeeded"); err != nil {
				b.Fatal(err)
			}
			if err := mem.Exit(ci.Requests.JobName(benchPool, id), 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := emu.Quiesce(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	var latencies []time.Duration
	for _, d := range emu.Deliveries() {
		if d.JobState != adoemu.StateWaiting || d.Attempt != 1 {
			continue
		}
		if d.Status != http.StatusOK {
			b.Fatalf("hook for request %d answered %d", d.RequestID, d.Status)
		}
		received, ok := hooks.first(d.EventID)
		if !ok {
			b.Fatalf("hook %s never reached the handler", d.EventID)
		}
		created, _ := creates.first(ci.Requests.JobName(benchPool, d.RequestID))
		latencies = append(latencies, max(0, created.Sub(received)))
	}
	if len(latencies) != len(jobs) {
		b.Fatalf("%d waiting hooks delivered for %d jobs", len(latencies), len(jobs))
	}
	if st := mem.Stats(); st.Creates != len(jobs) {
		b.Fatalf("%d instances created for %d jobs", st.Creates, len(jobs))
	}
	answered := hooks.answered()
	b.ReportMetric(float64(answered), "hooks")
	b.ReportMetric(float64(answered)/elapsed.Seconds(), "hooks/s")
	b.ReportMetric(ms(percentile(latencies, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 99)), "p99-ms")
}

// BenchmarkBurst queues a burst of jobs at once. The emulator posts their
// hooks concurrently to a round-robin front (as the Functions front end
// spreads requests over instances) before four independent apps, each with
// its own scaler and coalescing, all sharing one provider. It reports the
// creates (one per job, or the cap), duplicates (instances beyond one per
// job: must be 0), the Azure DevOps calls the four apps made, and the time
// from the first job queued until the last create was issued and until
// every job had its agent.
//
// memory: 1,000 jobs; agents are simulated in process (simulatedAgents:
// register when the instance runs, take one job, go offline, exit). The
// job request list shows the oldest 200 unfinished requests only, so the
// scaler cannot see the 201st job before one of the first 200 finishes:
// every job here finishes as soon as its agent takes it, and the burst
// takes at least five passes, each driven by the "completed" hooks of the
// jobs before. "Has an agent" means assigned to one.
//
// docker: 200 jobs (all visible in one list) on a real engine; the
// containers run dockertest's waiter and never register as agents. "Has an
// agent" means its container is running.
func BenchmarkBurst(b *testing.B) {
	for _, jobs := range []int{1000, 5000} {
		name := "memory"
		if jobs != 1000 {
			name = fmt.Sprintf("memory-%d", jobs)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				mem := memory.New(memory.Options{})
				runBurst(b, burst{jobs: jobs, provider: "memory", prov: mem, sim: mem})
			}
		})
	}
	b.Run("docker", func(b *testing.B) {
		const jobs, image = 200, "agentscaler-bench-waiter:test"
		eng := dockertest.Shared(b)
		eng.WaiterImage(b, image)
		prov, err := docker.New(docker.Options{Host: eng.Host})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { prov.Close() })
		extra := fmt.Sprintf("    agent: {image: %s}\n    docker: {host: %s, network: none, pull: never}\n", image, eng.Host)
		for b.Loop() {
			runBurst(b, burst{jobs: jobs, provider: "docker", prov: prov, extra: extra})
			b.StopTimer()
			removeAll(b, prov)
			b.StartTimer()
		}
	})
}

// burst is one burst run's setup.
type burst struct {
	jobs     int
	provider string
	prov     providers.Provider
	extra    string           // pool YAML after capabilities
	sim      *memory.Provider // when set, simulate the agents of its instances
}

func runBurst(b *testing.B, bu burst) {
	const apps = 4
	emu := benchEmulator(b, adoemu.Options{AutoAssign: bu.sim != nil, ParallelJobs: 2 * bu.jobs})
	creates := newCreateClock(bu.prov)
	var backends []string
	var stops []func() error
	for range apps {
		a := benchApp(b, emu, bu.provider, creates, bu.jobs, burstTimer, bu.extra)
		addr, stop := benchServe(b, func(ctx context.Context, onListen func(string)) error {
			return a.serve(ctx, "127.0.0.1:0", onListen)
		})
		backends, stops = append(backends, addr), append(stops, stop)
	}
	front := roundRobin(b, backends)
	emu.Subscribe(adoemu.Subscription{URL: front + "/api/webhook/azuredevops", Username: "azdo", Password: testPassword})
	callsBefore := total(emu.Calls()) // the apps' first timer passes

	start := time.Now()
	for i := range bu.jobs {
		emu.QueueJob("Default", adoemu.Job{Name: fmt.Sprintf("job-%d", i)})
	}
	stopSim := func() int { return 0 }
	if bu.sim != nil {
		stopSim = simulate(b, emu, bu.sim)
	}
	// Instances made: the scaler may give a name back to a new instance
	// once the old one is gone, so the memory provider counts them; the
	// containers are all still there.
	made := creates.names
	if bu.sim != nil {
		made = func() int { return bu.sim.Stats().Creates }
	}
	var allCreated time.Time
	served := 0
	waitFor(b, 4*time.Minute, "every job to have an agent", func() bool {
		if allCreated.IsZero() && made() >= bu.jobs {
			allCreated = time.Now()
		}
		if bu.sim != nil {
			served = 0
			for _, r := range emu.Requests("Default") {
				if !r.AssignTime.IsZero() {
					served++
				}
			}
		} else {
			served = running(b, bu.prov)
		}
		return served >= bu.jobs
	}, func() string {
		return fmt.Sprintf("%d of %d jobs have an agent, %d instances created", served, bu.jobs, creates.names())
	})
	allServed := time.Since(start)
	agentCalls := stopSim()
	b.StopTimer()
	// Stop the apps, so that a late create would show in the counts.
	for _, stop := range stops {
		if err := stop(); err != nil {
			b.Errorf("serve: %v", err)
		}
	}

	calls := emu.Calls()
	if made() < bu.jobs {
		b.Fatalf("%d instances created for %d jobs", made(), bu.jobs)
	}
	// More instances than jobs breaks the promise of one agent per job;
	// reported rather than fatal, so the figures show by how much, and
	// the harness fails on it (tools/benchfmt).
	hooks := 0
	for _, d := range emu.Deliveries() {
		if d.Status == http.StatusOK {
			hooks++
		}
	}
	b.ReportMetric(float64(bu.jobs), "jobs")
	b.ReportMetric(float64(made()), "creates")
	b.ReportMetric(float64(creates.calls()), "create-calls")
	b.ReportMetric(float64(made()-bu.jobs), "duplicates")
	b.ReportMetric(float64(hooks), "hooks")
	b.ReportMetric(float64(total(calls)-callsBefore-agentCalls), "ado-calls")
	b.ReportMetric(float64(calls[adoemu.EndpointJobRequests]), "jobrequests-calls")
	b.ReportMetric(ms(allCreated.Sub(start)), "all-created-ms")
	b.ReportMetric(ms(allServed), "all-served-ms")
	// From the last waiting job's first hook to the moment every job had
	// its instance (negative: all were made before that hook arrived).
	var lastHook time.Time
	for _, d := range emu.Deliveries() {
		if d.JobState == adoemu.StateWaiting && d.Attempt == 1 && d.Time.After(lastHook) {
			lastHook = d.Time
		}
	}
	b.ReportMetric(ms(allCreated.Sub(lastHook)), "last-hook-to-all-created-ms")
	b.StartTimer()
}

// burstAgents plays, for memory instances, the agent in a container the
// way the real one runs with --once: it registers once its instance runs,
// takes the one job the service assigns it, and when the job is done goes
// offline, reports the result, unregisters itself over REST and exits.
// Names come back (the scaler may reuse a name for another request), so
// an instance is known by its name and creation time.
type burstAgents struct {
	emu     *adoemu.Emulator
	mem     *memory.Provider
	client  *azuredevops.Client
	poolID  int
	caps    map[string]string
	seen    map[string]bool
	deletes int // the agents' own REST calls, not the scaler's
}

func (s *burstAgents) step(ctx context.Context) error {
	list, err := s.mem.List(ctx, benchPool)
	if err != nil {
		return err
	}
	for _, in := range list {
		key := in.Name + "@" + in.Created.Format(time.RFC3339Nano)
		if in.State == providers.StateRunning && !s.seen[key] {
			s.seen[key] = true
			s.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: in.Name, Online: true, SystemCapabilities: s.caps})
		}
	}
	for _, a := range s.emu.Agents("Default") {
		if a.AssignedRequest == 0 {
			continue
		}
		if err := s.emu.SetAgentStatus("Default", a.Name, false); err != nil {
			return err
		}
		if err := s.emu.Finish(a.AssignedRequest, "succeeded"); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.client.DeleteAgent(cctx, s.poolID, a.ID)
		cancel()
		if err != nil {
			return fmt.Errorf("agent %s unregisters: %w", a.Name, err)
		}
		s.deletes++
		// The scaler may have removed the instance already: its request
		// is done and its agent gone.
		if err := s.mem.Exit(a.Name, 0); err != nil {
			if _, exists := s.mem.Get(a.Name); exists {
				return err
			}
		}
	}
	return nil
}

// simulate runs the agents every 10ms until the returned stop is called,
// which returns how many REST calls they made.
func simulate(b testing.TB, emu *adoemu.Emulator, mem *memory.Provider) (stop func() int) {
	client, err := azuredevops.NewClient(emu.OrgURL(), azuredevops.PAT(testPAT), azuredevops.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	sim := &burstAgents{emu: emu, mem: mem, client: client, poolID: emu.AddPool("Default"), caps: benchCaps(), seen: map[string]bool{}}
	stopSteps := every(10*time.Millisecond, func() bool {
		if err := sim.step(context.Background()); err != nil {
			b.Error(err)
			return false
		}
		return true
	})
	return func() int { stopSteps(); return sim.deletes }
}

// every calls f every d in a goroutine of its own until f returns false or
// the returned stop is called; stop returns once f no longer runs.
func every(d time.Duration, f func() bool) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if !f() {
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func running(b *testing.B, prov providers.Provider) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := prov.List(ctx, benchPool)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, in := range list {
		if in.State == providers.StateRunning {
			n++
		}
	}
	return n
}

// removeAll deletes the pool's instances, eight at a time.
func removeAll(b *testing.B, prov providers.Provider) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	list, err := prov.List(ctx, benchPool)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, in := range list {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := prov.Delete(ctx, in.Name); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

func benchCaps() map[string]string {
	return azuredevops.PoolCapabilities(map[string]string{"Agent.OS": "Linux", "docker": ""}, config.DefaultAgentVersion)
}

// benchEmulator runs the Azure DevOps emulator on loopback with pool
// Default, quiet, with a rate-limit budget no benchmark exhausts.
func benchEmulator(b *testing.B, opts adoemu.Options) *adoemu.Emulator {
	opts.PAT = testPAT
	opts.RateLimit = 1 << 30
	opts.Logger = slog.New(slog.DiscardHandler)
	emu := adoemu.New(opts)
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emu.Close)
	emu.AddPool("Default")
	return emu
}

// benchApp wires an app for pool linux against the emulator, with prov as
// its provider. It logs at info to nowhere, so the cost of formatting the
// logs a service writes is in the figures.
func benchApp(b *testing.B, emu *adoemu.Emulator, provider string, prov providers.Provider, maxAgents int, interval time.Duration, extra string) *app {
	path := filepath.Join(b.TempDir(), "agentscaler.yaml")
	body := fmt.Sprintf(`azuredevops: {url: %s, token_env: AZP_TOKEN}
webhook:
  basic_auth: {username: azdo, password_env: HOOK_PASSWORD}
reconcile: {interval: %s}
pools:
  - name: %s
    azure_pool: Default
    provider: %s
    max_agents: %d
    capabilities: {Agent.OS: Linux, docker: ""}
%s`, emu.OrgURL(), interval, benchPool, provider, maxAgents, extra)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path, testEnv)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := newApp(b.Context(), cfg, log, testEnv, deps{providers: map[string]providers.Provider{provider: prov}})
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// benchServe runs serve until the benchmark ends and returns its address
// and a stop function that ends it sooner.
func benchServe(b testing.TB, serve func(ctx context.Context, onListen func(string)) error) (string, func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, func(addr string) { listening <- addr }) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	b.Cleanup(func() {
		if err := stop(); err != nil {
			b.Errorf("serve: %v", err)
		}
	})
	select {
	case addr := <-listening:
		return addr, stop
	case err := <-done:
		b.Fatalf("serve: %v", err)
	}
	return "", stop
}

// roundRobin serves a reverse proxy on loopback that sends each request to
// the next of the backends, and returns its URL.
func roundRobin(b *testing.B, backends []string) string {
	var targets []*url.URL
	for _, addr := range backends {
		targets = append(targets, &url.URL{Scheme: "http", Host: addr})
	}
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[next.Add(1)%uint64(len(targets))])
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}
	srv := httptest.NewServer(proxy)
	b.Cleanup(srv.Close)
	return srv.URL
}

// createClock is the provider with the time of the first Create call of
// each name recorded; otherwise it is the provider itself.
type createClock struct {
	providers.Provider
	mu    sync.Mutex
	at    map[string]time.Time
	count int
}

func newCreateClock(p providers.Provider) *createClock {
	return &createClock{Provider: p, at: map[string]time.Time{}}
}

func (c *createClock) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	now := time.Now()
	c.mu.Lock()
	c.count++
	if _, ok := c.at[spec.Name]; !ok {
		c.at[spec.Name] = now
	}
	c.mu.Unlock()
	return c.Provider.Create(ctx, spec)
}

func (c *createClock) first(name string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[name]
	return t, ok
}

// names is how many names Create was called for; calls, how many calls.
func (c *createClock) names() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.at)
}

func (c *createClock) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// hookClock is serve's handler with the arrival time of each service hook
// recorded by its event id, and the 2xx answers counted.
type hookClock struct {
	next http.Handler
	mu   sync.Mutex
	at   map[string]time.Time
	ok   int
}

func newHookClock(next http.Handler) *hookClock {
	return &hookClock{next: next, at: map[string]time.Time{}}
}

func (h *hookClock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	// The handler bounds the body at 1 MiB itself; one byte more keeps
	// that check meaningful.
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &ev) // a body that is not JSON is the handler's to refuse
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	h.next.ServeHTTP(sw, r)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, seen := h.at[ev.ID]; !seen && ev.ID != "" {
		h.at[ev.ID] = now
	}
	if sw.status >= 200 && sw.status < 300 {
		h.ok++
	}
}

func (h *hookClock) first(id string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.at[id]
	return t, ok
}

func (h *hookClock) answered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// waitFor polls cond every few milliseconds until it holds, failing the
// benchmark after limit with what progress says.
func waitFor(b *testing.B, limit time.Duration, what string, cond func() bool, progress func() string) {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting for %s: %s", limit, what, progress())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func total(calls map[string]int) int {
	n := 0
	for _, c := range calls {
		n += c
	}
	return n
}

// burstTimer is the apps' reconcile interval in the bursts: the safety net
// that serves the jobs no hook's reconcile saw.
const burstTimer = 2 * time.Second
