package deploy

// There is no Bicep compiler here (Debian has none, and it is not a Go
// module), so these checks read main.bicep as text: the parameters against
// the example parameters file, the app settings against the variables the
// binary reads, and the agentscaler.yaml the template writes, rendered for
// the example parameters by a small evaluator of the few expressions its
// format() call uses, then loaded by the real config package. Not checked:
// Bicep syntax beyond those parts, resource API versions and property names
// (az deployment group validate, or bicep build, does that), and the role
// and Key Vault wiring, which only ARM can evaluate.

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/agentscaler/agentscaler/config"
)

const (
	bicepPath      = "infra/azure/main.bicep"
	bicepExample   = "infra/azure/main.parameters.example.json"
	sampleClientID = "11111111-2222-3333-4444-555555555555"
	sampleSubID    = "00000000-0000-0000-0000-000000000000"
)

type bicepParam struct {
	typ, def string // def is the default expression, "" when required
	secure   bool
}

var (
	paramRE      = regexp.MustCompile(`^param (\w+) (\w+)(?: = (.+))?$`)
	strVarRE     = regexp.MustCompile(`(?m)^var (\w+) = '([^']*)'$`)
	settingRE    = regexp.MustCompile(`^\s*\{ name: '([^']+)', value: (.+) \}$`)
	yamlFormatRE = regexp.MustCompile(`(?s)\nvar agentscalerYaml = format\('''\n(.*?)''', ([^\n]*)\)\n`)
	condFormatRE = regexp.MustCompile(`(?m)^var (\w+) = empty\((\w+)\) \? '' : format\('((?:[^'\\]|\\.)*)', ([^\n]*)\)$`)
	callRE       = regexp.MustCompile(`^(\w+)\((.*)\)$`)
)

func bicepParams(text string) map[string]bicepParam {
	out := map[string]bicepParam{}
	secure := false
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "@secure()":
			secure = true
		case strings.HasPrefix(line, "@"):
		case strings.HasPrefix(line, "param "):
			if m := paramRE.FindStringSubmatch(line); m != nil {
				out[m[1]] = bicepParam{typ: m[2], def: m[3], secure: secure}
			}
			secure = false
		default:
			secure = false
		}
	}
	return out
}

// appSettings returns the function app's settings: name to value expression.
func appSettings(t *testing.T, text string) map[string]string {
	t.Helper()
	start := strings.Index(text, "appSettings: [")
	if start < 0 {
		t.Fatalf("%s: no appSettings", bicepPath)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(text[start:], "\n") {
		if strings.TrimSpace(line) == "]" {
			break
		}
		if m := settingRE.FindStringSubmatch(line); m != nil {
			if _, dup := out[m[1]]; dup {
				t.Errorf("%s: app setting %s is set twice", bicepPath, m[1])
			}
			out[m[1]] = m[2]
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no app setting parsed: the settings' layout changed; keep one `{ name: '...', value: ... }` per line", bicepPath)
	}
	return out
}

// evaluator renders the expressions of the config format() call: parameter
// references, yamlQuote(p), string(p), simple string variables, one
// conditional format variable, and runtime values ARM would supply.
type evaluator struct {
	params  map[string]any
	vars    map[string]string
	runtime map[string]string
	cond    map[string][]string // var -> param tested empty, format string, args
}

func (e *evaluator) eval(expr string) (string, error) {
	expr = strings.TrimSpace(expr)
	if v, ok := e.runtime[expr]; ok {
		return v, nil
	}
	if v, ok := e.vars[expr]; ok {
		return v, nil
	}
	if c, ok := e.cond[expr]; ok {
		if s, _ := e.params[c[0]].(string); s == "" {
			return "", nil
		}
		return e.format(unescapeBicep(c[1]), c[2])
	}
	if v, ok := e.params[expr]; ok {
		return fmt.Sprint(v), nil
	}
	if m := callRE.FindStringSubmatch(expr); m != nil {
		arg, err := e.value(m[2])
		if err != nil {
			return "", err
		}
		switch m[1] {
		case "yamlQuote":
			return "'" + strings.ReplaceAll(fmt.Sprint(arg), "'", "''") + "'", nil
		case "string":
			if s, ok := arg.(string); ok {
				return s, nil
			}
			b, err := json.Marshal(arg)
			return string(b), err
		}
	}
	return "", fmt.Errorf("cannot evaluate %q: teach this test's evaluator, or keep the format() arguments simple", expr)
}

func (e *evaluator) value(expr string) (any, error) {
	if v, ok := e.params[strings.TrimSpace(expr)]; ok {
		return v, nil
	}
	return e.eval(expr)
}

// format is Bicep's (that is .NET's) format: {N} is argument N, {{ and }} are braces.
func (e *evaluator) format(tmpl, args string) (string, error) {
	var vals []string
	for _, a := range splitArgs(args) {
		v, err := e.eval(a)
		if err != nil {
			return "", err
		}
		vals = append(vals, v)
	}
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		switch {
		case c == '{' && i+1 < len(tmpl) && tmpl[i+1] == '{', c == '}' && i+1 < len(tmpl) && tmpl[i+1] == '}':
			b.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(tmpl[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("format: unclosed { at %d", i)
			}
			n, err := strconv.Atoi(tmpl[i+1 : i+end])
			if err != nil || n >= len(vals) {
				return "", fmt.Errorf("format: bad placeholder %q (%d arguments)", tmpl[i:i+end+1], len(vals))
			}
			b.WriteString(vals[n])
			i += end
		case c == '}':
			return "", fmt.Errorf("format: lone } at %d", i)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// splitArgs splits at the commas outside parentheses and brackets.
func splitArgs(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

func unescapeBicep(s string) string {
	return strings.NewReplacer(`\n`, "\n", `\t`, "\t", `\r`, "\r", `\'`, "'", `\\`, `\`, `\$`, "$").Replace(s)
}

// renderConfig renders the agentscaler.yaml of main.bicep for params.
func renderConfig(t *testing.T, text string, params map[string]any) string {
	t.Helper()
	e := &evaluator{params: params, vars: map[string]string{}, cond: map[string][]string{},
		runtime: map[string]string{
			"subscription().subscriptionId": sampleSubID,
			"identity.properties.clientId":  sampleClientID,
		}}
	for _, m := range strVarRE.FindAllStringSubmatch(text, -1) {
		e.vars[m[1]] = m[2]
	}
	for _, m := range condFormatRE.FindAllStringSubmatch(text, -1) {
		e.cond[m[1]] = []string{m[2], m[3], m[4]}
	}
	m := yamlFormatRE.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: no `var agentscalerYaml = format('''...''', ...)`", bicepPath)
	}
	out, err := e.format(m[1], m[2])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exampleParams reads the example parameters file and adds the defaults of
// the parameters it leaves out.
func exampleParams(t *testing.T, declared map[string]bicepParam) map[string]any {
	t.Helper()
	var file struct {
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(read(t, bicepExample)), &file); err != nil {
		t.Fatal(err)
	}
	params := map[string]any{}
	for name, p := range file.Parameters {
		params[name] = p.Value
	}
	for name, p := range declared {
		if _, ok := params[name]; ok || p.def == "" {
			continue
		}
		switch {
		case strings.HasPrefix(p.def, "'") && strings.HasSuffix(p.def, "'"):
			params[name] = unescapeBicep(p.def[1 : len(p.def)-1])
		case p.def == "location" || p.def == "resourceGroup().location":
			params[name] = "westeurope"
		default:
			var v any
			if err := json.Unmarshal([]byte(p.def), &v); err == nil {
				params[name] = v
			}
		}
	}
	return params
}

func TestBicepParametersMatchTheExample(t *testing.T) {
	declared := bicepParams(read(t, bicepPath))
	var file struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(read(t, bicepExample)), &file); err != nil {
		t.Fatal(err)
	}
	for name := range file.Parameters {
		p, ok := declared[name]
		switch {
		case !ok:
			t.Errorf("%s sets %s, which main.bicep does not declare", bicepExample, name)
		case p.secure:
			t.Errorf("%s sets the secure parameter %s: keep secrets out of parameter files (az deployment prompts for them)", bicepExample, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(declared)) {
		p := declared[name]
		if _, ok := file.Parameters[name]; !ok && p.def == "" && !p.secure {
			t.Errorf("main.bicep requires %s, which %s leaves out", name, bicepExample)
		}
	}
	for _, name := range []string{"azpToken", "webhookPassword"} {
		if !declared[name].secure {
			t.Errorf("main.bicep: parameter %s must be @secure()", name)
		}
	}
}

func TestBicepAppSettingsAreWhatTheBinaryReads(t *testing.T) {
	text := read(t, bicepPath)
	settings := appSettings(t, text)
	reads := binaryEnv(t)
	// Read by the Functions host, not by agentscaler.
	host := []string{"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage",
		"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "WEBSITE_RUN_FROM_PACKAGE",
		"APPLICATIONINSIGHTS_CONNECTION_STRING"}
	for name := range settings {
		switch {
		case ours(name) && !reads[name]:
			t.Errorf("app setting %s: the binary reads no such variable (config/, cmd/agentscaler/)", name)
		case !ours(name) && !slices.Contains(host, name) && !reads[name]:
			t.Errorf("app setting %s: neither the binary nor the Functions host reads it", name)
		}
	}
	if got := settings["FUNCTIONS_WORKER_RUNTIME"]; got != "'custom'" {
		t.Errorf("FUNCTIONS_WORKER_RUNTIME = %s, want 'custom' (host.json's custom handler)", got)
	}
	for _, secret := range []string{"AZP_TOKEN", "AGENTSCALER_WEBHOOK_PASSWORD"} {
		if v := settings[secret]; !strings.HasPrefix(v, "'@Microsoft.KeyVault(SecretUri=${") {
			t.Errorf("app setting %s = %q, want a Key Vault reference '@Microsoft.KeyVault(SecretUri=${...})'", secret, v)
		}
	}
	e := &evaluator{vars: map[string]string{}}
	for _, m := range strVarRE.FindAllStringSubmatch(text, -1) {
		e.vars[m[1]] = m[2]
	}
	path, err := e.eval(settings["AGENTSCALER_CONFIG"])
	if err != nil {
		t.Fatalf("AGENTSCALER_CONFIG: %v", err)
	}
	// WEBSITE_RUN_FROM_PACKAGE mounts the zip of dist/functionapp at /home/site/wwwroot.
	if path != "/home/site/wwwroot/agentscaler.yaml" {
		t.Errorf("AGENTSCALER_CONFIG = %q, want /home/site/wwwroot/agentscaler.yaml, where the package's agentscaler.yaml lands", path)
	}
	if doc := read(t, "docs/deploy.md"); !strings.Contains(doc, "dist/functionapp/agentscaler.yaml") {
		t.Error("docs/deploy.md does not tell to save the agentscalerYaml output as dist/functionapp/agentscaler.yaml")
	}
}

func TestBicepWritesAConfigurationTheBinaryAccepts(t *testing.T) {
	text := read(t, bicepPath)
	settings := appSettings(t, text)
	// A variable exists in the app only when it is an app setting.
	getenv := func(name string) string {
		if _, ok := settings[name]; ok {
			return "value-of-" + name
		}
		return ""
	}
	base := exampleParams(t, bicepParams(text))

	cases := map[string]func(p map[string]any){
		"example parameters": func(map[string]any) {},
		"public image, no private network": func(p map[string]any) {
			p["registryServer"], p["registryPullIdentityId"], p["agentSubnetIds"] = "", "", []any{}
		},
		"a pool name YAML would misread": func(p map[string]any) { p["azurePool"] = "O'Brien: linux #1" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			params := maps.Clone(base)
			mutate(params)
			yamlText := renderConfig(t, text, params)
			path := filepath.Join(t.TempDir(), "agentscaler.yaml")
			if err := os.WriteFile(path, []byte(yamlText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path, getenv)
			if err != nil {
				t.Fatalf("the configuration main.bicep writes is refused: %v\n%s", err, yamlText)
			}
			p := cfg.Pools[0]
			want := map[string][2]any{
				"azuredevops.url":        {cfg.AzureDevOps.URL, params["azureDevOpsUrl"]},
				"pools[0].azure_pool":    {p.AzurePool, params["azurePool"]},
				"pools[0].provider":      {p.Provider, "aci"},
				"pools[0].max_agents":    {float64(p.MaxAgents), params["maxAgents"]},
				"pools[0].agent.image":   {p.Agent.Image, params["agentImage"]},
				"aci.resource_group":     {p.ACI.ResourceGroup, params["agentsResourceGroup"]},
				"aci.subscription_id":    {p.ACI.SubscriptionID, sampleSubID},
				"aci.identity.client_id": {p.ACI.Identity.ClientID, sampleClientID},
				"aci.subnet_ids":         {len(p.ACI.SubnetIDs), len(params["agentSubnetIds"].([]any))},
			}
			for key, gw := range want {
				if fmt.Sprint(gw[0]) != fmt.Sprint(gw[1]) {
					t.Errorf("%s = %v, want %v", key, gw[0], gw[1])
				}
			}
			if server, _ := params["registryServer"].(string); server == "" {
				if p.ACI.Registry != nil {
					t.Errorf("aci.registry = %+v, want none for a public image", p.ACI.Registry)
				}
			} else if p.ACI.Registry == nil || p.ACI.Registry.Identity != params["registryPullIdentityId"] {
				t.Errorf("aci.registry = %+v, want the pull identity %v", p.ACI.Registry, params["registryPullIdentityId"])
			}
		})
	}
}
