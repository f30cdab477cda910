package scaler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func policy() Policy {
	return Policy{
		Pool: "linux", Naming: ci.Requests, MaxAgents: 10, StartupTimeout: 5 * time.Minute, MaxLifetime: 6 * time.Hour,
		FailureBackoff: 5 * time.Minute,
	}
}

// poolCaps are what the test pool's agents offer.
var poolCaps = map[string]string{"Agent.OS": "Linux", "docker": "", "Agent.Version": "4.261.0"}

// adoObservation is an observation in Azure DevOps' terms. The plan tests
// are written in them: they replay what Azure DevOps shows, adapted as the
// Azure DevOps source adapts it.
type adoObservation struct {
	Now          time.Time
	Requests     []azuredevops.JobRequest
	Agents       []azuredevops.Agent
	Instances    []providers.Instance
	FreeParallel int
	MinIdle      *int // a standby schedule's target, nil for none
}

func (o adoObservation) neutral() Observation {
	return Observation{
		Now: o.Now, Instances: o.Instances, Free: o.FreeParallel,
		Jobs: azuredevops.Jobs(poolCaps, o.Requests), Agents: azuredevops.Agents(poolCaps, o.Agents), MinIdle: o.MinIdle,
	}
}

func planADO(p Policy, o adoObservation) Decision { return Plan(p, o.neutral()) }

// waiting is a request nobody has taken, queued at t0 plus sec seconds.
func waiting(id int64, sec int, demands ...string) azuredevops.JobRequest {
	return azuredevops.JobRequest{RequestID: id, QueueTime: t0.Add(time.Duration(sec) * time.Second), Demands: demands, PlanType: "Build"}
}

func assignedTo(r azuredevops.JobRequest, agent string) azuredevops.JobRequest {
	at := r.QueueTime.Add(time.Second)
	r.AssignTime, r.ReceiveTime = &at, &at
	r.ReservedAgent = &azuredevops.AgentReference{ID: 99, Name: agent, Status: "online", Enabled: true}
	return r
}

func finished(r azuredevops.JobRequest) azuredevops.JobRequest {
	r = assignedTo(r, "someone")
	res := "succeeded"
	r.Result, r.FinishTime = &res, r.AssignTime
	return r
}

func agent(id int, name, status string, req *azuredevops.JobRequest) azuredevops.Agent {
	return azuredevops.Agent{ID: id, Name: name, Status: status, Enabled: true, AssignedRequest: req, CreatedOn: t0}
}

// linuxCaps are a static Linux agent's system capabilities, linuxOnly a
// demand only such an agent meets.
var linuxCaps = map[string]string{"Agent.OS": "Linux", "Agent.Name": "build-vm", "docker": ""}

const linuxOnly = "Agent.OS -equals Linux"

// foreign is an idle, online, enabled agent that is not ours.
func foreign(id int, name string, caps map[string]string) azuredevops.Agent {
	a := agent(id, name, "online", nil)
	a.SystemCapabilities = caps
	return a
}

func disabled(a azuredevops.Agent) azuredevops.Agent { a.Enabled = false; return a }
func offline(a azuredevops.Agent) azuredevops.Agent  { a.Status = "offline"; return a }
func withJob(a azuredevops.Agent, id int64) azuredevops.Agent {
	a.AssignedRequest = &azuredevops.JobRequest{RequestID: id}
	return a
}
func withUserCaps(a azuredevops.Agent, caps map[string]string) azuredevops.Agent {
	a.UserCapabilities = caps
	return a
}

func inst(name string, state providers.State, age time.Duration) providers.Instance {
	in := providers.Instance{Name: name, Pool: "linux", State: state, Created: t0.Add(10*time.Minute - age)}
	if state.Done() {
		in.Finished = in.Created.Add(age / 2)
		if state == providers.StateFailed {
			in.ExitCode = 1
		}
	}
	return in
}

func withRequest(in providers.Instance, id int64) providers.Instance { in.Request = id; return in }
func withSlot(in providers.Instance, n int) providers.Instance       { in.Slot = n; return in }

// now is ten minutes after t0, so instances made with age a were created at now-a.
var now = t0.Add(10 * time.Minute)

func TestPlan(t *testing.T) {
	req7 := waiting(7, 1)
	tests := []struct {
		name   string
		policy func(*Policy)
		obs    adoObservation
		want   []string // "kind name [request] reason"
	}{
		{
			name:   "empty pool gets a placeholder and nothing else",
			policy: func(p *Policy) { p.Placeholder = true },
			want:   []string{"register-placeholder linux-placeholder empty_pool_guard"},
		},
		{
			name:   "placeholder already registered",
			policy: func(p *Policy) { p.Placeholder = true },
			obs:    adoObservation{Agents: []azuredevops.Agent{agent(1, "linux-placeholder", "offline", nil)}},
		},
		{
			name: "one waiting job gets one agent named after it",
			obs:  adoObservation{Requests: []azuredevops.JobRequest{waiting(42, 0)}},
			want: []string{"create linux-r42 42 waiting_job"},
		},
		{
			name: "a job whose instance is starting gets no second one",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(42, 0)},
				Instances: []providers.Instance{withRequest(inst("linux-r42", providers.StatePending, time.Minute), 42)},
			},
		},
		{
			name: "a job listed twice gets one agent",
			obs:  adoObservation{Requests: []azuredevops.JobRequest{waiting(42, 0), waiting(42, 0)}},
			want: []string{"create linux-r42 42 waiting_job"},
		},
		{
			name:   "max_agents keeps the oldest jobs",
			policy: func(p *Policy) { p.MaxAgents = 2 },
			obs:    adoObservation{Requests: []azuredevops.JobRequest{waiting(3, 30), waiting(1, 10), waiting(2, 20)}},
			want:   []string{"create linux-r1 1 waiting_job", "create linux-r2 2 waiting_job"},
		},
		{
			name:   "max_agents counts running instances",
			policy: func(p *Policy) { p.MaxAgents = 2 },
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{assignedTo(waiting(9, 0), "linux-r9"), waiting(10, 1), waiting(11, 2)},
				Agents:    []azuredevops.Agent{agent(5, "linux-r9", "online", &azuredevops.JobRequest{RequestID: 9})},
				Instances: []providers.Instance{withRequest(inst("linux-r9", providers.StateRunning, 2*time.Minute), 9)},
			},
			want: []string{"create linux-r10 10 waiting_job"},
		},
		{
			name: "free parallel jobs cap creates",
			obs:  adoObservation{FreeParallel: 1, Requests: []azuredevops.JobRequest{waiting(1, 0), waiting(2, 1)}},
			want: []string{"create linux-r1 1 waiting_job"},
		},
		{
			name: "finished and assigned requests need nothing",
			obs:  adoObservation{Requests: []azuredevops.JobRequest{finished(waiting(1, 0)), assignedTo(waiting(2, 0), "other")}},
		},
		{
			name: "a request an agent already holds is not waiting, even if the list is stale",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(5, 0)},
				Agents:    []azuredevops.Agent{agent(3, "linux-r5", "online", &azuredevops.JobRequest{RequestID: 5})},
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StateRunning, time.Minute), 5)},
			},
		},
		{
			name: "jobs whose demands the pool does not meet get nothing",
			obs:  adoObservation{Requests: []azuredevops.JobRequest{waiting(1, 0, "Agent.OS -equals Windows_NT"), waiting(2, 0, "maven"), waiting(3, 0, "docker", "Agent.Version -gtVersion 2.163.1")}},
			want: []string{"create linux-r3 3 waiting_job"},
		},
		{
			name: "an idle foreign agent that matches absorbs the oldest job it can take",
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{waiting(1, 590, "docker"), waiting(2, 591), waiting(3, 592)},
				Agents:   []azuredevops.Agent{foreign(8, "build-vm-01", map[string]string{"Agent.OS": "Linux"})},
			},
			want: []string{"create linux-r1 1 waiting_job", "create linux-r3 3 waiting_job"},
		},
		{
			name: "an idle Windows agent does not starve Linux jobs",
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{
					waiting(1, 590, linuxOnly), waiting(2, 591, linuxOnly), waiting(3, 592, linuxOnly), waiting(4, 593, linuxOnly), waiting(5, 594, linuxOnly),
				},
				Agents: []azuredevops.Agent{foreign(8, "win-build-01", map[string]string{"Agent.OS": "Windows_NT"})},
			},
			want: []string{"create linux-r1 1 waiting_job", "create linux-r2 2 waiting_job", "create linux-r3 3 waiting_job", "create linux-r4 4 waiting_job", "create linux-r5 5 waiting_job"},
		},
		{
			name: "a job that waited past the grace beside a matching foreign agent gets ours",
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{waiting(1, 0, linuxOnly), waiting(2, 591, linuxOnly)},
				Agents:   []azuredevops.Agent{foreign(8, "build-vm-01", linuxCaps)},
			},
			want: []string{"create linux-r1 1 waiting_job"},
		},
		{
			name: "a disabled foreign agent absorbs nothing",
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{waiting(1, 590)},
				Agents:   []azuredevops.Agent{disabled(foreign(8, "build-vm-01", linuxCaps))},
			},
			want: []string{"create linux-r1 1 waiting_job"},
		},
		{
			name: "a busy or offline foreign agent absorbs nothing",
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{waiting(1, 590), assignedTo(waiting(2, 580), "build-vm-01")},
				Agents: []azuredevops.Agent{
					withJob(foreign(8, "build-vm-01", linuxCaps), 2),
					offline(foreign(9, "build-vm-02", linuxCaps)),
				},
			},
			want: []string{"create linux-r1 1 waiting_job"},
		},
		{
			name: "user capabilities count for a foreign agent",
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{waiting(1, 590, "java")},
				Agents:   []azuredevops.Agent{withUserCaps(foreign(8, "build-vm-01", linuxCaps), map[string]string{"java": "17"})},
			},
		},
		{
			name: "an idle agent of ours made for a job another agent took serves the next job",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{assignedTo(waiting(1, 0), "build-vm-01"), waiting(2, 5)},
				Agents:    []azuredevops.Agent{agent(8, "build-vm-01", "online", &azuredevops.JobRequest{RequestID: 1}), agent(9, "linux-r1", "online", nil)},
				Instances: []providers.Instance{withRequest(inst("linux-r1", providers.StateRunning, time.Minute), 1)},
			},
		},
		{
			name: "an agent that took another job frees that job's name for this one",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(5, 0), assignedTo(req7, "linux-r5")},
				Agents:    []azuredevops.Agent{agent(3, "linux-r5", "online", &azuredevops.JobRequest{RequestID: 7})},
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StateRunning, time.Minute), 5)},
			},
			want: []string{"create linux-r7 5 waiting_job"},
		},
		{
			name: "agents that took each other's jobs along a chain free the name at its end",
			obs: adoObservation{
				// r7 took job 6, r6 took job 5: job 7 waits, its name and
				// job 6's are held, job 5's is free.
				Requests: []azuredevops.JobRequest{waiting(7, 0), assignedTo(waiting(6, 0), "linux-r7"), assignedTo(waiting(5, 0), "linux-r6")},
				Agents: []azuredevops.Agent{
					agent(3, "linux-r7", "online", &azuredevops.JobRequest{RequestID: 6}),
					agent(4, "linux-r6", "online", &azuredevops.JobRequest{RequestID: 5}),
				},
				Instances: []providers.Instance{
					withRequest(inst("linux-r7", providers.StateRunning, time.Minute), 7),
					withRequest(inst("linux-r6", providers.StateRunning, time.Minute), 6),
				},
			},
			want: []string{"create linux-r5 7 waiting_job"},
		},
		{
			name: "exited instances are deleted and their job served again",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(5, 0)},
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StateExited, time.Minute), 5)},
			},
			want: []string{"delete linux-r5 5 exited"},
		},
		{
			name: "a failed instance is kept for failure_backoff so a broken image does not churn",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(5, 0)},
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StateFailed, 4*time.Minute), 5)},
			},
		},
		{
			name: "a failed instance is deleted after failure_backoff",
			obs: adoObservation{
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StateFailed, 10*time.Minute), 5)},
			},
			want: []string{"delete linux-r5 5 failed_after_backoff"},
		},
		{
			name: "an agent that never came online is removed after startup_timeout",
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(5, 0)},
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StateRunning, 6*time.Minute), 5)},
			},
			want: []string{"delete linux-r5 5 startup_timeout"},
		},
		{
			name:   "max_lifetime removes idle agents, never busy ones",
			policy: func(p *Policy) { p.MaxLifetime = time.Hour },
			obs: adoObservation{
				Requests: []azuredevops.JobRequest{assignedTo(waiting(2, 0), "linux-r2")},
				Agents:   []azuredevops.Agent{agent(1, "linux-w1", "online", nil), agent(2, "linux-r2", "online", &azuredevops.JobRequest{RequestID: 2})},
				Instances: []providers.Instance{
					withSlot(inst("linux-w1", providers.StateRunning, 2*time.Hour), 1),
					withRequest(inst("linux-r2", providers.StateRunning, 2*time.Hour), 2),
				},
			},
			want: []string{"delete linux-w1 max_lifetime"},
		},
		{
			name: "an instance whose job is gone is removed",
			obs: adoObservation{
				Instances: []providers.Instance{withRequest(inst("linux-r5", providers.StatePending, time.Minute), 5)},
			},
			want: []string{"delete linux-r5 5 request_gone"},
		},
		{
			name:   "min_idle keeps warm slots",
			policy: func(p *Policy) { p.MinIdle = 2 },
			want:   []string{"create linux-w1 min_idle", "create linux-w2 min_idle"},
		},
		{
			name:   "a warm agent absorbs a job and a new warm slot replaces it",
			policy: func(p *Policy) { p.MinIdle = 1 },
			obs: adoObservation{
				Requests:  []azuredevops.JobRequest{waiting(5, 0)},
				Agents:    []azuredevops.Agent{agent(1, "linux-w1", "online", nil)},
				Instances: []providers.Instance{withSlot(inst("linux-w1", providers.StateRunning, time.Minute), 1)},
			},
			want: []string{"create linux-w2 min_idle"},
		},
		{
			name:   "min_idle yields to jobs under max_agents",
			policy: func(p *Policy) { p.MinIdle = 2; p.MaxAgents = 2 },
			obs:    adoObservation{Requests: []azuredevops.JobRequest{waiting(5, 0)}},
			want:   []string{"create linux-r5 5 waiting_job", "create linux-w1 min_idle"},
		},
		{
			name: "warm agents beyond min_idle are removed",
			obs: adoObservation{
				Instances: []providers.Instance{withSlot(inst("linux-w1", providers.StatePending, time.Minute), 1)},
			},
			want: []string{"delete linux-w1 excess_warm"},
		},
		{
			name: "only offline agents named exactly like ours, with no job and no instance, are unregistered",
			obs: adoObservation{
				Agents: []azuredevops.Agent{
					agent(1, "linux-r12", "offline", nil),                                    // ours, leftover
					agent(2, "linux-w3", "offline", nil),                                     // ours, leftover
					agent(3, "linux-r13", "offline", &azuredevops.JobRequest{RequestID: 13}), // still holds a job
					agent(4, "linux-r14", "offline", nil),                                    // its instance is starting
					agent(5, "linux-r15x", "offline", nil),                                   // not our pattern
					agent(6, "linuxbig-r16", "offline", nil),                                 // another pool
					agent(7, "Linux-R17", "offline", nil),                                    // not exactly ours
					agent(8, "linux-r18", "online", nil),                                     // online
					agent(9, "linux-placeholder", "offline", nil),                            // the placeholder
				},
				Requests:  []azuredevops.JobRequest{waiting(14, 0)},
				Instances: []providers.Instance{withRequest(inst("linux-r14", providers.StateRunning, time.Minute), 14)},
			},
			want: []string{"unregister linux-r12 offline_leftover", "unregister linux-w3 offline_leftover"},
		},
		{
			name: "an exited instance's offline agent is unregistered with it",
			obs: adoObservation{
				Agents:    []azuredevops.Agent{agent(1, "linux-r12", "offline", nil)},
				Instances: []providers.Instance{withRequest(inst("linux-r12", providers.StateExited, time.Minute), 12)},
			},
			want: []string{"delete linux-r12 12 exited", "unregister linux-r12 offline_leftover"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy()
			if tc.policy != nil {
				tc.policy(&p)
			}
			o := tc.obs
			o.Now = now
			if o.FreeParallel == 0 {
				o.FreeParallel = -1
			}
			d := planADO(p, o)
			got := render(d.Actions)
			if !slices.Equal(got, tc.want) {
				t.Errorf("actions:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func render(actions []Action) []string {
	var out []string
	for _, a := range actions {
		s := string(a.Kind) + " " + a.Name
		if a.Request > 0 {
			s += " " + strconv.FormatInt(a.Request, 10)
		}
		out = append(out, s+" "+a.Reason)
	}
	return out
}

// TestPlanSingleUseAgentOnItsWayOut replays, pass by pass, how a job came to
// get a second agent under a name used before: agent r19 takes the older job
// 16, finishes it, and on its way out still looks like the agent of job 19,
// either because Azure DevOps offers it job 19 before it closes its session
// or because its container runs on a moment after it unregisters. A pass in
// that moment removed r16 (its job was gone), so job 19 had no agent left
// when r19 exited, and a later pass made a new r19 for it.
func TestPlanSingleUseAgentOnItsWayOut(t *testing.T) {
	job16, job19 := waiting(16, 0), waiting(19, 1)
	r16 := func(state providers.State) providers.Instance {
		return withRequest(inst("linux-r16", state, time.Minute), 16)
	}
	r19 := func(state providers.State) providers.Instance {
		return withRequest(inst("linux-r19", state, time.Minute), 19)
	}
	tookJob16 := assignedTo(job16, "linux-r19")
	offered19 := job19
	at := now.Add(-time.Second)
	offered19.AssignTime = &at
	offered19.ReservedAgent = &azuredevops.AgentReference{ID: 2, Name: "linux-r19", Status: "online", Enabled: true}
	type step struct {
		what string
		obs  adoObservation
		want []string
	}
	start := []step{
		{"both jobs wait", adoObservation{Requests: []azuredevops.JobRequest{job16, job19}},
			[]string{"create linux-r16 16 waiting_job", "create linux-r19 19 waiting_job"}},
		{"r19 takes the older job 16; r16 is starting", adoObservation{
			Requests:  []azuredevops.JobRequest{tookJob16, job19},
			Agents:    []azuredevops.Agent{agent(2, "linux-r19", "online", &tookJob16)},
			Instances: []providers.Instance{r16(providers.StatePending), r19(providers.StateRunning)},
		}, nil},
	}
	end := []step{
		{"r19 has exited; r16 is there for job 19", adoObservation{
			Requests:  []azuredevops.JobRequest{job19},
			Instances: []providers.Instance{r16(providers.StatePending), r19(providers.StateExited)},
		}, []string{"delete linux-r19 19 exited"}},
		{"r16 comes online for job 19", adoObservation{
			Requests:  []azuredevops.JobRequest{job19},
			Agents:    []azuredevops.Agent{agent(3, "linux-r16", "online", nil)},
			Instances: []providers.Instance{r16(providers.StateRunning)},
		}, nil},
	}
	for _, tc := range []struct {
		name string
		exit step
	}{
		{"offered the next job before it closes its session", step{"r19 finished job 16 and is offered job 19", adoObservation{
			Requests:  []azuredevops.JobRequest{offered19},
			Agents:    []azuredevops.Agent{agent(2, "linux-r19", "online", &offered19)},
			Instances: []providers.Instance{r16(providers.StatePending), r19(providers.StateRunning)},
		}, nil}},
		{"its container outlives its registration", step{"r19 finished job 16 and unregistered; its container still runs", adoObservation{
			Requests:  []azuredevops.JobRequest{job19},
			Instances: []providers.Instance{r16(providers.StatePending), r19(providers.StateRunning)},
		}, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			created := map[string]bool{}
			for i, st := range slices.Concat(start, []step{tc.exit}, end) {
				o := st.obs
				o.Now, o.FreeParallel = now, -1
				got := render(planADO(policy(), o).Actions)
				if !slices.Equal(got, st.want) {
					t.Fatalf("pass %d (%s):\n got  %q\n want %q", i+1, st.what, got, st.want)
				}
				for _, a := range planADO(policy(), o).Actions {
					if a.Kind == Create && created[a.Name] {
						t.Fatalf("pass %d (%s): %s created a second time", i+1, st.what, a.Name)
					}
					created[a.Name] = true
				}
			}
		})
	}
}

func TestPlanCounts(t *testing.T) {
	o := adoObservation{
		Now: now, FreeParallel: -1,
		Requests: []azuredevops.JobRequest{waiting(1, 0), waiting(2, 0, "Agent.OS -equals Windows_NT"), waiting(3, 0, "java -like 17"), assignedTo(waiting(4, 0), "linux-r4")},
		Agents:   []azuredevops.Agent{agent(1, "linux-r4", "online", &azuredevops.JobRequest{RequestID: 4}), agent(2, "linux-r1", "online", nil), agent(3, "linux-r9", "offline", nil)},
		Instances: []providers.Instance{
			withRequest(inst("linux-r4", providers.StateRunning, time.Minute), 4),
			withRequest(inst("linux-r1", providers.StateRunning, time.Minute), 1),
			withRequest(inst("linux-r6", providers.StatePending, time.Minute), 6),
		},
	}
	d := planADO(policy(), o)
	if d.Waiting != 1 || d.Unmatched != 2 {
		t.Errorf("waiting=%d unmatched=%d, want 1 and 2", d.Waiting, d.Unmatched)
	}
	want := map[string]int{"busy": 1, "idle": 1, "starting": 1, "offline": 1}
	if !reflect.DeepEqual(d.Agents, want) {
		t.Errorf("agents by state = %v, want %v", d.Agents, want)
	}
	if len(d.Problems) != 1 || !strings.Contains(d.Problems[0], "-like") {
		t.Errorf("problems = %q, want one naming the unknown operator", d.Problems)
	}
}

// TestPlanInvariants plans random observations and checks what must hold for
// any of them: no job gets two agents, no name is created twice or while
// taken, max_agents holds, and the plan does not depend on input order.
func TestPlanInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	states := []providers.State{providers.StatePending, providers.StateRunning, providers.StateExited, providers.StateFailed}
	for i := range 2000 {
		p := policy()
		p.MaxAgents = 1 + rng.IntN(6)
		p.MinIdle = rng.IntN(3)
		var o adoObservation
		o.Now, o.FreeParallel = now, -1
		if rng.IntN(2) == 0 {
			p.MaxAgents = 100 // no cap: every servable job must be served
		}
		target := p.MinIdle
		if rng.IntN(3) == 0 { // a standby schedule's target, above or below min_idle
			target = rng.IntN(4)
			o.MinIdle = &target
		}
		demands := [][]string{nil, {linuxOnly}, {"docker"}, {"java"}}
		for id := int64(1); id <= int64(rng.IntN(10)); id++ {
			// Queued up to ten minutes ago, some within ForeignGrace.
			r := waiting(id, rng.IntN(600), demands[rng.IntN(len(demands))]...)
			if rng.IntN(4) == 0 {
				r = assignedTo(r, "x")
			}
			o.Requests = append(o.Requests, r)
		}
		for n := range rng.IntN(3) {
			caps := [](map[string]string){linuxCaps, {"Agent.OS": "Windows_NT"}, {"Agent.OS": "Linux", "java": "17"}}[rng.IntN(3)]
			a := foreign(50+n, fmt.Sprintf("static-%d", n), caps)
			switch rng.IntN(5) {
			case 0:
				a = disabled(a)
			case 1:
				a = offline(a)
			}
			o.Agents = append(o.Agents, a)
		}
		for n := range rng.IntN(6) {
			name, in := "", providers.Instance{}
			if rng.IntN(3) == 0 {
				name = ci.Requests.SlotName("linux", n+1)
				in = withSlot(inst(name, states[rng.IntN(4)], time.Duration(rng.IntN(600))*time.Second), n+1)
			} else {
				id := int64(1 + rng.IntN(10))
				name = ci.Requests.JobName("linux", id)
				in = withRequest(inst(name, states[rng.IntN(4)], time.Duration(rng.IntN(600))*time.Second), id)
			}
			if slices.ContainsFunc(o.Instances, func(x providers.Instance) bool { return x.Name == name }) {
				continue
			}
			o.Instances = append(o.Instances, in)
			if rng.IntN(2) == 0 {
				var held *azuredevops.JobRequest
				if rng.IntN(2) == 0 {
					held = &azuredevops.JobRequest{RequestID: int64(1 + rng.IntN(10))}
				}
				o.Agents = append(o.Agents, agent(n, name, []string{"online", "offline"}[rng.IntN(2)], held))
			}
		}
		d := planADO(p, o)

		taken := map[string]bool{}
		live := 0
		for _, in := range o.Instances {
			taken[in.Name] = true
			if !in.State.Done() {
				live++
			}
		}
		deleted, perRequest, creates := 0, map[int64]int{}, 0
		warmCreates, excessWarm := 0, 0
		for _, a := range d.Actions {
			switch {
			case a.Kind == Create && a.Slot > 0:
				warmCreates++
			case a.Kind == Delete && a.Reason == ReasonExcessWarm:
				excessWarm++
			}
			switch a.Kind {
			case Create:
				creates++
				if taken[a.Name] {
					t.Fatalf("case %d: create of taken name %s\n%+v\n%v", i, a.Name, o, render(d.Actions))
				}
				taken[a.Name] = true
				if a.Request > 0 {
					perRequest[a.Request]++
				}
			case Delete:
				deleted++
			}
		}
		for _, in := range o.Instances {
			if in.Request > 0 && !in.State.Done() {
				perRequest[in.Request]++
			}
		}
		for _, r := range o.Requests {
			if r.Waiting() && perRequest[r.RequestID] > 1 && !heldElsewhere(o, r.RequestID) {
				t.Fatalf("case %d: request %d has %d agents\n%v", i, r.RequestID, perRequest[r.RequestID], render(d.Actions))
			}
		}
		if p.MaxAgents == 100 && !swapped(o) {
			// Every waiting job this pool serves has capacity: a spare
			// instance of ours, a create, or an idle foreign agent Azure
			// DevOps would hand it to at once. (A job whose name is held
			// along a chain of swaps may wait a pass for the chain to move.)
			if need, have := servable(p, o), spareKept(o, d)+creates+foreignTakers(p, o); need > have {
				t.Fatalf("case %d: %d waiting jobs but capacity for %d\n%+v\n%v", i, need, have, o, render(d.Actions))
			}
		}
		if warmCreates > target || warmCreates > 0 && excessWarm > 0 {
			t.Fatalf("case %d: %d warm creates and %d excess warm deletes for a target of %d\n%v", i, warmCreates, excessWarm, target, render(d.Actions))
		}
		if creates > 0 && live+creates-deleted > p.MaxAgents {
			t.Fatalf("case %d: %d live + %d creates - %d deletes exceeds max_agents %d", i, live, creates, deleted, p.MaxAgents)
		}
		o2 := o
		o2.Requests = slices.Clone(o.Requests)
		o2.Instances = slices.Clone(o.Instances)
		o2.Agents = slices.Clone(o.Agents)
		slices.Reverse(o2.Requests)
		slices.Reverse(o2.Instances)
		slices.Reverse(o2.Agents)
		if got, want := render(planADO(p, o2).Actions), render(d.Actions); !sameSet(got, want) {
			t.Fatalf("case %d: plan depends on input order:\n%v\n%v", i, got, want)
		}
	}
}

// servable counts the distinct waiting requests the pool's capabilities
// meet and no agent holds.
func servable(p Policy, o adoObservation) int {
	held := map[int64]bool{}
	for _, a := range o.Agents {
		if a.AssignedRequest != nil {
			held[a.AssignedRequest.RequestID] = true
		}
	}
	seen := map[int64]bool{}
	for _, r := range o.Requests {
		if ok, _ := azuredevops.Satisfies(poolCaps, r.Demands); ok && r.Waiting() && !held[r.RequestID] {
			seen[r.RequestID] = true
		}
	}
	return len(seen)
}

// spareKept counts our live instances whose agent holds no job and that the
// plan keeps, the failed ones it keeps for failure_backoff, which hold their
// job back on purpose, and those it deletes while their job is unfinished:
// the name is free for a waiting job's agent at the next pass.
func spareKept(o adoObservation, d Decision) int {
	deleted := map[string]bool{}
	for _, a := range d.Actions {
		if a.Kind == Delete {
			deleted[a.Name] = true
		}
	}
	busy := map[string]bool{}
	for _, a := range o.Agents {
		if a.AssignedRequest != nil {
			busy[a.Name] = true
		}
	}
	unfinished := map[int64]bool{}
	for _, r := range o.Requests {
		unfinished[r.RequestID] = r.Result == nil
	}
	n := 0
	for _, in := range o.Instances {
		kept := (!in.State.Done() || in.State == providers.StateFailed) && !deleted[in.Name] && !busy[in.Name]
		if kept || deleted[in.Name] && unfinished[in.Request] {
			n++
		}
	}
	return n
}

// foreignTakers counts the idle foreign agents that meet the demands of at
// least one waiting request queued within ForeignGrace.
func foreignTakers(p Policy, o adoObservation) int {
	n := 0
	for _, a := range o.Agents {
		if strings.HasPrefix(a.Name, p.Pool+"-") || !a.Online() || !a.Enabled || a.AssignedRequest != nil {
			continue
		}
		for _, r := range o.Requests {
			if ok, _ := azuredevops.Satisfies(a.SystemCapabilities, r.Demands); ok && r.Waiting() && o.Now.Sub(r.QueueTime) < ForeignGrace {
				n++
				break
			}
		}
	}
	return n
}

// swapped reports whether an agent of ours holds a job other than the one
// its instance was named for.
func swapped(o adoObservation) bool {
	for _, a := range o.Agents {
		if a.AssignedRequest != nil && strings.HasPrefix(a.Name, "linux-r") && a.Name != ci.Requests.JobName("linux", a.AssignedRequest.RequestID) {
			return true
		}
	}
	return false
}

// heldElsewhere reports whether an instance named for the request has an
// agent busy with another job, which is how a second instance carrying the
// request id legitimately appears.
func heldElsewhere(o adoObservation, id int64) bool {
	for _, a := range o.Agents {
		if a.Name == ci.Requests.JobName("linux", id) && a.AssignedRequest != nil && a.AssignedRequest.RequestID != id {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
