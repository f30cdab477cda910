package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/metrics/metricstest"
)

// gatewayWaiting returns agentscaler_waiting_jobs{pool} in the group
// job="agentscaler", instance=<instance> of the gateway.
func gatewayWaiting(t *testing.T, g *metricstest.Pushgateway, instance, pool string) (float64, bool) {
	t.Helper()
	return g.Value(t, "agentscaler_waiting_jobs", map[string]string{"job": PushJob, "instance": instance, "pool": pool})
}

// gatewayPuts counts the pushes the gateway accepted, from its own metrics.
func gatewayPuts(t *testing.T, g *metricstest.Pushgateway) float64 {
	t.Helper()
	v, _ := g.Value(t, "pushgateway_http_requests_total", map[string]string{"handler": "push", "method": "put", "code": "200"})
	return v
}

func newPusher(t *testing.T, m *Metrics, pushURL, instance string, log *slog.Logger) *Pusher {
	t.Helper()
	p, err := m.NewPusher(PushOptions{URL: pushURL, Instance: instance, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond until it holds, failing the test after a generous
// deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(metricstest.Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPushToPushgateway pushes the whole registry (runtime collectors
// included) to a real Pushgateway, replaces it, and deletes it, reading the
// gateway back each time.
func TestPushToPushgateway(t *testing.T) {
	g := metricstest.StartPushgateway(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	m := New("test")
	recordAll(m)
	m.SetWaitingJobs("linux", 3)
	p := newPusher(t, m, g.URL, "fn-1", nil)
	if err := p.Push(ctx); err != nil {
		t.Fatalf("push: %v", err)
	}
	// A second instance's group lives next to the first.
	other := New("test")
	other.SetWaitingJobs("linux", 7)
	if err := newPusher(t, other, g.URL, "fn-2", nil).Push(ctx); err != nil {
		t.Fatalf("push fn-2: %v", err)
	}
	if v, ok := gatewayWaiting(t, g, "fn-1", "linux"); !ok || v != 3 {
		t.Fatalf("gateway waiting_jobs{instance=fn-1} = %v (found %v), want 3", v, ok)
	}

	// A push replaces the group with the values observed now.
	m.SetWaitingJobs("linux", 0)
	if err := p.Push(ctx); err != nil {
		t.Fatalf("second push: %v", err)
	}
	if v, ok := gatewayWaiting(t, g, "fn-1", "linux"); !ok || v != 0 {
		t.Errorf("after second push waiting_jobs{instance=fn-1} = %v (found %v), want 0", v, ok)
	}

	if err := p.Delete(ctx); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if v, ok := gatewayWaiting(t, g, "fn-1", "linux"); ok {
		t.Errorf("waiting_jobs{instance=fn-1} = %v still on the gateway after delete", v)
	}
	if v, ok := gatewayWaiting(t, g, "fn-2", "linux"); !ok || v != 7 {
		t.Errorf("delete of fn-1 touched fn-2: waiting_jobs = %v (found %v), want 7", v, ok)
	}
	// Deleting a group that is gone already is fine.
	if err := p.Delete(ctx); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

// TestPushJobAndGather: a Pusher given a job pushes its group under that
// job label, on the real gateway, and keeps the gather it is given.
func TestPushJobAndGather(t *testing.T) {
	g := metricstest.StartPushgateway(t, false)
	m := New("test")
	m.SetWaitingJobs("linux", 5)
	p, err := m.NewPusher(PushOptions{URL: g.URL, Job: "agentscaler-staging", Instance: "fn-1", Gather: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.gather != 3*time.Second {
		t.Errorf("gather %v, want 3s", p.gather)
	}
	if err := p.Push(t.Context()); err != nil {
		t.Fatalf("push: %v", err)
	}
	if v, ok := g.Value(t, "agentscaler_waiting_jobs", map[string]string{"job": "agentscaler-staging", "instance": "fn-1", "pool": "linux"}); !ok || v != 5 {
		t.Errorf("waiting_jobs{job=agentscaler-staging} = %v (found %v), want 5", v, ok)
	}
	if v, ok := gatewayWaiting(t, g, "fn-1", "linux"); ok {
		t.Errorf("waiting_jobs{job=%s} = %v: pushed under the default job too", PushJob, v)
	}
	if d := newPusher(t, m, g.URL, "fn-1", nil); d.job != PushJob || d.gather != DefaultPushGather {
		t.Errorf("defaults: job %q, gather %v; want %q, %v", d.job, d.gather, PushJob, DefaultPushGather)
	}
}

// TestPushBasicAuth runs the real gateway behind basic auth: credentials in
// the URL get the push in; a wrong password is refused, and neither password
// shows in the error.
func TestPushBasicAuth(t *testing.T) {
	g := metricstest.StartPushgateway(t, true)
	m := New("test")
	m.SetWaitingJobs("linux", 4)
	withAuth := func(user, pass string) string {
		return strings.Replace(g.URL, "http://", "http://"+user+":"+pass+"@", 1)
	}

	const wrong = "wrong-5ecret"
	err := newPusher(t, m, withAuth(metricstest.GatewayUser, wrong), "fn-1", nil).Push(t.Context())
	if err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("push with a wrong password: %v, want the gateway's 401", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error text holds the password: %v", err)
	}

	p := newPusher(t, m, withAuth(metricstest.GatewayUser, metricstest.GatewayPassword), "fn-1", nil)
	if err := p.Push(t.Context()); err != nil {
		t.Fatalf("push with the right credentials: %v", err)
	}
	if v, ok := gatewayWaiting(t, g, "fn-1", "linux"); !ok || v != 4 {
		t.Errorf("waiting_jobs{instance=fn-1} = %v (found %v), want 4", v, ok)
	}
	if strings.Contains(p.String(), metricstest.GatewayPassword) {
		t.Errorf("Pusher.String holds the password: %s", p)
	}
}

// TestPushHonoursDeadline uses a gateway stand-in that never answers: both
// calls must give up when their context ends, Delete included (the
// library's Delete takes no context).
func TestPushHonoursDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	p := newPusher(t, New("test"), srv.URL, "fn-1", nil)
	for name, call := range map[string]func(context.Context) error{"push": p.Push, "delete": p.Delete} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s against a silent gateway: err = %v, want context.DeadlineExceeded", name, err)
		}
	}
}

func TestNewPusherRejectsBadInput(t *testing.T) {
	m := New("test")
	for _, tc := range []struct{ url, instance, want string }{
		{"http://127.0.0.1:9091", "", "instance"},
		{"127.0.0.1:9091", "fn-1", "http://pushgateway:9091"},
		{"ftp://127.0.0.1:9091", "fn-1", "http(s)"},
		{"http://user:hunter2@[::1", "fn-1", "URL"},
	} {
		_, err := m.NewPusher(PushOptions{URL: tc.url, Instance: tc.instance})
		if err == nil {
			t.Errorf("NewPusher(%q, %q) = nil error", tc.url, tc.instance)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewPusher(%q, %q): %v, want it to mention %q", tc.url, tc.instance, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error text holds the password: %v", err)
		}
	}
	var nilM *Metrics
	p, err := nilM.NewPusher(PushOptions{URL: "http://127.0.0.1:1", Instance: "fn-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(t.Context()); err != nil {
		t.Errorf("nil Metrics Push = %v, want nil (nothing to push)", err)
	}
}

// TestPusherRun drives Run against the real gateway: requests made before a
// push starts share it, a later request pushes the values of then, and the
// end of Run removes the group.
func TestPusherRun(t *testing.T) {
	g := metricstest.StartPushgateway(t, false)
	m := New("test")
	p := newPusher(t, m, g.URL, "fn-1", nil)

	m.SetWaitingJobs("linux", 1)
	for range 20 {
		p.Request() // never blocks, with or without Run
	}
	if n := len(p.kick); n != 1 {
		t.Errorf("20 requests left %d pushes pending, want 1", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()

	eventually(t, "the first push", func() bool { _, ok := gatewayWaiting(t, g, "fn-1", "linux"); return ok })
	m.SetWaitingJobs("linux", 21)
	p.Request()
	eventually(t, "the second push", func() bool { v, _ := gatewayWaiting(t, g, "fn-1", "linux"); return v == 21 })
	if n := gatewayPuts(t, g); n != 2 {
		t.Errorf("the gateway took %v pushes for 21 requests in two bursts, want 2", n)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(metricstest.Wait):
		t.Fatal("Run did not return after its context ended")
	}
	if v, ok := gatewayWaiting(t, g, "fn-1", "linux"); ok {
		t.Errorf("waiting_jobs{instance=fn-1} = %v still on the gateway after Run ended", v)
	}
}

// TestPusherRunLogsFailures: a gateway that refuses the push (a wrong
// password) costs a warning that names the gateway, never the password; the
// next request tries again.
func TestPusherRunLogsFailures(t *testing.T) {
	g := metricstest.StartPushgateway(t, true)
	const wrong = "wrong-5ecret"
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p := newPusher(t, New("test"), strings.Replace(g.URL, "http://", "http://"+metricstest.GatewayUser+":"+wrong+"@", 1), "fn-1", log)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	p.Request()
	eventually(t, "a logged push failure", func() bool { return strings.Contains(logs.String(), "metrics push failed") })
	p.Request()
	eventually(t, "a second logged push failure", func() bool { return strings.Count(logs.String(), "metrics push failed") == 2 })
	cancel()
	<-done

	out := logs.String()
	if strings.Contains(out, wrong) {
		t.Errorf("the logs hold the password:\n%s", out)
	}
	if !strings.Contains(out, g.URL) {
		t.Errorf("the failure does not name the gateway %s:\n%s", g.URL, out)
	}
}
