package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// loadSchedules loads a file whose pool has max_agents, timezone and the
// schedule entries given, each written as a YAML flow mapping.
func loadSchedules(t *testing.T, maxAgents int, timezone string, entries ...string) (*Config, error) {
	t.Helper()
	pool := fmt.Sprintf("    max_agents: %d\n    timezone: %s\n    schedules:\n", maxAgents, timezone)
	for _, e := range entries {
		pool += "      - " + e + "\n"
	}
	return Load(writeTemp(t, base("", pool)), fileEnv)
}

// TestSchedulesLoad: a working-day schedule in a time zone loads as written.
func TestSchedulesLoad(t *testing.T) {
	cfg, err := loadSchedules(t, 20, "Europe/Berlin", `{cron: "0 8 * * 1-5", min_idle: 3}`, `{cron: "0 19 * * 1-5", min_idle: 0}`)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools[0]
	want := []Schedule{{"0 8 * * 1-5", 3}, {"0 19 * * 1-5", 0}}
	if p.Timezone != "Europe/Berlin" || !slices.Equal(p.Schedules, want) || p.MinIdle != DefaultMinIdle {
		t.Errorf("timezone %q, schedules %v, min_idle %d; want Europe/Berlin, %v, %d", p.Timezone, p.Schedules, p.MinIdle, want, DefaultMinIdle)
	}
}

// TestSchedulesRefused: each mistake is named by its key, at its line, with
// the fix.
func TestSchedulesRefused(t *testing.T) {
	_, err := loadSchedules(t, 4, "Europe/Berlinn",
		`{cron: "0 8 * * 1-5", min_idle: 5}`,
		`{cron: "0 8 * *", min_idle: 0}`,
		`{cron: "@every 1h", min_idle: 1}`,
		`{cron: "0 19 * * 1-5"}`,
		`{cron: "0  8 * * 1-5", min_idle: -1}`,
		`{cron: "0 0 30 2 *", min_idle: 1}`)
	saysProblems(t, err, map[string]string{
		"pools[0].timezone":              `"Europe/Berlinn" is not an IANA time zone name`,
		"pools[0].schedules[0].min_idle": "must be between 0 and max_agents, 4 (got 5)",
		"pools[0].schedules[1].cron":     "expected exactly 5 fields",
		"pools[0].schedules[2].cron":     "@every counts from an arbitrary start",
		"pools[0].schedules[3].min_idle": "required: the warm agents to keep from when cron fires, 0 to max_agents (4)",
		"pools[0].schedules[4].cron":     "is also the expression of schedules[0]",
		"pools[0].schedules[4].min_idle": "must be between 0 and max_agents, 4 (got -1)",
		"pools[0].schedules[5].cron":     "never fires",
	})
	for _, p := range problemsOf(t, err) {
		if p.Key == "pools[0].schedules[1].cron" && p.Line != 13 {
			t.Errorf("%s at line %d, want 13", p.Key, p.Line)
		}
	}
}

func TestSchedulesBounded(t *testing.T) {
	var entries []string
	for i := range maxSchedules + 1 {
		entries = append(entries, fmt.Sprintf(`{cron: "%d %d * * *", min_idle: 1}`, i%60, i/60))
	}
	_, err := loadSchedules(t, 4, "UTC", entries...)
	saysProblems(t, err, map[string]string{"pools[0].schedules": "holds 51 entries; at most 50 are accepted"})
}

func TestTimezoneWithoutSchedules(t *testing.T) {
	_, err := Load(writeTemp(t, base("", "    timezone: UTC\n")), fileEnv)
	saysProblems(t, err, map[string]string{"pools[0].timezone": "is set, but the pool has no schedules"})
}

// TestValidatePolicySchedules: simulate's pools are held to the same rules.
func TestValidatePolicySchedules(t *testing.T) {
	p := Pool{Name: "linux", MaxAgents: 10, StartupTimeout: DefaultStartupTimeout, MaxLifetime: DefaultMaxLifetime,
		FailureBackoff: DefaultFailureBackoff, AgentVersion: DefaultAgentVersion,
		Schedules: []Schedule{{"0 8 * * 1-5", 3}, {"0 19 * * 1-5", 0}}, Timezone: "America/New_York"}
	if err := ValidatePolicy(p); err != nil {
		t.Fatal(err)
	}
	p.Schedules = append(p.Schedules, Schedule{"0 25 * * *", 11})
	err := ValidatePolicy(p)
	if err == nil || !strings.Contains(err.Error(), "pool.schedules[2].cron") || !strings.Contains(err.Error(), "pool.schedules[2].min_idle") {
		t.Errorf("an hour of 25 and min_idle over max_agents: %v, want both keys named", err)
	}
}
