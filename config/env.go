package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/agentscaler/agentscaler/internal/logsafe"
)

// Environment variables read by FromEnv. The Azure DevOps ones are those the
// agent container already uses.
const (
	EnvURL          = "AZP_URL"
	EnvToken        = "AZP_TOKEN"
	EnvPool         = "AZP_POOL"
	EnvConfig       = "AGENTSCALER_CONFIG"
	EnvPoolName     = "AGENTSCALER_POOL_NAME"
	EnvProvider     = "AGENTSCALER_PROVIDER"
	EnvImage        = "AGENTSCALER_IMAGE"
	EnvMaxAgents    = "AGENTSCALER_MAX_AGENTS"
	EnvMinIdle      = "AGENTSCALER_MIN_IDLE"
	EnvCapabilities = "AGENTSCALER_CAPABILITIES"
	// EnvSchedules is the pool's standby schedule, entries cron=min_idle
	// separated by ';': "0 8 * * 1-5=3; 0 19 * * 1-5=0"; EnvTimezone its
	// time zone.
	EnvSchedules       = "AGENTSCALER_SCHEDULES"
	EnvTimezone        = "AGENTSCALER_TIMEZONE"
	EnvWebhookUsername = "AGENTSCALER_WEBHOOK_USERNAME"
	EnvWebhookPassword = "AGENTSCALER_WEBHOOK_PASSWORD"
	EnvWebhookKey      = "AGENTSCALER_WEBHOOK_KEY"

	// DefaultWebhookUsername is the basic-auth user in environment mode.
	DefaultWebhookUsername = "azdo"
	// WebhookKeyHeader carries the shared key in environment mode.
	WebhookKeyHeader = "X-Agentscaler-Key"
)

// envKeys renames a file key to the variable that sets it in environment
// mode, so every problem names what the user can change.
var envKeys = map[string]string{
	"azuredevops.url":                 EnvURL,
	"azuredevops.token_env":           EnvToken,
	"pools[0].name":                   EnvPoolName,
	"pools[0].azure_pool":             EnvPool,
	"pools[0].provider":               EnvProvider,
	"pools[0].agent.image":            EnvImage,
	"pools[0].max_agents":             EnvMaxAgents,
	"pools[0].min_idle":               EnvMinIdle,
	"pools[0].capabilities":           EnvCapabilities,
	"pools[0].schedules":              EnvSchedules,
	"pools[0].timezone":               EnvTimezone,
	"webhook":                         EnvWebhookPassword,
	"webhook.header":                  EnvWebhookKey,
	"webhook.basic_auth.username":     EnvWebhookUsername,
	"webhook.basic_auth.password_env": EnvWebhookPassword,
	"webhook.header.value_env":        EnvWebhookKey,
	"metrics.push.instance":           EnvPushInstance,
}

// FromEnv describes one pool from environment variables alone: AZP_URL,
// AZP_TOKEN and AZP_POOL as the agent container knows them, plus the
// AGENTSCALER_* variables above, and push mode's (EnvPushURL, ...). The token stays in the environment: the
// configuration only names AZP_TOKEN. Problems name the variables.
func FromEnv(getenv func(string) string) (*Config, error) {
	getenv = orEnv(getenv)
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	set := map[string]bool{}
	var problems []Problem

	c := &Config{AzureDevOps: AzureDevOps{URL: get(EnvURL), TokenEnv: EnvToken}}

	p := Pool{
		Name:      get(EnvPoolName),
		AzurePool: get(EnvPool),
		Provider:  get(EnvProvider),
		Agent:     Agent{Image: get(EnvImage)},
	}
	if p.Name == "" && p.AzurePool != "" {
		p.Name = PoolNameFrom(p.AzurePool)
		if p.Name == "" {
			problems = append(problems, Problem{Key: "pools[0].name",
				Message: fmt.Sprintf("cannot derive a pool name from %s; set %s to a short lowercase name", EnvPool, EnvPoolName)})
		}
	}
	for _, n := range []struct {
		env, key string
		dst      *int
	}{{EnvMaxAgents, "pools[0].max_agents", &p.MaxAgents}, {EnvMinIdle, "pools[0].min_idle", &p.MinIdle}} {
		s := get(n.env)
		if s == "" {
			continue
		}
		set[n.key] = true
		v, err := strconv.Atoi(s)
		if err != nil {
			problems = append(problems, Problem{Key: n.key, Message: fmt.Sprintf("must be a whole number (got %q)", s)})
			continue
		}
		*n.dst = v
	}
	if s := get(EnvCapabilities); s != "" {
		caps, err := ParseCapabilities(s)
		if err != nil {
			problems = append(problems, Problem{Key: "pools[0].capabilities", Message: err.Error()})
		}
		p.Capabilities = caps
	}
	if s := get(EnvSchedules); s != "" {
		scheds, bad := parseSchedules(s)
		problems = append(problems, bad...)
		for j := range scheds {
			set[fmt.Sprintf("pools[0].schedules[%d].min_idle", j)] = true
		}
		p.Schedules = scheds
		if len(bad) == 0 {
			// Checked with the schedules it applies to, once they read.
			p.Timezone = get(EnvTimezone)
		}
	} else {
		p.Timezone = get(EnvTimezone)
	}
	c.Pools = []Pool{p}

	password, key := get(EnvWebhookPassword) != "", get(EnvWebhookKey) != ""
	switch {
	case password && key:
		problems = append(problems, Problem{Key: "webhook",
			Message: fmt.Sprintf("both %s and %s are set; keep exactly one", EnvWebhookPassword, EnvWebhookKey)})
	case !password && !key:
		problems = append(problems, Problem{Key: "webhook",
			Message: fmt.Sprintf("an unauthenticated webhook is refused; set %s (basic auth, user %s unless %s says otherwise) or %s (sent in the %s header)",
				EnvWebhookPassword, DefaultWebhookUsername, EnvWebhookUsername, EnvWebhookKey, WebhookKeyHeader)})
	case password:
		user := get(EnvWebhookUsername)
		if user == "" {
			user = DefaultWebhookUsername
		}
		c.Webhook.BasicAuth = &BasicAuth{Username: user, PasswordEnv: EnvWebhookPassword}
	default:
		c.Webhook.Header = &Header{Name: WebhookKeyHeader, ValueEnv: EnvWebhookKey}
	}

	problems = append(problems, pushFromEnv(c, getenv)...)
	applyDefaults(c, func(k string) bool { return set[k] })
	problems = merge(problems, c.validate(getenv))
	if p.Name == "" && p.AzurePool == "" {
		// The name follows from AZP_POOL, whose own problem says to set it.
		problems = slices.DeleteFunc(problems, func(q Problem) bool { return q.Key == "pools[0].name" })
	}
	if len(problems) > 0 {
		for i := range problems {
			if name, ok := envKeys[problems[i].Key]; ok {
				problems[i].Key = name
			} else if rest, ok := strings.CutPrefix(problems[i].Key, "pools[0].schedules"); ok {
				problems[i].Key = EnvSchedules + rest // AGENTSCALER_SCHEDULES[1].cron: the second entry's
			}
		}
		return nil, &ValidationError{Problems: problems}
	}
	return c, nil
}

var notPoolNameChars = regexp.MustCompile(`[^a-z0-9-]`)

// PoolNameFrom derives a pool name from an Azure DevOps pool name:
// lowercased, every character outside [a-z0-9-] turned into '-', and '-'
// trimmed from both ends ("Linux Agents" gives "linux-agents").
func PoolNameFrom(azurePool string) string {
	return strings.Trim(notPoolNameChars.ReplaceAllString(strings.ToLower(azurePool), "-"), "-")
}

// ParseCapabilities reads "Agent.OS=Linux,docker", as AGENTSCALER_CAPABILITIES
// and `simulate --capabilities` take it: name=value pairs, or a
// bare name for a capability with an empty value.
func ParseCapabilities(s string) (map[string]string, error) {
	caps := map[string]string{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, _ := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if name == "" {
			return caps, fmt.Errorf("%q has no capability name; write name=value or name, separated by commas", item)
		}
		caps[name] = strings.TrimSpace(value)
	}
	return caps, nil
}

// parseSchedules reads the environment form of a standby schedule: entries
// "cron=min_idle" separated by ';', as in "0 8 * * 1-5=3; 0 19 * * 1-5=0".
// Each entry splits at its last '=', so a cron expression written with a
// TZ= prefix reaches validation, which says to use the time zone variable.
// An entry that does not split, or whose min_idle is not a number, is a
// problem keyed by its place among the entries, as validation keys them.
func parseSchedules(s string) ([]Schedule, []Problem) {
	var out []Schedule
	var problems []Problem
	j := 0
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if j == maxSchedules {
			return nil, []Problem{{Key: "pools[0].schedules", Message: fmt.Sprintf("holds more than %d entries; a working week of shifts takes a handful, one per change of min_idle", maxSchedules)}}
		}
		key := fmt.Sprintf("pools[0].schedules[%d]", j)
		j++
		i := strings.LastIndex(entry, "=")
		if i < 0 {
			problems = append(problems, Problem{Key: key, Message: fmt.Sprintf("want cron=min_idle, such as 0 8 * * 1-5=3 (got %q)", logsafe.Clip(entry))})
			continue
		}
		n := strings.TrimSpace(entry[i+1:])
		minIdle, err := strconv.Atoi(n)
		if err != nil {
			problems = append(problems, Problem{Key: key + ".min_idle", Message: fmt.Sprintf("must be a whole number after the last '=' (got %q)", logsafe.Clip(n))})
			continue
		}
		out = append(out, Schedule{Cron: strings.TrimSpace(entry[:i]), MinIdle: minIdle})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return out, nil
}
