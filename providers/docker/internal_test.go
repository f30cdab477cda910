package docker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/errdefs"

	"github.com/agentscaler/agentscaler/providers"
)

// These tests cover the mappings an engine in good health rarely shows
// (OOM kills, dead containers, engine-side failures); the engine tests in
// provider_test.go cover the common ones for real.

func TestInstanceOf(t *testing.T) {
	const created, started, finished = "2026-11-23T07:00:00.1Z", "2026-11-23T07:00:01.2Z", "2026-11-23T07:05:00.3Z"
	labels := providers.Labels(providers.AgentSpec{Pool: "linux", Request: 42})
	inspect := func(st container.State) container.InspectResponse {
		return container.InspectResponse{
			ContainerJSONBase: &container.ContainerJSONBase{Name: "/linux-r42", Created: created, State: &st},
			Config:            &container.Config{Labels: labels},
		}
	}
	zero := "0001-01-01T00:00:00Z"
	tests := []struct {
		name     string
		state    container.State
		want     providers.State
		code     int
		reason   string // a phrase of it; empty means none
		finished bool
	}{
		{"created", container.State{Status: "created", StartedAt: zero, FinishedAt: zero}, providers.StatePending, 0, "", false},
		{"refused to start", container.State{Status: "created", ExitCode: 127, Error: `exec: "/x": no such file`, StartedAt: zero, FinishedAt: zero},
			providers.StateFailed, 127, "no such file", false},
		{"running", container.State{Status: "running", Running: true, StartedAt: started, FinishedAt: zero}, providers.StateRunning, 0, "", false},
		{"paused", container.State{Status: "paused", StartedAt: started, FinishedAt: zero}, providers.StateRunning, 0, "", false},
		{"exited 0", container.State{Status: "exited", StartedAt: started, FinishedAt: finished}, providers.StateExited, 0, "", true},
		{"exited 3", container.State{Status: "exited", ExitCode: 3, StartedAt: started, FinishedAt: finished}, providers.StateFailed, 3, "code 3", true},
		{"oom killed", container.State{Status: "exited", ExitCode: 137, OOMKilled: true, StartedAt: started, FinishedAt: finished},
			providers.StateFailed, 137, "OOMKilled", true},
		{"oom killed child, exit 0", container.State{Status: "exited", OOMKilled: true, StartedAt: started, FinishedAt: finished},
			providers.StateFailed, 0, "OOMKilled", true},
		{"dead", container.State{Status: "dead", Dead: true, ExitCode: 1, StartedAt: started, FinishedAt: finished}, providers.StateFailed, 1, "dead", true},
		{"removing after exit", container.State{Status: "removing", StartedAt: started, FinishedAt: finished}, providers.StateExited, 0, "", true},
		{"removing while running", container.State{Status: "removing", StartedAt: started, FinishedAt: zero}, providers.StateRunning, 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := instanceOf(inspect(tt.state))
			if in.Name != "linux-r42" || in.Pool != "linux" || in.Request != 42 {
				t.Errorf("name/pool/request = %q/%q/%d", in.Name, in.Pool, in.Request)
			}
			if in.State != tt.want || in.ExitCode != tt.code {
				t.Errorf("state %q code %d, want %q %d", in.State, in.ExitCode, tt.want, tt.code)
			}
			if (tt.reason == "") != (in.Reason == "") || !strings.Contains(in.Reason, tt.reason) {
				t.Errorf("reason %q, want one saying %q", in.Reason, tt.reason)
			}
			if in.Created.IsZero() || in.Finished.IsZero() == tt.finished {
				t.Errorf("created %v finished %v; want created set and finished set: %v", in.Created, in.Finished, tt.finished)
			}
			if tt.state.StartedAt == started && !in.Started.Equal(time.Date(2026, 11, 23, 7, 0, 1, 2e8, time.UTC)) {
				t.Errorf("started = %v, want %s", in.Started, started)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err       error
		retryable bool
		reason    string
	}{
		{context.DeadlineExceeded, true, "timeout"},
		{fmt.Errorf("create: %w", context.Canceled), false, "canceled"},
		{errdefs.NotFound(errors.New("no such container")), false, "not_found"},
		{errdefs.InvalidParameter(errors.New("Range of CPUs is from 0.01 to 2.00")), false, "invalid_spec"},
		{errdefs.Unauthorized(errors.New("denied")), false, "auth"},
		{errdefs.Forbidden(errors.New("denied")), false, "auth"},
		{errdefs.Conflict(errors.New("name in use")), true, "conflict"},
		{errdefs.System(errors.New("500 Internal Server Error")), true, "engine"},
		{errdefs.Unavailable(errors.New("503")), true, "engine"},
		{errors.New("read: connection reset by peer"), true, "engine"},
		{permanent("image_not_found", errors.New("gone")), false, "image_not_found"},
		{fmt.Errorf("wrapped: %w", retryable("pulling", time.Second, errors.New("slow"))), true, "pulling"},
	}
	for _, tt := range tests {
		e := classify(tt.err)
		if e.Retryable != tt.retryable || e.Reason != tt.reason {
			t.Errorf("classify(%v) = retryable %v, reason %q; want %v, %q", tt.err, e.Retryable, e.Reason, tt.retryable, tt.reason)
		}
	}
}

func TestPullFailure(t *testing.T) {
	tests := []struct {
		msg       string
		retryable bool
		reason    string
	}{
		{"unauthorized: authentication required", false, "auth"},
		{"pull access denied for x, repository does not exist or may require 'docker login'", false, "auth"},
		{"manifest for x:1 not found: manifest unknown", false, "image_not_found"},
		{"toomanyrequests: You have reached your pull rate limit", true, "throttled"},
		{"Get \"https://r.example.com/v2/\": net/http: TLS handshake timeout", true, "pull"},
	}
	for _, tt := range tests {
		e := classify(pullFailure("r.example.com/x:1", errors.New(tt.msg)))
		if e.Retryable != tt.retryable || e.Reason != tt.reason {
			t.Errorf("pull error %q: retryable %v, reason %q; want %v, %q", tt.msg, e.Retryable, e.Reason, tt.retryable, tt.reason)
		}
	}
}

func TestFailRedactsSecrets(t *testing.T) {
	p := &Provider{}
	secret := "pat-7c1d5e9f0a"
	err := p.fail(opCreate, "linux-r1", fmt.Errorf("engine said: invalid env AZP_TOKEN=%s: %w", secret, context.DeadlineExceeded), map[string]string{"AZP_TOKEN": secret})
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "AZP_TOKEN=[redacted]") {
		t.Errorf("error = %q; want the secret replaced", err)
	}
	if retry, _, reason := providers.Classify(err); !retry || reason != "timeout" {
		t.Errorf("the redacted error lost its class: retryable %v, reason %q", retry, reason)
	}
	if s := fmt.Sprintf("%v %+v %#v", Auth{"bot", secret}, Options{Auth: &Auth{"bot", secret}}, Auth{"bot", secret}); strings.Contains(s, secret) {
		t.Errorf("formatting Auth shows the password: %s", s)
	}
}

func TestDockerConfigFile(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	write := func(t *testing.T, content string) string {
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	path := write(t, `{
		"auths": {
			"https://index.docker.io/v1/": {"auth": "`+enc("hubuser:hub:pass")+`"},
			"registry.example.com:5000": {"auth": "`+enc("ci:s3cret")+`"},
			"http://legacy.example.com/v2/": {"username": "old", "password": "school"},
			"helper.example.com": {}
		},
		"credsStore": "desktop"
	}`)
	p := &Provider{opts: Options{DockerConfig: path}}
	for ref, want := range map[string]registry.AuthConfig{
		"ubuntu:24.04":                                  {Username: "hubuser", Password: "hub:pass", ServerAddress: "docker.io"},
		"docker.io/library/ubuntu":                      {Username: "hubuser", Password: "hub:pass", ServerAddress: "docker.io"},
		"registry.example.com:5000/agents/azp:linux":    {Username: "ci", Password: "s3cret", ServerAddress: "registry.example.com:5000"},
		"legacy.example.com/agent":                      {Username: "old", Password: "school", ServerAddress: "legacy.example.com"},
		"registry.example.com/agents/azp:linux":         {}, // another port: another registry
		"helper.example.com/agent":                      {}, // held by a credential helper: anonymous
		"ghcr.io/agentscaler/agent@sha256:" + zeros(64): {},
	} {
		header, err := p.registryAuth(ref)
		if err != nil {
			t.Errorf("registryAuth(%s): %v", ref, err)
			continue
		}
		if want == (registry.AuthConfig{}) {
			if header != "" {
				t.Errorf("registryAuth(%s) sends credentials; want an anonymous pull", ref)
			}
			continue
		}
		got, err := registry.DecodeAuthConfig(header)
		if err != nil || *got != want {
			t.Errorf("registryAuth(%s) = %+v, %v; want %+v", ref, got, err, want)
		}
	}

	for content, says := range map[string]string{
		`{"auths": {"r.example.com": {"auth": "%%%"}}}`:                     `auths["r.example.com"].auth is not base64`,
		`{"auths": {"r.example.com": {"auth": "` + enc("no-colon") + `"}}}`: "user:password",
		`{"credsStore": "desktop", "auths": {"r.example.com": {}}}`:         "credential helpers",
		`not json`: "not a Docker config.json",
		`{"auths": {"r.example.com": {"auth": "` + enc("u:hunter2hunter2") + `` + `"}}, "x": [}`: "not a Docker config.json",
	} {
		_, err := readDockerConfig(write(t, content))
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("readDockerConfig(%s) = %v; want an error saying %q", content, err, says)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows a password: %v", err)
		}
	}
	if _, err := New(Options{DockerConfig: filepath.Join(t.TempDir(), "missing.json")}); err == nil {
		t.Errorf("New with a missing config file succeeded")
	}
}

func zeros(n int) string { return strings.Repeat("0", n) }
