package adoemu

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// receiver is a service hook endpoint on loopback that answers with a
// scripted list of statuses (the last one repeats) and records what it got.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []received
	srv      *httptest.Server
}

type received struct {
	header http.Header
	body   []byte
	status int
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	rc := &receiver{statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		status := rc.statuses[min(len(rc.got), len(rc.statuses)-1)]
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: b, status: status})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func TestHookPayloadAndStates(t *testing.T) {
	e, org := newServed(t, Options{})
	rc := newReceiver(t, http.StatusOK)
	e.Subscribe(Subscription{URL: rc.srv.URL, Username: "azdo", Password: "hook-secret", Header: map[string]string{"X-Extra": "1"}})
	e.RegisterAgent("linux", AgentInfo{Name: "a1", Online: true})
	rid := e.QueueJob("linux", Job{Name: "build"})
	quiesce(t, e)
	if err := e.Assign(rid, "a1"); err != nil {
		t.Fatal(err)
	}
	quiesce(t, e)
	if err := e.Finish(rid, "succeeded"); err != nil {
		t.Fatal(err)
	}
	quiesce(t, e)

	got := rc.all()
	if len(got) != 3 {
		t.Fatalf("%d posts, want 3 (waiting, inProgress, completed)", len(got))
	}
	jobID := e.Requests("linux")[0].JobID
	seenIDs := map[string]bool{}
	for i, want := range []string{StateWaiting, StateInProgress, StateCompleted} {
		h := got[i].header
		if u, p, ok := (&http.Request{Header: h}).BasicAuth(); !ok || u != "azdo" || p != "hook-secret" {
			t.Errorf("post %d: basic auth %q/%q %v", i, u, p, ok)
		}
		if h.Get("X-Extra") != "1" || h.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("post %d: headers %v", i, h)
		}
		ev := decode(t, got[i].body)
		wantKeys(t, "event", ev, "subscriptionId", "notificationId", "id", "eventType", "publisherId", "message",
			"detailedMessage", "resource", "resourceVersion", "resourceContainers", "createdDate")
		if ev["eventType"] != "ms.vss-pipelines.job-state-changed-event" || ev["publisherId"] != "pipelines" ||
			ev["resourceVersion"] != "5.1-preview.1" || ev["notificationId"].(float64) != float64(i+1) {
			t.Errorf("post %d: %v", i, ev)
		}
		wantGUID(t, "id", ev["id"])
		seenIDs[ev["id"].(string)] = true
		wantDate(t, "createdDate", ev["createdDate"])
		res := obj(t, ev, "resource")
		wantKeys(t, "resource", res, "job", "stage", "run", "pipeline")
		job := obj(t, res, "job")
		wantKeys(t, "job", job, "id", "name", "state", "result", "startTime", "finishTime")
		if job["id"] != jobID || job["name"] != "build" || job["state"] != want {
			t.Errorf("post %d: job = %v, want id %s state %s", i, job, jobID, want)
		}
		run := obj(t, res, "run")
		wantKeys(t, "run", run, "id", "name", "state", "result", "pipeline")
		wantKeys(t, "pipeline", obj(t, res, "pipeline"), "id", "name", "url")
		wantKeys(t, "stage", obj(t, res, "stage"), "id", "name", "state", "result")
		acct := obj(t, obj(t, ev, "resourceContainers"), "account")
		if acct["baseUrl"] != org+"/" {
			t.Errorf("account.baseUrl = %v, want %s/", acct["baseUrl"], org)
		}
		wantKeys(t, "resourceContainers", obj(t, ev, "resourceContainers"), "collection", "account", "project")
		// The service sends neither the request id nor the pool.
		if bytes.Contains(got[i].body, []byte(`"requestId"`)) || bytes.Contains(got[i].body, []byte(`"poolId"`)) {
			t.Errorf("post %d carries requestId or poolId: %s", i, got[i].body)
		}
		switch want {
		case StateWaiting:
			if job["result"] != nil || job["startTime"] != nil {
				t.Errorf("waiting job has result or start: %v", job)
			}
		case StateInProgress:
			wantDate(t, "startTime", job["startTime"])
		case StateCompleted:
			wantDate(t, "finishTime", job["finishTime"])
			if job["result"] != "succeeded" || run["state"] != "completed" || run["result"] != "succeeded" {
				t.Errorf("completed job %v run %v", job, run)
			}
		}
	}
	if len(seenIDs) != 3 {
		t.Errorf("event ids %v, want a fresh one per event", seenIDs)
	}
}

func TestHookRetriesOn503ThenSucceeds(t *testing.T) {
	e, _ := newServed(t, Options{})
	rc := newReceiver(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusOK)
	sub := e.Subscribe(Subscription{URL: rc.srv.URL})
	e.QueueJob("linux", Job{})
	quiesce(t, e)

	got := rc.all()
	if len(got) != 3 {
		t.Fatalf("%d attempts, want 3", len(got))
	}
	for i := 1; i < len(got); i++ {
		if !bytes.Equal(got[i].body, got[0].body) {
			t.Errorf("retry %d sent a different body", i)
		}
	}
	ds := e.Deliveries()
	if len(ds) != 3 || ds[0].Status != 503 || ds[1].Status != 503 || ds[2].Status != 200 || ds[2].Attempt != 3 || ds[0].EventID != ds[2].EventID {
		t.Errorf("deliveries = %+v", ds)
	}
	if s := e.SubscriptionState(sub); s != SubscriptionEnabled {
		t.Errorf("state %s, want enabled", s)
	}
}

func TestHookGivesUpAfterEightRetries(t *testing.T) {
	e, _ := newServed(t, Options{})
	rc := newReceiver(t, http.StatusGatewayTimeout)
	sub := e.Subscribe(Subscription{URL: rc.srv.URL})
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	if n := len(rc.all()); n != 1+8 {
		t.Errorf("%d attempts, want 9 (1 + 8 retries)", n)
	}
	if s := e.SubscriptionState(sub); s != SubscriptionOnProbation {
		t.Errorf("state %s, want onProbation", s)
	}
}

func TestHookConnectionErrorsAreRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	e, _ := newServed(t, Options{})
	e.Subscribe(Subscription{URL: url})
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	ds := e.Deliveries()
	if len(ds) != 9 {
		t.Fatalf("%d attempts, want 9", len(ds))
	}
	if ds[0].Status != 0 || ds[0].Err == "" {
		t.Errorf("first attempt = %+v, want a connection error", ds[0])
	}
}

func TestHook410DisablesSubscription(t *testing.T) {
	e, _ := newServed(t, Options{})
	rc := newReceiver(t, http.StatusGone)
	sub := e.Subscribe(Subscription{URL: rc.srv.URL})
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	if s := e.SubscriptionState(sub); s != SubscriptionDisabled {
		t.Fatalf("state %s, want disabledBySystem", s)
	}
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	if n := len(rc.all()); n != 1 {
		t.Errorf("%d posts, want 1: a disabled subscription gets nothing", n)
	}
}

func TestHookOtherErrorsMeanProbation(t *testing.T) {
	e, _ := newServed(t, Options{})
	rc := newReceiver(t, http.StatusInternalServerError, http.StatusOK)
	sub := e.Subscribe(Subscription{URL: rc.srv.URL})
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	if n, s := len(rc.all()), e.SubscriptionState(sub); n != 1 || s != SubscriptionOnProbation {
		t.Fatalf("500: %d attempts, state %s; want 1 attempt (no retry) and onProbation", n, s)
	}
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	if s := e.SubscriptionState(sub); s != SubscriptionEnabled {
		t.Errorf("after a success: %s, want enabled", s)
	}

	rc2 := newReceiver(t, http.StatusBadRequest)
	sub2 := e.Subscribe(Subscription{URL: rc2.srv.URL})
	for range probationLimit {
		e.QueueJob("linux", Job{})
		quiesce(t, e)
	}
	if s := e.SubscriptionState(sub2); s != SubscriptionDisabled {
		t.Errorf("after %d failures in a row: %s, want disabledBySystem", probationLimit, s)
	}
}

func TestRedeliverSendsTheSameEvent(t *testing.T) {
	e, _ := newServed(t, Options{})
	rc := newReceiver(t, http.StatusOK)
	e.Subscribe(Subscription{URL: rc.srv.URL})
	e.QueueJob("linux", Job{})
	quiesce(t, e)
	id := e.Deliveries()[0].EventID
	if err := e.Redeliver(id); err != nil {
		t.Fatal(err)
	}
	quiesce(t, e)
	got := rc.all()
	if len(got) != 2 || !bytes.Equal(got[0].body, got[1].body) {
		t.Fatalf("%d posts; want the same body twice", len(got))
	}
	if err := e.Redeliver("no-such-event"); err == nil {
		t.Error("Redeliver of an unknown event: want an error")
	}
}

func TestQuiesceHonoursContext(t *testing.T) {
	// A receiver that never answers keeps the delivery in flight.
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(func() { close(block); srv.Close() })
	e, _ := newServed(t, Options{})
	e.Subscribe(Subscription{URL: srv.URL})
	e.QueueJob("linux", Job{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Quiesce(ctx); err == nil {
		t.Error("Quiesce with a cancelled context and a delivery in flight: want an error")
	}
}

func TestAutoAssignDemandsOldestFirst(t *testing.T) {
	e, _ := newServed(t, Options{AutoAssign: true, ParallelJobs: 10})
	javaJob := e.QueueJob("linux", Job{Demands: []string{"java"}})
	docker1 := e.QueueJob("linux", Job{Demands: []string{"docker"}})
	docker2 := e.QueueJob("linux", Job{Demands: []string{"docker"}})
	e.RegisterAgent("linux", AgentInfo{Name: "off", UserCapabilities: map[string]string{"docker": "", "java": ""}})
	e.RegisterAgent("linux", AgentInfo{Name: "disabled", Online: true, Disabled: true, UserCapabilities: map[string]string{"docker": "", "java": ""}})

	agentOf := func(id int64) string {
		for _, r := range e.Requests("linux") {
			if r.ID == id {
				return r.Agent
			}
		}
		t.Fatalf("request %d missing", id)
		return ""
	}
	if agentOf(javaJob)+agentOf(docker1)+agentOf(docker2) != "" {
		t.Fatal("offline or disabled agents must not get work")
	}

	e.RegisterAgent("linux", AgentInfo{Name: "d", Online: true, UserCapabilities: map[string]string{"docker": ""}})
	if agentOf(javaJob) != "" || agentOf(docker1) != "d" || agentOf(docker2) != "" {
		t.Fatalf("docker agent: java=%q docker1=%q docker2=%q; want docker1 (oldest it can run) on d",
			agentOf(javaJob), agentOf(docker1), agentOf(docker2))
	}

	e.RegisterAgent("linux", AgentInfo{Name: "dj", Online: true, UserCapabilities: map[string]string{"docker": "", "java": ""}})
	if agentOf(javaJob) != "dj" || agentOf(docker2) != "" {
		t.Fatalf("docker+java agent took java=%q docker2=%q; want the older java job", agentOf(javaJob), agentOf(docker2))
	}

	if err := e.Finish(docker1, "succeeded"); err != nil {
		t.Fatal(err)
	}
	if agentOf(docker2) != "d" {
		t.Errorf("after d is free: docker2 on %q, want d", agentOf(docker2))
	}
}

func TestAutoAssignRespectsParallelJobs(t *testing.T) {
	e, _ := newServed(t, Options{AutoAssign: true, ParallelJobs: 1})
	first := e.QueueJob("linux", Job{})
	second := e.QueueJob("linux", Job{})
	e.RegisterAgent("linux", AgentInfo{Name: "a", Online: true})
	e.RegisterAgent("linux", AgentInfo{Name: "b", Online: true})
	states := func() (string, string) {
		rs := e.Requests("linux")
		return rs[0].State(), rs[1].State()
	}
	if s1, s2 := states(); s1 != StateInProgress || s2 != StateWaiting {
		t.Fatalf("with 1 parallel job: %s, %s; want inProgress, waiting", s1, s2)
	}
	if err := e.Finish(first, "succeeded"); err != nil {
		t.Fatal(err)
	}
	if _, s2 := states(); s2 != StateInProgress {
		t.Errorf("request %d after the first finished: %s, want inProgress", second, s2)
	}
}

func TestJobDurationFinishesJob(t *testing.T) {
	e, _ := newServed(t, Options{AutoAssign: true})
	rc := newReceiver(t, http.StatusOK)
	e.Subscribe(Subscription{URL: rc.srv.URL})
	e.RegisterAgent("linux", AgentInfo{Name: "a", Online: true})
	rid := e.QueueJob("linux", Job{Duration: time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for e.Requests("linux")[0].State() != StateCompleted {
		select {
		case <-ctx.Done():
			t.Fatalf("request %d never finished", rid)
		case <-time.After(time.Millisecond):
		}
	}
	quiesce(t, e)
	r := e.Requests("linux")[0]
	if r.Result != "succeeded" || e.Agents("linux")[0].AssignedRequest != 0 {
		t.Errorf("request %+v, agent %+v", r, e.Agents("linux")[0])
	}
	// Deliveries run concurrently, so their order is not the order of events.
	states := map[string]int{}
	for _, d := range e.Deliveries() {
		states[d.JobState]++
	}
	if len(e.Deliveries()) != 3 || states[StateWaiting] != 1 || states[StateInProgress] != 1 || states[StateCompleted] != 1 {
		t.Errorf("delivered states %v, want one each of waiting, inProgress, completed", states)
	}
}
