package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/ghemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
	"github.com/agentscaler/agentscaler/sources/github"
)

// TestGitHubDockerEndToEnd runs GitHub pools on a real engine: the
// emulator queues 20 jobs with mixed labels and delivers every webhook
// twice to two serve apps sharing the engine; one job's queued hook is lost
// and the timer's resync must find it. Each servable job runs exactly once
// on a runner of the pool its labels route to, the others on none, and no
// runner or container is left afterwards.
func TestGitHubDockerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs containers")
	}
	const image = "agentscaler-e2e-runner:test"
	eng, prov := testAgentImage(t, image)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	const secret, token = "e2e-hook-secret", "e2e-gh-token"
	// The one job asking for exactly self-hosted and x64 has its queued
	// hook lost: decided on the job, so it is lost whenever it is sent.
	lostLabels := []string{"self-hosted", "x64"}
	emu := ghemu.New(ghemu.Options{Org: "acme", Secret: []byte(secret), Twice: true, RunTime: time.Second,
		Lose: func(j ghemu.JobState, action string) bool {
			return action == "queued" && slices.Equal(j.Labels, lostLabels)
		}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emuSrv := &http.Server{Handler: emu.Handler()}
	go emuSrv.Serve(ln)
	defer emuSrv.Close()
	emu.SetURL("http://" + ln.Addr().String())

	env := func(k string) string { return map[string]string{"GH_TOKEN": token, "GH_HOOK": secret}[k] }
	cfgPath := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, `github:
  url: %[1]s
  org: acme
  repos: [acme/app]
  token_env: GH_TOKEN
  webhook_secret_env: GH_HOOK
reconcile:
  interval: 2s
pools:
  - name: cpu
    source: github
    provider: docker
    max_agents: 8
    agent: {image: %[2]s}
    docker: {host: %[3]s, network: host, pull: never, token_file: true}
  - name: gpu
    source: github
    labels: [gpu]
    provider: docker
    max_agents: 4
    agent: {image: %[2]s}
    docker: {host: %[3]s, network: host, pull: never, token_file: true}
`, "http://"+ln.Addr().String(), image, eng.Host), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, env)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var stops []func() error
	for i := range 2 { // two processes' worth of apps on one engine and one GitHub
		addr, stop := startApp(t, cfg, log.With("app", i), env)
		stops = append(stops, stop)
		emu.Subscribe("http://" + addr + "/api/webhook/github")
	}
	defer func() {
		for _, stop := range stops {
			if err := stop(); err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), "encoded_jit_config") {
			t.Errorf("a secret appears in the logs")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()

	want := map[int64]string{} // job -> the pool that must run it, "" for none
	queue := func(pool string, labels ...string) int64 {
		id := emu.Queue("acme/app", labels...)
		want[id] = pool
		return id
	}
	for range 9 {
		queue("cpu", "self-hosted", "linux")
	}
	for range 5 {
		queue("gpu", "self-hosted", "GPU")
	}
	for range 2 {
		queue("", "self-hosted", "tpu")
	}
	for range 2 {
		queue("", "windows")
	}
	queue("cpu", "self-hosted")
	lost := emu.Queue("acme/app", lostLabels...) // its hook never comes
	want[lost] = "cpu"
	if len(want) != 20 {
		t.Fatalf("queued %d jobs, want 20", len(want))
	}

	// inspected: the configuration reaches each runner as a file only, so
	// docker inspect, which anyone with the engine's socket can run, never
	// shows it.
	inspected := map[string]bool{}
	inspect := func() {
		for _, pool := range []string{"cpu", "gpu"} {
			list, _ := prov.List(ctx, pool)
			for _, in := range list {
				if key := in.Name + in.Created.String(); !inspected[key] {
					inspected[key] = true
					if raw, err := eng.Inspect(ctx, in.Name); err == nil && bytes.Contains(raw, []byte(github.EnvJITConfig+"=")) {
						t.Errorf("docker inspect %s shows the runner's configuration", in.Name)
					}
				}
			}
		}
	}
	for {
		inspect()
		finished := 0
		for id, pool := range want {
			if j, _ := emu.Job(id); pool != "" && j.Status == "completed" {
				finished++
			}
		}
		if finished == 16 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of 16 servable jobs finished in time; %s", finished, ghLeft(t, emu, prov, want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	poolLabels := map[string][]string{"cpu": nil, "gpu": {"gpu"}}
	matching := func(runner string, labels []string) bool {
		pool, _, _ := strings.Cut(runner, "-")
		offered, ok := poolLabels[pool]
		return ok && github.Takes(github.Offered(offered), labels)
	}
	var waits []time.Duration
	for id, pool := range want {
		j, _ := emu.Job(id)
		switch {
		case pool == "" && (j.Runs != 0 || j.Status != "queued"):
			t.Errorf("job %d (labels %v) served by nobody ran: %+v", id, j.Labels, j)
		case pool != "" && j.Runs != 1:
			t.Errorf("job %d ran %d times", id, j.Runs)
		case pool != "" && !matching(j.RunnerName, j.Labels):
			// GitHub hands a job to any runner carrying its labels: a gpu
			// runner may run a cpu job, never the reverse.
			t.Errorf("job %d (labels %v) ran on %s, a runner of no matching pool", id, j.Labels, j.RunnerName)
		case pool != "" && id != lost:
			waits = append(waits, j.Started.Sub(j.Created))
		}
	}
	// Nothing left: runners unregistered, containers gone.
	deadline, _ := ctx.Deadline()
	for len(emu.Runners()) > 0 || len(ghInstances(t, prov)) > 0 {
		if time.Until(deadline) < 10*time.Second {
			t.Fatalf("left behind: %s", ghLeft(t, emu, prov, want))
		}
		time.Sleep(500 * time.Millisecond)
	}
	slices.Sort(waits)
	calls, total := emu.Calls(), 0
	for _, n := range calls {
		total += n
	}
	t.Logf("hook queued to runner running: median %v, max %v over %d jobs; GitHub API calls %d (%.1f per servable job, two apps): %v",
		waits[len(waits)/2].Round(time.Millisecond), waits[len(waits)-1].Round(time.Millisecond), len(waits), total, float64(total)/16, calls)
}

// ghInstances lists the e2e pools' instances.
func ghInstances(t *testing.T, prov *docker.Provider) []providers.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []providers.Instance
	for _, pool := range []string{"cpu", "gpu"} {
		list, err := prov.List(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, list...)
	}
	return out
}

// ghLeft says what is not done: the runners registered and their state,
// the instances and theirs, and the servable jobs not completed.
func ghLeft(t *testing.T, emu *ghemu.Emulator, prov *docker.Provider, want map[int64]string) string {
	var b strings.Builder
	b.WriteString("runners:")
	for _, r := range emu.RunnerStates() {
		fmt.Fprintf(&b, " %s(id %d online=%v busy=%v)", r.Name, r.ID, r.Online, r.Busy)
	}
	b.WriteString("; instances:")
	for _, in := range ghInstances(t, prov) {
		fmt.Fprintf(&b, " %s(%s exit %d, created %s ago)", in.Name, in.State, in.ExitCode, time.Since(in.Created).Round(time.Second))
	}
	b.WriteString("; jobs not completed:")
	ids := slices.Sorted(maps.Keys(want))
	for _, id := range ids {
		if j, _ := emu.Job(id); want[id] != "" && j.Status != "completed" {
			fmt.Fprintf(&b, " %d(%s labels %v runner %q)", id, j.Status, j.Labels, j.RunnerName)
		}
	}
	return b.String()
}
