package scaler

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// TestAzureDevOpsErrorsClassified: a failed Azure DevOps call is classified
// as one by the same Classify every failed action goes through, wrapped as
// the scaler wraps it.
func TestAzureDevOpsErrorsClassified(t *testing.T) {
	for _, tc := range []struct {
		err       *azuredevops.APIError
		retryable bool
		after     time.Duration
		reason    string
	}{
		{&azuredevops.APIError{Endpoint: azuredevops.EndpointAgentDelete, Status: 429, RetryAfter: 30 * time.Second}, true, 30 * time.Second, "throttled"},
		{&azuredevops.APIError{Endpoint: azuredevops.EndpointAgentDelete, Status: 401}, false, 0, "auth"},
		{&azuredevops.APIError{Endpoint: azuredevops.EndpointAgentDelete, Status: 503}, true, 0, "server_error"},
	} {
		err := fmt.Errorf("pool linux: Azure DevOps pool %q: %w", "Default", tc.err)
		retryable, after, reason := providers.Classify(err)
		if retryable != tc.retryable || after != tc.after || reason != tc.reason {
			t.Errorf("HTTP %d classified %v/%s/%q; want %v/%s/%q", tc.err.Status, retryable, after, reason, tc.retryable, tc.after, tc.reason)
		}
	}
}

// TestFailedUnregisterReportsWhy: an unregister Azure DevOps refuses is
// reported with Azure DevOps' reason, not as unknown.
func TestFailedUnregisterReportsWhy(t *testing.T) {
	f := newFixture(t, adoemu.Options{}, func(p *Policy) { p.Placeholder = false })
	logs := &syncbuf.Buffer{}
	f.s.log = slog.New(slog.NewTextHandler(logs, nil))
	f.emu.RegisterAgent("Default", adoemu.AgentInfo{Name: "linux-r3", Online: false})
	f.emu.FailNext(adoemu.EndpointDeleteAgent, http.StatusUnauthorized, 0)

	res, err := f.s.Reconcile(context.Background(), "linux")
	if err == nil || len(res.Failed) != 1 || res.Failed[0].Action.Kind != Unregister {
		t.Fatalf("reconcile: %v, failed %+v; want the unregister failed", err, res.Failed)
	}
	if retryable, _, reason := providers.Classify(res.Failed[0].Err); retryable || reason != "auth" {
		t.Errorf("failed unregister classified %v/%q, want permanent auth", retryable, reason)
	}
	if !strings.Contains(logs.String(), "reason=auth") {
		t.Errorf("the failure was not logged with its reason:\n%s", logs)
	}
}
