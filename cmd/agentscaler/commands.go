package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/functions"
	"github.com/agentscaler/agentscaler/scaler"
)

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var c common
	fs := newFlags("validate", "Check the configuration (file and the variables it names) without starting anything.", stderr, &c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.ResolveContext(ctx, c.config, getenv)
	if err != nil {
		return err
	}
	pusher, err := newPusher(nil, cfg.Metrics.Push, getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "configuration ok: %s, %d pool(s)\n", cfg.AzureDevOps.URL, len(cfg.Pools))
	for _, p := range cfg.Pools {
		fmt.Fprintf(stdout, "  %s: Azure DevOps pool %q, provider %s, max_agents %d, min_idle %d\n", p.Name, p.AzurePool, p.Provider, p.MaxAgents, p.MinIdle)
	}
	if pusher != nil {
		fmt.Fprintf(stdout, "  metrics pushed to %s\n", pusher)
	}
	return nil
}

// load reads the configuration and wires the app.
func load(ctx context.Context, c common, stderr io.Writer, getenv func(string) string, d deps) (*app, error) {
	log, err := c.logger(stderr)
	if err != nil {
		return nil, err
	}
	cfg, err := config.ResolveContext(ctx, c.config, getenv)
	if err != nil {
		return nil, err
	}
	return newApp(ctx, cfg, log, getenv, d)
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var c common
	fs := newFlags("serve", "Serve service hooks (POST /api/webhook/azuredevops), metrics (GET /api/metrics), health\n"+
		"(GET /api/healthz) and the Functions timer (POST /reconcile). Listens on $FUNCTIONS_CUSTOMHANDLER_PORT under\n"+
		"the Azure Functions host; otherwise on --addr, and runs the reconcile timer itself.", stderr, &c)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address when not under the Azure Functions host")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a, err := load(ctx, c, stderr, getenv, deps{})
	if err != nil {
		return err
	}
	return a.serve(ctx, *addr, nil)
}

// serve runs the HTTP surface until ctx ends, then waits for reconciles in
// flight. In push mode it pushes the metrics after reconciles meanwhile, and
// at the end deletes this instance's group from the Pushgateway.
func (a *app) serve(ctx context.Context, addr string, onListen func(string)) error {
	defer a.scaler.Stop()
	if a.pusher != nil {
		// Stopped when serve returns for any reason, not only when ctx ends.
		pushCtx, stopPush := context.WithCancel(ctx)
		pushed := make(chan struct{})
		go func() { defer close(pushed); a.pusher.Run(pushCtx) }()
		defer func() { stopPush(); <-pushed }()
	}
	tickCtx, stopTicks := context.WithCancel(ctx)
	var ticks sync.WaitGroup
	defer func() { stopTicks(); ticks.Wait() }()
	for pool, every := range a.intervals {
		ticks.Go(func() { a.tickEvery(tickCtx, pool, every) })
	}
	return functions.Serve(ctx, functions.ServeOptions{
		Handler:    a.handler(),
		Addr:       addr,
		Getenv:     a.getenv,
		Interval:   a.cfg.Reconcile.Interval,
		Reconciler: a.scaler,
		Logger:     a.log,
		OnListen:   onListen,
	})
}

// tickEvery triggers a reconcile of the pool every period until ctx ends,
// beside the timer of every pool: a pool whose CI system sends no events
// (Bitbucket) is looked at on its own short period.
func (a *app) tickEvery(ctx context.Context, pool string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.scaler.Tick(pool)
		}
	}
}

// jsonAction is one line of `reconcile --output json`.
type jsonAction struct {
	Action  string `json:"action"`
	Pool    string `json:"pool"`
	Name    string `json:"name"`
	Request int64  `json:"request,omitempty"`
	Reason  string `json:"reason"`
	Error   string `json:"error,omitempty"`
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var c common
	fs := newFlags("reconcile", "Run one reconcile pass over every pool and print its actions.", stderr, &c)
	dryRun := fs.Bool("dry-run", false, "print the plan and change nothing (reads Azure DevOps and the provider only)")
	output := fs.String("output", "text", "output format: text, or json (one object per line per action)")
	timeout := fs.Duration("timeout", 5*time.Minute, "deadline for the whole pass")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return usageError{fmt.Sprintf("--output %q: want text or json", *output)}
	}
	a, err := load(ctx, c, stderr, getenv, deps{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err = a.reconcileOnce(ctx, *dryRun, *output == "json", stdout)
	if !*dryRun {
		a.pushOnce(ctx)
	}
	return err
}

// pushOnce pushes the metrics of a one-shot pass (a cron job, say), whose
// process ends before a background push would. The group stays on the
// gateway for the scraper. A failure is logged, never returned: metrics must
// not fail a reconcile.
func (a *app) pushOnce(ctx context.Context) {
	if a.pusher == nil {
		return
	}
	// The pass may have used up ctx; the push gets its own bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pushTimeout)
	defer cancel()
	if err := a.pusher.Push(ctx); err != nil {
		a.log.Warn("metrics push failed", "error", err)
	}
}

// pushTimeout bounds the push at the end of a one-shot reconcile.
const pushTimeout = 10 * time.Second

func (a *app) reconcileOnce(ctx context.Context, dryRun, asJSON bool, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	var errs []error
	for _, pool := range a.scaler.Pools() {
		var (
			d      scaler.Decision
			failed = map[string]error{}
			err    error
		)
		if dryRun {
			d, err = a.scaler.Plan(ctx, pool)
		} else {
			var res scaler.Result
			res, err = a.scaler.Reconcile(ctx, pool)
			d = res.Decision
			for _, f := range res.Failed {
				failed[string(f.Action.Kind)+" "+f.Action.Name] = f.Err
			}
		}
		if err != nil {
			errs = append(errs, err)
			if len(d.Actions) == 0 {
				continue // nothing was planned: observing the pool failed
			}
		}
		for _, act := range d.Actions {
			ferr := failed[string(act.Kind)+" "+act.Name]
			if asJSON {
				j := jsonAction{Action: string(act.Kind), Pool: act.Pool, Name: act.Name, Request: act.Request, Reason: act.Reason}
				if ferr != nil {
					j.Error = ferr.Error()
				}
				if err := enc.Encode(j); err != nil {
					return err
				}
				continue
			}
			line := act.String()
			if ferr != nil {
				line += " FAILED: " + ferr.Error()
			}
			fmt.Fprintln(stdout, line)
		}
		if !asJSON {
			fmt.Fprintf(stdout, "pool %s: %d waiting, %d unmatched, %d action(s)%s\n", pool, d.Waiting, d.Unmatched, len(d.Actions), dryNote(dryRun))
		}
	}
	return errors.Join(errs...)
}

func dryNote(dry bool) string {
	if dry {
		return " (dry run: nothing changed)"
	}
	return ""
}
