package azuredevops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/fakeclock"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

const (
	hookUser     = "azdo"
	hookPassword = "s3cret-Hook-Passw0rd"
	hookKeyName  = "X-Agentscaler-Key"
	hookKey      = "k3y-0f-the-h00k-7f1c"
)

func hookFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "hooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseEventFixtures(t *testing.T) {
	common := Event{
		PipelineID:   12,
		PipelineName: "agent-smoke",
		RunID:        4217,
		OrgURL:       "https://dev.azure.com/contoso",
		ProjectID:    "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c",
	}
	job := func(id string, notification int, created, state, result string) Event {
		e := common
		e.ID, e.Type, e.NotificationID = id, EventJobStateChanged, notification
		e.CreatedDate = hookTime(t, created)
		e.State, e.Result = state, result
		e.JobID, e.JobName = "5a3b2c1d-0e9f-5a8b-7c6d-5e4f3a2b1c0d", "Build"
		return e
	}
	run := common
	run.ID, run.Type, run.NotificationID = "6e5f4a3b-2c1d-4e0f-9a8b-7c6d5e4f3a2b", EventRunStateChanged, 4814
	run.CreatedDate = hookTime(t, "2025-03-14T09:44:04.2715530Z")
	run.State, run.Result = "completed", "succeeded"

	tests := map[string]Event{
		"job_waiting.json":    job("2b9e7c51-8d3f-4a6e-b1c0-7f5d4e3a2c19", 4811, "2025-03-14T09:42:12.0314567Z", "waiting", ""),
		"job_inprogress.json": job("8c1d6e2f-4a5b-4c7d-9e0f-1a2b3c4d5e6f", 4812, "2025-03-14T09:42:15.6401234Z", "inProgress", ""),
		"job_completed.json":  job("d47a0f93-2e6b-4c1d-8a5f-3b9c0e7d6a21", 4813, "2025-03-14T09:44:03.1129876Z", "completed", "succeeded"),
		"run_completed.json":  run,
		"git_push.json":       {ID: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", Type: "git.push"},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseEvent(hookFixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("ParseEvent =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func hookTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestParseEventStrictAndTolerant(t *testing.T) {
	bad := map[string]string{
		"not json":           `{"id": "x", "eventType": `,
		"no id":              `{"eventType": "ms.vss-pipelines.job-state-changed-event"}`,
		"no eventType":       `{"id": "1f0c"}`,
		"empty object":       `{}`,
		"id not a string":    `{"id": 7, "eventType": "git.push"}`,
		"job state mistyped": `{"id": "1f0c", "eventType": "ms.vss-pipelines.job-state-changed-event", "resource": {"job": {"state": 3}}}`,
		"array":              `[]`,
	}
	for name, body := range bad {
		if e, err := ParseEvent([]byte(body)); err == nil {
			t.Errorf("%s: ParseEvent(%s) = %+v, want an error", name, body, e)
		}
	}

	// An unrelated event with a resource shaped nothing like ours still parses.
	e, err := ParseEvent([]byte(`{"id": "9d", "eventType": "ms.vss-pipelinechecks-events.approval-pending",
		"resource": {"job": "not an object", "run": null, "id": 0}, "createdDate": "not a date"}`))
	if err != nil || e != (Event{ID: "9d", Type: "ms.vss-pipelinechecks-events.approval-pending"}) {
		t.Errorf("unrelated event = %+v, %v", e, err)
	}

	// Extra fields and a missing account fall back to the collection URL and resource.projectId.
	e, err = ParseEvent([]byte(`{"id": "2", "eventType": "ms.vss-pipelines.job-state-changed-event", "newField": {"x": [1]},
		"resource": {"job": {"state": "waiting", "extra": true}, "projectId": "p1"},
		"resourceContainers": {"collection": {"id": "c", "baseUrl": "https://dev.azure.com/fabrikam//"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.State != "waiting" || e.OrgURL != "https://dev.azure.com/fabrikam" || e.ProjectID != "p1" {
		t.Errorf("tolerant parse = %+v", e)
	}
}

// hookRecorder is an Accept and Observe pair that records what the handler
// hands over, standing in for the scaler's enqueue and the metrics counter.
type hookRecorder struct {
	mu       sync.Mutex
	accepted []Event
	observed []string
	fail     error
	noDL     bool // Accept saw a context without a deadline
}

func (rec *hookRecorder) accept(ctx context.Context, e Event) error {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		rec.noDL = true
	}
	if rec.fail != nil {
		return rec.fail
	}
	rec.accepted = append(rec.accepted, e)
	return nil
}

func (rec *hookRecorder) observe(event, outcome string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.observed = append(rec.observed, event+"/"+outcome)
}

func (rec *hookRecorder) snapshot() ([]Event, []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Event(nil), rec.accepted...), append([]string(nil), rec.observed...)
}

type hookEnv struct {
	url   string
	rec   *hookRecorder
	logs  *syncbuf.Buffer
	clock *fakeclock.Clock
}

func hookServer(t *testing.T, auth Authenticator) *hookEnv {
	t.Helper()
	env := &hookEnv{rec: &hookRecorder{}, logs: &syncbuf.Buffer{}, clock: fakeclock.New(time.Date(2025, 3, 14, 9, 42, 12, 0, time.UTC))}
	h := &HookHandler{
		Auth:    auth,
		Dedup:   NewDedup(100, time.Hour),
		Accept:  env.rec.accept,
		Observe: env.rec.observe,
		Logger:  slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     env.clock.Now,
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	env.url = srv.URL + "/api/webhook/azuredevops"
	return env
}

// hookPost sends body as Azure DevOps does; setAuth adds the credentials.
func hookPost(t *testing.T, url string, body []byte, setAuth func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if setAuth != nil {
		setAuth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func hookBasic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

func TestHookHandlerStatuses(t *testing.T) {
	env := hookServer(t, BasicAuth(hookUser, hookPassword))
	good := hookBasic(hookUser, hookPassword)
	waiting := hookFixture(t, "job_waiting.json")

	// Non-POST.
	resp, err := http.Get(env.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// Bad credentials.
	resp, _ = hookPost(t, env.url, waiting, hookBasic(hookUser, "wrong"))
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="agentscaler"` {
		t.Errorf("wrong password: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// Broken JSON: the reason is in the body.
	resp, body := hookPost(t, env.url, []byte(`{"id": "1", "eventType": `), good)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "unexpected end of JSON input") {
		t.Errorf("broken JSON: %d %q", resp.StatusCode, body)
	}
	resp, body = hookPost(t, env.url, []byte(`{"eventType": "ms.vss-pipelines.job-state-changed-event"}`), good)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "no id") {
		t.Errorf("no id: %d %q", resp.StatusCode, body)
	}

	// Unrelated event type, with a raw type nobody should see as a label.
	resp, _ = hookPost(t, env.url, hookFixture(t, "git_push.json"), good)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("git.push: %d, want 202", resp.StatusCode)
	}
	resp, _ = hookPost(t, env.url, []byte(`{"id": "e1", "eventType": "user-controlled.{label}"}`), good)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("odd type: %d, want 202", resp.StatusCode)
	}

	// A waiting job is accepted, then its redelivery is a duplicate.
	resp, _ = hookPost(t, env.url, waiting, good)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("waiting job: %d, want 200", resp.StatusCode)
	}
	resp, body = hookPost(t, env.url, waiting, good)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "already") {
		t.Errorf("redelivery: %d %q", resp.StatusCode, body)
	}

	// A run event is accepted too.
	resp, _ = hookPost(t, env.url, hookFixture(t, "run_completed.json"), good)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("run completed: %d, want 200", resp.StatusCode)
	}

	accepted, observed := env.rec.snapshot()
	if len(accepted) != 2 || accepted[0].State != "waiting" || accepted[0].JobName != "Build" ||
		accepted[1].Type != EventRunStateChanged || accepted[1].State != "completed" {
		t.Errorf("accepted = %+v", accepted)
	}
	want := []string{
		"other/method_not_allowed",
		"other/unauthorized",
		"other/bad_request",
		"other/bad_request",
		"other/ignored",
		"other/ignored",
		"job_state_changed/accepted",
		"job_state_changed/duplicate",
		"run_state_changed/accepted",
	}
	if strings.Join(observed, " ") != strings.Join(want, " ") {
		t.Errorf("observed\n%v\nwant\n%v", observed, want)
	}
	if env.rec.noDL {
		t.Error("Accept got a context without a deadline")
	}
}

// TestHookHandlerOrganization: a hook from the organization served is taken
// whichever URL form either side uses; one from another organization is
// answered 202 with the reason, counted, and never accepted.
func TestHookHandlerOrganization(t *testing.T) {
	rec := &hookRecorder{}
	h := &HookHandler{
		Auth:         BasicAuth(hookUser, hookPassword),
		Organization: "https://contoso.visualstudio.com",
		Accept:       rec.accept,
		Observe:      rec.observe,
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	good := hookBasic(hookUser, hookPassword)
	waiting := hookFixture(t, "job_waiting.json") // resourceContainers: https://dev.azure.com/contoso/

	resp, body := hookPost(t, srv.URL, waiting, good)
	if resp.StatusCode != http.StatusOK || body != "accepted\n" {
		t.Errorf("same organization, other URL form: %d %q, want 200 accepted", resp.StatusCode, body)
	}
	other := bytes.ReplaceAll(waiting, []byte("https://dev.azure.com/contoso/"), []byte("https://dev.azure.com/fabrikam/"))
	resp, body = hookPost(t, srv.URL, other, good)
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(body, "another organization") {
		t.Errorf("another organization: %d %q, want 202 with the reason", resp.StatusCode, body)
	}
	server := bytes.ReplaceAll(waiting, []byte("https://dev.azure.com/contoso/"), []byte("https://server/tfs/DefaultCollection/"))
	resp, _ = hookPost(t, srv.URL, server, good)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("a server collection: %d, want 202", resp.StatusCode)
	}

	accepted, observed := rec.snapshot()
	if len(accepted) != 1 || accepted[0].OrgURL != "https://dev.azure.com/contoso" {
		t.Errorf("accepted %+v, want only the hook from contoso", accepted)
	}
	want := "job_state_changed/accepted job_state_changed/other_organization job_state_changed/other_organization"
	if got := strings.Join(observed, " "); got != want {
		t.Errorf("observed %s, want %s", got, want)
	}
}

func TestHookHandlerAcceptFailureIsRetried(t *testing.T) {
	env := hookServer(t, BasicAuth(hookUser, hookPassword))
	good := hookBasic(hookUser, hookPassword)
	completed := hookFixture(t, "job_completed.json")

	env.rec.mu.Lock()
	env.rec.fail = errors.New("reconcile queue full")
	env.rec.mu.Unlock()
	resp, _ := hookPost(t, env.url, completed, good)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("failing Accept: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Azure DevOps retries the same id: it must reach Accept, not be called a duplicate.
	env.rec.mu.Lock()
	env.rec.fail = nil
	env.rec.mu.Unlock()
	resp, _ = hookPost(t, env.url, completed, good)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("retry: %d, want 200", resp.StatusCode)
	}
	accepted, observed := env.rec.snapshot()
	if len(accepted) != 1 || accepted[0].ID != "d47a0f93-2e6b-4c1d-8a5f-3b9c0e7d6a21" || accepted[0].Result != "succeeded" {
		t.Errorf("accepted = %+v", accepted)
	}
	if strings.Join(observed, " ") != "job_state_changed/error job_state_changed/accepted" {
		t.Errorf("observed = %v", observed)
	}
	if !strings.Contains(env.logs.String(), "reconcile queue full") {
		t.Errorf("Accept error not logged:\n%s", env.logs)
	}
}

func TestHookHandlerBodyLimit(t *testing.T) {
	env := hookServer(t, BasicAuth(hookUser, hookPassword))
	good := hookBasic(hookUser, hookPassword)
	fixture := bytes.TrimSpace(hookFixture(t, "job_inprogress.json"))

	// Valid JSON padded with trailing whitespace to an exact size.
	padded := func(size int) []byte {
		b := make([]byte, size)
		copy(b, fixture)
		for i := len(fixture); i < size; i++ {
			b[i] = ' '
		}
		return b
	}
	resp, body := hookPost(t, env.url, padded(1<<20), good)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("exactly 1 MiB: %d %q, want 200", resp.StatusCode, body)
	}
	resp, body = hookPost(t, env.url, padded(1<<20+1), good)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB + 1: %d %q, want 413", resp.StatusCode, body)
	}
	_, observed := env.rec.snapshot()
	if strings.Join(observed, " ") != "job_state_changed/accepted other/too_large" {
		t.Errorf("observed = %v", observed)
	}
}

func TestHookHandlerNilAuthRejects(t *testing.T) {
	env := hookServer(t, nil)
	resp, _ := hookPost(t, env.url, hookFixture(t, "job_waiting.json"), hookBasic(hookUser, hookPassword))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("nil Auth: %d, want 401", resp.StatusCode)
	}
	if accepted, _ := env.rec.snapshot(); len(accepted) != 0 {
		t.Errorf("accepted without auth: %+v", accepted)
	}
}

func TestBasicAuth(t *testing.T) {
	auth := BasicAuth(hookUser, hookPassword)
	tests := []struct {
		name string
		set  func(*http.Request)
		want bool
	}{
		{"right", hookBasic(hookUser, hookPassword), true},
		{"wrong user", hookBasic("admin", hookPassword), false},
		{"user case differs", hookBasic("AZDO", hookPassword), false},
		{"wrong password", hookBasic(hookUser, hookPassword+"x"), false},
		{"password prefix", hookBasic(hookUser, hookPassword[:5]), false},
		{"empty password", hookBasic(hookUser, ""), false},
		{"missing header", func(*http.Request) {}, false},
		{"bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+hookPassword) }, false},
		{"garbled basic", func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/api/webhook/azuredevops", nil)
		tt.set(r)
		if got := auth(r); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}

	// A blank configured password never opens the endpoint.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.SetBasicAuth(hookUser, "")
	if BasicAuth(hookUser, "")(r) {
		t.Error("BasicAuth with an empty password accepted a request")
	}
}

func TestHeaderAuth(t *testing.T) {
	auth := HeaderAuth(hookKeyName, hookKey)
	tests := []struct {
		name string
		set  func(*http.Request)
		want bool
	}{
		{"right", func(r *http.Request) { r.Header.Set(hookKeyName, hookKey) }, true},
		{"name in other case", func(r *http.Request) { r.Header.Set("x-agentscaler-key", hookKey) }, true},
		{"wrong value", func(r *http.Request) { r.Header.Set(hookKeyName, "k3y") }, false},
		{"value in other case", func(r *http.Request) { r.Header.Set(hookKeyName, strings.ToUpper(hookKey)) }, false},
		{"other header", func(r *http.Request) { r.Header.Set("X-Other", hookKey) }, false},
		{"missing header", func(*http.Request) {}, false},
		{"as basic password", hookBasic(hookUser, hookKey), false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/api/webhook/azuredevops", nil)
		tt.set(r)
		if got := auth(r); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if HeaderAuth(hookKeyName, "")(httptest.NewRequest(http.MethodPost, "/", nil)) {
		t.Error("HeaderAuth with an empty value accepted a request without the header")
	}
}

func TestHookHandlerHeaderAuth(t *testing.T) {
	env := hookServer(t, HeaderAuth(hookKeyName, hookKey))
	withKey := func(r *http.Request) { r.Header.Set(hookKeyName, hookKey) }
	resp, _ := hookPost(t, env.url, hookFixture(t, "job_waiting.json"), withKey)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("right key: %d, want 200", resp.StatusCode)
	}
	resp, _ = hookPost(t, env.url, hookFixture(t, "job_completed.json"), func(r *http.Request) { r.Header.Set(hookKeyName, "nope") })
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %d, want 401", resp.StatusCode)
	}
}

func TestHookHandlerLogsNoCredentials(t *testing.T) {
	for name, tc := range map[string]struct {
		auth   Authenticator
		good   func(*http.Request)
		bad    func(*http.Request)
		secret string
	}{
		"basic": {BasicAuth(hookUser, hookPassword), hookBasic(hookUser, hookPassword), hookBasic(hookUser, hookPassword+"-typo"), hookPassword},
		"header": {HeaderAuth(hookKeyName, hookKey),
			func(r *http.Request) { r.Header.Set(hookKeyName, hookKey) },
			func(r *http.Request) { r.Header.Set(hookKeyName, hookKey+"-typo") }, hookKey},
	} {
		t.Run(name, func(t *testing.T) {
			env := hookServer(t, tc.auth)
			hookPost(t, env.url, hookFixture(t, "job_waiting.json"), tc.good)
			hookPost(t, env.url, hookFixture(t, "job_waiting.json"), tc.good)
			hookPost(t, env.url, hookFixture(t, "job_completed.json"), tc.bad)
			hookPost(t, env.url, []byte(`{"id":`), tc.good)
			env.rec.mu.Lock()
			env.rec.fail = errors.New("queue closed")
			env.rec.mu.Unlock()
			hookPost(t, env.url, hookFixture(t, "job_completed.json"), tc.good)

			logs := env.logs.String()
			// The log must have recorded the hooks, or the check below proves nothing.
			for _, want := range []string{"id=2b9e7c51-8d3f-4a6e-b1c0-7f5d4e3a2c19", "state=waiting", "outcome=accepted",
				"outcome=duplicate", "outcome=unauthorized", "outcome=bad_request", "outcome=error"} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %q:\n%s", want, logs)
				}
			}
			for _, secret := range []string{tc.secret, "Authorization", "Basic ", hookKeyName} {
				if strings.Contains(logs, secret) {
					t.Errorf("log contains %q:\n%s", secret, logs)
				}
			}
		})
	}
}

func TestDedup(t *testing.T) {
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

	t.Run("repeat", func(t *testing.T) {
		d := NewDedup(10, time.Minute)
		if d.Seen("a", t0) {
			t.Fatal("unseen id reported as seen")
		}
		if d.Seen("a", t0) {
			t.Fatal("Seen recorded the id")
		}
		d.Remember("a", t0)
		if !d.Seen("a", t0.Add(time.Second)) {
			t.Fatal("remembered id not seen")
		}
		if d.Seen("b", t0) {
			t.Fatal("other id seen")
		}
	})

	t.Run("ttl", func(t *testing.T) {
		d := NewDedup(10, time.Minute)
		d.Remember("a", t0)
		if !d.Seen("a", t0.Add(time.Minute-time.Nanosecond)) {
			t.Error("forgotten before the ttl")
		}
		if d.Seen("a", t0.Add(time.Minute)) {
			t.Error("still seen at the ttl")
		}
		// Remembering again restarts the clock.
		d.Remember("a", t0.Add(2*time.Minute))
		if !d.Seen("a", t0.Add(2*time.Minute+30*time.Second)) {
			t.Error("re-remembered id not seen")
		}
		// Expired ids are dropped when something new is remembered.
		d.Remember("b", t0.Add(10*time.Minute))
		if d.order.Len() != 1 || len(d.byID) != 1 {
			t.Errorf("expired ids kept: %d in list, %d in map", d.order.Len(), len(d.byID))
		}
	})

	t.Run("lru bound", func(t *testing.T) {
		d := NewDedup(2, time.Hour)
		d.Remember("a", t0)
		d.Remember("b", t0.Add(time.Second))
		d.Remember("a", t0.Add(2*time.Second)) // a is now the most recent
		d.Remember("c", t0.Add(3*time.Second)) // evicts b
		now := t0.Add(4 * time.Second)
		if !d.Seen("a", now) || d.Seen("b", now) || !d.Seen("c", now) {
			t.Errorf("after a,b,a,c with size 2: a=%v b=%v c=%v, want true false true",
				d.Seen("a", now), d.Seen("b", now), d.Seen("c", now))
		}
		if d.order.Len() != 2 || len(d.byID) != 2 {
			t.Errorf("size bound broken: %d in list, %d in map", d.order.Len(), len(d.byID))
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		d := NewDedup(50, time.Hour)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					id := fmt.Sprintf("%d-%d", g, i)
					d.Remember(id, t0)
					d.Seen(id, t0)
				}
			})
		}
		wg.Wait()
		if d.order.Len() != 50 || len(d.byID) != 50 {
			t.Errorf("after concurrent use: %d in list, %d in map, want 50", d.order.Len(), len(d.byID))
		}
	})
}

// TestDedupMemoryIsBoundedBySize: ids of a megabyte each cost what a GUID
// costs, so what the caller posts cannot grow the process.
func TestDedupMemoryIsBoundedBySize(t *testing.T) {
	const ids, idLen = 64, 1 << 20
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	d := NewDedup(10000, time.Hour)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range ids {
		id := fmt.Sprintf("%04d", i) + strings.Repeat("x", idLen-4)
		d.Remember(id, t0)
	}
	if !d.Seen(fmt.Sprintf("%04d", 7)+strings.Repeat("x", idLen-4), t0) {
		t.Fatal("a remembered long id is not seen")
	}
	grown := int64(heap()) - int64(before)
	if limit := int64(4 << 20); grown > limit { // a sixteenth of the ids' size; noise from the runtime stays far below
		t.Errorf("%d ids of %d bytes grew the heap by %d bytes, want at most %d: the ids themselves are kept", ids, idLen, grown, limit)
	}
	runtime.KeepAlive(d)
}

// TestHookHandlerBoundsUntrustedText: an over-long id is refused, and hook
// text that reaches a log line or an answer is cut short.
func TestHookHandlerBoundsUntrustedText(t *testing.T) {
	env := hookServer(t, BasicAuth(hookUser, hookPassword))
	good := hookBasic(hookUser, hookPassword)
	long := strings.Repeat("A", 64<<10)

	resp, body := hookPost(t, env.url, []byte(`{"id":"`+long+`","eventType":"`+EventJobStateChanged+`"}`), good)
	if resp.StatusCode != http.StatusBadRequest || len(body) > 512 {
		t.Errorf("a 64 KiB id: %d with a %d-byte answer, want 400 and a short answer", resp.StatusCode, len(body))
	}
	resp, body = hookPost(t, env.url, []byte(`{"eventType":"`+long+`"}`), good)
	if resp.StatusCode != http.StatusBadRequest || len(body) > 512 {
		t.Errorf("a 64 KiB eventType without id: %d with a %d-byte answer", resp.StatusCode, len(body))
	}
	// A real id with a huge state and organization: taken, logged short.
	waiting := bytes.Replace(hookFixture(t, "job_waiting.json"), []byte(`"state": "waiting"`), []byte(`"state": "`+long+`"`), 1)
	waiting = bytes.ReplaceAll(waiting, []byte("https://dev.azure.com/contoso/"), []byte("https://dev.azure.com/"+long+"/"))
	if resp, _ = hookPost(t, env.url, waiting, good); resp.StatusCode != http.StatusOK {
		t.Errorf("a hook with a long state: %d, want 200", resp.StatusCode)
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "outcome=accepted") || !strings.Contains(logs, "outcome=bad_request") {
		t.Fatalf("the hooks were not logged:\n%.2000s", logs)
	}
	for line := range strings.Lines(logs) {
		if len(line) > 1024 {
			t.Errorf("a log line of %d bytes: %.300s...", len(line), line)
		}
	}
}

func TestHookHandlerDedupExpiry(t *testing.T) {
	env := hookServer(t, BasicAuth(hookUser, hookPassword))
	good := hookBasic(hookUser, hookPassword)
	waiting := hookFixture(t, "job_waiting.json")
	hookPost(t, env.url, waiting, good)
	env.clock.Advance(2 * time.Hour) // past the one-hour ttl
	resp, _ := hookPost(t, env.url, waiting, good)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after ttl: %d", resp.StatusCode)
	}
	if accepted, _ := env.rec.snapshot(); len(accepted) != 2 {
		t.Errorf("accepted %d times, want 2 once the id expired", len(accepted))
	}
}
