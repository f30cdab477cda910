package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/config"
)

// Kind names how agents are provided.
type Kind string

const (
	// Webhook is agentscaler: a reconcile on every service hook (job
	// queued, job completed) and on a timer as the safety net.
	Webhook Kind = "webhook"
	// Poll is a scaler that reconciles on a timer only, as KEDA's Azure
	// Pipelines scaler does (every 30 s by default there).
	Poll Kind = "poll"
	// Static is a fixed set of always-on agents, each a `docker run
	// --restart always` of a --once agent: after each job the agent exits
	// and its container starts again, which takes a start latency.
	Static Kind = "static"
)

// Policy is one way of providing agents to compare.
type Policy struct {
	Kind     Kind
	Interval time.Duration // the timer of Webhook and Poll
	Agents   int           // the agents of Static
}

// DefaultPollInterval is KEDA's default polling interval.
const DefaultPollInterval = 30 * time.Second

// ParsePolicy reads "webhook", "webhook:<interval>", "poll",
// "poll:<interval>" or "static:<agents>". webhook's timer defaults to
// timer, the reconcile interval of the configuration.
func ParsePolicy(s string, timer time.Duration) (Policy, error) {
	kind, arg, hasArg := strings.Cut(strings.TrimSpace(s), ":")
	interval := func(def time.Duration) (time.Duration, error) {
		if !hasArg {
			return def, nil
		}
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("policy %q: interval %q must be a positive duration such as 30s or 1m", s, arg)
		}
		return d, nil
	}
	switch Kind(strings.ToLower(kind)) {
	case Webhook:
		d, err := interval(timer)
		return Policy{Kind: Webhook, Interval: d}, err
	case Poll:
		d, err := interval(DefaultPollInterval)
		return Policy{Kind: Poll, Interval: d}, err
	case Static:
		n, err := strconv.Atoi(arg)
		if !hasArg || err != nil || n < 1 {
			return Policy{}, fmt.Errorf("policy %q: write static:<agents> with at least one agent, such as static:10", s)
		}
		return Policy{Kind: Static, Agents: n}, nil
	}
	return Policy{}, fmt.Errorf("policy %q: want webhook, webhook:<interval>, poll:<interval> or static:<agents>", s)
}

// String is the policy as ParsePolicy reads it.
func (p Policy) String() string {
	switch p.Kind {
	case Static:
		return fmt.Sprintf("static:%d", p.Agents)
	case Poll:
		return "poll:" + config.ShortDuration(p.Interval)
	}
	return string(p.Kind)
}

// Latency is how long an agent takes from create to online: a fixed value
// (Min == Max) or uniform between Min and Max.
type Latency struct{ Min, Max time.Duration }

// ParseLatency reads "30s" or a range "20s-40s".
func ParseLatency(s string) (Latency, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hi = lo
	}
	a, err1 := time.ParseDuration(strings.TrimSpace(lo))
	b, err2 := time.ParseDuration(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || a < 0 || b < a {
		return Latency{}, fmt.Errorf("start latency %q: write a duration such as 30s, or a range min-max such as 20s-40s", s)
	}
	return Latency{a, b}, nil
}

func (l Latency) String() string {
	if l.Min == l.Max {
		return config.ShortDuration(l.Min)
	}
	return config.ShortDuration(l.Min) + "-" + config.ShortDuration(l.Max)
}

// at draws the latency for a start from u, uniform in [0, 1).
func (l Latency) at(u float64) time.Duration {
	return l.Min + time.Duration(u*float64(l.Max-l.Min))
}
