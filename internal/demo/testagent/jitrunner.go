package testagent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/ghemu"
)

// The variables a GitHub just-in-time runner reads its configuration from:
// the encoded JIT config (a credential), or a file holding it (the Docker
// provider's secret file).
const (
	envJITConfig     = "ACTIONS_RUNNER_INPUT_JITCONFIG"
	envJITConfigFile = envJITConfig + "_FILE"
)

// jitMode reports whether the environment asks for a GitHub JIT runner.
func jitMode(getenv func(string) string) bool {
	return getenv(envJITConfig) != "" || getenv(envJITConfigFile) != ""
}

// runJIT plays a GitHub just-in-time runner against internal/demo/ghemu:
// it takes one job its labels match, holds it for the time the emulator
// names, completes it and exits (the emulator removes the runner, as GitHub
// removes a JIT runner after its job). The config is never printed. It
// waits for a job up to AZP_AGENT_IDLE_TIMEOUT (default 10m).
func runJIT(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) int {
	raw := getenv(envJITConfig)
	if path := getenv(envJITConfigFile); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "jit runner: reading %s failed\n", envJITConfigFile)
			return 1
		}
		raw = string(b)
	}
	cfg, err := ghemu.DecodeJITConfig(raw)
	if err != nil {
		fmt.Fprintln(stderr, "jit runner: the configuration is not readable")
		return 1
	}
	idle := defaultIdleTimeout
	if d, err := time.ParseDuration(getenv("AZP_AGENT_IDLE_TIMEOUT")); err == nil && d > 0 {
		idle = d
	}
	post := func(path string) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.URL, "/")+path, nil)
		req.Header.Set("Authorization", "RemoteAuth "+cfg.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
		}
		return resp, nil
	}
	fmt.Fprintf(stdout, "runner %s: listening for jobs\n", cfg.Name)
	deadline := time.Now().Add(idle)
	for {
		resp, err := post("/_runner/acquire")
		switch {
		case ctx.Err() != nil:
			return 2
		case err != nil:
		case resp.StatusCode == http.StatusOK:
			var a ghemu.Acquire
			err := json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err != nil {
				fmt.Fprintln(stderr, "jit runner: bad job message")
				return 1
			}
			fmt.Fprintf(stdout, "runner %s: running job %d\n", cfg.Name, a.JobID)
			select {
			case <-time.After(time.Duration(a.Seconds) * time.Second):
			case <-ctx.Done():
				return 2
			}
			if r, err := post("/_runner/complete"); err != nil || r.StatusCode/100 != 2 {
				fmt.Fprintln(stderr, "jit runner: completing the job failed")
				return 1
			}
			fmt.Fprintf(stdout, "runner %s: job %d completed\n", cfg.Name, a.JobID)
			return 0
		case resp.StatusCode == http.StatusUnauthorized:
			fmt.Fprintln(stderr, "jit runner: the runner was removed")
			return 1
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(stdout, "jit runner: no job within the idle timeout")
			return 0
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return 2
		}
	}
}
