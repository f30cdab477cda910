package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const hookScript = "infra/azure/create-service-hook.sh"

const (
	// Quotes, a backslash, a dollar and spaces: whatever the secrets hold, they must arrive intact.
	testPAT      = `pat"with\back$slash`
	testPassword = `pass word 'with' "quotes" $HOME \n`
	projectID    = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
)

type hookRequest struct {
	Method, Path, Query, Auth string
	Body                      map[string]any
}

// fakeAzureDevOps stands in for the two Azure DevOps REST resources the
// script uses, with their payload shapes: GET _apis/projects/{project}, and
// _apis/hooks/subscriptions (list, create, replace), which, as the service
// does, masks the basic-auth password when it lists subscriptions.
type fakeAzureDevOps struct {
	mu       sync.Mutex
	requests []hookRequest
	subs     map[string]map[string]any
	fail     func(r *http.Request) (int, string) // a status and body to answer instead, when it returns non-zero
}

func (f *fakeAzureDevOps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	req := hookRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req.Body); err != nil {
			http.Error(w, `{"message":"the body is not JSON"}`, http.StatusBadRequest)
			return
		}
	}
	f.requests = append(f.requests, req)
	if f.fail != nil {
		if status, msg := f.fail(r); status != 0 {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, msg)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	enc := json.NewEncoder(w)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/org/_apis/projects/My Project":
		_ = enc.Encode(map[string]any{"id": projectID, "name": "My Project", "state": "wellFormed", "visibility": "private"})
	case r.Method == http.MethodGet && r.URL.Path == "/org/_apis/hooks/subscriptions":
		list := []map[string]any{}
		for _, s := range f.subs {
			masked := maps.Clone(s)
			inputs := maps.Clone(s["consumerInputs"].(map[string]any))
			inputs["basicAuthPassword"] = "********"
			masked["consumerInputs"] = inputs
			list = append(list, masked)
		}
		_ = enc.Encode(map[string]any{"count": len(list), "value": list})
	case r.Method == http.MethodPost && r.URL.Path == "/org/_apis/hooks/subscriptions":
		id := fmt.Sprintf("a0c8ed9e-0000-0000-0000-%012d", len(f.subs)+1)
		stored := maps.Clone(req.Body) // the recorded request stays as sent
		stored["id"], stored["status"] = id, "enabled"
		f.subs[id] = stored
		_ = enc.Encode(stored)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/org/_apis/hooks/subscriptions/"):
		id := strings.TrimPrefix(r.URL.Path, "/org/_apis/hooks/subscriptions/")
		if _, ok := f.subs[id]; !ok || req.Body["id"] != id {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"subscription not found"}`)
			return
		}
		f.subs[id] = req.Body
		_ = enc.Encode(req.Body)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"message":"no route %s %s"}`, r.Method, r.URL.Path)
	}
}

func (f *fakeAzureDevOps) take() []hookRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.requests
	f.requests = nil
	return out
}

type hookRun struct {
	code           int
	stdout, stderr string
	argv           string // every curl and jq command line the script ran
}

// runHook runs the script with env, with curl and jq wrapped to record
// their command lines: what ps and /proc/<pid>/cmdline would show.
func runHook(t *testing.T, env map[string]string) hookRun {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "argv.log")
	for _, tool := range []string{"curl", "jq"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install %s)", tool, tool)
		}
		wrapper := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"%s $*\" >>'%s'\nexec '%s' \"$@\"\n", tool, log, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repo, hookScript))
	cmd.Env = []string{"PATH=" + dir + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	argv, _ := os.ReadFile(log)
	return hookRun{code: code, stdout: stdout.String(), stderr: stderr.String(), argv: string(argv)}
}

func hookEnv(url string) map[string]string {
	return map[string]string{
		"AZP_URL":                      url + "/org",
		"AZDO_PROJECT":                 "My Project",
		"AGENTSCALER_HOOK_URL":         "https://agentscaler-x.azurewebsites.net/api/webhook/azuredevops",
		"AZP_TOKEN":                    testPAT,
		"AGENTSCALER_WEBHOOK_PASSWORD": testPassword,
	}
}

func assertNoSecrets(t *testing.T, run hookRun) {
	t.Helper()
	for what, text := range map[string]string{"stdout": run.stdout, "stderr": run.stderr, "a command line": run.argv} {
		for name, secret := range map[string]string{"the PAT": testPAT, "the webhook password": testPassword} {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %s:\n%s", name, what, text)
			}
		}
	}
	if !strings.Contains(run.argv, "curl ") {
		t.Errorf("no curl command line was recorded; the check above saw nothing")
	}
}

func TestCreateServiceHookCreatesThenUpdates(t *testing.T) {
	fake := &fakeAzureDevOps{subs: map[string]map[string]any{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	env := hookEnv(srv.URL)

	run := runHook(t, env)
	if run.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", run.code, run.stderr)
	}
	assertNoSecrets(t, run)
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+testPAT))
	reqs := fake.take()
	var calls []string
	for _, r := range reqs {
		calls = append(calls, r.Method+" "+r.Path)
		if r.Auth != wantAuth {
			t.Errorf("%s %s: Authorization %q, want basic auth with an empty user and the PAT", r.Method, r.Path, r.Auth)
		}
		if !strings.Contains(r.Query, "api-version=7.1") {
			t.Errorf("%s %s: query %q, want api-version=7.1", r.Method, r.Path, r.Query)
		}
	}
	want := []string{"GET /org/_apis/projects/My Project", "GET /org/_apis/hooks/subscriptions", "POST /org/_apis/hooks/subscriptions"}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	body, _ := json.Marshal(reqs[2].Body)
	wantBody := map[string]any{
		"publisherId": "pipelines", "eventType": "ms.vss-pipelines.job-state-changed-event",
		"resourceVersion": "5.1-preview.1", "consumerId": "webHooks", "consumerActionId": "httpRequest",
		"publisherInputs": map[string]any{"projectId": projectID},
		"consumerInputs": map[string]any{
			"url":               env["AGENTSCALER_HOOK_URL"],
			"basicAuthUsername": "azdo", "basicAuthPassword": testPassword,
			"resourceDetailsToSend": "minimal", "messagesToSend": "none", "detailedMessagesToSend": "none",
		},
	}
	wantJSON, _ := json.Marshal(wantBody)
	if string(body) != string(wantJSON) {
		t.Errorf("subscription body:\n%s\nwant:\n%s", body, wantJSON)
	}
	idRE := regexp.MustCompile(`created service hook subscription (\S+):`)
	m := idRE.FindStringSubmatch(run.stdout)
	if m == nil || fake.subs[m[1]] == nil {
		t.Fatalf("stdout %q does not name the created subscription", run.stdout)
	}

	// Again, with a new password and user: the same subscription is replaced, not a second one added.
	env["AGENTSCALER_WEBHOOK_USERNAME"] = "hooks"
	run = runHook(t, env)
	if run.code != 0 {
		t.Fatalf("second run: exit %d\nstderr: %s", run.code, run.stderr)
	}
	assertNoSecrets(t, run)
	reqs = fake.take()
	last := reqs[len(reqs)-1]
	if last.Method != http.MethodPut || last.Path != "/org/_apis/hooks/subscriptions/"+m[1] {
		t.Fatalf("second run ended with %s %s, want PUT of subscription %s", last.Method, last.Path, m[1])
	}
	inputs, _ := last.Body["consumerInputs"].(map[string]any)
	if len(fake.subs) != 1 || inputs["basicAuthUsername"] != "hooks" || inputs["basicAuthPassword"] != testPassword {
		t.Errorf("after the second run: %d subscriptions, consumer inputs %v", len(fake.subs), inputs)
	}
	if !strings.Contains(run.stdout, "updated service hook subscription "+m[1]) {
		t.Errorf("stdout %q, want it to say the subscription was updated", run.stdout)
	}
}

func TestCreateServiceHookErrors(t *testing.T) {
	fake := &fakeAzureDevOps{subs: map[string]map[string]any{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	cases := []struct {
		name   string
		env    func(map[string]string)
		fail   func(*http.Request) (int, string)
		stderr []string
		calls  int
	}{
		{name: "missing PAT", env: func(e map[string]string) { delete(e, "AZP_TOKEN") },
			stderr: []string{"AZP_TOKEN is not set", "Service Hooks (Read & write)"}, calls: 0},
		{name: "missing password", env: func(e map[string]string) { e["AGENTSCALER_WEBHOOK_PASSWORD"] = "" },
			stderr: []string{"AGENTSCALER_WEBHOOK_PASSWORD is not set"}, calls: 0},
		{name: "plain http to another host", env: func(e map[string]string) { e["AZP_URL"] = "http://dev.azure.example/org" },
			stderr: []string{"AZP_URL must be an https:// URL"}, calls: 0},
		{name: "refused PAT", fail: func(*http.Request) (int, string) { return http.StatusUnauthorized, "" },
			stderr: []string{"HTTP 401", "Project and Team (Read)"}, calls: 1},
		{name: "sign-in page", fail: func(*http.Request) (int, string) { return http.StatusNonAuthoritativeInfo, "<html>sign in</html>" },
			stderr: []string{"HTTP 203", "the PAT was refused"}, calls: 1},
		{name: "error echoing the password",
			fail: func(r *http.Request) (int, string) {
				if r.Method != http.MethodPost {
					return 0, ""
				}
				msg, _ := json.Marshal(map[string]string{"message": "input basicAuthPassword '" + testPassword + "' is invalid"})
				return http.StatusBadRequest, string(msg)
			},
			stderr: []string{"HTTP 400", "input basicAuthPassword '<redacted>' is invalid"}, calls: 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := hookEnv(srv.URL)
			if c.env != nil {
				c.env(env)
			}
			fake.mu.Lock()
			fake.fail = c.fail
			fake.mu.Unlock()
			run := runHook(t, env)
			if run.code == 0 {
				t.Fatalf("exit 0, want a failure\nstdout: %s", run.stdout)
			}
			for _, want := range c.stderr {
				if !strings.Contains(run.stderr, want) {
					t.Errorf("stderr %q, want it to say %q", run.stderr, want)
				}
			}
			for name, secret := range map[string]string{"the PAT": testPAT, "the webhook password": testPassword} {
				if strings.Contains(run.stderr+run.stdout+run.argv, secret) {
					t.Errorf("%s appears in the output or a command line", name)
				}
			}
			if n := len(fake.take()); n != c.calls {
				t.Errorf("%d requests, want %d", n, c.calls)
			}
		})
	}
}

func TestCreateServiceHookScriptPassesNoSecretAsAnArgument(t *testing.T) {
	text := read(t, hookScript)
	// curl's -u/--user with a variable would put the PAT on its command line.
	if m := regexp.MustCompile(`(?m)(^|\s)(-u|--user)(\s|=)\S*\$`).FindString(text); m != "" {
		t.Errorf("%s passes credentials with %q; read them from a config (-K/--config) instead", hookScript, m)
	}
	for _, secret := range []string{"AZP_TOKEN", "AGENTSCALER_WEBHOOK_PASSWORD"} {
		if regexp.MustCompile(`--arg\w* \w+ "?\$\{?` + secret).MatchString(text) {
			t.Errorf("%s hands %s to jq as an argument; read it with $ENV in the filter", hookScript, secret)
		}
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		out, err := exec.Command(sc, "-s", "bash", filepath.Join(repo, hookScript)).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	} else {
		t.Log("shellcheck is not installed; make test's shellcheck step covers the script")
	}
}
