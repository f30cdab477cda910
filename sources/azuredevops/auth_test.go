package azuredevops

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/agentscaler/agentscaler/internal/fakeclock"
)

// authFakeCredential stands in for an azidentity credential (managed,
// workload or client-secret identity), which would call Entra ID: it
// implements the same azcore.TokenCredential interface, counts calls, and
// hands out numbered tokens.
type authFakeCredential struct {
	calls  atomic.Int32
	ttl    time.Duration
	now    func() time.Time
	err    error
	scopes chan []string
	// entered and release, when set, hold GetToken open so a test can pile
	// up concurrent callers behind it.
	entered chan struct{}
	release chan struct{}
}

func (f *authFakeCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := f.calls.Add(1)
	if f.scopes != nil {
		f.scopes <- opts.Scopes
	}
	if f.entered != nil {
		f.entered <- struct{}{}
		<-f.release
	}
	if f.err != nil {
		return azcore.AccessToken{}, f.err
	}
	return azcore.AccessToken{Token: fmt.Sprintf("eyJ0eXAiOiJKV1Qi.token-%d", n), ExpiresOn: f.now().Add(f.ttl)}, nil
}

func authEntra(cred *authFakeCredential, clock *fakeclock.Clock) Authorizer {
	a := Entra(cred).(*entraAuth)
	a.now = clock.Now
	return a
}

func TestAuthPATHeader(t *testing.T) {
	h, err := PAT("s3cr3t-pat").Authorization(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cred, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		t.Fatalf("header %q is not basic auth", h)
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil || string(raw) != ":s3cr3t-pat" {
		t.Errorf("credentials decode to %q (%v), want an empty user and the PAT", raw, err)
	}
	// The same shape net/http produces for basic auth with an empty user.
	r, _ := http.NewRequest(http.MethodGet, "https://dev.azure.com/contoso", nil)
	r.SetBasicAuth("", "s3cr3t-pat")
	if r.Header.Get("Authorization") != h {
		t.Errorf("header %q differs from net/http's %q", h, r.Header.Get("Authorization"))
	}

	if _, err := PAT("").Authorization(t.Context()); err == nil {
		t.Error("empty PAT accepted")
	}
}

func TestAuthStringsRedacted(t *testing.T) {
	clock := fakeclock.New(time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC))
	cred := &authFakeCredential{ttl: time.Hour, now: clock.Now}
	entra := authEntra(cred, clock)
	if _, err := entra.Authorization(t.Context()); err != nil {
		t.Fatal(err)
	}
	pat := PAT("s3cr3t-pat")
	b64 := base64.StdEncoding.EncodeToString([]byte(":s3cr3t-pat"))
	for _, a := range []Authorizer{pat, entra} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(verb, a)
			for _, secret := range []string{"s3cr3t-pat", b64, "eyJ0eXAiOiJKV1Qi", "token-1"} {
				if strings.Contains(out, secret) {
					t.Errorf("fmt %s of %T prints the secret: %s", verb, a, out)
				}
			}
			if !strings.Contains(out, "redacted") {
				t.Errorf("fmt %s of %T = %q", verb, a, out)
			}
		}
	}
}

func TestAuthEntraCachesToken(t *testing.T) {
	clock := fakeclock.New(time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC))
	cred := &authFakeCredential{ttl: time.Hour, now: clock.Now, scopes: make(chan []string, 4)}
	a := authEntra(cred, clock)
	for range 3 {
		h, err := a.Authorization(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if h != "Bearer eyJ0eXAiOiJKV1Qi.token-1" {
			t.Errorf("header %q, want the first token reused", h)
		}
		clock.Advance(10 * time.Minute)
	}
	if n := cred.calls.Load(); n != 1 {
		t.Errorf("GetToken called %d times, want 1", n)
	}
	if s := <-cred.scopes; len(s) != 1 || s[0] != "499b84ac-1321-427f-aa17-267ca6975798/.default" {
		t.Errorf("scopes = %v", s)
	}
}

func TestAuthEntraRefreshesBeforeExpiry(t *testing.T) {
	clock := fakeclock.New(time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC))
	cred := &authFakeCredential{ttl: time.Hour, now: clock.Now}
	a := authEntra(cred, clock)
	get := func() string {
		t.Helper()
		h, err := a.Authorization(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	get()
	clock.Advance(54*time.Minute + 59*time.Second) // 5m01s left: still good
	if h := get(); !strings.HasSuffix(h, "token-1") {
		t.Errorf("refreshed too early: %s", h)
	}
	clock.Advance(2 * time.Second) // 4m59s left: inside the margin
	if h := get(); !strings.HasSuffix(h, "token-2") {
		t.Errorf("not refreshed 5 minutes before expiry: %s", h)
	}

	// A token that is born inside the margin is never reused.
	short := &authFakeCredential{ttl: 4 * time.Minute, now: clock.Now}
	b := authEntra(short, clock)
	for range 2 {
		if _, err := b.Authorization(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := short.calls.Load(); n != 2 {
		t.Errorf("short-lived token: GetToken called %d times, want 2", n)
	}
}

func TestAuthEntraOneRefreshAtATime(t *testing.T) {
	clock := fakeclock.New(time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC))
	cred := &authFakeCredential{ttl: time.Hour, now: clock.Now, entered: make(chan struct{}, 64), release: make(chan struct{})}
	a := authEntra(cred, clock)
	const n = 32
	var started, done sync.WaitGroup
	headers := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			headers[i], errs[i] = a.Authorization(context.Background())
		}()
	}
	started.Wait()
	<-cred.entered // one caller is inside GetToken; the rest queue or hit the cache
	close(cred.release)
	done.Wait()
	for i := range n {
		if errs[i] != nil || headers[i] != "Bearer eyJ0eXAiOiJKV1Qi.token-1" {
			t.Errorf("caller %d: %q, %v", i, headers[i], errs[i])
		}
	}
	if c := cred.calls.Load(); c != 1 {
		t.Errorf("GetToken called %d times by %d concurrent callers, want 1", c, n)
	}
}

func TestAuthEntraErrors(t *testing.T) {
	clock := fakeclock.New(time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC))
	boom := errors.New("ManagedIdentityCredential: no identity endpoint")
	cred := &authFakeCredential{ttl: time.Hour, now: clock.Now, err: boom}
	a := authEntra(cred, clock)
	for range 2 {
		_, err := a.Authorization(t.Context())
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), EntraScope) {
			t.Errorf("err = %v", err)
		}
	}
	if n := cred.calls.Load(); n != 2 {
		t.Errorf("a failure was cached: %d calls, want 2", n)
	}

	// A caller waiting behind a slow refresh gives up with its own context.
	slow := &authFakeCredential{ttl: time.Hour, now: clock.Now, entered: make(chan struct{}, 1), release: make(chan struct{})}
	b := authEntra(slow, clock)
	go b.Authorization(context.Background())
	<-slow.entered
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Authorization(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting caller: err = %v, want context.Canceled", err)
	}
	close(slow.release)
}

func TestAuthEntraWithClient(t *testing.T) {
	clock := fakeclock.New(time.Now())
	cred := &authFakeCredential{ttl: time.Hour, now: clock.Now}
	var got []string
	var mu sync.Mutex
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		clientJSON(w, 200, clientResourceUsageJSON)
	})
	f := clientNew(t, srv, Options{})
	f.c.auth = authEntra(cred, clock)
	for range 2 {
		if _, err := f.c.ResourceUsage(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "Bearer eyJ0eXAiOiJKV1Qi.token-1" || got[1] != got[0] || cred.calls.Load() != 1 {
		t.Errorf("headers %q after %d token calls", got, cred.calls.Load())
	}
}
