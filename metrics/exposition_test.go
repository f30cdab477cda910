package metrics

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agentscaler/agentscaler/metrics/metricstest"
)

// recordAll touches every method so every family has at least one series in
// the exposition; an empty vector is not exposed and would go unchecked.
func recordAll(m *Metrics) {
	m.WebhookRequest("azuredevops", "ms.vss-pipelines.job-state-changed-event", "accepted")
	m.WebhookLag("azuredevops", 800*time.Millisecond)
	m.SetWaitingJobs("linux", 3)
	m.SetAgents("linux", map[string]int{AgentStarting: 1, AgentBusy: 2})
	m.AddAgentSeconds("linux", map[string]int{AgentStarting: 1, AgentIdle: 3, AgentBusy: 2}, 30*time.Second)
	m.ProviderOperation("docker", "create", ResultOK)
	m.ProviderOperation("docker", "create", "image")
	m.QueuedToCreated("linux", 2*time.Second)
	m.CreatedToOnline("linux", 15*time.Second)
	m.QueuedToAssigned("linux", 20*time.Second)
	m.JobDuration("linux", 12*time.Minute)
	m.Reconcile("linux", "ok", 150*time.Millisecond)
	m.AzureDevOpsRequest("jobrequests", 200)
	m.AzureDevOpsRequest("agents", 0)
	m.RateLimitRemaining(187.5)
	m.JobRequestPages(12, 3, false)
	m.SetPoolLimits("linux", 10, 1)
	m.SetParallelJobs(2, 5)
}

// scrape serves the handler on loopback and returns the exposition body and
// its content type.
func scrape(t *testing.T, m *Metrics) (string, string) {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("read scrape: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("scrape status %d: %s", resp.StatusCode, buf.String())
	}
	return buf.String(), resp.Header.Get("Content-Type")
}

func TestExpositionFamiliesAndTypes(t *testing.T) {
	m := New("test")
	recordAll(m)
	body, ctype := scrape(t, m)
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("content type = %q, want the Prometheus text format", ctype)
	}

	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	want := map[string]dto.MetricType{
		"agentscaler_webhook_requests_total":                       dto.MetricType_COUNTER,
		"agentscaler_webhook_delivery_lag_seconds":                 dto.MetricType_HISTOGRAM,
		"agentscaler_waiting_jobs":                                 dto.MetricType_GAUGE,
		"agentscaler_agents":                                       dto.MetricType_GAUGE,
		"agentscaler_provider_operations_total":                    dto.MetricType_COUNTER,
		"agentscaler_job_queued_to_agent_created_seconds":          dto.MetricType_HISTOGRAM,
		"agentscaler_agent_created_to_online_seconds":              dto.MetricType_HISTOGRAM,
		"agentscaler_job_queued_to_assigned_seconds":               dto.MetricType_HISTOGRAM,
		"agentscaler_job_duration_seconds":                         dto.MetricType_HISTOGRAM,
		"agentscaler_reconcile_duration_seconds":                   dto.MetricType_HISTOGRAM,
		"agentscaler_reconciles_total":                             dto.MetricType_COUNTER,
		"agentscaler_azuredevops_requests_total":                   dto.MetricType_COUNTER,
		"agentscaler_azuredevops_ratelimit_remaining":              dto.MetricType_GAUGE,
		"agentscaler_azuredevops_jobrequest_pages_total":           dto.MetricType_COUNTER,
		"agentscaler_azuredevops_jobrequest_lists_truncated_total": dto.MetricType_COUNTER,
		"agentscaler_pool_max_agents":                              dto.MetricType_GAUGE,
		"agentscaler_pool_min_idle":                                dto.MetricType_GAUGE,
		"agentscaler_parallel_jobs":                                dto.MetricType_GAUGE,
		"agentscaler_build_info":                                   dto.MetricType_GAUGE,
		"go_goroutines":                                            dto.MetricType_GAUGE,
		"promhttp_metric_handler_requests_total":                   dto.MetricType_COUNTER,
	}
	for name, typ := range want {
		f, ok := fams[name]
		if !ok {
			t.Errorf("exposition lacks %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
	}
	if got := fams["agentscaler_azuredevops_ratelimit_remaining"].GetMetric()[0].GetGauge().GetValue(); got != 187.5 {
		t.Errorf("scraped ratelimit_remaining = %v, want 187.5", got)
	}
}

// TestExpositionPassesLint runs client_golang's port of the promtool linter
// on the gathered families; it needs no binary, so it always runs.
func TestExpositionPassesLint(t *testing.T) {
	m := New("test")
	recordAll(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestExpositionPassesPromtool feeds the scraped exposition to the real
// `promtool check metrics`, the check docs/architecture.md names for the metrics.
func TestExpositionPassesPromtool(t *testing.T) {
	promtool := metricstest.Binary(t, "promtool", "prometheus")
	m := New("test")
	recordAll(m)
	body, _ := scrape(t, m)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("run promtool: %v", err)
		}
		t.Errorf("promtool check metrics failed (%v):\n%s", err, out)
	}
}
