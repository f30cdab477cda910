package config

import (
	"strings"
	"testing"
)

const (
	testGUID       = "11111111-1111-1111-1111-111111111111"
	testTenant     = "22222222-2222-2222-2222-222222222222"
	testIdentityID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agentscaler"
)

// identityFiles are valid files but for an identity, written as body, in
// each of the two places that take one, by the key prefix of its problems.
func identityFiles(body string) map[string][]byte {
	return map[string][]byte{
		"azuredevops.entra.":     []byte(strings.Replace(string(aciFile("")), "token_env: TEST_AZP_TOKEN", "entra: "+body, 1)),
		"pools[0].aci.identity.": aciFile("      identity: " + body + "\n"),
	}
}

// withEnv is aciEnv with more variables set.
func withEnv(more map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := more[name]; ok {
			return v
		}
		return aciEnv(name)
	}
}

var workloadEnv = map[string]string{EnvAzureFederatedTokenFile: "/var/run/secrets/azure/tokens/azure-identity-token"}

// TestIdentityForms: azuredevops.entra and aci.identity accept the same
// forms, and each selects the credential it names.
func TestIdentityForms(t *testing.T) {
	tests := []struct {
		body string
		env  map[string]string
		kind string
	}{
		{"{}", nil, IdentityDefaultChain},
		{"{tenant_id: contoso.onmicrosoft.com}", nil, IdentityDefaultChain},
		{"{client_id: " + testGUID + "}", nil, IdentityChain},
		{"{client_id: " + testGUID + ", tenant_id: " + testTenant + "}", workloadEnv, IdentityChain},
		{"{resource_id: " + testIdentityID + "}", nil, IdentityManaged},
		{"{method: managed-identity}", nil, IdentityManaged},
		{"{method: managed-identity, client_id: " + testGUID + "}", nil, IdentityManaged},
		{"{method: managed-identity, resource_id: " + testIdentityID + "}", nil, IdentityManaged},
		{"{method: workload-identity, client_id: " + testGUID + ", tenant_id: " + testTenant + "}", workloadEnv, IdentityWorkload},
		{"{method: workload-identity}", map[string]string{EnvAzureFederatedTokenFile: "/token", EnvAzureClientID: testGUID, EnvAzureTenantID: testTenant}, IdentityWorkload},
		{"{client_id: " + testGUID + ", tenant_id: " + testTenant + ", client_secret_env: ARM_CLIENT_SECRET}", nil, IdentityClientSecret},
		{"{method: client-secret, client_id: " + testGUID + ", tenant_id: contoso.onmicrosoft.com, client_secret_env: ARM_CLIENT_SECRET}", nil, IdentityClientSecret},
		{"{method: azure-cli}", nil, IdentityAzureCLI},
		{"{method: azure-cli, tenant_id: " + testTenant + "}", nil, IdentityAzureCLI},
	}
	for _, tt := range tests {
		for key, file := range identityFiles(tt.body) {
			cfg, err := parse(file, withEnv(tt.env))
			if err != nil {
				t.Errorf("%s %s does not load:\n%v", key, tt.body, err)
				continue
			}
			id := cfg.AzureDevOps.Entra
			if key != "azuredevops.entra." {
				id = cfg.Pools[0].ACI.Identity
			}
			if got := id.Kind(); got != tt.kind {
				t.Errorf("%s %s selects %s, want %s", key, tt.body, got, tt.kind)
			}
		}
	}
	if got := (*AzureIdentity)(nil).Kind(); got != IdentityDefaultChain {
		t.Errorf("an identity left out selects %s, want %s", got, IdentityDefaultChain)
	}
}

// TestIdentityProblems: the same mistakes give the same problems under
// either key, each naming the key and the fix, none repeating a secret.
func TestIdentityProblems(t *testing.T) {
	const pasted = "s3cr3t-value!"
	tests := []struct {
		name string
		body string
		env  map[string]string
		says map[string]string // every problem's key, after the identity's own -> a phrase its message must hold
	}{
		{"method typo", "{method: managed_identity}", nil, map[string]string{"method": `did you mean "managed-identity"?`}},
		{"unknown method", "{method: certificate}", nil, map[string]string{"method": "must be one of managed-identity, workload-identity, client-secret, azure-cli"}},
		{"both ids", "{client_id: not-a-guid, resource_id: " + testIdentityID + "}", nil, map[string]string{
			"client_id":   "must be a GUID",
			"resource_id": "name the managed identity by one of client_id or resource_id",
		}},
		{"bad resource id", "{resource_id: agentscaler}", nil, map[string]string{"resource_id": "userAssignedIdentities/<name>"}},
		{"bad tenant", "{tenant_id: contoso onmicrosoft}", nil, map[string]string{"tenant_id": "a GUID, or a domain such as contoso.onmicrosoft.com"}},
		{"client secret alone", "{client_secret_env: ARM_CLIENT_SECRET}", nil, map[string]string{
			"client_id": "required with client_secret_env",
			"tenant_id": "required with client_secret_env",
		}},
		{"client secret with resource id", "{client_secret_env: ARM_CLIENT_SECRET, resource_id: " + testIdentityID + "}", nil, map[string]string{
			"resource_id": "remove resource_id and set client_id",
			"client_id":   "required with client_secret_env",
			"tenant_id":   "required with client_secret_env",
		}},
		{"client secret pasted", "{client_id: " + testGUID + ", tenant_id: " + testTenant + ", client_secret_env: \"" + pasted + "\"}", nil, map[string]string{
			"client_secret_env": "must be the name of an environment variable",
		}},
		{"client secret unset", "{client_id: " + testGUID + ", tenant_id: " + testTenant + ", client_secret_env: UNSET_SECRET}", nil, map[string]string{
			"client_secret_env": "environment variable UNSET_SECRET is not set",
		}},
		{"client-secret without its keys", "{method: client-secret}", nil, map[string]string{
			"client_id":         "required with client_secret_env",
			"tenant_id":         "required with client_secret_env",
			"client_secret_env": "required: name the environment variable that holds the client secret",
		}},
		{"managed identity with a secret", "{method: managed-identity, client_id: " + testGUID + ", tenant_id: " + testTenant + ", client_secret_env: ARM_CLIENT_SECRET}", nil, map[string]string{
			"client_secret_env": "a managed identity has no secret",
			"tenant_id":         "remove tenant_id",
		}},
		{"workload identity off AKS", "{method: workload-identity}", nil, map[string]string{
			"method":    "AZURE_FEDERATED_TOKEN_FILE",
			"client_id": "unless AZURE_CLIENT_ID is set",
			"tenant_id": "unless AZURE_TENANT_ID is set",
		}},
		{"workload identity by resource id", "{method: workload-identity, client_id: " + testGUID + ", tenant_id: " + testTenant + ", resource_id: " + testIdentityID + "}", workloadEnv, map[string]string{
			"resource_id": "remove resource_id",
		}},
		{"azure cli as someone", "{method: azure-cli, client_id: " + testGUID + ", client_secret_env: ARM_CLIENT_SECRET}", nil, map[string]string{
			"method":            "remove client_id and resource_id",
			"client_secret_env": "az login",
		}},
	}
	for _, tt := range tests {
		for key, file := range identityFiles(tt.body) {
			_, err := parse(file, withEnv(tt.env))
			if err == nil {
				t.Errorf("%s: %s %s loads", tt.name, key, tt.body)
				continue
			}
			says := map[string]string{}
			for k, phrase := range tt.says {
				says[key+k] = phrase
			}
			saysProblems(t, err, says, pasted, "client-secret-0d2e")
		}
	}
}
