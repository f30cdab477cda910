package providertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/providers/providertest"
)

// engine wraps the memory provider to stand in for a container engine that
// also holds containers this autoscaler did not make, and, when flaw is set,
// to misbehave in one of the ways a real provider could. Its List reads
// labels the way the real providers do (providers.FromLabels).
type engine struct {
	mem  *memory.Provider
	flaw string

	mu      sync.Mutex
	foreign []map[string]string // labels of unmanaged containers
}

func newEngine(flaw string) *engine {
	opts := memory.Options{}
	if flaw == "never_runs" {
		opts.StartLatency = func(providers.AgentSpec) time.Duration { return time.Hour }
	}
	return &engine{mem: memory.New(opts), flaw: flaw}
}

func (e *engine) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	switch e.flaw {
	case "ignore_cancel":
		ctx = context.WithoutCancel(ctx)
	case "create_not_idempotent":
		if _, ok := e.mem.Get(spec.Name); ok {
			return providers.Instance{}, fmt.Errorf("create %s: 409 Conflict: name already in use", spec.Name)
		}
	case "invalid_name_retryable":
		if err := providers.ValidateName(spec.Name); err != nil {
			return providers.Instance{}, fmt.Errorf("create %s: 400 Bad Request", spec.Name)
		}
	}
	in, err := e.mem.Create(ctx, spec)
	switch e.flaw {
	case "leak_secret":
		in.Reason = fmt.Sprint(spec.Secrets)
	case "existed_lost":
		in.Existed = false
	}
	return in, err
}

func (e *engine) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	if e.flaw == "ignore_cancel" {
		ctx = context.WithoutCancel(ctx)
	}
	var all []providers.Instance
	var labels []map[string]string
	for _, in := range e.mem.All() {
		all = append(all, in)
		labels = append(labels, providers.Labels(providers.AgentSpec{Pool: in.Pool, Request: in.Request, Slot: in.Slot}))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", pool, err)
	}
	e.mu.Lock()
	for _, l := range e.foreign {
		all = append(all, providers.Instance{Name: l["name"], State: providers.StateRunning, Created: time.Now(), Started: time.Now()})
		labels = append(labels, l)
	}
	e.mu.Unlock()

	var out []providers.Instance
	for i, in := range all {
		switch e.flaw {
		case "list_by_prefix":
			if !strings.HasPrefix(in.Name, pool+"-") {
				continue
			}
		case "list_foreign":
			if labels[i][providers.LabelPool] != pool {
				continue
			}
		default:
			if !providers.FromLabels(labels[i], &in) || in.Pool != pool {
				continue
			}
		}
		switch e.flaw {
		case "slot_lost":
			in.Slot = 0
		case "request_float":
			in.Request = int64(float64(in.Request))
		case "exit_code_lost":
			if in.State == providers.StateFailed {
				in.State, in.ExitCode = providers.StateExited, 0
			}
		}
		out = append(out, in)
	}
	return out, nil
}

func (e *engine) Delete(ctx context.Context, name string) error {
	if e.flaw == "ignore_cancel" {
		ctx = context.WithoutCancel(ctx)
	}
	if _, ok := e.mem.Get(name); !ok && e.flaw == "delete_missing_error" {
		return fmt.Errorf("delete %s: 404 Not Found", name)
	}
	return e.mem.Delete(ctx, name)
}

// addForeign records a container in pool without the managed label, as one
// started by hand with the same pool label would be.
func (e *engine) addForeign(pool string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.foreign = append(e.foreign, map[string]string{"name": pool + "-r424242", providers.LabelPool: pool})
}

// harness serves every subtest from one engine, as a real engine shared
// between subtests would.
func harness(flaw string, wait time.Duration) providertest.Harness {
	e := newEngine(flaw)
	return providertest.Harness{
		New: func(*testing.T) providers.Provider { return e },
		Spec: func(*testing.T) providers.AgentSpec {
			return providers.AgentSpec{Image: "azp-agent:linux", Env: map[string]string{"AZP_URL": "https://dev.azure.com/contoso"}}
		},
		Finish: func(t *testing.T, p providers.Provider, name string, code int) {
			if err := p.(*engine).mem.Exit(name, code); err != nil {
				t.Fatalf("Exit(%s, %d): %v", name, code, err)
			}
		},
		Foreign: func(_ *testing.T, pool string) { e.addForeign(pool) },
		Wait:    wait,
	}
}

// TestRunPassesWithForeignInstances runs the suite against a correct provider
// whose engine also holds unmanaged instances.
func TestRunPassesWithForeignInstances(t *testing.T) {
	providertest.Run(t, harness("", 5*time.Second))
}

// TestFlawedHelper is not a test: TestRunCatchesFlaws runs it in a child
// process with a flawed provider, to see the suite fail.
func TestFlawedHelper(t *testing.T) {
	flaw := os.Getenv("PROVIDERTEST_FLAW")
	if flaw == "" {
		t.Skip("helper for TestRunCatchesFlaws")
	}
	wait := 5 * time.Second
	if flaw == "never_runs" {
		wait = 200 * time.Millisecond
	}
	providertest.Run(t, harness(flaw, wait))
}

func TestRunCatchesFlaws(t *testing.T) {
	failRE := regexp.MustCompile(`(?m)^\s*--- FAIL: TestFlawedHelper/conformance/(\S+)`)
	for flaw, want := range map[string][]string{
		"create_not_idempotent":  {"create_concurrent", "create_idempotent"},
		"existed_lost":           {"create_concurrent", "create_idempotent"},
		"list_by_prefix":         {"list_by_pool"},
		"list_foreign":           {"list_by_pool"},
		"slot_lost":              {"labels_round_trip"},
		"request_float":          {"labels_round_trip"},
		"delete_missing_error":   {"delete"},
		"exit_code_lost":         {"exit_nonzero"},
		"never_runs":             {"exit_nonzero", "exit_zero"},
		"invalid_name_retryable": {"invalid_name"},
		"ignore_cancel":          {"canceled_context"},
		"leak_secret":            {"create", "create_concurrent", "create_idempotent", "delete", "exit_nonzero", "exit_zero", "labels_round_trip", "list_by_pool"},
	} {
		t.Run(flaw, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFlawedHelper$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "PROVIDERTEST_FLAW="+flaw)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite passed (or did not run: %v) against a provider with flaw %s; output:\n%s", err, flaw, out)
			}
			var got []string
			for _, m := range failRE.FindAllStringSubmatch(string(out), -1) {
				got = append(got, m[1])
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("flaw %s: failing subtests %v, want %v; output:\n%s", flaw, got, want, out)
			}
		})
	}
}
