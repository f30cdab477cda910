package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startPushgateway runs the real Pushgateway on a free loopback port, in
// memory only (no --persistence.file), and stops it by PID when the test
// ends. It returns the gateway's base URL.
func startPushgateway(t *testing.T) string {
	t.Helper()
	bin := lookBinary(t, "prometheus-pushgateway",
		"install it with `apt-get install prometheus-pushgateway` (Debian) or from prometheus.io")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cmd := exec.Command(bin, "--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pushgateway: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pushgateway output:\n%s", logs.String())
		}
	})

	base := "http://" + addr
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pushgateway on %s never became ready:\n%s", addr, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// gatewayWaiting scrapes the gateway and returns agentscaler_waiting_jobs
// for the pool in the group job="agentscaler", instance=<instance>.
func gatewayWaiting(t *testing.T, base, instance, pool string) (float64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape pushgateway: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse pushgateway exposition: %v", err)
	}
	for _, m := range fams["agentscaler_waiting_jobs"].GetMetric() {
		if labels(m)["job"] == PushJob && labels(m)["instance"] == instance && labels(m)["pool"] == pool {
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// TestPushToPushgateway pushes the whole registry (runtime collectors
// included) to a real Pushgateway, replaces it, and deletes it, reading the
// gateway back each time.
func TestPushToPushgateway(t *testing.T) {
	base := startPushgateway(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	m := New("test")
	recordAll(m)
	m.SetWaitingJobs("linux", 3)
	if err := m.Push(ctx, base, "fn-1"); err != nil {
		t.Fatalf("push: %v", err)
	}
	// A second instance's group lives next to the first.
	other := New("test")
	other.SetWaitingJobs("linux", 7)
	if err := other.Push(ctx, base, "fn-2"); err != nil {
		t.Fatalf("push fn-2: %v", err)
	}
	if v, ok := gatewayWaiting(t, base, "fn-1", "linux"); !ok || v != 3 {
		t.Fatalf("gateway waiting_jobs{instance=fn-1} = %v (found %v), want 3", v, ok)
	}

	// A push replaces the group with the values observed now.
	m.SetWaitingJobs("linux", 0)
	if err := m.Push(ctx, base, "fn-1"); err != nil {
		t.Fatalf("second push: %v", err)
	}
	if v, ok := gatewayWaiting(t, base, "fn-1", "linux"); !ok || v != 0 {
		t.Errorf("after second push waiting_jobs{instance=fn-1} = %v (found %v), want 0", v, ok)
	}

	if err := m.DeletePush(ctx, base, "fn-1"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if v, ok := gatewayWaiting(t, base, "fn-1", "linux"); ok {
		t.Errorf("waiting_jobs{instance=fn-1} = %v still on the gateway after delete", v)
	}
	if v, ok := gatewayWaiting(t, base, "fn-2", "linux"); !ok || v != 7 {
		t.Errorf("delete of fn-1 touched fn-2: waiting_jobs = %v (found %v), want 7", v, ok)
	}
	// Deleting a group that is gone already is fine.
	if err := m.DeletePush(ctx, base, "fn-1"); err != nil {
		t.Errorf("second delete: %v", err)
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

	m := New("test")
	for name, call := range map[string]func(context.Context) error{
		"push":   func(ctx context.Context) error { return m.Push(ctx, srv.URL, "fn-1") },
		"delete": func(ctx context.Context) error { return m.DeletePush(ctx, srv.URL, "fn-1") },
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := call(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s against a silent gateway: err = %v, want context.DeadlineExceeded", name, err)
		}
	}
}

// TestPushCredentials: credentials in the URL go out as basic auth and stay
// out of the error text. The stand-in rejects every push as a gateway behind
// an auth proxy would.
func TestPushCredentials(t *testing.T) {
	const user, secret = "pusher", "s3cr3t-pass"
	var gotUser, gotPass, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, _ = r.BasicAuth()
		gotPath = r.URL.Path
		http.Error(w, "upstream unavailable", http.StatusBadGateway)
	}))
	defer srv.Close()

	pushURL := strings.Replace(srv.URL, "http://", fmt.Sprintf("http://%s:%s@", user, secret), 1)
	err := New("test").Push(t.Context(), pushURL, "fn-1")
	if err == nil {
		t.Fatal("push to a failing gateway returned nil")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error text holds the password: %v", err)
	}
	if gotUser != user || gotPass != secret {
		t.Errorf("basic auth = %q/%q, want %q and the password", gotUser, gotPass, user)
	}
	if want := "/metrics/job/agentscaler/instance/fn-1"; gotPath != want {
		t.Errorf("push path = %q, want %q", gotPath, want)
	}
}

func TestPushRejectsBadInput(t *testing.T) {
	m := New("test")
	for _, tc := range []struct{ url, instance string }{
		{"http://127.0.0.1:9091", ""},
		{"127.0.0.1:9091", "fn-1"},
		{"ftp://127.0.0.1:9091", "fn-1"},
		{"http://user:hunter2@[::1", "fn-1"},
	} {
		err := m.Push(t.Context(), tc.url, tc.instance)
		if err == nil {
			t.Errorf("Push(%q, %q) = nil, want an error", tc.url, tc.instance)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error text holds the password: %v", err)
		}
	}
	var nilM *Metrics
	if err := nilM.Push(t.Context(), "http://127.0.0.1:1", "fn-1"); err != nil {
		t.Errorf("nil Metrics Push = %v, want nil", err)
	}
}
