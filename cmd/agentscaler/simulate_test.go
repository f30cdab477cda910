package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// simulated is one policy of `simulate --output json`.
type simulated struct {
	Policy           string  `json:"policy"`
	Jobs             int     `json:"jobs"`
	Unserved         int     `json:"unserved"`
	WaitMean         float64 `json:"wait_mean_s"`
	WaitP50          float64 `json:"wait_p50_s"`
	WaitP95          float64 `json:"wait_p95_s"`
	WaitMax          float64 `json:"wait_max_s"`
	AgentSeconds     float64 `json:"agent_seconds"`
	IdleAgentSeconds float64 `json:"idle_agent_seconds"`
	DuplicateAgents  int     `json:"duplicate_agents"`
	PeakAgents       int     `json:"peak_agents"`
}

func runSimulate(t *testing.T, args ...string) map[string]simulated {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), append([]string{"simulate"}, args...), &out, &errOut, testEnv); err != nil {
		t.Fatalf("simulate %v: %v\n%s", args, err, errOut.String())
	}
	var doc struct {
		Policies []simulated `json:"policies"`
	}
	// The fields the issue names must all be there.
	var raw map[string][]map[string]any
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	for _, p := range raw["policies"] {
		for _, k := range []string{"policy", "jobs", "wait_p50_s", "wait_p95_s", "wait_max_s", "agent_seconds", "idle_agent_seconds", "duplicate_agents", "peak_agents"} {
			if _, ok := p[k]; !ok {
				t.Errorf("policy %v has no %q", p["policy"], k)
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	byName := map[string]simulated{}
	for _, p := range doc.Policies {
		byName[p.Policy] = p
	}
	return byName
}

func generateTrace(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "day.csv")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"simulate", "--generate", path, "--seed", "7"}, &out, &out, testEnv); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "wrote ") {
		t.Fatalf("generate printed %q", out.String())
	}
	return path
}

// TestSimulateComparesPolicies runs one simulate over a generated working
// day with a 30 s start latency, and checks what the issue claims: webhook
// waits about the start latency, polling every 30 s about 15 s more, a
// static pool either waits longer at peaks or idles far more, and webhook
// starts no duplicate agent.
func TestSimulateComparesPolicies(t *testing.T) {
	trace := generateTrace(t)
	plot := filepath.Join(t.TempDir(), "plot.svg")
	got := runSimulate(t, "--trace", trace, "--start-latency", "30s", "--max-agents", "60",
		"--policy", "webhook", "--policy", "poll:30s", "--policy", "static:20", "--output", "json", "--plot", plot)
	web, poll, static := got["webhook"], got["poll:30s"], got["static:20"]
	for name, p := range got {
		if p.Jobs < 400 || p.Unserved != 0 {
			t.Errorf("%s: %d jobs, %d unserved; want a working day, all served", name, p.Jobs, p.Unserved)
		}
	}
	const latency = 30.0
	if web.WaitMean < latency || web.WaitMean > latency+3 || web.WaitP95 > latency+3 {
		t.Errorf("webhook waits mean %v s, p95 %v s; want within a few seconds of the %v s start latency", web.WaitMean, web.WaitP95, latency)
	}
	if d := poll.WaitMean - web.WaitMean; d < 10 || d > 20 {
		t.Errorf("poll:30s waits %v s on average, webhook %v s: %v s worse; want about 15 (half the interval)", poll.WaitMean, web.WaitMean, d)
	}
	slowerAtPeaks := static.WaitP95 > web.WaitP95+30
	moreIdle := static.IdleAgentSeconds > 10*max(web.IdleAgentSeconds, 3600)
	if !slowerAtPeaks && !moreIdle {
		t.Errorf("static:20 p95 %v s, idle %v agent-s; webhook p95 %v s, idle %v: want static slower at peaks or far more idle",
			static.WaitP95, static.IdleAgentSeconds, web.WaitP95, web.IdleAgentSeconds)
	}
	if web.DuplicateAgents != 0 {
		t.Errorf("webhook started %d duplicate agents; want 0", web.DuplicateAgents)
	}
	if web.AgentSeconds > static.AgentSeconds/2 {
		t.Errorf("webhook cost %v agent-s, static:20 %v; want far less", web.AgentSeconds, static.AgentSeconds)
	}
	svg, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{})); err != nil {
		t.Fatalf("--plot wrote no well-formed SVG: %v", err)
	}
	for _, p := range []string{"webhook", "poll:30s", "static:20"} {
		if !bytes.Contains(svg, []byte(">"+p+"<")) {
			t.Errorf("the plot has no panel for %s", p)
		}
	}
}

// TestSimulateHookLoss: with a fifth of the service hooks lost, webhook
// still serves every job, the worst about one timer interval later.
func TestSimulateHookLoss(t *testing.T) {
	trace := generateTrace(t)
	common := []string{"--trace", trace, "--start-latency", "30s", "--max-agents", "60", "--policy", "webhook", "--output", "json"}
	lossless := runSimulate(t, common...)["webhook"]
	lossy := runSimulate(t, append(common, "--hook-loss", "0.2")...)["webhook"]
	if lossy.Unserved != 0 {
		t.Fatalf("%d jobs unserved with lost hooks", lossy.Unserved)
	}
	// Start latency, hook delay (1 s) and one interval (1 m).
	if lossy.WaitMax > 30+1+60 {
		t.Errorf("worst wait %v s with lost hooks; want at most one timer interval after the start latency", lossy.WaitMax)
	}
	if lossy.WaitMax <= lossless.WaitMax+10 {
		t.Errorf("worst wait %v s with lost hooks, %v s without: the losses show no effect", lossy.WaitMax, lossless.WaitMax)
	}
}

// TestSimulatePoolFromConfig takes the pool from a configuration file whose
// secrets are not set, and its reconcile interval for the webhook timer.
// simConfig writes a configuration file with the pools given, whose
// secrets' variables are unset: a simulation reads none.
func simConfig(t *testing.T, pools string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(cfg, []byte(`azuredevops:
  url: https://dev.azure.com/contoso
  token_env: UNSET_TOKEN_FOR_SIMULATE
webhook:
  basic_auth: {username: azdo, password_env: UNSET_PASSWORD_FOR_SIMULATE}
pools:
`+pools), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSimulatePoolFromConfig(t *testing.T) {
	trace := generateTrace(t)
	cfg := simConfig(t, `  - name: linux
    azure_pool: Default
    agent: {image: azp-agent:linux}
  - name: small
    azure_pool: Small
    max_agents: 3
    agent: {image: azp-agent:linux}
`)
	got := runSimulate(t, "--config", cfg, "--pool", "small", "--trace", trace, "--policy", "webhook", "--output", "json")["webhook"]
	if got.PeakAgents != 3 || got.Unserved != 0 {
		t.Errorf("peak %d agents, unserved %d; want the pool's max_agents 3 and all served", got.PeakAgents, got.Unserved)
	}
	over := runSimulate(t, "--config", cfg, "--pool", "small", "--max-agents", "5", "--trace", trace, "--policy", "webhook", "--output", "json")["webhook"]
	if over.PeakAgents != 5 {
		t.Errorf("--max-agents 5 over the file's 3: peak %d", over.PeakAgents)
	}
}

func TestSimulateTable(t *testing.T) {
	trace := generateTrace(t)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--trace", trace, "--max-agents", "30"}, &out, &errOut, testEnv)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	// The default policies: webhook, poll:30s and a static pool of max_agents.
	for _, want := range []string{"max_agents 30", "wait mean s", "webhook", "poll:30s", "static:30"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table has no %q:\n%s", want, out.String())
		}
	}
}

func TestSimulateErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("queued_at_s,duration_s,demands\n1,60,\n2,1m,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--trace", bad}, 1, []string{"bad.csv", "line 3", "duration_s", `"1m"`}},
		{[]string{}, 2, []string{"--trace FILE is required"}},
		{[]string{"--trace", bad, "--policy", "keda"}, 2, []string{"--policy", "keda", "poll:<interval>"}},
		{[]string{"--trace", bad, "--start-latency", "40s-20s"}, 2, []string{"--start-latency", "20s-40s"}},
		{[]string{"--trace", bad, "--hook-loss", "2"}, 2, []string{"--hook-loss", "0 to 1"}},
		{[]string{"--trace", bad, "--generate", filepath.Join(dir, "x.csv")}, 2, []string{"not both"}},
		{[]string{"--trace", bad, "--capabilities", "=x"}, 2, []string{"--capabilities", "no capability name"}},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"simulate"}, c.args...), &out, &errOut, testEnv)
		if err == nil {
			t.Errorf("simulate %v succeeded", c.args)
			continue
		}
		if code := exitCode(err); code != c.code {
			t.Errorf("simulate %v: exit code %d; want %d (%v)", c.args, code, c.code, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("simulate %v: error %q does not mention %q", c.args, err, w)
			}
		}
	}
}

// TestSimulateSchedule: a pool's standby schedule, from the file or from
// --schedule, runs next to the same policy without it. Three warm agents
// from 08:00 to 19:00 halve the mean wait of a working day for a fraction
// of the idle time three all day cost.
func TestSimulateSchedule(t *testing.T) {
	trace := generateTrace(t)
	cfg := simConfig(t, `  - name: linux
    azure_pool: Default
    max_agents: 60
    agent: {image: azp-agent:linux}
    timezone: UTC
    schedules:
      - {cron: "0 8 * * 1-5", min_idle: 3}
      - {cron: "0 19 * * 1-5", min_idle: 0}
`)
	fromFile := runSimulate(t, "--config", cfg, "--trace", trace, "--policy", "webhook", "--policy", "static:5", "--output", "json")
	if len(fromFile) != 3 {
		t.Fatalf("policies %v: want webhook+schedule, webhook and static:5 (a static pool has no scaler to follow a schedule)", fromFile)
	}
	fromFlags := runSimulate(t, "--trace", trace, "--max-agents", "60", "--policy", "webhook", "--output", "json",
		"--schedule", "0 8 * * 1-5=3", "--schedule", "0 19 * * 1-5=0")
	always := runSimulate(t, "--trace", trace, "--max-agents", "60", "--min-idle", "3", "--policy", "webhook", "--output", "json")["webhook"]

	sched, plain := fromFile["webhook+schedule"], fromFile["webhook"]
	// The same schedule from the flags: the same figures, to the agent.
	if f := fromFlags["webhook+schedule"]; !reflect.DeepEqual(f, sched) {
		t.Errorf("--schedule and the file's schedules differ:\n%+v\n%+v", f, sched)
	}
	if sched.DuplicateAgents != 0 || plain.DuplicateAgents != 0 {
		t.Errorf("duplicate agents: %d with the schedule, %d without; want none", sched.DuplicateAgents, plain.DuplicateAgents)
	}
	if plain.IdleAgentSeconds != 0 || sched.IdleAgentSeconds <= 0 {
		t.Errorf("idle agent-seconds: %v without the schedule (want 0), %v with it (want some)", plain.IdleAgentSeconds, sched.IdleAgentSeconds)
	}
	// Warm agents idle at most their 11 hours each, plus moments of job
	// agents that came online as their job went to another.
	if limit := 3*11*3600.0 + 600; sched.IdleAgentSeconds > limit || sched.IdleAgentSeconds >= always.IdleAgentSeconds/2 {
		t.Errorf("idle with the schedule %v s, min_idle 3 all day %v s: want at most %v and under half", sched.IdleAgentSeconds, always.IdleAgentSeconds, limit)
	}
	if sched.WaitMean >= plain.WaitMean*0.75 {
		t.Errorf("mean wait %v s with the schedule, %v s without: want a quarter less at least", sched.WaitMean, plain.WaitMean)
	}
	if sched.Unserved != 0 {
		t.Errorf("with the schedule: %d unserved", sched.Unserved)
	}

	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--trace", trace, "--schedule", "0 25 * * *=1"}, &out, &errOut, testEnv)
	if err == nil || !strings.Contains(err.Error(), "pool.schedules[0].cron") {
		t.Errorf("an hour of 25: %v, want the entry named", err)
	}
	err = run(context.Background(), []string{"simulate", "--trace", trace, "--timezone", "UTC"}, &out, &errOut, testEnv)
	if err == nil || !strings.Contains(err.Error(), "--timezone is for --schedule") {
		t.Errorf("--timezone alone: %v", err)
	}
}
