package config

import (
	"strings"
	"testing"
)

// TestValidatePolicy: a pool built outside a file (simulate's) is held to
// the rules of the file's pools, with the key named.
func TestValidatePolicy(t *testing.T) {
	ok := Pool{Name: "linux", MaxAgents: 10, MinIdle: 1, StartupTimeout: DefaultStartupTimeout, MaxLifetime: DefaultMaxLifetime,
		FailureBackoff: DefaultFailureBackoff, AgentVersion: DefaultAgentVersion}
	if err := ValidatePolicy(ok); err != nil {
		t.Fatalf("a valid policy: %v", err)
	}
	bad := ok
	bad.MinIdle, bad.StartupTimeout = 11, 0
	err := ValidatePolicy(bad)
	if err == nil || !strings.Contains(err.Error(), "pool.min_idle") || !strings.Contains(err.Error(), "pool.startup_timeout") {
		t.Errorf("min_idle over max_agents and no startup_timeout: %v, want both keys named", err)
	}
}
