package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

// TestMain shares one private Docker engine, and one Kubernetes control
// plane with its node, between the package's tests.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(kubeMain{m})) }

// kubeMain runs the tests under kubetest.Main, which stops the control
// plane when they end.
type kubeMain struct{ m *testing.M }

func (k kubeMain) Run() int { return kubetest.Main(k.m) }

// e2eJob is a job of the end-to-end workload and the pool that must serve it.
type e2eJob struct {
	azurePool string
	demands   []string
	runs      time.Duration
	servedBy  string // our pool whose agents match, "" when none does
}

// TestDockerEndToEnd runs the whole loop on a real engine: the emulator
// posts service hooks (each delivered twice) to serve, which starts
// containers running this very binary as the stand-in agent; each agent
// registers, takes one job, reports it and unregisters. Every job must run
// exactly once on an agent of a pool that matches it, jobs nobody matches
// get no agent, an idle static agent that matches no job holds none back,
// and nothing of ours is left afterwards.
func TestDockerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 17 containers")
	}
	const image = "agentscaler-e2e-agent:test"
	eng, prov := testAgentImage(t, image)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	emu := startEmulator(t, adoemu.Options{AutoAssign: true, ParallelJobs: 50})
	emu.AddPool("Tools")
	// A static agent that is not ours sits idle in the Tools pool and takes
	// none of its jobs: every tools job must still get an agent of ours.
	emu.RegisterAgent("Tools", adoemu.AgentInfo{Name: "win-build-01", Online: true, OSDescription: "Windows",
		SystemCapabilities: map[string]string{"Agent.OS": "Windows_NT"}})
	cfgPath := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, e2eConfigHead+`pools:
  - name: linux
    azure_pool: Default
    provider: docker
    max_agents: 8
    capabilities: {Agent.OS: Linux, docker: ""}
    agent: {image: %[2]s, env: {docker: "true"}}
    docker: {host: %[3]s, network: host, pull: never, token_file: true}
  - name: tools
    azure_pool: Tools
    provider: docker
    max_agents: 4
    capabilities: {java: ""}
    agent: {image: %[2]s, env: {java: "17"}}
    docker: {host: %[3]s, network: host, pull: never}
`, emu.OrgURL(), image, eng.Host), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := serveForTest(t, cfgPath, emu)

	began := time.Now()
	jobs := map[int64]e2eJob{}
	queue := func(j e2eJob) {
		id := emu.QueueJob(j.azurePool, adoemu.Job{Name: fmt.Sprintf("job-%d", len(jobs)+1), Demands: j.demands, Duration: j.runs})
		jobs[id] = j
	}
	for i := range 8 {
		queue(e2eJob{"Default", []string{"docker"}, time.Duration(1+i%2) * time.Second, "linux"})
	}
	for range 3 {
		queue(e2eJob{"Default", nil, time.Second, "linux"})
	}
	for range 2 {
		queue(e2eJob{"Default", []string{"Agent.OS -equals Linux", "Agent.Version -gtVersion 3.0.0"}, time.Second, "linux"})
	}
	queue(e2eJob{"Default", []string{"cuda"}, time.Second, ""})
	queue(e2eJob{"Default", []string{"Agent.OS -equals Windows_NT"}, time.Second, ""})
	for range 4 {
		queue(e2eJob{"Tools", []string{"java"}, time.Second, "tools"})
	}
	queue(e2eJob{"Tools", []string{"docker"}, time.Second, ""}) // the tools agents have no docker
	if len(jobs) != 20 {
		t.Fatalf("queued %d jobs, want 20", len(jobs))
	}

	// Deliver every first hook twice, as Azure DevOps does when an answer
	// is slow: the second copy must change nothing.
	redelivered := map[string]bool{}
	seen := map[string]providers.Instance{} // every instance ever listed
	inspected := map[string]bool{}
	poll := func() (left int) {
		for _, d := range emu.Deliveries() {
			if d.Attempt == 1 && !redelivered[d.EventID] {
				redelivered[d.EventID] = true
				if err := emu.Redeliver(d.EventID); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, pool := range []string{"linux", "tools"} {
			lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
			list, err := prov.List(lctx, pool)
			lcancel()
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range list {
				if prev, ok := seen[in.Name]; !ok || prev.Started.IsZero() {
					seen[in.Name] = in
				}
				// The token reaches the agent as a file: docker inspect,
				// which anyone with the engine's socket can run, never
				// shows it.
				if key := in.Name + in.Created.String(); !inspected[key] {
					inspected[key] = true
					if raw, err := eng.Inspect(ctx, in.Name); err == nil && bytes.Contains(raw, []byte(testPAT)) {
						t.Errorf("docker inspect %s shows the token", in.Name)
					}
				}
			}
			left += len(list)
		}
		return left
	}
	for {
		left := poll()
		done, ours := 0, 0
		var pending []string // what is not done yet, to say why when time is up
		for _, pool := range []string{"Default", "Tools"} {
			for _, r := range emu.Requests(pool) {
				if r.State() == adoemu.StateCompleted {
					done++
				} else {
					pending = append(pending, fmt.Sprintf("request %d %v: %s on %q", r.ID, r.Demands, r.State(), r.Agent))
				}
			}
			for _, ag := range emu.Agents(pool) {
				if isOurs(ag.Name) {
					ours++
					pending = append(pending, fmt.Sprintf("agent %s: online %v, request %d, session %q", ag.Name, ag.Online, ag.AssignedRequest, ag.SessionID))
				}
			}
		}
		if done == 17 && left == 0 && ours == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not done in time: %d of 17 jobs done, %d instances and %d agents of ours left: %s", done, left, ours, strings.Join(pending, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every servable job ran exactly once, on an agent of its pool; the
	// others got none.
	ran := map[string][]int64{} // agent name -> the requests it ran
	var hookToRunning, runningToStarted []time.Duration
	for _, pool := range []string{"Default", "Tools"} {
		for _, r := range emu.Requests(pool) {
			j := jobs[r.ID]
			if j.servedBy == "" {
				if r.State() != adoemu.StateWaiting || r.Agent != "" {
					t.Errorf("request %d (%v) nobody matches: state %s, agent %q", r.ID, j.demands, r.State(), r.Agent)
				}
				continue
			}
			if r.Result != "succeeded" || !strings.HasPrefix(r.Agent, j.servedBy+"-r") {
				t.Errorf("request %d (%v): result %q on agent %q, want succeeded on a %s agent", r.ID, j.demands, r.Result, r.Agent, j.servedBy)
			}
			ran[r.Agent] = append(ran[r.Agent], r.ID)
			if r.FinishTime.Sub(r.ReceiveTime) < j.runs {
				t.Errorf("request %d ran %s, want at least %s", r.ID, r.FinishTime.Sub(r.ReceiveTime), j.runs)
			}
			// Per container: from the hook of the request it was made for
			// to running, and from running to starting the job it took
			// (an agent made for one request may take an older one).
			if in, ok := seen[r.Agent]; ok && !in.Started.IsZero() {
				hookToRunning = append(hookToRunning, in.Started.Sub(firstHook(emu, in.Request)))
				runningToStarted = append(runningToStarted, r.ReceiveTime.Sub(in.Started))
			}
		}
	}
	// One container per servable job, each running exactly one: a second
	// agent for any job shows as an extra container. A name may come back
	// (an agent made for one job took another, and its job got a new agent
	// under that name), so containers are counted from the engine's record
	// of creations, not by name.
	created, err := eng.Created(ctx, began)
	if err != nil {
		t.Fatal(err)
	}
	containers := map[string]int{}
	for _, name := range created {
		if isOurs(name) {
			containers[name]++
		}
	}
	if n := sum(maps.Values(containers)); n != 17 {
		t.Errorf("%d containers were created, want 17 (one per servable job): %v", n, containers)
	}
	for _, name := range slices.Sorted(maps.Keys(containers)) {
		if got, want := len(ran[name]), containers[name]; got != want {
			t.Errorf("%d container(s) named %s ran %d job(s) %v, want one job each", want, name, got, ran[name])
		}
	}
	for name, ids := range ran {
		if containers[name] == 0 {
			t.Errorf("agent %s ran %v but no container of that name was created", name, ids)
		}
	}
	if len(inspected) < 17 {
		t.Errorf("%d containers inspected, want every one of the 17", len(inspected))
	}
	// Nor does the metrics exposition, which anyone who can reach it reads.
	resp, err := http.Get("http://" + addr + "/api/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{testPAT, testPassword} {
		if bytes.Contains(exposition, []byte(secret)) {
			t.Errorf("a secret appears in /api/metrics")
		}
	}
	if !bytes.Contains(exposition, []byte("agentscaler_agents")) {
		t.Errorf("/api/metrics answered without the agents gauge: %.200s", exposition)
	}
	answered := map[string]int{} // event -> deliveries answered 200
	for _, d := range emu.Deliveries() {
		if d.Status == 200 {
			answered[d.EventID]++
		}
	}
	for ev := range redelivered {
		if answered[ev] < 2 {
			t.Errorf("event %s: %d deliveries answered 200, want the original and its copy", ev, answered[ev])
		}
	}
	if len(hookToRunning) > 0 {
		t.Logf("median hook received -> container running: %s; container running -> job started: %s (%d jobs)",
			median(hookToRunning).Round(time.Millisecond), median(runningToStarted).Round(time.Millisecond), len(hookToRunning))
	}
}

// testAgentImage imports an image of this binary (without nodemo, so it
// runs the demo's test-agent command) into the shared private engine, and
// returns the engine and a provider on it.
func testAgentImage(t *testing.T, image string) (*dockertest.Engine, *docker.Provider) {
	t.Helper()
	eng := dockertest.Shared(t)
	prov, err := docker.New(docker.Options{Host: eng.Host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Close() })
	bin, err := os.ReadFile(buildBinary(t, "lambda.norpc"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := prov.ImportImage(ctx, image, docker.Image{
		Files:      map[string][]byte{agentImagePath: bin},
		Entrypoint: []string{agentImagePath, testAgentCommand},
	}); err != nil {
		t.Fatal(err)
	}
	return eng, prov
}

// startApp runs serve of a new app for cfg on a loopback port, as the
// binary does, until stop, which returns serve's error.
func startApp(t *testing.T, cfg *config.Config, log *slog.Logger, getenv func(string) string) (addr string, stop func() error) {
	t.Helper()
	a, err := newApp(t.Context(), cfg, log, getenv, deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // a test that stops early stops serve too
	listening, served := make(chan string, 1), make(chan error, 1)
	go func() { served <- a.serve(ctx, "127.0.0.1:0", func(addr string) { listening <- addr }) }()
	select {
	case addr = <-listening:
	case err := <-served:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	return addr, func() error { cancel(); return <-served }
}

func sum(values iter.Seq[int]) int {
	n := 0
	for v := range values {
		n += v
	}
	return n
}

func isOurs(name string) bool {
	for _, pool := range []string{"linux", "tools"} {
		if strings.HasPrefix(name, pool+"-") && name != pool+"-placeholder" {
			return true
		}
	}
	return false
}

// firstHook is when the first delivery of the request's waiting event was
// made: on loopback, when serve received it.
func firstHook(emu *adoemu.Emulator, request int64) time.Time {
	for _, d := range emu.Deliveries() {
		if d.RequestID == request && d.JobState == adoemu.StateWaiting {
			return d.Time
		}
	}
	return time.Time{}
}

// serveForTest runs serve with the configuration file on a loopback port
// and subscribes the emulator's service hooks to it. When the test ends it
// stops serve, fails the test if a secret appears in the logs, and shows
// the logs of a failed test.
func serveForTest(t *testing.T, cfgPath string, emu *adoemu.Emulator) (addr string, logs *syncbuf.Buffer) {
	t.Helper()
	cfg, err := config.Load(cfgPath, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	addr, stopServe := startApp(t, cfg, log, testEnv)
	t.Cleanup(func() {
		if err := stopServe(); err != nil {
			t.Errorf("serve: %v", err)
		}
		for _, secret := range []string{testPAT, testPassword} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret appears in the logs")
			}
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	emu.Subscribe(adoemu.Subscription{URL: "http://" + addr + "/api/webhook/azuredevops", Username: "azdo", Password: testPassword})
	return addr, logs
}

// e2eConfigHead is the start of an end-to-end test's configuration: the
// emulator at the first argument, serve's hooks, a 2s reconcile.
const e2eConfigHead = `azuredevops:
  url: %[1]s
  token_env: AZP_TOKEN
webhook:
  basic_auth: {username: azdo, password_env: HOOK_PASSWORD}
reconcile:
  interval: 2s
`
