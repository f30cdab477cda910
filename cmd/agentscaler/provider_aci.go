//go:build !noaci

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/aci"
)

func init() { providerFactories["aci"] = newACIProvider }

// newACIProvider builds a pool's Azure Container Instances provider from its
// aci: section. Secrets come from the variables the section names.
func newACIProvider(_ context.Context, pool config.Pool, env providerEnv) (providers.Provider, error) {
	c := pool.ACI
	cred, err := aciCredential(c.Identity, env.getenv, env.log)
	if err != nil {
		return nil, fmt.Errorf("aci.identity: %w", err)
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

// aciCredential picks the identity of the provider's ARM calls and logs the
// choice, never a secret: a service principal when a client secret is
// named; a user-assigned managed identity by resource id; by client id the
// chain of identityChain (workload identity, that managed identity, the
// Azure CLI); with neither, azidentity's default chain. The identity that
// actually signs is logged once it has its first token.
func aciCredential(id *config.ACIIdentity, getenv func(string) string, log *slog.Logger) (azcore.TokenCredential, error) {
	if id == nil {
		id = &config.ACIIdentity{}
	}
	var cred azcore.TokenCredential
	var err error
	switch {
	case id.ClientSecretEnv != "":
		cred, err = azidentity.NewClientSecretCredential(id.TenantID, id.ClientID, getenv(id.ClientSecretEnv), nil)
		log.Info("ACI credential", "method", "client-secret", "client_id", id.ClientID, "tenant_id", id.TenantID, "secret_variable", id.ClientSecretEnv)
	case id.ResourceID != "":
		cred, err = azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ResourceID(id.ResourceID)})
		log.Info("ACI credential", "method", "managed-identity", "identity", "user-assigned", "resource_id", id.ResourceID)
	case id.ClientID != "":
		cred, err = identityChain(id.ClientID, id.TenantID, getenv)
		chain := "managed-identity,azure-cli"
		if getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
			chain = "workload-identity," + chain
		}
		log.Info("ACI credential", "method", "chain", "chain", chain, "client_id", id.ClientID, "tenant_id", id.TenantID)
	default:
		cred, err = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{TenantID: id.TenantID})
		mi := "system-assigned"
		if v := getenv("AZURE_CLIENT_ID"); v != "" {
			mi = "client id " + v + " (AZURE_CLIENT_ID)"
		}
		log.Info("ACI credential", "method", "default-chain",
			"chain", "environment,workload-identity,managed-identity,azure-cli,azure-developer-cli", "managed_identity", mi)
	}
	if err != nil {
		return nil, err
	}
	return &loggedCredential{TokenCredential: cred, log: log}, nil
}

// loggedCredential logs who its first token was issued to: the claims that
// name the identity, never the token.
type loggedCredential struct {
	azcore.TokenCredential
	log    *slog.Logger
	logged atomic.Bool
}

func (c *loggedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.TokenCredential.GetToken(ctx, opts)
	if err == nil && c.logged.CompareAndSwap(false, true) {
		attrs := []any{"expires", tok.ExpiresOn}
		if claims, ok := identityClaims(tok.Token); ok {
			attrs = append(attrs, "app_id", claims.AppID, "object_id", claims.ObjectID, "tenant_id", claims.TenantID)
			if claims.ManagedIdentity != "" {
				attrs = append(attrs, "managed_identity", claims.ManagedIdentity)
			}
		}
		c.log.Info("ACI credential in use", attrs...)
	}
	return tok, err
}

// claims are the parts of an Entra access token that say who it is for.
type claims struct {
	AppID           string `json:"appid"`
	ObjectID        string `json:"oid"`
	TenantID        string `json:"tid"`
	ManagedIdentity string `json:"xms_mirid"` // resource id, for a managed identity
}

// identityClaims reads, without verifying, the payload of a JWT access token.
func identityClaims(token string) (claims, bool) {
	parts := strings.Split(token, ".")
	var c claims
	if len(parts) != 3 {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, false
	}
	return c, c.AppID != "" || c.ObjectID != ""
}
