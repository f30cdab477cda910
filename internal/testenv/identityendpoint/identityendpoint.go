// Package identityendpoint serves a managed identity endpoint on loopback,
// the way Azure Functions and App Service offer one to their apps
// (IDENTITY_ENDPOINT and IDENTITY_HEADER, api-version 2019-08-01), so that
// the real azidentity managed identity credential runs against it in tests.
package identityendpoint

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Claims of the tokens the endpoint issues, beyond the identity asked for.
const (
	ObjectID = "66666666-6666-6666-6666-666666666666"
	TenantID = "22222222-2222-2222-2222-222222222222"
)

// Request is one token request the endpoint answered.
type Request struct {
	Resource   string // the scope without /.default
	ClientID   string // a user-assigned identity by client id
	ResourceID string // or by resource id
	Problem    string // why it was refused; "" when a token was issued
}

// Endpoint is a running identity endpoint.
type Endpoint struct {
	URL    string
	header string
	sig    string
	mu     sync.Mutex
	reqs   []Request
}

// Start serves an endpoint until the test ends and points IDENTITY_ENDPOINT
// and IDENTITY_HEADER at it (so the test may not run in parallel).
func Start(t *testing.T) *Endpoint {
	t.Helper()
	e := &Endpoint{header: "identity-header-" + rand.Text()[:8], sig: base64.RawURLEncoding.EncodeToString([]byte(rand.Text()))}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.URL = srv.URL + "/msi/token"
	t.Setenv("IDENTITY_ENDPOINT", e.URL)
	t.Setenv("IDENTITY_HEADER", e.header)
	return e
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := Request{Resource: q.Get("resource"), ClientID: q.Get("client_id"), ResourceID: q.Get("mi_res_id") + q.Get("msi_res_id")}
	switch {
	case r.Header.Get("X-IDENTITY-HEADER") != e.header:
		req.Problem = "missing or wrong X-IDENTITY-HEADER"
	case q.Get("api-version") != "2019-08-01":
		req.Problem = "api-version " + q.Get("api-version")
	case req.Resource == "":
		req.Problem = "no resource"
	}
	e.mu.Lock()
	e.reqs = append(e.reqs, req)
	e.mu.Unlock()
	if req.Problem != "" {
		http.Error(w, `{"statusCode":400,"message":"`+req.Problem+`"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"access_token": e.Token(req.Resource, req.ClientID, req.ResourceID), "token_type": "Bearer",
		"client_id": req.ClientID, "resource": req.Resource,
		"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10),
	})
}

// Token is the token the endpoint issues for resource to the identity with
// clientID or resourceID (both empty: the system-assigned identity). It is
// shaped like an Entra access token: a JWT whose claims name the identity.
func (e *Endpoint) Token(resource, clientID, resourceID string) string {
	payload, _ := json.Marshal(map[string]string{
		"aud": resource, "appid": clientID, "oid": ObjectID, "tid": TenantID, "xms_mirid": resourceID,
	})
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(payload) + "." + e.sig
}

// Requests returns the token requests so far.
func (e *Endpoint) Requests() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Request(nil), e.reqs...)
}

// FreshClientID returns a client id no earlier test of this process used:
// MSAL caches managed identity tokens per process, by identity.
func FreshClientID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-0000-4000-8000-" + h[8:]
}
