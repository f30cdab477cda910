package azuredevops

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Authorizer supplies the Authorization header value for Azure DevOps calls.
// Implementations never reveal the secret through fmt: String and GoString
// print only the kind of credential.
type Authorizer interface {
	Authorization(ctx context.Context) (string, error)
}

// EntraScope is the OAuth scope of Azure DevOps (its fixed resource id).
const EntraScope = "499b84ac-1321-427f-aa17-267ca6975798/.default"

// entraRefreshMargin is how long before expiry a cached Entra token is replaced,
// so a token never expires in the middle of a reconcile.
const entraRefreshMargin = 5 * time.Minute

// PAT authorizes with a personal access token, sent as basic auth with an
// empty user name, the way Azure DevOps expects it.
// An empty token yields an error at the first call rather than a request
// that Azure DevOps would answer with a sign-in page.
func PAT(token string) Authorizer {
	if token == "" {
		return patAuth{}
	}
	return patAuth{header: "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+token))}
}

type patAuth struct{ header string }

var errEmptyPAT = errors.New("azuredevops: the personal access token is empty")

func (p patAuth) Authorization(context.Context) (string, error) {
	if p.header == "" {
		return "", errEmptyPAT
	}
	return p.header, nil
}

func (patAuth) String() string   { return "azuredevops.PAT(redacted)" }
func (patAuth) GoString() string { return "azuredevops.PAT(redacted)" }

// Entra authorizes with a Microsoft Entra ID token for Azure DevOps, taken
// from cred (a managed, workload or client-secret identity from azidentity).
// The token is cached and reused until five minutes before it expires;
// concurrent callers share a single refresh.
func Entra(cred azcore.TokenCredential) Authorizer {
	return &entraAuth{cred: cred, now: time.Now, refresh: make(chan struct{}, 1)}
}

type entraAuth struct {
	cred azcore.TokenCredential
	now  func() time.Time
	// refresh is a one-slot semaphore: the holder fetches a token while the
	// others wait, honouring their own contexts.
	refresh chan struct{}

	mu  sync.Mutex
	tok azcore.AccessToken
}

func (e *entraAuth) Authorization(ctx context.Context) (string, error) {
	if h, ok := e.cached(); ok {
		return h, nil
	}
	select {
	case e.refresh <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("azuredevops: wait for Entra token: %w", ctx.Err())
	}
	defer func() { <-e.refresh }()
	// Another caller may have refreshed while this one waited.
	if h, ok := e.cached(); ok {
		return h, nil
	}
	tok, err := e.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{EntraScope}})
	if err != nil {
		return "", fmt.Errorf("azuredevops: get Entra token for scope %s: %w", EntraScope, err)
	}
	if tok.Token == "" {
		return "", fmt.Errorf("azuredevops: Entra returned an empty token for scope %s", EntraScope)
	}
	e.mu.Lock()
	e.tok = tok
	e.mu.Unlock()
	return "Bearer " + tok.Token, nil
}

func (e *entraAuth) cached() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tok.Token == "" || !e.now().Before(e.tok.ExpiresOn.Add(-entraRefreshMargin)) {
		return "", false
	}
	return "Bearer " + e.tok.Token, true
}

func (*entraAuth) String() string   { return "azuredevops.Entra(redacted)" }
func (*entraAuth) GoString() string { return "azuredevops.Entra(redacted)" }
