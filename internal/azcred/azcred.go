// Package azcred builds the Entra ID credential a config.AzureIdentity
// selects, for Azure DevOps (azuredevops.entra) and for the ACI provider's
// ARM calls (pools[].aci.identity) alike. It logs which credential it built
// and, at the first token, whose it is; never a secret or a token.
package azcred

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/config"
)

// Credential is the credential an identity selects, logging who its first
// token was issued to.
type Credential struct {
	azcore.TokenCredential        // the azidentity credential itself
	Kind                   string // config.IdentityManaged, ..., config.IdentityDefaultChain
	key                    string
	log                    *slog.Logger
	logged                 atomic.Bool
}

// New builds the credential id selects (nil: the default chain); key names
// the setting, such as azuredevops.entra, in errors and logs. getenv
// resolves client_secret_env and the workload identity's variables; id is
// expected to have passed config validation.
func New(key string, id *config.AzureIdentity, getenv func(string) string, log *slog.Logger) (*Credential, error) {
	if id == nil {
		id = &config.AzureIdentity{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kind := id.Kind()
	attrs := []any{"for", key, "method", kind}
	var cred azcore.TokenCredential
	var err error
	switch kind {
	case config.IdentityClientSecret:
		cred, err = azidentity.NewClientSecretCredential(id.TenantID, id.ClientID, getenv(id.ClientSecretEnv), nil)
		attrs = append(attrs, "client_id", id.ClientID, "tenant_id", id.TenantID, "secret_variable", id.ClientSecretEnv)
	case config.IdentityManaged:
		cred, err = managed(id)
		switch {
		case id.ResourceID != "":
			attrs = append(attrs, "identity", "user-assigned", "resource_id", id.ResourceID)
		case id.ClientID != "":
			attrs = append(attrs, "identity", "user-assigned", "client_id", id.ClientID)
		default:
			attrs = append(attrs, "identity", "system-assigned")
		}
	case config.IdentityWorkload:
		cred, err = workload(id, getenv)
		attrs = append(attrs, "client_id", or(id.ClientID, getenv(config.EnvAzureClientID)),
			"tenant_id", or(id.TenantID, getenv(config.EnvAzureTenantID)), "token_file", getenv(config.EnvAzureFederatedTokenFile))
	case config.IdentityAzureCLI:
		cred, err = azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: id.TenantID})
		attrs = append(attrs, "tenant_id", id.TenantID)
	case config.IdentityChain:
		var chain []string
		cred, chain, err = clientIDChain(id, getenv)
		attrs = append(attrs, "chain", strings.Join(chain, ","), "client_id", id.ClientID, "tenant_id", id.TenantID)
	case config.IdentityDefaultChain:
		cred, err = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{TenantID: id.TenantID})
		mi := "system-assigned"
		if v := getenv(config.EnvAzureClientID); v != "" {
			mi = "client id " + v + " (" + config.EnvAzureClientID + ")"
		}
		attrs = append(attrs, "chain", "environment,workload-identity,managed-identity,azure-cli,azure-developer-cli", "managed_identity", mi)
	default:
		return nil, fmt.Errorf("%s.method: unknown method %q; use one of %s, %s, %s, %s", key, kind,
			config.IdentityManaged, config.IdentityWorkload, config.IdentityClientSecret, config.IdentityAzureCLI)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: build the %s credential: %w; check the keys of %s and the AZURE_* variables", key, kind, err, key)
	}
	log.Info("Azure credential", attrs...)
	return &Credential{TokenCredential: cred, Kind: kind, key: key, log: log}, nil
}

// managed is the host's managed identity: user-assigned by resource id or
// client id, else system-assigned.
func managed(id *config.AzureIdentity) (azcore.TokenCredential, error) {
	var opts azidentity.ManagedIdentityCredentialOptions
	switch {
	case id.ResourceID != "":
		opts.ID = azidentity.ResourceID(id.ResourceID)
	case id.ClientID != "":
		opts.ID = azidentity.ClientID(id.ClientID)
	}
	return azidentity.NewManagedIdentityCredential(&opts)
}

// workload exchanges the federated token in the file
// AZURE_FEDERATED_TOKEN_FILE names; client and tenant come from the
// identity, else from AZURE_CLIENT_ID and AZURE_TENANT_ID.
func workload(id *config.AzureIdentity, getenv func(string) string) (azcore.TokenCredential, error) {
	return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientID:      or(id.ClientID, getenv(config.EnvAzureClientID)),
		TenantID:      or(id.TenantID, getenv(config.EnvAzureTenantID)),
		TokenFilePath: getenv(config.EnvAzureFederatedTokenFile),
	})
}

// clientIDChain tries, in order, workload identity (when its token file is
// set), the managed identity with the client id, and the Azure CLI. It
// returns the names of the links as well.
func clientIDChain(id *config.AzureIdentity, getenv func(string) string) (azcore.TokenCredential, []string, error) {
	var creds []azcore.TokenCredential
	var names []string
	if getenv(config.EnvAzureFederatedTokenFile) != "" {
		wi, err := workload(id, getenv)
		if err != nil {
			return nil, nil, err
		}
		creds, names = append(creds, wi), append(names, config.IdentityWorkload)
	}
	mi, err := managed(id)
	if err != nil {
		return nil, nil, err
	}
	cli, err := azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: id.TenantID})
	if err != nil {
		return nil, nil, err
	}
	creds, names = append(creds, mi, cli), append(names, config.IdentityManaged, config.IdentityAzureCLI)
	chain, err := azidentity.NewChainedTokenCredential(creds, nil)
	return chain, names, err
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// GetToken gets a token and, the first time one is issued, logs whose it
// is: the claims that name the identity, never the token.
func (c *Credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := c.TokenCredential.GetToken(ctx, opts)
	if err == nil && c.logged.CompareAndSwap(false, true) {
		attrs := []any{"for", c.key, "expires", tok.ExpiresOn}
		if claims, ok := identityClaims(tok.Token); ok {
			attrs = append(attrs, "app_id", claims.AppID, "object_id", claims.ObjectID, "tenant_id", claims.TenantID)
			if claims.ManagedIdentity != "" {
				attrs = append(attrs, "managed_identity", claims.ManagedIdentity)
			}
		}
		c.log.Info("Azure credential in use", attrs...)
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
