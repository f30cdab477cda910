package testagent

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

const (
	testPAT   = "pat-for-the-test-agent"
	wrongPAT  = "wrong-token-0123456789"
	testPool  = "linux"
	waitLimit = 60 * time.Second
)

// fixture is the real emulator on loopback, assigning jobs as the service
// does, with one pool.
type fixture struct {
	t   *testing.T
	emu *adoemu.Emulator
	org string
}

func newFixture(t *testing.T, opts adoemu.Options) *fixture {
	t.Helper()
	opts.PAT = testPAT
	opts.AutoAssign = true
	if opts.ParallelJobs == 0 {
		opts.ParallelJobs = 5
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	emu := adoemu.New(opts)
	org, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	emu.AddPool(testPool)
	return &fixture{t: t, emu: emu, org: org}
}

// env is the agent container's environment for an agent of the pool, with
// overrides as name, value pairs.
func (f *fixture) env(name string, overrides ...string) map[string]string {
	m := map[string]string{
		"AZP_URL": f.org, "AZP_TOKEN": testPAT, "AZP_POOL": testPool, "AZP_AGENT_NAME": name,
		"AZP_WORK": filepath.Join(f.t.TempDir(), "work"), "AZP_AGENT_IDLE_TIMEOUT": "2m",
	}
	for i := 0; i+1 < len(overrides); i += 2 {
		m[overrides[i]] = overrides[i+1]
	}
	return m
}

// agentRun is Main running in the background.
type agentRun struct {
	cancel         context.CancelFunc
	done           chan struct{}
	code           int
	stdout, stderr syncbuf.Buffer
}

func start(t *testing.T, getenv func(string) string) *agentRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &agentRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.code = Main(ctx, getenv, &r.stdout, &r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func startEnv(t *testing.T, env map[string]string) *agentRun {
	return start(t, func(k string) string { return env[k] })
}

// wait returns the exit code once Main returns.
func (r *agentRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(waitLimit):
		t.Fatalf("the agent did not exit within %s; stdout:\n%s\nstderr:\n%s", waitLimit, r.stdout.String(), r.stderr.String())
		return 0
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) request(id int64) adoemu.Request {
	f.t.Helper()
	for _, r := range f.emu.Requests(testPool) {
		if r.ID == id {
			return r
		}
	}
	f.t.Fatalf("request %d not found", id)
	return adoemu.Request{}
}

// online returns the agent of that name once it has a session.
func (f *fixture) online(name string) adoemu.Agent {
	f.t.Helper()
	var got adoemu.Agent
	waitFor(f.t, "agent "+name+" to open a session", func() bool {
		for _, a := range f.emu.Agents(testPool) {
			if a.Name == name && a.SessionID != "" {
				got = a
				return true
			}
		}
		return false
	})
	return got
}

func (f *fixture) wantNoAgents() {
	f.t.Helper()
	if agents := f.emu.Agents(testPool); len(agents) != 0 {
		f.t.Errorf("agents left registered: %+v", agents)
	}
}

func wantLines(t *testing.T, out string, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if !strings.Contains(out, "msg=\""+m+"\"") && !strings.Contains(out, "msg="+m+" ") {
			t.Errorf("stdout lacks %q:\n%s", m, out)
		}
	}
}

func TestTakesExactlyOneMatchingJob(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	unmatched := f.emu.QueueJob(testPool, adoemu.Job{Name: "needs-gpu", Demands: []string{"agentscaler.test.gpu"}})
	first := f.emu.QueueJob(testPool, adoemu.Job{Name: "build", Duration: 200 * time.Millisecond})
	second := f.emu.QueueJob(testPool, adoemu.Job{Name: "build"})

	r := startEnv(t, f.env("linux-r1"))
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit code %d, stderr %s", code, r.stderr.String())
	}

	ran := f.request(first)
	if ran.Agent != "linux-r1" || ran.Result != "succeeded" || ran.ReceiveTime.IsZero() || ran.FinishTime.IsZero() {
		t.Errorf("the job the agent took: %+v, want succeeded on linux-r1 with receive and finish times", ran)
	}
	if held := ran.FinishTime.Sub(ran.ReceiveTime); held < 200*time.Millisecond {
		t.Errorf("job held %s, want at least its run time of 200ms", held)
	}
	for _, id := range []int64{unmatched, second} {
		if rq := f.request(id); rq.State() != adoemu.StateWaiting || !rq.AssignTime.IsZero() {
			t.Errorf("request %d (%s): %+v, want still waiting", id, rq.Name, rq)
		}
	}
	f.wantNoAgents()
	calls := f.emu.Calls()
	if calls[adoemu.EndpointAddAgent] != 1 || calls[adoemu.EndpointCreateSession] != 1 || calls[adoemu.EndpointDeleteSession] != 1 ||
		calls[adoemu.EndpointUpdateJobRequest] != 2 || calls[adoemu.EndpointDeleteMessage] != 1 || calls[adoemu.EndpointDeleteAgent] != 1 {
		t.Errorf("calls %v, want one add, session, ack, close, unregister and two job updates", calls)
	}
	wantLines(t, r.stdout.String(), "registered", "session opened", "job received", "job started", "job finished", "session closed", "unregistered")
	if r.stderr.String() != "" {
		t.Errorf("stderr: %s", r.stderr.String())
	}
}

func TestTwoAgentsTwoJobs(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	jobs := []int64{
		f.emu.QueueJob(testPool, adoemu.Job{Duration: 300 * time.Millisecond}),
		f.emu.QueueJob(testPool, adoemu.Job{Duration: 300 * time.Millisecond}),
	}
	a := startEnv(t, f.env("linux-r1"))
	b := startEnv(t, f.env("linux-r2"))
	for _, r := range []*agentRun{a, b} {
		if code := r.wait(t); code != 0 {
			t.Fatalf("exit code %d, stderr %s", code, r.stderr.String())
		}
		if n := strings.Count(r.stdout.String(), `msg="job finished"`); n != 1 {
			t.Errorf("an agent finished %d jobs, want 1:\n%s", n, r.stdout.String())
		}
	}
	ranOn := map[string]bool{}
	for _, id := range jobs {
		rq := f.request(id)
		if rq.Result != "succeeded" {
			t.Errorf("request %d: %+v, want succeeded", id, rq)
		}
		ranOn[rq.Agent] = true
	}
	if !ranOn["linux-r1"] || !ranOn["linux-r2"] {
		t.Errorf("jobs ran on %v, want one on each agent", ranOn)
	}
	f.wantNoAgents()
}

func TestSecondAgentReplacesTheFirst(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	first := startEnv(t, f.env("linux-w1"))
	was := f.online("linux-w1")

	second := startEnv(t, f.env("linux-w1"))
	// The first agent's session ends with its registration: it stops,
	// leaving the registration to the second.
	if code := first.wait(t); code != 1 || !strings.Contains(first.stderr.String(), "replaced") {
		t.Errorf("replaced agent: exit %d, stderr %q; want 1 and a message saying it was replaced", code, first.stderr.String())
	}
	if strings.Contains(first.stdout.String(), `msg=unregistered`) {
		t.Errorf("the replaced agent unregistered the registration it no longer holds:\n%s", first.stdout.String())
	}
	now := f.online("linux-w1")
	if now.ID != was.ID || now.SessionID == was.SessionID || len(f.emu.Agents(testPool)) != 1 {
		t.Fatalf("after the replace: %+v (was %+v), %d agents; want the same id with a new session", now, was, len(f.emu.Agents(testPool)))
	}

	id := f.emu.QueueJob(testPool, adoemu.Job{})
	if code := second.wait(t); code != 0 {
		t.Fatalf("second agent: exit %d, stderr %s", code, second.stderr.String())
	}
	if rq := f.request(id); rq.Agent != "linux-w1" || rq.Result != "succeeded" {
		t.Errorf("job: %+v", rq)
	}
	if n := f.emu.Calls()[adoemu.EndpointReplaceAgent]; n != 1 {
		t.Errorf("replace calls %d, want 1", n)
	}
	f.wantNoAgents()
}

func TestFailsFastWithAClearMessage(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := "http://" + ln.Addr().String() + "/contoso"
	ln.Close()
	missingFile := filepath.Join(t.TempDir(), "no-such-token")

	for _, tc := range []struct {
		name      string
		overrides []string
		want      string
	}{
		{"wrong token", []string{"AZP_TOKEN", wrongPAT},
			"testagent: AZP_TOKEN was rejected by " + f.org + " (401): check the token and its Agent Pools (read, manage) scope"},
		{"wrong path", []string{"AZP_URL", f.org + "/nope"},
			"AZP_URL " + f.org + "/nope is not an Azure DevOps organization URL"},
		{"wrong organization", []string{"AZP_URL", strings.TrimSuffix(f.org, "/contoso") + "/fabrikam"},
			"answered 404"},
		{"closed port", []string{"AZP_URL", closedPort}, "cannot reach AZP_URL " + closedPort + ": connection refused"},
		{"not http", []string{"AZP_URL", "ftp://127.0.0.1/contoso"}, `AZP_URL "ftp://127.0.0.1/contoso" is not an http(s) URL`},
		{"no URL", []string{"AZP_URL", ""}, "AZP_URL is not set"},
		{"credentials in the URL", []string{"AZP_URL", "http://me:" + wrongPAT + "@127.0.0.1/contoso"}, "AZP_URL must not carry credentials"},
		{"no token", []string{"AZP_TOKEN", ""}, "AZP_TOKEN is not set"},
		{"unreadable token file", []string{"AZP_TOKEN_FILE", missingFile}, "AZP_TOKEN_FILE: cannot read the token file"},
		{"missing pool", []string{"AZP_POOL", "gpu"}, `agent pool "gpu" not found in ` + f.org},
		{"bad idle timeout", []string{"AZP_AGENT_IDLE_TIMEOUT", "soon"}, `AZP_AGENT_IDLE_TIMEOUT "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startEnv(t, f.env("linux-r1", tc.overrides...))
			if code := r.wait(t); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			stderr := r.stderr.String()
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want it to say %q", stderr, tc.want)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
				t.Errorf("stderr %q: want exactly one line", stderr)
			}
			for _, secret := range []string{testPAT, wrongPAT} {
				if strings.Contains(stderr+r.stdout.String(), secret) {
					t.Errorf("the output holds the token %q:\n%s%s", secret, r.stdout.String(), stderr)
				}
			}
		})
	}
	f.wantNoAgents()
}

func TestCancelMidJobReportsCanceledAndUnregisters(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	id := f.emu.QueueJob(testPool, adoemu.Job{Duration: time.Hour})
	r := startEnv(t, f.env("linux-r1"))
	waitFor(t, "the job to start", func() bool { return !f.request(id).ReceiveTime.IsZero() })
	r.cancel()
	if code := r.wait(t); code != 2 {
		t.Errorf("exit code %d, want 2 (interrupted); stderr %s", code, r.stderr.String())
	}
	if rq := f.request(id); rq.Result != "canceled" || rq.FinishTime.IsZero() {
		t.Errorf("request after cancellation: %+v, want canceled", rq)
	}
	f.wantNoAgents()
	wantLines(t, r.stdout.String(), "job finished", "session closed", "unregistered")
}

func TestIdleAgentGivesUp(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	r := startEnv(t, f.env("linux-w1", "AZP_AGENT_IDLE_TIMEOUT", "300ms"))
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit code %d, stderr %s", code, r.stderr.String())
	}
	wantLines(t, r.stdout.String(), "no job within the idle timeout", "session closed", "unregistered")
	f.wantNoAgents()
}

func TestTokenFileWinsOverToken(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("  "+testPAT+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := f.emu.QueueJob(testPool, adoemu.Job{})
	r := startEnv(t, f.env("linux-r1", "AZP_TOKEN", wrongPAT, "AZP_TOKEN_FILE", file))
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit code %d, stderr %s", code, r.stderr.String())
	}
	if rq := f.request(id); rq.Result != "succeeded" {
		t.Errorf("job: %+v", rq)
	}

	// A wrong token in the file is named as such.
	if err := os.WriteFile(file, []byte(wrongPAT), 0o600); err != nil {
		t.Fatal(err)
	}
	r = startEnv(t, f.env("linux-r2", "AZP_TOKEN", testPAT, "AZP_TOKEN_FILE", file))
	if code := r.wait(t); code != 1 || !strings.Contains(r.stderr.String(), "the token in AZP_TOKEN_FILE was rejected") {
		t.Errorf("wrong token in the file: exit %d, stderr %q", code, r.stderr.String())
	}
}

// TestCapabilitiesAreTheEnvironment runs Main as the command does, with
// the process environment: what it reports is what jobs are matched
// against.
func TestCapabilitiesAreTheEnvironment(t *testing.T) {
	f := newFixture(t, adoemu.Options{})
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(testPAT), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range f.env("linux-r1") {
		t.Setenv(k, v)
	}
	t.Setenv("AZP_TOKEN_FILE", file)
	t.Setenv("AZP_CLIENTSECRET", "client-secret-value")
	t.Setenv("AGENTSCALER_TEST_VISIBLE", "yes")
	t.Setenv("AGENTSCALER_TEST_HIDDEN", "hidden-value")
	t.Setenv("AGENTSCALER_TEST_ALSO_HIDDEN", "x")
	t.Setenv("VSO_AGENT_IGNORE", "agentscaler_test_hidden, AGENTSCALER_TEST_ALSO_HIDDEN")

	r := start(t, os.Getenv)
	caps := f.online("linux-r1").SystemCapabilities
	want := map[string]string{
		"AGENTSCALER_TEST_VISIBLE": "yes", "Agent.Name": "linux-r1", "Agent.OS": "Linux",
		"Agent.Version": defaultAgentVersion, "AZP_POOL": testPool,
	}
	if runtime.GOARCH == "amd64" {
		want["Agent.OSArchitecture"] = "X64"
	}
	for k, v := range want {
		if caps[k] != v {
			t.Errorf("capability %s = %q, want %q", k, caps[k], v)
		}
	}
	for _, k := range []string{"AGENTSCALER_TEST_HIDDEN", "AGENTSCALER_TEST_ALSO_HIDDEN", "AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_CLIENTSECRET"} {
		if v, ok := caps[k]; ok {
			t.Errorf("capability %s = %q reported; it must not be", k, v)
		}
	}

	hidden := f.emu.QueueJob(testPool, adoemu.Job{Demands: []string{"AGENTSCALER_TEST_HIDDEN"}})
	visible := f.emu.QueueJob(testPool, adoemu.Job{Demands: []string{"AGENTSCALER_TEST_VISIBLE -equals yes", "Agent.Version -gtVersion 4.275.0"}})
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit code %d, stderr %s", code, r.stderr.String())
	}
	if rq := f.request(visible); rq.Result != "succeeded" {
		t.Errorf("job demanding a reported capability: %+v", rq)
	}
	if rq := f.request(hidden); rq.State() != adoemu.StateWaiting {
		t.Errorf("job demanding an ignored variable: %+v, want waiting", rq)
	}
	if out := r.stdout.String(); strings.Contains(out, testPAT) || strings.Contains(out, "client-secret-value") {
		t.Errorf("stdout holds a secret:\n%s", out)
	}
}

func TestSystemCapabilitiesFromEnviron(t *testing.T) {
	caps := systemCapabilities([]string{"PATH=/bin", "AZP_TOKEN=t", "azp_token_file=/f", "Noise=a=b", "SKIP=1", "=C:", "BROKEN"},
		config{name: "a1", version: "4.1.0", ignore: " skip ,"})
	want := map[string]string{"PATH": "/bin", "Noise": "a=b", "Agent.Name": "a1", "Agent.Version": "4.1.0",
		"Agent.OS": agentOS(), "Agent.OSArchitecture": agentArch()}
	if len(caps) != len(want) {
		t.Errorf("capabilities %v, want %v", caps, want)
	}
	for k, v := range want {
		if caps[k] != v {
			t.Errorf("%s = %q, want %q", k, caps[k], v)
		}
	}
}

// The run time comes from the job message; a bad one fails the job rather
// than hanging or panicking.
func TestRunTime(t *testing.T) {
	msg := func(v string) jobRequestMessage {
		return jobRequestMessage{Variables: map[string]variable{runSecondsVariable: {Value: v}}}
	}
	for v, want := range map[string]time.Duration{"1.5": 1500 * time.Millisecond, "0": 0, " 2 ": 2 * time.Second} {
		if got, err := msg(v).runTime(); err != nil || got != want {
			t.Errorf("runSeconds %q: %s, %v; want %s", v, got, err, want)
		}
	}
	for _, v := range []string{"-1", "soon", "NaN", "+Inf"} {
		if _, err := msg(v).runTime(); err == nil || !strings.Contains(err.Error(), runSecondsVariable) {
			t.Errorf("runSeconds %q: err %v, want one naming the variable", v, err)
		}
	}
	if got, err := (jobRequestMessage{}).runTime(); got != 0 || err != nil {
		t.Errorf("no variable: %s, %v; want 0", got, err)
	}
}
