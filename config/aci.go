package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// ACI holds the Azure Container Instances provider's settings. Secrets
// (registry password, client secret) are named by environment variable.
type ACI struct {
	SubscriptionID string   `yaml:"subscription_id"`
	ResourceGroup  string   `yaml:"resource_group"` // best dedicated to the agents: the identity's role is scoped to it
	Location       string   `yaml:"location"`
	SubnetIDs      []string `yaml:"subnet_ids"` // private network: subnets delegated to Microsoft.ContainerInstance/containerGroups
	OSType         string   `yaml:"os_type"`    // Linux | Windows
	Zones          []string `yaml:"zones"`      // availability zones: "1", "2", "3"

	DNS      *ACIDNS      `yaml:"dns"`
	Registry *ACIRegistry `yaml:"registry"`
	// Identity is who the autoscaler is for its own ARM calls. Left out:
	// the default chain (environment, workload identity, the managed
	// identity of the host, the Azure CLI).
	Identity *AzureIdentity `yaml:"identity"`
}

// ACIDNS is the resolver configuration inside each container group.
type ACIDNS struct {
	NameServers   []string `yaml:"name_servers"`
	SearchDomains []string `yaml:"search_domains"`
	Options       string   `yaml:"options"` // resolv.conf options, such as "ndots:2"
}

// ACIRegistry is how ACI pulls a private agent image: a user name and
// password from the environment, or a user-assigned managed identity that
// holds AcrPull on the registry.
type ACIRegistry struct {
	Server      string `yaml:"server"` // contoso.azurecr.io
	UsernameEnv string `yaml:"username_env"`
	PasswordEnv string `yaml:"password_env"`
	Identity    string `yaml:"identity"` // resource id of a user-assigned identity
}

var aciZones = []string{"1", "2", "3"}

func (a *ACI) defaults() {
	if a.OSType == "" {
		a.OSType = DefaultACIOSType
	}
}

func (v *validator) aci(k string, a *ACI) {
	switch {
	case a.SubscriptionID == "":
		v.add(k+"subscription_id", "required when provider is aci: the subscription that holds the container groups")
	case !guidRE.MatchString(a.SubscriptionID):
		v.add(k+"subscription_id", "must be a subscription id (a GUID)")
	}
	if a.ResourceGroup == "" {
		v.add(k+"resource_group", "required when provider is aci: the resource group for the container groups")
	}
	if a.Location == "" {
		v.add(k+"location", "required when provider is aci: an Azure region, such as westeurope")
	}
	v.oneOf(k+"os_type", a.OSType, osTypes)
	for i, id := range a.SubnetIDs {
		if !strings.HasPrefix(strings.ToLower(id), "/subscriptions/") || !strings.Contains(strings.ToLower(id), "/subnets/") {
			v.add(fmt.Sprintf("%ssubnet_ids[%d]", k, i), "must be a subnet resource id: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>")
		}
	}
	for i, z := range a.Zones {
		if !slices.Contains(aciZones, z) {
			v.add(fmt.Sprintf("%szones[%d]", k, i), "must be an availability zone: 1, 2 or 3 (got %q); leave zones out to let Azure choose", z)
		}
	}
	if a.DNS != nil {
		v.aciDNS(k+"dns.", a.DNS)
	}
	if a.Registry != nil {
		v.aciRegistry(k+"registry.", a.Registry)
	}
	if a.Identity != nil {
		v.azureIdentity(k+"identity.", a.Identity)
	}
}

func (v *validator) aciDNS(k string, d *ACIDNS) {
	if len(d.NameServers) == 0 {
		v.add(k+"name_servers", "required with dns: at least one DNS server address, such as 10.0.0.4")
	}
	for i, s := range d.NameServers {
		if net.ParseIP(s) == nil {
			v.add(fmt.Sprintf("%sname_servers[%d]", k, i), "must be an IP address, such as 10.0.0.4 (got %q)", s)
		}
	}
	for i, s := range d.SearchDomains {
		if !dnsSubdomRE.MatchString(strings.ToLower(s)) {
			v.add(fmt.Sprintf("%ssearch_domains[%d]", k, i), "must be a domain name, such as corp.contoso.com (got %q)", s)
		}
	}
}

func (v *validator) aciRegistry(k string, r *ACIRegistry) {
	switch {
	case r.Server == "":
		v.add(k+"server", "required with registry: the registry host, such as contoso.azurecr.io")
	case strings.Contains(r.Server, "/") || !dnsSubdomRE.MatchString(strings.ToLower(hostOnly(r.Server))):
		v.add(k+"server", "must be a registry host name such as contoso.azurecr.io, without https:// or a path (got %q)", r.Server)
	}
	password := r.UsernameEnv != "" || r.PasswordEnv != ""
	switch {
	case password && r.Identity != "":
		v.add(k+"identity", "username_env and password_env are set as well; keep either the identity or the user name and password")
	case password:
		v.env(k+"username_env", r.UsernameEnv, "the registry user name")
		v.env(k+"password_env", r.PasswordEnv, "the registry password")
	case r.Identity == "":
		v.add(strings.TrimSuffix(k, "."), "set username_env and password_env, or identity (a user-assigned identity with AcrPull on the registry)")
	case !identityIDRE.MatchString(r.Identity):
		v.add(k+"identity", "must be a user-assigned identity resource id: %s", identityIDForm)
	}
}

// hostOnly drops a port from a registry host.
func hostOnly(server string) string {
	if h, _, err := net.SplitHostPort(server); err == nil {
		return h
	}
	return server
}
