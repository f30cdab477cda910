package main

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/demo/bbemu"
	"github.com/agentscaler/agentscaler/internal/demo/ghemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/memory"
)

// TestOneProcessServesEverySource: one configuration with a pool of each CI
// system, served by one process: an Azure DevOps job queued (its service
// hook) gets an agent named for its request, a GitHub job queued (its
// signed workflow_job hook) a runner named for the job, and the Bitbucket
// pool its warm runner; each system's events reach its own pools only.
func TestOneProcessServesEverySource(t *testing.T) {
	ado := startEmulator(t, adoemu.Options{})

	const ghSecret, ghToken = "every-source-hook-secret", "every-source-gh-token"
	gh := ghemu.New(ghemu.Options{Org: "acme", Secret: []byte(ghSecret)})
	ghSrv := httptest.NewServer(gh.Handler())
	t.Cleanup(ghSrv.Close)
	gh.SetURL(ghSrv.URL)

	bb := bbemu.New(bbemu.Options{ClientID: "bb-consumer", ClientSecret: bbConsumerSecret})
	bbSrv := httptest.NewServer(bb)
	t.Cleanup(bbSrv.Close)

	env := func(k string) string {
		if v := testEnv(k); v != "" {
			return v
		}
		if v := bbTestEnv(k); v != "" {
			return v
		}
		return map[string]string{"GH_TOKEN": ghToken, "GH_HOOK": ghSecret}[k]
	}
	cfgPath := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, e2eConfigHead+`github:
  url: %[2]s
  org: acme
  token_env: GH_TOKEN
  webhook_secret_env: GH_HOOK
bitbucket:
  url: %[3]s
  token_url: %[3]s/site/oauth2/access_token
  oauth: {client_id_env: BB_ID, client_secret_env: BB_SECRET}
pools:
  - name: ado
    azure_pool: Default
    provider: memory
    agent: {image: azp-agent:linux}
  - name: gh
    source: github
    provider: memory
    agent: {image: gh-runner:linux}
  - name: bb
    source: bitbucket
    provider: memory
    min_idle: 1
    agent: {image: bb-runner:linux}
    bitbucket: {workspace: %[4]q, labels: [linux], interval: 10s}
`, ado.OrgURL(), ghSrv.URL, bbSrv.URL, bbWorkspaceUUID), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{cfg.Pools[0].System(), cfg.Pools[1].System(), cfg.Pools[2].System()}; !slices.Equal(got, []string{"azuredevops", "github", "bitbucket"}) {
		t.Fatalf("pool systems %v", got)
	}
	mem := memory.New(memory.Options{})
	logs := &syncbuf.Buffer{}
	a, err := newApp(t.Context(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), env, deps{providers: map[string]providers.Provider{"memory": mem}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.hooks["bitbucket"]; ok || a.hooks["azuredevops"] == nil || a.hooks["github"] == nil {
		t.Fatalf("hook routes %v: want azuredevops and github (Bitbucket sends none)", slices.Sorted(maps.Keys(a.hooks)))
	}
	srv := httptest.NewServer(a.handler())
	t.Cleanup(srv.Close)
	t.Cleanup(a.scaler.Stop)
	ado.Subscribe(adoemu.Subscription{URL: srv.URL + "/api/webhook/azuredevops", Username: "azdo", Password: testPassword})
	gh.Subscribe(srv.URL + "/api/webhook/github")

	request := ado.QueueJob("Default", adoemu.Job{})
	job := gh.Queue("acme/app", "self-hosted", "linux")
	a.scaler.Tick("bb") // serve's per-pool timer: Bitbucket has no hook

	want := []string{"ado-r" + fmt.Sprint(request), "bb-w1", "gh-j" + fmt.Sprint(job)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var names []string
		for _, in := range mem.All() {
			names = append(names, in.Name)
		}
		slices.Sort(names)
		if slices.Equal(names, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances %v, want %v; logs:\n%s", names, want, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.scaler.Wait()
	// No timer runs here: the Bitbucket pool was reconciled by its tick
	// alone, never by the other systems' hooks.
	if n := strings.Count(logs.String(), "msg=reconciled pool=bb "); n != 1 {
		t.Errorf("the bitbucket pool was reconciled %d times, want once (its tick)", n)
	}
	for _, secret := range []string{testPAT, testPassword, ghToken, ghSecret, bbConsumerSecret} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a secret appears in the logs")
		}
	}
}
