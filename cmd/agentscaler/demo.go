package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/adoemu"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// demoJob is one job of the demo workload.
type demoJob struct {
	pool    string
	name    string
	demands []string
	after   time.Duration // after the start of the demo
	runs    time.Duration
}

// demoWorkload is short and mixed: jobs with different demands, a burst of
// fan-out jobs, and jobs no pool can serve.
func demoWorkload() []demoJob {
	jobs := []demoJob{
		{"Default", "build", []string{"docker"}, 0, 2 * time.Second},
		{"Default", "lint", nil, 0, time.Second},
		{"Default", "unit-tests", []string{"Agent.Version -gtVersion 2.163.1"}, time.Second, 3 * time.Second},
		{"Default", "windows-only", []string{"Agent.OS -equals Windows_NT"}, time.Second, time.Second},
		{"Default", "gpu", []string{"cuda"}, time.Second, time.Second},
	}
	for i := range 8 {
		jobs = append(jobs, demoJob{"Default", fmt.Sprintf("shard-%d", i+1), []string{"docker"}, 3 * time.Second, time.Duration(1+i%3) * time.Second})
	}
	return jobs
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, _ func(string) string) error {
	var c common
	fs := newFlags("demo", "Run the whole loop on this machine: a built-in Azure DevOps emulator that queues a short mixed\n"+
		"workload and posts service hooks, `serve` on loopback, and agents that take one job each and exit.\n"+
		"Prints progress and, at the end, a summary per job and anything left behind.", stderr, &c)
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	c.logLevel = "warn"
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	secret := func() string { b := make([]byte, 16); _, _ = rand.Read(b); return hex.EncodeToString(b) }
	env := map[string]string{"AZP_TOKEN": secret(), "AGENTSCALER_WEBHOOK_PASSWORD": secret()}
	getenv := func(k string) string { return env[k] }

	emu := adoemu.New(adoemu.Options{PAT: env["AZP_TOKEN"], AutoAssign: true, ParallelJobs: 25, RetryBase: 200 * time.Millisecond, Logger: log})
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		return fmt.Errorf("start the Azure DevOps emulator: %w", err)
	}
	defer emu.Close()
	emu.AddPool("Default")

	cfg := &config.Config{
		AzureDevOps: config.AzureDevOps{URL: emu.OrgURL(), TokenEnv: "AZP_TOKEN"},
		Webhook:     config.Webhook{BasicAuth: &config.BasicAuth{Username: "azdo", PasswordEnv: "AGENTSCALER_WEBHOOK_PASSWORD"}},
		// A short timer, so clean-up after agents that exited shows quickly.
		Reconcile: config.Reconcile{Interval: 2 * time.Second, Parallelism: config.DefaultReconcileParallelism, CallTimeout: config.DefaultCallTimeout},
		Pools: []config.Pool{{
			Name: "linux", AzurePool: "Default", Provider: "memory", MaxAgents: 6,
			StartupTimeout: time.Minute, MaxLifetime: time.Hour, FailureBackoff: time.Minute,
			AgentVersion: config.DefaultAgentVersion,
			Capabilities: map[string]string{"Agent.OS": "Linux", "docker": ""},
			Agent:        config.Agent{Image: "azp-agent:linux", Work: config.DefaultAgentWork},
		}},
	}
	if err := cfg.Validate(getenv); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	mem := memory.New(memory.Options{StartLatency: func(providers.AgentSpec) time.Duration { return 500 * time.Millisecond }})
	a, err := newApp(ctx, cfg, log, getenv, deps{providers: map[string]providers.Provider{"memory": mem}})
	if err != nil {
		return err
	}
	listening := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- a.serve(ctx, "127.0.0.1:0", func(addr string) { listening <- addr }) }()
	var addr string
	select {
	case addr = <-listening:
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	emu.Subscribe(adoemu.Subscription{URL: "http://" + addr + "/api/webhook/azuredevops", Username: "azdo", Password: env["AGENTSCALER_WEBHOOK_PASSWORD"]})
	fmt.Fprintf(stdout, "Azure DevOps emulator at %s, agentscaler serving on http://%s, provider: memory (agents simulated in process)\n", emu.OrgURL(), addr)

	pc := cfg.Pools[0]
	d := &demo{emu: emu, mem: mem, caps: azuredevops.PoolCapabilities(pc.Capabilities, pc.AgentVersion),
		created: map[string]time.Time{}, seen: map[string]bool{}, runs: map[int64]time.Duration{}}
	start := time.Now()
	jobs := demoWorkload()
	next := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastPrint := time.Time{}
	for {
		for next < len(jobs) && time.Since(start) >= jobs[next].after {
			j := jobs[next]
			id := emu.QueueJob(j.pool, adoemu.Job{Name: j.name, Demands: j.demands})
			d.runs[id] = j.runs
			next++
		}
		d.agents()
		s := d.status()
		if time.Since(lastPrint) >= time.Second {
			fmt.Fprintf(stdout, "%5.1fs  waiting %-2d  starting %-2d  busy %-2d  done %d/%d\n",
				time.Since(start).Seconds(), s.waiting, s.starting, s.busy, s.done, s.servable)
			lastPrint = time.Now()
		}
		if next == len(jobs) && s.done == s.servable && s.leftInstances == 0 && s.leftAgents == 0 {
			break
		}
		select {
		case <-ctx.Done():
			d.summary(stdout, start)
			return fmt.Errorf("demo did not finish within %s: %d of %d jobs done, %d instances and %d agents left",
				*timeout, s.done, s.servable, s.leftInstances, s.leftAgents)
		case <-tick.C:
		}
	}
	d.summary(stdout, start)
	cancel()
	if err := <-served; err != nil {
		return err
	}
	return nil
}

// demo simulates what the agent image does for memory instances: register
// when running, take one job, and when it is done go offline before
// reporting the result (as `--once` does, so no second job lands on it),
// then exit.
type demo struct {
	emu     *adoemu.Emulator
	mem     *memory.Provider
	caps    map[string]string       // what the pool's agents offer
	created map[string]time.Time    // instance name -> created
	seen    map[string]bool         // registered
	runs    map[int64]time.Duration // how long each job runs
}

func (d *demo) agents() {
	for _, in := range d.mem.All() {
		d.created[in.Name] = in.Created
		if in.State == providers.StateRunning && !d.seen[in.Name] {
			d.seen[in.Name] = true
			d.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: in.Name, Online: true, SystemCapabilities: d.caps})
		}
	}
	requests := map[int64]adoemu.Request{}
	for _, r := range d.emu.Requests("Default") {
		requests[r.ID] = r
	}
	for _, a := range d.emu.Agents("Default") {
		r, ok := requests[a.AssignedRequest]
		if !ok || time.Since(r.AssignTime) < d.runs[r.ID] {
			continue
		}
		_ = d.emu.SetAgentStatus("Default", a.Name, false)
		_ = d.emu.Finish(r.ID, "succeeded")
		_ = d.mem.Exit(a.Name, 0)
	}
}

type demoStatus struct {
	waiting, starting, busy, done, servable, leftInstances, leftAgents int
}

func (d *demo) status() demoStatus {
	var s demoStatus
	for _, r := range d.emu.Requests("Default") {
		if ok, _ := azuredevops.Satisfies(d.caps, r.Demands); !ok {
			continue
		}
		s.servable++
		switch r.State() {
		case adoemu.StateWaiting:
			s.waiting++
		case adoemu.StateCompleted:
			s.done++
		}
	}
	for _, in := range d.mem.All() {
		s.leftInstances++
		if in.State == providers.StatePending || (in.State == providers.StateRunning && !d.seen[in.Name]) {
			s.starting++
		}
	}
	for _, a := range d.emu.Agents("Default") {
		if a.AssignedRequest != 0 {
			s.busy++
		}
		if strings.HasPrefix(a.Name, "linux-") && a.Name != "linux-placeholder" {
			s.leftAgents++
		}
	}
	return s
}

func (d *demo) summary(w io.Writer, start time.Time) {
	fmt.Fprintln(w, "\nSummary (seconds since the job was queued):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "request\tjob\tagent\tagent created\tjob started\tdone\tresult")
	rel := func(t, from time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.2f", t.Sub(from).Seconds())
	}
	var waits []time.Duration
	for _, r := range d.emu.Requests("Default") {
		agent := r.Agent
		if agent == "" {
			agent = "(none: no pool meets " + strings.Join(r.Demands, ", ") + ")"
		}
		result := r.Result
		if result == "" {
			result = r.State()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, agent, rel(d.created[r.Agent], r.QueueTime), rel(r.AssignTime, r.QueueTime), rel(r.FinishTime, r.QueueTime), result)
		if !r.AssignTime.IsZero() {
			waits = append(waits, r.AssignTime.Sub(r.QueueTime))
		}
	}
	tw.Flush()
	slices.Sort(waits)
	s := d.status()
	if len(waits) > 0 {
		fmt.Fprintf(w, "\n%d of %d servable jobs done in %.1fs; queue wait median %.2fs, max %.2fs; agents started: %d\n",
			s.done, s.servable, time.Since(start).Seconds(), waits[len(waits)/2].Seconds(), waits[len(waits)-1].Seconds(), len(d.created))
	}
	fmt.Fprintf(w, "left behind: %d instances, %d registered agents of ours\n", s.leftInstances, s.leftAgents)
}
