package aci

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"

	"github.com/agentscaler/agentscaler/providers"
)

// Provisioning states of a container group, as ARM reports them.
const (
	statePending  = "Pending"
	stateCreating = "Creating"
	stateFailed   = "Failed"
	stateDeleting = "Deleting"
)

// Container states of the instance view.
const (
	containerRunning    = "Running"
	containerTerminated = "Terminated"
)

// tagPrefix is what label keys start with once written as tag names.
const tagPrefix = "agentscaler.io_"

// tagCreated holds the creation time, RFC 3339 in UTC.
const tagCreated = tagPrefix + "created"

// tagName writes a label key as an ARM tag name, which may not hold '/'.
func tagName(label string) string { return strings.ReplaceAll(label, "/", "_") }

// validateName applies the instance name rules plus ACI's own: no two
// hyphens in a row in a container group name.
func validateName(name string) error {
	if err := providers.ValidateName(name); err != nil {
		return err
	}
	if strings.Contains(name, "--") {
		return fmt.Errorf("instance name %q: a container group name may not hold two hyphens in a row", name)
	}
	return nil
}

// group is the container group that runs spec's agent.
func (p *Provider) group(spec providers.AgentSpec, created time.Time) armcontainerinstance.ContainerGroup {
	env := make([]*armcontainerinstance.EnvironmentVariable, 0, len(spec.Env)+len(spec.Secrets))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if _, secret := spec.Secrets[k]; !secret {
			env = append(env, &armcontainerinstance.EnvironmentVariable{Name: to.Ptr(k), Value: to.Ptr(spec.Env[k])})
		}
	}
	// Secure values are never returned by ARM, shown in the portal, or logged by ACI.
	for _, k := range slices.Sorted(maps.Keys(spec.Secrets)) {
		env = append(env, &armcontainerinstance.EnvironmentVariable{Name: to.Ptr(k), SecureValue: to.Ptr(spec.Secrets[k])})
	}

	cpu, mem := spec.CPU, DefaultMemoryGB
	if cpu <= 0 {
		cpu = DefaultCPU
	}
	if spec.MemoryMB > 0 {
		// ACI takes memory in GB, in steps of 0.1.
		mem = math.Ceil(float64(spec.MemoryMB)/1024*10) / 10
	}

	tags := map[string]*string{tagCreated: to.Ptr(created.UTC().Format(time.RFC3339Nano))}
	for k, v := range providers.Labels(spec) {
		tags[tagName(k)] = to.Ptr(v)
	}

	props := &armcontainerinstance.ContainerGroupPropertiesProperties{
		Containers: []*armcontainerinstance.Container{{
			Name: to.Ptr(containerName),
			Properties: &armcontainerinstance.ContainerProperties{
				Image:                to.Ptr(spec.Image),
				EnvironmentVariables: env,
				Resources: &armcontainerinstance.ResourceRequirements{
					Requests: &armcontainerinstance.ResourceRequests{CPU: to.Ptr(cpu), MemoryInGB: to.Ptr(mem)},
				},
			},
		}},
		OSType:        to.Ptr(armcontainerinstance.OperatingSystemTypes(p.opt.OSType)),
		RestartPolicy: to.Ptr(armcontainerinstance.ContainerGroupRestartPolicyNever),
		// No IPAddress, public or private: nothing dials in to an agent.
	}
	for _, id := range p.opt.SubnetIDs {
		props.SubnetIDs = append(props.SubnetIDs, &armcontainerinstance.ContainerGroupSubnetID{ID: to.Ptr(id)})
	}
	if d := p.opt.DNS; d != nil {
		props.DNSConfig = &armcontainerinstance.DNSConfiguration{NameServers: to.SliceOfPtrs(d.NameServers...)}
		if len(d.SearchDomains) > 0 {
			props.DNSConfig.SearchDomains = to.Ptr(strings.Join(d.SearchDomains, " "))
		}
		if d.Options != "" {
			props.DNSConfig.Options = to.Ptr(d.Options)
		}
	}
	g := armcontainerinstance.ContainerGroup{
		Location:   to.Ptr(p.opt.Location),
		Tags:       tags,
		Properties: props,
	}
	if len(p.opt.Zones) > 0 {
		g.Zones = to.SliceOfPtrs(p.opt.Zones...)
	}
	if r := p.opt.Registry; r != nil {
		cred := &armcontainerinstance.ImageRegistryCredential{Server: to.Ptr(r.Server)}
		if r.Identity != "" {
			// ACI pulls with an identity attached to the group.
			cred.Identity = to.Ptr(r.Identity)
			g.Identity = &armcontainerinstance.ContainerGroupIdentity{
				Type:                   to.Ptr(armcontainerinstance.ResourceIdentityTypeUserAssigned),
				UserAssignedIdentities: map[string]*armcontainerinstance.UserAssignedIdentities{r.Identity: {}},
			}
		} else {
			cred.Username, cred.Password = to.Ptr(r.Username), to.Ptr(r.Password)
		}
		props.ImageRegistryCredentials = []*armcontainerinstance.ImageRegistryCredential{cred}
	}
	return g
}

// pending is the instance a create accepted by ARM but not yet provisioned
// stands for.
func pending(spec providers.AgentSpec, created time.Time) providers.Instance {
	return providers.Instance{Name: spec.Name, Pool: spec.Pool, Request: spec.Request, Slot: spec.Slot,
		State: providers.StatePending, Created: created}
}

// instance reads a container group. It reports false when the group's tags
// do not mark it as this autoscaler's.
func instance(g *armcontainerinstance.ContainerGroup) (providers.Instance, bool) {
	var in providers.Instance
	if g == nil || g.Name == nil || !providers.FromLabels(labels(g.Tags), &in) {
		return in, false
	}
	in.Name = *g.Name
	if v := g.Tags[tagCreated]; v != nil {
		in.Created, _ = time.Parse(time.RFC3339Nano, *v)
	}
	cur := currentState(g)
	state := ""
	if cur != nil {
		state = deref(cur.State)
		if state == containerRunning || state == containerTerminated {
			in.Started = deref(cur.StartTime)
		}
		if state == containerTerminated {
			in.Finished = deref(cur.FinishTime)
			in.ExitCode = int(deref(cur.ExitCode))
		}
	}
	switch {
	case provisioningState(g) == stateFailed:
		in.State = providers.StateFailed
		in.Reason = "provisioning failed"
		if why := failureDetail(g); why != "" {
			in.Reason += ": " + why
		}
	case state == containerTerminated && in.ExitCode == 0:
		in.State = providers.StateExited
	case state == containerTerminated:
		in.State = providers.StateFailed
		in.Reason = fmt.Sprintf("agent exited with code %d", in.ExitCode)
		if d := deref(cur.DetailStatus); d != "" {
			in.Reason += " (" + d + ")"
		}
	case state == containerRunning:
		in.State = providers.StateRunning
	default:
		in.State = providers.StatePending
	}
	return in, true
}

// labels reads the agentscaler tags back as label keys. Tag names are
// case-insensitive in ARM, so they are matched as such.
func labels(tags map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		if v == nil || len(k) < len(tagPrefix) || !strings.EqualFold(k[:len(tagPrefix)], tagPrefix) {
			continue
		}
		out["agentscaler.io/"+strings.ToLower(k[len(tagPrefix):])] = *v
	}
	return out
}

func provisioningState(g *armcontainerinstance.ContainerGroup) string {
	if g.Properties == nil {
		return ""
	}
	return deref(g.Properties.ProvisioningState)
}

// currentState is the agent container's state from the instance view, nil
// when the group has none yet (or the response is a list entry).
func currentState(g *armcontainerinstance.ContainerGroup) *armcontainerinstance.ContainerState {
	if g.Properties == nil {
		return nil
	}
	for _, c := range g.Properties.Containers {
		if c != nil && c.Properties != nil && c.Properties.InstanceView != nil {
			return c.Properties.InstanceView.CurrentState
		}
	}
	return nil
}

// failureDetail says why provisioning failed, in the service's words: the
// container's detail status, or the latest warning event.
func failureDetail(g *armcontainerinstance.ContainerGroup) string {
	if cur := currentState(g); cur != nil && deref(cur.DetailStatus) != "" {
		return deref(cur.DetailStatus)
	}
	var events []*armcontainerinstance.Event
	if iv := g.Properties.InstanceView; iv != nil {
		events = append(events, iv.Events...)
	}
	for _, c := range g.Properties.Containers {
		if c != nil && c.Properties != nil && c.Properties.InstanceView != nil {
			events = append(events, c.Properties.InstanceView.Events...)
		}
	}
	var latest *armcontainerinstance.Event
	for _, e := range events {
		if e == nil || !strings.EqualFold(deref(e.Type), "Warning") || deref(e.Message) == "" {
			continue
		}
		if latest == nil || deref(e.LastTimestamp).After(deref(latest.LastTimestamp)) {
			latest = e
		}
	}
	if latest == nil {
		return ""
	}
	return deref(latest.Message)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
