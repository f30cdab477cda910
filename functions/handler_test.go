package functions

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/metrics"
)

// fakeReconciler stands in for *scaler.Scaler (tested in its own package):
// it records RunAll calls and returns one configured error per pool, in
// pool order, as the scaler does.
type fakeReconciler struct {
	pools []string
	errs  map[string]error

	mu       sync.Mutex
	calls    int
	deadline time.Time // the last RunAll context's deadline; zero if none
	ran      chan struct{}
}

func (f *fakeReconciler) Pools() []string { return append([]string(nil), f.pools...) }

func (f *fakeReconciler) RunAll(ctx context.Context) []error {
	f.mu.Lock()
	f.calls++
	f.deadline, _ = ctx.Deadline()
	f.mu.Unlock()
	if f.ran != nil {
		select {
		case f.ran <- struct{}{}:
		default:
		}
	}
	out := make([]error, len(f.pools))
	for i, p := range f.pools {
		out[i] = f.errs[p]
	}
	return out
}

func (f *fakeReconciler) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// recordingHook stands in for sources/azuredevops' service-hook handler: it
// answers 202 as that handler does for an accepted event and records what
// reached it, so tests can check the request is passed on unchanged.
type recordingHook struct {
	mu     sync.Mutex
	method string
	path   string
	auth   string
	body   []byte
}

func (h *recordingHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.method, h.path, h.auth, h.body = r.Method, r.URL.Path, r.Header.Get("Authorization"), b
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// jobWaitingHook is a trimmed ms.vss-pipelines.job-state-changed-event as
// Azure DevOps posts it.
const jobWaitingHook = `{"subscriptionId":"6f1c3f0a-3c1e-4f0a-9a55-0c2b1d1b6f10","notificationId":3,"id":"8a2c7e34-1f5b-4e1e-9d0e-6b0f8f3b1a22","eventType":"ms.vss-pipelines.job-state-changed-event","publisherId":"pipelines","message":{"text":"Job Job_1 is waiting."},"resource":{"job":{"_links":{},"id":"12f1170f-54f2-53f3-20dd-22fc7dff55f9","name":"Job_1","state":"waiting","startTime":null,"finishTime":null},"stage":{"id":"96ac2280-8cb4-5df5-99de-dd2da759617d","name":"__default"},"run":{"id":42,"name":"20240101.1"},"pipeline":{"id":7,"name":"ci"},"repositories":[]},"resourceVersion":"5.1-preview.1","resourceContainers":{"collection":{"id":"c12d0eb8-e382-443b-9f9c-c52cba5014c2"},"account":{"id":"f844ec47-a9db-4511-8281-8b63f4eaf94e","baseUrl":"https://dev.azure.com/contoso/"},"project":{"id":"be9b3917-87e6-42a4-a549-2bc06a7a878f"}},"createdDate":"2024-01-01T10:00:00.000Z"}`

func newTestHandler(t *testing.T, hook http.Handler, r Reconciler) http.Handler {
	t.Helper()
	return NewHandler(Options{
		Hooks:      map[string]http.Handler{"azuredevops": hook},
		Metrics:    metrics.New("test").Handler(),
		Reconciler: r,
	})
}

// do serves one request from a loopback peer, where the Functions host
// posts from.
func do(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRoutes(t *testing.T) {
	hook := &recordingHook{}
	h := newTestHandler(t, hook, &fakeReconciler{pools: []string{"linux"}})

	tests := []struct {
		method, path string
		want         int
		bodyHas      string
	}{
		{"POST", "/api/webhook/azuredevops", http.StatusAccepted, ""},
		{"GET", "/api/webhook/azuredevops", http.StatusMethodNotAllowed, ""},
		{"PUT", "/api/webhook/azuredevops", http.StatusMethodNotAllowed, ""},
		{"POST", "/api/webhook/github", http.StatusNotFound, `unknown webhook source "github"; known sources: azuredevops`},
		{"POST", "/api/webhook/", http.StatusNotFound, ""},
		{"GET", "/api/metrics", http.StatusOK, "agentscaler_build_info"},
		{"POST", "/api/metrics", http.StatusMethodNotAllowed, ""},
		{"GET", "/api/healthz", http.StatusOK, "ok"},
		{"HEAD", "/api/healthz", http.StatusOK, ""},
		{"POST", "/api/healthz", http.StatusMethodNotAllowed, ""},
		{"POST", "/reconcile", http.StatusOK, `"pool linux: ok"`},
		{"GET", "/reconcile", http.StatusMethodNotAllowed, ""},
		{"GET", "/", http.StatusNotFound, ""},
		{"GET", "/api/nothing", http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := do(t, h, tc.method, tc.path, "")
			if rec.Code != tc.want {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, tc.want, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tc.bodyHas) {
				t.Errorf("body %q does not contain %q", rec.Body.String(), tc.bodyHas)
			}
		})
	}
}

func TestWebhookReachesHookUnchanged(t *testing.T) {
	hook := &recordingHook{}
	h := newTestHandler(t, hook, &fakeReconciler{})
	req := httptest.NewRequest("POST", "/api/webhook/azuredevops?code=k", strings.NewReader(jobWaitingHook))
	req.SetBasicAuth("azdo", "s3cret")
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202", rec.Code)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if hook.method != "POST" || hook.path != "/api/webhook/azuredevops" {
		t.Errorf("hook saw %s %s", hook.method, hook.path)
	}
	if want := req.Header.Get("Authorization"); hook.auth != want {
		t.Errorf("hook saw Authorization %q, want %q", hook.auth, want)
	}
	if string(hook.body) != jobWaitingHook {
		t.Errorf("hook saw a different body: %q", hook.body)
	}
}

func TestUnconfiguredRoutesAreNotServed(t *testing.T) {
	h := NewHandler(Options{})
	for _, path := range []string{"/api/metrics", "/reconcile", "/api/webhook/azuredevops"} {
		method := "GET"
		if path != "/api/metrics" {
			method = "POST"
		}
		if rec := do(t, h, method, path, ""); rec.Code != http.StatusNotFound {
			t.Errorf("%s %s = %d, want 404", method, path, rec.Code)
		}
	}
	if rec := do(t, h, "GET", "/api/healthz", ""); rec.Code != http.StatusOK {
		t.Errorf("healthz = %d, want 200", rec.Code)
	}
}

// TestReconcileOnlyForLoopbackPeers: /reconcile is the Functions host's,
// which posts from loopback; any other peer gets the 404 of an unknown path,
// runs nothing and learns no pool name.
func TestReconcileOnlyForLoopbackPeers(t *testing.T) {
	r := &fakeReconciler{pools: []string{"linux"}}
	h := NewHandler(Options{Reconciler: r})
	for _, peer := range []string{"192.0.2.1:1234", "[2001:db8::1]:1234", "10.0.0.7:80", "not an address"} {
		req := httptest.NewRequest("POST", "/reconcile", strings.NewReader(timerInvocation))
		req.RemoteAddr = peer
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "linux") {
			t.Errorf("peer %s: %d %q, want a plain 404", peer, rec.Code, rec.Body.String())
		}
	}
	if n := r.Calls(); n != 0 {
		t.Errorf("RunAll ran %d times for peers that are not the host", n)
	}
	for _, peer := range []string{"127.0.0.1:1234", "[::1]:1234", "[::ffff:127.0.0.1]:1234"} {
		req := httptest.NewRequest("POST", "/reconcile", strings.NewReader(timerInvocation))
		req.RemoteAddr = peer
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("loopback peer %s: %d, want 200", peer, rec.Code)
		}
	}
}

func TestPanicBecomes500(t *testing.T) {
	var logs bytes.Buffer
	h := NewHandler(Options{
		Hooks: map[string]http.Handler{
			"azuredevops": http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }),
		},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	rec := do(t, h, "POST", "/api/webhook/azuredevops", jobWaitingHook)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("panic value leaked to the client: %q", rec.Body.String())
	}
	out := logs.String()
	if !strings.Contains(out, "handler panic") || !strings.Contains(out, "panic=boom") {
		t.Errorf("panic not logged: %s", out)
	}
	if !strings.Contains(out, "status=500") {
		t.Errorf("request log does not record the 500: %s", out)
	}

	// The server keeps serving afterwards.
	if rec := do(t, h, "GET", "/api/healthz", ""); rec.Code != http.StatusOK {
		t.Errorf("healthz after panic = %d", rec.Code)
	}
}

func TestPanicAfterWriteKeepsStatus(t *testing.T) {
	h := NewHandler(Options{Hooks: map[string]http.Handler{
		"azuredevops": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			panic(errors.New("late"))
		}),
	}})
	rec := do(t, h, "POST", "/api/webhook/azuredevops", "{}")
	if rec.Code != http.StatusAccepted {
		t.Errorf("status = %d, want the 202 already sent", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "internal error") {
		t.Errorf("error text appended after headers were sent: %q", rec.Body.String())
	}
}

func TestAbortHandlerPanicPropagates(t *testing.T) {
	h := NewHandler(Options{Hooks: map[string]http.Handler{
		"azuredevops": http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }),
	}})
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler to reach net/http", v)
		}
	}()
	do(t, h, "POST", "/api/webhook/azuredevops", "{}")
}

func TestRequestLogHasNoSecrets(t *testing.T) {
	var logs bytes.Buffer
	h := NewHandler(Options{
		Hooks:  map[string]http.Handler{"azuredevops": &recordingHook{}},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	req := httptest.NewRequest("POST", "/api/webhook/azuredevops?code=functionkey123", strings.NewReader(jobWaitingHook))
	req.SetBasicAuth("azdo", "s3cret")
	h.ServeHTTP(httptest.NewRecorder(), req)

	out := logs.String()
	for _, want := range []string{`"method":"POST"`, `"path":"/api/webhook/azuredevops"`, `"status":202`, `"duration":`} {
		if !strings.Contains(out, want) {
			t.Errorf("request log lacks %s: %s", want, out)
		}
	}
	for _, secret := range []string{"functionkey123", "s3cret", "YXpkbzpzM2NyZXQ=", "Job_1"} {
		if strings.Contains(out, secret) {
			t.Errorf("request log contains %q: %s", secret, out)
		}
	}
}

// TestRequestLogClipsThePath: the path is the caller's, and a long one is
// cut short in the request log and in the 404 that echoes a webhook source.
func TestRequestLogClipsThePath(t *testing.T) {
	var logs bytes.Buffer
	h := NewHandler(Options{
		Hooks:  map[string]http.Handler{"azuredevops": &recordingHook{}},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	long := strings.Repeat("a", 16<<10)
	for _, path := range []string{"/" + long, "/api/webhook/" + long} {
		rec := do(t, h, "POST", path, "")
		if rec.Code != http.StatusNotFound || rec.Body.Len() > 512 {
			t.Errorf("POST of a %d-byte path: %d with a %d-byte answer", len(path), rec.Code, rec.Body.Len())
		}
	}
	if n := strings.Count(logs.String(), "status=404"); n != 2 {
		t.Fatalf("%d request lines for two requests:\n%.500s", n, logs.String())
	}
	for line := range strings.Lines(logs.String()) {
		if len(line) > 512 {
			t.Errorf("a request log line of %d bytes", len(line))
		}
	}
}

// BenchmarkWebhookRoute measures what the shared surface (routing, request
// log, panic guard) adds in front of a hook handler.
func BenchmarkWebhookRoute(b *testing.B) {
	h := NewHandler(Options{
		Hooks:  map[string]http.Handler{"azuredevops": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), // debug disabled, as in production
	})
	for b.Loop() {
		req := httptest.NewRequest("POST", "/api/webhook/azuredevops", strings.NewReader(jobWaitingHook))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status = %d", rec.Code)
		}
	}
}
