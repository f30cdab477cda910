package sim

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
)

// Result is what one policy did with the trace. Waits run from a job's
// queue time to its assignment to an agent, over the jobs served.
type Result struct {
	Policy   string  `json:"policy"`
	Jobs     int     `json:"jobs"`     // in the trace
	Unserved int     `json:"unserved"` // never given an agent: demands the pool does not meet, or no agent came
	WaitMean float64 `json:"wait_mean_s"`
	WaitP50  float64 `json:"wait_p50_s"`
	WaitP95  float64 `json:"wait_p95_s"`
	WaitMax  float64 `json:"wait_max_s"`
	// AgentSeconds is the time agents existed, starting, idle or busy:
	// what a provider bills. IdleAgentSeconds is the part of it agents
	// were online without a job.
	AgentSeconds     float64 `json:"agent_seconds"`
	IdleAgentSeconds float64 `json:"idle_agent_seconds"`
	// DuplicateAgents counts instances created for a job request whose
	// agent came online and then ended, or was still there at the end,
	// without running any job: the job it was made for was run by another
	// agent, beyond one per job. An instance made for one job that ran
	// another (the service gives the oldest job to the first agent online)
	// is not a duplicate: it ran a job. Nor is one removed before its agent
	// came online (a start that timed out): that job was not run elsewhere.
	DuplicateAgents int `json:"duplicate_agents"`
	PeakAgents      int `json:"peak_agents"`
	Reconciles      int `json:"reconciles"`

	Window   time.Duration `json:"-"` // the simulated time costs are counted over
	Timeline []Sample      `json:"-"` // the state after each change
}

// Sample is the state of the pool from At until the next sample.
type Sample struct {
	At       time.Duration
	Starting int // instances whose agent is not online yet (a static agent restarting)
	Idle     int // online agents without a job
	Busy     int // agents running a job
	Waiting  int // job requests no agent has
}

type counts struct{ starting, idle, busy, waiting int }

func (s Sample) counts() counts { return counts{s.Starting, s.Idle, s.Busy, s.Waiting} }

func (r *Result) setWaits(waits []time.Duration) {
	if len(waits) == 0 {
		return
	}
	s := slices.Clone(waits)
	slices.Sort(s)
	var sum time.Duration
	for _, w := range s {
		sum += w
	}
	r.WaitMean = round1(sum.Seconds() / float64(len(s)))
	r.WaitP50 = round1(percentile(s, 50).Seconds())
	r.WaitP95 = round1(percentile(s, 95).Seconds())
	r.WaitMax = round1(s[len(s)-1].Seconds())
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// WriteTable writes the results as a table for people: waits in seconds,
// costs in agent-hours.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tjobs\tunserved\twait mean s\tp50 s\tp95 s\tmax s\tagent h\tidle agent h\tduplicates\tpeak agents\treconciles\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t\n", r.Policy, r.Jobs, r.Unserved,
			r.WaitMean, r.WaitP50, r.WaitP95, r.WaitMax, r.AgentSeconds/3600, r.IdleAgentSeconds/3600,
			r.DuplicateAgents, r.PeakAgents, r.Reconciles)
	}
	return tw.Flush()
}
