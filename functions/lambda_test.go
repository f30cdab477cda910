package functions

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// The events in testdata/lambda are shaped as AWS documents them and as
// Lambda delivers them: a function URL request, an API Gateway HTTP API
// request (payload format 2.0) on a named stage, an EventBridge scheduled
// event, and an S3 notification as an event this function does not take.

// lambdaEvent reads a testdata/lambda event and lets the test change it.
func lambdaFixture(t testing.TB, name string, change func(ev map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "lambda", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if change != nil {
		change(ev)
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hookEvent is the function URL event Azure DevOps' service hook becomes.
func hookEvent(t testing.TB, body, user, password string, base64Body bool) []byte {
	return lambdaFixture(t, "function-url.json", func(ev map[string]any) {
		h := ev["headers"].(map[string]any)
		h["authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		h["content-length"] = strconv.Itoa(len(body))
		ev["body"] = body
		if base64Body {
			ev["body"] = base64.StdEncoding.EncodeToString([]byte(body))
			ev["isBase64Encoded"] = true
		}
	})
}

func decodeURLResponse(t *testing.T, b []byte) events.LambdaFunctionURLResponse {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, b)
	}
	for _, k := range []string{"statusCode", "headers", "body", "isBase64Encoded"} {
		if _, ok := raw[k]; !ok {
			t.Fatalf("answer lacks %q: %s", k, b)
		}
	}
	var r events.LambdaFunctionURLResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// responseBody is the answer's body, decoded when base64.
func responseBody(t *testing.T, r events.LambdaFunctionURLResponse) string {
	t.Helper()
	if !r.IsBase64Encoded {
		return r.Body
	}
	b, err := base64.StdEncoding.DecodeString(r.Body)
	if err != nil {
		t.Fatalf("body marked base64 does not decode: %v", err)
	}
	return string(b)
}

// invoke runs one invocation with a generous deadline, as Lambda sets one.
func invoke(t *testing.T, l *Lambda, payload []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.Invoke(ctx, payload)
}

// hookLambda serves the real service hook handler; accepted events are
// recorded instead of triggering reconciles.
func hookLambda(t *testing.T) (*Lambda, *[]azuredevops.Event, *sync.Mutex) {
	t.Helper()
	var mu sync.Mutex
	var got []azuredevops.Event
	hook := &azuredevops.HookHandler{
		Auth: azuredevops.BasicAuth("azdo", "hook-pass"),
		Accept: func(_ context.Context, e azuredevops.Event) error {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
			return nil
		},
	}
	return &Lambda{Handler: newTestHandler(t, hook, &fakeReconciler{pools: []string{"linux"}})}, &got, &mu
}

func TestLambdaWebhook(t *testing.T) {
	tests := []struct {
		name       string
		password   string
		base64Body bool
		body       string
		want       int
		accepted   bool
	}{
		{"basic auth", "hook-pass", false, jobWaitingHook, http.StatusOK, true},
		{"base64 body", "hook-pass", true, jobWaitingHook, http.StatusOK, true},
		{"bad password", "wrong", false, jobWaitingHook, http.StatusUnauthorized, false},
		{"too large", "hook-pass", true, `{"id":"x","eventType":"` + strings.Repeat("a", 1<<20) + `"}`, http.StatusRequestEntityTooLarge, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, got, mu := hookLambda(t)
			out, err := invoke(t, l, hookEvent(t, tc.body, "azdo", tc.password, tc.base64Body))
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			resp := decodeURLResponse(t, out)
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d; body %q", resp.StatusCode, tc.want, responseBody(t, resp))
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.accepted != (len(*got) == 1) {
				t.Fatalf("accepted events = %+v, want accepted=%v", *got, tc.accepted)
			}
			if tc.accepted {
				e := (*got)[0]
				if e.ID != "8a2c7e34-1f5b-4e1e-9d0e-6b0f8f3b1a22" || e.State != "waiting" || e.OrgURL != "https://dev.azure.com/contoso" {
					t.Errorf("hook parsed to %+v", e)
				}
			}
			if tc.want == http.StatusUnauthorized && resp.Headers["Www-Authenticate"] == "" {
				t.Errorf("401 without a challenge: headers %v", resp.Headers)
			}
		})
	}
}

func TestLambdaBodyNotBase64(t *testing.T) {
	l, got, _ := hookLambda(t)
	out, err := invoke(t, l, lambdaFixture(t, "function-url.json", func(ev map[string]any) {
		ev["headers"].(map[string]any)["authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte("azdo:hook-pass"))
		ev["body"], ev["isBase64Encoded"] = "{{not base64}}", true
	}))
	if err != nil {
		t.Fatal(err)
	}
	if resp := decodeURLResponse(t, out); resp.StatusCode != http.StatusBadRequest || len(*got) != 0 {
		t.Errorf("status %d, accepted %d, want 400 and nothing accepted", resp.StatusCode, len(*got))
	}
}

// echo answers with what the request looked like, and with the response
// features the conversion must carry: cookies, repeated headers, a status.
type echo struct{}

type echoed struct {
	Method, Path, RawQuery, Host, RemoteAddr, Proto string
	ContentLength                                   int64
	Cookie, Tag, ContentType, Trace                 string
	Body                                            string
}

func (e *echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	w.Header().Add("Set-Cookie", "a=1; Path=/")
	w.Header().Add("Set-Cookie", "b=2; Secure")
	w.Header().Add("Vary", "Accept")
	w.Header().Add("Vary", "Cookie")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTeapot)
	_ = json.NewEncoder(w).Encode(echoed{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host, RemoteAddr: r.RemoteAddr, Proto: r.Proto,
		ContentLength: r.ContentLength, Cookie: r.Header.Get("Cookie"), Tag: r.Header.Get("X-Agentscaler-Tag"),
		ContentType: r.Header.Get("Content-Type"), Trace: r.Header.Get("X-Amzn-Trace-Id"), Body: body.String(),
	})
}

func TestLambdaAPIGatewayRequestAndResponse(t *testing.T) {
	for _, b64 := range []bool{false, true} {
		l := &Lambda{Handler: &echo{}}
		payload := lambdaFixture(t, "apigateway-v2.json", func(ev map[string]any) {
			ev["body"] = "héllo"
			if b64 {
				ev["body"], ev["isBase64Encoded"] = base64.StdEncoding.EncodeToString([]byte("héllo")), true
			}
		})
		out, err := invoke(t, l, payload)
		if err != nil {
			t.Fatal(err)
		}
		resp := decodeURLResponse(t, out)
		if resp.StatusCode != http.StatusTeapot || resp.IsBase64Encoded {
			t.Fatalf("status %d base64 %v, want 418 as text", resp.StatusCode, resp.IsBase64Encoded)
		}
		var got echoed
		if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
			t.Fatalf("body %q: %v", resp.Body, err)
		}
		want := echoed{
			Method: "POST", Path: "/api/webhook/azuredevops", RawQuery: "trace=1&trace=2", // stage prefix removed
			Host: "r2d2c3po.execute-api.eu-west-1.amazonaws.com", RemoteAddr: "20.37.158.3:0", Proto: "HTTP/1.1",
			ContentLength: int64(len("héllo")), Cookie: "session=abc; theme=dark", Tag: "one,two",
			ContentType: "application/json; charset=utf-8", Trace: "Root=1-65a1b2c3-fedcba9876543210fedcba98", Body: "héllo",
		}
		if got != want {
			t.Errorf("base64=%v: the handler saw\n %+v\nwant\n %+v", b64, got, want)
		}
		if !slices.Equal(resp.Cookies, []string{"a=1; Path=/", "b=2; Secure"}) {
			t.Errorf("cookies = %q", resp.Cookies)
		}
		if resp.Headers["Vary"] != "Accept,Cookie" || resp.Headers["Content-Type"] != "application/json" {
			t.Errorf("headers = %v", resp.Headers)
		}
		if _, ok := resp.Headers["Set-Cookie"]; ok {
			t.Error("Set-Cookie sent as a header; the 2.0 response wants cookies")
		}
	}
}

func TestLambdaResponseBodies(t *testing.T) {
	binary := []byte{0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00}
	tests := []struct {
		name       string
		method     string
		handler    http.HandlerFunc
		wantStatus int
		wantB64    bool
		wantBody   string
		wantType   string
	}{
		{"text", "GET", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			w.Write([]byte("# HELP x\n"))
		}, 200, false, "# HELP x\n", "text/plain; version=0.0.4; charset=utf-8"},
		{"binary", "GET", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(binary)
		}, 200, true, string(binary), "application/octet-stream"},
		{"sniffed", "GET", func(w http.ResponseWriter, _ *http.Request) {
			w.Write(binary[:4])
		}, 200, true, string(binary[:4]), "application/x-gzip"},
		{"text type, not utf-8", "GET", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte{0xff, 'a'})
		}, 200, true, "\xffa", "text/plain"},
		{"no body", "POST", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, 204, false, "", ""},
		{"head", "HEAD", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("ok\n"))
		}, 200, false, "", "text/plain"},
		{"too large", "GET", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			chunk := bytes.Repeat([]byte("x"), 1<<20)
			for range 5 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, 500, false, "internal error: response too large\n", "text/plain; charset=utf-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &Lambda{Handler: tc.handler}
			out, err := invoke(t, l, lambdaFixture(t, "function-url.json", func(ev map[string]any) {
				ev["requestContext"].(map[string]any)["http"].(map[string]any)["method"] = tc.method
				ev["rawPath"] = "/api/healthz"
			}))
			if err != nil {
				t.Fatal(err)
			}
			resp := decodeURLResponse(t, out)
			if resp.StatusCode != tc.wantStatus || resp.IsBase64Encoded != tc.wantB64 {
				t.Errorf("status %d base64 %v, want %d %v", resp.StatusCode, resp.IsBase64Encoded, tc.wantStatus, tc.wantB64)
			}
			if got := responseBody(t, resp); got != tc.wantBody {
				t.Errorf("body %q, want %q", got, tc.wantBody)
			}
			if got := resp.Headers["Content-Type"]; got != tc.wantType {
				t.Errorf("Content-Type %q, want %q", got, tc.wantType)
			}
		})
	}
}

// TestLambdaServesOnlyAPIRoutes: a function URL is public, and /reconcile is
// the timer's route, as under the Functions host.
func TestLambdaServesOnlyAPIRoutes(t *testing.T) {
	r := &fakeReconciler{pools: []string{"linux"}}
	l := &Lambda{Handler: newTestHandler(t, &recordingHook{}, r)}
	for path, want := range map[string]int{
		"/reconcile":                 http.StatusNotFound,
		"/api/../reconcile":          http.StatusNotFound,
		"/api%2F..%2Freconcile":      http.StatusNotFound,
		"/api/healthz":               http.StatusOK,
		"/api/metrics":               http.StatusOK,
		"/api/webhook/azuredevops":   http.StatusMethodNotAllowed,
		"/api/webhook/other-service": http.StatusMethodNotAllowed,
	} {
		out, err := invoke(t, l, lambdaFixture(t, "function-url.json", func(ev map[string]any) {
			ev["rawPath"] = path
			ev["requestContext"].(map[string]any)["http"].(map[string]any)["method"] = "GET"
		}))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := decodeURLResponse(t, out).StatusCode; got != want {
			t.Errorf("GET %s = %d, want %d", path, got, want)
		}
	}
	out, _ := invoke(t, l, lambdaFixture(t, "function-url.json", func(ev map[string]any) { ev["rawPath"] = "/reconcile" }))
	if got := decodeURLResponse(t, out).StatusCode; got != http.StatusNotFound {
		t.Errorf("POST /reconcile = %d, want 404", got)
	}
	if r.Calls() != 0 {
		t.Errorf("an HTTP event reconciled %d times", r.Calls())
	}
}

// pendingWork stands in for the scaler's in-flight reconciles: WaitIdle
// blocks until the test releases it or ctx ends.
type pendingWork struct{ release chan struct{} }

func (p pendingWork) WaitIdle(ctx context.Context) error {
	select {
	case <-p.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestLambdaWaitsForPendingWork(t *testing.T) {
	p := pendingWork{release: make(chan struct{})}
	var logs bytes.Buffer
	l := &Lambda{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		Pending: p,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	}
	payload := lambdaFixture(t, "function-url.json", nil)
	done := make(chan []byte, 1)
	go func() {
		out, _ := invoke(t, l, payload)
		done <- out
	}()
	// The handler has answered at once; the invocation must still be open.
	select {
	case <-done:
		t.Fatal("the invocation returned while background work was pending")
	case <-time.After(200 * time.Millisecond):
	}
	close(p.release)
	select {
	case out := <-done:
		if decodeURLResponse(t, out).StatusCode != http.StatusOK {
			t.Errorf("answer %s", out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the invocation did not return once the work was done")
	}
	if strings.Contains(logs.String(), "still running") {
		t.Errorf("warned although the work finished: %s", logs.String())
	}
}

func TestLambdaPendingWorkBoundedByDeadline(t *testing.T) {
	var logs bytes.Buffer
	l := &Lambda{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		Pending: pendingWork{release: make(chan struct{})}, // never released
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Margin:  100 * time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	out, err := l.Invoke(ctx, lambdaFixture(t, "function-url.json", nil))
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().After(deadline) {
		t.Error("returned after the invocation deadline, leaving no time to post the answer")
	}
	if decodeURLResponse(t, out).StatusCode != http.StatusOK {
		t.Errorf("answer %s", out)
	}
	if !strings.Contains(logs.String(), "still running at the invocation deadline") {
		t.Errorf("no warning about the unfinished work: %s", logs.String())
	}
}

func TestLambdaScheduledEvent(t *testing.T) {
	r := &fakeReconciler{pools: []string{"linux", "windows"}}
	l := &Lambda{Reconciler: r, Margin: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	out, err := l.Invoke(ctx, lambdaFixture(t, "scheduled-event.json", nil))
	if err != nil {
		t.Fatal(err)
	}
	var res scheduledResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	want := []poolOutcome{{"linux", "ok"}, {"windows", "ok"}}
	if !slices.Equal(res.Pools, want) {
		t.Errorf("pools = %+v, want %+v", res.Pools, want)
	}
	if r.Calls() != 1 {
		t.Errorf("RunAll called %d times, want 1", r.Calls())
	}
	r.mu.Lock()
	got := r.deadline
	r.mu.Unlock()
	if got.IsZero() || got.After(deadline.Add(-2*time.Second)) {
		t.Errorf("RunAll deadline %v, want at least the margin before the invocation deadline %v", got, deadline)
	}

	// EventBridge Scheduler, given the same payload as input.
	if _, err := invoke(t, l, lambdaFixture(t, "scheduled-event.json", func(ev map[string]any) { ev["source"] = "aws.scheduler" })); err != nil {
		t.Errorf("scheduler event: %v", err)
	}
}

func TestLambdaScheduledEventFailedPool(t *testing.T) {
	r := &fakeReconciler{
		pools: []string{"linux", "windows"},
		errs:  map[string]error{"windows": errors.New("list job requests: 503 Service Unavailable")},
	}
	_, err := invoke(t, &Lambda{Reconciler: r}, lambdaFixture(t, "scheduled-event.json", nil))
	if err == nil || !strings.Contains(err.Error(), "pool windows: list job requests: 503") || strings.Contains(err.Error(), "linux") {
		t.Errorf("error = %v, want one naming the failed pool only", err)
	}
}

func TestLambdaUnknownEvents(t *testing.T) {
	r := &fakeReconciler{pools: []string{"linux"}}
	l := &Lambda{Handler: newTestHandler(t, &recordingHook{}, r), Reconciler: r}
	for name, payload := range map[string][]byte{
		"s3 notification": lambdaFixture(t, "s3-put.json", nil),
		"other eventbridge": lambdaFixture(t, "scheduled-event.json", func(ev map[string]any) {
			ev["detail-type"] = "EC2 Instance State-change Notification"
			ev["source"] = "aws.ec2"
		}),
		"schedule, wrong src": lambdaFixture(t, "scheduled-event.json", func(ev map[string]any) { ev["source"] = "custom.app" }),
		"empty object":        []byte(`{}`),
	} {
		out, err := invoke(t, l, payload)
		if err == nil {
			t.Errorf("%s: answered %s, want an error", name, out)
			continue
		}
		for _, want := range []string{"requestContext.http", `"Scheduled Event"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say what was expected (%s)", name, err, want)
			}
		}
	}
	if _, err := invoke(t, l, []byte(`"just a string"`)); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("string payload: %v", err)
	}
	if r.Calls() != 0 {
		t.Error("an unknown event reconciled")
	}
	if _, err := invoke(t, &Lambda{}, lambdaFixture(t, "scheduled-event.json", nil)); err == nil {
		t.Error("a scheduled event without a reconciler succeeded")
	}
}

// BenchmarkLambdaWebhook measures the event conversion around the shared
// handler, against BenchmarkWebhookRoute.
func BenchmarkLambdaWebhook(b *testing.B) {
	l := &Lambda{Handler: NewHandler(Options{
		Hooks:   map[string]http.Handler{"azuredevops": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })},
		Metrics: metrics.New("bench").Handler(),
	})}
	payload := hookEvent(b, jobWaitingHook, "azdo", "hook-pass", false)
	ctx := context.Background()
	for b.Loop() {
		if _, err := l.Invoke(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
}
