package testagent

import (
	"runtime"
	"strings"
)

// secretVariables are never reported as capabilities, whatever
// VSO_AGENT_IGNORE says: they hold credentials.
var secretVariables = []string{"AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_CLIENTSECRET"}

// systemCapabilities are what the agent reports about itself: every
// environment variable but the secret ones and those VSO_AGENT_IGNORE
// names (compared ignoring case, as the agent does), plus the Agent.*
// capabilities.
func systemCapabilities(environ []string, cfg config) map[string]string {
	ignored := map[string]bool{}
	for _, n := range append(strings.Split(cfg.ignore, ","), secretVariables...) {
		if n = strings.TrimSpace(n); n != "" {
			ignored[strings.ToUpper(n)] = true
		}
	}
	caps := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" || ignored[strings.ToUpper(name)] {
			continue
		}
		caps[name] = value
	}
	caps["Agent.Name"] = cfg.name
	caps["Agent.OS"] = agentOS()
	caps["Agent.OSArchitecture"] = agentArch()
	caps["Agent.Version"] = cfg.version
	return caps
}

// agentOS is Agent.OS as the agent writes it.
func agentOS() string {
	switch runtime.GOOS {
	case "linux":
		return "Linux"
	case "darwin":
		return "Darwin"
	case "windows":
		return "Windows_NT"
	}
	return runtime.GOOS
}

// agentArch is Agent.OSArchitecture as the agent writes it.
func agentArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "X64"
	case "386":
		return "X86"
	case "arm64":
		return "ARM64"
	case "arm":
		return "ARM"
	}
	return strings.ToUpper(runtime.GOARCH)
}

// osDescription is what the pool's agent list shows as the agent's OS.
func osDescription() string {
	return agentOS() + " " + agentArch() + " (agentscaler test agent)"
}
