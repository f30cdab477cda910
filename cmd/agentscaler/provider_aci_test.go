//go:build !noaci

package main

import (
	"log/slog"
	"strings"
	"testing"

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

func aciPool(identity *config.AzureIdentity, registry *config.ACIRegistry) config.Pool {
	return config.Pool{Name: "aci", Provider: "aci", ACI: &config.ACI{
		SubscriptionID: "00000000-0000-0000-0000-000000000000", ResourceGroup: "rg-agents", Location: "westeurope",
		OSType: "Linux", Identity: identity, Registry: registry,
	}}
}

func TestACIFactoryLogsWithoutSecrets(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	pool := aciPool(
		&config.AzureIdentity{ClientID: "11111111-1111-1111-1111-111111111111", TenantID: "22222222-2222-2222-2222-222222222222", ClientSecretEnv: "ARM_CLIENT_SECRET"},
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
