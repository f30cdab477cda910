package github

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/ghemu"
)

// TestClientAgainstEmulator runs the client's calls against the emulator's
// payload shapes, and the hook handler against its signed deliveries.
func TestClientAgainstEmulator(t *testing.T) {
	secret := []byte("hook-secret")
	emu := ghemu.New(ghemu.Options{Org: "acme", Secret: secret, Twice: true})
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	emu.SetURL(srv.URL)
	var mu sync.Mutex
	var remaining int
	c, err := NewClient(Options{BaseURL: srv.URL, Org: "acme", Token: "t", MaxRunnerPages: 3,
		ObserveRateLimit: func(r, _ int, _ time.Time) { mu.Lock(); remaining = r; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	jobs := NewJobs(c, JobsOptions{Repos: []string{"acme/app"}, CheckTTL: time.Nanosecond})
	src := NewSource(c, jobs, "gpu", []string{"gpu"})
	var ev events
	hook := httptest.NewServer(NewHookHandler(secret, "acme", jobs, &ev, nil, nil, nil))
	defer hook.Close()
	emu.Subscribe(hook.URL)

	a := emu.Queue("acme/app", "self-hosted", "gpu")
	emu.Queue("acme/app", "self-hosted", "tpu") // no pool
	emu.Wait()
	if len(ev.waiting) != 1 || ev.waiting[0].Ref != itoa(a) {
		t.Fatalf("waiting events %+v: every hook was delivered twice, want one event for job %d", ev.waiting, a)
	}
	got, err := c.Job(ctx, "acme/app", a)
	if err != nil || got.Status != "queued" || !slices.Equal(got.Labels, []string{"self-hosted", "gpu"}) || got.RunID == 0 {
		t.Fatalf("Job = %+v, %v", got, err)
	}
	if _, err := c.Job(ctx, "acme/app", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
	queued, err := c.QueuedJobs(ctx, "acme/app", 10)
	if err != nil || len(queued) != 2 {
		t.Fatalf("QueuedJobs = %+v, %v", queued, err)
	}

	cfg, err := src.JITConfig(ctx, "gpu-j"+itoa(a))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ghemu.DecodeJITConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := src.JITConfig(ctx, "gpu-j"+itoa(a)); !errors.Is(err, ErrConflict) {
		t.Fatalf("second JIT config for one name: %v, want ErrConflict", err)
	}
	for i := range 230 { // three pages of 100 at most: the listing is bounded
		if _, err := c.JITConfig(ctx, "other-"+itoa(int64(i)), []string{"x"}); err != nil {
			t.Fatal(err)
		}
	}
	runners, err := c.Runners(ctx)
	if err != nil || len(runners) != 231 {
		t.Fatalf("Runners: %d, %v; want 231 over three pages", len(runners), err)
	}
	if r := runners[0]; r.Name != "gpu-j"+itoa(a) || r.Online || !slices.Contains(r.Labels, "gpu") || !slices.Contains(r.Labels, "self-hosted") {
		t.Fatalf("runner %+v", r)
	}
	js, err := src.Jobs(ctx)
	if err != nil || len(js) != 1 || js[0].ID != a {
		t.Fatalf("pool jobs %+v, %v", js, err)
	}
	agents, err := src.Agents(ctx)
	if err != nil || len(agents) != 1 || agents[0].Name != "gpu-j"+itoa(a) {
		t.Fatalf("pool agents %+v, %v", agents, err)
	}
	if err := src.Unregister(ctx, agents[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := src.Unregister(ctx, agents[0].ID); err != nil {
		t.Fatalf("a runner already gone: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if remaining <= 0 || remaining >= 5000 {
		t.Fatalf("rate-limit budget observed %d", remaining)
	}
}

// classification is providers.Classified's method, as the scaler reads it.
func classification(t *testing.T, err error) (bool, string) {
	t.Helper()
	var c interface {
		Classification() (bool, time.Duration, string)
	}
	if !errors.As(err, &c) {
		t.Fatalf("%v does not classify itself", err)
	}
	retry, _, reason := c.Classification()
	return retry, reason
}

// TestRetireAgainstEmulator: an idle runner is removed, one that runs a job
// is left alone whether the listing or GitHub's refusal says so, and one
// already gone is fine; a name taken is a conflict, not an unknown error.
func TestRetireAgainstEmulator(t *testing.T) {
	emu := ghemu.New(ghemu.Options{Org: "acme", Secret: []byte("s"), RunTime: time.Second})
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	emu.SetURL(srv.URL)
	c, err := NewClient(Options{BaseURL: srv.URL, Org: "acme", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src := NewSource(c, NewJobs(c, JobsOptions{}), "cpu", nil)

	if _, err := src.JITConfig(ctx, "cpu-j1"); err != nil {
		t.Fatal(err)
	}
	_, err = src.JITConfig(ctx, "cpu-j1")
	if retry, reason := classification(t, err); !errors.Is(err, ErrConflict) || retry || reason != "conflict" {
		t.Fatalf("a name taken: %v (retry %v, reason %q), want a conflict not retried", err, retry, reason)
	}
	if err := src.Retire(ctx, "cpu-j1"); err != nil {
		t.Fatalf("retiring an idle runner: %v", err)
	}
	if got := emu.Runners(); len(got) != 0 {
		t.Fatalf("runners after retiring the idle one: %v", got)
	}

	emu.Queue("acme/app", "self-hosted")
	cfg, err := src.JITConfig(ctx, "cpu-j2")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ghemu.Take(cfg); !ok || err != nil {
		t.Fatalf("the runner took no job: %v", err)
	}
	err = src.Retire(ctx, "cpu-j2")
	if retry, reason := classification(t, err); !errors.Is(err, ErrBusy) || retry || reason != "busy" {
		t.Fatalf("retiring a busy runner: %v (retry %v, reason %q), want busy, not retried", err, retry, reason)
	}
	runners, _ := c.Runners(ctx)
	if len(runners) != 1 {
		t.Fatalf("runners %+v", runners)
	}
	// The listing said idle, the runner took a job since: GitHub refuses.
	err = c.RemoveRunner(ctx, runners[0].ID)
	if retry, reason := classification(t, err); !errors.Is(err, ErrBusy) || retry || reason != "busy" {
		t.Fatalf("removing a busy runner: %v (retry %v, reason %q), want busy", err, retry, reason)
	}
	if err := src.Retire(ctx, "cpu-j3"); err != nil {
		t.Fatalf("retiring a runner that is gone: %v", err)
	}
}
