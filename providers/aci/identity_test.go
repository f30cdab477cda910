package aci

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/providers"
)

// TestManagedIdentity runs the real azidentity managed identity credential
// against a local App Service style identity endpoint (IDENTITY_ENDPOINT and
// IDENTITY_HEADER, as Azure Functions and App Service set them), and checks
// that every ARM call of a create, list and delete carries its token. ARM is
// a TLS server on 127.0.0.1 (the SDK sends bearer tokens over https only)
// that hands requests to the same fake service as the other tests.
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
	svc.createPolls, svc.deletePolls = 0, 0
	service := svc.transport()
	var authorizations []string
	armServer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authorizations = append(authorizations, r.Method+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		serveARM(w, r, service)
	}))
	defer armServer.Close()

	p, err := New(Options{
		SubscriptionID: testSubscription, ResourceGroup: testRG, Location: "westeurope",
		Credential: cred,
		Client: arm.ClientOptions{ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: armServer.URL, Audience: "https://management.azure.com"},
			}},
			Transport: armServer.Client(),
		}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
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
	// GET (404), PUT, list, GET (instance view), DELETE.
	if len(authorizations) != 5 {
		t.Errorf("ARM saw %d requests, want 5: %q", len(authorizations), authorizations)
	}
	for _, a := range authorizations {
		if !strings.HasSuffix(a, " Bearer "+token) {
			t.Errorf("ARM request %q does not carry the managed identity's token", strings.ReplaceAll(a, token, "<token>"))
		}
	}
	if len(tokenRequests) != 1 || tokenRequests[0] != "ok" {
		t.Errorf("identity endpoint requests: %q; want one good request, the token then cached", tokenRequests)
	}
}

// serveARM answers an HTTP request with the fake service. The SDK's fake
// server picks the operation from the API name the client puts in the
// request's context; over the wire ARM routes by method and path, so the
// name is put back from those.
func serveARM(w http.ResponseWriter, r *http.Request, service *frontDoor) {
	api := apiList
	switch {
	case r.Method == http.MethodPut:
		api = apiCreate
	case r.Method == http.MethodDelete:
		api = apiDelete
	case namePathRE.MatchString(r.URL.Path):
		api = apiGet
	}
	req := r.Clone(context.WithValue(r.Context(), runtime.CtxAPINameKey{}, api))
	req.URL.Scheme, req.URL.Host, req.RequestURI = "https", r.Host, ""
	resp, err := service.Do(req)
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &re):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Ms-Error-Code", re.ErrorCode)
		w.WriteHeader(re.StatusCode)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": re.ErrorCode, "message": re.ErrorCode}})
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
