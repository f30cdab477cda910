package memory_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/providers/providertest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		New: func(*testing.T) providers.Provider { return memory.New(memory.Options{}) },
		Spec: func(*testing.T) providers.AgentSpec {
			return providers.AgentSpec{Image: "azp-agent:linux", Env: map[string]string{"AZP_URL": "https://dev.azure.com/contoso"}}
		},
		Finish: func(t *testing.T, p providers.Provider, name string, code int) {
			if err := p.(*memory.Provider).Exit(name, code); err != nil {
				t.Fatalf("Exit(%s, %d): %v", name, code, err)
			}
		},
		Wait: 5 * time.Second,
	})
}

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func get(t *testing.T, p *memory.Provider, name string) providers.Instance {
	t.Helper()
	in, ok := p.Get(name)
	if !ok {
		t.Fatalf("Get(%s): not found", name)
	}
	return in
}

func create(t *testing.T, p *memory.Provider, spec providers.AgentSpec) providers.Instance {
	t.Helper()
	in, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.Name, err)
	}
	return in
}

func TestStartLatency(t *testing.T) {
	c := fakeclock.New(t0)
	p := memory.New(memory.Options{
		Now: c.Now,
		// Warm agents come from a cached image; request agents take longer.
		StartLatency: func(spec providers.AgentSpec) time.Duration {
			if spec.Slot > 0 {
				return 5 * time.Second
			}
			return 20 * time.Second
		},
	})
	req := create(t, p, providers.AgentSpec{Name: "linux-r1", Pool: "linux", Request: 1})
	warm := create(t, p, providers.AgentSpec{Name: "linux-w1", Pool: "linux", Slot: 1})
	for _, in := range []providers.Instance{req, warm} {
		if in.State != providers.StatePending || !in.Created.Equal(t0) || !in.Started.IsZero() {
			t.Errorf("%s at creation: state %s, created %v, started %v; want pending, %v, zero", in.Name, in.State, in.Created, in.Started, t0)
		}
	}

	c.Advance(5*time.Second - time.Nanosecond)
	if in := get(t, p, "linux-w1"); in.State != providers.StatePending {
		t.Errorf("warm agent just before its latency: state %s, want pending", in.State)
	}
	c.Advance(time.Nanosecond)
	if in := get(t, p, "linux-w1"); in.State != providers.StateRunning || !in.Started.Equal(t0.Add(5*time.Second)) {
		t.Errorf("warm agent at its latency: state %s, started %v; want running, %v", in.State, in.Started, t0.Add(5*time.Second))
	}
	if in := get(t, p, "linux-r1"); in.State != providers.StatePending {
		t.Errorf("request agent at 5s of 20s latency: state %s, want pending", in.State)
	}

	// Started is the moment the latency elapsed, not the moment it is observed.
	c.Advance(time.Minute)
	ins, err := p.List(t.Context(), "linux")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.State != providers.StateRunning {
			t.Errorf("%s after a minute: state %s, want running", in.Name, in.State)
		}
	}
	if in := get(t, p, "linux-r1"); !in.Started.Equal(t0.Add(20 * time.Second)) {
		t.Errorf("request agent started %v, want %v", in.Started, t0.Add(20*time.Second))
	}

	if err := p.Exit("linux-r1", 0); err != nil {
		t.Fatal(err)
	}
	in := get(t, p, "linux-r1")
	if in.State != providers.StateExited || !in.Finished.Equal(t0.Add(65*time.Second)) || in.Reason != "" {
		t.Errorf("after Exit(0): state %s, finished %v, reason %q; want exited, %v, none", in.State, in.Finished, in.Reason, t0.Add(65*time.Second))
	}
}

func TestExitBeforeStart(t *testing.T) {
	c := fakeclock.New(t0)
	p := memory.New(memory.Options{Now: c.Now, StartLatency: func(providers.AgentSpec) time.Duration { return time.Minute }})
	create(t, p, providers.AgentSpec{Name: "linux-r1", Pool: "linux", Request: 1})
	c.Advance(10 * time.Second)
	if err := p.Exit("linux-r1", 125); err != nil {
		t.Fatal(err)
	}
	// Time passing the start latency must not make an ended instance start.
	c.Advance(time.Hour)
	in := get(t, p, "linux-r1")
	if in.State != providers.StateFailed || in.ExitCode != 125 || !in.Started.IsZero() || !in.Finished.Equal(t0.Add(10*time.Second)) {
		t.Errorf("instance ended while pending: %+v; want failed, code 125, no Started, Finished at %v", in, t0.Add(10*time.Second))
	}
	if in.Reason == "" {
		t.Errorf("failed instance has no Reason")
	}
}

func TestExitErrors(t *testing.T) {
	p := memory.New(memory.Options{})
	if err := p.Exit("linux-r1", 0); err == nil {
		t.Errorf("Exit of a missing instance succeeded")
	}
	create(t, p, providers.AgentSpec{Name: "linux-r1", Pool: "linux", Request: 1})
	if err := p.Exit("linux-r1", 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Exit("linux-r1", 0); err == nil {
		t.Errorf("second Exit of one instance succeeded")
	}
	if in := get(t, p, "linux-r1"); in.State != providers.StateFailed || in.ExitCode != 1 {
		t.Errorf("second Exit changed the instance: %+v", in)
	}
}

func TestCreateRefusesBadSpec(t *testing.T) {
	p := memory.New(memory.Options{})
	for _, spec := range []providers.AgentSpec{
		{Name: "Linux-r1", Pool: "linux"},
		{Name: "linux-r1"}, // no pool: List could never find it
	} {
		_, err := p.Create(t.Context(), spec)
		var pe *providers.Error
		if !errors.As(err, &pe) {
			t.Fatalf("Create(%+v): %v; want a *providers.Error", spec, err)
		}
		if pe.Retryable || pe.Op != "create" || pe.Name != spec.Name {
			t.Errorf("Create(%+v): %+v; want a permanent create error naming the instance", spec, pe)
		}
	}
	_, err := p.Create(t.Context(), providers.AgentSpec{Name: "linux_r1", Pool: "linux"})
	if _, _, reason := providers.Classify(err); reason != "invalid_name" {
		t.Errorf("Create with an underscore: reason %q, want invalid_name", reason)
	}
	if all := p.All(); len(all) != 0 || p.Stats() != (memory.Stats{}) {
		t.Errorf("refused creates left %v, stats %+v", all, p.Stats())
	}
}

func TestStats(t *testing.T) {
	p := memory.New(memory.Options{})
	ctx := t.Context()
	create(t, p, providers.AgentSpec{Name: "linux-r1", Pool: "linux", Request: 1})
	create(t, p, providers.AgentSpec{Name: "linux-r1", Pool: "linux", Request: 1})
	create(t, p, providers.AgentSpec{Name: "linux-r2", Pool: "linux", Request: 2})
	create(t, p, providers.AgentSpec{Name: "win-w1", Pool: "win", Slot: 1})
	for _, name := range []string{"linux-r1", "linux-r1", "nothing-r9"} {
		if err := p.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := p.Stats(), (memory.Stats{Creates: 3, CreateNoops: 1, Deletes: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestAllSortedAcrossPools(t *testing.T) {
	p := memory.New(memory.Options{})
	for _, spec := range []providers.AgentSpec{
		{Name: "win-r3", Pool: "win", Request: 3},
		{Name: "linux-w2", Pool: "linux", Slot: 2},
		{Name: "linux-r10", Pool: "linux", Request: 10},
	} {
		create(t, p, spec)
	}
	var got []string
	for _, in := range p.All() {
		got = append(got, in.Name)
	}
	if want := []string{"linux-r10", "linux-w2", "win-r3"}; !slices.Equal(got, want) {
		t.Errorf("All() names = %v, want %v", got, want)
	}
	if _, ok := p.Get("linux-r3"); ok {
		t.Errorf("Get of a missing name reported found")
	}
}

func TestFailNext(t *testing.T) {
	p := memory.New(memory.Options{})
	ctx := t.Context()
	throttled := &providers.Error{Op: "create", Name: "linux-r1", Retryable: true, RetryAfter: 30 * time.Second, Reason: "throttled", Err: errors.New("429 Too Many Requests")}
	p.FailNext(memory.OpCreate, throttled)
	p.FailNext(memory.OpCreate, throttled)

	spec := providers.AgentSpec{Name: "linux-r1", Pool: "linux", Request: 1}
	for i := range 2 {
		_, err := p.Create(ctx, spec)
		if !errors.Is(err, throttled) {
			t.Fatalf("Create #%d: %v, want the injected error", i+1, err)
		}
		if retryable, after, reason := providers.Classify(err); !retryable || after != 30*time.Second || reason != "throttled" {
			t.Errorf("injected error classified %v/%v/%q, want its own class", retryable, after, reason)
		}
	}
	if _, ok := p.Get(spec.Name); ok || p.Stats().Creates != 0 {
		t.Errorf("a failed create left an instance (stats %+v)", p.Stats())
	}
	create(t, p, spec) // the queue is spent

	listErr := errors.New("connection reset")
	p.FailNext(memory.OpList, listErr)
	if _, err := p.List(ctx, "linux"); !errors.Is(err, listErr) {
		t.Errorf("List: %v, want the injected error", err)
	}
	if ins, err := p.List(ctx, "linux"); err != nil || len(ins) != 1 {
		t.Errorf("List after the fault: %v, %v; want the one instance", ins, err)
	}

	delErr := errors.New("500 Internal Server Error")
	p.FailNext(memory.OpDelete, delErr)
	if err := p.Delete(ctx, spec.Name); !errors.Is(err, delErr) {
		t.Errorf("Delete: %v, want the injected error", err)
	}
	if _, ok := p.Get(spec.Name); !ok {
		t.Errorf("a failed delete removed the instance")
	}
	if err := p.Delete(ctx, spec.Name); err != nil {
		t.Errorf("Delete after the fault: %v", err)
	}
}

func TestFailNextNotSpentByRefusedCalls(t *testing.T) {
	p := memory.New(memory.Options{})
	injected := errors.New("quota exceeded")
	p.FailNext(memory.OpCreate, injected)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Create(canceled, providers.AgentSpec{Name: "linux-r1", Pool: "linux"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := p.Create(t.Context(), providers.AgentSpec{Name: "BAD", Pool: "linux"}); errors.Is(err, injected) {
		t.Errorf("Create of an invalid name consumed the injected fault")
	}
	if _, err := p.Create(t.Context(), providers.AgentSpec{Name: "linux-r1", Pool: "linux"}); !errors.Is(err, injected) {
		t.Errorf("first valid Create: %v, want the injected error", err)
	}
}

func TestFailNextUnknownOpPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("FailNext(\"remove\", ...) did not panic")
		}
	}()
	memory.New(memory.Options{}).FailNext("remove", errors.New("x"))
}

func TestConcurrentUse(t *testing.T) {
	p := memory.New(memory.Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			name := ci.Requests.JobName("linux", int64(i%4))
			if _, err := p.Create(ctx, providers.AgentSpec{Name: name, Pool: "linux", Request: int64(i % 4)}); err != nil {
				t.Errorf("Create(%s): %v", name, err)
			}
			if _, err := p.List(ctx, "linux"); err != nil {
				t.Errorf("List: %v", err)
			}
		})
	}
	wg.Wait()
	if got, want := p.Stats(), (memory.Stats{Creates: 4, CreateNoops: 12}); got != want {
		t.Errorf("Stats() after 16 creates of 4 names = %+v, want %+v", got, want)
	}
}
