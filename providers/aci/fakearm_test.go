package aci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2/fake"
)

// fakeARM stands in for Azure Resource Manager and the Container Instances
// resource provider behind it, for one resource group. The SDK's own fake
// server (armcontainerinstance/v2/fake) turns the ContainerGroupsServer
// functions below into the HTTP responses the real client parses; those
// functions keep the groups the way the service does:
//   - a PUT of a new group is accepted (201) with provisioning under way; the
//     operation completes on its createPolls-th poll, and only then is the
//     group Succeeded with its container Running; a PUT of an existing group
//     changes nothing (this provider must never update one)
//   - GET carries the instance view; the list leaves it out, as ARM's does
//   - secure environment values and registry passwords are never returned
//   - tag names may not hold '/', group names follow ACI's rules
//   - a DELETE is accepted (202) and the group reads Deleting until the
//     operation completes on its deletePolls-th poll; a PUT meanwhile is 409;
//     deleting a missing group answers 204
//   - a quota of groups (ContainerGroupQuotaReached, 409), and a region out
//     of capacity, which fails the create operation with ServiceUnavailable
//
// An operation completes when its last poll is answered, so an operation the
// client stops following stays in progress: that is how tests hold a group
// in Creating or Deleting.
//
// In front of it, frontDoor plays ARM's front end: it records every request,
// answers with injected wire responses (a 429 with Retry-After, which the
// SDK's fake server cannot send: its errors carry no headers), and tells the
// store when an operation's final answer went out.
type fakeARM struct {
	rg          string
	createPolls int // polls until a create completes; 0 completes it in the PUT's answer
	deletePolls int
	quota       int // most groups at once; 0 for no limit
	pageSize    int // groups per list page; 0 for one page

	mu             sync.Mutex
	groups         map[string]*record // by lower-case name: ARM names are case-insensitive
	outOfCapacity  bool
	updates        int // PUTs of an existing group
	lastCreateBody []byte
	calls          []call
	faults         []fault
	gate           func(call) // when set, called before each request is served
}

type record struct {
	group     armcontainerinstance.ContainerGroup // as the service holds it, read-only fields set
	op        string                              // "create" or "delete" while one runs
	completed armcontainerinstance.ContainerGroup // what a running create turns the group into
}

// call is one request as the front door saw it.
type call struct {
	Method, API, Name string
	Poll              bool // a poll of a long-running operation
}

func (c call) String() string {
	s := c.Method + " " + strings.TrimPrefix(c.API, "ContainerGroupsClient.")
	if c.Poll {
		s = "poll " + strings.TrimPrefix(c.API, "ContainerGroupsClient.")
	}
	return s
}

// fault answers one matching request instead of the service.
type fault struct {
	match   func(call) bool
	respond func(*http.Request) *http.Response
}

const (
	apiCreate = "ContainerGroupsClient.BeginCreateOrUpdate"
	apiDelete = "ContainerGroupsClient.BeginDelete"
	apiGet    = "ContainerGroupsClient.Get"
	apiList   = "ContainerGroupsClient.NewListByResourceGroupPager"
	// fakePollerStatus is the header the SDK's fake server marks operation
	// answers with (azcore's internal shared.HeaderFakePollerStatus).
	fakePollerStatus = "Fake-Poller-Status"
	fakePollSuffix   = "/get/fake/status"
)

func newFakeARM(rg string) *fakeARM {
	return &fakeARM{rg: rg, createPolls: 2, deletePolls: 2, groups: map[string]*record{}}
}

// transport is the ARM endpoint for a client: the front door before the
// SDK's fake server backed by this store.
func (s *fakeARM) transport() *frontDoor {
	return &frontDoor{arm: s, rp: fake.NewContainerGroupsServerTransport(&fake.ContainerGroupsServer{
		BeginCreateOrUpdate:         s.put,
		BeginDelete:                 s.delete,
		Get:                         s.get,
		NewListByResourceGroupPager: s.list,
	})}
}

var (
	groupNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	badTagChars = "<>%&\\?/"
)

func (s *fakeARM) put(_ context.Context, rg, name string, g armcontainerinstance.ContainerGroup, _ *armcontainerinstance.ContainerGroupsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcontainerinstance.ContainerGroupsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rg != s.rg {
		errResp.SetResponseError(http.StatusNotFound, "ResourceGroupNotFound")
		return
	}
	if !groupNameRE.MatchString(name) || strings.Contains(name, "--") {
		errResp.SetResponseError(http.StatusBadRequest, "InvalidResourceName")
		return
	}
	if code := invalid(g); code != "" {
		errResp.SetResponseError(http.StatusBadRequest, code)
		return
	}
	if r, ok := s.groups[name]; ok {
		if r.op != "" { // being created or deleted
			errResp.SetResponseError(http.StatusConflict, "Conflict")
			return
		}
		s.updates++
		resp.SetTerminalResponse(http.StatusOK, armcontainerinstance.ContainerGroupsClientCreateOrUpdateResponse{ContainerGroup: view(r.group, true)}, nil)
		return
	}
	if s.quota > 0 && len(s.groups) >= s.quota {
		errResp.SetResponseError(http.StatusConflict, "ContainerGroupQuotaReached")
		return
	}

	g.ID = to.Ptr(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups/%s", testSubscription, rg, name))
	g.Name, g.Type = to.Ptr(name), to.Ptr("Microsoft.ContainerInstance/containerGroups")
	r := &record{group: clone(g), op: "create"}
	setState(&r.group, stateCreating, "Pending", &armcontainerinstance.ContainerState{State: to.Ptr("Waiting"), DetailStatus: to.Ptr("")})
	r.completed = clone(r.group)
	setState(&r.completed, "Succeeded", "Running", &armcontainerinstance.ContainerState{State: to.Ptr(containerRunning), StartTime: to.Ptr(time.Now().UTC())})
	s.groups[name] = r

	for i := range s.createPolls {
		status := http.StatusOK // an operation status
		if i == 0 {
			status = http.StatusCreated // the PUT's own answer
		}
		resp.AddNonTerminalResponse(status, nil)
	}
	if s.outOfCapacity {
		// ARM reports a failed operation in a 200 answer to the poll.
		resp.SetTerminalError(http.StatusOK, "ServiceUnavailable")
		return
	}
	resp.SetTerminalResponse(http.StatusOK, armcontainerinstance.ContainerGroupsClientCreateOrUpdateResponse{ContainerGroup: view(r.completed, true)}, nil)
	if s.createPolls == 0 {
		r.group, r.op = r.completed, ""
	}
	return
}

// invalid returns the error code ARM or ACI gives a group it refuses, or "".
func invalid(g armcontainerinstance.ContainerGroup) string {
	for k := range g.Tags {
		if strings.ContainsAny(k, badTagChars) {
			return "InvalidTagNameCharacters"
		}
	}
	p := g.Properties
	if g.Location == nil || p == nil || p.OSType == nil || len(p.Containers) == 0 {
		return "InvalidRequestContent"
	}
	for _, c := range p.Containers {
		if c.Name == nil || c.Properties == nil || c.Properties.Image == nil || c.Properties.Resources == nil ||
			c.Properties.Resources.Requests == nil || deref(c.Properties.Resources.Requests.CPU) <= 0 ||
			deref(c.Properties.Resources.Requests.MemoryInGB) <= 0 {
			return "InvalidContainerProperties"
		}
	}
	return ""
}

func (s *fakeARM) delete(_ context.Context, rg, name string, _ *armcontainerinstance.ContainerGroupsClientBeginDeleteOptions) (resp azfake.PollerResponder[armcontainerinstance.ContainerGroupsClientDeleteResponse], errResp azfake.ErrorResponder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.groups[name]
	switch {
	case rg != s.rg:
		errResp.SetResponseError(http.StatusNotFound, "ResourceGroupNotFound")
		return
	case !ok:
		resp.SetTerminalResponse(http.StatusNoContent, armcontainerinstance.ContainerGroupsClientDeleteResponse{}, nil)
		return
	case r.op == "delete":
		errResp.SetResponseError(http.StatusConflict, "Conflict")
		return
	}
	if s.deletePolls == 0 {
		delete(s.groups, name)
	} else {
		r.op = "delete"
		r.group.Properties.ProvisioningState = to.Ptr(stateDeleting)
	}
	for range s.deletePolls {
		resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	resp.SetTerminalResponse(http.StatusOK, armcontainerinstance.ContainerGroupsClientDeleteResponse{}, nil)
	return
}

func (s *fakeARM) get(_ context.Context, rg, name string, _ *armcontainerinstance.ContainerGroupsClientGetOptions) (resp azfake.Responder[armcontainerinstance.ContainerGroupsClientGetResponse], errResp azfake.ErrorResponder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.groups[name]
	switch {
	case rg != s.rg:
		errResp.SetResponseError(http.StatusNotFound, "ResourceGroupNotFound")
	case !ok:
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
	default:
		resp.SetResponse(http.StatusOK, armcontainerinstance.ContainerGroupsClientGetResponse{ContainerGroup: view(r.group, true)}, nil)
	}
	return
}

func (s *fakeARM) list(rg string, _ *armcontainerinstance.ContainerGroupsClientListByResourceGroupOptions) (resp azfake.PagerResponder[armcontainerinstance.ContainerGroupsClientListByResourceGroupResponse]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rg != s.rg {
		resp.AddResponseError(http.StatusNotFound, "ResourceGroupNotFound")
		return
	}
	var all []*armcontainerinstance.ContainerGroup
	for _, name := range slices.Sorted(maps.Keys(s.groups)) {
		g := view(s.groups[name].group, false)
		all = append(all, &g)
	}
	size := s.pageSize
	if size <= 0 {
		size = max(len(all), 1)
	}
	for len(all) > size {
		resp.AddPage(http.StatusOK, armcontainerinstance.ContainerGroupsClientListByResourceGroupResponse{ContainerGroupListResult: armcontainerinstance.ContainerGroupListResult{Value: all[:size]}}, nil)
		all = all[size:]
	}
	resp.AddPage(http.StatusOK, armcontainerinstance.ContainerGroupsClientListByResourceGroupResponse{ContainerGroupListResult: armcontainerinstance.ContainerGroupListResult{Value: all}}, nil)
	return
}

// settle applies the end of an operation whose final answer the fake server
// just gave: the answer to the PUT or DELETE itself, or to a poll.
func (s *fakeARM) settle(c call, resp *http.Response, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.groups[c.Name]
	if !ok {
		return
	}
	done := err == nil && resp.Header.Get(fakePollerStatus) == "Succeeded"
	switch {
	case c.API == apiCreate && r.op == "create" && done:
		r.group, r.op = r.completed, ""
	case c.API == apiCreate && r.op == "create" && err != nil && c.Poll:
		r.op = ""
		setState(&r.group, stateFailed, "Failed", r.group.Properties.Containers[0].Properties.InstanceView.CurrentState)
		r.group.Properties.InstanceView.Events = []*armcontainerinstance.Event{{
			Type: to.Ptr("Warning"), Name: to.Ptr("Failed"), Count: to.Ptr[int32](1), LastTimestamp: to.Ptr(time.Now().UTC()),
			Message: to.Ptr(fmt.Sprintf("The requested resource is not available in the location '%s' at this moment. Please retry with a different resource request or in another location.", deref(r.group.Location))),
		}}
	case c.API == apiDelete && r.op == "delete" && done:
		delete(s.groups, c.Name)
	}
}

// finish ends the agent of a running group with the exit code.
func (s *fakeARM) finish(t *testing.T, name string, code int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.groups[name]
	if !ok {
		t.Fatalf("fake ARM: finish %s: no such group", name)
	}
	cur := r.group.Properties.Containers[0].Properties.InstanceView.CurrentState
	if deref(cur.State) != containerRunning {
		t.Fatalf("fake ARM: finish %s: container is %s, not running", name, deref(cur.State))
	}
	detail, groupState := "Completed", "Succeeded"
	if code != 0 {
		detail, groupState = "Error", "Failed"
	}
	setState(&r.group, deref(r.group.Properties.ProvisioningState), groupState, &armcontainerinstance.ContainerState{
		State: to.Ptr(containerTerminated), ExitCode: to.Ptr(int32(code)), DetailStatus: to.Ptr(detail),
		StartTime: cur.StartTime, FinishTime: to.Ptr(time.Now().UTC()),
	})
}

// add puts a running group straight into the store, as another tool would.
func (s *fakeARM) add(name string, tags map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := armcontainerinstance.ContainerGroup{
		Name: to.Ptr(name), Location: to.Ptr("westeurope"), Tags: map[string]*string{},
		Properties: &armcontainerinstance.ContainerGroupPropertiesProperties{
			OSType: to.Ptr(armcontainerinstance.OperatingSystemTypesLinux),
			Containers: []*armcontainerinstance.Container{{Name: to.Ptr("app"), Properties: &armcontainerinstance.ContainerProperties{
				Image: to.Ptr("nginx"), Resources: &armcontainerinstance.ResourceRequirements{Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(1.0), MemoryInGB: to.Ptr(1.0)}},
			}}},
		},
	}
	for k, v := range tags {
		g.Tags[k] = to.Ptr(v)
	}
	setState(&g, "Succeeded", "Running", &armcontainerinstance.ContainerState{State: to.Ptr(containerRunning), StartTime: to.Ptr(time.Now().UTC())})
	s.groups[name] = &record{group: g}
}

// state returns the group's provisioning state, "" when there is none.
func (s *fakeARM) state(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.groups[name]; ok {
		return deref(r.group.Properties.ProvisioningState)
	}
	return ""
}

// inject makes the front door answer the next request matching m with respond.
func (s *fakeARM) inject(m func(call) bool, respond func(*http.Request) *http.Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{m, respond})
}

// requests returns the calls seen since the last reset, as strings.
func (s *fakeARM) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.String()
	}
	return out
}

func (s *fakeARM) resetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// setState writes the provisioning state and the instance views.
func setState(g *armcontainerinstance.ContainerGroup, provisioning, groupState string, cur *armcontainerinstance.ContainerState) {
	g.Properties.ProvisioningState = to.Ptr(provisioning)
	if g.Properties.InstanceView == nil {
		g.Properties.InstanceView = &armcontainerinstance.ContainerGroupPropertiesInstanceView{}
	}
	g.Properties.InstanceView.State = to.Ptr(groupState)
	c := g.Properties.Containers[0].Properties
	if c.InstanceView == nil {
		c.InstanceView = &armcontainerinstance.ContainerPropertiesInstanceView{RestartCount: to.Ptr[int32](0)}
	}
	c.InstanceView.CurrentState = cur
}

// view is the group as ARM returns it: never a secret; the instance view
// only from GET.
func view(g armcontainerinstance.ContainerGroup, instanceView bool) armcontainerinstance.ContainerGroup {
	v := clone(g)
	for _, c := range v.Properties.Containers {
		for _, e := range c.Properties.EnvironmentVariables {
			e.SecureValue = nil
		}
		if !instanceView {
			c.Properties.InstanceView = nil
		}
	}
	for _, r := range v.Properties.ImageRegistryCredentials {
		r.Password = nil
	}
	if !instanceView {
		v.Properties.InstanceView = nil
	}
	return v
}

// clone deep-copies a group through the SDK's own JSON form.
func clone(g armcontainerinstance.ContainerGroup) armcontainerinstance.ContainerGroup {
	b, err := json.Marshal(g)
	if err != nil {
		panic(err)
	}
	var c armcontainerinstance.ContainerGroup
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return c
}

// frontDoor is the policy.Transporter clients talk to.
type frontDoor struct {
	arm *fakeARM
	rp  *fake.ContainerGroupsServerTransport
	// The fake server keeps a listing's pages by URL path, so two listings
	// at once would take each other's pages: lists go one at a time.
	listMu sync.Mutex
}

var namePathRE = regexp.MustCompile(`/containerGroups/([^/]+)`)

func (d *frontDoor) Do(req *http.Request) (*http.Response, error) {
	api, _ := req.Context().Value(runtime.CtxAPINameKey{}).(string)
	c := call{Method: req.Method, API: api, Poll: strings.HasSuffix(req.URL.Path, fakePollSuffix)}
	if m := namePathRE.FindStringSubmatch(req.URL.Path); m != nil {
		c.Name = m[1]
	}
	var body []byte
	if req.Method == http.MethodPut && req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}

	d.arm.mu.Lock()
	d.arm.calls = append(d.arm.calls, c)
	if body != nil {
		d.arm.lastCreateBody = body
	}
	var respond func(*http.Request) *http.Response
	for i, f := range d.arm.faults {
		if f.match(c) {
			respond = f.respond
			d.arm.faults = slices.Delete(d.arm.faults, i, i+1)
			break
		}
	}
	gate := d.arm.gate
	d.arm.mu.Unlock()
	if gate != nil {
		gate(c)
	}
	if respond != nil {
		return respond(req), nil
	}

	if api == apiList {
		d.listMu.Lock()
		defer d.listMu.Unlock()
	}
	resp, err := d.rp.Do(req)
	if api == apiCreate || api == apiDelete {
		d.arm.settle(c, resp, err)
	}
	return resp, err
}

// armError is an ARM error answer on the wire.
func armError(req *http.Request, status int, code, message string, header http.Header) *http.Response {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Ms-Error-Code": {code}}
	for k, v := range header {
		h[k] = v
	}
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}
