package config

import (
	"slices"
	"strings"
	"testing"
)

// aciFile is a valid file with one aci pool whose aci section is section
// (indented for the pool).
func aciFile(section string) []byte {
	return []byte(`azuredevops: {url: https://dev.azure.com/contoso, token_env: TEST_AZP_TOKEN}
webhook: {basic_auth: {username: azdo, password_env: TEST_WEBHOOK_PASSWORD}}
pools:
  - name: aci
    azure_pool: Containers
    provider: aci
    agent: {image: contoso.azurecr.io/azp-agent:linux}
    aci:
      subscription_id: 00000000-0000-0000-0000-000000000000
      resource_group: rg-agents
      location: westeurope
` + section)
}

var aciEnv = env(map[string]string{
	"TEST_AZP_TOKEN":        "pat-value-7c1d",
	"TEST_WEBHOOK_PASSWORD": "hook-password-3e8a",
	"ACR_USER":              "puller",
	"ACR_PASSWORD":          "acr-password-91b0",
	"ARM_CLIENT_SECRET":     "client-secret-0d2e",
})

func TestACIFullSection(t *testing.T) {
	cfg, err := parse(aciFile(`      subnet_ids: [/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/agents]
      os_type: Windows
      zones: ["1", "3"]
      dns: {name_servers: [10.0.0.4, "fd00::53"], search_domains: [corp.contoso.com], options: "ndots:2"}
      registry: {server: contoso.azurecr.io, username_env: ACR_USER, password_env: ACR_PASSWORD}
      identity: {client_id: 11111111-1111-1111-1111-111111111111, tenant_id: 22222222-2222-2222-2222-222222222222, client_secret_env: ARM_CLIENT_SECRET}
`), aciEnv)
	if err != nil {
		t.Fatalf("a full aci section does not load:\n%v", err)
	}
	a := cfg.Pools[0].ACI
	checks := []struct {
		what      string
		got, want any
	}{
		{"os_type", a.OSType, "Windows"},
		{"zones", strings.Join(a.Zones, ","), "1,3"},
		{"dns.name_servers", strings.Join(a.DNS.NameServers, ","), "10.0.0.4,fd00::53"},
		{"dns.search_domains", strings.Join(a.DNS.SearchDomains, ","), "corp.contoso.com"},
		{"dns.options", a.DNS.Options, "ndots:2"},
		{"registry", *a.Registry, ACIRegistry{Server: "contoso.azurecr.io", UsernameEnv: "ACR_USER", PasswordEnv: "ACR_PASSWORD"}},
		{"identity", *a.Identity, AzureIdentity{ClientID: "11111111-1111-1111-1111-111111111111", TenantID: "22222222-2222-2222-2222-222222222222", ClientSecretEnv: "ARM_CLIENT_SECRET"}},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestACIDefaults(t *testing.T) {
	cfg, err := parse(aciFile(""), aciEnv)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Pools[0].ACI
	if a.OSType != "Linux" || a.DNS != nil || a.Registry != nil || a.Identity != nil || len(a.Zones) != 0 {
		t.Errorf("aci with only the required keys = %+v; want os_type Linux and nothing else set", *a)
	}
}

func TestACIRegistryForms(t *testing.T) {
	for _, section := range []string{
		"      registry: {server: contoso.azurecr.io, identity: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/acr-pull}\n",
		"      registry: {server: \"registry.contoso.com:5000\", username_env: ACR_USER, password_env: ACR_PASSWORD}\n",
	} {
		if _, err := parse(aciFile(section), aciEnv); err != nil {
			t.Errorf("%s does not load:\n%v", strings.TrimSpace(section), err)
		}
	}
}

func TestACIProblems(t *testing.T) {
	const k = "pools[0].aci."
	tests := []struct {
		name    string
		section string
		says    map[string]string // every problem's key -> a phrase its message must hold
	}{
		{
			name:    "zones",
			section: "      zones: [\"1\", westeurope-2]\n",
			says:    map[string]string{k + "zones[1]": "must be an availability zone: 1, 2 or 3"},
		},
		{
			name:    "dns",
			section: "      dns: {search_domains: [\"corp contoso\"], name_servers: []}\n",
			says:    map[string]string{k + "dns.name_servers": "at least one DNS server", k + "dns.search_domains[0]": "must be a domain name"},
		},
		{
			name:    "dns server",
			section: "      dns: {name_servers: [dns.contoso.com]}\n",
			says:    map[string]string{k + "dns.name_servers[0]": "must be an IP address"},
		},
		{
			name:    "registry without auth",
			section: "      registry: {server: https://contoso.azurecr.io}\n",
			says:    map[string]string{k + "registry.server": "without https://", k + "registry": "set username_env and password_env, or identity"},
		},
		{
			name:    "registry both",
			section: "      registry: {server: contoso.azurecr.io, username_env: ACR_USER, password_env: ACR_PASSWORD, identity: x}\n",
			says:    map[string]string{k + "registry.identity": "keep either the identity or the user name and password"},
		},
		{
			name:    "registry unset variables",
			section: "      registry: {server: contoso.azurecr.io, username_env: NOT_SET_USER, password_env: \"s3cr3t-value!\"}\n",
			says: map[string]string{
				k + "registry.username_env": "environment variable NOT_SET_USER is not set",
				k + "registry.password_env": "must be the name of an environment variable",
			},
		},
		{
			name:    "registry identity",
			section: "      registry: {server: contoso.azurecr.io, identity: acr-pull}\n",
			says:    map[string]string{k + "registry.identity": "userAssignedIdentities"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(aciFile(tt.section), aciEnv)
			ps := problemsOf(t, err)
			got := keysOf(ps)
			var want []string
			for key := range tt.says {
				want = append(want, key)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("problem keys:\n got %q\nwant %q\nerror:\n%v", got, want, err)
			}
			for _, p := range ps {
				if !strings.Contains(p.Message, tt.says[p.Key]) {
					t.Errorf("%s: message %q does not say %q", p.Key, p.Message, tt.says[p.Key])
				}
				if p.Line == 0 {
					t.Errorf("%s: no line number", p.Key)
				}
				for _, secret := range []string{"acr-password-91b0", "s3cr3t-value!"} {
					if strings.Contains(p.Message, secret) {
						t.Errorf("%s: message reveals a secret: %q", p.Key, p.Message)
					}
				}
			}
		})
	}
}

// TestACIPoolNameWithDoubleHyphen: container group names may not hold
// "--", so a pool whose agents would all fail to start is refused at load.
func TestACIPoolNameWithDoubleHyphen(t *testing.T) {
	file := strings.Replace(string(aciFile("")), "name: aci", "name: build--linux", 1)
	_, err := parse([]byte(file), aciEnv)
	if err == nil || !strings.Contains(err.Error(), "pools[0].name") || !strings.Contains(err.Error(), "two hyphens") {
		t.Fatalf("pool build--linux with provider aci: %v, want a problem at pools[0].name about two hyphens", err)
	}
}
