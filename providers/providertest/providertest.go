// Package providertest checks that a providers.Provider behaves the way the
// scaler relies on, in the spirit of testing/fstest: a provider's test builds
// a Harness that knows how to reach its engine and how to make an instance's
// agent end, and calls Run.
//
// Run covers idempotent create (sequential and concurrent), listing by pool
// and only our own instances, request and slot surviving the round trip
// through labels, idempotent delete, the state transitions and their times,
// the instance name rules and their error class, canceled contexts, and that
// spec secrets never show in what the provider returns.
//
// Every subtest uses its own pool and instance names (a random prefix per Run),
// so one real engine may serve all subtests, and subtests run in parallel:
// the Harness functions must be safe for concurrent use. Each subtest deletes
// what it created when it ends.
package providertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/providers"
)

// Harness connects Run to one provider implementation.
type Harness struct {
	// New returns a fresh, isolated provider for one subtest.
	New func(t *testing.T) providers.Provider
	// Spec returns the base spec (image, env, resources). Run sets Name, Pool,
	// Request and Slot, and adds a secret of its own.
	Spec func(t *testing.T) providers.AgentSpec
	// Finish makes the instance's agent end with exitCode, as a real agent
	// would (a container told to exit). Run calls it once the instance runs.
	Finish func(t *testing.T, p providers.Provider, name string, exitCode int)
	// Foreign, when set, creates an instance in the pool that this autoscaler
	// did not make (no managed label); List must not return it.
	Foreign func(t *testing.T, pool string)
	// Wait bounds how long state transitions may take; they are polled.
	// Zero means DefaultWait.
	Wait time.Duration
}

// DefaultWait is the Wait of a Harness that sets none.
const DefaultWait = 30 * time.Second

// secretKey is the environment name under which Run adds a secret to every
// spec; its value must never appear in an Instance or an error text.
const secretKey = "AGENTSCALER_PROVIDERTEST_SECRET"

// clockSkew is how far apart two times of one instance may be out of order:
// engines record them at different precisions (Kubernetes to the second, ACI
// tags as text), so only larger inversions are errors.
const clockSkew = time.Second

// Run runs the conformance subtests against the provider of h. It returns
// when all of them have finished.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Spec == nil || h.Finish == nil {
		t.Fatal("providertest: Harness needs New, Spec and Finish")
	}
	s := &suite{h: h, wait: h.Wait, prefix: "pt" + randomHex(t, 3), secret: "pt-secret-" + randomHex(t, 16)}
	if s.wait <= 0 {
		s.wait = DefaultWait
	}
	s.opTimeout = max(time.Minute, s.wait)
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"create", testCreate},
		{"create_idempotent", testCreateIdempotent},
		{"create_concurrent", testCreateConcurrent},
		{"list_by_pool", testListByPool},
		{"labels_round_trip", testLabelsRoundTrip},
		{"delete", testDelete},
		{"exit_zero", func(t *testing.T, s *suite) { testExit(t, s, 0, providers.StateExited) }},
		{"exit_nonzero", func(t *testing.T, s *suite) { testExit(t, s, 3, providers.StateFailed) }},
		{"invalid_name", testInvalidName},
		{"canceled_context", testCanceledContext},
	}
	// The group holds the parallel subtests, so Run does not return (and the
	// caller does not tear its engine down) before they are done.
	t.Run("conformance", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, s)
			})
		}
	})
}

// suite is the state shared by the subtests of one Run.
type suite struct {
	h         Harness
	wait      time.Duration
	opTimeout time.Duration // bound of one provider call
	prefix    string        // random, so runs sharing an engine do not collide
	secret    string
	pools     atomic.Int64
}

// pool returns a pool name no other subtest uses.
func (s *suite) pool() string {
	return fmt.Sprintf("%s-%d", s.prefix, s.pools.Add(1))
}

// spec returns the harness's base spec for the instance, with Run's secret.
func (s *suite) spec(t *testing.T, pool, name string, request int64, slot int) providers.AgentSpec {
	t.Helper()
	spec := s.h.Spec(t)
	spec.Name, spec.Pool, spec.Request, spec.Slot = name, pool, request, slot
	secrets := maps.Clone(spec.Secrets)
	if secrets == nil {
		secrets = map[string]string{}
	}
	secrets[secretKey] = s.secret
	spec.Secrets = secrets
	return spec
}

// ctx bounds one provider call.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// noSecret fails the test when the spec's secret shows in v.
func (s *suite) noSecret(t *testing.T, what string, v any) {
	t.Helper()
	if strings.Contains(fmt.Sprintf("%+v", v), s.secret) {
		t.Errorf("%s reveals the spec's secret %s", what, secretKey)
	}
}

// create creates the instance, fails the test on error, and deletes the
// instance when the test ends.
func (s *suite) create(t *testing.T, p providers.Provider, spec providers.AgentSpec) providers.Instance {
	t.Helper()
	s.cleanup(t, p, spec.Name)
	in, err := p.Create(s.ctx(t), spec)
	if err != nil {
		s.noSecret(t, "Create error", err.Error())
		t.Fatalf("Create(%s in pool %s): %v", spec.Name, spec.Pool, err)
	}
	s.noSecret(t, "Create result", in)
	return in
}

// cleanup deletes name when the test ends, on a context of its own: the
// test's context is canceled by then.
func (s *suite) cleanup(t *testing.T, p providers.Provider, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
		defer cancel()
		if err := p.Delete(ctx, name); err != nil {
			t.Errorf("cleanup: Delete(%s): %v", name, err)
		}
	})
}

// list lists the pool and fails the test on error.
func (s *suite) list(t *testing.T, p providers.Provider, pool string) []providers.Instance {
	t.Helper()
	ins, err := p.List(s.ctx(t), pool)
	if err != nil {
		t.Fatalf("List(%s): %v", pool, err)
	}
	s.noSecret(t, "List result", ins)
	return ins
}

// await polls List until cond holds for the instance, and returns it. It fails
// the test if that takes longer than Wait, or if the state ever goes back
// (running to pending, ended to not ended).
func (s *suite) await(t *testing.T, p providers.Provider, pool, name, want string, cond func(providers.Instance) bool) providers.Instance {
	t.Helper()
	deadline := time.Now().Add(s.wait)
	pause := 5 * time.Millisecond
	var last providers.Instance
	found := false
	for {
		in, ok := find(s.list(t, p, pool), name)
		if !ok {
			t.Fatalf("waiting for %s to be %s: List(%s) does not return it (last seen: %+v)", name, want, pool, last)
		}
		if found && rank(in.State) < rank(last.State) {
			t.Errorf("%s went back from %s to %s", name, last.State, in.State)
		}
		last, found = in, true
		if cond(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s within %v; last seen: %+v", name, want, s.wait, last)
		}
		time.Sleep(pause)
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// awaitGone polls List until name is absent.
func (s *suite) awaitGone(t *testing.T, p providers.Provider, pool, name string) {
	t.Helper()
	deadline := time.Now().Add(s.wait)
	pause := 5 * time.Millisecond
	for {
		in, ok := find(s.list(t, p, pool), name)
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still listed %v after Delete returned: %+v", name, s.wait, in)
		}
		time.Sleep(pause)
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// rank orders states along an instance's life.
func rank(st providers.State) int {
	switch st {
	case providers.StatePending:
		return 0
	case providers.StateRunning:
		return 1
	case providers.StateExited, providers.StateFailed:
		return 2
	}
	return -1
}

func find(ins []providers.Instance, name string) (providers.Instance, bool) {
	for _, in := range ins {
		if in.Name == name {
			return in, true
		}
	}
	return providers.Instance{}, false
}

func names(ins []providers.Instance) []string {
	out := make([]string, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.Name)
	}
	slices.Sort(out)
	return out
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("providertest: random name prefix: %v", err)
	}
	return hex.EncodeToString(b)
}

// checkFresh checks a just-created instance against its spec.
func checkFresh(t *testing.T, what string, in providers.Instance, spec providers.AgentSpec) {
	t.Helper()
	if in.Name != spec.Name || in.Pool != spec.Pool || in.Request != spec.Request || in.Slot != spec.Slot {
		t.Errorf("%s: name/pool/request/slot = %q/%q/%d/%d, want %q/%q/%d/%d",
			what, in.Name, in.Pool, in.Request, in.Slot, spec.Name, spec.Pool, spec.Request, spec.Slot)
	}
	if in.State != providers.StatePending && in.State != providers.StateRunning {
		t.Errorf("%s: state %q, want pending or running (the agent has not been told to end)", what, in.State)
	}
	if in.Created.IsZero() {
		t.Errorf("%s: Created is zero", what)
	}
	if in.State == providers.StateRunning && in.Started.IsZero() {
		t.Errorf("%s: running but Started is zero", what)
	}
	if !in.Finished.IsZero() {
		t.Errorf("%s: Finished = %v before the agent ended", what, in.Finished)
	}
}

func testCreate(t *testing.T, s *suite) {
	p := s.h.New(t)
	pool := s.pool()
	spec := s.spec(t, pool, ci.Requests.JobName(pool, 17), 17, 0)
	in := s.create(t, p, spec)
	checkFresh(t, "Create result", in, spec)
	listed, ok := find(s.list(t, p, pool), spec.Name)
	if !ok {
		t.Fatalf("List(%s) does not return the instance %s just created", pool, spec.Name)
	}
	checkFresh(t, "listed instance", listed, spec)
}

func testCreateIdempotent(t *testing.T, s *suite) {
	p := s.h.New(t)
	pool := s.pool()
	spec := s.spec(t, pool, ci.Requests.JobName(pool, 5), 5, 0)
	first := s.create(t, p, spec)
	second, err := p.Create(s.ctx(t), spec)
	if err != nil {
		t.Fatalf("second Create(%s): %v; want the existing instance and no error", spec.Name, err)
	}
	if second.Name != spec.Name || second.Pool != pool || second.Request != 5 {
		t.Errorf("second Create returned %+v, want the existing instance %s", second, spec.Name)
	}
	if d := second.Created.Sub(first.Created).Abs(); d > clockSkew {
		t.Errorf("second Create returned Created %v, first %v: a new instance, not the existing one", second.Created, first.Created)
	}
	if first.Existed || !second.Existed {
		t.Errorf("Existed: %v on the first Create, %v on the second; want false, then true (the scaler counts only new instances)", first.Existed, second.Existed)
	}
	if got := names(s.list(t, p, pool)); !slices.Equal(got, []string{spec.Name}) {
		t.Errorf("after two creates of %s, List(%s) = %v; want exactly that one", spec.Name, pool, got)
	}
}

func testCreateConcurrent(t *testing.T, s *suite) {
	const n = 8
	p := s.h.New(t)
	pool := s.pool()
	spec := s.spec(t, pool, ci.Requests.SlotName(pool, 1), 0, 1)
	s.cleanup(t, p, spec.Name)
	ctx := s.ctx(t)
	var wg sync.WaitGroup
	results := make([]providers.Instance, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { results[i], errs[i] = p.Create(ctx, spec) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("concurrent Create #%d of %s: %v; every create of one name must succeed", i, spec.Name, errs[i])
			continue
		}
		if results[i].Name != spec.Name {
			t.Errorf("concurrent Create #%d returned instance %q, want %q", i, results[i].Name, spec.Name)
		}
		s.noSecret(t, "Create result", results[i])
	}
	if made := slices.DeleteFunc(slices.Clone(results), func(in providers.Instance) bool { return in.Existed }); len(made) != 1 && !t.Failed() {
		t.Errorf("%d of %d concurrent creates of %s report a new instance (Existed false); want exactly one", len(made), n, spec.Name)
	}
	if got := names(s.list(t, p, pool)); !slices.Equal(got, []string{spec.Name}) {
		t.Errorf("after %d concurrent creates of %s, List(%s) = %v; want exactly one", n, spec.Name, pool, got)
	}
}

func testListByPool(t *testing.T, s *suite) {
	p := s.h.New(t)
	a := s.pool()
	// b's instance names start with a's pool and a '-': a provider that lists
	// by name prefix instead of by label returns them for a.
	b := a + "-b"
	aReq := s.create(t, p, s.spec(t, a, ci.Requests.JobName(a, 1), 1, 0))
	aWarm := s.create(t, p, s.spec(t, a, ci.Requests.SlotName(a, 1), 0, 1))
	bReq := s.create(t, p, s.spec(t, b, ci.Requests.JobName(b, 1), 1, 0))
	if s.h.Foreign != nil {
		s.h.Foreign(t, a)
	} else {
		t.Log("Harness.Foreign is nil: not checking that unmanaged instances are left out")
	}

	want := map[string][]string{
		a:        {aReq.Name, aWarm.Name},
		b:        {bReq.Name},
		s.pool(): {}, // a pool with no instances
	}
	slices.Sort(want[a])
	for pool, wantNames := range want {
		ins := s.list(t, p, pool)
		if got := names(ins); !slices.Equal(got, wantNames) {
			t.Errorf("List(%s) = %v, want %v", pool, got, wantNames)
		}
		for _, in := range ins {
			if in.Pool != pool {
				t.Errorf("List(%s) returned %s with Pool %q", pool, in.Name, in.Pool)
			}
		}
	}
}

func testLabelsRoundTrip(t *testing.T, s *suite) {
	p := s.h.New(t)
	pool := s.pool()
	// 2^53+1 does not survive a trip through a float64 (JSON numbers).
	const request = int64(1<<53 + 1)
	reqSpec := s.spec(t, pool, ci.Requests.JobName(pool, request), request, 0)
	warmSpec := s.spec(t, pool, ci.Requests.SlotName(pool, 12), 0, 12)
	s.create(t, p, reqSpec)
	s.create(t, p, warmSpec)
	ins := s.list(t, p, pool)
	for _, spec := range []providers.AgentSpec{reqSpec, warmSpec} {
		in, ok := find(ins, spec.Name)
		if !ok {
			t.Errorf("List(%s) = %v, missing %s", pool, names(ins), spec.Name)
			continue
		}
		if in.Pool != spec.Pool || in.Request != spec.Request || in.Slot != spec.Slot {
			t.Errorf("listed %s has pool/request/slot %q/%d/%d, want %q/%d/%d",
				spec.Name, in.Pool, in.Request, in.Slot, spec.Pool, spec.Request, spec.Slot)
		}
	}
}

func testDelete(t *testing.T, s *suite) {
	p := s.h.New(t)
	pool := s.pool()
	gone := s.create(t, p, s.spec(t, pool, ci.Requests.JobName(pool, 1), 1, 0))
	kept := s.create(t, p, s.spec(t, pool, ci.Requests.JobName(pool, 2), 2, 0))
	if err := p.Delete(s.ctx(t), gone.Name); err != nil {
		t.Fatalf("Delete(%s): %v", gone.Name, err)
	}
	s.awaitGone(t, p, pool, gone.Name)
	if _, ok := find(s.list(t, p, pool), kept.Name); !ok {
		t.Errorf("Delete(%s) also removed %s", gone.Name, kept.Name)
	}
	if err := p.Delete(s.ctx(t), gone.Name); err != nil {
		t.Errorf("Delete(%s) of an already deleted instance: %v; want nil", gone.Name, err)
	}
	missing := ci.Requests.JobName(pool, 999)
	if err := p.Delete(s.ctx(t), missing); err != nil {
		t.Errorf("Delete(%s) of an instance that never existed: %v; want nil", missing, err)
	}
}

func testExit(t *testing.T, s *suite, code int, want providers.State) {
	p := s.h.New(t)
	pool := s.pool()
	spec := s.spec(t, pool, ci.Requests.JobName(pool, 7), 7, 0)
	created := s.create(t, p, spec)
	checkFresh(t, "Create result", created, spec)

	running := s.await(t, p, pool, spec.Name, "running", func(in providers.Instance) bool { return in.State == providers.StateRunning })
	if running.Started.IsZero() {
		t.Errorf("%s is running but Started is zero", spec.Name)
	}
	if running.Started.Before(running.Created.Add(-clockSkew)) {
		t.Errorf("%s Started %v before Created %v", spec.Name, running.Started, running.Created)
	}

	s.h.Finish(t, p, spec.Name, code)
	done := s.await(t, p, pool, spec.Name, "ended", func(in providers.Instance) bool { return in.State.Done() })
	if done.State != want || done.ExitCode != code {
		t.Errorf("after the agent exited with %d: state %q, exit code %d; want %q, %d", code, done.State, done.ExitCode, want, code)
	}
	if done.Started.IsZero() || done.Finished.IsZero() {
		t.Errorf("ended instance has Started %v, Finished %v; want both set", done.Started, done.Finished)
	}
	if done.Finished.Before(done.Started.Add(-clockSkew)) {
		t.Errorf("%s Finished %v before Started %v", spec.Name, done.Finished, done.Started)
	}
	if done.Created.Sub(created.Created).Abs() > clockSkew {
		t.Errorf("%s Created changed from %v to %v", spec.Name, created.Created, done.Created)
	}
	if want == providers.StateExited && done.Reason != "" {
		t.Errorf("%s exited cleanly but has Reason %q", spec.Name, done.Reason)
	}
}

func testInvalidName(t *testing.T, s *suite) {
	p := s.h.New(t)
	pool := s.pool()
	bad := map[string]string{
		"upper case": strings.ToUpper(ci.Requests.JobName(pool, 1)),
		"too long":   pool + "-r" + strings.Repeat("9", providers.MaxNameLen),
		"underscore": pool + "_r1",
		"empty":      "",
	}
	for why, name := range bad {
		_, err := p.Create(s.ctx(t), s.spec(t, pool, name, 1, 0))
		if err == nil {
			s.cleanup(t, p, name)
			t.Errorf("Create(%q) (%s) succeeded; want an error", name, why)
			continue
		}
		s.noSecret(t, "Create error", err.Error())
		if retryable, _, reason := providers.Classify(err); retryable {
			t.Errorf("Create(%q) (%s): %v is classified retryable (reason %q); an invalid name never becomes valid", name, why, err, reason)
		}
	}
	if got := s.list(t, p, pool); len(got) != 0 {
		t.Errorf("List(%s) after refused creates = %v; want none", pool, names(got))
	}
}

func testCanceledContext(t *testing.T, s *suite) {
	p := s.h.New(t)
	pool := s.pool()
	spec := s.spec(t, pool, ci.Requests.JobName(pool, 1), 1, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Create(ctx, spec); err == nil {
		s.cleanup(t, p, spec.Name)
		t.Errorf("Create with a canceled context succeeded; want an error")
	}
	if _, err := p.List(ctx, pool); err == nil {
		t.Errorf("List with a canceled context succeeded; want an error")
	}
	if err := p.Delete(ctx, spec.Name); err == nil {
		t.Errorf("Delete with a canceled context succeeded; want an error")
	}
	if got := s.list(t, p, pool); len(got) != 0 {
		t.Errorf("List(%s) after a create with a canceled context = %v; want none", pool, names(got))
	}
}
