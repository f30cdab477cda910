package config

import (
	"regexp"
	"strings"
)

// AzureIdentity is an Entra ID identity the autoscaler signs its Azure calls
// with: azuredevops.entra for Azure DevOps, and pools[].aci.identity for the
// ARM calls of the ACI provider. Both take the same keys. Secrets are named
// by environment variable only.
type AzureIdentity struct {
	// Method picks the credential: managed-identity, workload-identity,
	// client-secret or azure-cli. Left out, the other keys pick it (see
	// AzureIdentity.Kind), as they did before method existed.
	Method string `yaml:"method"`
	// ClientID is a user-assigned managed identity, the application of a
	// workload identity, or the service principal of ClientSecretEnv.
	ClientID string `yaml:"client_id"`
	// ResourceID is a user-assigned managed identity by resource id.
	ResourceID string `yaml:"resource_id"`
	// TenantID is the directory: a GUID, or a domain such as
	// contoso.onmicrosoft.com.
	TenantID string `yaml:"tenant_id"`
	// ClientSecretEnv names the variable holding a service principal's secret.
	ClientSecretEnv string `yaml:"client_secret_env"`
}

// The credentials an AzureIdentity can select. The first four are values of
// method; the chains are what an identity without method resolves to.
const (
	IdentityManaged      = "managed-identity"  // the host's managed identity: system-assigned, or user-assigned by client_id or resource_id
	IdentityWorkload     = "workload-identity" // a federated token from the file AZURE_FEDERATED_TOKEN_FILE names (AKS, or any OIDC issuer)
	IdentityClientSecret = "client-secret"     // a service principal: client_id, tenant_id and the secret in client_secret_env
	IdentityAzureCLI     = "azure-cli"         // the account of `az login`, for local use
	// IdentityChain (client_id alone): workload identity when
	// AZURE_FEDERATED_TOKEN_FILE is set, then the managed identity with
	// that client id, then the Azure CLI.
	IdentityChain = "chain"
	// IdentityDefaultChain (nothing set): azidentity's default chain:
	// environment, workload identity, the host's managed identity, the Azure CLI.
	IdentityDefaultChain = "default-chain"
)

// Variables of the workload identity, as the AKS workload identity webhook
// sets them; azidentity reads the same names.
const (
	EnvAzureClientID           = "AZURE_CLIENT_ID"
	EnvAzureTenantID           = "AZURE_TENANT_ID"
	EnvAzureFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
)

var (
	identityMethods = []string{IdentityManaged, IdentityWorkload, IdentityClientSecret, IdentityAzureCLI}
	identityIDRE    = regexp.MustCompile(`(?i)^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$`)
	// A tenant by domain name has at least one dot: contoso.onmicrosoft.com.
	tenantDomainRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
)

const identityIDForm = "/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"

// Kind is the credential the identity selects: its method, or, without one,
// client-secret when client_secret_env is set, managed-identity for a
// resource_id, the chain for a client_id alone, else the default chain. A
// nil identity is the default chain.
func (id *AzureIdentity) Kind() string {
	switch {
	case id == nil:
		return IdentityDefaultChain
	case id.Method != "":
		return id.Method
	case id.ClientSecretEnv != "":
		return IdentityClientSecret
	case id.ResourceID != "":
		return IdentityManaged
	case id.ClientID != "":
		return IdentityChain
	}
	return IdentityDefaultChain
}

// azureIdentity validates an identity; k is its key with a trailing dot
// ("azuredevops.entra.").
func (v *validator) azureIdentity(k string, id *AzureIdentity) {
	if id.Method != "" {
		v.oneOf(k+"method", id.Method, identityMethods)
	}
	if id.ClientID != "" && !guidRE.MatchString(id.ClientID) {
		v.add(k+"client_id", "must be a GUID (the managed identity or application client id)")
	}
	if id.TenantID != "" && !guidRE.MatchString(id.TenantID) && !tenantDomainRE.MatchString(strings.ToLower(id.TenantID)) {
		v.add(k+"tenant_id", "must be the directory (tenant) id: a GUID, or a domain such as contoso.onmicrosoft.com")
	}
	if id.ResourceID != "" && !identityIDRE.MatchString(id.ResourceID) {
		v.add(k+"resource_id", "must be a user-assigned identity resource id: %s", identityIDForm)
	}
	switch id.Kind() {
	case IdentityClientSecret:
		// A client secret is the service-principal flow, which names both ids.
		if id.ResourceID != "" {
			v.add(k+"resource_id", "a client secret belongs to an application, not a managed identity; remove resource_id and set client_id")
		}
		if id.ClientID == "" {
			v.add(k+"client_id", "required with client_secret_env: the application (client) id")
		}
		if id.TenantID == "" {
			v.add(k+"tenant_id", "required with client_secret_env: the directory (tenant) id")
		}
		v.env(k+"client_secret_env", id.ClientSecretEnv, "the client secret")
	case IdentityManaged:
		if id.ClientID != "" && id.ResourceID != "" {
			v.add(k+"resource_id", "client_id is set as well; name the managed identity by one of client_id or resource_id")
		}
		v.noSecret(k, id, "a managed identity has no secret")
		if id.Method != "" && id.TenantID != "" {
			v.add(k+"tenant_id", "a managed identity belongs to the tenant of its host; remove tenant_id")
		}
	case IdentityWorkload:
		if id.ResourceID != "" {
			v.add(k+"resource_id", "a workload identity is an application, named by client_id; remove resource_id")
		}
		v.noSecret(k, id, "a workload identity signs with the federated token, not a secret")
		if id.ClientID == "" && v.getenv(EnvAzureClientID) == "" {
			v.add(k+"client_id", "required with method workload-identity: the application (client) id, unless %s is set", EnvAzureClientID)
		}
		if id.TenantID == "" && v.getenv(EnvAzureTenantID) == "" {
			v.add(k+"tenant_id", "required with method workload-identity: the directory (tenant) id, unless %s is set", EnvAzureTenantID)
		}
		if v.getenv(EnvAzureFederatedTokenFile) == "" {
			v.add(k+"method", "workload-identity reads the federated token from the file %s names, and it is not set; on AKS label the pod azure.workload.identity/use: \"true\", elsewhere export it", EnvAzureFederatedTokenFile)
		}
	case IdentityAzureCLI:
		if id.ClientID != "" || id.ResourceID != "" {
			v.add(k+"method", "azure-cli signs in as the account of `az login`; remove client_id and resource_id, or pick another method")
		}
		v.noSecret(k, id, "azure-cli takes the account of `az login`")
	}
}

// noSecret refuses client_secret_env for a method that has no use for it.
func (v *validator) noSecret(k string, id *AzureIdentity, why string) {
	if id.ClientSecretEnv != "" {
		v.add(k+"client_secret_env", "%s; remove client_secret_env, or set method: %s", why, IdentityClientSecret)
	}
}
