package aci

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/providertest"
)

const (
	testSubscription = "00000000-0000-0000-0000-000000000001"
	testRG           = "rg-agents"
)

// newTestProvider returns a provider on its own client and transport,
// talking to svc. Polls come quickly: the fake service answers at once.
func newTestProvider(t *testing.T, svc *fakeARM, edit func(*Options)) *Provider {
	t.Helper()
	opt := Options{
		SubscriptionID: testSubscription, ResourceGroup: svc.rg, Location: "westeurope",
		// Stands in for an Entra credential; TestManagedIdentity uses the real one.
		Credential:   &azfake.TokenCredential{},
		Client:       arm.ClientOptions{ClientOptions: policy.ClientOptions{Transport: svc.transport()}},
		Wait:         10 * time.Second,
		PollInterval: time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&opt)
	}
	p, err := New(opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func baseSpec(name string) providers.AgentSpec {
	return providers.AgentSpec{
		Name: name, Pool: "linux", Request: 42, Image: "contoso.azurecr.io/azp-agent:linux",
		Env:     map[string]string{"AZP_URL": "https://dev.azure.com/contoso", "AZP_POOL": "Containers", "AZP_AGENT_NAME": name},
		Secrets: map[string]string{"AZP_TOKEN": "pat-secret-value-8d1f"},
	}
}

func TestConformance(t *testing.T) {
	svc := newFakeARM(testRG) // every create polls twice before it completes, every delete too
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T) providers.Provider { return newTestProvider(t, svc, nil) },
		Spec: func(*testing.T) providers.AgentSpec {
			return providers.AgentSpec{Image: "contoso.azurecr.io/azp-agent:linux", CPU: 1, MemoryMB: 2048,
				Env: map[string]string{"AZP_URL": "https://dev.azure.com/contoso", "AZP_POOL": "Containers"}}
		},
		Finish: func(t *testing.T, _ providers.Provider, name string, code int) { svc.finish(t, name, code) },
		Foreign: func(t *testing.T, pool string) {
			// A group another tool made in the same resource group, with a
			// pool tag but not the managed one.
			svc.add(pool+"-x1", map[string]string{tagName(providers.LabelPool): pool, "owner": "someone-else"})
		},
		Wait: 20 * time.Second,
	})
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.updates != 0 {
		t.Errorf("the provider sent %d PUTs to existing groups; an existing group must be returned, never updated", svc.updates)
	}
	for name, r := range svc.groups {
		if _, ours := instance(&r.group); ours {
			t.Errorf("group %s (%s) is left behind after every subtest deleted what it made", name, deref(r.group.Properties.ProvisioningState))
		}
	}
}

func TestCreateFollowsTheOperation(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.createPolls = 3
	p := newTestProvider(t, svc, nil)
	spec := baseSpec("linux-r42")

	in, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != providers.StateRunning || in.Started.IsZero() || in.Request != 42 {
		t.Errorf("Create after the operation completed: %+v; want running with Started, request 42", in)
	}
	// The fake poller carries the result in its last answer; with ARM's
	// Azure-AsyncOperation the SDK adds a GET (TestOperationsOverTheWire).
	want := []string{"GET Get", "PUT BeginCreateOrUpdate", "poll BeginCreateOrUpdate", "poll BeginCreateOrUpdate", "poll BeginCreateOrUpdate"}
	if got := svc.requests(); !slices.Equal(got, want) {
		t.Errorf("ARM calls of a create:\n got %q\nwant %q", got, want)
	}

	// Concurrent creates of the name in one process: one GET each, no PUT.
	svc.resetRequests()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			again, err := p.Create(t.Context(), spec)
			if err != nil || !again.Created.Equal(in.Created) {
				t.Errorf("Create of an existing group: %+v, %v; want the same instance", again, err)
			}
		})
	}
	wg.Wait()
	if got := svc.requests(); !slices.Equal(got, []string{"GET Get", "GET Get", "GET Get", "GET Get"}) {
		t.Errorf("ARM calls of 4 creates of an existing group: %q; want 4 GETs and nothing else", got)
	}
}

func TestCreateConcurrentSendsOnePut(t *testing.T) {
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, nil)
	spec := baseSpec("linux-r7")
	// Hold every GET until released, so that the creates overlap.
	arrived, release := make(chan string, 16), make(chan struct{})
	svc.gate = func(c call) {
		if c.API == apiGet {
			arrived <- c.Name
			<-release
		}
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := p.Create(t.Context(), spec); err != nil {
				t.Errorf("Create: %v", err)
			}
		})
	}
	<-arrived
	// Another create reaching ARM now would come at once; give it a moment.
	select {
	case <-arrived:
		t.Errorf("a second create of %s reached ARM while the first was in flight", spec.Name)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	puts := 0
	for _, c := range svc.requests() {
		if strings.HasPrefix(c, "PUT") {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("6 concurrent creates of one name sent %d PUTs, want 1: %q", puts, svc.requests())
	}
}

func TestCreateStopsFollowingAfterWait(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.createPolls = 1000 // an image pull that takes long
	const wait, interval = 60 * time.Millisecond, 10 * time.Millisecond
	p := newTestProvider(t, svc, func(o *Options) { o.Wait, o.PollInterval = wait, interval })
	spec := baseSpec("linux-r9")

	in, err := p.Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != providers.StatePending || in.Created.IsZero() || !in.Started.IsZero() || in.Name != spec.Name || in.Pool != "linux" {
		t.Errorf("Create of a group still provisioning: %+v; want pending with Created and no Started", in)
	}
	polls := 0
	for _, c := range svc.requests() {
		if strings.HasPrefix(c, "poll") {
			polls++
		}
	}
	if polls < 1 || polls > int(wait/interval) {
		t.Errorf("Create polled %d times in a wait of %v every %v; want 1 to %d", polls, wait, interval, wait/interval)
	}

	svc.resetRequests()
	listed := list(t, p, "linux")
	if len(listed) != 1 || listed[0].State != providers.StatePending || !listed[0].Created.Equal(in.Created) {
		t.Errorf("List while provisioning: %+v; want the one pending instance with Create's Created", listed)
	}
	if got := svc.requests(); !slices.Equal(got, []string{"GET NewListByResourceGroupPager"}) {
		t.Errorf("List of a provisioning group: calls %q; want the list alone (no instance view to read yet)", got)
	}
}

func TestCreateSurvivesAFailedPoll(t *testing.T) {
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, nil)
	// A role that may write groups but not read the operation's status.
	svc.inject(func(c call) bool { return c.Poll }, func(req *http.Request) *http.Response {
		return armError(req, http.StatusForbidden, "AuthorizationFailed", "The client does not have authorization to perform action over the operation status.", nil)
	})
	in, err := p.Create(t.Context(), baseSpec("linux-r14"))
	if err != nil || in.State != providers.StatePending {
		t.Errorf("Create whose poll was refused: %+v, %v; want the accepted group, pending", in, err)
	}
	if got := list(t, p, "linux"); len(got) != 1 {
		t.Errorf("List = %+v; want the created group", got)
	}
}

func TestThrottledThenSuccess(t *testing.T) {
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, nil)
	spec := baseSpec("linux-r11")
	svc.inject(func(c call) bool { return c.Method == http.MethodPut }, func(req *http.Request) *http.Response {
		return armError(req, http.StatusTooManyRequests, "TooManyRequests",
			"The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:01:00.",
			http.Header{"Retry-After": {"7"}})
	})

	_, err := p.Create(t.Context(), spec)
	retryable, after, reason := providers.Classify(err)
	if !retryable || after != 7*time.Second || reason != "throttled" {
		t.Fatalf("Create answered 429 Retry-After 7: %v classified %v/%v/%q; want retryable/7s/throttled", err, retryable, after, reason)
	}
	if got := svc.requests(); !slices.Equal(got, []string{"GET Get", "PUT BeginCreateOrUpdate"}) {
		t.Errorf("calls: %q; the SDK must not retry a 429 inside the call", got)
	}
	if got := list(t, p, "linux"); len(got) != 0 {
		t.Errorf("after a throttled create, List = %+v; want none", got)
	}

	in, err := p.Create(t.Context(), spec)
	if err != nil || in.State != providers.StateRunning {
		t.Fatalf("Create after the throttling: %+v, %v; want running", in, err)
	}
}

func TestConflictWhileDeleting(t *testing.T) {
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, func(o *Options) { o.Wait = 50 * time.Millisecond })
	spec := baseSpec("linux-r12")
	if _, err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	svc.deletePolls = 1000 // a delete that takes a while
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if st := svc.state(spec.Name); st != stateDeleting {
		t.Fatalf("group state after Delete returned: %q, want Deleting (the test needs it still going)", st)
	}

	_, err := p.Create(t.Context(), spec)
	if retryable, _, reason := providers.Classify(err); !retryable || reason != "conflict" {
		t.Errorf("Create while the group is being deleted: %v (%v, %q); want a retryable conflict", err, retryable, reason)
	}

	// ARM answers 409 to a DELETE of a group that is being deleted: done.
	svc.inject(func(c call) bool { return c.Method == http.MethodDelete }, func(req *http.Request) *http.Response {
		return armError(req, http.StatusConflict, "Conflict", "The container group 'linux-r12' is being deleted.", nil)
	})
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete answered 409 while the group is being deleted: %v; want nil", err)
	}

	// A 409 for a group that is not going away is a conflict to retry.
	other := baseSpec("linux-r13")
	if _, err := p.Create(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	svc.inject(func(c call) bool { return c.Method == http.MethodDelete }, func(req *http.Request) *http.Response {
		return armError(req, http.StatusConflict, "Conflict", "Another operation is in progress.", nil)
	})
	err = p.Delete(t.Context(), other.Name)
	if retryable, _, reason := providers.Classify(err); !retryable || reason != "conflict" {
		t.Errorf("Delete answered 409 for a running group: %v (%v, %q); want a retryable conflict", err, retryable, reason)
	}
}

func TestQuotaIsPermanent(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.quota = 1
	p := newTestProvider(t, svc, nil)
	if _, err := p.Create(t.Context(), baseSpec("linux-r1")); err != nil {
		t.Fatal(err)
	}
	spec := baseSpec("linux-r2")
	_, err := p.Create(t.Context(), spec)
	retryable, _, reason := providers.Classify(err)
	if retryable || reason != "quota:ContainerGroupQuotaReached" {
		t.Errorf("Create over the quota: %v classified %v/%q; want permanent quota:ContainerGroupQuotaReached", err, retryable, reason)
	}
	if strings.Contains(err.Error(), spec.Secrets["AZP_TOKEN"]) {
		t.Errorf("quota error reveals the token: %v", err)
	}
	if got := list(t, p, "linux"); len(got) != 1 {
		t.Errorf("List after a refused create = %+v; want the first group only", got)
	}
}

func TestRegionCapacity(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.outOfCapacity = true
	p := newTestProvider(t, svc, nil)
	spec := baseSpec("linux-r3")

	_, err := p.Create(t.Context(), spec)
	retryable, after, reason := providers.Classify(err)
	if !retryable || reason != "capacity" || after != CapacityRetryAfter {
		t.Errorf("Create in a region out of capacity: %v classified %v/%v/%q; want retryable capacity after %v", err, retryable, after, reason, CapacityRetryAfter)
	}
	// The group stays, failed, with the service's reason.
	got := list(t, p, "linux")
	if len(got) != 1 || got[0].State != providers.StateFailed || !strings.Contains(got[0].Reason, "not available in the location 'westeurope'") {
		t.Fatalf("List after the failed provisioning: %+v; want one failed instance saying why", got)
	}
	if err := p.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete of the failed group: %v", err)
	}
	if got := list(t, p, "linux"); len(got) != 0 {
		t.Errorf("List after Delete: %+v", got)
	}
}

func TestListCost(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.createPolls, svc.deletePolls, svc.pageSize = 0, 0, 2
	p := newTestProvider(t, svc, nil)
	for _, name := range []string{"linux-r1", "linux-r2", "linux-r3"} {
		if _, err := p.Create(t.Context(), baseSpec(name)); err != nil {
			t.Fatal(err)
		}
	}
	other := baseSpec("windows-r1")
	other.Pool = "windows"
	if _, err := p.Create(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	svc.finish(t, "linux-r1", 0)

	count := func(prefix string) int {
		n := 0
		for _, c := range svc.requests() {
			if strings.HasPrefix(c, prefix) {
				n++
			}
		}
		return n
	}
	svc.resetRequests()
	got := list(t, p, "linux")
	if len(got) != 3 || got[0].State != providers.StateExited {
		t.Fatalf("List = %+v; want 3 instances, linux-r1 exited", got)
	}
	// 4 groups in pages of 2, and the instance view of the pool's 3.
	if pages, gets := count("GET NewList"), count("GET Get"); pages != 2 || gets != 3 {
		t.Errorf("first List: %d list pages and %d GETs; want 2 and 3 (%q)", pages, gets, svc.requests())
	}
	svc.resetRequests()
	again := list(t, p, "linux")
	if gets := count("GET Get"); gets != 2 {
		t.Errorf("second List: %d GETs; want 2: the ended group is read once (%q)", gets, svc.requests())
	}
	if !slices.Equal(again, got) {
		t.Errorf("second List = %+v, first %+v; want the same", again, got)
	}

	// A group deleted and made again under the same name is read afresh.
	if err := p.Delete(t.Context(), "linux-r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(t.Context(), baseSpec("linux-r1")); err != nil {
		t.Fatal(err)
	}
	if in, _ := find(list(t, p, "linux"), "linux-r1"); in.State != providers.StateRunning {
		t.Errorf("re-created linux-r1 listed as %s; want running, not the remembered exit", in.State)
	}
}

func TestNameRules(t *testing.T) {
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, nil)
	for _, name := range []string{"linux--r1", "Linux-r1", "-linux"} {
		_, err := p.Create(t.Context(), baseSpec(name))
		if retryable, _, reason := providers.Classify(err); retryable || reason != "invalid_name" {
			t.Errorf("Create(%q): %v (%v, %q); want permanent invalid_name", name, err, retryable, reason)
		}
	}
	if got := svc.requests(); len(got) != 0 {
		t.Errorf("invalid names reached ARM: %q", got)
	}
}

func TestNameTakenByAnotherOwner(t *testing.T) {
	svc := newFakeARM(testRG)
	svc.add("linux-r5", map[string]string{"owner": "someone-else"})
	p := newTestProvider(t, svc, nil)
	_, err := p.Create(t.Context(), baseSpec("linux-r5"))
	if retryable, _, reason := providers.Classify(err); retryable || reason != "name_taken" {
		t.Errorf("Create over another owner's group: %v (%v, %q); want permanent name_taken", err, retryable, reason)
	}
	if svc.updates != 0 {
		t.Errorf("the provider updated another owner's group")
	}
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	_, err := New(Options{OSType: "linux", Registry: &Registry{Server: "contoso.azurecr.io", Username: "u"}})
	if err == nil {
		t.Fatal("New with empty options succeeded")
	}
	for _, want := range []string{"SubscriptionID", "ResourceGroup", "Location", `OSType "linux": use Linux or Windows`, "Credential", "Registry: set Username and Password, or Identity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not name %s", err, want)
		}
	}
}

func TestDeleteMissingAndCanceled(t *testing.T) {
	svc := newFakeARM(testRG)
	p := newTestProvider(t, svc, nil)
	if err := p.Delete(t.Context(), "linux-r404"); err != nil {
		t.Errorf("Delete of a missing group: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Delete(ctx, "linux-r1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a canceled context: %v", err)
	}
}

func list(t *testing.T, p *Provider, pool string) []providers.Instance {
	t.Helper()
	ins, err := p.List(t.Context(), pool)
	if err != nil {
		t.Fatalf("List(%s): %v", pool, err)
	}
	slices.SortFunc(ins, func(a, b providers.Instance) int { return strings.Compare(a.Name, b.Name) })
	return ins
}

func find(ins []providers.Instance, name string) (providers.Instance, bool) {
	i := slices.IndexFunc(ins, func(in providers.Instance) bool { return in.Name == name })
	if i < 0 {
		return providers.Instance{}, false
	}
	return ins[i], true
}
