package aci

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/providers"
)

const (
	testSubnet   = "/subscriptions/" + testSubscription + "/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/agents"
	testIdentity = "/subscriptions/" + testSubscription + "/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/acr-pull"
)

// createBody creates spec with the options edit sets and returns the PUT
// body as sent on the wire, decoded without the SDK's types.
func createBody(t *testing.T, spec providers.AgentSpec, edit func(*Options)) (map[string]any, []byte) {
	t.Helper()
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, edit)
	in, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range spec.Secrets {
		if strings.Contains(fmt.Sprintf("%+v", in), v) {
			t.Errorf("Create result reveals a secret: %+v", in)
		}
	}
	svc.mu.Lock()
	raw := svc.lastCreateBody
	svc.mu.Unlock()
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("PUT body is not JSON: %v\n%s", err, raw)
	}
	return body, raw
}

// at walks a decoded JSON document: keys for objects, ints for arrays.
func at(t *testing.T, doc any, path ...any) any {
	t.Helper()
	cur := doc
	for _, step := range path {
		switch s := step.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, s)
			}
			cur = m[s]
		case int:
			a, ok := cur.([]any)
			if !ok || s >= len(a) {
				t.Fatalf("%v: no element %d", path, s)
			}
			cur = a[s]
		}
	}
	return cur
}

func TestCreateRequestBody(t *testing.T) {
	const token = "pat-secret-value-8d1f"
	const password = "registry-password-51ac"
	spec := baseSpec("linux-r42")
	spec.CPU, spec.MemoryMB = 2, 3500
	body, raw := createBody(t, spec, func(o *Options) {
		o.SubnetIDs = []string{testSubnet}
		o.Zones = []string{"2"}
		o.DNS = &DNS{NameServers: []string{"10.0.0.4", "10.0.0.5"}, SearchDomains: []string{"corp.contoso.com", "contoso.com"}}
		o.Registry = &Registry{Server: "contoso.azurecr.io", Username: "puller", Password: password}
	})

	if n := bytes.Count(raw, []byte(token)); n != 1 {
		t.Errorf("the token appears %d times in the body; want exactly once, as a secure value", n)
	}
	props := at(t, body, "properties").(map[string]any)
	env := at(t, props, "containers", 0, "properties", "environmentVariables").([]any)
	byName := map[string]map[string]any{}
	for _, e := range env {
		m := e.(map[string]any)
		byName[m["name"].(string)] = m
	}
	if tok := byName["AZP_TOKEN"]; tok == nil || tok["secureValue"] != token || tok["value"] != nil {
		t.Errorf("AZP_TOKEN = %v; want only a secureValue", tok)
	}
	if url := byName["AZP_URL"]; url == nil || url["value"] != "https://dev.azure.com/contoso" || url["secureValue"] != nil {
		t.Errorf("AZP_URL = %v; want a plain value", url)
	}
	if got, want := slices.Sorted(maps.Keys(byName)), []string{"AZP_AGENT_NAME", "AZP_POOL", "AZP_TOKEN", "AZP_URL"}; !slices.Equal(got, want) {
		t.Errorf("environment = %v, want %v", got, want)
	}

	if got := at(t, props, "subnetIds", 0, "id"); got != testSubnet {
		t.Errorf("subnetIds[0].id = %v, want %s", got, testSubnet)
	}
	if _, ok := props["ipAddress"]; ok {
		t.Errorf("the group has an ipAddress (%v); a group in a subnet, or any agent, must have none", props["ipAddress"])
	}
	for key, want := range map[string]any{"restartPolicy": "Never", "osType": "Linux"} {
		if props[key] != want {
			t.Errorf("properties.%s = %v, want %v", key, props[key], want)
		}
	}
	if got := at(t, props, "containers", 0, "properties", "resources", "requests"); fmt.Sprint(got) != "map[cpu:2 memoryInGB:3.5]" {
		t.Errorf("resources.requests = %v; want 2 cores and 3.5 GB (3500 MiB rounded up to 0.1 GB)", got)
	}
	if got := at(t, props, "containers", 0, "properties", "image"); got != spec.Image {
		t.Errorf("image = %v", got)
	}
	if got := at(t, props, "dnsConfig"); fmt.Sprint(got) != "map[nameServers:[10.0.0.4 10.0.0.5] searchDomains:corp.contoso.com contoso.com]" {
		t.Errorf("dnsConfig = %v", got)
	}
	if got := at(t, props, "imageRegistryCredentials", 0); fmt.Sprint(got) != fmt.Sprintf("map[password:%s server:contoso.azurecr.io username:puller]", password) {
		t.Errorf("imageRegistryCredentials[0] = %v", got)
	}
	if body["location"] != "westeurope" || fmt.Sprint(body["zones"]) != "[2]" {
		t.Errorf("location, zones = %v, %v; want westeurope, [2]", body["location"], body["zones"])
	}
	if _, ok := body["identity"]; ok {
		t.Errorf("a group pulling with a password has an identity: %v", body["identity"])
	}

	tags := at(t, body, "tags").(map[string]any)
	created, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(tags[tagCreated]))
	delete(tags, tagCreated)
	want := map[string]any{"agentscaler.io_managed": "true", "agentscaler.io_pool": "linux", "agentscaler.io_request": "42"}
	if !maps.Equal(tags, want) {
		t.Errorf("tags = %v, want %v and %s", tags, want, tagCreated)
	}
	if time.Since(created) > time.Minute || created.After(time.Now()) {
		t.Errorf("%s = %v; want the time of the create", tagCreated, created)
	}
}

func TestCreateRequestBodyRegistryIdentity(t *testing.T) {
	spec := baseSpec("linux-w3")
	spec.Request, spec.Slot = 0, 3
	body, _ := createBody(t, spec, func(o *Options) {
		o.OSType = "Windows"
		o.Registry = &Registry{Server: "contoso.azurecr.io", Identity: testIdentity}
	})
	if got := at(t, body, "properties", "imageRegistryCredentials", 0); fmt.Sprint(got) != fmt.Sprintf("map[identity:%s server:contoso.azurecr.io]", testIdentity) {
		t.Errorf("imageRegistryCredentials[0] = %v; want the server and the identity only", got)
	}
	if got := at(t, body, "identity"); fmt.Sprint(got) != fmt.Sprintf("map[type:UserAssigned userAssignedIdentities:map[%s:map[]]]", testIdentity) {
		t.Errorf("identity = %v; want the user-assigned identity attached", got)
	}
	props := at(t, body, "properties").(map[string]any)
	if props["osType"] != "Windows" {
		t.Errorf("osType = %v", props["osType"])
	}
	for _, key := range []string{"ipAddress", "subnetIds", "dnsConfig"} {
		if _, ok := props[key]; ok {
			t.Errorf("properties.%s is set without being configured: %v", key, props[key])
		}
	}
	if got := at(t, body, "properties", "containers", 0, "properties", "resources", "requests"); fmt.Sprint(got) != fmt.Sprintf("map[cpu:%v memoryInGB:%v]", DefaultCPU, DefaultMemoryGB) {
		t.Errorf("resources.requests = %v; want the defaults for a spec without resources", got)
	}
	tags := at(t, body, "tags").(map[string]any)
	if tags["agentscaler.io_slot"] != "3" || tags["agentscaler.io_request"] != nil {
		t.Errorf("tags of a warm agent = %v; want slot 3 and no request", tags)
	}
}
