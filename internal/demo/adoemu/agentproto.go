package adoemu

// The agent's side of the service: replace a registration, sessions, the
// message long poll, and the job request updates by which an agent reports
// a job started and finished.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// jobMessageType is the message type of a job for a YAML pipeline agent.
const jobMessageType = "PipelineAgentJobRequest"

// taskResults are the TaskResult values a job can finish with, as the
// service writes them.
var taskResults = []string{"succeeded", "succeededWithIssues", "failed", "canceled", "skipped", "abandoned"}

// session is an agent's open session and the messages waiting in it.
type session struct {
	id       string
	owner    string
	messages []message
}

type message struct {
	id        int64
	kind      string
	body      string
	requestID int64 // the job the message carries
}

// ack drops the messages up to and including id: the agent has them.
func (s *session) ack(id int64) {
	s.messages = slices.DeleteFunc(s.messages, func(m message) bool { return m.id <= id })
}

// dropJob drops the message carrying the request's job.
func (s *session) dropJob(requestID int64) {
	s.messages = slices.DeleteFunc(s.messages, func(m message) bool { return m.requestID == requestID })
}

// wakePollsLocked wakes every message poll held open, to look again.
func (e *Emulator) wakePollsLocked() {
	close(e.messagesChanged)
	e.messagesChanged = make(chan struct{})
}

// sessionAgentLocked returns the agent of the pool holding the session. When
// the pool or the session is missing it answers 404 and returns nil.
func (e *Emulator) sessionAgentLocked(w http.ResponseWriter, poolID int, sessionID string) *agent {
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return nil
	}
	for _, a := range e.agents {
		if a.poolID == poolID && a.session != nil && strings.EqualFold(a.session.id, sessionID) {
			return a
		}
	}
	writeSessionNotFound(w, sessionID)
	return nil
}

// agentIndexLocked returns the index of the pool's agent. When the pool or
// the agent is missing it answers 404 and reports false.
func (e *Emulator) agentIndexLocked(w http.ResponseWriter, poolID, agentID int) (int, bool) {
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return 0, false
	}
	i := slices.IndexFunc(e.agents, func(a *agent) bool { return a.poolID == poolID && a.id == agentID })
	if i < 0 {
		writeAgentNotFound(w, poolID, agentID)
		return 0, false
	}
	return i, true
}

// endSessionLocked closes the agent's session, if it has one: the agent goes
// offline, its messages are dropped, and a job assigned to it that it has
// not started goes back to waiting. Callers run autoAssignLocked after.
func (e *Emulator) endSessionLocked(a *agent) {
	if a.session == nil {
		return
	}
	a.session = nil
	a.online = false
	a.statusChanged = time.Now()
	if r := e.requestLocked(a.request); r != nil && r.finished.IsZero() && r.received.IsZero() {
		r.assigned, r.agentID, r.reserved = time.Time{}, 0, nil
		a.request = 0
	}
	e.wakePollsLocked()
}

// sendJobLocked puts the request's job message in the session.
func (e *Emulator) sendJobLocked(s *session, r *request) {
	body, err := json.Marshal(e.jobMessageLocked(r))
	if err != nil {
		e.log.Error("encode job message", "request", r.id, "error", err)
		return
	}
	s.messages = append(s.messages, message{id: e.nextMessageID, kind: jobMessageType, body: string(body), requestID: r.id})
	e.nextMessageID++
	e.wakePollsLocked()
}

func (e *Emulator) jobMessageLocked(r *request) wireJobMessage {
	return wireJobMessage{
		MessageType: jobMessageType,
		Plan: wirePlanReference{
			ScopeIdentifier: e.projectID, PlanType: "Build", Version: 1, PlanID: r.planID,
			Definition: e.definitionRefLocked(r), Owner: e.ownerRefLocked(r),
		},
		// A build's timeline has the plan's id.
		Timeline:       wireTimelineReference{ID: r.planID},
		JobID:          r.jobID,
		JobDisplayName: r.name,
		JobName:        "__default",
		RequestID:      r.id,
		Demands:        nonNilSlice(r.demands),
		Variables: map[string]wireVariable{
			RunSecondsVariable: {Value: strconv.FormatFloat(max(r.duration, 0).Seconds(), 'f', -1, 64)},
		},
	}
}

func writeSessionNotFound(w http.ResponseWriter, sessionID string) {
	writeError(w, http.StatusNotFound, "TaskAgentSessionExpiredException",
		"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentSessionExpiredException, Microsoft.TeamFoundation.DistributedTask.WebApi",
		fmt.Sprintf("The agent session %s does not exist or has expired.", sessionID), 3000)
}

func writeBadRequest(w http.ResponseWriter, message string) {
	writeError(w, http.StatusBadRequest, "ArgumentException", "System.ArgumentException, mscorlib", message, 0)
}

func writeConflict(w http.ResponseWriter, message string) {
	writeError(w, http.StatusConflict, "InvalidOperationException", "System.InvalidOperationException, mscorlib", message, 0)
}

// serveReplaceAgent replaces a registration in place, as `config --replace`
// does: same id, new name, version, capabilities and credentials. The old
// credentials' session ends, and a job the old agent was running is
// abandoned, since whoever held those credentials is gone.
func (e *Emulator) serveReplaceAgent(w http.ResponseWriter, r *http.Request, poolID, agentID int) {
	in, ok := decodeAgent(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i, ok := e.agentIndexLocked(w, poolID, agentID)
	if !ok {
		return
	}
	a := e.agents[i]
	if other := e.agentByNameLocked(poolID, in.Name); other != nil && other != a {
		writeAgentExists(w, poolID, in.Name)
		return
	}
	e.endSessionLocked(a)
	if rq := e.requestLocked(a.request); rq != nil && rq.finished.IsZero() {
		e.finishLocked(rq, "abandoned")
	}
	setAgent(a, in, time.Now())
	a.online = false // until the new holder opens a session
	e.autoAssignLocked()
	writeJSON(w, http.StatusOK, e.agentWireLocked(a, false, true, nil))
}

// serveCreateSession opens the agent's session: the agent is online from
// now on and may be given a job. One session per agent: a second one is a
// conflict, as on the service. Capabilities sent with the session replace
// the agent's system capabilities.
func (e *Emulator) serveCreateSession(w http.ResponseWriter, r *http.Request, poolID int) {
	var in wireSession
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in); err != nil {
		writeBadRequest(w, "The request body is not a valid TaskAgentSession: "+err.Error())
		return
	}
	if strings.TrimSpace(in.OwnerName) == "" {
		writeError(w, http.StatusBadRequest, "ArgumentNullException", "System.ArgumentNullException, mscorlib",
			"Value cannot be null.\r\nParameter name: session.OwnerName", 0)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return
	}
	i := slices.IndexFunc(e.agents, func(a *agent) bool { return a.poolID == poolID && a.id == in.Agent.ID })
	if i < 0 {
		writeAgentNotFound(w, poolID, in.Agent.ID)
		return
	}
	a := e.agents[i]
	if a.session != nil {
		writeError(w, http.StatusConflict, "TaskAgentSessionConflictException",
			"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentSessionConflictException, Microsoft.TeamFoundation.DistributedTask.WebApi",
			fmt.Sprintf("A session for agent %s already exists.", a.name), 3000)
		return
	}
	a.session = &session{id: newGUID(), owner: in.OwnerName}
	if in.SystemCapabilities != nil {
		a.sysCaps = agentSystemCaps(in.SystemCapabilities, a.name, a.version)
	}
	a.online = true
	a.statusChanged = time.Now()
	out := wireSession{SessionID: a.session.id, OwnerName: in.OwnerName, Agent: e.agentRefLocked(a),
		SystemCapabilities: in.SystemCapabilities}
	e.autoAssignLocked()
	writeJSON(w, http.StatusOK, out)
}

// serveDeleteSession closes a session: the agent goes offline.
func (e *Emulator) serveDeleteSession(w http.ResponseWriter, poolID int, sessionID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.sessionAgentLocked(w, poolID, sessionID)
	if a == nil {
		return
	}
	e.endSessionLocked(a)
	e.autoAssignLocked()
	w.WriteHeader(http.StatusNoContent)
}

// serveMessages is the agent's long poll: the session's oldest message
// newer than lastMessageId, waiting up to MessageWait for one, else 202
// with no body. Messages up to lastMessageId count as acknowledged.
func (e *Emulator) serveMessages(w http.ResponseWriter, r *http.Request, poolID int) {
	q := r.URL.Query()
	sessionID := q.Get("sessionId")
	if sessionID == "" {
		writeBadRequest(w, "sessionId: the query parameter is required; pass the sessionId that POST sessions answered.")
		return
	}
	var last int64
	if v := q.Get("lastMessageId"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeBadRequest(w, fmt.Sprintf("lastMessageId: %q is not a message id; pass the messageId of the last message received, or leave it out.", v))
			return
		}
		last = n
	}
	wait := time.NewTimer(e.opts.MessageWait)
	defer wait.Stop()
	for {
		wake, done := e.nextMessage(w, poolID, sessionID, last)
		if done {
			return
		}
		select {
		case <-wake:
		case <-wait.C:
			w.WriteHeader(http.StatusAccepted)
			return
		case <-r.Context().Done():
			return
		case <-e.ctx.Done():
			writeError(w, http.StatusServiceUnavailable, "VssServiceResponseException",
				"Microsoft.VisualStudio.Services.WebApi.VssServiceResponseException, Microsoft.VisualStudio.Services.WebApi",
				"The service is shutting down.", 0)
			return
		}
	}
}

// nextMessage looks once for the session's next message. When there is
// one, or the pool or session is missing, it answers and reports done;
// otherwise it returns the channel closed on the next change.
func (e *Emulator) nextMessage(w http.ResponseWriter, poolID int, sessionID string, last int64) (wake <-chan struct{}, done bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.sessionAgentLocked(w, poolID, sessionID)
	if a == nil {
		return nil, true
	}
	a.session.ack(last)
	if len(a.session.messages) == 0 {
		return e.messagesChanged, false
	}
	m := a.session.messages[0]
	writeJSON(w, http.StatusOK, wireAgentMessage{MessageID: m.id, MessageType: m.kind, Body: m.body})
	return nil, true
}

// serveDeleteMessage acknowledges a message. Acknowledging one that is gone
// already is not an error: an agent may retry its acknowledgement.
func (e *Emulator) serveDeleteMessage(w http.ResponseWriter, r *http.Request, poolID int, messageID int64) {
	sessionID := r.URL.Query().Get("sessionId")
	if sessionID == "" {
		writeBadRequest(w, "sessionId: the query parameter is required; pass the session the message came from.")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.sessionAgentLocked(w, poolID, sessionID)
	if a == nil {
		return
	}
	a.session.messages = slices.DeleteFunc(a.session.messages, func(m message) bool { return m.id == messageID })
	w.WriteHeader(http.StatusNoContent)
}

// serveUpdateJobRequest takes the agent's report on its job: started
// (receiveTime, or a bare renewal, the first of which starts the job) or
// finished (finishTime and result). Each moves the job's service hook
// state: inProgress, then completed.
func (e *Emulator) serveUpdateJobRequest(w http.ResponseWriter, r *http.Request, poolID int, requestID int64) {
	if r.URL.Query().Get("lockToken") == "" {
		writeBadRequest(w, "lockToken: the query parameter is required; agents send 00000000-0000-0000-0000-000000000000.")
		return
	}
	var in wireJobRequestUpdate
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&in); err != nil {
		writeBadRequest(w, "The request body is not a valid TaskAgentJobRequest: "+err.Error())
		return
	}
	if in.RequestID != requestID {
		writeBadRequest(w, fmt.Sprintf("requestId: the body says %d, the URL %d; they must match.", in.RequestID, requestID))
		return
	}
	finishing := in.FinishTime != nil || in.Result != nil
	var result string
	if finishing {
		if in.Result == nil || in.FinishTime == nil {
			writeBadRequest(w, "finishTime and result: a finished job needs both; result is one of "+strings.Join(taskResults, ", ")+".")
			return
		}
		i := slices.IndexFunc(taskResults, func(s string) bool { return strings.EqualFold(s, *in.Result) })
		if i < 0 {
			writeBadRequest(w, fmt.Sprintf("result: %q is not a task result; use one of %s.", *in.Result, strings.Join(taskResults, ", ")))
			return
		}
		result = taskResults[i]
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.poolByIDLocked(poolID) == nil {
		writePoolNotFound(w, poolID)
		return
	}
	rq := e.requestLocked(requestID)
	switch {
	case rq == nil || rq.poolID != poolID:
		writeError(w, http.StatusNotFound, "TaskAgentJobNotFoundException",
			"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentJobNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi",
			fmt.Sprintf("No job request found in pool %d with ID %d.", poolID, requestID), 3000)
		return
	case !rq.finished.IsZero():
		writeConflict(w, fmt.Sprintf("Job request %d has already finished with result %s.", requestID, rq.result))
		return
	case rq.assigned.IsZero():
		writeConflict(w, fmt.Sprintf("Job request %d is not assigned to an agent.", requestID))
		return
	}
	switch {
	case finishing:
		e.finishLocked(rq, result)
	case rq.received.IsZero():
		rq.received = time.Now()
		e.postLocked(rq)
	}
	writeJSON(w, http.StatusOK, e.jobRequestWireLocked(rq, true, nil))
}
