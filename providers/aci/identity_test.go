package aci

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/internal/testenv/identityendpoint"
	"github.com/agentscaler/agentscaler/providers"
)

// TestManagedIdentity runs the real azidentity managed identity credential
// against a local App Service style identity endpoint (IDENTITY_ENDPOINT and
// IDENTITY_HEADER, as Azure Functions and App Service set them; see
// internal/testenv/identityendpoint), and checks that every ARM call of a
// create, list and delete carries its token, the polls of their operations
// included. ARM is armWire on a TLS server.
func TestManagedIdentity(t *testing.T) {
	e := identityendpoint.Start(t)
	clientID := identityendpoint.FreshClientID()
	token := e.Token("https://management.azure.com", clientID, "")
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(clientID)})
	if err != nil {
		t.Fatal(err)
	}

	svc := newFakeARM(testRG)
	wire := newARMWire(svc)
	p := wireProvider(t, wire, cred)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	spec := baseSpec("linux-r77")
	if in, err := p.Create(ctx, spec); err != nil || in.State != providers.StateRunning {
		t.Fatalf("Create through the TLS ARM: %+v, %v", in, err)
	}
	if ins, err := p.List(ctx, "linux"); err != nil || len(ins) != 1 {
		t.Fatalf("List: %+v, %v", ins, err)
	}
	if err := p.Delete(ctx, spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}

	wire.mu.Lock()
	defer wire.mu.Unlock()
	// Create: GET (404), PUT, 2 operation polls, GET; list: list, GET; delete: DELETE, 2 polls.
	if n := len(wire.authorizations); n != 10 {
		t.Errorf("ARM saw %d requests, want 10: %q", n, svc.requests())
	}
	for _, a := range wire.authorizations {
		if !strings.HasSuffix(a, " Bearer "+token) {
			t.Errorf("ARM request %q does not carry the managed identity's token", strings.ReplaceAll(a, token, "<token>"))
		}
	}
	want := identityendpoint.Request{Resource: "https://management.azure.com", ClientID: clientID}
	if got := e.Requests(); len(got) != 1 || got[0] != want {
		t.Errorf("identity endpoint requests: %+v; want one for %+v, the token then cached", got, want)
	}
}
