package azuredevops

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
)

// Demand operators as written after the '-' in a demand string. Azure DevOps
// matches them case-sensitively, and so do we.
const (
	opExists     = "exists" // written as the bare capability name
	opEquals     = "equals"
	opMinVersion = "gtVersion" // despite the name: the capability's version must be >= the value
)

// System capabilities our agents report, named as the agent names them.
const (
	capAgentVersion = "Agent.Version"
	capAgentOS      = "Agent.OS"
	defaultAgentOS  = "Linux"
)

// Demand is one job demand, parsed. Op is "exists", "equals" or "gtVersion".
type Demand struct {
	Name, Op, Value string
}

// demandRE splits "name", "name -op" and "name -op value"; the operator and
// value are validated afterwards so errors can say what is wrong.
var demandRE = regexp.MustCompile(`^(\S+)(?:\s+-(\S+)(?:\s+(.*))?)?$`)

// ParseDemand parses a demand as Azure DevOps writes it in a job request:
// "name" (the capability exists), "name -equals value" or
// "name -gtVersion version".
func ParseDemand(s string) (Demand, error) {
	m := demandRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Demand{}, fmt.Errorf("demand %q: want \"name\", \"name -equals value\" or \"name -gtVersion version\"", s)
	}
	name, op, value := m[1], m[2], strings.TrimSpace(m[3])
	switch op {
	case "":
		return Demand{Name: name, Op: opExists}, nil
	case opEquals, opMinVersion:
		if value == "" {
			return Demand{}, fmt.Errorf("demand %q: operator -%s needs a value", s, op)
		}
		return Demand{Name: name, Op: op, Value: value}, nil
	default:
		return Demand{}, fmt.Errorf("demand %q: unknown operator -%s (known: -%s, -%s, or none for exists)", s, op, opEquals, opMinVersion)
	}
}

// SatisfiedBy reports whether capabilities satisfy the demand, as the Azure
// DevOps DemandExists, DemandEquals and DemandMinimumVersion classes decide:
// capability names match case-insensitively, -equals compares values
// case-insensitively, and -gtVersion holds when the capability's version is
// at least the demanded one.
func (d Demand) SatisfiedBy(caps map[string]string) bool {
	v, ok := lookupCapability(caps, d.Name)
	if !ok {
		return false
	}
	switch d.Op {
	case opExists:
		return true
	case opEquals:
		return strings.EqualFold(d.Value, v)
	case opMinVersion:
		return compareVersions(d.Value, v) <= 0
	default:
		return false
	}
}

// Satisfies reports whether caps satisfy every demand. A demand that does not
// parse makes the answer false and is returned as the error, so a caller can
// log it rather than start agents for a job nobody understands.
func Satisfies(caps map[string]string, demands []string) (bool, error) {
	parsed := make([]Demand, 0, len(demands))
	var errs []error
	for _, s := range demands {
		d, err := ParseDemand(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		parsed = append(parsed, d)
	}
	if len(errs) > 0 {
		return false, errors.Join(errs...)
	}
	for _, d := range parsed {
		if !d.SatisfiedBy(caps) {
			return false, nil
		}
	}
	return true, nil
}

// PoolCapabilities is what every agent of a pool offers: the declared
// capabilities plus the system ones our agents report. agentVersion, when
// set, is Agent.Version (it overrides a declared one, because the image
// decides); Agent.OS is Linux unless declared.
func PoolCapabilities(declared map[string]string, agentVersion string) map[string]string {
	caps := make(map[string]string, len(declared)+2)
	maps.Copy(caps, declared)
	if agentVersion != "" {
		for k := range caps {
			if strings.EqualFold(k, capAgentVersion) {
				delete(caps, k)
			}
		}
		caps[capAgentVersion] = agentVersion
	}
	if _, ok := lookupCapability(caps, capAgentOS); !ok {
		caps[capAgentOS] = defaultAgentOS
	}
	return caps
}

// lookupCapability finds a capability by name, ignoring case as Azure DevOps
// does. An exact match wins; among names differing only in case, the
// smallest is taken so the answer does not depend on map order.
func lookupCapability(caps map[string]string, name string) (string, bool) {
	if v, ok := caps[name]; ok {
		return v, true
	}
	found, key := false, ""
	for k := range caps {
		if strings.EqualFold(k, name) && (!found || k < key) {
			found, key = true, k
		}
	}
	return caps[key], found
}

// compareVersions compares two versions as Azure DevOps'
// DemandMinimumVersion.CompareVersion does: a version that does not parse
// ranks below any that does, two that do not parse are equal.
func compareVersions(a, b string) int {
	va, okA := parseVersion(a)
	vb, okB := parseVersion(b)
	switch {
	case !okA && !okB:
		return 0
	case !okA:
		return -1
	case !okB:
		return 1
	}
	for i := range va {
		if va[i] != vb[i] {
			if va[i] < vb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// parseVersion reads a version as Azure DevOps does: cut at the first '-'
// (a pre-release suffix), then .NET's Version.TryParse, which wants two to
// four dot-separated non-negative 32-bit integers. Missing parts are -1,
// as in System.Version, so 1.2 ranks below 1.2.0.
func parseVersion(s string) ([4]int64, bool) {
	v := [4]int64{-1, -1, -1, -1}
	if i := strings.IndexByte(s, '-'); i > 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 || len(parts) > 4 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}
