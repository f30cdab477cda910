package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
)

const (
	chartDir       = "infra/helm/agentscaler"
	fullValuesFile = "infra/deploy/testdata/helm-full-values.yaml"
)

// helmBinary is the helm CLI of kubetest.HelmVersion: the one `make
// kubebins` cached, or built here when it has not run.
func helmBinary(t *testing.T) string {
	t.Helper()
	bin, ok := kubetest.CachedHelm()
	if !ok {
		t.Logf("building helm %s (make kubebins does this before go test)", kubetest.HelmVersion)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		var err error
		if bin, err = kubetest.BuildHelm(ctx, os.Stderr); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// runHelm runs helm in the repository root with its cache, configuration and
// data in a temporary directory, and returns what it wrote to stdout, or an
// error holding what it wrote to stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// render is `helm template` of the chart as release agentscaler in
// namespace, with extra arguments (-f, --set).
func render(t *testing.T, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "agentscaler", chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, "helm template "+strings.Join(args, " "), out)
}

func kindsOf(objs []*unstructured.Unstructured) []string {
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
	}
	slices.Sort(kinds)
	return kinds
}

func TestHelmIsThePinnedVersion(t *testing.T) {
	out, err := runHelm(t, "version", "--short")
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := strings.Cut(strings.TrimSpace(out), "+"); v != kubetest.HelmVersion {
		t.Errorf("helm version --short = %q, want %s", out, kubetest.HelmVersion)
	}
}

func TestHelmChartLintsStrictly(t *testing.T) {
	for _, args := range [][]string{nil, {"-f", fullValuesFile}} {
		out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil || !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
			t.Errorf("helm lint --strict %v: %v\n%s", args, err, out)
		}
	}
	// A release without Azure DevOps pools needs neither azuredevops nor
	// webhook, as agentscaler's own validation does not.
	githubOnly := []string{"--set", "config.azuredevops=null", "--set", "config.webhook=null", "--set-json",
		`config.pools=[{"name":"gh","source":"github","provider":"kubernetes","kubernetes":{"namespace":"runners"},"agent":{"image":"gh-runner:2.329.0"}}]`,
		"--set-json", `config.github={"org":"acme","token_env":"GH_TOKEN","webhook_secret_env":"GH_HOOK"}`}
	if out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, githubOnly...)...); err != nil {
		t.Errorf("helm lint --strict of a GitHub-only release: %v\n%s", err, out)
	}
	// The lint can fail: values.schema.json refuses an empty image repository.
	if out, err := runHelm(t, "lint", "--strict", chartDir, "--set", "image.repository="); err == nil {
		t.Errorf("helm lint --strict with no image repository passed:\n%s", out)
	}
}

func TestHelmChartDefaults(t *testing.T) {
	objs := render(t, "agents")
	want := []string{"ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"}
	if got := kindsOf(objs); !slices.Equal(got, want) {
		t.Errorf("default rendering: %v, want %v (no ServiceMonitor, no Secret)", got, want)
	}
	checkDeploymentFits(t, objs)
	var chart struct {
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal([]byte(read(t, filepath.Join(chartDir, "Chart.yaml"))), &chart); err != nil {
		t.Fatal(err)
	}
	image, _, _ := unstructured.NestedSlice(find(objs, "Deployment").Object, "spec", "template", "spec", "containers")
	if got := image[0].(map[string]any)["image"]; !strings.HasSuffix(fmt.Sprint(got), ":"+chart.AppVersion) {
		t.Errorf("image %v, want the tag of the chart's appVersion %s", got, chart.AppVersion)
	}
}

func TestHelmChartFullValues(t *testing.T) {
	objs := render(t, "ci", "-f", fullValuesFile)
	checkDeploymentFits(t, objs)
	roles := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() == "Role" {
			roles[o.GetNamespace()] = true
		}
	}
	if !roles["ci"] || !roles["ci-agents-gpu"] || len(roles) != 2 {
		t.Errorf("Roles in %v, want ci (the pool without a namespace) and ci-agents-gpu", roles)
	}
	// The ServiceMonitor scrapes the Service's port, on the pods the Service selects.
	sm, svc := find(objs, "ServiceMonitor"), find(objs, "Service")
	if sm == nil {
		t.Fatal("serviceMonitor.enabled rendered no ServiceMonitor")
	}
	smSel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range smSel {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; Service %s is labelled %v", k, v, svc.GetName(), svc.GetLabels())
		}
	}
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v, want serviceMonitor.labels among them", sm.GetLabels())
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] || eps[0].(map[string]any)["path"] != "/api/metrics" {
		t.Errorf("ServiceMonitor endpoints %v, want /api/metrics on the Service's port %v", eps, ports)
	}
}

// TestHelmChartEveryValueTakes renders the defaults with each top-level value
// of the full values file that differs from its default, one at a time, and
// checks that the rendering changes: a value the templates ignore fails here.
func TestHelmChartEveryValueTakes(t *testing.T) {
	var defaults, full map[string]any
	if err := yaml.Unmarshal([]byte(read(t, filepath.Join(chartDir, "values.yaml"))), &defaults); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(read(t, fullValuesFile)), &full); err != nil {
		t.Fatal(err)
	}
	for key := range defaults {
		if _, ok := full[key]; !ok {
			t.Errorf("%s sets no %s: it is to set every value", fullValuesFile, key)
		}
	}
	base, err := runHelm(t, "template", "agentscaler", chartDir, "--namespace", "ci")
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range full {
		if reflect.DeepEqual(v, defaults[key]) {
			continue
		}
		b, err := json.Marshal(map[string]any{key: v})
		if err != nil {
			t.Fatal(err)
		}
		// A file, not --set-json: a file replaces lists and merges maps as a user's values file does.
		f := filepath.Join(t.TempDir(), "values.json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runHelm(t, "template", "agentscaler", chartDir, "--namespace", "ci", "-f", f)
		if err != nil {
			t.Errorf("%s: %v", key, err)
		} else if out == base {
			t.Errorf("value %s = %s changes nothing in the rendering", key, b)
		}
	}
	// Off switches.
	objs := render(t, "ci", "--set", "rbac.create=false", "--set", "serviceAccount.create=false")
	if got := kindsOf(objs); !slices.Equal(got, []string{"ConfigMap", "Deployment", "Service"}) {
		t.Errorf("rbac.create=false, serviceAccount.create=false: %v, want no ServiceAccount, Role or RoleBinding", got)
	}
}

// The checks of checkDeploymentFits fail on a chart rendered wrong.
func TestHelmChartMisconfigurationsAreFound(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "rbac.create=false"}, "no RoleBinding gives ServiceAccount agents/agentscaler"},
		{[]string{"--set", "securityContext.allowPrivilegeEscalation=true"}, "allowPrivilegeEscalation: false"},
		{[]string{"--set-json", "securityContext.capabilities.drop=[]"}, "want ALL"},
		{[]string{"--set", "podSecurityContext.seccompProfile.type=Unconfined"}, "want RuntimeDefault"},
		{[]string{"--set-json", `secretEnv=[{"name":"AZP_TOKEN","secretName":"other","key":"AZP_TOKEN"},{"name":"AGENTSCALER_WEBHOOK_PASSWORD","secretName":"hook","key":"password"}]`},
			`agentscaler from "other"`},
		{[]string{"--set-json", `secretEnv=[{"name":"AZP_TOKEN","secretName":"azp-token","key":"AZP_TOKEN"}]`}, "is refused"},
	} {
		problems := strings.Join(deploymentProblems(t, render(t, "agents", c.args...)), "\n")
		if !strings.Contains(problems, c.want) {
			t.Errorf("rendered with %v: problems %q, want one with %q", c.args, problems, c.want)
		}
	}
}

func TestHelmChartAcceptedByTheAPIServer(t *testing.T) {
	s := startAPIServer(t)
	for _, c := range []struct {
		namespace string
		args      []string
	}{
		{"helm-defaults", nil},
		{"ci", []string{"-f", fullValuesFile}},
	} {
		objs := render(t, c.namespace, c.args...)
		kinds := map[string]bool{}
		for _, o := range objs {
			kinds[o.GetKind()] = true
			s.createNamespace(t, o.GetNamespace())
			if err := s.apply(o, true); err != nil {
				t.Errorf("%v: %s %s/%s refused: %v", c.args, o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
		if c.args != nil && !kinds["ServiceMonitor"] {
			t.Errorf("%v: no ServiceMonitor applied", c.args)
		}
	}
}

// secretWordRE matches a key that speaks of a secret; refKeyRE the keys whose
// values only name one: a variable (*_env, secretEnv[].name), a Secret, a key
// of one.
var (
	secretWordRE = regexp.MustCompile(`(?i)(password|passwd|token|secret|credential|api_?key|private_?key)`)
	refKeyRE     = regexp.MustCompile(`^(.+_env|secretName|key|name|token_secret|token_key|token_file|image_pull_secrets|imagePullSecrets)$`)
	refValueRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,253}$`)
)

// secretsIn lists the places of v, a values tree, that may hold a secret: a
// key speaking of one whose value is not a reference, or a reference that is
// not a name.
func secretsIn(v any, path string) []string {
	var found []string
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			p := path + "." + k
			if _, leaf := sub.(string); leaf && secretWordRE.MatchString(k) && !refKeyRE.MatchString(k) {
				found = append(found, p)
				continue
			}
			if s, leaf := sub.(string); leaf && refKeyRE.MatchString(k) && secretWordRE.MatchString(path+k) && !refValueRE.MatchString(s) {
				found = append(found, p)
				continue
			}
			found = append(found, secretsIn(sub, p)...)
		}
	case []any:
		for i, sub := range v {
			found = append(found, secretsIn(sub, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	slices.Sort(found)
	return found
}

func TestHelmValuesHoldNoSecret(t *testing.T) {
	for _, f := range []string{filepath.Join(chartDir, "values.yaml"), fullValuesFile} {
		var values map[string]any
		if err := yaml.Unmarshal([]byte(read(t, f)), &values); err != nil {
			t.Fatal(err)
		}
		if found := secretsIn(values, ""); len(found) > 0 {
			t.Errorf("%s: %v may hold secrets; name the Secret and key (secretEnv) or the variable (*_env) instead", f, found)
		}
	}
	// The check finds a secret written as a value.
	planted := map[string]any{
		"config": map[string]any{
			"azuredevops": map[string]any{"token": "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"},
			"webhook":     map[string]any{"basic_auth": map[string]any{"password_env": "hunter2 is my password"}},
		},
		"secretEnv": []any{map[string]any{"name": "AZP_TOKEN", "secretName": "azp-token", "key": "AZP_TOKEN"}},
	}
	want := []string{".config.azuredevops.token", ".config.webhook.basic_auth.password_env"}
	if got := secretsIn(planted, ""); !slices.Equal(got, want) {
		t.Errorf("secretsIn(planted) = %v, want %v", got, want)
	}
	// values.schema.json takes secrets by reference only: an entry of secretEnv with a value is refused.
	_, err := runHelm(t, "template", "agentscaler", chartDir,
		"--set-json", `secretEnv=[{"name":"AZP_TOKEN","secretName":"azp-token","key":"AZP_TOKEN","value":"pat"}]`)
	if err == nil || !strings.Contains(err.Error(), "'value' not allowed") {
		t.Errorf("a secretEnv entry with a value: %v, want it refused by the schema", err)
	}
	// Nor does the default rendering hold a Secret.
	for _, o := range render(t, "agents") {
		if o.GetKind() == "Secret" {
			t.Errorf("the chart renders Secret %s; it takes existing Secrets by name", o.GetName())
		}
	}
}
