package aci

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/providers"
)

// TestManagedIdentity runs the real azidentity managed identity credential
// against a local App Service style identity endpoint (IDENTITY_ENDPOINT and
// IDENTITY_HEADER, as Azure Functions and App Service set them), and checks
// that every ARM call of a create, list and delete carries its token, the
// polls of their operations included. ARM is armWire on a TLS server.
func TestManagedIdentity(t *testing.T) {
	const identityHeader = "identity-header-4e2a"
	token := "mi-token-" + rand.Text()
	// A fresh client id per run: MSAL caches managed identity tokens per
	// process, by identity.
	clientID := fmt.Sprintf("%08x-0000-4000-8000-000000000000", time.Now().UnixNano()&0xffffffff)

	var mu sync.Mutex
	var tokenRequests []string // problems, or "ok"
	identity := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		problem := "ok"
		switch {
		case r.Header.Get("X-IDENTITY-HEADER") != identityHeader:
			problem = "missing or wrong X-IDENTITY-HEADER"
		case q.Get("api-version") != "2019-08-01":
			problem = "api-version " + q.Get("api-version")
		case q.Get("resource") != "https://management.azure.com":
			problem = "resource " + q.Get("resource")
		case q.Get("client_id") != clientID:
			problem = "client_id " + q.Get("client_id")
		}
		mu.Lock()
		tokenRequests = append(tokenRequests, problem)
		mu.Unlock()
		if problem != "ok" {
			http.Error(w, `{"statusCode":400,"message":"`+problem+`"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"access_token": token, "token_type": "Bearer", "client_id": clientID,
			"resource":   q.Get("resource"),
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
		})
	}))
	defer identity.Close()
	t.Setenv("IDENTITY_ENDPOINT", identity.URL+"/msi/token")
	t.Setenv("IDENTITY_HEADER", identityHeader)
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

	mu.Lock()
	defer mu.Unlock()
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
	if len(tokenRequests) != 1 || tokenRequests[0] != "ok" {
		t.Errorf("identity endpoint requests: %q; want one good request, the token then cached", tokenRequests)
	}
}
