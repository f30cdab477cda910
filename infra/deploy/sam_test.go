package deploy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/agentscaler/agentscaler/config"
)

const samPath = "infra/aws/template.yaml"

// get walks mapping keys; nil when one is missing.
func get(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n != nil && n.Kind == yaml.DocumentNode {
			n = n.Content[0]
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

func samFunction(t *testing.T) (doc, fn *yaml.Node) {
	t.Helper()
	docs, err := decodeYAML([]byte(read(t, samPath)))
	if err != nil || len(docs) != 1 {
		t.Fatalf("%s: %d documents, %v", samPath, len(docs), err)
	}
	doc = docs[0]
	resources := get(doc, "Resources")
	if resources == nil {
		t.Fatalf("%s: no Resources", samPath)
	}
	for i := 0; i+1 < len(resources.Content); i += 2 {
		if r := resources.Content[i+1]; get(r, "Type") != nil && get(r, "Type").Value == "AWS::Serverless::Function" {
			if fn != nil {
				t.Fatalf("%s: more than one AWS::Serverless::Function", samPath)
			}
			fn = get(r, "Properties")
		}
	}
	if fn == nil {
		t.Fatalf("%s: no AWS::Serverless::Function", samPath)
	}
	return doc, fn
}

func TestSAMFunctionMatchesThePackage(t *testing.T) {
	_, fn := samFunction(t)
	scalar := func(keys ...string) string {
		if n := get(fn, keys...); n != nil {
			return n.Value
		}
		return ""
	}
	// make package: GOARCH=$arch ... -o $(DIST)/lambda-$arch/bootstrap, zipped as $(DIST)/lambda-$arch.zip.
	makefile := read(t, "Makefile")
	for _, want := range []string{"lambda-$$arch/bootstrap", "lambda-$$arch.zip", "LAMBDA_ARCHES ?= amd64 arm64"} {
		if !strings.Contains(makefile, want) {
			t.Errorf("Makefile no longer has %q: the Lambda package names changed; update %s", want, samPath)
		}
	}
	code := filepath.Clean(filepath.Join(filepath.Dir(samPath), scalar("CodeUri")))
	if code != filepath.Join("dist", "lambda-arm64.zip") {
		t.Errorf("CodeUri resolves to %s (relative to the template), want dist/lambda-arm64.zip", code)
	}
	arch := get(fn, "Architectures")
	if arch == nil || len(arch.Content) != 1 || arch.Content[0].Value != "arm64" {
		t.Errorf("Architectures must be [arm64], the package's architecture")
	}
	for key, want := range map[string]string{"Runtime": "provided.al2023", "Handler": "bootstrap"} {
		if got := scalar(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if timeout, err := strconv.Atoi(scalar("Timeout")); err != nil || timeout < 60 {
		t.Errorf("Timeout = %q, want at least 60 seconds", scalar("Timeout"))
	}
	if got := scalar("FunctionUrlConfig", "AuthType"); got != "NONE" {
		t.Errorf("FunctionUrlConfig.AuthType = %q, want NONE: Azure DevOps cannot sign with IAM; the webhook checks basic auth", got)
	}
	// functions/lambda.go reconciles on a "Scheduled Event" with source aws.events: an EventBridge rule.
	events := get(fn, "Events")
	found := false
	for i := 0; events != nil && i+1 < len(events.Content); i += 2 {
		ev := events.Content[i+1]
		if get(ev, "Type") != nil && get(ev, "Type").Value == "Schedule" && get(ev, "Properties", "Schedule") != nil &&
			get(ev, "Properties", "Schedule").Value == "rate(1 minute)" {
			found = true
		}
	}
	if !found {
		t.Error("no Schedule event with Schedule: rate(1 minute)")
	}
}

var resolveRE = regexp.MustCompile(`^\{\{resolve:secretsmanager:\$\{\w+\}:SecretString:(\w+)\}\}$`)

func TestSAMEnvironmentIsWhatTheBinaryReads(t *testing.T) {
	doc, fn := samFunction(t)
	vars := get(fn, "Environment", "Variables")
	if vars == nil {
		t.Fatal("no Environment.Variables")
	}
	reads := binaryEnv(t)
	// Sample values of the parameters without a default, as a user would give them.
	given := map[string]string{"AzureDevOpsUrl": "https://dev.azure.com/contoso", "AzurePool": "Linux Agents",
		"AgentImage": "contoso.azurecr.io/azp-agent:linux"}
	param := func(name string) (string, error) {
		p := get(doc, "Parameters", name)
		if p == nil {
			return "", fmt.Errorf("!Ref %s: no such parameter", name)
		}
		if v, ok := given[name]; ok {
			return v, nil
		}
		if d := get(p, "Default"); d != nil {
			return d.Value, nil
		}
		return "", fmt.Errorf("parameter %s has no default: add a sample value to this test", name)
	}
	env := map[string]string{}
	for i := 0; i+1 < len(vars.Content); i += 2 {
		name, v := vars.Content[i].Value, vars.Content[i+1]
		if !reads[name] {
			t.Errorf("environment variable %s: the binary reads no such variable", name)
		}
		var value string
		var err error
		switch {
		case v.Tag == "!Ref":
			value, err = param(v.Value)
		case v.Tag == "!If" && len(v.Content) == 3:
			// Every condition tests a parameter against its empty default: take the else branch.
			if e := v.Content[2]; e.Tag == "!Ref" && e.Value != "AWS::NoValue" {
				value, err = param(e.Value)
			} else if e.Tag != "!Ref" {
				value = e.Value
			} else {
				continue // AWS::NoValue: the variable is not set
			}
		case v.Tag == "!Sub":
			m := resolveRE.FindStringSubmatch(v.Value)
			if m == nil {
				t.Errorf("%s = !Sub %q: only Secrets Manager dynamic references are expected here", name, v.Value)
				continue
			}
			if m[1] != name {
				t.Errorf("%s resolves the secret's key %s; use the key %s, so the secret reads like the environment", name, m[1], name)
			}
			value = "secret-value-of-" + name
		case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
			value = v.Value
		default:
			t.Errorf("%s: unexpected value %s %q", name, v.Tag, v.Value)
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		env[name] = value
	}
	for _, secret := range []string{"AZP_TOKEN", "AGENTSCALER_WEBHOOK_PASSWORD"} {
		if n := get(vars, secret); n == nil || n.Tag != "!Sub" || !resolveRE.MatchString(n.Value) {
			t.Errorf("%s must come from Secrets Manager: !Sub \"{{resolve:secretsmanager:${SecretName}:SecretString:%s}}\"", secret, secret)
		}
	}
	cfg, err := config.Resolve("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the binary refuses the template's environment (with its defaults): %v", err)
	}
	p := cfg.Pools[0]
	if p.AzurePool != given["AzurePool"] || p.Agent.Image != given["AgentImage"] || p.Provider != "docker" || p.Name != "linux-agents" {
		t.Errorf("pool from the environment = %q/%q/%q/%q, want Linux Agents/%s/docker/linux-agents",
			p.AzurePool, p.Agent.Image, p.Provider, p.Name, given["AgentImage"])
	}
	if cfg.Webhook.BasicAuth == nil || cfg.Webhook.BasicAuth.Username != "azdo" {
		t.Errorf("webhook = %+v, want basic auth for user azdo", cfg.Webhook)
	}
}
