package scaler

import (
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/metrics"
)

// lifecycle records the latencies that take more than one look at a pool to
// measure: a job's wait for assignment, its run time, and an agent's
// start-up time. Each is recorded once per job or instance in this process,
// at the first reconcile that can tell; a process that starts while jobs run
// records those once too. Between passes it keeps only what is current (jobs
// an agent holds or that are unfinished, live instances), so its size follows
// the pool, not its history.
//
// The scaler lists unfinished jobs only, so a job's end shows as its having
// left both the agent that held it and that list. Its finish
// time is when the agent's instance exited, when the provider says so, else
// the time of the observation: late by at most one timer interval, and by
// about a second when the completed service hook triggered the reconcile.
type lifecycle struct {
	mu    sync.Mutex
	pools map[string]*poolLife
}

// poolLife is what the last observation of a pool left to compare with.
type poolLife struct {
	at      time.Time
	running map[int64]runningJob // by job id
	online  map[instanceKey]bool // instances whose agent was seen online
}

type runningJob struct {
	agent    string
	assigned time.Time
}

// instanceKey tells apart the successive instances of one name (a warm slot
// is reused). The creation time is kept as an integer: the same time parsed
// twice may carry two different *time.Location values.
type instanceKey struct {
	name    string
	created int64
}

func newLifecycle() *lifecycle { return &lifecycle{pools: map[string]*poolLife{}} }

// observe records what the observation o of pool shows for the first time.
func (l *lifecycle) observe(m *metrics.Metrics, pool string, o Observation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := l.pools[pool]
	if prev == nil {
		prev = &poolLife{}
	} else if o.Now.Before(prev.at) {
		// An older observation finishing late would undo a newer one.
		return
	}
	next := &poolLife{at: o.Now, running: map[int64]runningJob{}, online: map[instanceKey]bool{}}
	jobs(m, pool, o, prev, next)
	agentsOnline(m, pool, o, prev, next)
	l.pools[pool] = next
}

// jobs records the queue wait of newly assigned jobs and the run time of
// jobs that ended since the last look.
func jobs(m *metrics.Metrics, pool string, o Observation, prev, next *poolLife) {
	for _, a := range o.Agents {
		j := a.Job
		if j == nil || j.Assigned.IsZero() {
			continue
		}
		next.running[j.ID] = runningJob{agent: a.Name, assigned: j.Assigned}
		if _, seen := prev.running[j.ID]; !seen && !j.Queued.IsZero() {
			m.QueuedToAssigned(pool, j.Assigned.Sub(j.Queued))
		}
	}
	unfinished := map[int64]bool{}
	for _, j := range o.Jobs {
		unfinished[j.ID] = true
	}
	exited := map[string]time.Time{} // instance (and agent) name -> when it ended
	for _, in := range o.Instances {
		if !in.Finished.IsZero() {
			exited[in.Name] = in.Finished
		}
	}
	for id, j := range prev.running {
		if _, held := next.running[id]; held {
			continue
		}
		if unfinished[id] {
			// No agent holds it, yet it has not ended (its agent went away
			// mid-job): wait for its end.
			next.running[id] = j
			continue
		}
		end := o.Now
		if t, ok := exited[j.agent]; ok && !t.Before(j.assigned) && t.Before(end) {
			end = t
		}
		m.JobDuration(pool, end.Sub(j.assigned))
	}
}

// agentsOnline records how long each instance took to have its agent online,
// from the agent's status change when the source reports it.
func agentsOnline(m *metrics.Metrics, pool string, o Observation, prev, next *poolLife) {
	agents := make(map[string]ci.Agent, len(o.Agents))
	for _, a := range o.Agents {
		agents[a.Name] = a
	}
	for _, in := range o.Instances {
		if in.Created.IsZero() {
			continue
		}
		k := instanceKey{in.Name, in.Created.UnixNano()}
		if prev.online[k] {
			next.online[k] = true
			continue
		}
		a, ok := agents[in.Name]
		if !ok || !a.Online {
			continue
		}
		at := o.Now
		if c := a.StatusChanged; !c.IsZero() && c.Before(at) {
			if c.Before(in.Created) {
				continue // still the registration of an earlier instance of that name
			}
			at = c
		}
		next.online[k] = true
		m.CreatedToOnline(pool, at.Sub(in.Created))
	}
}
