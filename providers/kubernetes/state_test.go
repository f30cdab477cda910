package kubernetes_test

import (
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/kubernetes"
)

// TestStartFailures plays the kubelet and the scheduler for pods that never
// start, and checks that the provider reports them failed with the reason,
// so the scaler cleans them up, while pods that are only slow stay pending
// until the startup timeout.
func TestStartFailures(t *testing.T) {
	e := newEnv(t, nil)
	clock := fakeclock.New(time.Now())
	const startup = 5 * time.Minute
	opt := e.options()
	opt.StartupTimeout = startup
	opt.Now = clock.Now
	p := e.provider(t, opt)

	const pool = "sf"
	type podCase struct {
		name   string
		set    func(ns, pod string)
		before providers.State // reported before the startup timeout
		after  providers.State // and after it
		reason string          // the failed state's reason starts with it
	}
	waiting := func(reason, msg string) func(ns, pod string) {
		return func(ns, pod string) { e.cp.SetPodWaiting(t, ns, pod, reason, msg) }
	}
	cases := []podCase{
		{"pull-backoff", waiting("ImagePullBackOff", `Back-off pulling image "contoso.azurecr.io/agent:nope"`), providers.StateFailed, providers.StateFailed, "ImagePullBackOff: Back-off pulling image"},
		{"pull-error", waiting("ErrImagePull", "manifest unknown"), providers.StateFailed, providers.StateFailed, "ErrImagePull: manifest unknown"},
		{"bad-image", waiting("InvalidImageName", `couldn't parse image name "UPPER:case"`), providers.StateFailed, providers.StateFailed, "InvalidImageName"},
		{"no-secret", waiting("CreateContainerConfigError", `secret "azp-token" not found`), providers.StateFailed, providers.StateFailed, `CreateContainerConfigError: secret "azp-token" not found`},
		{"creating", waiting("ContainerCreating", ""), providers.StatePending, providers.StateFailed, "startup timeout: not running 5m0s after the Job was created (container waiting: ContainerCreating)"},
		{"unschedulable", func(ns, pod string) {
			e.cp.SetPodUnschedulable(t, ns, pod, "0/3 nodes are available: 3 Insufficient cpu.")
		},
			providers.StatePending, providers.StateFailed, "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."},
		{"untouched", func(string, string) {}, providers.StatePending, providers.StateFailed, "startup timeout"},
		{"running", func(ns, pod string) { e.cp.SetPodRunning(t, ns, pod) }, providers.StateRunning, providers.StateRunning, ""},
	}
	created := map[string]providers.Instance{}
	for i, c := range cases {
		spec := baseSpec()
		spec.Name, spec.Pool, spec.Request = ci.Requests.JobName(pool, int64(i+1)), pool, int64(i+1)
		in, err := p.Create(ctx(t), spec)
		if err != nil {
			t.Fatalf("Create(%s): %v", spec.Name, err)
		}
		created[c.name] = in
		c.set(e.ns, e.cp.Pod(t, e.ns, spec.Name).Name)
	}

	check := func(when string, state func(podCase) providers.State) map[string]providers.Instance {
		t.Helper()
		ins, err := p.List(ctx(t), pool)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		got := map[string]providers.Instance{}
		for i, c := range cases {
			in, ok := find(ins, ci.Requests.JobName(pool, int64(i+1)))
			if !ok {
				t.Errorf("%s: %s is not listed", when, c.name)
				continue
			}
			got[c.name] = in
			want := state(c)
			if in.State != want {
				t.Errorf("%s: %s is %s (reason %q), want %s", when, c.name, in.State, in.Reason, want)
				continue
			}
			switch want {
			case providers.StateFailed:
				if !strings.HasPrefix(in.Reason, c.reason) || in.ExitCode != -1 || in.Finished.IsZero() {
					t.Errorf("%s: %s failed with reason %q, exit code %d, finished %v; want reason %q..., exit code -1, a finish time",
						when, c.name, in.Reason, in.ExitCode, in.Finished, c.reason)
				}
			case providers.StateRunning:
				if in.Started.IsZero() {
					t.Errorf("%s: %s is running with no start time", when, c.name)
				}
			}
		}
		return got
	}
	before := check("before the startup timeout", func(c podCase) providers.State { return c.before })
	// The clock started before the Jobs were created: a minute more
	// covers the time the test took so far.
	clock.Advance(startup + time.Minute)
	after := check("after the startup timeout", func(c podCase) providers.State { return c.after })

	for _, c := range cases {
		if c.before == providers.StateFailed && !after[c.name].Finished.Equal(before[c.name].Finished) {
			// The scaler keeps a failed instance failure_backoff from it.
			t.Errorf("%s: the failure time moved from %v to %v between Lists", c.name, before[c.name].Finished, after[c.name].Finished)
		}
		if c.before == providers.StatePending && c.after == providers.StateFailed {
			if want := created[c.name].Created.Add(startup); !after[c.name].Finished.Equal(want) {
				t.Errorf("%s: timed out at %v, want Created+startup_timeout %v", c.name, after[c.name].Finished, want)
			}
		}
	}
}

// TestDeadline lets the Job controller end a Job at its
// activeDeadlineSeconds (max_lifetime) and checks the failure is reported
// with the controller's reason.
func TestDeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.cp.Kubelet(t, e.ns)
	opt := e.options()
	opt.MaxLifetime = time.Second
	p := e.provider(t, opt)
	spec := baseSpec()
	spec.Name, spec.Pool, spec.Request = "dl-r1", "dl", 1
	if _, err := p.Create(ctx(t), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ins, err := p.List(ctx(t), spec.Pool)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		in, ok := find(ins, spec.Name)
		if !ok {
			t.Fatalf("List(%s) = %v, missing %s", spec.Pool, ins, spec.Name)
		}
		if in.State.Done() {
			if in.State != providers.StateFailed || !strings.HasPrefix(in.Reason, "DeadlineExceeded") {
				t.Errorf("after the deadline: %+v; want failed with reason DeadlineExceeded", in)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Job did not end at its 1s deadline within 2m: %+v", in)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestExitReasons checks exit codes and reasons through the Job controller:
// a clean exit, and a failure with the container's exit code.
func TestExitReasons(t *testing.T) {
	e := newEnv(t, nil)
	e.cp.Kubelet(t, e.ns)
	p := e.provider(t, e.options())
	for _, code := range []int32{0, 137} {
		spec := baseSpec()
		spec.Pool = "exit"
		spec.Request = int64(code) + 1
		spec.Name = ci.Requests.JobName(spec.Pool, spec.Request)
		if _, err := p.Create(ctx(t), spec); err != nil {
			t.Fatalf("Create: %v", err)
		}
		pod := e.cp.Pod(t, e.ns, spec.Name)
		awaitState(t, p, spec, providers.StateRunning)
		e.cp.SetPodExited(t, e.ns, pod.Name, code)
		want := providers.StateExited
		if code != 0 {
			want = providers.StateFailed
		}
		in := awaitState(t, p, spec, want)
		if in.ExitCode != int(code) {
			t.Errorf("exit %d: ExitCode %d", code, in.ExitCode)
		}
		if code != 0 && !strings.Contains(in.Reason, "agent exited with code 137") {
			t.Errorf("exit %d: reason %q, want it to give the exit code", code, in.Reason)
		}
	}
}

func awaitState(t *testing.T, p *kubernetes.Provider, spec providers.AgentSpec, want providers.State) providers.Instance {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ins, err := p.List(ctx(t), spec.Pool)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		in, ok := find(ins, spec.Name)
		if ok && in.State == want {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s within 2m: %+v", spec.Name, want, in)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func find(ins []providers.Instance, name string) (providers.Instance, bool) {
	for _, in := range ins {
		if in.Name == name {
			return in, true
		}
	}
	return providers.Instance{}, false
}
