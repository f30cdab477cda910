package metrics

import (
	"net/http/httptest"
	"testing"

	"github.com/agentscaler/agentscaler/metrics/metricstest"
)

// TestRealPrometheusScrapes runs the Prometheus server (Debian package
// `prometheus`) against the handler on loopback and reads values back through
// its query API: the exposition is not only well-formed but ingested.
func TestRealPrometheusScrapes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	m := New("test")
	recordAll(m)
	target := httptest.NewServer(m.Handler())
	defer target.Close()

	prom := metricstest.StartPrometheus(t, target.URL+"/")
	prom.WaitFor(t, `up{job="agentscaler"}`, "1")
	for _, c := range []struct{ query, want string }{
		{`agentscaler_azuredevops_ratelimit_remaining`, "187.5"},
		{`agentscaler_agents{pool="linux",state="busy"}`, "2"},
		{`count(agentscaler_agents{pool="linux"})`, "4"},
		{`agentscaler_agent_seconds_total{pool="linux",state="idle"}`, "90"},
		{`count(agentscaler_agent_seconds_total{pool="linux"})`, "3"},
		{`agentscaler_job_queued_to_agent_created_seconds_count{pool="linux"}`, "1"},
		{`agentscaler_provider_operations_total{provider="docker",operation="create",result="image"}`, "1"},
	} {
		prom.WaitFor(t, c.query, c.want)
	}
}
