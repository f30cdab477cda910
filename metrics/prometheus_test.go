package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/syncbuf"
)

// TestRealPrometheusScrapes runs the Prometheus server (Debian package
// `prometheus`) against the handler on loopback and reads values back through
// its query API: the exposition is not only well-formed but ingested.
func TestRealPrometheusScrapes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		const hint = "prometheus not found; install it with `apt-get install prometheus` (Debian) or from prometheus.io"
		if os.Getenv("CI") != "" {
			t.Fatal(hint)
		}
		t.Skip(hint)
	}

	m := New("test")
	recordAll(m)
	target := httptest.NewServer(m.Handler())
	defer target.Close()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	targetHost := strings.TrimPrefix(target.URL, "http://")
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: agentscaler
    metrics_path: /
    static_configs:
      - targets: ['%s']
`, targetHost)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var logs syncbuf.Buffer
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed by the cancelled context; the exit error is expected
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	}()

	api := "http://" + addr + "/api/v1/query?query="
	// Wait for a first scrape: up is 1 once the target answered.
	if v := pollQuery(ctx, t, api+url.QueryEscape(`up{job="agentscaler"}`)); v != "1" {
		t.Fatalf("up = %q, want 1", v)
	}
	for _, c := range []struct{ query, want string }{
		{`agentscaler_azuredevops_ratelimit_remaining`, "187.5"},
		{`agentscaler_agents{pool="linux",state="busy"}`, "2"},
		{`count(agentscaler_agents{pool="linux"})`, "4"},
		{`agentscaler_job_queued_to_agent_created_seconds_count{pool="linux"}`, "1"},
		{`agentscaler_provider_operations_total{provider="docker",operation="create",result="image"}`, "1"},
	} {
		if got := pollQuery(ctx, t, api+url.QueryEscape(c.query)); got != c.want {
			t.Errorf("%s = %q, want %q", c.query, got, c.want)
		}
	}
}

// pollQuery asks the Prometheus query API until the instant vector has a
// sample, and returns the first sample's value; it fails the test when ctx
// ends first.
func pollQuery(ctx context.Context, t *testing.T, u string) string {
	t.Helper()
	var last string
	for {
		if v, err := queryOnce(ctx, u); err == nil && v != "" {
			return v
		} else if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no sample from %s (last error: %s)", u, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func queryOnce(ctx context.Context, u string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("build query: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("query prometheus: %w", err)
	}
	defer resp.Body.Close()
	// The shape of /api/v1/query for an instant vector.
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("decode query answer: %w", err)
	}
	if out.Status != "success" {
		return "", fmt.Errorf("query status %q", out.Status)
	}
	if len(out.Data.Result) == 0 {
		return "", nil
	}
	v, _ := out.Data.Result[0].Value[1].(string)
	return v, nil
}

// freeLoopbackAddr returns a loopback address with a port free at the time of
// the call, for a child process that cannot report the port it picked.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
