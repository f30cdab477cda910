package adoemu

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const zeroLockToken = "00000000-0000-0000-0000-000000000000"

// agentREST makes the agent's calls against one pool of an emulator, with
// the bodies the Azure Pipelines agent sends.
type agentREST struct {
	t      *testing.T
	org    string
	poolID int
}

func (c agentREST) url(parts ...string) string {
	return path(c.org, append([]string{"pools", strconv.Itoa(c.poolID)}, parts...)...)
}

func (c agentREST) do(method, url, body string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	status, _, b := call(c.t, method, url, basic("", testPAT), rd)
	return status, b
}

func agentBody(name string, caps map[string]string) string {
	b, _ := json.Marshal(map[string]any{
		"name": name, "version": "4.275.0", "osDescription": "Linux", "enabled": true, "maxParallelism": 1,
		"authorization":      map[string]any{"publicKey": map[string]string{"exponent": "AQAB", "modulus": "xyz"}},
		"systemCapabilities": caps,
	})
	return string(b)
}

// register adds an agent with POST and returns its id.
func (c agentREST) register(name string, caps map[string]string) int {
	c.t.Helper()
	status, b := c.do(http.MethodPost, c.url("agents?api-version=7.1"), agentBody(name, caps))
	if status != http.StatusOK {
		c.t.Fatalf("register %s: %d %s", name, status, b)
	}
	return int(decode(c.t, b)["id"].(float64))
}

func sessionBody(agentID int, name string) string {
	return fmt.Sprintf(`{"sessionId":"","ownerName":"host-1","agent":{"id":%d,"name":%q,"version":"4.275.0","osDescription":"Linux"},"useFipsEncryption":false}`, agentID, name)
}

// openSession opens a session for the agent and returns its id.
func (c agentREST) openSession(agentID int, name string) string {
	c.t.Helper()
	status, b := c.do(http.MethodPost, c.url("sessions?api-version=7.1-preview.1"), sessionBody(agentID, name))
	if status != http.StatusOK {
		c.t.Fatalf("open session for %s: %d %s", name, status, b)
	}
	return decode(c.t, b)["sessionId"].(string)
}

// poll makes one message poll and returns the status and the body.
func (c agentREST) poll(sessionID string, last int64) (int, []byte) {
	c.t.Helper()
	q := "messages?sessionId=" + sessionID
	if last > 0 {
		q += "&lastMessageId=" + strconv.FormatInt(last, 10)
	}
	return c.do(http.MethodGet, c.url(q), "")
}

func (c agentREST) patchRequest(rid int64, body string) (int, []byte) {
	c.t.Helper()
	return c.do(http.MethodPatch, c.url("jobrequests", strconv.FormatInt(rid, 10)+"?lockToken="+zeroLockToken+"&api-version=7.1-preview.1"), body)
}

func requestByID(t *testing.T, e *Emulator, pool string, id int64) Request {
	t.Helper()
	for _, r := range e.Requests(pool) {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("request %d not found", id)
	return Request{}
}

func agentByName(t *testing.T, e *Emulator, pool, name string) Agent {
	t.Helper()
	for _, a := range e.Agents(pool) {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("agent %s not found", name)
	return Agent{}
}

// waitFor polls cond until it holds, failing the test after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantErrorBody(t *testing.T, what string, status int, b []byte, wantStatus int, typeKey string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("%s: status %d (%s), want %d", what, status, b, wantStatus)
		return
	}
	m := decode(t, b)
	wantKeys(t, what, m, "$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId")
	if m["typeKey"] != typeKey {
		t.Errorf("%s: typeKey %v, want %s", what, m["typeKey"], typeKey)
	}
}

func TestReplaceAgentKeepsID(t *testing.T) {
	e, org := newServed(t, Options{})
	c := agentREST{t, org, e.AddPool("linux")}
	id := c.register("linux-r1", map[string]string{"java": ""})
	other := c.register("linux-r2", nil)

	// The agent's configure step looks the name up first.
	found := values(t, getJSON(t, c.url("agents?agentName=LINUX-R1")))
	if len(found) != 1 || int(found[0]["id"].(float64)) != id {
		t.Fatalf("agentName filter: %v, want only agent %d", found, id)
	}

	status, b := c.do(http.MethodPut, c.url("agents", strconv.Itoa(id)+"?api-version=7.1"), agentBody("linux-r1", map[string]string{"docker": ""}))
	if status != http.StatusOK {
		t.Fatalf("replace: %d %s", status, b)
	}
	got := decode(t, b)
	if int(got["id"].(float64)) != id || got["status"] != "offline" {
		t.Errorf("replaced agent = %v, want id %d offline", got, id)
	}
	a := agentByName(t, e, "linux", "linux-r1")
	if _, ok := a.SystemCapabilities["docker"]; !ok || a.ID != id {
		t.Errorf("after replace: %+v, want id %d with docker", a, id)
	}
	if _, ok := a.SystemCapabilities["java"]; ok {
		t.Errorf("after replace the old capabilities remain: %v", a.SystemCapabilities)
	}
	if n := len(e.Agents("linux")); n != 2 {
		t.Errorf("%d agents, want 2: replace must not add one", n)
	}

	status, b = c.do(http.MethodPut, c.url("agents", strconv.Itoa(other)+"?api-version=7.1"), agentBody("linux-r1", nil))
	wantErrorBody(t, "rename onto an existing name", status, b, http.StatusConflict, "TaskAgentExistsException")
	status, b = c.do(http.MethodPut, c.url("agents", "999?api-version=7.1"), agentBody("linux-r9", nil))
	wantErrorBody(t, "replace a missing agent", status, b, http.StatusNotFound, "TaskAgentNotFoundException")
	if n := e.Calls()[EndpointReplaceAgent]; n != 3 {
		t.Errorf("Calls()[%s] = %d, want 3", EndpointReplaceAgent, n)
	}
}

func TestSessionLifecycle(t *testing.T) {
	e, org := newServed(t, Options{})
	c := agentREST{t, org, e.AddPool("linux")}
	id := c.register("a1", nil)
	if agentByName(t, e, "linux", "a1").Online {
		t.Fatal("an agent is offline until it opens a session")
	}

	status, b := c.do(http.MethodPost, c.url("sessions?api-version=7.1-preview.1"), sessionBody(id, "a1"))
	if status != http.StatusOK {
		t.Fatalf("create session: %d %s", status, b)
	}
	s := decode(t, b)
	wantKeys(t, "session", s, "sessionId", "ownerName", "agent", "useFipsEncryption")
	wantGUID(t, "sessionId", s["sessionId"])
	if ag := obj(t, s, "agent"); ag["name"] != "a1" || int(ag["id"].(float64)) != id || s["ownerName"] != "host-1" {
		t.Errorf("session = %v", s)
	}
	sid := s["sessionId"].(string)
	if a := agentByName(t, e, "linux", "a1"); !a.Online || a.SessionID != sid {
		t.Errorf("with a session: %+v, want online with session %s", a, sid)
	}

	status, b = c.do(http.MethodPost, c.url("sessions?api-version=7.1-preview.1"), sessionBody(id, "a1"))
	wantErrorBody(t, "second session", status, b, http.StatusConflict, "TaskAgentSessionConflictException")
	status, b = c.do(http.MethodPost, c.url("sessions?api-version=7.1-preview.1"), sessionBody(999, "ghost"))
	wantErrorBody(t, "session of a missing agent", status, b, http.StatusNotFound, "TaskAgentNotFoundException")
	status, b = c.do(http.MethodPost, c.url("sessions?api-version=7.1-preview.1"), `{"agent":{"id":1}}`)
	if status != http.StatusBadRequest || !strings.Contains(decode(t, b)["message"].(string), "OwnerName") {
		t.Errorf("session without ownerName: %d %s", status, b)
	}

	status, b = c.do(http.MethodDelete, c.url("sessions", sid+"?api-version=7.1-preview.1"), "")
	if status != http.StatusNoContent {
		t.Fatalf("delete session: %d %s", status, b)
	}
	if a := agentByName(t, e, "linux", "a1"); a.Online || a.SessionID != "" {
		t.Errorf("after closing the session: %+v, want offline", a)
	}
	status, b = c.do(http.MethodDelete, c.url("sessions", sid+"?api-version=7.1-preview.1"), "")
	wantErrorBody(t, "delete a closed session", status, b, http.StatusNotFound, "TaskAgentSessionExpiredException")
	status, b = c.poll(sid, 0)
	wantErrorBody(t, "poll a closed session", status, b, http.StatusNotFound, "TaskAgentSessionExpiredException")
	status, b = c.do(http.MethodDelete, c.url("messages", "1?sessionId="+sid+"&api-version=7.1-preview.1"), "")
	wantErrorBody(t, "ack on a closed session", status, b, http.StatusNotFound, "TaskAgentSessionExpiredException")

	// Registering again under the name ends the session the old
	// credentials held, through the Go API as through PUT.
	sid = c.openSession(id, "a1")
	e.RegisterAgent("linux", AgentInfo{Name: "a1"})
	if status, b := c.poll(sid, 0); status != http.StatusNotFound {
		t.Errorf("poll after RegisterAgent replaced the agent: %d %s, want 404", status, b)
	}
}

// TestJobThroughTheAgentProtocol walks one job through the calls the agent
// makes and checks what the autoscaler and the service hooks see at each
// step.
func TestJobThroughTheAgentProtocol(t *testing.T) {
	e, org := newServed(t, Options{AutoAssign: true, ParallelJobs: 5, MessageWait: 2 * time.Second})
	rc := newReceiver(t, http.StatusOK)
	e.Subscribe(Subscription{URL: rc.srv.URL})
	c := agentREST{t, org, e.AddPool("linux")}
	docker := c.register("docker", map[string]string{"docker": ""})
	plain := c.register("plain", nil)
	dockerSID := c.openSession(docker, "docker")
	plainSID := c.openSession(plain, "plain")

	// The poll is held open until the job arrives: with the job queued
	// after the poll started, only a wake-up answers it before MessageWait.
	type answer struct {
		status int
		body   []byte
	}
	polled := make(chan answer, 1)
	go func() {
		status, b := c.poll(dockerSID, 0)
		polled <- answer{status, b}
	}()
	waitFor(t, "the poll to reach the emulator", func() bool { return e.Calls()[EndpointMessages] == 1 })
	rid := e.QueueJob("linux", Job{Name: "build", Demands: []string{"docker"}, Duration: 50 * time.Millisecond})
	got := <-polled
	if got.status != http.StatusOK {
		t.Fatalf("poll of the matching agent: %d %s, want 200 with the job", got.status, got.body)
	}
	msg := decode(t, got.body)
	wantKeys(t, "message", msg, "messageId", "messageType", "iv", "body")
	if msg["messageType"] != "PipelineAgentJobRequest" || msg["iv"] != nil {
		t.Errorf("message = %v", msg)
	}
	var job map[string]any
	if err := json.Unmarshal([]byte(msg["body"].(string)), &job); err != nil {
		t.Fatalf("message body is not JSON text: %v", err)
	}
	wantKeys(t, "job message", job, "messageType", "plan", "timeline", "jobId", "jobDisplayName", "jobName", "requestId", "demands", "variables")
	r := requestByID(t, e, "linux", rid)
	if int64(job["requestId"].(float64)) != rid || job["jobId"] != r.JobID || job["jobDisplayName"] != "build" {
		t.Errorf("job message = %v, want request %d job %s", job, rid, r.JobID)
	}
	wantGUID(t, "plan.planId", obj(t, job, "plan")["planId"])
	if d := job["demands"].([]any); len(d) != 1 || d[0] != "docker" {
		t.Errorf("demands = %v", d)
	}
	if v := obj(t, obj(t, job, "variables"), RunSecondsVariable); v["value"] != "0.05" {
		t.Errorf("%s = %v, want 0.05", RunSecondsVariable, v)
	}
	if r.Agent != "docker" || r.AssignTime.IsZero() || !r.ReceiveTime.IsZero() {
		t.Errorf("assigned request = %+v, want reserved for docker, not yet started", r)
	}

	// The other agent gets nothing: its poll times out with 202.
	if status, b := c.poll(plainSID, 0); status != http.StatusAccepted || len(b) != 0 {
		t.Errorf("poll of the agent without docker: %d %q, want 202 and no body", status, b)
	}
	// Unacknowledged, the message is sent again; acknowledged, it is gone.
	messageID := int64(msg["messageId"].(float64))
	if status, b := c.poll(dockerSID, 0); status != http.StatusOK || int64(decode(t, b)["messageId"].(float64)) != messageID {
		t.Errorf("poll before the ack: %d %s, want message %d again", status, b, messageID)
	}
	if status, b := c.do(http.MethodDelete, c.url("messages", fmt.Sprintf("%d?sessionId=%s&api-version=7.1-preview.1", messageID, dockerSID)), ""); status != http.StatusNoContent {
		t.Fatalf("ack: %d %s", status, b)
	}
	if status, b := c.poll(dockerSID, 0); status != http.StatusAccepted {
		t.Errorf("poll after the ack: %d %s, want 202", status, b)
	}

	// The polls above outlasted the job's Duration: a session agent's job
	// is not finished on the emulator's timer.
	quiesce(t, e)
	if r := requestByID(t, e, "linux", rid); !r.FinishTime.IsZero() {
		t.Fatalf("the emulator finished a session agent's job itself: %+v", r)
	}
	for _, d := range e.Deliveries() {
		if d.JobState != StateWaiting {
			t.Errorf("hook %s before the agent reported the start", d.JobState)
		}
	}

	status, b := c.patchRequest(rid, fmt.Sprintf(`{"requestId":%d,"receiveTime":"2020-01-01T00:00:00Z"}`, rid))
	if status != http.StatusOK {
		t.Fatalf("report started: %d %s", status, b)
	}
	wantDate(t, "receiveTime", decode(t, b)["receiveTime"])
	started := requestByID(t, e, "linux", rid)
	if started.ReceiveTime.Before(started.AssignTime) {
		t.Errorf("receive time %v before the assign time %v: the emulator must use its own clock", started.ReceiveTime, started.AssignTime)
	}
	status, b = c.patchRequest(rid, fmt.Sprintf(`{"requestId":%d,"finishTime":"2020-01-01T00:00:01Z","result":"Succeeded"}`, rid))
	if status != http.StatusOK {
		t.Fatalf("report finished: %d %s", status, b)
	}
	done := requestByID(t, e, "linux", rid)
	if done.Result != "succeeded" || done.FinishTime.Before(done.ReceiveTime) || done.State() != StateCompleted {
		t.Errorf("finished request = %+v", done)
	}
	if a := agentByName(t, e, "linux", "docker"); a.AssignedRequest != 0 || !a.Online {
		t.Errorf("agent after the job: %+v, want online and idle", a)
	}
	status, b = c.patchRequest(rid, fmt.Sprintf(`{"requestId":%d,"finishTime":"2020-01-01T00:00:01Z","result":"failed"}`, rid))
	if status != http.StatusConflict || !strings.Contains(string(b), "already finished") {
		t.Errorf("finish twice: %d %s, want 409", status, b)
	}

	quiesce(t, e)
	states := map[string]int{}
	for _, d := range e.Deliveries() {
		states[d.JobState]++
		if d.JobState == StateInProgress {
			ev := decode(t, d.Body)
			wantDate(t, "inProgress startTime", obj(t, obj(t, ev, "resource"), "job")["startTime"])
		}
	}
	if len(e.Deliveries()) != 3 || states[StateWaiting] != 1 || states[StateInProgress] != 1 || states[StateCompleted] != 1 {
		t.Errorf("hooks %v, want one each of waiting, inProgress (at the start report), completed", states)
	}
}

func TestUpdateJobRequestRejectsBadInput(t *testing.T) {
	e, org := newServed(t, Options{AutoAssign: true})
	c := agentREST{t, org, e.AddPool("linux")}
	c.register("a1", nil) // registered, no session: not a taker
	waiting := e.QueueJob("linux", Job{})
	url := func(rid int64, q string) string {
		return c.url("jobrequests", strconv.FormatInt(rid, 10)+q)
	}

	for _, tc := range []struct {
		name, url, body string
		status          int
		want            string
	}{
		{"no lockToken", url(waiting, "?api-version=7.1-preview.1"), fmt.Sprintf(`{"requestId":%d}`, waiting), http.StatusBadRequest, "lockToken"},
		{"id mismatch", url(waiting, "?lockToken="+zeroLockToken+"&api-version=7.1-preview.1"), `{"requestId":77}`, http.StatusBadRequest, "requestId"},
		{"unknown result", url(waiting, "?lockToken="+zeroLockToken+"&api-version=7.1-preview.1"), fmt.Sprintf(`{"requestId":%d,"finishTime":"2020-01-01T00:00:00Z","result":"great"}`, waiting), http.StatusBadRequest, "result"},
		{"result without finishTime", url(waiting, "?lockToken="+zeroLockToken+"&api-version=7.1-preview.1"), fmt.Sprintf(`{"requestId":%d,"result":"failed"}`, waiting), http.StatusBadRequest, "finishTime"},
		{"not assigned", url(waiting, "?lockToken="+zeroLockToken+"&api-version=7.1-preview.1"), fmt.Sprintf(`{"requestId":%d}`, waiting), http.StatusConflict, "not assigned"},
		{"unknown request", url(4242, "?lockToken="+zeroLockToken+"&api-version=7.1-preview.1"), `{"requestId":4242}`, http.StatusNotFound, "TaskAgentJobNotFoundException"},
		{"no api-version", url(waiting, "?lockToken="+zeroLockToken), fmt.Sprintf(`{"requestId":%d}`, waiting), http.StatusBadRequest, "VssVersionNotSpecifiedException"},
	} {
		status, b := c.do(http.MethodPatch, tc.url, tc.body)
		if status != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: %d %s, want %d mentioning %s", tc.name, status, b, tc.status, tc.want)
		}
	}
	if r := requestByID(t, e, "linux", waiting); r.State() != StateWaiting {
		t.Errorf("bad updates changed the request: %+v", r)
	}
}

// TestSessionDecidesAssignment: an agent registered over REST gets work
// only while its session is open, and a job it was given but never
// started goes back to waiting when the session closes.
func TestSessionDecidesAssignment(t *testing.T) {
	e, org := newServed(t, Options{AutoAssign: true, MessageWait: 100 * time.Millisecond})
	c := agentREST{t, org, e.AddPool("linux")}
	id := c.register("a1", nil)
	rid := e.QueueJob("linux", Job{})
	if r := requestByID(t, e, "linux", rid); r.State() != StateWaiting {
		t.Fatalf("assigned to an agent without a session: %+v", r)
	}
	sid := c.openSession(id, "a1")
	if r := requestByID(t, e, "linux", rid); r.Agent != "a1" {
		t.Fatalf("not assigned once the session opened: %+v", r)
	}
	if status, b := c.do(http.MethodDelete, c.url("sessions", sid+"?api-version=7.1-preview.1"), ""); status != http.StatusNoContent {
		t.Fatalf("delete session: %d %s", status, b)
	}
	if r := requestByID(t, e, "linux", rid); r.State() != StateWaiting || r.Agent != "" || !r.AssignTime.IsZero() {
		t.Fatalf("after the session closed with the job unstarted: %+v, want waiting again", r)
	}

	// Finishing a job through the Go API takes back its undelivered
	// message.
	sid = c.openSession(id, "a1")
	if err := e.Finish(rid, "canceled"); err != nil {
		t.Fatal(err)
	}
	if status, b := c.poll(sid, 0); status != http.StatusAccepted {
		t.Errorf("poll after the job was finished by the service: %d %s, want 202", status, b)
	}
}

func TestAgentProtocolNeedsAuth(t *testing.T) {
	e, org := newServed(t, Options{})
	c := agentREST{t, org, e.AddPool("linux")}
	for _, tc := range []struct{ method, url string }{
		{http.MethodPut, c.url("agents", "1?api-version=7.1")},
		{http.MethodPost, c.url("sessions?api-version=7.1-preview.1")},
		{http.MethodDelete, c.url("sessions", newGUID()+"?api-version=7.1-preview.1")},
		{http.MethodGet, c.url("messages?sessionId=" + newGUID())},
		{http.MethodDelete, c.url("messages", "1?sessionId="+newGUID()+"&api-version=7.1-preview.1")},
		{http.MethodPatch, c.url("jobrequests", "1?lockToken="+zeroLockToken+"&api-version=7.1-preview.1")},
	} {
		for _, auth := range []string{"", basic("", "wrong")} {
			if status, _, _ := call(t, tc.method, tc.url, auth, strings.NewReader("{}")); status != http.StatusUnauthorized {
				t.Errorf("%s %s with auth %q: %d, want 401", tc.method, tc.url, auth, status)
			}
		}
	}
	if n := len(e.Agents("linux")); n != 0 {
		t.Errorf("unauthorized calls registered %d agents", n)
	}
}
