package providers

import (
	"maps"
	"testing"
)

func TestAgentEnv(t *testing.T) {
	own := map[string]string{"docker": "true", EnvPool: "set by the user"}
	env := WithName(AgentEnv(own, "https://dev.azure.com/contoso", "Default", "_work"), "linux-r7")
	want := map[string]string{"docker": "true", EnvURL: "https://dev.azure.com/contoso", EnvPool: "Default", EnvWork: "_work", EnvName: "linux-r7"}
	if !maps.Equal(env, want) {
		t.Errorf("environment %v, want %v", env, want)
	}
	if own[EnvPool] != "set by the user" || len(own) != 2 {
		t.Errorf("the pool's own environment was changed: %v", own)
	}
	for _, k := range ReservedEnv {
		if _, ok := env[k]; !ok {
			t.Errorf("reserved %s is not set for the agent", k)
		}
	}
	if _, ok := env[EnvToken]; ok {
		t.Errorf("the token is in the plain environment")
	}
}
