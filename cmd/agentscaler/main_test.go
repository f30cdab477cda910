package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/providers/memory"
)

const (
	testPAT      = "pat-5ecret-do-not-log"
	testPassword = "hook-5ecret-do-not-log"
)

func testEnv(k string) string {
	return map[string]string{"AZP_TOKEN": testPAT, "HOOK_PASSWORD": testPassword}[k]
}

// startEmulator runs the Azure DevOps emulator on loopback with one pool.
func startEmulator(t *testing.T, opts adoemu.Options) *adoemu.Emulator {
	t.Helper()
	opts.PAT = testPAT
	if opts.RetryBase == 0 {
		opts.RetryBase = 20 * time.Millisecond
	}
	emu := adoemu.New(opts)
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	emu.AddPool("Default")
	return emu
}

// writeConfig writes a configuration file for one memory pool against the emulator.
func writeConfig(t *testing.T, orgURL string, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	body := fmt.Sprintf(`azuredevops:
  url: %s
  token_env: AZP_TOKEN
webhook:
  basic_auth: {username: azdo, password_env: HOOK_PASSWORD}
reconcile:
  interval: 1h
pools:
  - name: linux
    azure_pool: Default
    provider: memory
    max_agents: 10
    capabilities: {Agent.OS: Linux, docker: ""}
%s`, orgURL, extra)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServe runs serve for the memory pool of writeConfig against the
// emulator, and checks when the test ends that it stopped cleanly and
// logged no secret.
func startServe(t *testing.T, emu *adoemu.Emulator) *served {
	t.Helper()
	s := serveWithEnv(t, emu, nil)
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
		for _, secret := range []string{testPAT, testPassword} {
			if strings.Contains(s.logs.String(), secret) {
				t.Errorf("a secret appears in the logs")
			}
		}
	})
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func instanceNames(mem *memory.Provider) []string {
	var names []string
	for _, in := range mem.All() {
		names = append(names, in.Name)
	}
	return names
}

// TestLoop: emulator + serve + memory provider. Service hooks in, exactly one
// instance per matching waiting job out; a repeated delivery changes nothing.
func TestLoop(t *testing.T) {
	emu := startEmulator(t, adoemu.Options{})
	s := startServe(t, emu)
	emu.Subscribe(adoemu.Subscription{URL: s.url + "/api/webhook/azuredevops", Username: "azdo", Password: testPassword})

	var want []string
	for i := range 12 {
		demands := []string{"docker"}
		if i%4 == 3 {
			demands = []string{"Agent.OS -equals Windows_NT"} // no pool here serves it
		}
		id := emu.QueueJob("Default", adoemu.Job{Name: fmt.Sprintf("job-%d", i), Demands: demands})
		if i%4 != 3 {
			want = append(want, ci.Requests.JobName("linux", id))
		}
	}
	slices.Sort(want)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := emu.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "one instance per matching job", func() bool { return len(s.mem.All()) >= len(want) })

	before := s.mem.Stats()
	deliveries := emu.Deliveries()
	if len(deliveries) == 0 {
		t.Fatal("no service hook was delivered")
	}
	for _, d := range deliveries {
		if d.Status != http.StatusOK {
			t.Errorf("delivery %s answered %d, want 200", d.EventID, d.Status)
		}
	}
	if err := emu.Redeliver(deliveries[0].EventID); err != nil {
		t.Fatal(err)
	}
	if err := emu.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let a wrongly triggered reconcile show itself
	got := instanceNames(s.mem)
	if !slices.Equal(got, want) {
		t.Errorf("instances:\n got  %v\n want %v", got, want)
	}
	if after := s.mem.Stats(); after.Creates != before.Creates || after.Creates != len(want) {
		t.Errorf("creates: %d before the repeated delivery, %d after, want %d", before.Creates, after.Creates, len(want))
	}
	last := emu.Deliveries()
	if d := last[len(last)-1]; d.EventID != deliveries[0].EventID || d.Status != http.StatusOK {
		t.Errorf("repeated delivery: %+v", d)
	}
	// Twelve hooks, coalesced: far fewer job-request reads than hooks.
	if calls := emu.Calls()["jobrequests"]; calls > 8 {
		t.Errorf("%d job-request reads for 12 hooks: triggers are not coalescing", calls)
	}
	for _, in := range s.mem.All() {
		if in.Request == 0 || ci.Requests.JobName("linux", in.Request) != in.Name {
			t.Errorf("instance %s carries request %d", in.Name, in.Request)
		}
	}
}

// waitingHook is a job-state-changed service hook for a waiting job, with
// this id, from this organization.
func waitingHook(id, org string) string {
	return fmt.Sprintf(`{"subscriptionId":"00000000-0000-0000-0000-000000000001","notificationId":1,"id":%q,
"eventType":"ms.vss-pipelines.job-state-changed-event","publisherId":"pipelines",
"resource":{"job":{"id":"1b2c3d4e-0000-0000-0000-000000000000","name":"Build","state":"waiting"}},
"resourceVersion":"5.1-preview.1","resourceContainers":{"account":{"id":"a","baseUrl":%q}},"createdDate":"2026-11-23T09:00:00.000Z"}`, id, org)
}

// TestServeAnswers checks the webhook's statuses through the real server.
func TestServeAnswers(t *testing.T) {
	emu := startEmulator(t, adoemu.Options{})
	s := startServe(t, emu)
	hook := func(id string) string { return waitingHook(id, emu.OrgURL()+"/") }
	post := func(body string, auth bool) int {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/api/webhook/azuredevops", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		if auth {
			req.SetBasicAuth("azdo", testPassword)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name string
		body string
		auth bool
		want int
	}{
		{"no credentials", hook("e1"), false, http.StatusUnauthorized},
		{"too large", `{"id":"x","eventType":"` + strings.Repeat("a", 1<<20) + `"}`, true, http.StatusRequestEntityTooLarge},
		{"broken json", `{"id":`, true, http.StatusBadRequest},
		{"unrelated event", `{"id":"e0","eventType":"git.push","resource":{}}`, true, http.StatusAccepted},
		{"job waiting", hook("e2"), true, http.StatusOK},
		{"repeat", hook("e2"), true, http.StatusOK},
		{"same organization, other case", waitingHook("e3", strings.ToUpper(emu.OrgURL())), true, http.StatusOK},
		{"another organization", waitingHook("e4", "https://dev.azure.com/fabrikam/"), true, http.StatusAccepted},
	}
	for _, tc := range tests {
		if got := post(tc.body, tc.auth); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	resp, err := http.Get(s.url + "/api/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`agentscaler_webhook_requests_total{event="job_state_changed",outcome="accepted",source="azuredevops"} 2`,
		`agentscaler_webhook_requests_total{event="job_state_changed",outcome="other_organization",source="azuredevops"} 1`,
		`agentscaler_webhook_requests_total{event="job_state_changed",outcome="duplicate",source="azuredevops"} 1`,
		`outcome="unauthorized"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAnonymousReconcileFloodCostsNothing: a standalone serve runs its timer
// in process, so POST /reconcile is not served there: 2,000 anonymous posts
// through the real server get a 404 that names no pool, and, with 2,000
// anonymous service hooks (401) among them, cause no reconcile, no Azure
// DevOps call and no log line at info or above.
func TestAnonymousReconcileFloodCostsNothing(t *testing.T) {
	emu := startEmulator(t, adoemu.Options{})
	s := startServe(t, emu)
	const reconciled = `agentscaler_reconciles_total{outcome="ok",pool="linux"}`
	metricsNow := func() string {
		resp, err := http.Get(s.url + "/api/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The start-up pass, once it has ended: its summary is the last line it logs.
	eventually(t, "the start-up reconcile", func() bool { return strings.Contains(s.logs.String(), "msg=reconciled") })
	if v := metricValue(metricsNow(), reconciled); v != "1" {
		t.Fatalf("%s = %q after the start-up pass, want 1", reconciled, v)
	}
	hook := waitingHook("2b9e7c51-8d3f-4a6e-b1c0-7f5d4e3a2c19", emu.OrgURL()+"/") // posted below without credentials
	callsBefore, logsBefore := emu.Calls(), loggedAboveDebug(s.logs.String())

	const flood = 2000
	client := &http.Client{Timeout: 30 * time.Second}
	statuses := map[int]int{}
	for range flood {
		for _, req := range []struct{ path, body string }{
			{"/reconcile", `{"Data":{},"Metadata":{}}`},
			{"/api/webhook/azuredevops", hook},
		} {
			resp, err := client.Post(s.url+req.path, "application/json", strings.NewReader(req.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses[resp.StatusCode]++
			if strings.Contains(string(b), "linux") {
				t.Fatalf("the answer to %s names a pool: %q", req.path, b)
			}
		}
	}
	if statuses[http.StatusNotFound] != flood || statuses[http.StatusUnauthorized] != flood {
		t.Errorf("statuses %v, want %d × 404 and %d × 401", statuses, flood, flood)
	}
	if v := metricValue(metricsNow(), reconciled); v != "1" {
		t.Errorf("%s = %s after the flood, want only the start-up pass", reconciled, v)
	}
	if calls := emu.Calls(); !maps.Equal(calls, callsBefore) {
		t.Errorf("Azure DevOps calls %v after the flood, %v before", calls, callsBefore)
	}
	if lines := loggedAboveDebug(s.logs.String()); len(lines) != len(logsBefore) {
		t.Errorf("the flood logged %d lines at info or above:\n%s", len(lines)-len(logsBefore), strings.Join(lines[len(logsBefore):], "\n"))
	}
}

// loggedAboveDebug returns the text log lines at info level or above.
func loggedAboveDebug(logs string) []string {
	var out []string
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, "level=DEBUG") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// TestReconcileDryRunJSON: the dry run prints exactly the creates and
// unregisters the rules give and writes nothing to Azure DevOps.
func TestReconcileDryRunJSON(t *testing.T) {
	emu := startEmulator(t, adoemu.Options{})
	a := emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	b := emu.QueueJob("Default", adoemu.Job{Demands: []string{"Agent.Version -gtVersion 2.163.1"}})
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"maven"}})
	emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "linux-r99", Online: false}) // leftover of ours
	emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "build-vm-01", Online: false})
	emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "linux-placeholder", Online: false})
	path := writeConfig(t, emu.OrgURL(), "")
	writesBefore := emu.Writes()

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"reconcile", "--dry-run", "--output", "json", "--config", path}, &stdout, &stderr, testEnv)
	if err != nil {
		t.Fatalf("reconcile: %v\n%s", err, stderr.String())
	}
	var got []jsonAction
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var j jsonAction
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, j)
	}
	want := []jsonAction{
		{Action: "create", Pool: "linux", Name: fmt.Sprintf("linux-r%d", a), Request: a, Reason: "waiting_job"},
		{Action: "create", Pool: "linux", Name: fmt.Sprintf("linux-r%d", b), Request: b, Reason: "waiting_job"},
		{Action: "unregister", Pool: "linux", Name: "linux-r99", Reason: "offline_leftover"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("dry run:\n got  %+v\n want %+v", got, want)
	}
	if w := emu.Writes(); w != writesBefore {
		t.Errorf("the dry run wrote to Azure DevOps %d times", w-writesBefore)
	}
	if strings.Contains(stdout.String()+stderr.String(), testPAT) {
		t.Error("the PAT appears in the output")
	}
}

// TestReconcileDryRunPlansEveryWaitingJob: 455 servable jobs wait in one
// pool with finished history behind them, more than the 200 unfinished
// requests Azure DevOps lists at once. The dry run plans a create for each
// of them, reading the job requests in four calls: the unfinished-only list
// (full at 200) and three pages of 200 mixing waiting and finished requests.
func TestReconcileDryRunPlansEveryWaitingJob(t *testing.T) {
	emu := startEmulator(t, adoemu.Options{})
	emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "build-vm-01", Online: true})
	for range 100 {
		id := emu.QueueJob("Default", adoemu.Job{Name: "nightly"})
		if err := emu.Assign(id, "build-vm-01"); err != nil {
			t.Fatal(err)
		}
		if err := emu.Finish(id, "succeeded"); err != nil {
			t.Fatal(err)
		}
	}
	if err := emu.SetAgentStatus("Default", "build-vm-01", false); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for range 455 {
		want[fmt.Sprintf("linux-r%d", emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}}))] = true
	}
	path := writeConfig(t, emu.OrgURL(), "")
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(cfg, []byte("max_agents: 10"), []byte("max_agents: 500"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	before := emu.Calls()[adoemu.EndpointJobRequests]

	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"reconcile", "--dry-run", "--output", "json", "--config", path}, &stdout, &stderr, testEnv); err != nil {
		t.Fatalf("reconcile: %v\n%s", err, stderr.String())
	}
	creates := map[string]bool{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var j jsonAction
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if j.Action == "create" {
			if creates[j.Name] || !want[j.Name] {
				t.Errorf("create %s: repeated, or not for a waiting job", j.Name)
			}
			creates[j.Name] = true
		}
	}
	if len(creates) != 455 {
		t.Errorf("%d creates planned, want 455", len(creates))
	}
	calls := emu.Calls()[adoemu.EndpointJobRequests] - before
	if calls != 4 {
		t.Errorf("%d jobrequests calls, want 4", calls)
	}
	t.Logf("455 waiting jobs: %d creates planned from %d jobrequests calls", len(creates), calls)
	if strings.Contains(stderr.String(), "level=WARN") {
		t.Errorf("unexpected warning:\n%s", stderr.String())
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("azuredevops: {url: ftp://x}\nwebhook: {}\npools: [{name: Bad_Name, max_agents: 0}]\n"), 0o600)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"validate", "--config", path}, &stdout, &stderr, testEnv)
	if err == nil {
		t.Fatal("validate accepted a bad file")
	}
	for _, key := range []string{"azuredevops.url", "webhook", "pools[0].name", "pools[0].max_agents", "pools[0].azure_pool"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("problems do not name %s:\n%v", key, err)
		}
	}
	good := writeConfig(t, "http://127.0.0.1:1/contoso", "")
	stdout.Reset()
	if err := run(context.Background(), []string{"validate", "--config", good}, &stdout, &stderr, testEnv); err != nil {
		t.Fatalf("validate refused a good file: %v", err)
	}
	if !strings.Contains(stdout.String(), "1 pool") {
		t.Errorf("validate output: %q", stdout.String())
	}
}

// TestValidateAndServeStopOnSignal: a configuration path that never ends (a
// FIFO nobody writes) holds validate and serve only until the signal
// context ends, and /dev/zero is refused at the size bound.
func TestValidateAndServeStopOnSignal(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, cmd := range []string{"validate", "serve"} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{cmd, "--config", fifo}, io.Discard, io.Discard, testEnv) }()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("%s on a FIFO nobody writes: %v, want context.Canceled once the context ends", cmd, err)
		}
		err := run(t.Context(), []string{cmd, "--config", "/dev/zero"}, io.Discard, io.Discard, testEnv)
		if err == nil || !strings.Contains(err.Error(), "at most 1048576 bytes") {
			t.Errorf("%s --config /dev/zero: %v, want the size bound", cmd, err)
		}
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"bogus"}, &stdout, &stderr, testEnv); exitCode(err) != 2 {
		t.Errorf("unknown command: %v (exit %d), want a usage error", err, exitCode(err))
	}
	if err := run(context.Background(), []string{"version"}, &stdout, &stderr, testEnv); err != nil || !strings.Contains(stdout.String(), "agentscaler") {
		t.Errorf("version: %v %q", err, stdout.String())
	}
	for _, cmd := range []string{"serve", "reconcile", "validate", "demo"} {
		stderr.Reset()
		err := run(context.Background(), []string{cmd, "--help"}, &stdout, &stderr, testEnv)
		if exitCode(err) != 2 || !strings.Contains(stderr.String(), "Usage: agentscaler "+cmd) {
			t.Errorf("%s --help: %v, %q", cmd, err, stderr.String())
		}
	}
}

// TestDemo runs `agentscaler demo` end to end: every servable job done,
// nothing left behind.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes several seconds")
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"demo", "--provider", "memory", "--timeout", "60s"}, &stdout, &stderr, testEnv); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"11 of 11 servable jobs done", "left behind: 0 instances, 0 registered agents of ours"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
