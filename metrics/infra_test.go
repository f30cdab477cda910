package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/agentscaler/agentscaler/metrics/metricstest"
)

// The deployment files these tests hold to the exposition, relative to this
// package's directory (go test runs in it).
var (
	rulesDir      = filepath.Join("..", "infra", "prometheus")
	rulesFile     = filepath.Join(rulesDir, "agentscaler.rules.yml")
	rulesTestFile = "agentscaler.rules.test.yml" // relative to rulesDir
	dashboardFile = filepath.Join("..", "infra", "dashboards", "agentscaler.json")
)

// runTool runs a binary in dir and fails the test with its output when it
// exits non-zero.
func runTool(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("run %s: %v", bin, err)
		}
		t.Errorf("%s %s failed (%v):\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// TestRulesPassPromtool checks the alerting rules' syntax and runs their
// unit tests with the real promtool.
func TestRulesPassPromtool(t *testing.T) {
	promtool := metricstest.Binary(t, "promtool", "prometheus")
	t.Run("check", func(t *testing.T) {
		runTool(t, ".", promtool, "check", "rules", rulesFile)
	})
	t.Run("test", func(t *testing.T) {
		// rule_files in the test file are relative to it.
		runTool(t, rulesDir, promtool, "test", "rules", rulesTestFile)
	})
}

// Pieces of PromQL that are not metric names, removed before collecting
// identifiers.
var (
	reStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reMatchers = regexp.MustCompile(`\{[^}]*\}`)
	reRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reVars     = regexp.MustCompile(`\$\{?\w+\}?`)
	reToken    = regexp.MustCompile(`[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?[a-z]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	reLabelVal = regexp.MustCompile(`^\s*label_values\(\s*(?:(.+),)?\s*\w+\s*\)\s*$`)
)

// promqlWords are keywords and bare modifiers that look like identifiers.
var promqlWords = []string{
	"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
	"group_left", "group_right", "inf", "nan", "Inf", "NaN", "atan2",
}

// metricNames returns the metric names a PromQL expression selects. It is a
// small lexer rather than the PromQL parser (github.com/prometheus/prometheus
// is not a dependency of this module): it drops strings, label matchers,
// range and offset durations, grouping label lists and Grafana variables,
// then keeps every identifier that is neither a keyword nor a function call.
func metricNames(expr string) []string {
	s := reStrings.ReplaceAllString(expr, `""`)
	s = reMatchers.ReplaceAllString(s, " ")
	s = reRanges.ReplaceAllString(s, " ")
	s = reGrouping.ReplaceAllString(s, " ")
	s = reVars.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range reToken.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || slices.Contains(promqlWords, tok) {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		names = append(names, tok)
	}
	return names
}

func TestMetricNamesLexer(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{
			`histogram_quantile(0.95, sum by (pool, le) (rate(a_bucket{pool=~"$pool", x="y{z}"}[$__rate_interval]))) > 1e3`,
			[]string{"a_bucket"},
		},
		{
			`max by (pool) (min_over_time(w[15m])) > 0 unless on (pool) sum without (instance) (increase(c_count[5m] offset 1h)) > 0`,
			[]string{"w", "c_count"},
		},
		{`sum(x) / on(pool) group_left(state) y and bool z`, []string{"x", "y", "z"}},
		{`rate(
			m_total{outcome="unauthorized"}[10m]) >= 3`, []string{"m_total"}},
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// ruleExprs returns every expr in the rules file.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse %s: %v", rulesFile, err)
	}
	var exprs []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// dashboard reads the Grafana dashboard as generic JSON.
func dashboard(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("parse %s: %v", dashboardFile, err)
	}
	return d
}

// dashboardExprs returns every panel target's expr (walking nested rows) and
// every templating query, label_values(metric, label) reduced to its metric.
func dashboardExprs(t *testing.T, d map[string]any) []string {
	t.Helper()
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(d["panels"])
	for _, v := range templateVars(d) {
		if v["type"] != "query" {
			continue
		}
		q, _ := v["query"].(string)
		if m, ok := v["query"].(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		if lv := reLabelVal.FindStringSubmatch(q); lv != nil {
			q = lv[1]
		}
		exprs = append(exprs, q)
	}
	return exprs
}

func templateVars(d map[string]any) []map[string]any {
	tmpl, _ := d["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	var vars []map[string]any
	for _, v := range list {
		if m, ok := v.(map[string]any); ok {
			vars = append(vars, m)
		}
	}
	return vars
}

// TestInfraUsesExposedMetrics holds the alerting rules and the dashboard to
// the names the binary really exposes: a renamed metric must break this test,
// not a dashboard in production.
func TestInfraUsesExposedMetrics(t *testing.T) {
	m := New("test")
	recordAll(m)
	body, _ := scrape(t, m)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	exposed := func(name string) bool {
		if _, ok := fams[name]; ok {
			return true
		}
		// A histogram's series carry suffixes its family name does not.
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok {
				if f, ok := fams[base]; ok && f.GetType() == dto.MetricType_HISTOGRAM {
					return true
				}
			}
		}
		return false
	}

	for _, src := range []struct {
		file  string
		exprs []string
		// Names a sound file must use, so an extraction that finds nothing
		// cannot pass.
		must []string
	}{
		{rulesFile, ruleExprs(t), []string{"agentscaler_job_queued_to_assigned_seconds_bucket", "agentscaler_webhook_requests_total"}},
		{dashboardFile, dashboardExprs(t, dashboard(t)), []string{"agentscaler_waiting_jobs", "agentscaler_agents", "agentscaler_azuredevops_ratelimit_remaining"}},
	} {
		used := map[string]bool{}
		for _, e := range src.exprs {
			if strings.TrimSpace(e) == "" {
				t.Errorf("%s: empty expression", src.file)
			}
			for _, n := range metricNames(e) {
				used[n] = true
			}
		}
		for _, n := range src.must {
			if !used[n] {
				t.Errorf("%s: %s not found among the names used (%d found)", src.file, n, len(used))
			}
		}
		for n := range used {
			if !exposed(n) {
				t.Errorf("%s uses %s, which the exposition does not have", src.file, n)
			}
		}
	}
}

// TestDashboardVariables checks the variables the panels rely on: a
// Prometheus datasource picker and a pool picker fed by the waiting-jobs
// gauge, and that every panel queries through the picked datasource.
func TestDashboardVariables(t *testing.T) {
	d := dashboard(t)
	byName := map[string]map[string]any{}
	for _, v := range templateVars(d) {
		name, _ := v["name"].(string)
		byName[name] = v
	}
	if ds := byName["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
		t.Errorf("datasource variable = %v, want type datasource over prometheus", ds)
	}
	pool := byName["pool"]
	if pool == nil {
		t.Fatal("no pool variable")
	}
	q, _ := pool["query"].(string)
	if m, ok := pool["query"].(map[string]any); ok {
		q, _ = m["query"].(string)
	}
	if q != "label_values(agentscaler_waiting_jobs, pool)" {
		t.Errorf("pool variable query = %q", q)
	}
	if pool["includeAll"] != true || pool["multi"] != true {
		t.Errorf("pool variable should allow several pools and All: %v", pool)
	}

	m := New("test")
	recordAll(m)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	panels, _ := d["panels"].([]any)
	n := 0
	for _, p := range panels {
		p, _ := p.(map[string]any)
		if p["type"] == "row" {
			continue
		}
		n++
		ds, _ := p["datasource"].(map[string]any)
		if ds["uid"] != "${datasource}" {
			t.Errorf("panel %q uses datasource %v, want ${datasource}", p["title"], p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no queries", p["title"])
		}
		for _, tg := range targets {
			tg, _ := tg.(map[string]any)
			expr, _ := tg["expr"].(string)
			// Pool-labelled series must follow the pool picker.
			for _, name := range metricNames(expr) {
				if pooledFamily(fams, name) && !strings.Contains(expr, `pool=~"$pool"`) {
					t.Errorf("panel %q: %s is not filtered by $pool: %s", p["title"], name, expr)
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("dashboard has %d panels, want at least 10", n)
	}
}

// pooledFamily reports whether a metric (or a histogram series of one)
// carries the pool label.
func pooledFamily(fams []*dto.MetricFamily, name string) bool {
	for _, f := range fams {
		base := f.GetName()
		if name != base && name != base+"_bucket" && name != base+"_sum" && name != base+"_count" {
			continue
		}
		for _, lp := range f.GetMetric()[0].GetLabel() {
			if lp.GetName() == "pool" {
				return true
			}
		}
	}
	return false
}

// TestDashboardExprsParse has the real promtool parse every dashboard query,
// each as a recording rule, with Grafana's variables given plausible values.
func TestDashboardExprsParse(t *testing.T) {
	promtool := metricstest.Binary(t, "promtool", "prometheus")
	vars := strings.NewReplacer("$__rate_interval", "5m", "$pool", ".*")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range dashboardExprs(t, dashboard(t)) {
		rules = append(rules, rule{Record: "dashboard:query_" + strconv.Itoa(i), Expr: vars.Replace(e)})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, ".", promtool, "check", "rules", path)
}
