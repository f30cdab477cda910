// Package aci runs agents on Azure Container Instances: one container group
// per agent, restart policy Never, so a group ends when its agent has run its
// single job, and the autoscaler reads the exit code before deleting it. The
// agent container gets no Azure credentials: the autoscaler removes it.
//
// Labels travel as ARM tags. Tag names may not contain '/', so every label key
// of providers.Labels is written with '/' replaced by '_'
// (agentscaler.io_managed, agentscaler.io_pool, agentscaler.io_request,
// agentscaler.io_slot). Container groups carry no creation time in the API,
// so the create time travels in the tag agentscaler.io_created.
//
// What each call costs in ARM requests:
//   - Create: a GET (an existing group is returned as it is, never updated),
//     then the PUT, then polls of the operation every PollInterval (or the
//     Retry-After the service asks for) until it is done or Wait has passed
//     (or a poll itself fails); a done PUT ends with the GET the SDK makes for
//     the final result. A group still provisioning then is returned pending:
//     provisioning is mostly the image pull, tens of seconds to minutes, and
//     waiting for it would hold a slot of the pool's parallel creates without
//     starting the agent sooner. Wait catches what fails within seconds (region
//     capacity, a refused image) in the create's own result. List reports the
//     rest: running, or failed with the service's reason.
//   - List: the list of the resource group (one call per page), then one GET
//     per group of the pool: the list leaves out the instance view that holds
//     state and exit code. Groups still provisioning need no GET, and an ended
//     group is read once: with restart policy Never it never changes again.
//   - Delete: the DELETE, then polls as for Create, up to Wait.
//
// The SDK retries 408 and 5xx itself; 429 is not retried inside the call but
// returned as a retryable providers.Error carrying the Retry-After, so that
// the scaler spaces its retries across reconciles. ARM registration of the
// resource provider is left to the operator (see docs/providers/aci.md): an
// identity scoped to one resource group cannot register it.
package aci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"

	"github.com/agentscaler/agentscaler/providers"
)

// Defaults for the Options left zero.
const (
	DefaultOSType       = "Linux"
	DefaultCPU          = 1.0 // cores, when the spec asks for none
	DefaultMemoryGB     = 1.5 // when the spec asks for none
	DefaultWait         = 5 * time.Second
	DefaultPollInterval = time.Second
)

// Operation names, as in providers.Error.Op.
const (
	opCreate = "create"
	opList   = "list"
	opDelete = "delete"
)

// containerName is the one container of every group.
const containerName = "agent"

// listParallelism bounds the GETs List sends at once.
const listParallelism = 8

// Options configure the provider.
type Options struct {
	SubscriptionID string // required
	ResourceGroup  string // required: where the groups live; best dedicated to this autoscaler
	Location       string // required: an Azure region, such as westeurope
	OSType         string // Linux (default) or Windows
	// SubnetIDs put the groups in a virtual network (a subnet delegated to
	// Microsoft.ContainerInstance/containerGroups). Groups never get an IP
	// address of their own either way: an agent only dials out.
	SubnetIDs []string
	Zones     []string // availability zones, such as "1"; empty leaves the choice to Azure
	DNS       *DNS     // DNS settings inside the group; nil keeps Azure's (or the network's)
	Registry  *Registry

	// Credential signs the ARM calls: a managed identity, workload identity,
	// service principal or the Azure CLI (see cmd/agentscaler).
	Credential azcore.TokenCredential
	// Client tunes the ARM client: cloud, transport (tests pass the SDK's
	// fake server transport), retries.
	Client arm.ClientOptions

	Wait         time.Duration // how long Create and Delete follow the operation; DefaultWait when 0
	PollInterval time.Duration // between polls when the service gives no Retry-After; DefaultPollInterval when 0
	Logger       *slog.Logger  // nil logs nothing
}

// DNS is the resolver configuration inside a container group.
type DNS struct {
	NameServers   []string
	SearchDomains []string
	Options       string // resolv.conf options, such as "ndots:2"
}

// Registry is how ACI pulls a private image: a user name and password, or a
// user-assigned managed identity (by resource id) that holds AcrPull.
type Registry struct {
	Server   string // host name, such as contoso.azurecr.io
	Username string
	Password string // a secret: never logged, never in an error
	Identity string // resource id of a user-assigned identity, instead of Username/Password
}

// Provider runs agents as container groups. It is safe for concurrent use.
type Provider struct {
	opt      Options
	groups   *armcontainerinstance.ContainerGroupsClient
	creating keyedLock // one create of a name at a time in this process

	mu    sync.Mutex
	ended map[string]providers.Instance // ended instances by name, read once
}

var _ providers.Provider = (*Provider)(nil)

// New checks the options and builds the ARM client. It makes no call.
func New(opt Options) (*Provider, error) {
	var problems []string
	if opt.SubscriptionID == "" {
		problems = append(problems, "SubscriptionID is empty: set the subscription that holds the container groups")
	}
	if opt.ResourceGroup == "" {
		problems = append(problems, "ResourceGroup is empty: set the resource group for the container groups")
	}
	if opt.Location == "" {
		problems = append(problems, "Location is empty: set an Azure region, such as westeurope")
	}
	if opt.OSType == "" {
		opt.OSType = DefaultOSType
	}
	if opt.OSType != string(armcontainerinstance.OperatingSystemTypesLinux) && opt.OSType != string(armcontainerinstance.OperatingSystemTypesWindows) {
		problems = append(problems, fmt.Sprintf("OSType %q: use Linux or Windows", opt.OSType))
	}
	if opt.Credential == nil {
		problems = append(problems, "Credential is nil: pass an azidentity credential")
	}
	if r := opt.Registry; r != nil {
		switch {
		case r.Server == "":
			problems = append(problems, "Registry.Server is empty: set the registry host, such as contoso.azurecr.io")
		case r.Identity != "" && (r.Username != "" || r.Password != ""):
			problems = append(problems, "Registry: set Identity or Username and Password, not both")
		case r.Identity == "" && (r.Username == "" || r.Password == ""):
			problems = append(problems, "Registry: set Username and Password, or Identity")
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("aci: %s", strings.Join(problems, "; "))
	}
	if opt.Wait <= 0 {
		opt.Wait = DefaultWait
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = DefaultPollInterval
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	clientOpts := opt.Client
	if clientOpts.Retry.StatusCodes == nil {
		// The SDK's list without 429: throttling goes back to the scaler
		// with its Retry-After instead of sleeping inside one call.
		clientOpts.Retry.StatusCodes = []int{http.StatusRequestTimeout, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	}
	// Registration needs subscription-wide rights this identity should not
	// have; an unregistered provider is reported at once instead.
	clientOpts.DisableRPRegistration = true
	client, err := armcontainerinstance.NewContainerGroupsClient(opt.SubscriptionID, opt.Credential, &clientOpts)
	if err != nil {
		return nil, fmt.Errorf("aci: container groups client: %w", err)
	}
	return &Provider{opt: opt, groups: client, ended: map[string]providers.Instance{}}, nil
}

// Create starts the agent's container group, or returns the group of that
// name if there is one.
func (p *Provider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	if err := ctx.Err(); err != nil {
		return providers.Instance{}, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	if err := validateName(spec.Name); err != nil {
		return providers.Instance{}, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "invalid_name", Err: err}
	}
	if spec.Pool == "" {
		return providers.Instance{}, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "invalid_pool", Err: errors.New("pool is empty")}
	}
	unlock, err := p.creating.lock(ctx, spec.Name)
	if err != nil {
		return providers.Instance{}, fmt.Errorf("create %s: %w", spec.Name, err)
	}
	defer unlock()

	secrets := p.secrets(spec)
	if in, found, err := p.existing(ctx, spec, secrets); err != nil || found {
		return in, err
	}
	created := time.Now().UTC()
	poller, err := p.groups.BeginCreateOrUpdate(ctx, p.opt.ResourceGroup, spec.Name, p.group(spec, created), nil)
	if err != nil {
		if statusOf(err) == http.StatusConflict {
			// Another autoscaler process may have created it a moment ago.
			if in, found, gerr := p.existing(ctx, spec, secrets); gerr != nil || found {
				return in, gerr
			}
		}
		return providers.Instance{}, failure(opCreate, spec.Name, err, secrets)
	}
	res, done, err := follow(ctx, poller, p.opt.Wait, p.opt.PollInterval, p.opt.Logger.With("name", spec.Name))
	if err != nil {
		return providers.Instance{}, failure(opCreate, spec.Name, err, secrets)
	}
	if !done {
		p.opt.Logger.Debug("container group still provisioning", "name", spec.Name, "waited", p.opt.Wait)
		return pending(spec, created), nil
	}
	in, ok := instance(&res.ContainerGroup)
	if !ok {
		return providers.Instance{}, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "not_ours",
			Err: errors.New("the created group does not carry this autoscaler's tags")}
	}
	return in, nil
}

// existing reads the group of spec's name. A group being deleted, or one
// this autoscaler did not create, is an error: it is not the agent asked for.
func (p *Provider) existing(ctx context.Context, spec providers.AgentSpec, secrets []string) (providers.Instance, bool, error) {
	res, err := p.groups.Get(ctx, p.opt.ResourceGroup, spec.Name, nil)
	if statusOf(err) == http.StatusNotFound {
		return providers.Instance{}, false, nil
	}
	if err != nil {
		return providers.Instance{}, false, failure(opCreate, spec.Name, err, secrets)
	}
	in, ours := instance(&res.ContainerGroup)
	switch {
	case !ours || in.Pool != spec.Pool:
		return providers.Instance{}, true, &providers.Error{Op: opCreate, Name: spec.Name, Reason: "name_taken",
			Err: fmt.Errorf("resource group %s holds a container group %s of another owner or pool; rename or remove it", p.opt.ResourceGroup, spec.Name)}
	case provisioningState(&res.ContainerGroup) == stateDeleting:
		return providers.Instance{}, true, &providers.Error{Op: opCreate, Name: spec.Name, Retryable: true, Reason: "conflict",
			Err: errors.New("the container group of that name is still being deleted")}
	}
	in.Existed = true
	return in, true, nil
}

// List returns the pool's container groups with their state.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", pool, err)
	}
	var mine []*armcontainerinstance.ContainerGroup
	pager := p.groups.NewListByResourceGroupPager(p.opt.ResourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, failure(opList, pool, err, nil)
		}
		for _, g := range page.Value {
			if in, ok := instance(g); ok && in.Pool == pool {
				mine = append(mine, g)
			}
		}
	}

	out := make([]providers.Instance, len(mine))
	keep := make([]bool, len(mine))
	errs := make([]error, len(mine))
	sem := make(chan struct{}, listParallelism)
	var wg sync.WaitGroup
	for i, g := range mine {
		listed, _ := instance(g)
		if cached, ok := p.endedInstance(listed); ok {
			out[i], keep[i] = cached, true
			continue
		}
		if ps := provisioningState(g); ps == statePending || ps == stateCreating {
			out[i], keep[i] = listed, true // no instance view yet: pending
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := p.groups.Get(ctx, p.opt.ResourceGroup, listed.Name, nil)
			switch {
			case statusOf(err) == http.StatusNotFound: // deleted since the list
			case err != nil:
				errs[i] = failure(opList, pool, err, nil)
			default:
				out[i], keep[i] = instance(&res.ContainerGroup)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ins := make([]providers.Instance, 0, len(out))
	for i, in := range out {
		if keep[i] {
			ins = append(ins, in)
		}
	}
	p.remember(pool, ins)
	return ins, nil
}

// Delete removes the container group. A missing group, or one already being
// deleted, is not an error.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := validateName(name); err != nil {
		return &providers.Error{Op: opDelete, Name: name, Reason: "invalid_name", Err: err}
	}
	p.forget(name)
	poller, err := p.groups.BeginDelete(ctx, p.opt.ResourceGroup, name, nil)
	if err != nil {
		switch statusOf(err) {
		case http.StatusNotFound:
			return nil
		case http.StatusConflict:
			return p.deleting(ctx, name, err)
		}
		return failure(opDelete, name, err, nil)
	}
	_, done, err := follow(ctx, poller, p.opt.Wait, p.opt.PollInterval, p.opt.Logger.With("name", name))
	if err != nil && statusOf(err) != http.StatusNotFound {
		return failure(opDelete, name, err, nil)
	}
	if !done {
		p.opt.Logger.Debug("container group still being deleted", "name", name, "waited", p.opt.Wait)
	}
	return nil
}

// deleting decides a 409 answer to DELETE: fine when the group is already
// going away, a retryable conflict otherwise (another operation in flight).
func (p *Provider) deleting(ctx context.Context, name string, conflict error) error {
	res, err := p.groups.Get(ctx, p.opt.ResourceGroup, name, nil)
	switch {
	case statusOf(err) == http.StatusNotFound:
		return nil
	case err != nil:
		return failure(opDelete, name, err, nil)
	case provisioningState(&res.ContainerGroup) == stateDeleting:
		return nil
	}
	return failure(opDelete, name, conflict, nil)
}

// secrets are the values no error text may carry for this spec.
func (p *Provider) secrets(spec providers.AgentSpec) []string {
	out := make([]string, 0, len(spec.Secrets)+1)
	for _, v := range spec.Secrets {
		out = append(out, v)
	}
	if p.opt.Registry != nil {
		out = append(out, p.opt.Registry.Password)
	}
	return out
}

// endedInstance returns the remembered state of an ended group, if listed is
// the same group (same creation tag) as the one remembered.
func (p *Provider) endedInstance(listed providers.Instance) (providers.Instance, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.ended[listed.Name]
	return in, ok && in.Created.Equal(listed.Created)
}

// remember keeps the pool's ended instances and drops what the pool no longer lists.
func (p *Provider) remember(pool string, ins []providers.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	listed := make(map[string]bool, len(ins))
	for _, in := range ins {
		listed[in.Name] = true
		if in.State.Done() {
			p.ended[in.Name] = in
		}
	}
	for name, in := range p.ended {
		if in.Pool == pool && !listed[name] {
			delete(p.ended, name)
		}
	}
}

func (p *Provider) forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ended, name)
}

// follow polls a long-running operation until it is done or wait has
// passed. It reports done false, without error, when the time is up, ctx
// ends or a poll fails: ARM has accepted the operation and carries it out
// regardless, and List reports how it went.
func follow[T any](ctx context.Context, poller *runtime.Poller[T], wait, interval time.Duration, log *slog.Logger) (T, bool, error) {
	var zero T
	deadline := time.Now().Add(wait)
	pause := interval
	for !poller.Done() {
		if time.Until(deadline) < pause {
			return zero, false, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, false, nil
		case <-t.C:
		}
		resp, err := poller.Poll(ctx)
		if err != nil {
			// A failed operation is reported in a successful answer to
			// the poll; a poll that itself failed (throttled, refused,
			// timed out) says nothing about the operation.
			if s := statusOf(err); s > 0 && s < 400 {
				return zero, false, err
			}
			if ctx.Err() == nil {
				log.Warn("stopped following an accepted operation: its status could not be read", "error", err)
			}
			return zero, false, nil
		}
		pause = interval
		if d := retryAfter(resp); d > 0 {
			pause = d
		}
	}
	res, err := poller.Result(ctx)
	return res, err == nil, err
}

// keyedLock is a mutex per key whose waiters give up with their context.
type keyedLock struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the key is released
}

func (l *keyedLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		if l.held == nil {
			l.held = map[string]chan struct{}{}
		}
		released, busy := l.held[key]
		if !busy {
			released = make(chan struct{})
			l.held[key] = released
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				l.mu.Unlock()
				close(released)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
