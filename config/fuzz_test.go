package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSecret is the value of every variable a fuzzed configuration names
// with an even-length name (the others are unset): no message may carry it.
const fuzzSecret = "zz-fuzz-secret-value"

func fuzzEnv(name string) string {
	if len(name)%2 == 0 {
		return fuzzSecret
	}
	return ""
}

// withinMemory fails t when f allocates more than a fixed allowance plus
// perByte for each byte of input: what a file or variable holds may cost
// in proportion to its size, never more.
func withinMemory(t *testing.T, inputBytes int, f func()) {
	t.Helper()
	const fixed, perByte = 4 << 20, 4096
	if got := allocated(f); got > fixed+perByte*uint64(inputBytes) {
		t.Errorf("%d bytes of input allocated %d bytes, want at most %d + %d per byte", inputBytes, got, fixed, perByte)
	}
}

// checkOutcome holds whatever the input: a configuration or a problem,
// never both or neither; a configuration that passes its own validation;
// and no secret value in any message.
func checkOutcome(t *testing.T, cfg *Config, err error, getenv func(string) string) {
	t.Helper()
	if (cfg == nil) == (err == nil) {
		t.Fatalf("config %v and error %v: want exactly one", cfg != nil, err)
	}
	if cfg != nil {
		if verr := cfg.Validate(getenv); verr != nil {
			t.Errorf("accepted, yet Validate says:\n%v", verr)
		}
		return
	}
	if strings.Contains(err.Error(), fuzzSecret) {
		t.Errorf("the error carries a secret value:\n%v", err)
	}
}

// FuzzParse: any file within the size bound gives a configuration or a
// list of problems, never a panic, in memory bounded by its size.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range append(files, filepath.Join("..", "agentscaler.example.yaml")) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(aliasBomb()))
	f.Add([]byte("pools: [{name: a, max_agents: 10.9, agent: {cpu: .nan, memory: 9000000000Gi}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxFileBytes {
			t.Skip("larger than Load ever reads")
		}
		var cfg *Config
		var err error
		withinMemory(t, len(data), func() { cfg, err = parse(data, fuzzEnv) })
		checkOutcome(t, cfg, err, fuzzEnv)
	})
}

// FuzzFromEnv: any set of variables gives a configuration or a list of
// problems, never a panic, in memory bounded by their size.
func FuzzFromEnv(f *testing.F) {
	f.Add("https://dev.azure.com/contoso", "Linux Agents (x64)", "", "", "azp-agent:linux", "", "", "", "", "", false)
	f.Add("https://dev.azure.com/contoso", "Default", "linux", "memory", "", "3", "1", "Agent.OS=Linux, docker ,java= 17,", "0 8 * * 1-5=3; 0 19 * * 1-5=0", "builder", true)
	f.Add("http://127.0.0.1:8080/contoso", "Default", "", "kubernetes", "azp-agent:linux", "10.9", "-1", "docker,=x", "@every 0s=1;;=;x=", "a:b", false)
	f.Add("https://contoso.visualstudio.com/", "((", "Linux", "aci", "img", "99999999999999999999", "x", ",,,", "TZ=UTC * * * * *=99999999999999999999", "", true)
	f.Fuzz(func(t *testing.T, url, pool, name, provider, image, maxAgents, minIdle, caps, schedules, user string, key bool) {
		vars := map[string]string{
			EnvURL: url, EnvToken: fuzzSecret, EnvPool: pool, EnvPoolName: name, EnvProvider: provider, EnvImage: image,
			EnvMaxAgents: maxAgents, EnvMinIdle: minIdle, EnvCapabilities: caps, EnvSchedules: schedules, EnvWebhookUsername: user,
		}
		if key {
			vars[EnvWebhookKey] = fuzzSecret
		} else {
			vars[EnvWebhookPassword] = fuzzSecret
		}
		size := 0
		for _, v := range vars {
			size += len(v)
		}
		var cfg *Config
		var err error
		withinMemory(t, size, func() { cfg, err = FromEnv(env(vars)) })
		checkOutcome(t, cfg, err, env(vars))
	})
}
