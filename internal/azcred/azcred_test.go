package azcred

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/testenv/identityendpoint"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

const (
	clientID     = "44444444-4444-4444-4444-444444444444"
	tenantID     = "22222222-2222-2222-2222-222222222222"
	resourceID   = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agentscaler"
	clientSecret = "client-secret-0d2e"

	adoScope = "499b84ac-1321-427f-aa17-267ca6975798/.default"
	armScope = "https://management.azure.com/.default"
)

// setEnv sets the variables azidentity reads from the process environment
// itself, unsetting the others, and returns os.Getenv.
func setEnv(t *testing.T, vars map[string]string) func(string) string {
	for _, name := range []string{config.EnvAzureClientID, config.EnvAzureTenantID, config.EnvAzureFederatedTokenFile,
		"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME", "ARM_CLIENT_SECRET"} {
		t.Setenv(name, vars[name])
	}
	return os.Getenv
}

// TestEachFormBuildsItsCredential: every form an identity takes, the same
// for azuredevops.entra and aci.identity, builds the azidentity credential
// of its kind, and the log says which without the secret.
func TestEachFormBuildsItsCredential(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte("federated"), 0o600); err != nil {
		t.Fatal(err)
	}
	wiEnv := map[string]string{config.EnvAzureFederatedTokenFile: tokenFile}
	tests := []struct {
		name     string
		identity *config.AzureIdentity
		env      map[string]string
		kind     string
		want     any // the credential's type
		says     []string
	}{
		{"left out", nil, nil, config.IdentityDefaultChain, &azidentity.DefaultAzureCredential{},
			[]string{"method=default-chain", "managed_identity=system-assigned"}},
		{"empty, AZURE_CLIENT_ID set", &config.AzureIdentity{}, map[string]string{config.EnvAzureClientID: clientID}, config.IdentityDefaultChain,
			&azidentity.DefaultAzureCredential{}, []string{"method=default-chain", "client id " + clientID + " (AZURE_CLIENT_ID)"}},
		{"client id", &config.AzureIdentity{ClientID: clientID}, nil, config.IdentityChain, &azidentity.ChainedTokenCredential{},
			[]string{"method=chain", "chain=managed-identity,azure-cli", "client_id=" + clientID}},
		{"client id on AKS", &config.AzureIdentity{ClientID: clientID, TenantID: tenantID}, wiEnv, config.IdentityChain,
			&azidentity.ChainedTokenCredential{}, []string{"chain=workload-identity,managed-identity,azure-cli"}},
		{"resource id", &config.AzureIdentity{ResourceID: resourceID}, nil, config.IdentityManaged, &azidentity.ManagedIdentityCredential{},
			[]string{"method=managed-identity", "identity=user-assigned", "resource_id=" + resourceID}},
		{"managed by client id", &config.AzureIdentity{Method: config.IdentityManaged, ClientID: clientID}, nil, config.IdentityManaged,
			&azidentity.ManagedIdentityCredential{}, []string{"identity=user-assigned", "client_id=" + clientID}},
		{"system-assigned", &config.AzureIdentity{Method: config.IdentityManaged}, nil, config.IdentityManaged,
			&azidentity.ManagedIdentityCredential{}, []string{"identity=system-assigned"}},
		{"workload", &config.AzureIdentity{Method: config.IdentityWorkload, ClientID: clientID, TenantID: tenantID}, wiEnv, config.IdentityWorkload,
			&azidentity.WorkloadIdentityCredential{}, []string{"method=workload-identity", "client_id=" + clientID, "token_file=" + tokenFile}},
		{"workload from the environment", &config.AzureIdentity{Method: config.IdentityWorkload},
			map[string]string{config.EnvAzureFederatedTokenFile: tokenFile, config.EnvAzureClientID: clientID, config.EnvAzureTenantID: tenantID},
			config.IdentityWorkload, &azidentity.WorkloadIdentityCredential{}, []string{"client_id=" + clientID, "tenant_id=" + tenantID}},
		{"client secret", &config.AzureIdentity{ClientID: clientID, TenantID: tenantID, ClientSecretEnv: "ARM_CLIENT_SECRET"},
			map[string]string{"ARM_CLIENT_SECRET": clientSecret}, config.IdentityClientSecret, &azidentity.ClientSecretCredential{},
			[]string{"method=client-secret", "secret_variable=ARM_CLIENT_SECRET"}},
		{"azure cli", &config.AzureIdentity{Method: config.IdentityAzureCLI, TenantID: tenantID}, nil, config.IdentityAzureCLI,
			&azidentity.AzureCLICredential{}, []string{"method=azure-cli", "tenant_id=" + tenantID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := setEnv(t, tt.env)
			var logs syncbuf.Buffer
			c, err := New("azuredevops.entra", tt.identity, getenv, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("New(%+v): %v", tt.identity, err)
			}
			if c.Kind != tt.kind {
				t.Errorf("kind %s, want %s", c.Kind, tt.kind)
			}
			if got, want := fmt.Sprintf("%T", c.TokenCredential), fmt.Sprintf("%T", tt.want); got != want {
				t.Errorf("built %s, want %s", got, want)
			}
			out := logs.String()
			for _, want := range append(tt.says, "for=azuredevops.entra") {
				if !strings.Contains(out, want) {
					t.Errorf("logs do not say %s:\n%s", want, out)
				}
			}
			if strings.Contains(out, clientSecret) {
				t.Errorf("logs reveal the secret:\n%s", out)
			}
		})
	}
}

// TestManagedIdentityThroughTheEndpoint runs the credentials of both
// settings against a local identity endpoint, as on Azure Functions: the
// Azure DevOps one asks for Azure DevOps' resource and the ACI one for
// ARM's, each as the identity its keys name, and the first token of each
// is logged by whose it is.
func TestManagedIdentityThroughTheEndpoint(t *testing.T) {
	e := identityendpoint.Start(t)
	getenv := setEnv(t, nil)
	byClientID := identityendpoint.FreshClientID()
	byResourceID := resourceID + "-" + strings.ReplaceAll(byClientID, "-", "")
	tests := []struct {
		key                  string
		identity             *config.AzureIdentity
		scope, resource      string
		clientID, resourceID string
	}{
		{"azuredevops.entra", &config.AzureIdentity{ClientID: byClientID}, adoScope, strings.TrimSuffix(adoScope, "/.default"), byClientID, ""},
		{"aci.identity", &config.AzureIdentity{Method: config.IdentityManaged, ClientID: byClientID}, armScope, "https://management.azure.com", byClientID, ""},
		{"aci.identity", &config.AzureIdentity{ResourceID: byResourceID}, armScope, "https://management.azure.com", "", byResourceID},
	}
	for _, tt := range tests {
		var logs syncbuf.Buffer
		c, err := New(tt.key, tt.identity, getenv, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatalf("%s %+v: %v", tt.key, tt.identity, err)
		}
		want := e.Token(tt.resource, tt.clientID, tt.resourceID)
		for range 2 {
			tok, err := c.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{tt.scope}})
			if err != nil {
				t.Fatalf("%s %+v: GetToken: %v\nendpoint saw %+v", tt.key, tt.identity, err, e.Requests())
			}
			if tok.Token != want {
				t.Errorf("%s %+v: got another token than the endpoint issues for %s", tt.key, tt.identity, tt.resource)
			}
		}
		out := logs.String()
		if n := strings.Count(out, "Azure credential in use"); n != 1 {
			t.Errorf("%s: the identity in use was logged %d times, want once:\n%s", tt.key, n, out)
		}
		for _, says := range []string{"for=" + tt.key, "object_id=" + identityendpoint.ObjectID, "app_id=" + tt.clientID} {
			if !strings.Contains(out, says) {
				t.Errorf("%s: logs do not say %s:\n%s", tt.key, says, out)
			}
		}
		if tt.resourceID != "" && !strings.Contains(out, "managed_identity="+tt.resourceID) {
			t.Errorf("%s: logs do not name the managed identity %s:\n%s", tt.key, tt.resourceID, out)
		}
		if strings.Contains(out, want[strings.LastIndexByte(want, '.')+1:]) {
			t.Errorf("%s: logs reveal the token:\n%s", tt.key, out)
		}
	}
	got := e.Requests()
	want := []identityendpoint.Request{
		{Resource: strings.TrimSuffix(adoScope, "/.default"), ClientID: byClientID},
		{Resource: "https://management.azure.com", ClientID: byClientID},
		{Resource: "https://management.azure.com", ResourceID: byResourceID},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("endpoint requests:\n got %+v\nwant %+v (one per identity and resource, then cached)", got, want)
	}
}

// TestNoClaimsNoNames: a token that is not a JWT is used all the same, and
// logged without claims.
func TestNoClaimsNoNames(t *testing.T) {
	if _, ok := identityClaims("opaque-token"); ok {
		t.Error("an opaque token yields claims")
	}
	if _, ok := identityClaims("a.bm90IGpzb24.c"); ok {
		t.Error("a token whose payload is not JSON yields claims")
	}
}
