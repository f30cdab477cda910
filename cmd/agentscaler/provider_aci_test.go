//go:build !noaci

package main

import (
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers/aci"
)

const (
	testClientSecret = "client-secret-0d2e"
	testACRPassword  = "acr-password-91b0"
)

func aciEnv(name string) string {
	return map[string]string{"ARM_CLIENT_SECRET": testClientSecret, "ACR_USER": "puller", "ACR_PASSWORD": testACRPassword}[name]
}

func aciPool(identity *config.ACIIdentity, registry *config.ACIRegistry) config.Pool {
	return config.Pool{Name: "aci", Provider: "aci", ACI: &config.ACI{
		SubscriptionID: "00000000-0000-0000-0000-000000000000", ResourceGroup: "rg-agents", Location: "westeurope",
		OSType: "Linux", Identity: identity, Registry: registry,
	}}
}

func TestACIFactoryLogsWithoutSecrets(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	pool := aciPool(
		&config.ACIIdentity{ClientID: "11111111-1111-1111-1111-111111111111", TenantID: "22222222-2222-2222-2222-222222222222", ClientSecretEnv: "ARM_CLIENT_SECRET"},
		&config.ACIRegistry{Server: "contoso.azurecr.io", UsernameEnv: "ACR_USER", PasswordEnv: "ACR_PASSWORD"},
	)
	p, err := providerFactories["aci"](t.Context(), pool, providerEnv{getenv: aciEnv, log: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*aci.Provider); !ok {
		t.Errorf("factory built %T, want *aci.Provider", p)
	}
	out := logs.String()
	for _, want := range []string{"method=client-secret", "client_id=11111111-1111-1111-1111-111111111111", "secret_variable=ARM_CLIENT_SECRET",
		"resource_group=rg-agents", `registry_auth="password from ACR_PASSWORD"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not say %s:\n%s", want, out)
		}
	}
	for _, secret := range []string{testClientSecret, testACRPassword} {
		if strings.Contains(out, secret) {
			t.Errorf("logs reveal a secret:\n%s", out)
		}
	}
}

func TestACICredentialChoice(t *testing.T) {
	const rid = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agentscaler"
	tests := []struct {
		identity *config.ACIIdentity
		env      map[string]string
		says     []string
	}{
		{nil, nil, []string{"method=default-chain", "managed_identity=system-assigned"}},
		{nil, map[string]string{"AZURE_CLIENT_ID": "33333333-3333-3333-3333-333333333333"}, []string{"method=default-chain", "client id 33333333-3333-3333-3333-333333333333 (AZURE_CLIENT_ID)"}},
		{&config.ACIIdentity{ClientID: "44444444-4444-4444-4444-444444444444"}, nil, []string{"method=chain", "chain=managed-identity,azure-cli", "client_id=44444444-4444-4444-4444-444444444444"}},
		{&config.ACIIdentity{ClientID: "44444444-4444-4444-4444-444444444444", TenantID: "22222222-2222-2222-2222-222222222222"},
			map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"},
			[]string{"chain=workload-identity,managed-identity,azure-cli"}},
		{&config.ACIIdentity{ResourceID: rid}, nil, []string{"method=managed-identity", "identity=user-assigned", "resource_id=" + rid}},
	}
	for i, tt := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			// azidentity reads these from the process environment itself.
			for _, name := range []string{"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"} {
				t.Setenv(name, tt.env[name])
			}
			var logs syncbuf.Buffer
			if _, err := aciCredential(tt.identity, os.Getenv, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
				t.Fatalf("aciCredential(%+v): %v", tt.identity, err)
			}
			for _, want := range tt.says {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("aciCredential(%+v) logs do not say %s:\n%s", tt.identity, want, logs.String())
				}
			}
		})
	}
}

// tokenSource stands in for an Entra credential; the token is shaped like
// a managed identity's access token.
type tokenSource struct{ token string }

func (s tokenSource) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: s.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestLoggedCredentialNamesTheIdentity(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"https://management.azure.com","appid":"55555555-5555-5555-5555-555555555555",` +
		`"oid":"66666666-6666-6666-6666-666666666666","tid":"22222222-2222-2222-2222-222222222222",` +
		`"xms_mirid":"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/agentscaler"}`))
	token := "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2lnbmF0dXJl"
	var logs syncbuf.Buffer
	c := &loggedCredential{TokenCredential: tokenSource{token}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	for range 2 {
		if tok, err := c.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}}); err != nil || tok.Token != token {
			t.Fatalf("GetToken: %v", err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "ACI credential in use"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{"app_id=55555555-5555-5555-5555-555555555555", "object_id=66666666-6666-6666-6666-666666666666", "userAssignedIdentities/agentscaler"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not say %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, payload) || strings.Contains(out, "c2lnbmF0dXJl") {
		t.Errorf("logs reveal the token:\n%s", out)
	}
}
