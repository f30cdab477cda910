// Package metrics holds agentscaler's Prometheus collectors: webhook traffic,
// queue depth and agents per pool, provider operations, the latencies a job
// sees from queued to assigned, reconcile passes, and Azure DevOps API use.
//
// Every Metrics owns its own registry (nothing is registered globally), so
// tests and several scalers in one process never collide. A nil *Metrics is
// valid and records nothing, which lets tests and the dry-run pass nil.
//
// Gauges are written from the truth observed at each reconcile rather than
// kept as running sums: serverless instances come and go, and each one must
// report what it saw, not what it remembers. The one running sum is
// agentscaler_agent_seconds_total, the cost: each process adds the time
// between its own passes times the agents each saw, so each one's counter
// measures the whole pool on its own; take max over processes, not sum
// (see docs/architecture.md).
//
// Labels never hold a job, request or agent id. Values that come from outside
// (webhook source and event, provider error reasons, API endpoints) pass
// through a per-label cap so a misbehaving sender cannot grow the series
// count without bound; see [maxLabelValues].
//
// Where no scraper reaches (serverless hosts), a [Pusher] keeps this
// process's group on a Pushgateway current instead.
package metrics

import (
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Agent states for [Metrics.SetAgents]. Only these are exported; any other
// key is dropped so a typo cannot add series.
const (
	AgentStarting = "starting" // instance created, agent not yet online
	AgentIdle     = "idle"     // online, no job assigned
	AgentBusy     = "busy"     // online, running a job
	AgentOffline  = "offline"  // registered but not connected
)

var agentStates = [...]string{AgentStarting, AgentIdle, AgentBusy, AgentOffline}

// ResultOK is the provider operation result for success; any other result is
// the error's reason (see providers.Classify).
const ResultOK = "ok"

const namespace = "agentscaler"

// Bucket layouts, in seconds, chosen for what each histogram measures.
var (
	// A create call: sub-second for Docker, tens of seconds for ACI.
	bucketsCreate = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}
	// Image pull and agent configuration: seconds to tens of minutes.
	bucketsStartup = []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800}
	// Queued to assigned: the number users feel; up to an hour when pools are full.
	bucketsAssign = []float64{1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600}
	// Job run time: seconds to the 6 h Azure Pipelines self-hosted default and beyond.
	bucketsJob = []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600, 43200, 86400}
	// A reconcile: a few REST calls and provider calls.
	bucketsReconcile = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// Webhook delivery: usually sub-second, up to ~3 min when Azure DevOps retries.
	bucketsLag = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// Metrics records agentscaler's measurements. All methods are safe for
// concurrent use and do nothing on a nil receiver.
type Metrics struct {
	reg    *prometheus.Registry
	source sourceMetrics // source.go

	webhookRequests *prometheus.CounterVec
	webhookLag      *prometheus.HistogramVec
	waitingJobs     *prometheus.GaugeVec
	agents          *prometheus.GaugeVec
	agentSeconds    *prometheus.CounterVec
	providerOps     *prometheus.CounterVec
	queuedToCreated *prometheus.HistogramVec
	createdToOnline *prometheus.HistogramVec
	queuedToAssign  *prometheus.HistogramVec
	jobDuration     *prometheus.HistogramVec
	reconcileDur    *prometheus.HistogramVec
	reconciles      *prometheus.CounterVec
	azdoRequests    *prometheus.CounterVec
	sourceRequests  *prometheus.CounterVec
	rateLimit       prometheus.Gauge
	jobRequestPages *prometheus.CounterVec
	jobRequestCuts  *prometheus.CounterVec
	poolMaxAgents   *prometheus.GaugeVec
	poolMinIdle     *prometheus.GaugeVec
	parallelJobs    *prometheus.GaugeVec

	// Caps on label values that come from outside the process.
	sources, events, outcomes *labelCap
	providers, ops, results   *labelCap
	endpoints                 *labelCap
	reconcileOutcomes         *labelCap
	azurePoolIDs              *labelCap

	// pooled lists every collector labelled by pool, for ForgetPool.
	pooled []*prometheus.MetricVec
}

// New builds the collectors and registers them, with the Go runtime and
// process collectors and agentscaler_build_info for version, on a new registry.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),

		webhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_requests_total",
			Help: "Webhook requests received, by source, event type and outcome.",
		}, []string{"source", "event", "outcome"}),
		webhookLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "webhook_delivery_lag_seconds",
			Help:    "Seconds from the event's creation at the source to its receipt here.",
			Buckets: bucketsLag,
		}, []string{"source"}),
		waitingJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "waiting_jobs",
			Help: "Job requests waiting for an agent that this pool can serve, as seen at the last reconcile.",
		}, []string{"pool"}),
		agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "agents",
			Help: "Agents per pool and state (starting, idle, busy, offline), as seen at the last reconcile.",
		}, []string{"pool", "state"}),
		agentSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "agent_seconds_total",
			Help: "Agent-seconds by pool and state (starting, idle, busy): at each reconcile, the time since the pool's previous one times its agents in each state as that one left them.",
		}, []string{"pool", "state"}),
		providerOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "provider_operations_total",
			Help: "Provider calls by provider, operation and result (ok, or the error reason).",
		}, []string{"provider", "operation", "result"}),
		queuedToCreated: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_queued_to_agent_created_seconds",
			Help:    "Seconds from a job being queued to its agent instance being created.",
			Buckets: bucketsCreate,
		}, []string{"pool"}),
		createdToOnline: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "agent_created_to_online_seconds",
			Help:    "Seconds from an agent instance being created to its agent coming online in Azure DevOps.",
			Buckets: bucketsStartup,
		}, []string{"pool"}),
		queuedToAssign: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_queued_to_assigned_seconds",
			Help:    "Seconds from a job being queued to its assignment to an agent.",
			Buckets: bucketsAssign,
		}, []string{"pool"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_duration_seconds",
			Help:    "Seconds a job ran on its agent, from assignment to completion.",
			Buckets: bucketsJob,
		}, []string{"pool"}),
		reconcileDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "reconcile_duration_seconds",
			Help:    "Seconds one reconcile pass of a pool took, by outcome.",
			Buckets: bucketsReconcile,
		}, []string{"pool", "outcome"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconciles_total",
			Help: "Reconcile passes by pool and outcome.",
		}, []string{"pool", "outcome"}),
		azdoRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "azuredevops_requests_total",
			Help: "Azure DevOps REST calls by endpoint and HTTP status code (error when no response arrived).",
		}, []string{"endpoint", "status"}),
		sourceRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "source_requests_total",
			Help: "Calls to a CI system's API other than Azure DevOps (bitbucket), by source, endpoint and HTTP status code (error when no response arrived).",
		}, []string{"source", "endpoint", "status"}),
		rateLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "azuredevops_ratelimit_remaining",
			Help: "Azure DevOps rate-limit budget left in the current window, in TSTU (X-RateLimit-Remaining).",
		}),
		jobRequestPages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "azuredevops_jobrequest_pages_total",
			Help: "Pages of the paged job request list read, by Azure DevOps pool id: read only when the unfinished-only list comes back full (200).",
		}, []string{"azure_pool_id"}),
		jobRequestCuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "azuredevops_jobrequest_lists_truncated_total",
			Help: "Job request listings cut short by azuredevops.max_pages, by Azure DevOps pool id: waiting jobs may have gone unseen.",
		}, []string{"azure_pool_id"}),
		poolMaxAgents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "pool_max_agents",
			Help: "Configured upper bound on agent instances for the pool.",
		}, []string{"pool"}),
		poolMinIdle: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "pool_min_idle",
			Help: "Warm idle agents kept for the pool: its min_idle, or its standby schedule's target as of the last reconcile.",
		}, []string{"pool"}),
		parallelJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "parallel_jobs",
			Help: "Self-hosted parallel jobs of the organization: kind=used is in use, kind=total is purchased.",
		}, []string{"kind"}),

		sources:           newLabelCap(),
		events:            newLabelCap(),
		outcomes:          newLabelCap(),
		providers:         newLabelCap(),
		ops:               newLabelCap(),
		results:           newLabelCap(),
		endpoints:         newLabelCap(),
		reconcileOutcomes: newLabelCap(),
		azurePoolIDs:      newLabelCap(),
	}
	m.pooled = []*prometheus.MetricVec{
		m.waitingJobs.MetricVec, m.agents.MetricVec, m.agentSeconds.MetricVec,
		m.queuedToCreated.MetricVec, m.createdToOnline.MetricVec,
		m.queuedToAssign.MetricVec, m.jobDuration.MetricVec,
		m.reconcileDur.MetricVec, m.reconciles.MetricVec,
		m.poolMaxAgents.MetricVec, m.poolMinIdle.MetricVec,
	}

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels carry the agentscaler version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.webhookRequests, m.webhookLag, m.waitingJobs, m.agents, m.agentSeconds, m.providerOps,
		m.queuedToCreated, m.createdToOnline, m.queuedToAssign, m.jobDuration,
		m.reconcileDur, m.reconciles, m.azdoRequests, m.sourceRequests, m.rateLimit,
		m.jobRequestPages, m.jobRequestCuts,
		m.poolMaxAgents, m.poolMinIdle, m.parallelJobs,
	)
	return m
}

// Registry returns the registry holding every collector, for a Pushgateway
// push or extra collectors. It is nil for a nil Metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus text format (OpenMetrics
// when the scraper asks for it is off). For a nil Metrics it serves an empty
// exposition, so a route can be wired unconditionally.
func (m *Metrics) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	if m != nil {
		reg = m.reg
	}
	// Errors from a collector are logged and the rest is still served: a
	// partial scrape beats none.
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(slog.Default().Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
	return promhttp.InstrumentMetricHandler(reg, h)
}

// WebhookRequest counts one webhook request. source is the route's source
// (azuredevops), event the payload's event type, outcome what was done with
// it (accepted, ignored, unauthorized, ...).
func (m *Metrics) WebhookRequest(source, event, outcome string) {
	if m == nil {
		return
	}
	m.webhookRequests.WithLabelValues(m.sources.value(source), m.events.value(event), m.outcomes.value(outcome)).Inc()
}

// WebhookLag records how long an event took to arrive from its source.
func (m *Metrics) WebhookLag(source string, d time.Duration) {
	if m == nil {
		return
	}
	m.webhookLag.WithLabelValues(m.sources.value(source)).Observe(seconds(d))
}

// SetWaitingJobs sets the number of job requests waiting for the pool.
func (m *Metrics) SetWaitingJobs(pool string, n int) {
	if m == nil {
		return
	}
	m.waitingJobs.WithLabelValues(pool).Set(float64(n))
}

// SetAgents sets the pool's agent count for every known state; a state
// missing from byState reads 0, so a count that drops to zero never shows a
// stale value. Keys other than the Agent* states are ignored.
func (m *Metrics) SetAgents(pool string, byState map[string]int) {
	if m == nil {
		return
	}
	for _, s := range agentStates {
		m.agents.WithLabelValues(pool, s).Set(float64(byState[s]))
	}
}

// billedStates are the agent states an instance exists in, and costs.
var billedStates = [...]string{AgentStarting, AgentIdle, AgentBusy}

// AddAgentSeconds adds d times the pool's agents in each of the states
// starting, idle and busy to agentscaler_agent_seconds_total; other keys
// (offline: a registration without an instance costs nothing) are ignored.
// A d of 0 creates the series at 0, so a rate over them starts from the
// first pass.
func (m *Metrics) AddAgentSeconds(pool string, byState map[string]int, d time.Duration) {
	if m == nil {
		return
	}
	for _, s := range billedStates {
		m.agentSeconds.WithLabelValues(pool, s).Add(seconds(d) * float64(max(byState[s], 0)))
	}
}

// ProviderOperation counts one provider call; result is [ResultOK] or the
// error's reason (throttled, quota, image, auth, timeout, ...).
func (m *Metrics) ProviderOperation(provider, op, result string) {
	if m == nil {
		return
	}
	m.providerOps.WithLabelValues(m.providers.value(provider), m.ops.value(op), m.results.value(result)).Inc()
}

// QueuedToCreated records the time from a job being queued to its agent
// instance being created.
func (m *Metrics) QueuedToCreated(pool string, d time.Duration) {
	if m == nil {
		return
	}
	m.queuedToCreated.WithLabelValues(pool).Observe(seconds(d))
}

// CreatedToOnline records the time from an instance being created to its
// agent coming online.
func (m *Metrics) CreatedToOnline(pool string, d time.Duration) {
	if m == nil {
		return
	}
	m.createdToOnline.WithLabelValues(pool).Observe(seconds(d))
}

// QueuedToAssigned records the time from a job being queued to its
// assignment to an agent.
func (m *Metrics) QueuedToAssigned(pool string, d time.Duration) {
	if m == nil {
		return
	}
	m.queuedToAssign.WithLabelValues(pool).Observe(seconds(d))
}

// JobDuration records how long a job ran.
func (m *Metrics) JobDuration(pool string, d time.Duration) {
	if m == nil {
		return
	}
	m.jobDuration.WithLabelValues(pool).Observe(seconds(d))
}

// Reconcile counts one reconcile pass of the pool and records its duration.
func (m *Metrics) Reconcile(pool, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	outcome = m.reconcileOutcomes.value(outcome)
	m.reconciles.WithLabelValues(pool, outcome).Inc()
	m.reconcileDur.WithLabelValues(pool, outcome).Observe(seconds(d))
}

// AzureDevOpsRequest counts one Azure DevOps REST call. endpoint names the
// route template (jobrequests, agents, resourceusage), never a URL with ids;
// status is the HTTP status code, or 0 when no response arrived.
func (m *Metrics) AzureDevOpsRequest(endpoint string, status int) {
	if m == nil {
		return
	}
	m.azdoRequests.WithLabelValues(m.endpoints.value(endpoint), statusLabel(status)).Inc()
}

// SourceRequest counts one call to a CI system's API (bitbucket, github):
// endpoint names the route or operation from the source's fixed set
// (runners, runner_state, generate_jitconfig, ...), never a URL; status is
// the HTTP status code, or 0 when no response arrived.
func (m *Metrics) SourceRequest(source, endpoint string, status int) {
	if m == nil {
		return
	}
	m.sourceRequests.WithLabelValues(m.sources.value(source), m.endpoints.value(endpoint), statusLabel(status)).Inc()
}

// RateLimitRemaining sets the Azure DevOps rate-limit budget left, in TSTU.
func (m *Metrics) RateLimitRemaining(v float64) {
	if m == nil {
		return
	}
	m.rateLimit.Set(v)
}

// JobRequestPages counts the pages one job request listing of an Azure
// DevOps pool read, and whether the page bound cut it. The truncated series
// exists from the first listing, so an alert can rate it from zero.
func (m *Metrics) JobRequestPages(poolID, pages int, truncated bool) {
	if m == nil {
		return
	}
	id := m.azurePoolIDs.value(strconv.Itoa(poolID))
	m.jobRequestPages.WithLabelValues(id).Add(float64(pages))
	cuts := m.jobRequestCuts.WithLabelValues(id)
	if truncated {
		cuts.Inc()
	}
}

// SetPoolLimits publishes the pool's configured bounds, so dashboards can
// draw them next to the agent counts.
func (m *Metrics) SetPoolLimits(pool string, maxAgents, minIdle int) {
	if m == nil {
		return
	}
	m.poolMaxAgents.WithLabelValues(pool).Set(float64(maxAgents))
	m.poolMinIdle.WithLabelValues(pool).Set(float64(minIdle))
}

// SetParallelJobs sets the organization's self-hosted parallel jobs in use
// and purchased.
func (m *Metrics) SetParallelJobs(used, total int) {
	if m == nil {
		return
	}
	m.parallelJobs.WithLabelValues("used").Set(float64(used))
	m.parallelJobs.WithLabelValues("total").Set(float64(total))
}

// ForgetPool drops every series labelled with the pool, for a pool removed
// from the configuration.
func (m *Metrics) ForgetPool(pool string) {
	if m == nil {
		return
	}
	for _, v := range m.pooled {
		v.DeletePartialMatch(prometheus.Labels{"pool": pool})
	}
}

// seconds converts d for a histogram. A negative duration (clocks of two
// machines disagree) is recorded as 0 rather than dropped, so counts stay
// true.
func seconds(d time.Duration) float64 {
	return max(d, 0).Seconds()
}

// statusLabel keeps the status label to real HTTP codes.
func statusLabel(status int) string {
	switch {
	case status <= 0:
		return "error"
	case status < 100 || status > 599:
		return otherValue
	default:
		return strconv.Itoa(status)
	}
}
