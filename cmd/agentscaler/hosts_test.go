//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/scaler"
)

// hostConn is one running host of the binary as a client sees it.
type hostConn interface {
	// request sends an HTTP request the way this host receives one.
	request(t *testing.T, method, path, body, user, password string) (status int, respBody string)
	// timer fires this host's timer trigger and reports whether the host
	// counted the invocation a success; ok is false when the host runs its
	// own timer and cannot be fired from outside.
	timer(t *testing.T) (succeeded, ok bool)
}

// serverHost is `serve`, on its own or under the Functions host.
type serverHost struct {
	url       string
	functions bool
}

func (h serverHost) request(t *testing.T, method, path, body, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// timer posts what the Functions host posts when the reconcile function's
// timer fires.
func (h serverHost) timer(t *testing.T) (bool, bool) {
	t.Helper()
	if !h.functions {
		return false, false
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "functions", "testdata", "functions-timer.json"))
	if err != nil {
		t.Fatal(err)
	}
	status, body := h.request(t, http.MethodPost, "/reconcile", string(b), "", "")
	var answer struct{ Logs []string }
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("timer answer %q: %v", body, err)
	}
	return status == http.StatusOK && slices.Equal(answer.Logs, []string{"pool linux: ok"}), true
}

// lambdaHost is the binary under the Lambda runtime loop.
type lambdaHost struct{ api *runtimeAPI }

func (h lambdaHost) request(t *testing.T, method, path, body, user, password string) (int, string) {
	t.Helper()
	return httpAnswer(t, h.api.invoke(t, urlEvent(t, method, path, body, user, password), 30*time.Second))
}

func (h lambdaHost) timer(t *testing.T) (bool, bool) {
	t.Helper()
	return h.api.invoke(t, fixture(t, "scheduled-event.json", nil), 30*time.Second).kind == "response", true
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// waitListening returns the address the serve process logged.
func waitListening(t *testing.T, p *process) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := listeningRE.FindStringSubmatch(p.out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-p.exit:
			p.exit <- err
			t.Fatalf("serve exited: %v\n%s", err, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve never listened:\n%s", p.out.String())
	return ""
}

// functionsHostArgs reads the command line host.json gives the binary.
func functionsHostArgs(t *testing.T) []string {
	t.Helper()
	var h struct {
		CustomHandler struct {
			Description struct {
				DefaultExecutablePath string   `json:"defaultExecutablePath"`
				Arguments             []string `json:"arguments"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if h.CustomHandler.Description.DefaultExecutablePath != "agentscaler" {
		t.Fatalf("host.json runs %q, not the agentscaler binary", h.CustomHandler.Description.DefaultExecutablePath)
	}
	return h.CustomHandler.Description.Arguments
}

// freeLoopbackPort returns a port that was free a moment ago, as the
// Functions host picks one for its custom handler.
func freeLoopbackPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func serverEnv(configPath string) []string {
	return []string{"AGENTSCALER_CONFIG=" + configPath, "AZP_TOKEN=" + testPAT, "HOOK_PASSWORD=" + testPassword}
}

// TestHostsAnswerAlike sends the same service hook to the binary under each
// host and expects the same answers and the same effect: one instance for
// the queued job. Under Functions and Lambda the host's timer trigger then
// picks up a job whose hook was lost.
func TestHostsAnswerAlike(t *testing.T) {
	bin := buildBinary(t, packageTags)
	hosts := []struct {
		name  string
		start func(t *testing.T, configPath string) (hostConn, *process)
	}{
		{"serve", func(t *testing.T, configPath string) (hostConn, *process) {
			p := startProcess(t, bin, serverEnv(configPath), "serve", "--addr", "127.0.0.1:0")
			return serverHost{url: "http://" + waitListening(t, p)}, p
		}},
		{"functions", func(t *testing.T, configPath string) (hostConn, *process) {
			env := append(serverEnv(configPath), "FUNCTIONS_CUSTOMHANDLER_PORT="+freeLoopbackPort(t))
			p := startProcess(t, bin, env, functionsHostArgs(t)...)
			return serverHost{url: "http://" + waitListening(t, p), functions: true}, p
		}},
		{"lambda", func(t *testing.T, configPath string) (hostConn, *process) {
			api, p := startLambda(t, bin, configPath)
			return lambdaHost{api: api}, p
		}},
	}
	for _, hc := range hosts {
		t.Run(hc.name, func(t *testing.T) {
			emu := startEmulator(t, adoemu.Options{})
			h, proc := hc.start(t, writeConfig(t, emu.OrgURL(), ""))
			creates := func() string {
				_, m := h.request(t, http.MethodGet, "/api/metrics", "", "", "")
				return metricValue(m, createsOK)
			}
			if hc.name == "serve" {
				// serve reconciles once at start; let that pass finish so the
				// hook's reconcile is the one that creates the instance.
				eventually(t, "the start-up reconcile", func() bool { return hasAgent(emu, scaler.PlaceholderName("linux")) })
			}
			if v := creates(); v != "" && v != "0" {
				t.Fatalf("%s = %s before any job", createsOK, v)
			}

			hook, id := capturedHook(t, emu, "docker")
			type answer struct {
				status int
				body   string
			}
			var got []answer
			for _, password := range []string{"wrong", testPassword, testPassword} { // bad, first, repeated delivery
				s, b := h.request(t, http.MethodPost, "/api/webhook/azuredevops", string(hook), "azdo", password)
				got = append(got, answer{s, b})
			}
			want := []answer{{401, "unauthorized\n"}, {200, "accepted\n"}, {200, "already accepted\n"}}
			if !slices.Equal(got, want) {
				t.Errorf("answers %v, want %v", got, want)
			}
			eventually(t, "the instance for the queued job", func() bool { return creates() == "1" })
			if name := fmt.Sprintf("name=linux-r%d", id); !strings.Contains(proc.out.String(), name) {
				t.Errorf("no action logged for %s", name)
			}

			// A job whose hook never arrives waits for the timer.
			capturedHook(t, emu, "docker")
			succeeded, ok := h.timer(t)
			if !ok {
				return // serve runs its own timer (reconcile.interval), tested elsewhere
			}
			if !succeeded {
				t.Error("the timer invocation was not counted a success")
			}
			if v := creates(); v != "2" {
				t.Errorf("after the timer %s = %q, want 2", createsOK, v)
			}
		})
	}
}
