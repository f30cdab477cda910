package scaler

import (
	"math"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// histogram returns the sample count and sum of the pool's series of a
// histogram, from the registry as a scrape would see it.
func histogram(t *testing.T, m *metrics.Metrics, name string) (uint64, float64) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "pool" && l.GetValue() == "linux" {
					return s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return 0, 0
}

// at is t0 plus sec seconds.
func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func ptr[T any](v T) *T { return &v }

// running is request id, queued at t0, assigned at assigned seconds.
func running(id int64, assigned int) *azuredevops.JobRequest {
	return &azuredevops.JobRequest{RequestID: id, QueueTime: t0, AssignTime: ptr(at(assigned))}
}

func online(name string, since int, req *azuredevops.JobRequest) azuredevops.Agent {
	a := agent(1, name, "online", req)
	a.StatusChangedOn = ptr(at(since))
	return a
}

func created(name string, sec int) providers.Instance {
	return providers.Instance{Name: name, Pool: "linux", State: providers.StateRunning, Created: at(sec)}
}

func exitedAt(in providers.Instance, sec int) providers.Instance {
	in.State, in.Finished = providers.StateExited, at(sec)
	return in
}

// TestLifecycleLatencies feeds successive observations of one pool and
// checks what each histogram holds after each: every latency once, measured
// between the right two moments.
func TestLifecycleLatencies(t *testing.T) {
	type want struct {
		count uint64
		sum   float64 // seconds
	}
	steps := []struct {
		name                     string
		obs                      adoObservation
		toAssigned, run, startup want
	}{
		{
			name: "instance created, agent not registered yet",
			obs: adoObservation{Now: at(10), Requests: []azuredevops.JobRequest{waiting(1, 0)},
				Instances: []providers.Instance{created("linux-r1", 5)}},
		},
		{
			name: "agent online since 25s: 20s after its instance was created",
			obs: adoObservation{Now: at(30), Requests: []azuredevops.JobRequest{waiting(1, 0)},
				Agents:    []azuredevops.Agent{online("linux-r1", 25, nil)},
				Instances: []providers.Instance{created("linux-r1", 5)}},
			startup: want{1, 20},
		},
		{
			name: "job assigned at 40s: waited 40s; the online agent is not counted again",
			obs: adoObservation{Now: at(50), Requests: []azuredevops.JobRequest{*running(1, 40)},
				Agents:    []azuredevops.Agent{online("linux-r1", 25, running(1, 40))},
				Instances: []providers.Instance{created("linux-r1", 5)}},
			toAssigned: want{1, 40}, startup: want{1, 20},
		},
		{
			name: "still running: nothing new",
			obs: adoObservation{Now: at(70), Requests: []azuredevops.JobRequest{*running(1, 40)},
				Agents:    []azuredevops.Agent{online("linux-r1", 25, running(1, 40))},
				Instances: []providers.Instance{created("linux-r1", 5)}},
			toAssigned: want{1, 40}, startup: want{1, 20},
		},
		{
			name: "job ended, its instance exited at 100s: ran 60s, not until this look at 130s",
			obs: adoObservation{Now: at(130),
				Instances: []providers.Instance{exitedAt(created("linux-r1", 5), 100)}},
			toAssigned: want{1, 40}, run: want{1, 60}, startup: want{1, 20},
		},
		{
			name: "an observation older than the last one changes nothing",
			obs: adoObservation{Now: at(120), Requests: []azuredevops.JobRequest{*running(1, 40)},
				Agents:    []azuredevops.Agent{online("linux-r1", 25, running(1, 40))},
				Instances: []providers.Instance{created("linux-r1", 5)}},
			toAssigned: want{1, 40}, run: want{1, 60}, startup: want{1, 20},
		},
		{
			name: "a new instance under a reused name, the old registration still online: not its agent",
			obs: adoObservation{Now: at(200), Agents: []azuredevops.Agent{online("linux-w1", 25, nil)},
				Instances: []providers.Instance{created("linux-w1", 150)}},
			toAssigned: want{1, 40}, run: want{1, 60}, startup: want{1, 20},
		},
		{
			name: "its own agent online at 180s: 30s; a foreign agent takes job 2 at 200s",
			obs: adoObservation{Now: at(210), Requests: []azuredevops.JobRequest{*running(2, 200)},
				Agents:    []azuredevops.Agent{online("linux-w1", 180, nil), online("build-vm-01", 0, running(2, 200))},
				Instances: []providers.Instance{created("linux-w1", 150)}},
			toAssigned: want{2, 240}, run: want{1, 60}, startup: want{2, 50},
		},
		{
			name: "the foreign agent dropped job 2 but it is unfinished: not ended",
			obs: adoObservation{Now: at(230), Requests: []azuredevops.JobRequest{*running(2, 200)},
				Agents:    []azuredevops.Agent{online("linux-w1", 180, nil), agent(2, "build-vm-01", "offline", nil)},
				Instances: []providers.Instance{created("linux-w1", 150)}},
			toAssigned: want{2, 240}, run: want{1, 60}, startup: want{2, 50},
		},
		{
			name: "job 2 ended; no instance says when: ran until this look, 100s",
			obs: adoObservation{Now: at(300), Agents: []azuredevops.Agent{online("linux-w1", 180, nil)},
				Instances: []providers.Instance{created("linux-w1", 150)}},
			toAssigned: want{2, 240}, run: want{2, 160}, startup: want{2, 50},
		},
	}
	m := metrics.New("test")
	l := newLifecycle()
	for _, st := range steps {
		l.observe(m, "linux", st.obs.neutral())
		for _, h := range []struct {
			name string
			want want
		}{
			{"agentscaler_job_queued_to_assigned_seconds", st.toAssigned},
			{"agentscaler_job_duration_seconds", st.run},
			{"agentscaler_agent_created_to_online_seconds", st.startup},
		} {
			count, sum := histogram(t, m, h.name)
			if count != h.want.count || math.Abs(sum-h.want.sum) > 1e-9 {
				t.Errorf("%s: %s has %d samples summing to %gs, want %d summing to %gs",
					st.name, h.name, count, sum, h.want.count, h.want.sum)
			}
		}
	}
	// What is left is what is current: no job, one live instance.
	if p := l.pools["linux"]; len(p.running) != 0 || len(p.online) != 1 {
		t.Errorf("bookkeeping after the jobs ended: %d jobs, %d instances; want 0 and 1", len(p.running), len(p.online))
	}
}

// TestLifecycleForgetsWhatIsGone: many jobs and instances come and go; the
// bookkeeping holds only what the last observation showed.
func TestLifecycleForgetsWhatIsGone(t *testing.T) {
	m := metrics.New("test")
	l := newLifecycle()
	for i := range 1000 {
		id := int64(i + 1)
		name := ci.Requests.JobName("linux", id)
		req := running(id, i)
		l.observe(m, "linux", adoObservation{Now: at(i),
			Requests:  []azuredevops.JobRequest{*req},
			Agents:    []azuredevops.Agent{online(name, i, req)},
			Instances: []providers.Instance{created(name, i)}}.neutral())
	}
	if p := l.pools["linux"]; len(p.running) != 1 || len(p.online) != 1 {
		t.Errorf("after 1000 jobs one at a time: %d jobs and %d instances kept, want 1 and 1", len(p.running), len(p.online))
	}
	if count, _ := histogram(t, m, "agentscaler_job_duration_seconds"); count != 999 {
		t.Errorf("%d job durations, want 999 (every job but the running one)", count)
	}
}
