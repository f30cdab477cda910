package aci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/agentscaler/agentscaler/providers"
)

// armWire serves the fake service over HTTP the way ARM does, so that the
// SDK's own long-running operation code runs rather than its fake poller: a
// PUT or DELETE still in progress answers 201 or 202 with an
// Azure-AsyncOperation URL, whose GET answers {"status": ...} (a failed
// operation in a 200, with the error inside); the SDK then GETs the group
// for the result of a PUT. Errors are ARM error bodies.
//
// The SDK's fake server picks the operation from the API name the client
// puts in the request's context; over the wire ARM routes by method and
// path, so the name is put back from those.
type armWire struct {
	svc     *fakeARM
	service *frontDoor

	mu             sync.Mutex
	authorizations []string // method and Authorization header of every request
}

var operationPathRE = regexp.MustCompile(`/operations/(create|delete)\.([^/]+)$`)

func newARMWire(svc *fakeARM) *armWire {
	return &armWire{svc: svc, service: svc.transport()}
}

func (a *armWire) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.authorizations = append(a.authorizations, r.Method+" "+r.Header.Get("Authorization"))
	a.mu.Unlock()
	if m := operationPathRE.FindStringSubmatch(r.URL.Path); m != nil {
		a.operation(w, r, m[1], m[2])
		return
	}
	api := apiList
	switch {
	case r.Method == http.MethodPut:
		api = apiCreate
	case r.Method == http.MethodDelete:
		api = apiDelete
	case namePathRE.MatchString(r.URL.Path):
		api = apiGet
	}
	resp, err := a.do(r, api, r.Method, r.URL.Path)
	if err != nil {
		writeARMError(w, err)
		return
	}
	defer resp.Body.Close()
	if resp.Header.Get(fakePollerStatus) != "InProgress" {
		resp.Header.Del(fakePollerStatus)
		copyResponse(w, resp)
		return
	}
	// Accepted, still running: point at the operation.
	kind, name := "create", namePathRE.FindStringSubmatch(r.URL.Path)[1]
	if api == apiDelete {
		kind = "delete"
	}
	w.Header().Set("Azure-AsyncOperation", fmt.Sprintf("https://%s/subscriptions/%s/providers/Microsoft.ContainerInstance/locations/westeurope/operations/%s.%s?api-version=2023-05-01",
		r.Host, testSubscription, kind, name))
	if api == apiDelete {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	a.svc.mu.Lock()
	body, _ := json.Marshal(view(a.svc.groups[name].group, false))
	a.svc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
}

// operation answers a poll of an operation's status.
func (a *armWire) operation(w http.ResponseWriter, r *http.Request, kind, name string) {
	api := apiCreate
	if kind == "delete" {
		api = apiDelete
	}
	path := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups/%s%s", testSubscription, a.svc.rg, name, fakePollSuffix)
	resp, err := a.do(r, api, http.MethodGet, path)
	status := map[string]any{"status": "Succeeded"}
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &re) && re.StatusCode < 400:
		status = map[string]any{"status": "Failed", "error": map[string]string{"code": re.ErrorCode, "message": re.ErrorCode}}
	case err != nil:
		writeARMError(w, err)
		return
	case resp.Header.Get(fakePollerStatus) == "InProgress":
		status["status"] = "InProgress"
	}
	if resp != nil {
		resp.Body.Close()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(status)
}

// do sends the request on to the front door as the client-side fake would.
func (a *armWire) do(r *http.Request, api, method, path string) (*http.Response, error) {
	req := r.Clone(context.WithValue(r.Context(), runtime.CtxAPINameKey{}, api))
	req.Method, req.URL.Scheme, req.URL.Host, req.URL.Path, req.RequestURI = method, "https", r.Host, path, ""
	return a.service.Do(req)
}

func writeARMError(w http.ResponseWriter, err error) {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Ms-Error-Code", re.ErrorCode)
	w.WriteHeader(re.StatusCode)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": re.ErrorCode, "message": re.ErrorCode}})
}

func copyResponse(w http.ResponseWriter, resp *http.Response) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// wireProvider returns a provider whose ARM endpoint is a TLS server on
// 127.0.0.1 serving wire: ARM clients send bearer tokens over https only.
func wireProvider(t *testing.T, wire *armWire, cred azcore.TokenCredential) *Provider {
	t.Helper()
	server := httptest.NewTLSServer(wire)
	t.Cleanup(server.Close)
	p, err := New(Options{
		SubscriptionID: testSubscription, ResourceGroup: wire.svc.rg, Location: "westeurope",
		Credential: cred,
		Client: arm.ClientOptions{ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: server.URL, Audience: "https://management.azure.com"},
			}},
			Transport: server.Client(),
		}},
		PollInterval: time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOperationsOverTheWire runs create, list and delete through the SDK's
// own Azure-AsyncOperation poller and counts what a create costs.
func TestOperationsOverTheWire(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.createPolls, svc.deletePolls = 3, 2
	p := wireProvider(t, newARMWire(svc), &azfake.TokenCredential{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	in, err := p.Create(ctx, baseSpec("linux-r21"))
	if err != nil || in.State != providers.StateRunning || in.Started.IsZero() {
		t.Fatalf("Create: %+v, %v; want running", in, err)
	}
	want := []string{"GET Get", "PUT BeginCreateOrUpdate", "poll BeginCreateOrUpdate", "poll BeginCreateOrUpdate", "poll BeginCreateOrUpdate", "GET Get"}
	if got := svc.requests(); !slices.Equal(got, want) {
		t.Errorf("ARM calls of a create:\n got %q\nwant %q", got, want)
	}

	svc.resetRequests()
	if err := p.Delete(ctx, "linux-r21"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got, want := svc.requests(), []string{"DELETE BeginDelete", "poll BeginDelete", "poll BeginDelete"}; !slices.Equal(got, want) {
		t.Errorf("ARM calls of a delete:\n got %q\nwant %q", got, want)
	}
	if st := svc.state("linux-r21"); st != "" {
		t.Errorf("group after Delete: %s, want gone", st)
	}

	// A failed operation comes back in a 200 answer to the poll.
	svc.outOfCapacity = true
	_, err = p.Create(ctx, baseSpec("linux-r22"))
	if retryable, _, reason := providers.Classify(err); !retryable || reason != "capacity" || !strings.Contains(err.Error(), "operation failed: ServiceUnavailable") {
		t.Errorf("Create whose operation failed: %v (%v, %q); want a retryable capacity error", err, retryable, reason)
	}
}
