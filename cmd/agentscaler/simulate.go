package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/sim"
)

const simulateSummary = `Replay a job trace on virtual time through the real scaler, once per policy, and report
how long jobs waited and how many agent-seconds they cost. A day of jobs runs in about a second.

  agentscaler simulate --trace jobs.csv --policy webhook --policy poll:30s --policy static:10
  agentscaler simulate --generate jobs.csv [--seed 1] [--days 1]

A trace is CSV with the header queued_at_s,duration_s,demands (demands separated by ';').
Policies: webhook[:<timer>] (service hooks plus the reconcile timer), poll:<interval> (a timer only,
as KEDA's Azure Pipelines scaler), static:<n> (n always-on --once agents, restarted after each job).
The pool comes from --config (and --pool), else from --max-agents, --min-idle and --capabilities.
When the pool has a standby schedule (schedules: in --config, or --schedule), webhook and poll
run twice: with it (shown as webhook+schedule) and without it, on the pool's min_idle.`

// policyFlags collects repeated --policy values.
type policyFlags []string

func (p *policyFlags) String() string     { return strings.Join(*p, ",") }
func (p *policyFlags) Set(s string) error { *p = append(*p, s); return nil }

// simJSON is the document `simulate --output json` prints.
type simJSON struct {
	Policies []sim.Result `json:"policies"`
}

func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var c common
	fs := newFlags("simulate", simulateSummary, stderr, &c)
	var policies policyFlags
	fs.Var(&policies, "policy", "a policy to simulate, repeatable: webhook, webhook:<timer>, poll:<interval>, static:<agents> (default webhook, poll:30s, static:<max-agents>)")
	trace := fs.String("trace", "", "the job trace to replay (CSV: queued_at_s,duration_s,demands)")
	generate := fs.String("generate", "", "write a generated working-day trace to this file and exit")
	days := fs.Int("days", 1, "with --generate: days of jobs (from day 6, weekends are quiet)")
	runsPerDay := fs.Int("runs-per-day", 250, "with --generate: mean pipeline runs on a working day (each queues one or more jobs)")
	seed := fs.Int64("seed", 1, "seed for the generator, start latencies and hook losses")
	latency := fs.String("start-latency", "30s", "create to agent online: fixed (30s) or a uniform range (20s-40s)")
	hookDelay := fs.Duration("hook-delay", time.Second, "how long a service hook takes to arrive")
	hookLoss := fs.Float64("hook-loss", 0, "chance from 0 to 1 that a service hook is never delivered")
	interval := fs.Duration("interval", config.DefaultReconcileInterval, "the webhook policy's reconcile timer (default: reconcile.interval of --config, else 1m)")
	horizon := fs.Duration("horizon", 0, "how long the simulated window lasts; costs count over it (default until 10m after the last job's end)")
	poolName := fs.String("pool", "", "with --config: the pool to simulate (default the first)")
	maxAgents := fs.Int("max-agents", config.DefaultMaxAgents, "the pool's max_agents")
	minIdle := fs.Int("min-idle", config.DefaultMinIdle, "the pool's min_idle")
	capabilities := fs.String("capabilities", "", "the pool's capabilities: name=value or name, separated by commas (Agent.OS=Linux is implied)")
	var schedules policyFlags
	fs.Var(&schedules, "schedule", `a standby schedule entry "CRON=MIN_IDLE", repeatable, such as "0 8 * * 1-5=3" (replaces the file's schedules)`)
	timezone := fs.String("timezone", "", "with --schedule: the IANA time zone its expressions fire in (default UTC; the trace starts on a Monday at 00:00 UTC)")
	output := fs.String("output", "text", "output format: text (a table) or json")
	plot := fs.String("plot", "", "also draw agents by state and waiting jobs over time to this SVG file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if *generate != "" {
		if *trace != "" {
			return usageError{"simulate: give --trace to simulate or --generate to write a trace, not both"}
		}
		if *days < 1 || *runsPerDay < 1 {
			return usageError{"simulate: --days and --runs-per-day must be at least 1"}
		}
		return writeTrace(*generate, sim.Generate(sim.GenerateOptions{Seed: *seed, Days: *days, RunsPerDay: *runsPerDay}), stdout)
	}
	if *trace == "" {
		return usageError{"simulate: --trace FILE is required (or --generate FILE to write one)"}
	}
	if *output != "text" && *output != "json" {
		return usageError{fmt.Sprintf("--output %q: want text or json", *output)}
	}
	opt := sim.Options{HookDelay: *hookDelay, HookLoss: *hookLoss, Seed: *seed, Horizon: *horizon}
	var err error
	if opt.StartLatency, err = sim.ParseLatency(*latency); err != nil {
		return usageError{"--start-latency: " + err.Error()}
	}
	if *hookLoss < 0 || *hookLoss > 1 {
		return usageError{fmt.Sprintf("--hook-loss %g: want a chance from 0 to 1, such as 0.2", *hookLoss)}
	}
	if *hookDelay < 0 || *horizon < 0 {
		return usageError{"--hook-delay and --horizon must not be negative"}
	}
	timer := *interval
	if opt.Pool, timer, err = simPool(ctx, c.config, *poolName, getenv, timer, set["interval"]); err != nil {
		return err
	}
	if set["max-agents"] || c.config == "" {
		opt.Pool.MaxAgents = *maxAgents
	}
	if set["min-idle"] || c.config == "" {
		opt.Pool.MinIdle = *minIdle
	}
	if set["capabilities"] {
		if opt.Pool.Capabilities, err = config.ParseCapabilities(*capabilities); err != nil {
			return usageError{"--capabilities: " + err.Error()}
		}
	}
	if set["schedule"] {
		if opt.Pool.Schedules, err = parseSchedules(schedules); err != nil {
			return usageError{"--schedule: " + err.Error()}
		}
		opt.Pool.Timezone = *timezone
	} else if set["timezone"] {
		return usageError{"--timezone is for --schedule"}
	}
	if len(policies) == 0 {
		policies = policyFlags{"webhook", "poll:30s", fmt.Sprintf("static:%d", opt.Pool.MaxAgents)}
	}
	var pols []sim.Policy
	for _, s := range policies {
		p, err := sim.ParsePolicy(s, timer)
		if err != nil {
			return usageError{"--policy: " + err.Error()}
		}
		pols = append(pols, p)
	}

	f, err := os.Open(*trace)
	if err != nil {
		return fmt.Errorf("--trace: %w", err)
	}
	jobs, err := sim.ReadTrace(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *trace, err)
	}
	results, err := simulateAll(ctx, jobs, pols, opt)
	if err != nil {
		return err
	}
	if *plot != "" {
		if err := writePlot(*plot, results); err != nil {
			return err
		}
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(simJSON{Policies: results})
	}
	fmt.Fprintf(stdout, "%s: %d jobs; pool %s: max_agents %d, min_idle %d%s; start latency %s, hook delay %s, hook loss %g, seed %d\n\n",
		*trace, len(jobs), opt.Pool.Name, opt.Pool.MaxAgents, opt.Pool.MinIdle, describeSchedules(opt.Pool), opt.StartLatency, *hookDelay, *hookLoss, *seed)
	return sim.WriteTable(stdout, results)
}

// simulateAll runs each policy over the jobs. With a standby schedule, a
// policy that runs the scaler runs twice, with the schedule (labelled
// +schedule) and without it, so the table shows what the schedule changes.
func simulateAll(ctx context.Context, jobs []sim.Job, pols []sim.Policy, opt sim.Options) ([]sim.Result, error) {
	plain := opt
	plain.Pool.Schedules, plain.Pool.Timezone = nil, ""
	var results []sim.Result
	for _, p := range pols {
		if p.Kind != sim.Static && len(opt.Pool.Schedules) > 0 {
			r, err := sim.Run(ctx, jobs, p, opt)
			if err != nil {
				return nil, err
			}
			r.Policy += "+schedule"
			results = append(results, r)
		}
		r, err := sim.Run(ctx, jobs, p, plain)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

// parseSchedules reads --schedule values, "CRON=MIN_IDLE" each; the
// expressions are checked with the pool (config.ValidatePolicy).
func parseSchedules(values []string) ([]config.Schedule, error) {
	var out []config.Schedule
	for _, v := range values {
		i := strings.LastIndex(v, "=")
		n, err := strconv.Atoi(strings.TrimSpace(v[i+1:]))
		if i < 0 || err != nil {
			return nil, fmt.Errorf("%q: write CRON=MIN_IDLE, such as \"0 8 * * 1-5=3\"", v)
		}
		out = append(out, config.Schedule{Cron: strings.TrimSpace(v[:i]), MinIdle: n})
	}
	return out, nil
}

// describeSchedules writes a pool's standby schedule for the table's header.
func describeSchedules(p config.Pool) string {
	if len(p.Schedules) == 0 {
		return ""
	}
	var parts []string
	for _, e := range p.Schedules {
		parts = append(parts, fmt.Sprintf("%s → %d", e.Cron, e.MinIdle))
	}
	tz := p.Timezone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf(", schedules %s (%s)", strings.Join(parts, ", "), tz)
}

// simPool returns the pool to simulate and the webhook timer: a pool of the
// configuration file (the one named, else the first) with its
// reconcile.interval unless --interval was given, or the configuration's
// defaults when there is no file.
func simPool(ctx context.Context, path, name string, getenv func(string) string, interval time.Duration, intervalSet bool) (config.Pool, time.Duration, error) {
	if path == "" {
		path = getenv(config.EnvConfig)
	}
	if path == "" {
		if name == "" {
			name = "linux"
		}
		return config.Pool{
			Name: name, AzurePool: "Default", Provider: "memory",
			StartupTimeout: config.DefaultStartupTimeout, MaxLifetime: config.DefaultMaxLifetime,
			FailureBackoff: config.DefaultFailureBackoff, AgentVersion: config.DefaultAgentVersion,
		}, interval, nil
	}
	// A simulation reads no secret: the variables the file names need not
	// be set, only the file be right. Push mode's variables are settings,
	// read as they are.
	cfg, err := config.LoadContext(ctx, path, func(k string) string {
		if v := getenv(k); v != "" || slices.Contains(config.PushEnv, k) {
			return v
		}
		return "not-read-by-simulate"
	})
	if err != nil {
		return config.Pool{}, 0, err
	}
	if !intervalSet {
		interval = cfg.Reconcile.Interval
	}
	if name == "" {
		return cfg.Pools[0], interval, nil
	}
	p, ok := cfg.Pool(name)
	if !ok {
		var names []string
		for _, p := range cfg.Pools {
			names = append(names, p.Name)
		}
		return config.Pool{}, 0, usageError{fmt.Sprintf("--pool %q: no such pool in %s (pools: %s)", name, path, strings.Join(names, ", "))}
	}
	return p, interval, nil
}

func writeTrace(path string, jobs []sim.Job, stdout io.Writer) error {
	if err := writeFile(path, func(w io.Writer) error { return sim.WriteTrace(w, jobs) }); err != nil {
		return fmt.Errorf("--generate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %d jobs to %s\n", len(jobs), path)
	return nil
}

func writePlot(path string, results []sim.Result) error {
	if err := writeFile(path, func(w io.Writer) error { return sim.WritePlot(w, results) }); err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	return nil
}

// writeFile writes a file through write, reporting a failed close.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
