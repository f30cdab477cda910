package adoemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

func TestPoolsByName(t *testing.T) {
	e, org := newServed(t, Options{})
	linux := e.AddPool("linux")
	e.AddPool("windows")
	if again := e.AddPool("Linux"); again != linux {
		t.Fatalf("AddPool of an existing name returned %d, want %d", again, linux)
	}
	e.RegisterAgent("linux", AgentInfo{Name: "a1"})

	got := values(t, getJSON(t, path(org, "pools?poolName=LINUX")))
	if len(got) != 1 {
		t.Fatalf("poolName=LINUX: %d pools, want 1", len(got))
	}
	p := got[0]
	wantKeys(t, "pool", p, "id", "name", "isHosted", "poolType", "size", "createdOn", "scope", "autoProvision", "owner")
	if p["id"].(float64) != float64(linux) || p["name"] != "linux" || p["isHosted"] != false || p["poolType"] != "automation" || p["size"].(float64) != 1 {
		t.Errorf("pool = %v", p)
	}
	wantDate(t, "createdOn", p["createdOn"])

	if all := values(t, getJSON(t, path(org, "pools"))); len(all) != 2 {
		t.Errorf("all pools: %d, want 2", len(all))
	}
	if none := values(t, getJSON(t, path(org, "pools?poolName=mac"))); len(none) != 0 {
		t.Errorf("poolName=mac: %d pools, want 0", len(none))
	}
}

func TestJobRequestShape(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	e.RegisterAgent("linux", AgentInfo{Name: "a1", Online: true, SystemCapabilities: map[string]string{"docker": ""}})
	e.RegisterAgent("linux", AgentInfo{Name: "a2", Online: true})
	waiting := e.QueueJob("linux", Job{Name: "build", Demands: []string{"docker"}})
	running := e.QueueJob("linux", Job{Name: "build", Demands: []string{"docker"}})
	if err := e.Assign(running, "a1"); err != nil {
		t.Fatal(err)
	}

	reqs := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "jobrequests?completedRequestCount=0")))
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	w, r := reqs[0], reqs[1]
	if w["requestId"].(float64) != float64(waiting) {
		t.Fatalf("first request %v, want %d (oldest first)", w["requestId"], waiting)
	}
	common := []string{"requestId", "queueTime", "serviceOwner", "hostId", "scopeId", "planType", "planId", "jobId",
		"demands", "definition", "owner", "data", "poolId", "orchestrationId", "matchesAllAgentsInPool"}
	wantKeys(t, "waiting request", w, common...)
	wantKeys(t, "waiting request", w, "matchedAgents")
	wantNoKeys(t, "waiting request", w, "assignTime", "receiveTime", "finishTime", "result", "reservedAgent", "agentSpecification")
	if w["planType"] != "Build" || w["poolId"].(float64) != float64(pid) || w["matchesAllAgentsInPool"] != false {
		t.Errorf("waiting request = %v", w)
	}
	wantGUID(t, "planId", w["planId"])
	wantGUID(t, "jobId", w["jobId"])
	wantDate(t, "queueTime", w["queueTime"])
	data := obj(t, w, "data")
	if data["ParallelismTag"] != "Private" || data["IsScheduledKey"] != "False" {
		t.Errorf("data = %v", data)
	}
	wantKeys(t, "definition", obj(t, w, "definition"), "id", "name", "_links")
	wantKeys(t, "owner", obj(t, w, "owner"), "id", "name", "_links")
	if d := w["demands"].([]any); len(d) != 1 || d[0] != "docker" {
		t.Errorf("demands = %v", d)
	}
	if m := w["matchedAgents"].([]any); len(m) != 1 || m[0].(map[string]any)["name"] != "a1" {
		t.Errorf("matchedAgents = %v, want only a1", m)
	}

	wantKeys(t, "running request", r, append(common, "assignTime", "receiveTime", "reservedAgent")...)
	wantNoKeys(t, "running request", r, "finishTime", "result", "matchedAgents")
	wantDate(t, "assignTime", r["assignTime"])
	wantDate(t, "receiveTime", r["receiveTime"])
	ra := obj(t, r, "reservedAgent")
	wantKeys(t, "reservedAgent", ra, "id", "name", "version", "status", "enabled", "_links")
	if ra["name"] != "a1" || ra["status"] != "online" || ra["enabled"] != true {
		t.Errorf("reservedAgent = %v", ra)
	}

	// The client's own structs must read the same payload the same way.
	_, _, b := call(t, http.MethodGet, path(org, "pools", strconv.Itoa(pid), "jobrequests?completedRequestCount=0"), basic("", testPAT), nil)
	var typed struct{ Value []azuredevops.JobRequest }
	if err := json.Unmarshal(b, &typed); err != nil {
		t.Fatal(err)
	}
	if len(typed.Value) != 2 || !typed.Value[0].Waiting() || typed.Value[1].Waiting() || typed.Value[1].ReservedAgent.Name != "a1" {
		t.Errorf("azuredevops.JobRequest decode: %+v", typed.Value)
	}
}

func TestAuthRequired(t *testing.T) {
	e, org := newServed(t, Options{BearerToken: "entra-token"})
	e.AddPool("linux")
	url := path(org, "pools")
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"wrong PAT", basic("", "nope"), http.StatusUnauthorized},
		{"PAT as user name", basic(testPAT, ""), http.StatusUnauthorized},
		{"PAT, empty user", basic("", testPAT), http.StatusOK},
		{"PAT, any user", basic("someone", testPAT), http.StatusOK},
		{"bearer", "Bearer entra-token", http.StatusOK},
		{"wrong bearer", "Bearer other", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, _ := call(t, http.MethodGet, url, tc.auth, nil)
			if status != tc.want {
				t.Errorf("status %d, want %d", status, tc.want)
			}
		})
	}
	_, org2 := newServed(t, Options{})
	if status, _, _ := call(t, http.MethodGet, path(org2, "pools"), "Bearer entra-token", nil); status != http.StatusUnauthorized {
		t.Errorf("bearer without a configured token: status %d, want 401", status)
	}
}

func TestCompletedRequestCount(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	e.RegisterAgent("linux", AgentInfo{Name: "a1", Online: true})
	done := e.QueueJob("linux", Job{})
	run := e.QueueJob("linux", Job{})
	wait := e.QueueJob("linux", Job{})
	if err := e.Assign(done, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Finish(done, "succeeded"); err != nil {
		t.Fatal(err)
	}
	if err := e.Assign(run, "a1"); err != nil {
		t.Fatal(err)
	}

	ids := func(query string) []int64 {
		var out []int64
		for _, r := range values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "jobrequests"+query))) {
			out = append(out, int64(r["requestId"].(float64)))
		}
		return out
	}
	if got := ids("?completedRequestCount=0"); fmt.Sprint(got) != fmt.Sprint([]int64{run, wait}) {
		t.Errorf("completedRequestCount=0: %v, want %v", got, []int64{run, wait})
	}
	if got := ids(""); fmt.Sprint(got) != fmt.Sprint([]int64{done, run, wait}) {
		t.Errorf("no completedRequestCount: %v, want %v", got, []int64{done, run, wait})
	}
	finished := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "jobrequests")))[0]
	wantKeys(t, "finished request", finished, "finishTime", "result")
	if finished["result"] != "succeeded" {
		t.Errorf("result = %v", finished["result"])
	}
}

func TestJobRequestsCappedAt200(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	var first int64
	for i := range 250 {
		id := e.QueueJob("linux", Job{})
		if i == 0 {
			first = id
		}
	}
	reqs := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "jobrequests?completedRequestCount=0")))
	if len(reqs) != 200 {
		t.Fatalf("%d requests, want the service's cap of 200", len(reqs))
	}
	if got := int64(reqs[0]["requestId"].(float64)); got != first {
		t.Errorf("first request %d, want the oldest %d", got, first)
	}
	if len(e.Requests("linux")) != 250 {
		t.Errorf("the emulator must still hold all 250 requests")
	}
}

func TestJobRequestsCapOption(t *testing.T) {
	e, org := newServed(t, Options{JobRequestsCap: 5})
	pid := e.AddPool("linux")
	for range 8 {
		e.QueueJob("linux", Job{})
	}
	for _, query := range []string{"?completedRequestCount=0", "?$top=100"} {
		if reqs := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "jobrequests"+query))); len(reqs) != 5 {
			t.Errorf("%s: %d requests, want the cap of 5", query, len(reqs))
		}
	}
}

// TestJobRequestsPaged walks the $top form with its continuation token: every
// request of the pool comes exactly once, pages mix running, waiting and
// finished requests, none carries matchedAgents, and the last page has no
// token.
func TestJobRequestsPaged(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	e.AddPool("windows")
	e.QueueJob("windows", Job{}) // another pool's request never shows
	// An agent that matches nothing makes the list name matched agents
	// where the form carries them.
	e.RegisterAgent("linux", AgentInfo{Name: "other", Online: true})
	want := map[int64]string{}
	for i := range 7 {
		e.RegisterAgent("linux", AgentInfo{Name: fmt.Sprintf("a%d", i), Online: true, UserCapabilities: map[string]string{"docker": ""}})
	}
	for i := range 17 {
		id := e.QueueJob("linux", Job{Demands: []string{"docker"}})
		want[id] = "waiting"
		switch {
		case i < 4: // finished
			if err := e.Assign(id, fmt.Sprintf("a%d", i)); err != nil {
				t.Fatal(err)
			}
			if err := e.Finish(id, "succeeded"); err != nil {
				t.Fatal(err)
			}
			want[id] = "finished"
		case i < 7: // running
			if err := e.Assign(id, fmt.Sprintf("a%d", i)); err != nil {
				t.Fatal(err)
			}
			want[id] = "running"
		}
	}

	got := map[int64]string{}
	mixed := false
	token, pages := "", 0
	for {
		u := path(org, "pools", strconv.Itoa(pid), "jobrequests?$top=3")
		if token != "" {
			u += "&continuationToken=" + url.QueryEscape(token)
		}
		status, h, b := call(t, http.MethodGet, u, basic("", testPAT), nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", u, status, b)
		}
		pages++
		page := values(t, decode(t, b))
		if len(page) > 3 {
			t.Fatalf("page %d holds %d requests, want at most $top=3", pages, len(page))
		}
		kinds := map[string]bool{}
		for _, r := range page {
			wantNoKeys(t, "paged request", r, "matchedAgents")
			wantKeys(t, "paged request", r, "demands")
			id := int64(r["requestId"].(float64))
			if _, dup := got[id]; dup {
				t.Errorf("request %d listed twice", id)
			}
			kind := "waiting"
			switch {
			case r["result"] != nil:
				kind = "finished"
			case r["assignTime"] != nil:
				kind = "running"
			}
			got[id] = kind
			kinds[kind] = true
		}
		mixed = mixed || len(kinds) == 3
		token = h.Get("x-ms-continuationtoken")
		if token == "" {
			break
		}
		if n := strings.Count(token, "|"); n != 2 {
			t.Fatalf("token %q has %d separators, want three cursors", token, n)
		}
		if pages > 20 {
			t.Fatal("the token never ends")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged list = %v\nwant %v", got, want)
	}
	if pages != 6 || !mixed {
		t.Errorf("%d pages (want 17/3 rounded up = 6), some mixing all three kinds: %v", pages, mixed)
	}
}

func TestJobRequestsPagedRefusals(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := strconv.Itoa(e.AddPool("linux"))
	for _, query := range []string{
		"?$top=10&completedRequestCount=0", // the service refuses to combine them
		"?$top=0",
		"?$top=ten",
		"?$top=10&continuationToken=" + url.QueryEscape("x|1|"),
		"?$top=10&continuationToken=" + url.QueryEscape("||"+"||"),
	} {
		status, _, b := call(t, http.MethodGet, path(org, "pools", pid, "jobrequests"+query), basic("", testPAT), nil)
		if status != http.StatusBadRequest || !strings.Contains(string(b), "ArgumentException") {
			t.Errorf("%s: %d %s, want 400 ArgumentException", query, status, b)
		}
	}
}

func TestAgentsIncludeFlags(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	e.RegisterAgent("linux", AgentInfo{Name: "a1", Online: true, UserCapabilities: map[string]string{"docker": ""}})
	rid := e.QueueJob("linux", Job{})
	if err := e.Assign(rid, "a1"); err != nil {
		t.Fatal(err)
	}

	plain := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "agents")))
	if len(plain) != 1 {
		t.Fatalf("%d agents, want 1", len(plain))
	}
	a := plain[0]
	wantKeys(t, "agent", a, "id", "name", "version", "osDescription", "enabled", "status", "provisioningState",
		"createdOn", "statusChangedOn", "maxParallelism", "authorization", "_links")
	wantNoKeys(t, "agent without include flags", a, "assignedRequest", "systemCapabilities", "userCapabilities")
	if a["provisioningState"] != "Provisioned" || a["maxParallelism"].(float64) != 1 || a["status"] != "online" {
		t.Errorf("agent = %v", a)
	}
	wantDate(t, "createdOn", a["createdOn"])
	wantDate(t, "statusChangedOn", a["statusChangedOn"])

	full := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "agents?includeAssignedRequest=true&includeCapabilities=true")))[0]
	wantKeys(t, "agent with include flags", full, "assignedRequest", "systemCapabilities", "userCapabilities")
	if got := obj(t, full, "assignedRequest")["requestId"].(float64); got != float64(rid) {
		t.Errorf("assignedRequest.requestId = %v, want %d", got, rid)
	}
	if v := obj(t, full, "systemCapabilities")["Agent.Version"]; v != DefaultAgentVersion {
		t.Errorf("systemCapabilities[Agent.Version] = %v", v)
	}
	if _, ok := obj(t, full, "userCapabilities")["docker"]; !ok {
		t.Errorf("userCapabilities = %v", full["userCapabilities"])
	}

	byName := values(t, getJSON(t, path(org, "pools", strconv.Itoa(pid), "agents?agentName=A1")))
	if len(byName) != 1 {
		t.Errorf("agentName=A1: %d agents, want 1", len(byName))
	}
}

func TestAddAgentDuplicateConflict(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	url := path(org, "pools", strconv.Itoa(pid), "agents?api-version=7.1")
	body := `{"name":"linux-r1","version":"4.260.0","osDescription":"Linux","enabled":true,"maxParallelism":1,
		"authorization":{"publicKey":{"exponent":"AQAB","modulus":"xyz"}},"systemCapabilities":{"docker":""}}`

	status, _, b := call(t, http.MethodPost, url, basic("", testPAT), strings.NewReader(body))
	if status != http.StatusOK {
		t.Fatalf("add: status %d, body %s", status, b)
	}
	added := decode(t, b)
	if added["name"] != "linux-r1" || added["status"] != "offline" || added["id"].(float64) <= 0 {
		t.Errorf("added agent = %v", added)
	}
	if pk := obj(t, obj(t, added, "authorization"), "publicKey"); pk["modulus"] != "xyz" {
		t.Errorf("publicKey = %v", pk)
	}

	status, _, b = call(t, http.MethodPost, url, basic("", testPAT), strings.NewReader(body))
	if status != http.StatusConflict {
		t.Fatalf("duplicate: status %d, want 409", status)
	}
	errBody := decode(t, b)
	wantKeys(t, "error", errBody, "$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId")
	if errBody["$id"] != "1" || errBody["innerException"] != nil || errBody["typeKey"] != "TaskAgentExistsException" ||
		!strings.Contains(errBody["typeName"].(string), "AgentExistsException") ||
		errBody["errorCode"].(float64) != 0 || errBody["eventId"].(float64) != 3000 ||
		!strings.Contains(errBody["message"].(string), "linux-r1") {
		t.Errorf("409 body = %v", errBody)
	}

	// Writes need an api-version, as the service insists.
	status, _, b = call(t, http.MethodPost, path(org, "pools", strconv.Itoa(pid), "agents"), basic("", testPAT), strings.NewReader(body))
	if status != http.StatusBadRequest || decode(t, b)["typeKey"] != "VssVersionNotSpecifiedException" {
		t.Errorf("POST without api-version: %d %s", status, b)
	}
	if e.Writes() != 3 {
		t.Errorf("Writes() = %d, want 3", e.Writes())
	}
	if n := len(e.Agents("linux")); n != 1 {
		t.Errorf("%d agents registered, want 1", n)
	}
}

func TestDeleteAgent(t *testing.T) {
	e, org := newServed(t, Options{})
	pid := e.AddPool("linux")
	idle := e.RegisterAgent("linux", AgentInfo{Name: "idle"})
	busy := e.RegisterAgent("linux", AgentInfo{Name: "busy", Online: true})
	rid := e.QueueJob("linux", Job{})
	if err := e.Assign(rid, "busy"); err != nil {
		t.Fatal(err)
	}
	del := func(id int) (int, []byte) {
		status, _, b := call(t, http.MethodDelete, path(org, "pools", strconv.Itoa(pid), "agents", strconv.Itoa(id)+"?api-version=7.1"), basic("", testPAT), nil)
		return status, b
	}
	if status, b := del(idle); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	status, b := del(idle)
	if status != http.StatusNotFound || decode(t, b)["typeKey"] != "TaskAgentNotFoundException" {
		t.Errorf("delete again: %d %s, want 404 TaskAgentNotFoundException", status, b)
	}
	if status, b := del(busy); status != http.StatusNoContent {
		t.Fatalf("delete busy: %d %s", status, b)
	}
	if r := e.Requests("linux")[0]; r.Result != "abandoned" || r.State() != StateCompleted {
		t.Errorf("request of a deleted agent: %+v, want abandoned", r)
	}
	if n := len(e.Agents("linux")); n != 0 {
		t.Errorf("%d agents left, want 0", n)
	}
}

func TestNotFound(t *testing.T) {
	_, org := newServed(t, Options{})
	for _, url := range []string{
		path(org, "queues"),
		path(org, "pools", "1", "nothing"),
		strings.TrimSuffix(org, "/contoso") + "/other/_apis/distributedtask/pools",
	} {
		status, _, b := call(t, http.MethodGet, url, basic("", testPAT), nil)
		if status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", url, status)
			continue
		}
		wantKeys(t, url, decode(t, b), "$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId")
	}
	status, _, b := call(t, http.MethodGet, path(org, "pools", "42", "jobrequests"), basic("", testPAT), nil)
	if status != http.StatusNotFound || decode(t, b)["typeKey"] != "TaskAgentPoolNotFoundException" {
		t.Errorf("missing pool: %d %s", status, b)
	}
}

func TestResourceUsage(t *testing.T) {
	e, org := newServed(t, Options{ParallelJobs: 3})
	e.RegisterAgent("linux", AgentInfo{Name: "a1", Online: true})
	url := org + "/_apis/distributedtask/resourceusage?parallelismTag=Private&poolIsHosted=false&includeRunningRequests=true"

	idle := getJSON(t, url)
	lim := obj(t, idle, "resourceLimit")
	wantKeys(t, "resourceLimit", lim, "parallelismTag", "isHosted", "totalCount", "totalMinutes", "hostId")
	if lim["parallelismTag"] != "Private" || lim["isHosted"] != false || lim["totalCount"].(float64) != 3 {
		t.Errorf("resourceLimit = %v", lim)
	}
	wantNoKeys(t, "idle usage (the service omits zero counts)", idle, "usedCount", "runningRequests")

	rid := e.QueueJob("linux", Job{})
	e.QueueJob("linux", Job{}) // waiting requests use no parallel job
	if err := e.Assign(rid, "a1"); err != nil {
		t.Fatal(err)
	}
	busy := getJSON(t, url)
	if busy["usedCount"].(float64) != 1 || len(busy["runningRequests"].([]any)) != 1 {
		t.Errorf("usage with one running job = %v", busy)
	}
	var typed azuredevops.ResourceUsage
	_, _, b := call(t, http.MethodGet, url, basic("", testPAT), nil)
	if err := json.Unmarshal(b, &typed); err != nil || typed.Free() != 2 {
		t.Errorf("azuredevops.ResourceUsage decode: %+v, %v; want 2 free", typed, err)
	}
}

func TestCallsRateLimitAndFaults(t *testing.T) {
	e, org := newServed(t, Options{RateLimit: 10})
	pid := e.AddPool("linux")
	url := path(org, "pools", strconv.Itoa(pid), "jobrequests?completedRequestCount=0")

	e.FailNext(EndpointJobRequests, http.StatusServiceUnavailable, 1500*time.Millisecond)
	status, h, b := call(t, http.MethodGet, url, basic("", testPAT), nil)
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") != "2" {
		t.Errorf("injected failure: %d, Retry-After %q", status, h.Get("Retry-After"))
	}
	wantKeys(t, "injected error", decode(t, b), "$id", "message", "typeKey")
	if h.Get("X-RateLimit-Remaining") != "9" {
		t.Errorf("X-RateLimit-Remaining = %q, want 9", h.Get("X-RateLimit-Remaining"))
	}
	status, h, _ = call(t, http.MethodGet, url, basic("", testPAT), nil)
	if status != http.StatusOK || h.Get("X-RateLimit-Remaining") != "8" {
		t.Errorf("after the injected failure: %d, remaining %q", status, h.Get("X-RateLimit-Remaining"))
	}
	call(t, http.MethodGet, path(org, "pools"), basic("", testPAT), nil)

	calls := e.Calls()
	if calls[EndpointJobRequests] != 2 || calls[EndpointPools] != 1 || e.Writes() != 0 {
		t.Errorf("Calls() = %v, Writes() = %d", calls, e.Writes())
	}
}

func TestLatencyHoldsTheAnswer(t *testing.T) {
	e, org := newServed(t, Options{Latency: map[string]time.Duration{EndpointJobRequests: time.Hour}})
	pid := e.AddPool("linux")

	// The slow endpoint is still answering when the client gives up...
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path(org, "pools", strconv.Itoa(pid), "jobrequests"), nil)
	req.Header.Set("Authorization", basic("", testPAT))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("slow endpoint answered %d; want the client deadline to fire", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// ...while the others are not delayed.
	if status, _, _ := call(t, http.MethodGet, path(org, "pools"), basic("", testPAT), nil); status != http.StatusOK {
		t.Errorf("pools: %d", status)
	}
}

func TestStartOnLoopback(t *testing.T) {
	e := New(Options{PAT: testPAT, Org: "fabrikam"})
	org, err := e.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(org, "http://127.0.0.1:") || !strings.HasSuffix(org, "/fabrikam") {
		t.Fatalf("org URL %q", org)
	}
	e.AddPool("linux")
	if got := values(t, getJSON(t, path(org, "pools"))); len(got) != 1 {
		t.Errorf("%d pools", len(got))
	}
	e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path(org, "pools"), nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Error("server still answering after Close")
	}
}

func TestRegisterAgentReplaces(t *testing.T) {
	e, _ := newServed(t, Options{})
	id := e.RegisterAgent("linux", AgentInfo{Name: "a1", UserCapabilities: map[string]string{"java": ""}})
	again := e.RegisterAgent("linux", AgentInfo{Name: "a1", Online: true, UserCapabilities: map[string]string{"docker": ""}})
	agents := e.Agents("linux")
	if again != id || len(agents) != 1 {
		t.Fatalf("replace: id %d then %d, %d agents", id, again, len(agents))
	}
	if _, ok := agents[0].UserCapabilities["java"]; ok || !agents[0].Online {
		t.Errorf("replaced agent = %+v", agents[0])
	}
	if err := e.SetAgentStatus("linux", "a1", false); err != nil || e.Agents("linux")[0].Online {
		t.Errorf("SetAgentStatus offline: %v, %+v", err, e.Agents("linux")[0])
	}
	if err := e.SetAgentStatus("linux", "ghost", true); err == nil {
		t.Error("SetAgentStatus of a missing agent: want an error")
	}
}
