package azuredevops

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

// The JSON below follows answers of dev.azure.com (field names, the {count,
// value} envelope, .NET date formats, extra fields the client ignores). The
// httptest servers stand in for Azure DevOps, which cannot be reached here.

const clientPoolsJSON = `{"count":1,"value":[{"createdOn":"2023-03-01T09:12:44.51Z","autoProvision":false,
"autoUpdate":true,"autoSize":true,"targetSize":null,"agentCloudId":null,
"createdBy":{"displayName":"Platform Team","id":"6b2c1c9e-5d1f-4a53-9a47-0f5c2b1e7a11","uniqueName":"platform@contoso.com"},
"owner":{"displayName":"Platform Team","id":"6b2c1c9e-5d1f-4a53-9a47-0f5c2b1e7a11","uniqueName":"platform@contoso.com"},
"properties":{},"id":12,"scope":"0e2b6a8f-7c41-4c0e-8f3a-2d9f4b7c5e10","name":"Linux","isHosted":false,
"poolType":"automation","size":3,"isLegacy":false,"options":"none"}]}`

// clientJobRequest renders one TaskAgentJobRequest as the jobrequests
// endpoint returns it, each id in a run (plan) of its own; the job id is the
// one every single-job pipeline shares. extra is spliced in before the
// closing brace.
func clientJobRequest(id int64, queued time.Time, extra string) string {
	return fmt.Sprintf(`{"requestId":%d,"queueTime":%q,"serviceOwner":"00025394-6065-48ca-87d9-7f5672854ef7",
"hostId":"4a1c6f0e-1b2d-4e3f-8a9b-0c1d2e3f4a5b","scopeId":"7d5e9a10-3c2b-4f6e-9d8c-1a2b3c4d5e6f","planType":"Build",
"planId":"b1f2c3d4-e5f6-4a7b-8c9d-%012d","jobId":"12f1170f-54f2-53f3-20dd-22fc7dff55f9",
"demands":["docker","Agent.Version -gtVersion 3.232.1"],
"definition":{"_links":{"web":{"href":"https://dev.azure.com/contoso/web/build.aspx?pcguid=x&builduri=vstfs%%3a%%2f%%2f%%2fBuild%%2fDefinition%%2f23"},
"self":{"href":"https://dev.azure.com/contoso/_apis/build/Definitions/23"}},"id":23,"name":"api-ci"},
"owner":{"_links":{"web":{"href":"https://dev.azure.com/contoso/web/build.aspx"},"self":{"href":"https://dev.azure.com/contoso/_apis/build/Builds/1871"}},"id":1871,"name":"20240502.3"},
"data":{"ParallelismTag":"Private","IsScheduledKey":"False"},"poolId":12,
"agentSpecification":{"VMImage":""},"orchestrationId":"12f1170f-54f2-53f3-20dd-22fc7dff55f9.build.__default","matchesAllAgentsInPool":true,"priority":0%s}`,
		id, queued.UTC().Format("2006-01-02T15:04:05.999Z"), id, extra)
}

func clientJobRequestsJSON(items ...string) string {
	return fmt.Sprintf(`{"count":%d,"value":[%s]}`, len(items), strings.Join(items, ","))
}

const clientAgentsJSON = `{"count":2,"value":[
{"_links":{"self":{"href":"https://dev.azure.com/contoso/_apis/distributedtask/Pools/12/agents/7"}},
"maxParallelism":1,"createdOn":"2024-04-30T08:00:00.43Z",
"authorization":{"clientId":"0f8fad5b-d9cb-469f-a165-70867728950e","publicKey":{"exponent":"AQAB","modulus":"vRZ0k3m8"}},
"systemCapabilities":{"Agent.Name":"linux-r4711","Agent.OS":"Linux","Agent.Version":"3.236.1"},
"userCapabilities":{"docker":""},
"assignedRequest":{"requestId":4711,"queueTime":"2024-05-02T10:00:03.123Z","assignTime":"2024-05-02T10:00:09.5Z",
"receiveTime":"2024-05-02T10:00:10.0170000Z","lockedUntil":"2024-05-02T10:05:10.017Z","serviceOwner":"00025394-6065-48ca-87d9-7f5672854ef7",
"hostId":"4a1c6f0e-1b2d-4e3f-8a9b-0c1d2e3f4a5b","scopeId":"7d5e9a10-3c2b-4f6e-9d8c-1a2b3c4d5e6f","planType":"Build",
"planId":"b1f2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d","jobId":"12f1170f-54f2-53f3-20dd-22fc7dff55f9","demands":["docker"],
"definition":{"id":23,"name":"api-ci"},"owner":{"id":1871,"name":"20240502.3"},"data":{"ParallelismTag":"Private","IsScheduledKey":"False"},"poolId":12},
"statusChangedOn":"2024-05-02T10:00:01.2Z","id":7,"name":"linux-r4711","version":"3.236.1","osDescription":"Linux 5.15.0-1057-azure #65-Ubuntu SMP",
"enabled":true,"status":"online","provisioningState":"Provisioned","accessPoint":"CodexAccessMapping"},
{"_links":{"self":{"href":"https://dev.azure.com/contoso/_apis/distributedtask/Pools/12/agents/3"}},
"maxParallelism":1,"createdOn":"2024-03-01T12:00:00Z","systemCapabilities":{},"userCapabilities":{"Agent.OS":"Linux","docker":""},
"statusChangedOn":"2024-03-01T12:00:00Z","id":3,"name":"linux-placeholder","version":"3.236.1","osDescription":"",
"enabled":true,"status":"offline","provisioningState":"Provisioned","accessPoint":"CodexAccessMapping"}]}`

const clientResourceUsageJSON = `{"resourceLimit":{"resourceLimitsData":{"FreeCount":"1","PurchasedCount":"4"},
"hostId":"4a1c6f0e-1b2d-4e3f-8a9b-0c1d2e3f4a5b","parallelismTag":"Private","isHosted":false,"totalCount":5,
"totalMinutes":0,"isPremium":false,"failedToReachAllProviders":false},"runningRequests":[],"usedCount":2,"usedMinutes":0}`

// clientErrorJSON is Azure DevOps' error body.
func clientErrorJSON(typeKey, message string) string {
	b, _ := json.Marshal(map[string]any{
		"$id": "1", "innerException": nil, "message": message,
		"typeName": "Microsoft.TeamFoundation.DistributedTask.WebApi." + typeKey + ", Microsoft.TeamFoundation.DistributedTask.WebApi",
		"typeKey":  typeKey, "errorCode": 0, "eventId": 3000,
	})
	return string(b)
}

const clientPAT = "q7w3lzjv4x5ubtn2k6hgc2dqyrm3s5pal4xozv7icnwbhk5f2qoa"

// clientObserved collects Observe and ObserveRateLimit calls, and the
// waits between retries, which it records instead of waiting.
type clientObserved struct {
	mu        sync.Mutex
	calls     []string
	remaining []float64
	waits     []time.Duration
}

func (o *clientObserved) sleep(ctx context.Context, d time.Duration) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waits = append(o.waits, d)
	return ctx.Err()
}

func (o *clientObserved) slept() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Duration(nil), o.waits...)
}

func (o *clientObserved) observe(endpoint string, status int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("%s %d", endpoint, status))
}

func (o *clientObserved) rateLimit(r float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.remaining = append(o.remaining, r)
}

func (o *clientObserved) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.calls...)
}

type clientFixture struct {
	c    *Client
	srv  *httptest.Server
	obs  *clientObserved
	logs *syncbuf.Buffer
}

// clientNew starts handler on a loopback server and returns a client for the
// organization /contoso on it, authorized with clientPAT.
func clientNew(t *testing.T, handler http.Handler, opts Options) clientFixture {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	obs := &clientObserved{}
	logs := &syncbuf.Buffer{}
	opts.Observe = obs.observe
	opts.ObserveRateLimit = obs.rateLimit
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.HTTPClient = srv.Client()
	c, err := NewClient(srv.URL+"/contoso/", PAT(clientPAT), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.retries.Sleep = obs.sleep
	return clientFixture{c: c, srv: srv, obs: obs, logs: logs}
}

// clientJSON answers with a JSON body and status.
func clientJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8; api-version=7.1")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestClientPoolIDCachesPerName(t *testing.T) {
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /contoso/_apis/distributedtask/pools", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		if q.Get("poolName") != "linux" || q.Get("api-version") != "7.1" {
			t.Errorf("query = %v", q)
		}
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+clientPAT))
		if got := r.Header.Get("Authorization"); got != want {
			t.Errorf("Authorization = %q, want %q", got, want)
		}
		if r.Header.Get("X-TFS-FedAuthRedirect") != "Suppress" {
			t.Error("X-TFS-FedAuthRedirect not set")
		}
		w.Header().Set("X-RateLimit-Remaining", "187.5")
		clientJSON(w, 200, clientPoolsJSON)
	})
	f := clientNew(t, mux, Options{})
	for range 2 {
		id, err := f.c.PoolID(t.Context(), "linux")
		if err != nil {
			t.Fatal(err)
		}
		if id != 12 {
			t.Fatalf("id = %d, want 12", id)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("pools called %d times, want 1", n)
	}
	if got := f.obs.snapshot(); len(got) != 1 || got[0] != "pools 200" {
		t.Errorf("observed %v", got)
	}
	if len(f.obs.remaining) != 1 || f.obs.remaining[0] != 187.5 {
		t.Errorf("rate limit remaining observed %v", f.obs.remaining)
	}
}

func TestClientPoolIDMissing(t *testing.T) {
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clientJSON(w, 200, `{"count":0,"value":[]}`)
	}), Options{})
	_, err := f.c.PoolID(t.Context(), "gpu")
	if !errors.Is(err, ErrPoolNotFound) {
		t.Fatalf("err = %v, want ErrPoolNotFound", err)
	}
	var c interface {
		Classification() (bool, time.Duration, string)
	}
	if !errors.As(err, &c) {
		t.Fatalf("err = %v classifies as nothing", err)
	}
	if retryable, _, reason := c.Classification(); retryable || reason != "not_found" {
		t.Errorf("a missing pool classifies as retryable %v, reason %q; want not retryable, not_found", retryable, reason)
	}
	for _, want := range []string{`"gpu"`, "Agent Pools (Read & manage)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestClientJobRequests(t *testing.T) {
	base := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /contoso/_apis/distributedtask/pools/12/jobrequests", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("completedRequestCount") != "0" || q.Get("api-version") != "7.1-preview.1" || q.Has("$top") {
			t.Errorf("query = %v", q)
		}
		clientJSON(w, 200, clientJobRequestsJSON(
			clientJobRequest(4712, base.Add(5*time.Second), ""),
			clientJobRequest(4711, base.Add(3*time.Second), `,"assignTime":"2024-05-02T10:00:09.5Z","receiveTime":"2024-05-02T10:00:10.0170000Z",
"lockedUntil":"2024-05-02T10:05:10.017Z","reservedAgent":{"_links":{},"id":7,"name":"linux-r4711","version":"3.236.1",
"osDescription":"Linux","enabled":true,"status":"online","provisioningState":"Provisioned","accessPoint":"CodexAccessMapping"}`),
			clientJobRequest(4710, base.Add(5*time.Second), ""),
		))
	})
	f := clientNew(t, mux, Options{})
	reqs, err := f.c.JobRequests(t.Context(), 12)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range reqs {
		ids = append(ids, r.RequestID)
	}
	if fmt.Sprint(ids) != "[4711 4710 4712]" {
		t.Fatalf("order = %v, want oldest first, ties by id", ids)
	}
	running, waiting := reqs[0], reqs[1]
	if running.Waiting() || running.ReservedAgent == nil || running.ReservedAgent.Name != "linux-r4711" {
		t.Errorf("running request decoded as %+v", running)
	}
	if !waiting.Waiting() {
		t.Errorf("request %d should be waiting: %+v", waiting.RequestID, waiting)
	}
	if len(waiting.Demands) != 2 || waiting.Demands[1] != "Agent.Version -gtVersion 3.232.1" ||
		waiting.Definition == nil || waiting.Definition.Name != "api-ci" || waiting.Data["ParallelismTag"] != "Private" ||
		!waiting.QueueTime.Equal(base.Add(5*time.Second)) || waiting.PoolID != 12 || !waiting.MatchesAllAgentsInPool {
		t.Errorf("waiting request decoded as %+v", waiting)
	}
	if strings.Contains(f.logs.String(), "level=WARN") {
		t.Errorf("unexpected warning below the cap: %s", f.logs)
	}
}

// TestClientJobRequestsPagesOnlyAtCap: below the cap one call is the whole
// list; at the cap the $top form is asked too, without completedRequestCount,
// and the second page, showing only what the first showed, ends the list
// without a warning.
func TestClientJobRequestsPagesOnlyAtCap(t *testing.T) {
	base := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		n     int
		pages int
	}{{JobRequestsCap - 1, 0}, {JobRequestsCap, 2}} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			items := make([]string, tc.n)
			// Newest first, as a server might order them: the client must
			// still hand the oldest waiting request to the scaler first.
			for i := range items {
				items[i] = clientJobRequest(int64(5000+i), base.Add(-time.Duration(i)*time.Second), "")
			}
			var paged atomic.Int32
			f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				if q.Has("$top") {
					paged.Add(1)
					if q.Has("completedRequestCount") || q.Get("$top") != "200" {
						t.Errorf("paged query = %v", q)
					}
					w.Header().Set("X-Ms-Continuationtoken", "2024-05-02T10:00:00Z|5199|")
				}
				clientJSON(w, 200, clientJobRequestsJSON(items...))
			}), Options{})
			reqs, err := f.c.JobRequests(t.Context(), 12)
			if err != nil {
				t.Fatal(err)
			}
			if len(reqs) != tc.n || reqs[0].RequestID != int64(5000+tc.n-1) {
				t.Fatalf("got %d requests, first %d", len(reqs), reqs[0].RequestID)
			}
			if got := int(paged.Load()); got != tc.pages {
				t.Errorf("%d pages asked, want %d", got, tc.pages)
			}
			if strings.Contains(f.logs.String(), "level=WARN") {
				t.Errorf("unexpected warning: %s", f.logs)
			}
		})
	}
}

// TestClientJobRequestsLongTokenCut: a continuation token beyond the bound
// is never sent back; the list so far is returned and the cut reported.
func TestClientJobRequestsLongTokenCut(t *testing.T) {
	base := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	items := make([]string, JobRequestsCap)
	for i := range items {
		items[i] = clientJobRequest(int64(5000+i), base, "")
	}
	var pages atomic.Int32
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.Query().Has("$top") {
			clientJSON(w, 200, clientJobRequestsJSON(items...))
			return
		}
		n := pages.Add(1)
		w.Header().Set("X-Ms-Continuationtoken", strings.Repeat("7", maxContinuationToken+1))
		clientJSON(w, 200, clientJobRequestsJSON(clientJobRequest(int64(9000+n), base, "")))
	}), Options{})
	var observed []string
	f.c.opts.ObserveJobRequestPages = func(poolID, pages int, truncated bool) {
		observed = append(observed, fmt.Sprint(poolID, pages, truncated))
	}
	reqs, err := f.c.JobRequests(t.Context(), 12)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != JobRequestsCap+1 || pages.Load() != 1 {
		t.Errorf("%d requests after %d pages, want %d after 1", len(reqs), pages.Load(), JobRequestsCap+1)
	}
	if fmt.Sprint(observed) != "[12 1 true]" {
		t.Errorf("observed %v, want pool 12, 1 page, truncated", observed)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "error=") {
		t.Errorf("no warning with an error key: %s", logs)
	}
}

// TestClientJobRequestsDeadlineCuts: when the list's deadline passes while a
// page is read, the requests already seen are served and the cut reported.
func TestClientJobRequestsDeadlineCuts(t *testing.T) {
	base := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	items := make([]string, JobRequestsCap)
	for i := range items {
		items[i] = clientJobRequest(int64(5000+i), base, "")
	}
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("$top") {
			<-r.Context().Done() // a page that never comes
			return
		}
		clientJSON(w, 200, clientJobRequestsJSON(items...))
	}), Options{JobRequestsTimeout: 200 * time.Millisecond})
	var observed []string
	f.c.opts.ObserveJobRequestPages = func(poolID, pages int, truncated bool) {
		observed = append(observed, fmt.Sprint(poolID, pages, truncated))
	}
	reqs, err := f.c.JobRequests(t.Context(), 12)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != JobRequestsCap || fmt.Sprint(observed) != "[12 0 true]" {
		t.Errorf("%d requests, observed %v; want the first %d, 0 pages, truncated", len(reqs), observed, JobRequestsCap)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "out of time reading page 1") {
		t.Errorf("no warning naming the deadline: %s", logs)
	}
}

func TestLatestPerJob(t *testing.T) {
	reqs := []JobRequest{
		{RequestID: 1, PlanID: "p1", JobID: "j"},
		{RequestID: 3, PlanID: "p1", JobID: "j"}, // a retry of request 1
		{RequestID: 2, PlanID: "p2", JobID: "j"}, // same job id, another run
		{RequestID: 4},
		{RequestID: 5},
	}
	var ids []int64
	for _, r := range latestPerJob(reqs) {
		ids = append(ids, r.RequestID)
	}
	if fmt.Sprint(ids) != "[3 2 4 5]" {
		t.Errorf("kept %v, want [3 2 4 5]", ids)
	}
}

func TestClientAgents(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /contoso/_apis/distributedtask/pools/12/agents", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("includeAssignedRequest") != "true" || q.Get("includeCapabilities") != "true" || q.Get("api-version") != "7.1" {
			t.Errorf("query = %v", q)
		}
		clientJSON(w, 200, clientAgentsJSON)
	})
	f := clientNew(t, mux, Options{})
	agents, err := f.c.Agents(t.Context(), 12)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 2 {
		t.Fatalf("got %d agents", len(agents))
	}
	busy, idle := agents[0], agents[1]
	if !busy.Online() || busy.AssignedRequest == nil || busy.AssignedRequest.RequestID != 4711 ||
		busy.SystemCapabilities["Agent.OS"] != "Linux" || busy.MaxParallelism != 1 ||
		busy.Authorization == nil || busy.Authorization.PublicKey.Exponent != "AQAB" {
		t.Errorf("busy agent decoded as %+v", busy)
	}
	if idle.Online() || idle.AssignedRequest != nil || idle.Name != "linux-placeholder" || idle.UserCapabilities["docker"] != "" {
		t.Errorf("offline agent decoded as %+v", idle)
	}
}

func TestClientDeleteAgent(t *testing.T) {
	status := map[string]int{"7": http.StatusNoContent, "8": http.StatusNotFound, "9": http.StatusForbidden}
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /contoso/_apis/distributedtask/pools/12/agents/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("api-version") != "7.1" {
			t.Errorf("query = %v", r.URL.Query())
		}
		s := status[r.PathValue("id")]
		if s == http.StatusNoContent {
			w.WriteHeader(s)
			return
		}
		clientJSON(w, s, clientErrorJSON("TaskAgentNotFoundException", "Agent "+r.PathValue("id")+" does not exist in pool 12."))
	})
	f := clientNew(t, mux, Options{})
	if err := f.c.DeleteAgent(t.Context(), 12, 7); err != nil {
		t.Errorf("delete existing: %v", err)
	}
	if err := f.c.DeleteAgent(t.Context(), 12, 8); err != nil {
		t.Errorf("delete missing: %v", err)
	}
	err := f.c.DeleteAgent(t.Context(), 12, 9)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Endpoint != EndpointAgentDelete || ae.Retryable() {
		t.Errorf("delete forbidden: %v", err)
	}
	if got := strings.Join(f.obs.snapshot(), ","); got != "agent_delete 204,agent_delete 404,agent_delete 403" {
		t.Errorf("observed %s (403 must not be retried)", got)
	}
}

func TestClientAddAgent(t *testing.T) {
	var sent Agent
	mux := http.NewServeMux()
	mux.HandleFunc("POST /contoso/_apis/distributedtask/pools/12/agents", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("api-version") != "7.1" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("query %v, content type %q", r.URL.Query(), r.Header.Get("Content-Type"))
		}
		raw, _ := io.ReadAll(r.Body)
		if strings.Contains(string(raw), "createdOn") {
			t.Errorf("zero createdOn sent: %s", raw)
		}
		if err := json.Unmarshal(raw, &sent); err != nil {
			t.Error(err)
		}
		clientJSON(w, 200, `{"_links":{},"maxParallelism":1,"createdOn":"2024-05-02T11:00:00.1Z","authorization":{"clientId":"1d5c3e2b-0000-4000-8000-000000000001",
"publicKey":{"exponent":"AQAB","modulus":"abc"}},"systemCapabilities":{},"userCapabilities":{"Agent.OS":"Linux"},"id":31,
"name":"linux-placeholder","version":"3.236.1","osDescription":"","enabled":true,"status":"offline","provisioningState":"Provisioned"}`)
	})
	f := clientNew(t, mux, Options{})
	got, err := f.c.AddAgent(t.Context(), 12, Agent{Name: "linux-placeholder", Version: "3.236.1", Enabled: true,
		MaxParallelism: 1, UserCapabilities: map[string]string{"Agent.OS": "Linux"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 31 || got.Name != "linux-placeholder" || got.CreatedOn.IsZero() {
		t.Errorf("added agent = %+v", got)
	}
	if sent.Name != "linux-placeholder" || sent.UserCapabilities["Agent.OS"] != "Linux" || sent.Authorization == nil || sent.Authorization.PublicKey == nil {
		t.Fatalf("sent %+v", sent)
	}
	e, _ := base64.StdEncoding.DecodeString(sent.Authorization.PublicKey.Exponent)
	m, _ := base64.StdEncoding.DecodeString(sent.Authorization.PublicKey.Modulus)
	if !bytes.Equal(e, []byte{1, 0, 1}) || len(m) != 256 {
		t.Errorf("public key: exponent %x, modulus %d bytes; want 010001 and 256", e, len(m))
	}

	// A key the caller supplies is sent as is.
	key := &PublicKey{Exponent: "AQAB", Modulus: "c2VudC1hcy1pcw=="}
	if _, err := f.c.AddAgent(t.Context(), 12, Agent{Name: "linux-placeholder", Authorization: &Authorization{PublicKey: key}}); err != nil {
		t.Fatal(err)
	}
	if *sent.Authorization.PublicKey != *key {
		t.Errorf("sent key %+v, want %+v", sent.Authorization.PublicKey, key)
	}
}

func TestClientAddAgentExisting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"409", http.StatusConflict, clientErrorJSON("TaskAgentExistsException", "An agent named linux-placeholder already exists in pool Linux.")},
		{"400 exists", http.StatusBadRequest, clientErrorJSON("TaskAgentExistsException", "Agent pool 12 already contains an agent with name linux-placeholder.")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("POST /contoso/_apis/distributedtask/pools/12/agents", func(w http.ResponseWriter, r *http.Request) {
				clientJSON(w, tc.status, tc.body)
			})
			mux.HandleFunc("GET /contoso/_apis/distributedtask/pools/12/agents", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("agentName") != "linux-placeholder" {
					t.Errorf("lookup query = %v", r.URL.Query())
				}
				// The filter is the server's; answer with both agents to
				// check the client picks by name.
				clientJSON(w, 200, clientAgentsJSON)
			})
			f := clientNew(t, mux, Options{})
			got, err := f.c.AddAgent(t.Context(), 12, Agent{Name: "linux-placeholder"})
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != 3 || got.Name != "linux-placeholder" {
				t.Errorf("got %+v, want the existing agent 3", got)
			}
		})
	}

	t.Run("other 400", func(t *testing.T) {
		f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			clientJSON(w, 400, clientErrorJSON("ArgumentException", "The agent version is not valid."))
		}), Options{})
		_, err := f.c.AddAgent(t.Context(), 12, Agent{Name: "linux-placeholder"})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Message != "The agent version is not valid." {
			t.Errorf("err = %v", err)
		}
	})
}

func TestClientResourceUsage(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /contoso/_apis/distributedtask/resourceusage", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("parallelismTag") != "Private" || q.Get("poolIsHosted") != "false" ||
			q.Get("includeRunningRequests") != "false" || q.Get("api-version") != "7.1-preview.2" {
			t.Errorf("query = %v", q)
		}
		clientJSON(w, 200, clientResourceUsageJSON)
	})
	f := clientNew(t, mux, Options{})
	u, err := f.c.ResourceUsage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.ResourceLimit.TotalCount != 5 || u.UsedCount != 2 || u.Free() != 3 || u.ResourceLimit.ParallelismTag != "Private" {
		t.Errorf("usage = %+v", u)
	}
}

// clientThrottleThenServe answers the first request with status and headers,
// then with the pools list.
func clientThrottleThenServe(status int, headers map[string]string, calls *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			for k, v := range headers {
				w.Header().Set(k, v)
			}
			clientJSON(w, status, clientErrorJSON("VssServiceException", "Request was blocked due to exceeding usage of resource 'Global' in namespace 'User'."))
			return
		}
		clientJSON(w, 200, clientPoolsJSON)
	})
}

func TestClientRetryAfterHonoured(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, clientThrottleThenServe(429, map[string]string{"Retry-After": "1", "X-RateLimit-Remaining": "0"}, &calls), Options{})
	id, err := f.c.PoolID(t.Context(), "linux")
	if err != nil {
		t.Fatal(err)
	}
	if id != 12 || calls.Load() != 2 {
		t.Errorf("id %d after %d calls, want 12 after 2", id, calls.Load())
	}
	if got := strings.Join(f.obs.snapshot(), ","); got != "pools 429,pools 200" {
		t.Errorf("observed %s", got)
	}
	if got := f.obs.slept(); !slices.Equal(got, []time.Duration{time.Second}) {
		t.Errorf("waited %v before the retry, want the Retry-After hint of 1s", got)
	}
	if !strings.Contains(f.logs.String(), "wait=1s") {
		t.Errorf("retry did not log the Retry-After hint: %s", f.logs)
	}
}

func TestClientRateLimitDelayHonoured(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, clientThrottleThenServe(503, map[string]string{"X-RateLimit-Delay": "0.05", "X-RateLimit-Remaining": "3.25"}, &calls), Options{})
	id, err := f.c.PoolID(t.Context(), "linux")
	if err != nil {
		t.Fatal(err)
	}
	if id != 12 || calls.Load() != 2 {
		t.Errorf("id %d after %d calls, want 12 after 2", id, calls.Load())
	}
	if got := f.obs.slept(); !slices.Equal(got, []time.Duration{50 * time.Millisecond}) {
		t.Errorf("waited %v before the retry, want the X-RateLimit-Delay hint of 50ms", got)
	}
	if len(f.obs.remaining) != 1 || f.obs.remaining[0] != 3.25 {
		t.Errorf("rate limit remaining observed %v", f.obs.remaining)
	}
	// Delayed once: the passes slow down for the rate-limit window.
	if got := f.c.Pace(); got != maxPace {
		t.Errorf("pace after a delayed request %s, want %s", got, maxPace)
	}
}

func TestClientPacesAsTheBudgetRunsLow(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, clientThrottleThenServe(503, map[string]string{"X-RateLimit-Remaining": "10", "X-RateLimit-Limit": "200"}, &calls), Options{})
	if got := f.c.Pace(); got != 0 {
		t.Errorf("pace before any answer %s, want 0", got)
	}
	if _, err := f.c.PoolID(t.Context(), "linux"); err != nil {
		t.Fatal(err)
	}
	// 10 of 200 left is a fifth of the quarter below which passes slow.
	if got, want := f.c.Pace(), maxPace*4/5; got != want {
		t.Errorf("pace with 10 of 200 left %s, want %s", got, want)
	}
}

func TestClientRetryAfterBeyondDeadline(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, clientThrottleThenServe(429, map[string]string{"Retry-After": "120"}, &calls), Options{CallTimeout: 5 * time.Second})
	_, err := f.c.PoolID(t.Context(), "linux")
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if ae.Status != 429 || ae.RetryAfter != 120*time.Second || !ae.Retryable() || calls.Load() != 1 {
		t.Errorf("err = %+v after %d calls; want 429 with RetryAfter 2m0s and no retry", ae, calls.Load())
	}
	if !strings.Contains(err.Error(), "retry after 2m0s") {
		t.Errorf("error text %q lacks the hint", err)
	}
}

func TestClientRetriesExhausted(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		clientJSON(w, 500, clientErrorJSON("SqlException", "A transient database error occurred."))
	}), Options{MaxRetries: 2})
	_, err := f.c.Agents(t.Context(), 12)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 500 || ae.Endpoint != EndpointAgents {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls, want 3 (1 + MaxRetries)", calls.Load())
	}
}

func TestClientNoRetryOnNegativeMaxRetries(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(502)
	}), Options{MaxRetries: -1})
	if _, err := f.c.Agents(t.Context(), 12); err == nil || calls.Load() != 1 {
		t.Errorf("err %v after %d calls, want an error after 1", err, calls.Load())
	}
}

func TestClientNetworkErrorRetried(t *testing.T) {
	// A listener that is closed refuses connections: every attempt fails
	// before any answer and is observed with status 0.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	obs := &clientObserved{}
	c, err := NewClient(srv.URL, PAT(clientPAT), Options{Observe: obs.observe, MaxRetries: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c.retries.Sleep = obs.sleep
	_, err = c.ResourceUsage(t.Context())
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	if got := strings.Join(obs.snapshot(), ","); got != "resourceusage 0,resourceusage 0,resourceusage 0" {
		t.Errorf("observed %s", got)
	}
	if got := len(obs.slept()); got != 2 {
		t.Errorf("%d waits, want one before each of the 2 retries", got)
	}
	if strings.Contains(err.Error(), clientPAT) {
		t.Errorf("token in error: %v", err)
	}
}

func TestClientDeadline(t *testing.T) {
	release := make(chan struct{})
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}), Options{JobRequestsTimeout: 50 * time.Millisecond})
	defer close(release)
	_, err := f.c.JobRequests(t.Context(), 12)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	for _, want := range []string{"jobrequests", "gave up waiting"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestClientUnauthorizedNamesScope(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"401", 401, clientErrorJSON("UnauthorizedRequestException", "TF400813: The user 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee' is not authorized to access this resource.")},
		{"403", 403, clientErrorJSON("AccessCheckException", "Access denied. Platform Team needs Manage permissions for the Agent Pool Linux to perform the action.")},
		{"203 sign-in page", 203, `<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head><body></body></html>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				clientJSON(w, tc.status, tc.body)
			}), Options{})
			_, err := f.c.Agents(t.Context(), 12)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Retryable() {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(err.Error(), `"Agent Pools (Read & manage)"`) {
				t.Errorf("error %q does not name the scope", err)
			}
			if calls.Load() != 1 {
				t.Errorf("%d calls; an auth failure must not be retried", calls.Load())
			}
		})
	}
}

func TestClientTokenNeverInErrorOrLog(t *testing.T) {
	// A server that echoes the Authorization header (and the decoded secret)
	// in its error message: the error and the logs must still not carry it.
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authz := r.Header.Get("Authorization")
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(authz, "Basic "))
		status := 401
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/agents") {
			status = 500 // retried, so it is logged too
		}
		clientJSON(w, status, clientErrorJSON("UnauthorizedRequestException", "bad credentials "+authz+" decoded "+string(raw)))
	}), Options{MaxRetries: 1})
	var errs []error
	_, err := f.c.PoolID(t.Context(), "linux")
	errs = append(errs, err)
	_, err = f.c.Agents(t.Context(), 12)
	errs = append(errs, err)
	_, err = f.c.AddAgent(t.Context(), 12, Agent{Name: "x"})
	errs = append(errs, err)
	b64 := base64.StdEncoding.EncodeToString([]byte(":" + clientPAT))
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		for _, secret := range []string{clientPAT, b64} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("secret in error: %v", err)
			}
			if strings.Contains(f.logs.String(), secret) {
				t.Errorf("secret in logs: %s", f.logs)
			}
		}
		if !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("error %q: the echoed credentials were not replaced", err)
		}
	}
}

func TestClientUndecodableAnswerNotRetried(t *testing.T) {
	var calls atomic.Int32
	f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		clientJSON(w, 200, `{"count":1,"value":[{"id":"twelve"}]}`)
	}), Options{})
	_, err := f.c.PoolID(t.Context(), "linux")
	if err == nil || !strings.Contains(err.Error(), "decode") || calls.Load() != 1 {
		t.Errorf("err %v after %d calls", err, calls.Load())
	}
}

func TestNewClientValidatesURL(t *testing.T) {
	for _, bad := range []string{"", "dev.azure.com/contoso", "ftp://dev.azure.com/contoso", "https://", "https://user:pw@dev.azure.com/contoso",
		"https://dev.azure.com/contoso?x=1", "https://dev.azure.com/contoso#frag", "https://dev.azure.com/%zz"} {
		if _, err := NewClient(bad, PAT("x"), Options{}); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("NewClient(%q) error leaks the password: %v", bad, err)
		}
	}
	if _, err := NewClient("https://dev.azure.com/contoso", nil, Options{}); err == nil {
		t.Error("nil Authorizer accepted")
	}
	c, err := NewClient("https://tfs.example.com/DefaultCollection/", PAT("x"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.org.String() != "https://tfs.example.com/DefaultCollection" {
		t.Errorf("org = %s", c.org)
	}
}

func TestRetryHint(t *testing.T) {
	now := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		headers map[string]string
		want    time.Duration
	}{
		{nil, 0},
		{map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{map[string]string{"X-RateLimit-Delay": "0.125"}, 125 * time.Millisecond},
		{map[string]string{"Retry-After": "2", "X-RateLimit-Delay": "3.5"}, 3500 * time.Millisecond},
		{map[string]string{"Retry-After": "soon", "X-RateLimit-Delay": "-1"}, 0},
	} {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		if got := retryHint(h, now); got != tc.want {
			t.Errorf("retryHint(%v) = %s, want %s", tc.headers, got, tc.want)
		}
	}
}

func BenchmarkClientJobRequestsDecode(b *testing.B) {
	base := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	items := make([]string, JobRequestsCap)
	for i := range items {
		items[i] = clientJobRequest(int64(i), base.Add(time.Duration(i)*time.Second), "")
	}
	body := clientJobRequestsJSON(items...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { clientJSON(w, 200, body) }))
	defer srv.Close()
	c, err := NewClient(srv.URL, PAT(clientPAT), Options{HTTPClient: srv.Client(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.JobRequests(context.Background(), 1); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClientErrorsClassified: every failure of a call describes itself the
// way the scaler classifies failed actions (providers.Classify honours
// this method, so a failed unregister reports why): retryable or not, the
// server's hint, and a reason.
func TestClientErrorsClassified(t *testing.T) {
	for _, tc := range []struct {
		status    int
		header    map[string]string
		retryable bool
		after     time.Duration
		reason    string
	}{
		{429, map[string]string{"Retry-After": "2"}, true, 2 * time.Second, "throttled"},
		{401, nil, false, 0, "auth"},
		{403, nil, false, 0, "auth"},
		{203, nil, false, 0, "auth"},
		{503, map[string]string{"Retry-After": "3"}, true, 3 * time.Second, "server_error"},
		{500, nil, true, 0, "server_error"},
		{408, nil, true, 0, "timeout"},
		{404, nil, false, 0, "not_found"},
		{409, nil, false, 0, "conflict"},
		{400, nil, false, 0, "bad_request"},
		{422, nil, false, 0, "api_error"},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			f := clientNew(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				clientJSON(w, tc.status, clientErrorJSON("VssServiceException", "refused"))
			}), Options{MaxRetries: -1})
			_, err := f.c.Agents(t.Context(), 12)
			var c interface {
				Classification() (bool, time.Duration, string)
			}
			if !errors.As(fmt.Errorf("pool linux: agents: %w", err), &c) {
				t.Fatalf("error %v (%T) does not classify itself", err, err)
			}
			retryable, after, reason := c.Classification()
			if retryable != tc.retryable || after != tc.after || reason != tc.reason {
				t.Errorf("HTTP %d classified %v/%s/%q; want %v/%s/%q", tc.status, retryable, after, reason, tc.retryable, tc.after, tc.reason)
			}
		})
	}
}

// TestClientNetworkErrorClassified: a call that found no server is a
// retryable network failure.
func TestClientNetworkErrorClassified(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c, err := NewClient(srv.URL, PAT(clientPAT), Options{MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Agents(t.Context(), 12)
	var cl interface {
		Classification() (bool, time.Duration, string)
	}
	if !errors.As(err, &cl) {
		t.Fatalf("error %v (%T) does not classify itself", err, err)
	}
	if retryable, after, reason := cl.Classification(); !retryable || after != 0 || reason != "network" {
		t.Errorf("classified %v/%s/%q; want retryable network", retryable, after, reason)
	}
}
