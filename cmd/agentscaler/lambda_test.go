//go:build linux

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/metrics/metricstest"
	"github.com/agentscaler/agentscaler/scaler"
)

// These tests run the real binary under the real aws-lambda-go runtime loop
// (lambda.Start), against runtimeAPI: a Lambda Runtime API server standing in
// for the Lambda service, which cannot run here. Like the service, it hands
// out one invocation per GET .../invocation/next with the request id,
// deadline and function ARN headers, takes the answer on .../response or
// .../error, takes start failures on /runtime/init/error, and freezes the
// process (SIGSTOP) once an invocation is answered, thawing it (SIGCONT) for
// the next one.

const runtimeAPIPrefix = "/2018-06-01/runtime/"

// lambdaResult is the Runtime API's view of one answered invocation.
type lambdaResult struct {
	kind      string // "response" or "error"
	body      []byte
	errorType string // Lambda-Runtime-Function-Error-Type, for errors
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	done     chan lambdaResult
}

type runtimeAPI struct {
	srv    *httptest.Server
	queue  chan *invocation
	closed chan struct{}

	mu       sync.Mutex
	proc     *os.Process // frozen after each answer when set
	open     map[string]*invocation
	nextID   int
	initErrs chan lambdaResult
}

func newRuntimeAPI(t testing.TB) *runtimeAPI {
	t.Helper()
	api := &runtimeAPI{
		queue:    make(chan *invocation),
		closed:   make(chan struct{}),
		open:     map[string]*invocation{},
		initErrs: make(chan lambdaResult, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+runtimeAPIPrefix+"invocation/next", api.next)
	mux.HandleFunc("POST "+runtimeAPIPrefix+"invocation/{id}/{kind}", api.answer)
	mux.HandleFunc("POST "+runtimeAPIPrefix+"init/error", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case api.initErrs <- lambdaResult{kind: "init", body: b, errorType: r.Header.Get("Lambda-Runtime-Function-Error-Type")}:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	})
	api.srv = httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(func() {
		close(api.closed) // ends a long poll on next
		api.srv.Close()
	})
	return api
}

// addr is what AWS_LAMBDA_RUNTIME_API holds: host and port.
func (api *runtimeAPI) addr() string { return strings.TrimPrefix(api.srv.URL, "http://") }

func (api *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	var inv *invocation
	select {
	case inv = <-api.queue:
	case <-r.Context().Done():
		return
	case <-api.closed:
		return
	}
	h := w.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:agentscaler")
	h.Set("Lambda-Runtime-Trace-Id", "Root=1-65a1b2c3-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0")
	h.Set("Content-Type", "application/json")
	w.Write(inv.payload)
}

func (api *runtimeAPI) answer(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if kind != "response" && kind != "error" {
		http.NotFound(w, r)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	api.mu.Lock()
	inv, ok := api.open[r.PathValue("id")]
	delete(api.open, r.PathValue("id"))
	proc := api.proc
	api.mu.Unlock()
	if !ok {
		http.Error(w, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	// The service freezes the execution environment once it has the answer.
	if proc != nil {
		_ = proc.Signal(syscall.SIGSTOP)
	}
	inv.done <- lambdaResult{kind: kind, body: b, errorType: r.Header.Get("Lambda-Runtime-Function-Error-Type")}
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"status":"OK"}`))
}

// invoke thaws the process, hands it payload with a deadline timeout ahead,
// and waits for the answer.
func (api *runtimeAPI) invoke(t testing.TB, payload []byte, timeout time.Duration) lambdaResult {
	t.Helper()
	api.mu.Lock()
	api.nextID++
	inv := &invocation{
		id:       fmt.Sprintf("6bc28136-2c3c-4d5e-8f1a-%012d", api.nextID),
		payload:  payload,
		deadline: time.Now().Add(timeout),
		done:     make(chan lambdaResult, 1),
	}
	api.open[inv.id] = inv
	if api.proc != nil {
		_ = api.proc.Signal(syscall.SIGCONT)
	}
	api.mu.Unlock()
	wait := time.NewTimer(timeout + 30*time.Second)
	defer wait.Stop()
	select {
	case api.queue <- inv:
	case <-wait.C:
		t.Fatal("the function never asked for the next invocation")
	}
	select {
	case res := <-inv.done:
		return res
	case <-wait.C:
		t.Fatalf("invocation %s was never answered", inv.id)
	}
	return lambdaResult{}
}

// packageTags are make package's default build tags.
const packageTags = "lambda.norpc nodemo"

// buildBinary builds the command as `make package` does (CGO off, trimmed
// and stripped) with the given tags into a temporary directory.
func buildBinary(t testing.TB, tags string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agentscaler")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a started binary with its output.
type process struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	exit chan error
}

// startProcess starts bin with exactly env (nothing inherited, as a
// function's environment is its own) and kills it at the end of the test.
func startProcess(t testing.TB, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &syncbuf.Buffer{}, exit: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exit <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // works on a stopped process too
		<-p.exit
		for _, secret := range []string{testPAT, testPassword} {
			if strings.Contains(p.out.String(), secret) {
				t.Errorf("a secret appears in the output of %s", filepath.Base(bin))
			}
		}
	})
	return p
}

// lambdaEnv is the environment of a function using the configuration at
// path, with the secrets as the deployment resolves them.
func lambdaEnv(api *runtimeAPI, configPath string) []string {
	return []string{
		"AWS_LAMBDA_RUNTIME_API=" + api.addr(),
		"AWS_LAMBDA_FUNCTION_NAME=agentscaler",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"AWS_REGION=eu-west-1",
		"AGENTSCALER_CONFIG=" + configPath,
		"AZP_TOKEN=" + testPAT,
		"HOOK_PASSWORD=" + testPassword,
	}
}

// startLambda runs the binary as a Lambda function against a new Runtime API.
func startLambda(t testing.TB, bin, configPath string) (*runtimeAPI, *process) {
	t.Helper()
	api := newRuntimeAPI(t)
	p := startProcess(t, bin, lambdaEnv(api, configPath))
	api.mu.Lock()
	api.proc = p.cmd.Process
	api.mu.Unlock()
	return api, p
}

// fixture reads an event from functions/testdata/lambda.
func fixture(t testing.TB, name string, change func(ev map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "functions", "testdata", "lambda", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(ev)
	}
	out, _ := json.Marshal(ev)
	return out
}

// urlEvent is a function URL request for method and path with body and
// basic auth (none when user is empty).
func urlEvent(t testing.TB, method, path, body, user, password string) []byte {
	return fixture(t, "function-url.json", func(ev map[string]any) {
		ev["rawPath"] = path
		rc := ev["requestContext"].(map[string]any)
		rc["http"].(map[string]any)["method"] = method
		rc["http"].(map[string]any)["path"] = path
		h := ev["headers"].(map[string]any)
		h["content-length"] = strconv.Itoa(len(body))
		if user != "" {
			h["authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		}
		ev["body"] = body
	})
}

// httpAnswer decodes a function URL response, body decoded.
func httpAnswer(t testing.TB, res lambdaResult) (int, string) {
	t.Helper()
	if res.kind != "response" {
		t.Fatalf("invocation failed: %s %s", res.errorType, res.body)
	}
	var r events.LambdaFunctionURLResponse
	if err := json.Unmarshal(res.body, &r); err != nil {
		t.Fatalf("answer %s: %v", res.body, err)
	}
	body := r.Body
	if r.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = string(b)
	}
	return r.StatusCode, body
}

// capturedHook queues a job in the emulator and returns the service hook
// Azure DevOps posts for it, byte for byte, and the request id.
func capturedHook(t testing.TB, emu *adoemu.Emulator, demands ...string) ([]byte, int64) {
	t.Helper()
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(sink.Close)
	sub := emu.Subscribe(adoemu.Subscription{URL: sink.URL, Username: "azdo", Password: testPassword})
	id := emu.QueueJob("Default", adoemu.Job{Name: "build", Demands: demands})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := emu.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range emu.Deliveries() {
		if d.SubscriptionID == sub && d.RequestID == id && d.JobState == adoemu.StateWaiting {
			return d.Body, id
		}
	}
	t.Fatalf("no waiting hook was posted for request %d", id)
	return nil, 0
}

func hasAgent(emu *adoemu.Emulator, name string) bool {
	for _, a := range emu.Agents("Default") {
		if a.Name == name {
			return true
		}
	}
	return false
}

// metricValue finds one sample line in an exposition and returns its value
// ("" when absent).
func metricValue(exposition, series string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

const createsOK = `agentscaler_provider_operations_total{operation="create",provider="memory",result="ok"}`

// TestLambdaBinary drives the real binary through a webhook, a bad password,
// a scheduled event, a failing pool and an unknown event.
func TestLambdaBinary(t *testing.T) {
	// Slow job-request reads: a reconcile left running after the answer
	// would visibly miss the freeze.
	emu := startEmulator(t, adoemu.Options{Latency: map[string]time.Duration{adoemu.EndpointJobRequests: 300 * time.Millisecond}})
	hook, reqID := capturedHook(t, emu, "docker")
	api, proc := startLambda(t, buildBinary(t, packageTags), writeConfig(t, emu.OrgURL(), ""))

	reads := emu.Calls()[adoemu.EndpointJobRequests]
	status, body := httpAnswer(t, api.invoke(t, urlEvent(t, "POST", "/api/webhook/azuredevops", string(hook), "azdo", testPassword), 30*time.Second))
	if status != http.StatusOK || body != "accepted\n" {
		t.Fatalf("webhook: %d %q, want 200 accepted", status, body)
	}
	// The process is frozen now: whatever the reconcile did, it did before
	// the answer.
	if got := emu.Calls()[adoemu.EndpointJobRequests]; got <= reads {
		t.Fatal("the triggered reconcile had not read the job requests when the invocation answered")
	}
	if !hasAgent(emu, scaler.PlaceholderName("linux")) {
		t.Error("the triggered reconcile had not registered the placeholder when the invocation answered")
	}
	_, metrics := httpAnswer(t, api.invoke(t, urlEvent(t, "GET", "/api/metrics", "", "", ""), 30*time.Second))
	if v := metricValue(metrics, createsOK); v != "1" {
		t.Errorf("%s = %q, want 1 (the instance for request %d)", createsOK, v, reqID)
	}
	if !strings.Contains(proc.out.String(), fmt.Sprintf("name=linux-r%d", reqID)) {
		t.Errorf("no action logged for linux-r%d:\n%s", reqID, proc.out.String())
	}

	// A bad password: 401, and nothing runs.
	reads = emu.Calls()[adoemu.EndpointJobRequests]
	status, _ = httpAnswer(t, api.invoke(t, urlEvent(t, "POST", "/api/webhook/azuredevops", string(hook), "azdo", "wrong"), 30*time.Second))
	if status != http.StatusUnauthorized {
		t.Errorf("bad password: %d, want 401", status)
	}
	if got := emu.Calls()[adoemu.EndpointJobRequests]; got != reads {
		t.Errorf("an unauthenticated hook caused %d job-request reads", got-reads)
	}

	// The schedule: a reconcile of every pool, done before the answer.
	reads = emu.Calls()[adoemu.EndpointJobRequests]
	res := api.invoke(t, fixture(t, "scheduled-event.json", nil), 30*time.Second)
	if res.kind != "response" || strings.TrimSpace(string(res.body)) != `{"pools":[{"pool":"linux","result":"ok"}]}` {
		t.Errorf("scheduled event: %s %s", res.kind, res.body)
	}
	if got := emu.Calls()[adoemu.EndpointJobRequests]; got != reads+1 {
		t.Errorf("scheduled event: %d job-request reads, want 1", got-reads)
	}

	// A pool that fails makes the invocation fail.
	emu.FailNext(adoemu.EndpointJobRequests, http.StatusForbidden, 0)
	res = api.invoke(t, fixture(t, "scheduled-event.json", nil), 30*time.Second)
	if res.kind != "error" || !strings.Contains(string(res.body), "pool linux") || !strings.Contains(string(res.body), "403") {
		t.Errorf("scheduled event with a failing pool: %s %s, want an error naming the pool", res.kind, res.body)
	}

	// An event of another kind is an error that says what was expected.
	res = api.invoke(t, fixture(t, "s3-put.json", nil), 30*time.Second)
	var lambdaErr struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}
	if err := json.Unmarshal(res.body, &lambdaErr); err != nil || res.kind != "error" {
		t.Fatalf("unknown event: %s %s (%v)", res.kind, res.body, err)
	}
	if !strings.Contains(lambdaErr.Message, "requestContext.http") || !strings.Contains(lambdaErr.Message, "Scheduled Event") {
		t.Errorf("unknown event error %q does not say what was expected", lambdaErr.Message)
	}

	// Still serving after the errors.
	if status, _ := httpAnswer(t, api.invoke(t, urlEvent(t, "GET", "/api/healthz", "", "", ""), 30*time.Second)); status != http.StatusOK {
		t.Errorf("healthz after errors: %d", status)
	}
	select {
	case err := <-proc.exit:
		t.Errorf("the function exited: %v\n%s", err, proc.out.String())
		proc.exit <- err
	default:
	}
}

// TestLambdaInitError: a bad configuration is reported to the Runtime API's
// init/error endpoint with the keys to fix, and the process exits.
func TestLambdaInitError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("azuredevops: {url: ftp://x}\nwebhook: {}\npools: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api, proc := startLambda(t, buildBinary(t, packageTags), path)
	select {
	case res := <-api.initErrs:
		if res.errorType != "Runtime.ConfigurationError" || !strings.Contains(string(res.body), "azuredevops.url") {
			t.Errorf("init error %s: %s", res.errorType, res.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no init error reported:\n%s", proc.out.String())
	}
	select {
	case err := <-proc.exit:
		if err == nil {
			t.Error("exit status 0 after a failed start")
		}
		proc.exit <- err
	case <-time.After(30 * time.Second):
		t.Fatal("the process did not exit after a failed start")
	}
}

// TestLambdaPushes: under Lambda nothing runs between invocations, so each
// invocation pushes its metrics before it answers, to the real Pushgateway.
func TestLambdaPushes(t *testing.T) {
	g := metricstest.StartPushgateway(t, false)
	emu := startEmulator(t, adoemu.Options{})
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})
	api := newRuntimeAPI(t)
	env := append(lambdaEnv(api, writeConfig(t, emu.OrgURL(), "")), config.EnvPushURL+"="+g.URL, config.EnvPushInstance+"=lambda-1")
	p := startProcess(t, buildBinary(t, packageTags), env)
	api.mu.Lock()
	api.proc = p.cmd.Process
	api.mu.Unlock()

	res := api.invoke(t, fixture(t, "scheduled-event.json", nil), 30*time.Second)
	if res.kind != "response" {
		t.Fatalf("scheduled event: %s %s", res.kind, res.body)
	}
	// The process is frozen now: the group is there only if it was pushed
	// before the answer.
	v, ok := g.Value(t, "agentscaler_waiting_jobs", map[string]string{"instance": "lambda-1", "pool": "linux"})
	if !ok || v != 2 {
		t.Errorf("pushed agentscaler_waiting_jobs{pool=linux} = %v (present %v), want 2", v, ok)
	}
}
