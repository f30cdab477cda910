package adoemu

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// defaultCompleted is how many finished requests a list carries when
	// completedRequestCount is absent.
	defaultCompleted = 50
	// buildServiceOwner is the service owner GUID of Azure Pipelines builds.
	buildServiceOwner = "00025394-6065-48ca-87d9-7f5672854ef7"
	accessPoint       = "CodexAccessMapping"
	apiVersion        = "7.1"
	maxBody           = 1 << 20
)

// route is a parsed request path.
type route struct {
	endpoint  string
	poolID    int
	agentID   int
	requestID int64
	messageID int64
	sessionID string
}

// parseRoute maps a request to an endpoint under
// /{org}/_apis/distributedtask/. The organization matches case-insensitively,
// as the service's URLs do.
func (e *Emulator) parseRoute(r *http.Request) route {
	unknown := route{endpoint: EndpointUnknown}
	prefix := "/" + e.opts.Org + "/_apis/distributedtask/"
	p := r.URL.Path
	if len(p) < len(prefix) || !strings.EqualFold(p[:len(prefix)], prefix) {
		return unknown
	}
	seg := strings.Split(strings.Trim(p[len(prefix):], "/"), "/")
	switch {
	case len(seg) == 1 && strings.EqualFold(seg[0], "pools") && r.Method == http.MethodGet:
		return route{endpoint: EndpointPools}
	case len(seg) == 1 && strings.EqualFold(seg[0], "resourceusage") && r.Method == http.MethodGet:
		return route{endpoint: EndpointResourceUsage}
	case len(seg) < 3 || !strings.EqualFold(seg[0], "pools"):
		return unknown
	}
	poolID, err := strconv.Atoi(seg[1])
	if err != nil {
		return unknown
	}
	if len(seg) == 3 {
		switch {
		case strings.EqualFold(seg[2], "jobrequests") && r.Method == http.MethodGet:
			return route{endpoint: EndpointJobRequests, poolID: poolID}
		case strings.EqualFold(seg[2], "agents") && r.Method == http.MethodGet:
			return route{endpoint: EndpointAgents, poolID: poolID}
		case strings.EqualFold(seg[2], "agents") && r.Method == http.MethodPost:
			return route{endpoint: EndpointAddAgent, poolID: poolID}
		case strings.EqualFold(seg[2], "sessions") && r.Method == http.MethodPost:
			return route{endpoint: EndpointCreateSession, poolID: poolID}
		case strings.EqualFold(seg[2], "messages") && r.Method == http.MethodGet:
			return route{endpoint: EndpointMessages, poolID: poolID}
		}
		return unknown
	}
	if len(seg) != 4 {
		return unknown
	}
	kind, item := strings.ToLower(seg[2]), seg[3]
	if kind == "sessions" && r.Method == http.MethodDelete {
		return route{endpoint: EndpointDeleteSession, poolID: poolID, sessionID: item}
	}
	id, err := strconv.ParseInt(item, 10, 64)
	if err != nil {
		return unknown
	}
	switch {
	case kind == "agents" && r.Method == http.MethodDelete:
		return route{endpoint: EndpointDeleteAgent, poolID: poolID, agentID: int(id)}
	case kind == "agents" && r.Method == http.MethodPut:
		return route{endpoint: EndpointReplaceAgent, poolID: poolID, agentID: int(id)}
	case kind == "messages" && r.Method == http.MethodDelete:
		return route{endpoint: EndpointDeleteMessage, poolID: poolID, messageID: id}
	case kind == "jobrequests" && r.Method == http.MethodPatch:
		return route{endpoint: EndpointUpdateJobRequest, poolID: poolID, requestID: id}
	}
	return unknown
}

// isWrite reports whether the method changes something on the service.
func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// ServeHTTP answers the REST calls. Order of checks: count the call,
// authenticate, wait the configured latency, then an injected failure, then
// the real answer.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := e.parseRoute(r)
	e.mu.Lock()
	e.calls[rt.endpoint]++
	if isWrite(r.Method) {
		e.writes++
	}
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(e.takeRateLocked()))
	e.mu.Unlock()

	if !e.authorized(r) {
		// The service answers 401 with both schemes offered.
		w.Header().Add("WWW-Authenticate", "Bearer")
		w.Header().Add("WWW-Authenticate", `Basic realm="`+e.OrgURL()+`"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if d := e.opts.Latency[rt.endpoint]; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-e.ctx.Done():
			t.Stop()
			return
		}
	}
	e.mu.Lock()
	var fail *failure
	if fs := e.failures[rt.endpoint]; len(fs) > 0 {
		fail = &fs[0]
		e.failures[rt.endpoint] = fs[1:]
	}
	e.mu.Unlock()
	if fail != nil {
		if fail.retryAfter > 0 {
			secs := int((fail.retryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		}
		writeError(w, fail.status, "VssServiceResponseException",
			"Microsoft.VisualStudio.Services.WebApi.VssServiceResponseException, Microsoft.VisualStudio.Services.WebApi",
			http.StatusText(fail.status), 0)
		return
	}
	if isWrite(r.Method) && !hasAPIVersion(r) {
		writeError(w, http.StatusBadRequest, "VssVersionNotSpecifiedException",
			"Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, Microsoft.VisualStudio.Services.WebApi",
			fmt.Sprintf("No api-version was supplied for the %q request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. '?api-version=1.0').", r.Method),
			3000)
		return
	}

	switch rt.endpoint {
	case EndpointPools:
		e.servePools(w, r)
	case EndpointJobRequests:
		e.serveJobRequests(w, r, rt.poolID)
	case EndpointAgents:
		e.serveAgents(w, r, rt.poolID)
	case EndpointAddAgent:
		e.serveAddAgent(w, r, rt.poolID)
	case EndpointDeleteAgent:
		e.serveDeleteAgent(w, rt.poolID, rt.agentID)
	case EndpointReplaceAgent:
		e.serveReplaceAgent(w, r, rt.poolID, rt.agentID)
	case EndpointCreateSession:
		e.serveCreateSession(w, r, rt.poolID)
	case EndpointDeleteSession:
		e.serveDeleteSession(w, rt.poolID, rt.sessionID)
	case EndpointMessages:
		e.serveMessages(w, r, rt.poolID)
	case EndpointDeleteMessage:
		e.serveDeleteMessage(w, r, rt.poolID, rt.messageID)
	case EndpointUpdateJobRequest:
		e.serveUpdateJobRequest(w, r, rt.poolID, rt.requestID)
	case EndpointResourceUsage:
		e.serveResourceUsage(w, r)
	default:
		writeError(w, http.StatusNotFound, "HttpException", "System.Web.HttpException, System.Web",
			fmt.Sprintf("The controller for path '%s' was not found or does not implement IController.", r.URL.Path), 0)
	}
}

func hasAPIVersion(r *http.Request) bool {
	return r.URL.Query().Get("api-version") != "" || strings.Contains(r.Header.Get("Accept"), "api-version=")
}

// authorized accepts basic auth whose password is the PAT (any user name),
// or the bearer token when one is configured. Comparisons are constant-time.
func (e *Emulator) authorized(r *http.Request) bool {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch strings.ToLower(scheme) {
	case "basic":
		_, pass, ok := r.BasicAuth()
		return ok && e.opts.PAT != "" && subtle.ConstantTimeCompare([]byte(pass), []byte(e.opts.PAT)) == 1
	case "bearer":
		return e.opts.BearerToken != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), []byte(e.opts.BearerToken)) == 1
	}
	return false
}

// takeRateLocked spends one unit of the rate-limit budget and returns what
// is left; the budget refills every window.
func (e *Emulator) takeRateLocked() int {
	now := time.Now()
	if e.rateStart.IsZero() || now.Sub(e.rateStart) >= rateWindow {
		e.rateStart, e.rateLeft = now, e.opts.RateLimit
	}
	if e.rateLeft > 0 {
		e.rateLeft--
	}
	return e.rateLeft
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8; api-version="+apiVersion)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client hung up; nothing to tell it
}

func writeError(w http.ResponseWriter, status int, typeKey, typeName, message string, eventID int) {
	writeJSON(w, status, wireError{
		ID: "1", Message: message, TypeName: typeName, TypeKey: typeKey, EventID: eventID,
	})
}

func writePoolNotFound(w http.ResponseWriter, poolID int) {
	writeError(w, http.StatusNotFound, "TaskAgentPoolNotFoundException",
		"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentPoolNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi",
		fmt.Sprintf("Agent pool %d could not be found.", poolID), 3000)
}

func boolParam(r *http.Request, name string) bool {
	return strings.EqualFold(r.URL.Query().Get(name), "true")
}

func (e *Emulator) servePools(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("poolName")
	e.mu.Lock()
	out := []wirePool{}
	for _, p := range e.pools {
		if name != "" && !strings.EqualFold(name, p.name) {
			continue
		}
		out = append(out, e.poolWireLocked(p))
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, wireList[wirePool]{Count: len(out), Value: out})
}

func (e *Emulator) poolWireLocked(p *pool) wirePool {
	size := 0
	for _, a := range e.agents {
		if a.poolID == p.id {
			size++
		}
	}
	owner := wireIdentity{DisplayName: "Project Collection Build Service", ID: e.hostID,
		UniqueName: "Build\\" + e.hostID, Descriptor: "svc." + e.hostID}
	return wirePool{
		CreatedOn: wireTime(p.created), AutoUpdate: true, CreatedBy: owner, Owner: owner,
		ID: p.id, Scope: e.hostID, Name: p.name, PoolType: "automation", Size: size, Options: "none",
	}
}

// serveJobRequests answers the pool's job request list in one of its two
// forms: with $top, a page of running, waiting and finished requests
// (servePagedJobRequests); otherwise the unfinished requests plus the most
// recently finished ones (completedRequestCount of them, 50 when absent),
// oldest first, at most Options.JobRequestsCap: the service caps the list.
func (e *Emulator) serveJobRequests(w http.ResponseWriter, r *http.Request, poolID int) {
	q := r.URL.Query()
	if q.Has("$top") {
		e.servePagedJobRequests(w, q, poolID)
		return
	}
	completed := defaultCompleted
	if v := q.Get("completedRequestCount"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeArgumentError(w, fmt.Sprintf("completedRequestCount: %q is not a valid count.", v))
			return
		}
		completed = n
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return
	}
	var open, done []*request
	for _, rq := range e.requests {
		switch {
		case rq.poolID != poolID:
		case rq.finished.IsZero():
			open = append(open, rq)
		default:
			done = append(done, rq)
		}
	}
	slices.SortStableFunc(done, func(a, b *request) int { return b.finished.Compare(a.finished) })
	sel := append(open, done[:min(completed, len(done))]...)
	slices.SortFunc(sel, func(a, b *request) int { return cmp.Compare(a.id, b.id) })
	sel = sel[:min(len(sel), e.opts.JobRequestsCap)]
	out := make([]wireJobRequest, 0, len(sel))
	memo := agentMatches{}
	for _, rq := range sel {
		out = append(out, e.jobRequestWireLocked(rq, true, memo))
	}
	writeJSON(w, http.StatusOK, wireList[wireJobRequest]{Count: len(out), Value: out})
}

// ContinuationTokenHeader is the response header that carries the cursor of
// the next page of the $top form of the job request list.
const ContinuationTokenHeader = "X-Ms-Continuationtoken"

// pageCursor is the continuation token of the paged job request list,
// written "{lastRunningAssignTime}|{lastQueuedRequestId}|{lastFinishedFinishTime}":
// running requests are listed by assign time, waiting ones by request id
// and finished ones newest finish first, each kind resuming after its own
// cursor; an empty cursor starts that kind from the beginning.
type pageCursor struct {
	running  time.Time // the last running request's assign time sent
	queued   int64     // the last waiting request's id sent
	finished time.Time // the last finished request's finish time sent
}

func parsePageCursor(token string) (pageCursor, error) {
	var c pageCursor
	if token == "" {
		return c, nil
	}
	bad := fmt.Errorf("continuationToken: %q is not valid", token)
	parts := strings.Split(token, "|")
	if len(parts) != 3 {
		return c, bad
	}
	var err error
	if parts[0] != "" {
		if c.running, err = time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			return c, bad
		}
	}
	if parts[1] != "" {
		if c.queued, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
			return c, bad
		}
	}
	if parts[2] != "" {
		if c.finished, err = time.Parse(time.RFC3339Nano, parts[2]); err != nil {
			return c, bad
		}
	}
	return c, nil
}

func (c pageCursor) String() string {
	queued := ""
	if c.queued != 0 {
		queued = strconv.FormatInt(c.queued, 10)
	}
	return wireTime(c.running) + "|" + queued + "|" + wireTime(c.finished)
}

// servePagedJobRequests answers the $top form: one page of at most $top
// requests (and at most Options.JobRequestsCap) taken from the running,
// waiting and finished requests in turn, so a page mixes them, with the
// continuation token header while any kind has more. The form carries
// demands but no matchedAgents, and, as on the service, refuses
// completedRequestCount.
func (e *Emulator) servePagedJobRequests(w http.ResponseWriter, q url.Values, poolID int) {
	if q.Has("completedRequestCount") {
		writeArgumentError(w, "$top cannot be combined with completedRequestCount.")
		return
	}
	top, err := strconv.Atoi(q.Get("$top"))
	if err != nil || top < 1 {
		writeArgumentError(w, fmt.Sprintf("$top: %q is not a valid count.", q.Get("$top")))
		return
	}
	cur, err := parsePageCursor(q.Get("continuationToken"))
	if err != nil {
		writeArgumentError(w, err.Error())
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return
	}
	var running, queued, finished []*request
	for _, rq := range e.requests {
		switch {
		case rq.poolID != poolID:
		case !rq.finished.IsZero():
			if cur.finished.IsZero() || rq.finished.Before(cur.finished) {
				finished = append(finished, rq)
			}
		case !rq.assigned.IsZero():
			if rq.assigned.After(cur.running) {
				running = append(running, rq)
			}
		case rq.id > cur.queued:
			queued = append(queued, rq)
		}
	}
	slices.SortFunc(running, func(a, b *request) int { return a.assigned.Compare(b.assigned) })
	slices.SortFunc(queued, func(a, b *request) int { return cmp.Compare(a.id, b.id) })
	slices.SortFunc(finished, func(a, b *request) int { return b.finished.Compare(a.finished) })

	size := min(top, e.opts.JobRequestsCap)
	out := make([]wireJobRequest, 0, size)
	memo := agentMatches{}
	kinds := [][]*request{running, queued, finished}
	for len(out) < size && len(kinds[0])+len(kinds[1])+len(kinds[2]) > 0 {
		for k := range kinds {
			if len(kinds[k]) == 0 || len(out) == size {
				continue
			}
			rq := kinds[k][0]
			kinds[k] = kinds[k][1:]
			out = append(out, e.jobRequestWireLocked(rq, false, memo))
			switch k {
			case 0:
				cur.running = rq.assigned
			case 1:
				cur.queued = rq.id
			case 2:
				cur.finished = rq.finished
			}
		}
	}
	if len(kinds[0])+len(kinds[1])+len(kinds[2]) > 0 {
		w.Header().Set(ContinuationTokenHeader, cur.String())
	}
	writeJSON(w, http.StatusOK, wireList[wireJobRequest]{Count: len(out), Value: out})
}

func writeArgumentError(w http.ResponseWriter, message string) {
	writeError(w, http.StatusBadRequest, "ArgumentException", "System.ArgumentException, mscorlib", message, 0)
}

func (e *Emulator) serveAgents(w http.ResponseWriter, r *http.Request, poolID int) {
	withReq, withCaps := boolParam(r, "includeAssignedRequest"), boolParam(r, "includeCapabilities")
	name := r.URL.Query().Get("agentName")
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return
	}
	out := []wireAgent{}
	memo := agentMatches{}
	for _, a := range e.agents {
		if a.poolID != poolID || (name != "" && !strings.EqualFold(name, a.name)) {
			continue
		}
		out = append(out, e.agentWireLocked(a, withReq, withCaps, memo))
	}
	writeJSON(w, http.StatusOK, wireList[wireAgent]{Count: len(out), Value: out})
}

// serveAddAgent registers an agent as the agent's configure step does. The
// new agent is offline: the service marks it online only once the agent
// opens a session.
func (e *Emulator) serveAddAgent(w http.ResponseWriter, r *http.Request, poolID int) {
	in, ok := decodeAgent(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return
	}
	if e.agentByNameLocked(poolID, in.Name) != nil {
		writeAgentExists(w, poolID, in.Name)
		return
	}
	now := time.Now()
	a := &agent{id: e.nextAgentID, poolID: poolID, created: now}
	setAgent(a, in, now)
	e.nextAgentID++
	e.agents = append(e.agents, a)
	writeJSON(w, http.StatusOK, e.agentWireLocked(a, false, true, nil))
}

// decodeAgent reads a TaskAgent body, answering 400 when it is not one.
func decodeAgent(w http.ResponseWriter, r *http.Request) (wireAgentAdd, bool) {
	var in wireAgentAdd
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentException", "System.ArgumentException, mscorlib",
			"The request body is not a valid TaskAgent: "+err.Error(), 0)
		return in, false
	}
	if strings.TrimSpace(in.Name) == "" {
		writeError(w, http.StatusBadRequest, "ArgumentNullException", "System.ArgumentNullException, mscorlib",
			"Value cannot be null.\r\nParameter name: agent.Name", 0)
		return in, false
	}
	return in, true
}

// setAgent writes what a registration carries onto the agent, with fresh
// credentials.
func setAgent(a *agent, in wireAgentAdd, now time.Time) {
	a.name, a.version, a.osDescription = in.Name, in.Version, in.OSDescription
	a.enabled = in.Enabled == nil || *in.Enabled
	a.statusChanged = now
	a.sysCaps = agentSystemCaps(in.SystemCapabilities, in.Name, in.Version)
	a.userCaps = in.UserCapabilities
	a.auth = &wireAuthorization{ClientID: newGUID()}
	if in.Authorization != nil {
		a.auth.PublicKey = in.Authorization.PublicKey
	}
}

// serveDeleteAgent unregisters an agent. A job the agent was running is
// abandoned, as the service abandons jobs whose agent disappears.
func (e *Emulator) serveDeleteAgent(w http.ResponseWriter, poolID, agentID int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.agentIndexLocked(w, poolID, agentID)
	if !ok {
		return
	}
	a := e.agents[i]
	e.agents = slices.Delete(e.agents, i, i+1)
	e.endSessionLocked(a)
	if a.request != 0 {
		if rq := e.requestLocked(a.request); rq != nil && rq.finished.IsZero() {
			e.finishLocked(rq, "abandoned")
		}
	}
	e.autoAssignLocked()
	w.WriteHeader(http.StatusNoContent)
}

func writeAgentExists(w http.ResponseWriter, poolID int, name string) {
	writeError(w, http.StatusConflict, "TaskAgentExistsException",
		"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentExistsException, Microsoft.TeamFoundation.DistributedTask.WebApi",
		fmt.Sprintf("Pool %d already contains an agent with name %s.", poolID, name), 3000)
}

func writeAgentNotFound(w http.ResponseWriter, poolID, agentID int) {
	writeError(w, http.StatusNotFound, "TaskAgentNotFoundException",
		"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi",
		fmt.Sprintf("No agent found in pool %d with ID %d.", poolID, agentID), 3000)
}

// serveResourceUsage reports the organization's self-hosted (private)
// parallel jobs; used = requests assigned and not finished.
func (e *Emulator) serveResourceUsage(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := wireResourceUsage{
		ResourceLimit: wireResourceLimit{
			ResourceLimitsData: map[string]string{}, HostID: e.hostID, ParallelismTag: "Private",
			TotalCount: e.opts.ParallelJobs,
		},
		UsedCount: e.runningLocked(),
	}
	if boolParam(r, "includeRunningRequests") {
		memo := agentMatches{}
		for _, rq := range e.requests {
			if !rq.assigned.IsZero() && rq.finished.IsZero() {
				u.RunningRequests = append(u.RunningRequests, e.jobRequestWireLocked(rq, true, memo))
			}
		}
	}
	writeJSON(w, http.StatusOK, u)
}

func (e *Emulator) agentLinksLocked(a *agent) wireLinks {
	org := e.orgURLLocked()
	return wireLinks{
		"self": {Href: fmt.Sprintf("%s/_apis/distributedtask/Pools/%d/agents/%d", org, a.poolID, a.id)},
		"web":  {Href: fmt.Sprintf("%s/_settings/agentpools?agentId=%d&poolId=%d", org, a.id, a.poolID)},
	}
}

func agentStatus(a *agent) string {
	if a.online {
		return "online"
	}
	return "offline"
}

func (e *Emulator) agentRefLocked(a *agent) wireAgentRef {
	return wireAgentRef{
		Links: e.agentLinksLocked(a), ID: a.id, Name: a.name, Version: a.version, OSDescription: a.osDescription,
		Enabled: a.enabled, Status: agentStatus(a), ProvisioningState: "Provisioned", AccessPoint: accessPoint,
	}
}

// agentWireLocked renders an agent; memo, when not nil, keeps the agent
// matches of assigned requests across the agents of one answer.
func (e *Emulator) agentWireLocked(a *agent, withReq, withCaps bool, memo agentMatches) wireAgent {
	out := wireAgent{
		Links: e.agentLinksLocked(a), MaxParallelism: 1, CreatedOn: wireTime(a.created),
		StatusChangedOn: wireTime(a.statusChanged),
		Authorization: &wireAuthorization{
			AuthorizationURL: "https://vstoken.dev.azure.com/" + e.hostID + "/oauth2/token",
			ClientID:         a.auth.ClientID, PublicKey: a.auth.PublicKey,
		},
		ID: a.id, Name: a.name, Version: a.version, OSDescription: a.osDescription, Enabled: a.enabled,
		Status: agentStatus(a), ProvisioningState: "Provisioned", AccessPoint: accessPoint,
	}
	if withReq && a.request != 0 {
		if rq := e.requestLocked(a.request); rq != nil {
			wr := e.jobRequestWireLocked(rq, true, memo)
			out.AssignedRequest = &wr
		}
	}
	if withCaps {
		out.SystemCapabilities = nonNil(a.sysCaps)
		out.UserCapabilities = nonNil(a.userCaps)
	}
	return out
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// definitionRefLocked is the request's pipeline definition reference.
func (e *Emulator) definitionRefLocked(rq *request) wireOwner {
	project := e.orgURLLocked() + "/" + e.projectID
	return wireOwner{
		Links: wireLinks{
			"web":  {Href: fmt.Sprintf("%s/_build/definition?definitionId=%d", project, rq.definitionID)},
			"self": {Href: fmt.Sprintf("%s/_apis/build/Definitions/%d", project, rq.definitionID)},
		},
		ID: rq.definitionID, Name: rq.name,
	}
}

// ownerRefLocked is the request's run (build) reference.
func (e *Emulator) ownerRefLocked(rq *request) wireOwner {
	project := e.orgURLLocked() + "/" + e.projectID
	return wireOwner{
		Links: wireLinks{
			"web":  {Href: fmt.Sprintf("%s/_build/results?buildId=%d", project, rq.runID)},
			"self": {Href: fmt.Sprintf("%s/_apis/build/Builds/%d", project, rq.runID)},
		},
		ID: rq.runID, Name: rq.runName,
	}
}

// jobRequestWireLocked renders a request; withMatched lists the agents
// that can take a waiting request, which the $top form of the list leaves
// out. memo, when not nil, keeps agent matches across the requests of one
// answer.
func (e *Emulator) jobRequestWireLocked(rq *request, withMatched bool, memo agentMatches) wireJobRequest {
	out := wireJobRequest{
		RequestID: rq.id, QueueTime: wireTime(rq.queued), AssignTime: wireTime(rq.assigned),
		ReceiveTime: wireTime(rq.received), FinishTime: wireTime(rq.finished), Result: rq.result,
		ServiceOwner: buildServiceOwner, HostID: e.hostID, ScopeID: e.projectID, PlanType: "Build",
		PlanID: rq.planID, JobID: rq.jobID, Demands: nonNilSlice(rq.demands), ReservedAgent: rq.reserved,
		Definition:      e.definitionRefLocked(rq),
		Owner:           e.ownerRefLocked(rq),
		Data:            map[string]string{"ParallelismTag": "Private", "IsScheduledKey": "False"},
		PoolID:          rq.poolID,
		OrchestrationID: rq.planID + ".job.__default",
		Priority:        1,
	}
	m := e.agentMatchesLocked(rq, memo)
	out.MatchesAllAgentsInPool = m.total > 0 && len(m.matched) == m.total
	// The service lists matched agents only while the request waits, and
	// not at all when every agent matches.
	if withMatched && rq.assigned.IsZero() && rq.finished.IsZero() && !out.MatchesAllAgentsInPool {
		out.MatchedAgents = m.matched
	}
	return out
}

// agentMatches holds, within one answer, the agents of a pool that meet a
// set of demands, keyed by pool and demands: a list of a burst of requests
// with the same demands (or of the agents running them) checks the pool's
// agents once, not once per request.
type agentMatches map[string]agentMatch

type agentMatch struct {
	matched []wireAgentRef
	total   int // agents in the pool
}

func (e *Emulator) agentMatchesLocked(rq *request, memo agentMatches) agentMatch {
	key := strconv.Itoa(rq.poolID) + "\x00" + strings.Join(rq.demands, "\x00")
	if m, ok := memo[key]; ok {
		return m
	}
	var m agentMatch
	for _, a := range e.agents {
		if a.poolID != rq.poolID {
			continue
		}
		m.total++
		if e.matchesLocked(a, rq) {
			m.matched = append(m.matched, e.agentRefLocked(a))
		}
	}
	if memo != nil {
		memo[key] = m
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
