//go:build !noaci

package main

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/azcred"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/aci"
)

func init() { providerFactories["aci"] = newACIProvider }

// newACIProvider builds a pool's Azure Container Instances provider from its
// aci: section. Secrets come from the variables the section names.
func newACIProvider(_ context.Context, pool config.Pool, env providerEnv) (providers.Provider, error) {
	c := pool.ACI
	cred, err := azcred.New("aci.identity", c.Identity, env.getenv, env.log)
	if err != nil {
		return nil, err
	}
	opt := aci.Options{
		SubscriptionID: c.SubscriptionID, ResourceGroup: c.ResourceGroup, Location: c.Location,
		OSType: c.OSType, SubnetIDs: c.SubnetIDs, Zones: c.Zones,
		Credential: cred,
		Client:     arm.ClientOptions{ClientOptions: policy.ClientOptions{Telemetry: policy.TelemetryOptions{ApplicationID: "agentscaler"}}},
		Logger:     env.log,
	}
	if d := c.DNS; d != nil {
		opt.DNS = &aci.DNS{NameServers: d.NameServers, SearchDomains: d.SearchDomains, Options: d.Options}
	}
	registryAuth := "none (public image)"
	if r := c.Registry; r != nil {
		opt.Registry = &aci.Registry{Server: r.Server, Identity: r.Identity}
		registryAuth = "identity " + r.Identity
		if r.Identity == "" {
			opt.Registry.Username, opt.Registry.Password = env.getenv(r.UsernameEnv), env.getenv(r.PasswordEnv)
			registryAuth = "password from " + r.PasswordEnv
		}
	}
	env.log.Info("ACI provider", "subscription_id", c.SubscriptionID, "resource_group", c.ResourceGroup,
		"location", c.Location, "os_type", c.OSType, "subnets", len(c.SubnetIDs), "registry_auth", registryAuth)
	return aci.New(opt)
}
