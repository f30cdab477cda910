package azuredevops

import (
	"testing"
	"time"
)

func TestJobsAndAgentsInTheCIModel(t *testing.T) {
	caps := PoolCapabilities(map[string]string{"docker": ""}, "4.261.0")
	q := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	at := q.Add(time.Second)
	result := "succeeded"
	jobs := Jobs(caps, []JobRequest{
		{RequestID: 1, JobID: "a", QueueTime: q, Demands: []string{"docker"}},
		{RequestID: 2, JobID: "b", QueueTime: q, Demands: []string{"java"}},
		{RequestID: 3, QueueTime: q, Demands: []string{"Agent.Version -gtVersion"}},
		{RequestID: 4, QueueTime: q, AssignTime: &at, ReservedAgent: &AgentReference{Name: "x"}},
		{RequestID: 5, QueueTime: q, Result: &result},
	})
	for i, want := range []struct {
		waiting, servable, problem, takes bool
	}{
		{true, true, false, true},
		{true, false, false, true},
		{true, false, true, true},
		{false, true, false, false},
		{false, true, false, false},
	} {
		j := jobs[i]
		if j.ID != int64(i+1) || j.Waiting != want.waiting || j.Servable != want.servable || (j.Problem != "") != want.problem || (j.Takes != nil) != want.takes {
			t.Errorf("request %d: %+v, want waiting %v servable %v problem %v takes %v", i+1, j, want.waiting, want.servable, want.problem, want.takes)
		}
	}
	if jobs[0].Ref != "a" || !jobs[0].Queued.Equal(q) {
		t.Errorf("request 1: ref %q queued %v", jobs[0].Ref, jobs[0].Queued)
	}
	if !jobs[1].Takes(map[string]string{"java": "17"}) || jobs[1].Takes(caps) {
		t.Errorf("request 2 (demands java) is taken by the wrong agents")
	}

	changed := q.Add(-time.Minute)
	agents := Agents(caps, []Agent{
		{ID: 7, Name: "linux-r1", Status: "online", Enabled: true, StatusChangedOn: &changed,
			SystemCapabilities: map[string]string{"Agent.OS": "Linux"}, UserCapabilities: map[string]string{"java": "17"},
			AssignedRequest: &JobRequest{RequestID: 1, QueueTime: q, AssignTime: &at, Demands: []string{"docker"}}},
		{ID: 8, Name: "win-1", Status: "offline", AssignedRequest: &JobRequest{RequestID: 2, Demands: []string{"java"}}},
		{ID: 9, Name: "linux-r3", Status: "online", Enabled: true, AssignedRequest: &JobRequest{RequestID: 3, ReceiveTime: &at}},
		{ID: 10, Name: "idle"},
	})
	a := agents[0]
	if a.ID != 7 || !a.Online || !a.Enabled || !a.StatusChanged.Equal(changed) || a.Caps["java"] != "17" || a.Caps["Agent.OS"] != "Linux" {
		t.Errorf("agent 7: %+v", a)
	}
	if h := a.Job; h == nil || h.ID != 1 || !h.Assigned.Equal(at) || !h.Queued.Equal(q) || !h.Unsure {
		t.Errorf("agent 7 holds %+v, want request 1, assigned, not yet received (unsure)", h)
	}
	if h := agents[1].Job; agents[1].Online || h == nil || h.Unsure {
		t.Errorf("agent 8 holds %+v: a job this pool cannot serve is never unsure", h)
	}
	if h := agents[2].Job; h == nil || h.Unsure {
		t.Errorf("agent 9 holds %+v: a received job is not unsure", h)
	}
	if agents[3].Job != nil || agents[3].Caps == nil {
		t.Errorf("agent 10: %+v", agents[3])
	}
}
