package main

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/identityendpoint"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// TestEntraManagedIdentity: with azuredevops.entra naming a user-assigned
// managed identity, the app asks the host's identity endpoint (a local one,
// as Azure Functions offers) for an Azure DevOps token, reconciles against
// the emulator with it, where no PAT is accepted, and hands the agent the
// same short-lived token.
func TestEntraManagedIdentity(t *testing.T) {
	e := identityendpoint.Start(t)
	clientID := identityendpoint.FreshClientID()
	token := e.Token(strings.TrimSuffix(azuredevops.EntraScope, "/.default"), clientID, "")
	emu := startEmulator(t, adoemu.Options{BearerToken: token})
	emu.QueueJob("Default", adoemu.Job{Demands: []string{"docker"}})

	path := writeConfig(t, emu.OrgURL(), "")
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body = []byte(strings.Replace(string(body), "token_env: AZP_TOKEN", "entra: {method: managed-identity, client_id: "+clientID+"}", 1))
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "AZP_TOKEN" {
			return "" // the emulator's PAT is not the app's to use
		}
		return testEnv(k)
	}
	cfg, err := config.Load(path, getenv)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var agentTokens []string
	mem := memory.New(memory.Options{StartLatency: func(spec providers.AgentSpec) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		agentTokens = append(agentTokens, spec.Secrets[providers.EnvToken])
		return time.Hour
	}})
	var logs syncbuf.Buffer
	a, err := newApp(t.Context(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), getenv, deps{providers: map[string]providers.Provider{"memory": mem}})
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range a.scaler.RunAll(t.Context()) {
		if err != nil {
			t.Fatalf("reconcile of pool %s: %v\nidentity endpoint saw %+v", a.scaler.Pools()[i], err, e.Requests())
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(agentTokens) != 1 || agentTokens[0] != token {
		t.Errorf("the agent was created with %d token(s), want one: the managed identity's Azure DevOps token", len(agentTokens))
	}
	want := identityendpoint.Request{Resource: strings.TrimSuffix(azuredevops.EntraScope, "/.default"), ClientID: clientID}
	if got := e.Requests(); len(got) != 1 || got[0] != want {
		t.Errorf("identity endpoint requests %+v, want one for %+v, the token then cached", got, want)
	}
	out := logs.String()
	for _, says := range []string{"for=azuredevops.entra", "method=managed-identity", "client_id=" + clientID, "Azure credential in use"} {
		if !strings.Contains(out, says) {
			t.Errorf("logs do not say %s:\n%s", says, out)
		}
	}
	if strings.Contains(out, token[strings.LastIndexByte(token, '.')+1:]) {
		t.Errorf("logs reveal the token:\n%s", out)
	}
}
