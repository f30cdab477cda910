package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
)

// TestStrangerOnEveryRoute: through the real server, a caller without
// credentials gets 401, 404 or 405 on every route and method (GET and HEAD
// of the public health and metrics routes answer 200), headers beyond the
// bound get 431 and a body beyond it 413, and none of it costs an Azure
// DevOps call or a log line at info or above. Authenticated hooks are
// answered meanwhile; their latency under the flood is logged.
func TestStrangerOnEveryRoute(t *testing.T) {
	emu := startEmulator(t, adoemu.Options{})
	s := startServe(t, emu)
	eventually(t, "the start-up reconcile", func() bool { return strings.Contains(s.logs.String(), "msg=reconciled") })
	callsBefore, logsBefore := emu.Calls(), loggedAboveDebug(s.logs.String())

	paths := []string{"/api/webhook/azuredevops", "/api/webhook/github", "/api/webhook/", "/api/metrics", "/api/healthz",
		"/reconcile", "/", "/api/nothing", "/api/webhook/azuredevops/../../reconcile", "/%2e%2e/reconcile"}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "BREW"}
	client := &http.Client{Timeout: 30 * time.Second}
	send := func(method, path string, header http.Header, body []byte) int {
		t.Helper()
		req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(req.Header, header)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	statuses := map[string]int{}
	flood := func(rounds int) {
		for range rounds {
			for _, path := range paths {
				for _, method := range methods {
					code := send(method, path, nil, []byte(`{"id":"x"}`))
					public := (path == "/api/metrics" || path == "/api/healthz") && (method == "GET" || method == "HEAD")
					switch {
					case public && code == http.StatusOK:
					case !public && slices.Contains([]int{401, 404, 405}, code):
					default:
						t.Errorf("%s %s without credentials: %d", method, path, code)
					}
					statuses[fmt.Sprint(code)]++
				}
			}
		}
	}
	flood(20)
	if code := send("POST", "/api/webhook/azuredevops", http.Header{"X-Big": {strings.Repeat("a", 128<<10)}}, nil); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("128 KiB of headers: %d, want 431", code)
	}
	big := bytes.Repeat([]byte("a"), 2<<20)
	if code := send("POST", "/api/webhook/azuredevops", nil, big); code != http.StatusUnauthorized {
		t.Errorf("2 MiB body without credentials: %d, want 401", code)
	}
	authed := http.Header{}
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth("azdo", testPassword)
	authed.Set("Authorization", r.Header.Get("Authorization"))
	if code := send("POST", "/api/webhook/azuredevops", authed, big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB authenticated body: %d, want 413", code)
	}
	if calls := emu.Calls(); !maps.Equal(calls, callsBefore) {
		t.Errorf("Azure DevOps calls %v after the flood, %v before", calls, callsBefore)
	}
	if lines := loggedAboveDebug(s.logs.String()); len(lines) != len(logsBefore) {
		t.Errorf("the flood logged %d lines at info or above:\n%s", len(lines)-len(logsBefore), strings.Join(lines[len(logsBefore):], "\n"))
	}

	// Authenticated hooks are served while the flood goes on.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var latencies []time.Duration
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("POST", s.url+"/api/webhook/azuredevops",
				strings.NewReader(waitingHook(fmt.Sprintf("5d0c1e2a-0000-4000-8000-%012d", i), emu.OrgURL()+"/")))
			req.SetBasicAuth("azdo", testPassword)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("authenticated hook answered %d during the flood", resp.StatusCode)
			}
			mu.Lock()
			latencies = append(latencies, time.Since(start))
			mu.Unlock()
		}
	})
	flood(10)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	if len(latencies) > 0 {
		t.Logf("stranger requests by status %v; %d authenticated hooks alongside: p50 %s, max %s",
			statuses, len(latencies), latencies[len(latencies)/2].Round(time.Microsecond), latencies[len(latencies)-1].Round(time.Microsecond))
	}
}
