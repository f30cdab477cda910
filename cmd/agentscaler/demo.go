//go:build !nodemo

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
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/scaler"
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

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var c common
	fs := newFlags("demo", "Run the whole loop on this machine: a built-in Azure DevOps emulator that queues a short mixed\n"+
		"workload and posts service hooks, `serve` on loopback, and agents that take one job each and exit.\n"+
		"With --provider docker (the default) every agent is a container on the local Docker engine ($DOCKER_HOST),\n"+
		"running this binary as a stand-in agent; with --provider memory the agents are simulated in process.\n"+
		"Prints progress and, at the end, a summary per job and anything left behind.", stderr, &c)
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	provider := fs.String("provider", "docker", "where agents run: docker or memory")
	c.logLevel = "warn"
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *provider != "docker" && *provider != "memory" {
		return usageError{fmt.Sprintf("demo: --provider %q: want docker or memory", *provider)}
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	secret := func() string { b := make([]byte, 16); _, _ = rand.Read(b); return hex.EncodeToString(b) }
	env := map[string]string{"AZP_TOKEN": secret(), "AGENTSCALER_WEBHOOK_PASSWORD": secret(), "DOCKER_HOST": getenv("DOCKER_HOST")}
	demoEnv := func(k string) string { return env[k] }

	emu := adoemu.New(adoemu.Options{PAT: env["AZP_TOKEN"], AutoAssign: true, ParallelJobs: 25, RetryBase: 200 * time.Millisecond, Logger: log})
	if _, err := emu.Start("127.0.0.1:0"); err != nil {
		return fmt.Errorf("start the Azure DevOps emulator: %w", err)
	}
	defer emu.Close()
	emu.AddPool(demoAzurePool)

	pc := config.Pool{
		Name: demoPool, AzurePool: demoAzurePool, Provider: *provider, MaxAgents: 6,
		StartupTimeout: time.Minute, MaxLifetime: time.Hour, FailureBackoff: time.Minute,
		AgentVersion: config.DefaultAgentVersion,
		Capabilities: map[string]string{"Agent.OS": "Linux", "docker": ""},
		Agent:        config.Agent{Image: "azp-agent:linux", Work: config.DefaultAgentWork},
	}
	var img *agentImage
	if *provider == "docker" {
		if img, err = selfImage(); err != nil {
			return err
		}
		pc.Agent.Image = img.ref
		// The stand-in agent reports its environment as capabilities, as
		// the real agent does: this is where the pool's `docker` comes from.
		pc.Agent.Env = map[string]string{"docker": "true"}
		pc.Docker = &config.Docker{Host: env["DOCKER_HOST"], Network: "host", Pull: "never"}
	}
	cfg := &config.Config{
		AzureDevOps: config.AzureDevOps{URL: emu.OrgURL(), TokenEnv: "AZP_TOKEN", MaxPages: config.DefaultMaxPages, PageSize: config.DefaultPageSize},
		Webhook:     config.Webhook{BasicAuth: &config.BasicAuth{Username: "azdo", PasswordEnv: "AGENTSCALER_WEBHOOK_PASSWORD"}},
		// A short timer, so clean-up after agents that exited shows quickly.
		Reconcile: config.Reconcile{Interval: 2 * time.Second, Parallelism: config.DefaultReconcileParallelism, CallTimeout: config.DefaultCallTimeout},
		Pools:     []config.Pool{pc},
	}
	if err := cfg.Validate(demoEnv); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	prov, err := providerFactories[pc.Provider](ctx, pc, providerEnv{getenv: demoEnv, log: log})
	if err != nil {
		return err
	}
	if img != nil {
		if err := img.importInto(ctx, prov, env["DOCKER_HOST"]); err != nil {
			return err
		}
	}
	a, err := newApp(ctx, cfg, log, demoEnv, deps{providers: map[string]providers.Provider{pc.Provider: prov}})
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
	where := "agents simulated in process"
	if img != nil {
		where = "agents are containers of image " + img.ref
	}
	fmt.Fprintf(stdout, "Azure DevOps emulator at %s, agentscaler serving on http://%s, provider: %s (%s)\n", emu.OrgURL(), addr, pc.Provider, where)

	d := &demo{emu: emu, prov: prov, caps: azuredevops.PoolCapabilities(pc.Capabilities, pc.AgentVersion),
		seen: map[string][]seenInstance{}, runs: map[int64]time.Duration{}}
	if mem, ok := prov.(*memory.Provider); ok {
		d.sim = &simulatedAgents{emu: emu, mem: mem, caps: d.caps, seen: map[string]bool{}, runs: d.runs}
	}
	err = d.run(ctx, stdout)
	d.summary(stdout)
	cancel()
	if serr := <-served; err == nil {
		err = serr
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("demo did not finish within %s: %w", *timeout, err)
	}
	return err
}

const (
	demoPool      = "linux"
	demoAzurePool = "Default"
)

// demo queues the workload, watches the emulator and the provider, and
// prints progress.
// seenInstance is one instance of a name: when it was created and running.
type seenInstance struct{ created, started time.Time }

type demo struct {
	emu  *adoemu.Emulator
	prov providers.Provider
	sim  *simulatedAgents // nil when real agents run
	caps map[string]string
	// seen holds every instance of each name, oldest first: a name comes
	// back when the agent made for a job took another and that job got a
	// new agent once the first was gone.
	seen  map[string][]seenInstance
	runs  map[int64]time.Duration // how long each job runs
	start time.Time
}

func (d *demo) run(ctx context.Context, stdout io.Writer) error {
	d.start = time.Now()
	jobs := demoWorkload()
	next := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastPrint time.Time
	for {
		for next < len(jobs) && time.Since(d.start) >= jobs[next].after {
			j := jobs[next]
			job := adoemu.Job{Name: j.name, Demands: j.demands}
			if d.sim == nil {
				job.Duration = j.runs // the agent sleeps as long as the job message says
			}
			id := d.emu.QueueJob(j.pool, job)
			d.runs[id] = j.runs
			next++
		}
		instances, err := d.instances(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if d.sim != nil {
			d.sim.step(instances)
		}
		s := d.status(instances)
		if time.Since(lastPrint) >= time.Second {
			fmt.Fprintf(stdout, "%5.1fs  waiting %-2d  starting %-2d  busy %-2d  done %d/%d\n",
				time.Since(d.start).Seconds(), s.waiting, s.starting, s.busy, s.done, s.servable)
			lastPrint = time.Now()
		}
		if next == len(jobs) && s.done == s.servable && len(instances) == 0 && s.leftAgents == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d jobs done, %d instances and %d agents left", s.done, s.servable, len(instances), s.leftAgents)
		case <-tick.C:
		}
	}
}

// instances lists the pool's instances and remembers when each was created
// and started, for the summary.
func (d *demo) instances(ctx context.Context) ([]providers.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := d.prov.List(ctx, demoPool)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	for _, in := range list {
		seen := d.seen[in.Name]
		if i := len(seen) - 1; i >= 0 && seen[i].created.Equal(in.Created) {
			seen[i].started = in.Started
		} else {
			d.seen[in.Name] = append(seen, seenInstance{created: in.Created, started: in.Started})
		}
	}
	return list, nil
}

// instanceFor returns when the instance of name that ran a job started at
// received was created and running: the last one created before it.
func (d *demo) instanceFor(name string, received time.Time) (created, running time.Time) {
	for _, in := range d.seen[name] {
		if received.IsZero() || !in.created.After(received) {
			created, running = in.created, in.started
		}
	}
	return created, running
}

// agentsStarted counts the instances seen, every instance of a name.
func (d *demo) agentsStarted() int {
	n := 0
	for _, s := range d.seen {
		n += len(s)
	}
	return n
}

type demoStatus struct {
	waiting, starting, busy, done, servable, leftAgents int
}

func (d *demo) status(instances []providers.Instance) demoStatus {
	var s demoStatus
	for _, r := range d.emu.Requests(demoAzurePool) {
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
	online := map[string]bool{}
	for _, a := range d.emu.Agents(demoAzurePool) {
		online[a.Name] = a.Online
		if a.AssignedRequest != 0 {
			s.busy++
		}
		if strings.HasPrefix(a.Name, demoPool+"-") && a.Name != scaler.PlaceholderName(demoPool) {
			s.leftAgents++
		}
	}
	for _, in := range instances {
		if !in.State.Done() && !online[in.Name] {
			s.starting++
		}
	}
	return s
}

func (d *demo) summary(w io.Writer) {
	fmt.Fprintln(w, "\nSummary (seconds since the job was queued):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "request\tjob\tagent\tagent created\tagent running\tjob started\tdone\tresult")
	rel := func(t, from time.Time) string {
		if t.IsZero() || from.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.2f", t.Sub(from).Seconds())
	}
	var waits, toCreated, toRunning, toStarted []time.Duration
	for _, r := range d.emu.Requests(demoAzurePool) {
		agent := r.Agent
		if agent == "" {
			agent = "(none: no pool meets " + strings.Join(r.Demands, ", ") + ")"
		}
		result := r.Result
		if result == "" {
			result = r.State()
		}
		created, running := d.instanceFor(r.Agent, r.ReceiveTime)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, agent, rel(created, r.QueueTime), rel(running, r.QueueTime),
			rel(r.ReceiveTime, r.QueueTime), rel(r.FinishTime, r.QueueTime), result)
		if r.ReceiveTime.IsZero() {
			continue
		}
		waits = append(waits, r.ReceiveTime.Sub(r.QueueTime))
		// An agent made for another job may have taken this one: only
		// agents created after the job was queued say how fast we start.
		if created.After(r.QueueTime) && running.After(created) {
			toCreated = append(toCreated, created.Sub(r.QueueTime))
			toRunning = append(toRunning, running.Sub(created))
			toStarted = append(toStarted, r.ReceiveTime.Sub(running))
		}
	}
	tw.Flush()
	s := d.status(nil)
	fmt.Fprintf(w, "\n%d of %d servable jobs done in %.1fs; agents started: %d\n", s.done, s.servable, time.Since(d.start).Seconds(), d.agentsStarted())
	if len(waits) > 0 {
		fmt.Fprintf(w, "median seconds: queued -> job started %.2f (max %.2f)", median(waits).Seconds(), slices.Max(waits).Seconds())
		if len(toCreated) > 0 {
			fmt.Fprintf(w, "; queued -> agent created %.2f; created -> running %.2f; running -> job started %.2f",
				median(toCreated).Seconds(), median(toRunning).Seconds(), median(toStarted).Seconds())
		}
		fmt.Fprintln(w)
	}
	left, _ := d.instances(context.Background())
	fmt.Fprintf(w, "left behind: %d instances, %d registered agents of ours\n", len(left), s.leftAgents)
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// simulatedAgents does, for memory instances, what the agent in a container
// does: register when running, take one job, and when it is done go
// offline before reporting the result (as `--once` does, so no second job
// lands on it), then exit.
type simulatedAgents struct {
	emu  *adoemu.Emulator
	mem  *memory.Provider
	caps map[string]string
	seen map[string]bool // registered
	runs map[int64]time.Duration
}

func (s *simulatedAgents) step(instances []providers.Instance) {
	for _, in := range instances {
		if in.State == providers.StateRunning && !s.seen[in.Name] {
			s.seen[in.Name] = true
			s.emu.RegisterAgent(demoAzurePool, adoemu.AgentInfo{Name: in.Name, Online: true, SystemCapabilities: s.caps})
		}
	}
	requests := map[int64]adoemu.Request{}
	for _, r := range s.emu.Requests(demoAzurePool) {
		requests[r.ID] = r
	}
	for _, a := range s.emu.Agents(demoAzurePool) {
		r, ok := requests[a.AssignedRequest]
		if !ok || time.Since(r.AssignTime) < s.runs[r.ID] {
			continue
		}
		_ = s.emu.SetAgentStatus(demoAzurePool, a.Name, false)
		_ = s.emu.Finish(r.ID, "succeeded")
		_ = s.mem.Exit(a.Name, 0)
	}
}
