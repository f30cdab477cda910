// Package metricstest runs the real Prometheus server and Pushgateway on
// loopback for tests, and reads values back from them: through the Prometheus
// query API, and from the gateway's own exposition. The programs come from
// the Debian packages prometheus and prometheus-pushgateway (`make deps`); a
// test that needs a missing one is skipped, or fails when CI is set.
package metricstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

// Wait is how long the helpers wait for a server to start or a value to
// show: generous, because the test machines are shared and busy.
const Wait = 90 * time.Second

// Binary returns the path of the program name from the Debian package pkg.
// When it is missing the test is skipped, or fails if CI is set.
func Binary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found; install it with `apt-get install %s` (Debian) or from prometheus.io", name, pkg)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// FreeAddr returns a loopback address whose port is free now, for a child
// process that cannot report the port it picked.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// run starts bin until the test ends; its output is logged if the test fails.
func run(t testing.TB, bin string, args ...string) *syncbuf.Buffer {
	t.Helper()
	var out syncbuf.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // killed: the exit error is expected
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
	return &out
}

// Prometheus is a Prometheus server started by StartPrometheus.
type Prometheus struct {
	URL string // http://127.0.0.1:port
}

// StartPrometheus runs Prometheus with its storage in a temporary directory,
// scraping targetURL (http://host:port/path on loopback) every second as
// job "agentscaler". It stops when the test ends.
func StartPrometheus(t testing.TB, targetURL string) *Prometheus {
	t.Helper()
	bin := Binary(t, "prometheus", "prometheus")
	target, err := url.Parse(targetURL)
	if err != nil || target.Host == "" {
		t.Fatalf("scrape target %q: want http://host:port/path", targetURL)
	}
	path := target.Path
	if path == "" {
		path = "/"
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: agentscaler
    scheme: %s
    metrics_path: %q
    static_configs:
      - targets: [%q]
`, target.Scheme, path, target.Host)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	run(t, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	return &Prometheus{URL: "http://" + addr}
}

// Query runs an instant query and returns the first sample's value, or ""
// when the answer holds no sample.
func (p *Prometheus) Query(ctx context.Context, q string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?query="+url.QueryEscape(q), nil)
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
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("decode query answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if out.Status != "success" {
		return "", fmt.Errorf("query %s: status %q: %s", q, out.Status, out.Error)
	}
	if len(out.Data.Result) == 0 {
		return "", nil
	}
	v, _ := out.Data.Result[0].Value[1].(string)
	return v, nil
}

// WaitFor asks q until the answer is want, and fails the test with the last
// answer when Wait passes first. Prometheus answers with what it last
// scraped, so a value changed by the test shows within a scrape or two.
func (p *Prometheus) WaitFor(t testing.TB, q, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), Wait)
	defer cancel()
	var last string
	for {
		v, err := p.Query(ctx, q)
		if err == nil && v == want {
			return
		}
		if err != nil {
			last = "error: " + err.Error()
		} else {
			last = fmt.Sprintf("%q", v)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: want %q, last answer %s", q, want, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Basic-auth credentials a gateway started with StartPushgateway(t, true)
// requires. GatewayHash is GatewayPassword's bcrypt hash (cost 4), as the
// gateway's web configuration takes it.
const (
	GatewayUser     = "pusher"
	GatewayPassword = "gateway-5ecret-do-not-log"
	GatewayHash     = "$2a$04$1E9yj3lzA7bq8EMDUT7lsu5kYF1GnoxYWLC1E31PFuCdMzt5Qrkxm"
)

// Pushgateway is a Pushgateway started by StartPushgateway.
type Pushgateway struct {
	URL       string // http://127.0.0.1:port, without credentials
	basicAuth bool
}

// StartPushgateway runs the Pushgateway in memory only on a free loopback
// port until the test ends. With basicAuth, every request must carry
// GatewayUser and GatewayPassword, as behind an authenticating setup.
func StartPushgateway(t testing.TB, basicAuth bool) *Pushgateway {
	t.Helper()
	bin := Binary(t, "prometheus-pushgateway", "prometheus-pushgateway")
	addr := FreeAddr(t)
	// An empty persistence file keeps groups in memory: Debian's default
	// file would be shared by every gateway on the machine.
	args := []string{"--web.listen-address=" + addr, "--persistence.file=", "--log.level=warn"}
	if basicAuth {
		web := filepath.Join(t.TempDir(), "web.yml")
		if err := os.WriteFile(web, []byte(fmt.Sprintf("basic_auth_users:\n  %s: %s\n", GatewayUser, GatewayHash)), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--web.config.file="+web)
	}
	out := run(t, bin, args...)
	g := &Pushgateway{URL: "http://" + addr, basicAuth: basicAuth}

	ctx, cancel := context.WithTimeout(t.Context(), Wait)
	defer cancel()
	for {
		if resp, err := g.get(ctx, "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pushgateway on %s never became ready:\n%s", addr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (g *Pushgateway) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL+path, nil)
	if err != nil {
		return nil, err
	}
	if g.basicAuth {
		req.SetBasicAuth(GatewayUser, GatewayPassword)
	}
	return http.DefaultClient.Do(req)
}

// Value scrapes the gateway and returns the value of the gauge, counter or
// untyped sample of family name whose labels include every one of labels
// (give job and instance to pick a group); ok is false when there is none.
func (g *Pushgateway) Value(t testing.TB, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := g.get(ctx, "/metrics")
	if err != nil {
		t.Fatalf("scrape pushgateway: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape pushgateway: HTTP %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse pushgateway exposition: %v", err)
	}
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, want := range labels {
			if have[k] != want {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		default:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}
