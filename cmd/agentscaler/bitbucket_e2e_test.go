package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/demo/bbemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

const (
	bbConsumerSecret = "bb-consumer-5ecret-do-not-log"
	bbWorkspaceUUID  = "{0f9a6c3e-1111-4222-8333-444455556666}"
)

func bbTestEnv(k string) string {
	return map[string]string{"BB_ID": "bb-consumer", "BB_SECRET": bbConsumerSecret}[k]
}

// bbPool is a Bitbucket pool of the end-to-end test and the runs-on labels
// of its steps.
type bbPool struct {
	name   string
	labels string // its own runner labels, YAML
	max    int
	runsOn []string
}

var bbPools = []bbPool{
	{"bbdock", "[docker]", 4, []string{"self.hosted", "linux", "docker"}},
	{"bbgpu", "[gpu]", 2, []string{"self.hosted", "gpu"}},
}

// TestBitbucketDockerEndToEnd runs Bitbucket pools on a real engine against
// the emulator: serve creates runners in Bitbucket and their containers
// (this binary as the stand-in runner, with the engine's socket and a
// shared working directory mounted), each step runs on a runner whose
// labels it names, runners stay within min_idle and max_agents and drain
// back to min_idle after the stream, and, with min_idle 0, to nothing in
// Bitbucket or Docker, where, as in Bitbucket, a step with no online runner
// of its labels fails. It logs how long steps waited for a runner with
// min_idle 1 and 2.
func TestBitbucketDockerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs containers")
	}
	const image = "agentscaler-e2e-runner:test"
	eng, prov := testAgentImage(t, image)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	emu := bbemu.New(bbemu.Options{ClientID: "bb-consumer", ClientSecret: bbConsumerSecret, OfflineAfter: 3 * time.Second})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	base := srv.URL
	shared := t.TempDir()
	began := time.Now()
	unmatched := emu.QueueStep([]string{"self.hosted", "windows"}, time.Second) // no pool's runners carry windows

	secrets := map[string]bool{bbConsumerSecret: true} // every runner secret ever handed out
	inspected := map[string]bool{}
	// check looks at every runner and container of ours: within the cap,
	// never showing a secret in docker inspect. It returns, by pool, the
	// runners and the idle online ones.
	check := func() (runners, idle map[string]int) {
		runners, idle = map[string]int{}, map[string]int{}
		for _, r := range emu.Runners() {
			secrets[r.Secret] = true
			pool, _, _ := strings.Cut(r.Name, "-w")
			runners[pool]++
			if r.Status == "ONLINE" && !r.Busy {
				idle[pool]++
			}
		}
		for _, p := range bbPools {
			list, err := prov.List(ctx, p.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) > p.max || runners[p.name] > p.max {
				t.Errorf("pool %s: %d containers, %d runners, above max_agents %d", p.name, len(list), runners[p.name], p.max)
			}
			for _, in := range list {
				key := in.Name + in.Created.String()
				if inspected[key] {
					continue
				}
				raw, err := eng.Inspect(ctx, in.Name)
				if err != nil {
					continue // removed since
				}
				inspected[key] = true
				for s := range secrets {
					if bytes.Contains(raw, []byte(s)) {
						t.Errorf("docker inspect %s shows a secret", in.Name)
					}
				}
				if !bytes.Contains(raw, []byte(strings.TrimPrefix(eng.Host, "unix://"))) || !bytes.Contains(raw, []byte(shared)) {
					t.Errorf("container %s lacks the engine socket or shared_dir mount", in.Name)
				}
			}
		}
		return runners, idle
	}
	until := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("%s: not within %s; runners %+v", what, limit, emu.Runners())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	for _, minIdle := range []int{1, 2, 0} {
		cfgPath := filepath.Join(t.TempDir(), "agentscaler.yaml")
		body := fmt.Sprintf(`bitbucket:
  url: %[1]s
  token_url: %[1]s/site/oauth2/access_token
  oauth: {client_id_env: BB_ID, client_secret_env: BB_SECRET}
reconcile:
  interval: 1m
pools:
`, base)
		for _, p := range bbPools {
			body += fmt.Sprintf(`  - name: %s
    source: bitbucket
    provider: docker
    min_idle: %d
    max_agents: %d
    agent: {image: %s, env: {BITBUCKET_URL: %q}}
    bitbucket: {workspace: %q, labels: %s, interval: 10s}
    docker: {host: %s, network: host, pull: never, docker_socket: true, shared_dir: %s}
`, p.name, min(minIdle, p.max), p.max, image, base, bbWorkspaceUUID, p.labels, eng.Host, shared)
		}
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(cfgPath, bbTestEnv)
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncbuf.Buffer{}
		addr, stopServe := startApp(t, cfg, slog.New(slog.NewTextHandler(logs, nil)), bbTestEnv)

		// Warm: min_idle runners online and idle in each pool.
		until(fmt.Sprintf("min_idle %d: warm runners", minIdle), time.Minute, func() bool {
			runners, idle := check()
			for _, p := range bbPools {
				if idle[p.name] != minIdle || runners[p.name] != minIdle {
					return false
				}
			}
			return true
		})

		// A stream of steps: a docker step every 2 s (3 s each) and a gpu
		// step every 6 s.
		var queued []string
		for i := range 9 {
			queued = append(queued, emu.QueueStep(bbPools[0].runsOn, 3*time.Second))
			if i%3 == 0 {
				queued = append(queued, emu.QueueStep(bbPools[1].runsOn, 2*time.Second))
			}
			check()
			time.Sleep(2 * time.Second)
		}
		byUUID := func() map[string]bbemu.Step {
			m := map[string]bbemu.Step{}
			for _, s := range emu.Steps() {
				m[s.UUID] = s
			}
			return m
		}
		if minIdle == 0 {
			// With no runner online, Bitbucket fails each step as it is
			// queued, and nothing tells the autoscaler about it: no runner
			// is made.
			steps := byUUID()
			for _, id := range queued {
				if s := steps[id]; !s.Failed || !s.Assigned.IsZero() {
					t.Errorf("min_idle 0: step %s ran on %q or did not fail (failed: %v)", id, s.Runner, s.Failed)
				}
			}
			if runners, _ := check(); len(runners) != 0 {
				t.Errorf("min_idle 0: runners made during the stream: %v", runners)
			}
			t.Logf("min_idle 0: all %d steps failed as queued, with no online runner of their labels", len(queued))
		} else {
			until(fmt.Sprintf("min_idle %d: the stream done", minIdle), 2*time.Minute, func() bool {
				check()
				steps := byUUID()
				for _, id := range queued {
					if steps[id].Done.IsZero() {
						return false
					}
				}
				return true
			})
			var waits []time.Duration
			steps := byUUID()
			for _, id := range queued {
				s := steps[id]
				waits = append(waits, s.Assigned.Sub(s.Queued))
				if s.Failed {
					t.Errorf("step %s failed on %s", id, s.Runner)
				}
				for _, l := range s.Labels {
					if !slices.Contains(s.RunnerLabels, l) {
						t.Errorf("step %s (runs-on %v) ran on %s with labels %v", id, s.Labels, s.Runner, s.RunnerLabels)
					}
				}
				want := bbPools[0].name
				if slices.Contains(s.Labels, "gpu") {
					want = bbPools[1].name
				}
				if !strings.HasPrefix(s.Runner, want+"-w") {
					t.Errorf("step %s (runs-on %v) ran on %s, not a runner of %s", id, s.Labels, s.Runner, want)
				}
			}
			slices.Sort(waits)
			t.Logf("min_idle %d: %d steps waited for a runner: median %s, max %s, %d of them under 1 s", minIdle, len(waits),
				median(waits).Round(10*time.Millisecond), waits[len(waits)-1].Round(10*time.Millisecond),
				len(slices.DeleteFunc(slices.Clone(waits), func(d time.Duration) bool { return d >= time.Second })))
		}
		// Drain: back to min_idle idle runners, each with its container.
		until(fmt.Sprintf("min_idle %d: drain", minIdle), time.Minute, func() bool {
			runners, idle := check()
			for _, p := range bbPools {
				list, err := prov.List(ctx, p.name)
				if err != nil || len(list) != minIdle || runners[p.name] != minIdle || idle[p.name] != minIdle {
					return false
				}
			}
			return true
		})

		resp, err := http.Get("http://" + addr + "/api/metrics")
		if err != nil {
			t.Fatal(err)
		}
		exposition, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(exposition, []byte(`agentscaler_source_requests_total{endpoint="runners",source="bitbucket",status="200"}`)) {
			t.Errorf("/api/metrics lacks the Bitbucket calls")
		}
		if err := stopServe(); err != nil {
			t.Errorf("serve: %v", err)
		}
		for s := range secrets {
			if strings.Contains(logs.String(), s) || bytes.Contains(exposition, []byte(s)) {
				t.Errorf("min_idle %d: a secret appears in the logs or /api/metrics", minIdle)
			}
		}
		if t.Failed() {
			t.Fatalf("min_idle %d failed; logs:\n%s", minIdle, tail(logs.String(), 60))
		}
	}
	// After min_idle 0: nothing of ours in Bitbucket or Docker.
	if rs := emu.Runners(); len(rs) != 0 {
		t.Errorf("runners left in Bitbucket: %+v", rs)
	}
	names, err := eng.Created(ctx, began)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range bbPools {
		if list, _ := prov.List(ctx, p.name); len(list) != 0 {
			t.Errorf("pool %s: containers left: %+v", p.name, list)
		}
	}
	if s := emu.Steps()[0]; s.UUID != unmatched || !s.Assigned.IsZero() || !s.Failed {
		t.Errorf("the windows step ran on %q or did not fail (failed: %v)", s.Runner, s.Failed)
	}
	t.Logf("%d runner containers in all", len(names))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
