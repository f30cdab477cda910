//go:build linux

package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkColdStart measures, for the binary built as `make package` builds
// it, the time from process start to the first successful answer, and the
// resident memory (VmRSS) right after it, under the Functions custom-handler
// host and under Lambda. Run it with -benchtime=20x or so: each iteration
// starts a process.
//
//	go test -run '^$' -bench ColdStart -benchtime 20x ./cmd/agentscaler
func BenchmarkColdStart(b *testing.B) {
	bin := buildBinary(b, packageTags)
	if info, err := os.Stat(bin); err == nil {
		b.Logf("binary: %d bytes", info.Size())
	}
	// Environment mode, no file to read; nothing here calls Azure DevOps.
	env := []string{
		"AZP_URL=http://127.0.0.1:1/contoso", "AZP_POOL=Default", "AZP_TOKEN=" + testPAT,
		"AGENTSCALER_PROVIDER=memory", "AGENTSCALER_WEBHOOK_PASSWORD=" + testPassword,
	}

	b.Run("functions", func(b *testing.B) {
		client := &http.Client{Timeout: 5 * time.Second}
		var total time.Duration
		var rss int64
		for b.Loop() {
			port := freeLoopbackPort(b)
			cmd := exec.Command(bin, "serve")
			cmd.Env = append(env, "FUNCTIONS_CUSTOMHANDLER_PORT="+port)
			start := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			url := "http://127.0.0.1:" + port + "/api/healthz"
			for deadline := start.Add(30 * time.Second); ; {
				resp, err := client.Get(url)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				if time.Now().After(deadline) {
					b.Fatalf("no answer within 30s: %v", err)
				}
				time.Sleep(time.Millisecond)
			}
			total += time.Since(start)
			rss += vmRSS(b, cmd.Process.Pid)
			stop(cmd)
		}
		report(b, total, rss)
	})

	b.Run("lambda", func(b *testing.B) {
		api := newRuntimeAPI(b)
		event := urlEvent(b, "GET", "/api/healthz", "", "", "")
		var total time.Duration
		var rss int64
		for b.Loop() {
			cmd := exec.Command(bin)
			cmd.Env = append(env, "AWS_LAMBDA_RUNTIME_API="+api.addr())
			start := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			api.mu.Lock()
			api.proc = cmd.Process
			api.mu.Unlock()
			if status, _ := httpAnswer(b, api.invoke(b, event, 30*time.Second)); status != http.StatusOK {
				b.Fatalf("healthz: %d", status)
			}
			total += time.Since(start)
			rss += vmRSS(b, cmd.Process.Pid) // frozen after its answer, as Lambda leaves it
			stop(cmd)
		}
		report(b, total, rss)
	})
}

func report(b *testing.B, total time.Duration, rssKiB int64) {
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-answer")
	b.ReportMetric(float64(rssKiB)/float64(b.N), "KiB-RSS")
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(b *testing.B, pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
