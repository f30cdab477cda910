package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/metrics/metricstest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// reconcileNow runs a timer pass of every pool at once, as serve's timer
// does every interval, and returns once every pool has been reconciled.
// (POST /reconcile is the Functions host's alone: a standalone serve answers
// it 404.)
func reconcileNow(t *testing.T, s *served) {
	t.Helper()
	for i, err := range s.app.scaler.RunAll(t.Context()) {
		if err != nil {
			t.Fatalf("reconcile of pool %s: %v", s.app.scaler.Pools()[i], err)
		}
	}
}

// truth is what the emulator and the memory provider hold for pool linux,
// counted here without the scaler's code: the numbers the gauges must show.
type truth struct {
	waiting                          int // waiting jobs the pool's agents can serve
	starting, idle, busy, registered int // instances by their agent's state
}

func observeTruth(t *testing.T, emu *adoemu.Emulator, mem *memory.Provider) truth {
	t.Helper()
	// The capabilities writeConfig gives pool linux.
	caps := azuredevops.PoolCapabilities(map[string]string{"Agent.OS": "Linux", "docker": ""}, config.DefaultAgentVersion)
	var tr truth
	for _, r := range emu.Requests("Default") {
		if ok, _ := azuredevops.Satisfies(caps, r.Demands); ok && r.State() == adoemu.StateWaiting {
			tr.waiting++
		}
	}
	agents := map[string]adoemu.Agent{}
	for _, a := range emu.Agents("Default") {
		agents[a.Name] = a
	}
	for _, in := range mem.All() {
		a, ok := agents[in.Name]
		switch {
		case in.State.Done():
		case ok && a.AssignedRequest != 0:
			tr.busy++
		case ok && a.Online:
			tr.idle++
		default:
			tr.starting++
		}
		if ok {
			tr.registered++
		}
	}
	return tr
}

// wantTruth checks the scenario is where the test thinks it is, then waits
// for Prometheus to have scraped the same numbers from serve.
func wantTruth(t *testing.T, prom *metricstest.Prometheus, emu *adoemu.Emulator, mem *memory.Provider, want truth) {
	t.Helper()
	if got := observeTruth(t, emu, mem); got != want {
		t.Fatalf("emulator and provider hold %+v, the test expected %+v", got, want)
	}
	prom.WaitFor(t, `agentscaler_waiting_jobs{pool="linux"}`, strconv.Itoa(want.waiting))
	for state, n := range map[string]int{metrics.AgentStarting: want.starting, metrics.AgentIdle: want.idle, metrics.AgentBusy: want.busy} {
		prom.WaitFor(t, fmt.Sprintf(`agentscaler_agents{pool="linux",state=%q}`, state), strconv.Itoa(n))
	}
}

// TestPrometheusScrapesServe runs the real Prometheus (Debian `prometheus`)
// scraping `serve` on loopback while the emulator loop runs, and reads the
// waiting jobs and agents back through the Prometheus query API at each step
// of a job's life: they match what the emulator and the provider hold.
func TestPrometheusScrapesServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	emu := startEmulator(t, adoemu.Options{})
	s := startServe(t, emu)
	emu.Subscribe(adoemu.Subscription{URL: s.url + "/api/webhook/azuredevops", Username: "azdo", Password: testPassword})
	prom := metricstest.StartPrometheus(t, s.url+"/api/metrics")
	prom.WaitFor(t, `up{job="agentscaler"}`, "1")
	// serve's own timer reconciled the empty pool at start.
	wantTruth(t, prom, emu, s.mem, truth{})

	// Three jobs this pool serves and one it does not: the service hooks
	// create an instance for each of the three.
	var ids []int64
	for i := range 3 {
		ids = append(ids, emu.QueueJob("Default", adoemu.Job{Name: fmt.Sprintf("build-%d", i), Demands: []string{"docker"}}))
	}
	emu.QueueJob("Default", adoemu.Job{Name: "windows", Demands: []string{"Agent.OS -equals Windows_NT"}})
	eventually(t, "an instance per servable job", func() bool { return len(s.mem.All()) == 3 })
	reconcileNow(t, s)
	wantTruth(t, prom, emu, s.mem, truth{waiting: 3, starting: 3})

	// Two agents come online; the first takes its job.
	caps := map[string]string{"Agent.OS": "Linux", "docker": ""}
	for _, id := range ids[:2] {
		emu.RegisterAgent("Default", adoemu.AgentInfo{Name: ci.Requests.JobName("linux", id), Online: true, SystemCapabilities: caps})
	}
	if err := emu.Assign(ids[0], ci.Requests.JobName("linux", ids[0])); err != nil {
		t.Fatal(err)
	}
	reconcileNow(t, s)
	wantTruth(t, prom, emu, s.mem, truth{waiting: 2, starting: 1, idle: 1, busy: 1, registered: 2})
	prom.WaitFor(t, `agentscaler_agent_created_to_online_seconds_count{pool="linux"}`, "2")
	prom.WaitFor(t, `agentscaler_job_queued_to_assigned_seconds_count{pool="linux"}`, "1")

	// The job ends as `--once` ends it: offline, result, exit. The completed
	// hook has the instance deleted and the agent unregistered.
	first := ci.Requests.JobName("linux", ids[0])
	if err := emu.SetAgentStatus("Default", first, false); err != nil {
		t.Fatal(err)
	}
	if err := emu.Finish(ids[0], "succeeded"); err != nil {
		t.Fatal(err)
	}
	if err := s.mem.Exit(first, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the finished job's instance deleted", func() bool { _, ok := s.mem.Get(first); return !ok })
	reconcileNow(t, s)
	wantTruth(t, prom, emu, s.mem, truth{waiting: 2, starting: 1, idle: 1, registered: 1})
	prom.WaitFor(t, `agentscaler_job_duration_seconds_count{pool="linux"}`, "1")
}

// served is a `serve` the test stops itself.
type served struct {
	app  *app
	url  string
	mem  *memory.Provider
	logs *syncbuf.Buffer
	stop func() error // ends serve and returns its error
}

// serveWithEnv runs serve for the memory pool of writeConfig against the
// emulator, with the test's variables plus env.
func serveWithEnv(t *testing.T, emu *adoemu.Emulator, env map[string]string) *served {
	t.Helper()
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return testEnv(k)
	}
	cfg, err := config.Load(writeConfig(t, emu.OrgURL(), ""), getenv)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mem := memory.New(memory.Options{})
	a, err := newApp(t.Context(), cfg, log, getenv, deps{providers: map[string]providers.Provider{"memory": mem}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, "127.0.0.1:0", func(addr string) { listening <- addr }) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case addr := <-listening:
		return &served{app: a, url: "http://" + addr, mem: mem, logs: logs, stop: stop}
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return nil
}

// TestPushModeThroughServe: with AGENTSCALER_PUSHGATEWAY_URL and basic-auth
// variables set, serve pushes after its reconcile to the real Pushgateway
// (Debian `prometheus-pushgateway`, requiring basic auth), under the
// instance's own group, and deletes the group when it shuts down.
func TestPushModeThroughServe(t *testing.T) {
	g := metricstest.StartPushgateway(t, true)
	emu := startEmulator(t, adoemu.Options{})
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	const instance = "fn-test-1"
	s := serveWithEnv(t, emu, map[string]string{
		config.EnvPushURL:      g.URL,
		config.EnvPushUsername: metricstest.GatewayUser,
		config.EnvPushPassword: metricstest.GatewayPassword,
		config.EnvPushInstance: instance,
	})
	group := map[string]string{"job": metrics.PushJob, "instance": instance, "pool": "linux"}

	// serve's timer reconciles once at start; its push carries the truth.
	eventually(t, "the group on the gateway", func() bool { _, ok := g.Value(t, "agentscaler_waiting_jobs", group); return ok })
	if v, _ := g.Value(t, "agentscaler_waiting_jobs", group); v != 2 {
		t.Errorf("pushed agentscaler_waiting_jobs = %v, want 2", v)
	}
	if v, ok := g.Value(t, "agentscaler_reconciles_total", map[string]string{"instance": instance, "outcome": "ok"}); !ok || v < 1 {
		t.Errorf("pushed agentscaler_reconciles_total{outcome=ok} = %v (found %v), want at least 1", v, ok)
	}

	if err := s.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if v, ok := g.Value(t, "agentscaler_waiting_jobs", group); ok {
		t.Errorf("agentscaler_waiting_jobs = %v still on the gateway after serve stopped", v)
	}
	logs := s.logs.String()
	if strings.Contains(logs, metricstest.GatewayPassword) || strings.Contains(logs, testPAT) {
		t.Errorf("a secret appears in the logs:\n%s", logs)
	}
	if !strings.Contains(logs, "deleted this instance's group") {
		t.Errorf("no log of the group's deletion:\n%s", logs)
	}
}

// TestPushNeverHoldsReconcile points push mode at a stand-in for a
// Pushgateway that has stopped answering: reconciles still complete while a
// push hangs, and shutdown still ends.
func TestPushNeverHoldsReconcile(t *testing.T) {
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	var pushes atomic.Int32
	gateway := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pushes.Add(1)
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "gateway unavailable", http.StatusServiceUnavailable)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gateway.Serve(ln) }()
	t.Cleanup(func() { _ = gateway.Close() })

	emu := startEmulator(t, adoemu.Options{})
	s := serveWithEnv(t, emu, map[string]string{config.EnvPushURL: "http://" + ln.Addr().String(), config.EnvPushInstance: "fn-test-2"})
	select {
	case <-arrived: // the push after serve's first reconcile, now hanging
	case <-time.After(metricstest.Wait):
		t.Fatal("no push arrived")
	}
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	reconcileNow(t, s)
	if got := len(s.mem.All()); got != 1 {
		t.Errorf("%d instances after the reconcile, want 1", got)
	}
	// Had the reconcile waited for a push, it could only have returned once
	// the hanging push ran into its deadline and its own push was made.
	if n := pushes.Load(); n != 1 {
		t.Errorf("%d pushes reached the gateway before the reconcile returned, want 1 (the one still hanging)", n)
	}
	close(release)
	if err := s.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestPushSettingsValidated: `validate` checks the push variables too, each
// problem naming its variable and never repeating a secret.
func TestPushSettingsValidated(t *testing.T) {
	path := writeConfig(t, "http://127.0.0.1:1/contoso", "")
	validate := func(env map[string]string) (string, error) {
		var stdout, stderr strings.Builder
		err := run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr, func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			return testEnv(k)
		})
		return stdout.String(), err
	}
	const secret = "push-5ecret-do-not-log"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"not a URL", map[string]string{config.EnvPushURL: "pushgateway:9091/" + secret}, []string{config.EnvPushURL, "http://pushgateway:9091"}},
		{"not http", map[string]string{config.EnvPushURL: "ftp://u:" + secret + "@pushgateway:9091"}, []string{config.EnvPushURL}},
		{"password alone", map[string]string{config.EnvPushURL: "http://pushgateway:9091", config.EnvPushPassword: secret}, []string{config.EnvPushPassword, config.EnvPushUsername}},
	} {
		_, err := validate(tc.env)
		if err == nil {
			t.Errorf("%s: validate accepted it", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want it to mention %s", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error repeats the secret: %v", tc.name, err)
		}
	}
	out, err := validate(map[string]string{config.EnvPushURL: "https://pushgateway.example:9091", config.EnvPushUsername: "pusher", config.EnvPushPassword: secret, config.EnvPushInstance: "fn-1"})
	if err != nil {
		t.Fatalf("validate refused good push settings: %v", err)
	}
	if want := "metrics pushed to https://pushgateway.example:9091 instance=fn-1"; !strings.Contains(out, want) || strings.Contains(out, secret) {
		t.Errorf("validate output %q, want %q and no password", out, want)
	}
}

// TestReconcileCommandPushes: a one-shot `agentscaler reconcile` (a cron
// job) pushes its pass to the real Pushgateway before it exits and leaves
// the group there for the scraper; a dry run pushes nothing.
func TestReconcileCommandPushes(t *testing.T) {
	g := metricstest.StartPushgateway(t, false)
	emu := startEmulator(t, adoemu.Options{})
	for range 3 {
		emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	}
	path := writeConfig(t, emu.OrgURL(), "")
	env := map[string]string{config.EnvPushURL: g.URL, config.EnvPushInstance: "cron-1"}
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return testEnv(k)
	}
	group := map[string]string{"job": metrics.PushJob, "instance": "cron-1", "pool": "linux"}
	reconcile := func(args ...string) {
		t.Helper()
		var stdout, stderr strings.Builder
		if err := run(context.Background(), append([]string{"reconcile", "--config", path}, args...), &stdout, &stderr, getenv); err != nil {
			t.Fatalf("reconcile %v: %v\n%s", args, err, stderr.String())
		}
	}

	reconcile("--dry-run")
	if v, ok := g.Value(t, "agentscaler_waiting_jobs", group); ok {
		t.Errorf("the dry run pushed agentscaler_waiting_jobs = %v", v)
	}
	reconcile()
	if v, ok := g.Value(t, "agentscaler_waiting_jobs", group); !ok || v != 3 {
		t.Errorf("pushed agentscaler_waiting_jobs = %v (found %v), want 3", v, ok)
	}
}
