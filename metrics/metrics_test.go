package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// find gathers the registry and returns the series of family name whose
// labels include want, failing the test when there is none.
func find(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			return m
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return nil
}

func TestWebhookRequestCountsByLabels(t *testing.T) {
	m := New("test")
	m.WebhookRequest("azuredevops", "ms.vss-pipelines.job-state-changed-event", "accepted")
	m.WebhookRequest("azuredevops", "ms.vss-pipelines.job-state-changed-event", "accepted")
	m.WebhookRequest("azuredevops", "build.complete", "ignored")

	if got := testutil.ToFloat64(m.webhookRequests.WithLabelValues("azuredevops", "ms.vss-pipelines.job-state-changed-event", "accepted")); got != 2 {
		t.Errorf("accepted = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.webhookRequests.WithLabelValues("azuredevops", "build.complete", "ignored")); got != 1 {
		t.Errorf("ignored = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.webhookRequests); got != 2 {
		t.Errorf("series = %d, want 2", got)
	}
}

func TestSetAgentsZeroesStatesThatDisappear(t *testing.T) {
	m := New("test")
	m.SetAgents("linux", map[string]int{AgentIdle: 2, AgentBusy: 3, AgentStarting: 1})
	m.SetAgents("linux", map[string]int{AgentBusy: 1, "exploded": 7})

	want := map[string]float64{AgentStarting: 0, AgentIdle: 0, AgentBusy: 1, AgentOffline: 0}
	for state, n := range want {
		if got := testutil.ToFloat64(m.agents.WithLabelValues("linux", state)); got != n {
			t.Errorf("agents{state=%q} = %v, want %v", state, got, n)
		}
	}
	if got := testutil.CollectAndCount(m.agents); got != len(agentStates) {
		t.Errorf("series = %d, want %d (an unknown state must not add one)", got, len(agentStates))
	}
}

func TestGaugesOverwrite(t *testing.T) {
	m := New("test")
	m.SetWaitingJobs("linux", 5)
	m.SetWaitingJobs("linux", 2)
	m.RateLimitRemaining(180)
	m.RateLimitRemaining(140.5)
	m.SetPoolLimits("linux", 10, 2)
	m.SetPoolLimits("linux", 8, 0)
	m.SetParallelJobs(3, 5)

	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"waiting_jobs", m.waitingJobs.WithLabelValues("linux"), 2},
		{"ratelimit_remaining", m.rateLimit, 140.5},
		{"pool_max_agents", m.poolMaxAgents.WithLabelValues("linux"), 8},
		{"pool_min_idle", m.poolMinIdle.WithLabelValues("linux"), 0},
		{"parallel_jobs used", m.parallelJobs.WithLabelValues("used"), 3},
		{"parallel_jobs total", m.parallelJobs.WithLabelValues("total"), 5},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestProviderOperationResults(t *testing.T) {
	m := New("test")
	m.ProviderOperation("docker", "create", ResultOK)
	m.ProviderOperation("docker", "create", "image")
	m.ProviderOperation("docker", "create", "image")
	m.ProviderOperation("aci", "delete", "throttled")

	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"docker", "create", "ok"}, 1},
		{[]string{"docker", "create", "image"}, 2},
		{[]string{"aci", "delete", "throttled"}, 1},
	} {
		if got := testutil.ToFloat64(m.providerOps.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("provider_operations_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
}

func TestHistogramsRecordSeconds(t *testing.T) {
	m := New("test")
	for _, c := range []struct {
		name    string
		record  func(time.Duration)
		labels  map[string]string
		d1, d2  time.Duration
		wantSum float64
	}{
		{"agentscaler_job_queued_to_agent_created_seconds", func(d time.Duration) { m.QueuedToCreated("linux", d) }, map[string]string{"pool": "linux"}, 1500 * time.Millisecond, 3 * time.Second, 4.5},
		{"agentscaler_agent_created_to_online_seconds", func(d time.Duration) { m.CreatedToOnline("linux", d) }, map[string]string{"pool": "linux"}, 20 * time.Second, 40 * time.Second, 60},
		{"agentscaler_job_queued_to_assigned_seconds", func(d time.Duration) { m.QueuedToAssigned("linux", d) }, map[string]string{"pool": "linux"}, 30 * time.Second, time.Minute, 90},
		{"agentscaler_job_duration_seconds", func(d time.Duration) { m.JobDuration("linux", d) }, map[string]string{"pool": "linux"}, 2 * time.Hour, 30 * time.Minute, 9000},
		{"agentscaler_webhook_delivery_lag_seconds", func(d time.Duration) { m.WebhookLag("azuredevops", d) }, map[string]string{"source": "azuredevops"}, 250 * time.Millisecond, 2 * time.Minute, 120.25},
		// A negative lag (the sender's clock ahead of ours) counts as 0.
		{"agentscaler_webhook_delivery_lag_seconds", func(d time.Duration) { m.WebhookLag("other-source", d) }, map[string]string{"source": "other-source"}, -3 * time.Second, time.Second, 1},
	} {
		c.record(c.d1)
		c.record(c.d2)
		h := find(t, m.Registry(), c.name, c.labels).GetHistogram()
		if h.GetSampleCount() != 2 {
			t.Errorf("%s%v count = %d, want 2", c.name, c.labels, h.GetSampleCount())
		}
		if math.Abs(h.GetSampleSum()-c.wantSum) > 1e-9 {
			t.Errorf("%s%v sum = %v, want %v", c.name, c.labels, h.GetSampleSum(), c.wantSum)
		}
		// The smaller observation must land below the largest bucket: the
		// layout must cover the range the metric measures.
		lo := max(min(c.d1, c.d2), 0).Seconds()
		var below uint64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() >= lo {
				below = b.GetCumulativeCount()
				break
			}
		}
		if below < 1 {
			t.Errorf("%s: %vs fell outside every finite bucket", c.name, lo)
		}
	}
}

func TestJobDurationBucketsReachHours(t *testing.T) {
	m := New("test")
	m.JobDuration("linux", 5*time.Hour)
	h := find(t, m.Registry(), "agentscaler_job_duration_seconds", map[string]string{"pool": "linux"}).GetHistogram()
	var finite int
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() == 1 && !math.IsInf(b.GetUpperBound(), 1) {
			finite++
		}
	}
	if finite == 0 {
		t.Error("a 5 h job fell only into +Inf; buckets must reach hours")
	}
}

func TestReconcileCountsAndTimesByOutcome(t *testing.T) {
	m := New("test")
	m.Reconcile("linux", "ok", 200*time.Millisecond)
	m.Reconcile("linux", "ok", 300*time.Millisecond)
	m.Reconcile("linux", "error", 2*time.Second)

	if got := testutil.ToFloat64(m.reconciles.WithLabelValues("linux", "ok")); got != 2 {
		t.Errorf("reconciles_total{ok} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.reconciles.WithLabelValues("linux", "error")); got != 1 {
		t.Errorf("reconciles_total{error} = %v, want 1", got)
	}
	h := find(t, m.Registry(), "agentscaler_reconcile_duration_seconds", map[string]string{"pool": "linux", "outcome": "ok"}).GetHistogram()
	if h.GetSampleCount() != 2 || math.Abs(h.GetSampleSum()-0.5) > 1e-9 {
		t.Errorf("reconcile_duration{ok} count=%d sum=%v, want 2 and 0.5", h.GetSampleCount(), h.GetSampleSum())
	}
}

func TestAzureDevOpsRequestStatus(t *testing.T) {
	m := New("test")
	m.AzureDevOpsRequest("jobrequests", 200)
	m.AzureDevOpsRequest("jobrequests", 200)
	m.AzureDevOpsRequest("jobrequests", 429)
	m.AzureDevOpsRequest("agents", 0)    // no response: connection refused, timeout
	m.AzureDevOpsRequest("agents", 1234) // not an HTTP status

	for _, c := range []struct {
		endpoint, status string
		want             float64
	}{
		{"jobrequests", "200", 2},
		{"jobrequests", "429", 1},
		{"agents", "error", 1},
		{"agents", "other", 1},
	} {
		if got := testutil.ToFloat64(m.azdoRequests.WithLabelValues(c.endpoint, c.status)); got != c.want {
			t.Errorf("azuredevops_requests_total{%s,%s} = %v, want %v", c.endpoint, c.status, got, c.want)
		}
	}
}

func TestJobRequestPages(t *testing.T) {
	m := New("test")
	m.JobRequestPages(12, 3, false)
	m.JobRequestPages(12, 25, true)
	m.JobRequestPages(7, 1, false)
	for _, c := range []struct {
		what string
		c    prometheus.Collector
		want float64
	}{
		{"pages{12}", m.jobRequestPages.WithLabelValues("12"), 28},
		{"truncated{12}", m.jobRequestCuts.WithLabelValues("12"), 1},
		{"pages{7}", m.jobRequestPages.WithLabelValues("7"), 1},
		{"truncated{7}", m.jobRequestCuts.WithLabelValues("7"), 0},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.what, got, c.want)
		}
	}
	n, err := testutil.GatherAndCount(m.Registry(), "agentscaler_azuredevops_jobrequest_lists_truncated_total")
	if err != nil || n != 2 {
		t.Errorf("truncated series = %d (%v), want 2: one per pool that listed, zero or not", n, err)
	}
}

func TestForgetPoolDropsOnlyThatPool(t *testing.T) {
	m := New("test")
	for _, pool := range []string{"linux", "windows"} {
		m.SetWaitingJobs(pool, 1)
		m.SetAgents(pool, map[string]int{AgentBusy: 1})
		m.SetPoolLimits(pool, 4, 1)
		m.QueuedToCreated(pool, time.Second)
		m.CreatedToOnline(pool, time.Second)
		m.QueuedToAssigned(pool, time.Second)
		m.JobDuration(pool, time.Minute)
		m.Reconcile(pool, "ok", time.Second)
	}
	m.ForgetPool("windows")

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	linux := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if lp.GetName() != "pool" {
					continue
				}
				switch lp.GetValue() {
				case "windows":
					t.Errorf("%s still has a series for the forgotten pool", mf.GetName())
				case "linux":
					linux++
				}
			}
		}
	}
	// waiting, 4 agent states, max, min idle, 4 latency histograms, reconcile count and duration.
	if want := 1 + len(agentStates) + 2 + 4 + 2; linux != want {
		t.Errorf("linux series = %d, want %d", linux, want)
	}
}

func TestBuildInfo(t *testing.T) {
	m := New("1.2.3")
	s := find(t, m.Registry(), "agentscaler_build_info", map[string]string{"version": "1.2.3", "goversion": runtime.Version()})
	if s.GetGauge().GetValue() != 1 {
		t.Errorf("build_info = %v, want 1", s.GetGauge().GetValue())
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	// Each of these would dereference a nil registry if the guard were missing.
	m.WebhookRequest("azuredevops", "e", "accepted")
	m.WebhookLag("azuredevops", time.Second)
	m.SetWaitingJobs("linux", 1)
	m.SetAgents("linux", map[string]int{AgentIdle: 1})
	m.ProviderOperation("docker", "create", ResultOK)
	m.QueuedToCreated("linux", time.Second)
	m.CreatedToOnline("linux", time.Second)
	m.QueuedToAssigned("linux", time.Second)
	m.JobDuration("linux", time.Second)
	m.Reconcile("linux", "ok", time.Second)
	m.AzureDevOpsRequest("agents", 200)
	m.RateLimitRemaining(1)
	m.JobRequestPages(1, 1, true)
	m.SetPoolLimits("linux", 1, 0)
	m.SetParallelJobs(1, 1)
	m.ForgetPool("linux")

	if m.Registry() != nil {
		t.Error("Registry() of a nil Metrics is not nil")
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	body, status := get(t, srv.URL)
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	if strings.Contains(body, "agentscaler_") {
		t.Errorf("nil Metrics exposed agentscaler series:\n%s", body)
	}
}

func TestExternalLabelValuesAreCapped(t *testing.T) {
	m := New("test")
	for i := range 1000 {
		m.WebhookRequest("azuredevops", fmt.Sprintf("event-%d", i), "ignored")
	}
	if got, want := testutil.CollectAndCount(m.webhookRequests), maxLabelValues+1; got != want {
		t.Errorf("series after 1000 distinct events = %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(m.webhookRequests.WithLabelValues("azuredevops", otherValue, "ignored")); got != 1000-maxLabelValues {
		t.Errorf("other = %v, want %d", got, 1000-maxLabelValues)
	}
	// A value seen before the cap keeps its own series afterwards.
	m.WebhookRequest("azuredevops", "event-0", "ignored")
	if got := testutil.ToFloat64(m.webhookRequests.WithLabelValues("azuredevops", "event-0", "ignored")); got != 2 {
		t.Errorf("event-0 = %v, want 2", got)
	}
}

func TestLabelValueSanitised(t *testing.T) {
	m := New("test")
	// client_golang panics on invalid UTF-8 in a label value.
	m.ProviderOperation("docker", "create", "bad\xffreason")
	m.ProviderOperation("docker", "delete", "")
	m.ProviderOperation("docker", "list", strings.Repeat("é", 100))

	find(t, m.Registry(), "agentscaler_provider_operations_total", map[string]string{"operation": "create", "result": "bad\uFFFDreason"})
	find(t, m.Registry(), "agentscaler_provider_operations_total", map[string]string{"operation": "delete", "result": unknownValue})
	find(t, m.Registry(), "agentscaler_provider_operations_total", map[string]string{"operation": "list", "result": strings.Repeat("é", maxLabelLen/2)})
}

// TestSeriesBoundedByPoolsAndStates records what a busy day of jobs produces,
// from many goroutines, and checks the series count does not grow with the
// number of jobs: no label may carry anything per job.
func TestSeriesBoundedByPoolsAndStates(t *testing.T) {
	m := New("test")
	pools := []string{"linux", "windows", "gpu"}
	job := func(i int) {
		pool := pools[i%len(pools)]
		m.WebhookRequest("azuredevops", "ms.vss-pipelines.job-state-changed-event", "accepted")
		m.WebhookLag("azuredevops", time.Duration(i%500)*time.Millisecond)
		m.SetWaitingJobs(pool, i%7)
		m.SetAgents(pool, map[string]int{AgentStarting: i % 3, AgentIdle: i % 2, AgentBusy: i % 5})
		m.ProviderOperation("docker", "create", ResultOK)
		m.QueuedToCreated(pool, time.Duration(i)*time.Millisecond)
		m.CreatedToOnline(pool, time.Duration(i)*time.Millisecond)
		m.QueuedToAssigned(pool, time.Duration(i)*time.Millisecond)
		m.JobDuration(pool, time.Duration(i)*time.Second)
		m.Reconcile(pool, "ok", time.Duration(i)*time.Microsecond)
		m.AzureDevOpsRequest("jobrequests", 200)
		m.ProviderOperation("docker", "delete", ResultOK)
	}
	series := func() int {
		n, err := testutil.GatherAndCount(m.Registry(),
			"agentscaler_webhook_requests_total", "agentscaler_webhook_delivery_lag_seconds",
			"agentscaler_waiting_jobs", "agentscaler_agents", "agentscaler_provider_operations_total",
			"agentscaler_job_queued_to_agent_created_seconds", "agentscaler_agent_created_to_online_seconds",
			"agentscaler_job_queued_to_assigned_seconds", "agentscaler_job_duration_seconds",
			"agentscaler_reconcile_duration_seconds", "agentscaler_reconciles_total",
			"agentscaler_azuredevops_requests_total")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	for i := range len(pools) {
		job(i)
	}
	first := series()

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < 20000; i += 8 {
				job(i)
			}
		})
	}
	wg.Wait()

	if got := series(); got != first {
		t.Errorf("series after 20000 jobs = %d, after %d jobs = %d: something is labelled per job", got, len(pools), first)
	}
	if got, want := testutil.CollectAndCount(m.agents), len(pools)*len(agentStates); got != want {
		t.Errorf("agents series = %d, want pools x states = %d", got, want)
	}
	h := find(t, m.Registry(), "agentscaler_job_duration_seconds", map[string]string{"pool": "linux"}).GetHistogram()
	// job(0) before the burst, then every third of 0..19999.
	if want := uint64(1 + (20000+2)/3); h.GetSampleCount() != want {
		t.Errorf("linux job_duration count = %d, want %d (observations lost under concurrency)", h.GetSampleCount(), want)
	}
}

func get(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return string(b), resp.StatusCode
}

func BenchmarkJobEvent(b *testing.B) {
	m := New("bench")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.WebhookRequest("azuredevops", "ms.vss-pipelines.job-state-changed-event", "accepted")
			m.QueuedToCreated("linux", time.Second)
			m.SetAgents("linux", map[string]int{AgentBusy: 1})
		}
	})
}
