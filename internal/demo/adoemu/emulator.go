// Package adoemu is an Azure DevOps Services emulator for tests and for
// `agentscaler demo`. It serves the distributed-task REST calls the
// autoscaler makes (pools, job requests, agents, resource usage) and the
// calls the Azure Pipelines agent makes (register or replace, open a session,
// long-poll for a job message, acknowledge it, report the job started and
// finished, close the session, unregister) with the service's payload shapes,
// authentication and error bodies, and posts
// ms.vss-pipelines.job-state-changed-event service hooks with basic auth and
// the service's retry rules. Tests drive it through Go methods (queue a job,
// register an agent, assign, finish) and inject faults and latency.
//
// Agents come in two kinds. An agent registered through RegisterAgent has no
// session: it is online when told so, a job given to it starts at once, and
// a job with a Duration finishes on the emulator's own timer. An agent that
// opens a session over REST (a real agent, or internal/demo/testagent) is online
// while the session is open, receives its job as a session message, and
// reports the job started and finished itself; the emulator never finishes
// such a job on a timer, and tells the agent the job's Duration in the
// message instead (variable RunSecondsVariable).
//
// The agent protocol is simplified where the service's is encrypted or huge:
// sessions carry no encryption key, so message bodies are plain JSON text;
// the job message carries the job's identity, demands and run time, not the
// steps, resources and access token of a real job. A job finished through
// Finish while its agent still holds its message loses the message (the
// service would send a cancellation message instead). A job assigned to a
// session agent that closes its session before starting it goes back to
// waiting, so another agent can take it.
//
// Where the service's behaviour is not documented the emulator picks one and
// says so: job request lists are ordered oldest first and cut at 200 items
// (Options.JobRequestsCap); the paged $top form of the list takes running,
// waiting and finished requests in turn, each kind following its own cursor
// of the continuation token;
// the rate-limit budget refills every five minutes; a subscription is
// disabled after five failed notifications in a row.
package adoemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// Endpoint names, used by Calls, FailNext and Options.Latency.
const (
	EndpointPools         = "pools"         // GET pools
	EndpointJobRequests   = "jobrequests"   // GET pools/{id}/jobrequests
	EndpointAgents        = "agents"        // GET pools/{id}/agents
	EndpointAddAgent      = "addagent"      // POST pools/{id}/agents
	EndpointDeleteAgent   = "deleteagent"   // DELETE pools/{id}/agents/{agentId}
	EndpointResourceUsage = "resourceusage" // GET resourceusage
	EndpointUnknown       = "unknown"       // anything else (404)

	// The agent's calls.
	EndpointReplaceAgent     = "replaceagent"     // PUT pools/{id}/agents/{agentId}
	EndpointCreateSession    = "createsession"    // POST pools/{id}/sessions
	EndpointDeleteSession    = "deletesession"    // DELETE pools/{id}/sessions/{sessionId}
	EndpointMessages         = "messages"         // GET pools/{id}/messages (long poll)
	EndpointDeleteMessage    = "deletemessage"    // DELETE pools/{id}/messages/{messageId}
	EndpointUpdateJobRequest = "updatejobrequest" // PATCH pools/{id}/jobrequests/{requestId}
)

// RunSecondsVariable is the job message variable that tells a session agent
// how long to run the job: the Job's Duration in seconds, fractions allowed.
const RunSecondsVariable = "agentscaler.emulator.runSeconds"

// Job states as the job-state-changed event writes them.
const (
	StateWaiting    = "waiting"
	StateInProgress = "inProgress"
	StateCompleted  = "completed"
)

// DefaultAgentVersion is the agent version of agents registered without one.
const DefaultAgentVersion = "4.260.0"

const (
	defaultOrg          = "contoso"
	defaultParallelJobs = 1 // what a new organization gets for self-hosted agents
	defaultRateLimit    = 200
	rateWindow          = 5 * time.Minute
	defaultRetryBase    = 700 * time.Millisecond // 8 doublings add up to about 3 minutes
	defaultHookTimeout  = 20 * time.Second
	defaultMessageWait  = 50 * time.Second // how long the service holds a message poll
	// defaultJobRequestsCap is the most job requests the service returns in
	// one list.
	defaultJobRequestsCap = 200
	// stampTick is the precision of the service's times (seven fractional
	// digits).
	stampTick = 100 * time.Nanosecond
)

// Options configures an Emulator. The zero value of every field but PAT has
// a sensible default.
type Options struct {
	// Org is the organization name; the organization URL is the server URL
	// plus "/" + Org. Default "contoso".
	Org string
	// PAT is the personal access token every call must present as basic
	// auth (any user name). Required unless BearerToken is set.
	PAT string
	// BearerToken, when set, is also accepted as "Authorization: Bearer".
	BearerToken string
	// AutoAssign makes the emulator assign waiting requests to idle, online,
	// enabled agents whose capabilities satisfy the demands, oldest request
	// first, after every change, as the service does.
	AutoAssign bool
	// ParallelJobs is the organization's self-hosted parallel jobs: what
	// resourceusage reports and what AutoAssign never exceeds. Default 1.
	ParallelJobs int
	// Latency delays answers per endpoint name (Endpoint* constants).
	Latency map[string]time.Duration
	// RateLimit is the budget X-RateLimit-Remaining counts down from, one
	// per call, refilled every five minutes. Default 200.
	RateLimit int
	// RetryBase is the first service hook retry delay; each further retry
	// waits twice as long. Default 700ms (about 3 minutes over 8 retries).
	RetryBase time.Duration
	// HookTimeout bounds each service hook delivery attempt. Default 20s.
	HookTimeout time.Duration
	// JobRequestsCap is the most job requests one jobrequests answer holds,
	// whatever $top asks for. Default 200, the service's cap.
	JobRequestsCap int
	// MessageWait is how long GET messages holds a poll open when the
	// session has no message, before answering 202 with no body. Default
	// 50s, about what the service holds it.
	MessageWait time.Duration
	// Logger receives the emulator's logs; nil logs nothing.
	Logger *slog.Logger
}

// Job is a job to queue.
type Job struct {
	Name    string   // pipeline and job name; default "ci"
	Demands []string // as Azure DevOps writes them: "docker", "Agent.OS -equals Linux"
	// Duration, when positive, finishes the job as succeeded that long after
	// it is assigned to an agent without a session; otherwise it runs until
	// Finish. An agent with a session is told it in the job message
	// (RunSecondsVariable) and reports the end itself.
	Duration time.Duration
	// RetryOf, when set, queues a new attempt of that request's job: a new
	// request in the same run, under the same plan and job id.
	RetryOf int64
}

// AgentInfo describes an agent to register.
type AgentInfo struct {
	Name          string
	Version       string // default DefaultAgentVersion
	OSDescription string // default "Linux"
	Online        bool
	Disabled      bool
	// SystemCapabilities gain Agent.Name and Agent.Version when missing, as
	// the agent reports them.
	SystemCapabilities map[string]string
	UserCapabilities   map[string]string
}

// Request is a job request as the emulator holds it.
type Request struct {
	ID          int64
	Pool        string
	PoolID      int
	Name        string
	Demands     []string
	JobID       string // the GUID service hooks carry
	QueueTime   time.Time
	AssignTime  time.Time // zero until assigned
	ReceiveTime time.Time // started: at assignment without a session, at the agent's report with one
	FinishTime  time.Time
	Result      string
	Agent       string // the reserved agent's name, empty while waiting
}

// State is the job's state as service hooks name it.
func (r Request) State() string {
	switch {
	case !r.FinishTime.IsZero():
		return StateCompleted
	case !r.AssignTime.IsZero():
		return StateInProgress
	default:
		return StateWaiting
	}
}

// Agent is a registered agent as the emulator holds it.
type Agent struct {
	ID                 int
	Pool               string
	Name               string
	Version            string
	OSDescription      string
	Online             bool
	Enabled            bool
	SystemCapabilities map[string]string
	UserCapabilities   map[string]string
	AssignedRequest    int64 // 0 when idle
	CreatedOn          time.Time
	SessionID          string // the open session, "" when none
}

type pool struct {
	id      int
	name    string
	created time.Time
}

type agent struct {
	id            int
	poolID        int
	name          string
	version       string
	osDescription string
	online        bool
	enabled       bool
	created       time.Time
	statusChanged time.Time
	sysCaps       map[string]string
	userCaps      map[string]string
	auth          *wireAuthorization
	request       int64
	session       *session // nil unless the agent has opened one over REST
}

type request struct {
	id           int64
	poolID       int
	name         string
	demands      []string
	duration     time.Duration
	queued       time.Time
	assigned     time.Time
	received     time.Time
	finished     time.Time
	result       string
	reserved     *wireAgentRef // kept even if the agent is deleted later
	agentID      int
	jobID        string
	planID       string
	runID        int
	runName      string
	definitionID int
}

type failure struct {
	status     int
	retryAfter time.Duration
}

// Emulator is an Azure DevOps organization in memory. It is an http.Handler;
// all methods are safe for concurrent use.
type Emulator struct {
	opts                            Options
	log                             *slog.Logger
	hostID, projectID, collectionID string
	client                          *http.Client
	ctx                             context.Context
	cancel                          context.CancelFunc
	wg                              sync.WaitGroup // deliveries in flight

	mu            sync.Mutex
	serverURL     string
	srv           *http.Server
	closed        bool
	pools         []*pool
	agents        []*agent
	requests      []*request
	nextPoolID    int
	nextAgentID   int
	nextRequestID int64
	nextRunID     int
	definitions   map[string]int
	calls         map[string]int
	writes        int
	failures      map[string][]failure
	rateLeft      int
	rateStart     time.Time
	timers        map[int64]*time.Timer
	nextMessageID int64
	lastStamp     time.Time // the latest assign or finish time handed out
	// messagesChanged is closed and replaced whenever a session gains a
	// message or ends, to wake the polls waiting on it.
	messagesChanged chan struct{}
	hooks           // service hook state, guarded by mu
}

// New returns an emulator with no pools, agents or jobs.
func New(opts Options) *Emulator {
	if opts.Org == "" {
		opts.Org = defaultOrg
	}
	if opts.ParallelJobs <= 0 {
		opts.ParallelJobs = defaultParallelJobs
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = defaultRateLimit
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = defaultRetryBase
	}
	if opts.HookTimeout <= 0 {
		opts.HookTimeout = defaultHookTimeout
	}
	if opts.MessageWait <= 0 {
		opts.MessageWait = defaultMessageWait
	}
	if opts.JobRequestsCap <= 0 {
		opts.JobRequestsCap = defaultJobRequestsCap
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Emulator{
		opts:            opts,
		log:             log.With("component", "adoemu"),
		hostID:          newGUID(),
		projectID:       newGUID(),
		collectionID:    newGUID(),
		client:          &http.Client{},
		ctx:             ctx,
		cancel:          cancel,
		nextPoolID:      1,
		nextAgentID:     1,
		nextRequestID:   1,
		nextRunID:       1,
		definitions:     map[string]int{},
		calls:           map[string]int{},
		failures:        map[string][]failure{},
		rateLeft:        opts.RateLimit,
		timers:          map[int64]*time.Timer{},
		nextMessageID:   1,
		messagesChanged: make(chan struct{}),
		hooks:           newHooks(),
	}
}

// Start serves the emulator on addr (default "127.0.0.1:0") and returns the
// organization URL.
func (e *Emulator) Start(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("adoemu: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	e.mu.Lock()
	e.srv = srv
	e.serverURL = "http://" + ln.Addr().String()
	e.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("serve", "error", err)
		}
	}()
	return e.OrgURL(), nil
}

// SetServerURL tells an emulator served by someone else (httptest.NewServer)
// where it is, for the links and the account baseUrl it writes.
func (e *Emulator) SetServerURL(u string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.serverURL = strings.TrimSuffix(u, "/")
}

// OrgURL is the organization URL: server URL + "/" + org.
func (e *Emulator) OrgURL() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.orgURLLocked()
}

func (e *Emulator) orgURLLocked() string { return e.serverURL + "/" + e.opts.Org }

// Close stops the server if Start started it, stops running jobs' timers,
// ends message polls, and abandons service hook deliveries in flight.
func (e *Emulator) Close() {
	e.mu.Lock()
	e.closed = true
	for id, t := range e.timers {
		t.Stop()
		delete(e.timers, id)
	}
	srv := e.srv
	e.mu.Unlock()
	// Cancel first: polls held open return, so a server that waits for its
	// handlers (httptest's) is not held up by them.
	e.cancel()
	if srv != nil {
		if err := srv.Close(); err != nil {
			e.log.Warn("close server", "error", err)
		}
	}
	e.wg.Wait()
}

// AddPool adds a self-hosted agent pool and returns its id. Adding a pool
// that exists (names compare case-insensitively) returns the existing id.
func (e *Emulator) AddPool(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ensurePoolLocked(name).id
}

func (e *Emulator) ensurePoolLocked(name string) *pool {
	if p := e.poolByNameLocked(name); p != nil {
		return p
	}
	p := &pool{id: e.nextPoolID, name: name, created: time.Now()}
	e.nextPoolID++
	e.pools = append(e.pools, p)
	return p
}

func (e *Emulator) poolByNameLocked(name string) *pool {
	for _, p := range e.pools {
		if strings.EqualFold(p.name, name) {
			return p
		}
	}
	return nil
}

func (e *Emulator) poolByIDLocked(id int) *pool {
	for _, p := range e.pools {
		if p.id == id {
			return p
		}
	}
	return nil
}

// QueueJob queues a job into the pool (added if missing), posts its
// "waiting" service hook, and returns the request id.
func (e *Emulator) QueueJob(poolName string, j Job) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.ensurePoolLocked(poolName)
	if j.Name == "" {
		j.Name = "ci"
	}
	def, ok := e.definitions[j.Name]
	if !ok {
		def = len(e.definitions) + 1
		e.definitions[j.Name] = def
	}
	now := time.Now()
	r := &request{
		id:           e.nextRequestID,
		poolID:       p.id,
		name:         j.Name,
		demands:      slices.Clone(j.Demands),
		duration:     j.Duration,
		queued:       now,
		jobID:        newGUID(),
		planID:       newGUID(),
		runID:        e.nextRunID,
		runName:      fmt.Sprintf("%s.%d", now.UTC().Format("20060102"), e.nextRunID),
		definitionID: def,
	}
	if prev := e.requestLocked(j.RetryOf); prev != nil {
		r.jobID, r.planID, r.runID, r.runName, r.definitionID = prev.jobID, prev.planID, prev.runID, prev.runName, prev.definitionID
	} else {
		e.nextRunID++
	}
	e.nextRequestID++
	e.requests = append(e.requests, r)
	e.postLocked(r)
	e.autoAssignLocked()
	return r.id
}

// RegisterAgent registers an agent in the pool (added if missing) and
// returns its id. An agent of the same name is replaced in place, keeping
// its id, as `config --replace` does.
func (e *Emulator) RegisterAgent(poolName string, a AgentInfo) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.ensurePoolLocked(poolName)
	ag := e.agentByNameLocked(p.id, a.Name)
	now := time.Now()
	if ag == nil {
		ag = &agent{id: e.nextAgentID, poolID: p.id, created: now}
		e.nextAgentID++
		e.agents = append(e.agents, ag)
	}
	// New credentials end the replaced agent's session, as on the service.
	e.endSessionLocked(ag)
	ag.name = a.Name
	ag.version = a.Version
	if ag.version == "" {
		ag.version = DefaultAgentVersion
	}
	ag.osDescription = a.OSDescription
	if ag.osDescription == "" {
		ag.osDescription = "Linux"
	}
	ag.online = a.Online
	ag.enabled = !a.Disabled
	ag.statusChanged = now
	ag.sysCaps = agentSystemCaps(a.SystemCapabilities, ag.name, ag.version)
	ag.userCaps = maps.Clone(a.UserCapabilities)
	ag.auth = &wireAuthorization{ClientID: newGUID()}
	e.autoAssignLocked()
	return ag.id
}

// agentSystemCaps adds the system capabilities every agent reports.
func agentSystemCaps(caps map[string]string, name, version string) map[string]string {
	out := maps.Clone(caps)
	if out == nil {
		out = map[string]string{}
	}
	if _, ok := out["Agent.Name"]; !ok {
		out["Agent.Name"] = name
	}
	if _, ok := out["Agent.Version"]; !ok {
		out["Agent.Version"] = version
	}
	return out
}

func (e *Emulator) agentByNameLocked(poolID int, name string) *agent {
	for _, a := range e.agents {
		if a.poolID == poolID && strings.EqualFold(a.name, name) {
			return a
		}
	}
	return nil
}

// SetAgentStatus sets an agent online or offline.
func (e *Emulator) SetAgentStatus(poolName, agentName string, online bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.poolByNameLocked(poolName)
	if p == nil {
		return fmt.Errorf("adoemu: pool %q not found", poolName)
	}
	a := e.agentByNameLocked(p.id, agentName)
	if a == nil {
		return fmt.Errorf("adoemu: agent %q not found in pool %q", agentName, poolName)
	}
	if a.online != online {
		a.online = online
		a.statusChanged = time.Now()
	}
	e.autoAssignLocked()
	return nil
}

// Assign gives a waiting request to an idle agent of its pool: it sets the
// reserved agent and the assign time. An agent without a session picks the
// job up at once (receive time, "inProgress" service hook); one with a
// session is sent the job message and reports the start itself.
func (e *Emulator) Assign(requestID int64, agentName string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.requestLocked(requestID)
	if r == nil {
		return fmt.Errorf("adoemu: request %d not found", requestID)
	}
	if !r.assigned.IsZero() || !r.finished.IsZero() {
		return fmt.Errorf("adoemu: request %d is not waiting", requestID)
	}
	a := e.agentByNameLocked(r.poolID, agentName)
	if a == nil {
		return fmt.Errorf("adoemu: agent %q not found in the pool of request %d", agentName, requestID)
	}
	if a.request != 0 {
		return fmt.Errorf("adoemu: agent %q is busy with request %d", agentName, a.request)
	}
	e.assignLocked(r, a)
	return nil
}

// Finish ends a request with a result (succeeded, failed, canceled, ...),
// frees its agent and posts the "completed" service hook.
func (e *Emulator) Finish(requestID int64, result string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.requestLocked(requestID)
	if r == nil {
		return fmt.Errorf("adoemu: request %d not found", requestID)
	}
	if !r.finished.IsZero() {
		return fmt.Errorf("adoemu: request %d already finished", requestID)
	}
	e.finishLocked(r, result)
	return nil
}

func (e *Emulator) requestLocked(id int64) *request {
	for _, r := range e.requests {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (e *Emulator) assignLocked(r *request, a *agent) {
	r.assigned = e.stampLocked()
	r.agentID = a.id
	ref := e.agentRefLocked(a)
	r.reserved = &ref
	a.request = r.id
	if a.session != nil {
		e.sendJobLocked(a.session, r)
		return
	}
	r.received = time.Now()
	e.postLocked(r)
	if r.duration > 0 && !e.closed {
		id := r.id
		e.timers[id] = time.AfterFunc(r.duration, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			delete(e.timers, id)
			if r := e.requestLocked(id); r != nil && r.finished.IsZero() && !e.closed {
				e.finishLocked(r, "succeeded")
			}
		})
	}
}

// stampLocked returns the time of an assignment or a finish: now, at the
// service's 100 ns precision, and later than every stamp before it. The paged
// job request list resumes after the last assign and finish time it sent,
// so two requests sharing a time would lose one of them at a page boundary.
func (e *Emulator) stampLocked() time.Time {
	t := time.Now().Truncate(stampTick)
	if !t.After(e.lastStamp) {
		t = e.lastStamp.Add(stampTick)
	}
	e.lastStamp = t
	return t
}

func (e *Emulator) finishLocked(r *request, result string) {
	r.finished = e.stampLocked()
	r.result = result
	if t, ok := e.timers[r.id]; ok {
		t.Stop()
		delete(e.timers, r.id)
	}
	for _, a := range e.agents {
		if a.request == r.id {
			a.request = 0
		}
		if a.session != nil {
			a.session.dropJob(r.id)
		}
	}
	e.postLocked(r)
	e.autoAssignLocked()
}

// runningLocked counts requests holding a parallel job: assigned, not done.
func (e *Emulator) runningLocked() int {
	n := 0
	for _, r := range e.requests {
		if !r.assigned.IsZero() && r.finished.IsZero() {
			n++
		}
	}
	return n
}

// autoAssignLocked hands waiting requests, oldest first, to idle, online,
// enabled agents of their pool that satisfy the demands, within the
// organization's parallel jobs. An agent with a session is online exactly
// while the session is open. A request nobody can take does not hold up
// younger ones with other demands.
func (e *Emulator) autoAssignLocked() {
	if !e.opts.AutoAssign || e.closed {
		return
	}
	// Only idle agents can take a job: look for them once, not per request
	// (a burst holds thousands of requests and agents).
	var idle []*agent
	for _, a := range e.agents {
		if a.online && a.enabled && a.request == 0 {
			idle = append(idle, a)
		}
	}
	if len(idle) == 0 {
		return
	}
	running := e.runningLocked()
	for _, r := range e.requests {
		if running >= e.opts.ParallelJobs || len(idle) == 0 {
			return
		}
		if !r.assigned.IsZero() || !r.finished.IsZero() {
			continue
		}
		for i, a := range idle {
			if a.poolID != r.poolID || !e.matchesLocked(a, r) {
				continue
			}
			e.assignLocked(r, a)
			idle = slices.Delete(idle, i, i+1)
			running++
			break
		}
	}
}

// matchesLocked reports whether the agent's capabilities satisfy the
// request's demands; a demand that does not parse matches nobody.
func (e *Emulator) matchesLocked(a *agent, r *request) bool {
	caps := maps.Clone(a.sysCaps)
	maps.Copy(caps, a.userCaps)
	ok, err := azuredevops.Satisfies(caps, r.demands)
	if err != nil {
		e.log.Warn("unparsable demand", "request", r.id, "error", err)
	}
	return ok
}

// Requests lists the pool's requests, oldest first.
func (e *Emulator) Requests(poolName string) []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.poolByNameLocked(poolName)
	if p == nil {
		return nil
	}
	var out []Request
	for _, r := range e.requests {
		if r.poolID != p.id {
			continue
		}
		rq := Request{
			ID: r.id, Pool: p.name, PoolID: p.id, Name: r.name, Demands: slices.Clone(r.demands),
			JobID: r.jobID, QueueTime: r.queued, AssignTime: r.assigned, ReceiveTime: r.received,
			FinishTime: r.finished, Result: r.result,
		}
		if r.reserved != nil {
			rq.Agent = r.reserved.Name
		}
		out = append(out, rq)
	}
	return out
}

// Agents lists the pool's agents in registration order.
func (e *Emulator) Agents(poolName string) []Agent {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.poolByNameLocked(poolName)
	if p == nil {
		return nil
	}
	var out []Agent
	for _, a := range e.agents {
		if a.poolID != p.id {
			continue
		}
		out = append(out, Agent{
			ID: a.id, Pool: p.name, Name: a.name, Version: a.version, OSDescription: a.osDescription,
			Online: a.online, Enabled: a.enabled, SystemCapabilities: maps.Clone(a.sysCaps),
			UserCapabilities: maps.Clone(a.userCaps), AssignedRequest: a.request, CreatedOn: a.created,
		})
		if a.session != nil {
			out[len(out)-1].SessionID = a.session.id
		}
	}
	return out
}

// Calls returns how many REST calls each endpoint received, whatever their
// outcome (Endpoint* names).
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.calls)
}

// Writes returns how many POST, PUT, PATCH and DELETE calls were received,
// whatever their outcome.
func (e *Emulator) Writes() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.writes
}

// FailNext makes the next call to endpoint answer status (with Retry-After
// when retryAfter is positive) instead of its answer. Calls queue up: two
// FailNext fail the next two calls.
func (e *Emulator) FailNext(endpoint string, status int, retryAfter time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failures[endpoint] = append(e.failures[endpoint], failure{status: status, retryAfter: retryAfter})
}
