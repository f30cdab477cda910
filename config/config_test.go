package config

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// env is a fixed environment: tests never read or change the process's own.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// fileEnv holds the variables the files in testdata name.
var fileEnv = env(map[string]string{
	"TEST_AZP_TOKEN":        "pat-value-7c1d",
	"TEST_WEBHOOK_PASSWORD": "hook-password-3e8a",
	"TEST_WEBHOOK_KEY":      "hook-key-5a90",
})

// problemsOf returns the problems in err, failing the test when err is not
// a *ValidationError.
func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error = %v, want a *ValidationError", err)
	}
	return verr.Problems
}

func keysOf(ps []Problem) []string {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key
	}
	return keys
}

// saysProblems checks that err lists exactly the problems says names, by
// key, each message holding its phrase, and none repeating any of secrets.
func saysProblems(t *testing.T, err error, says map[string]string, secrets ...string) {
	t.Helper()
	ps := problemsOf(t, err)
	got := keysOf(ps)
	slices.Sort(got)
	if want := slices.Sorted(maps.Keys(says)); !slices.Equal(got, want) {
		t.Errorf("problem keys:\n got %q\nwant %q\nerror:\n%v", got, want, err)
		return
	}
	for _, p := range ps {
		if !strings.Contains(p.Message, says[p.Key]) {
			t.Errorf("%s: %q does not say %q", p.Key, p.Message, says[p.Key])
		}
		for _, secret := range secrets {
			if strings.Contains(p.Message, secret) {
				t.Errorf("%s: the message repeats a secret: %q", p.Key, p.Message)
			}
		}
	}
}

func TestLoadBadFiles(t *testing.T) {
	tests := []struct {
		file string
		keys []string          // every problem's key, in order
		says map[string]string // key -> a phrase its message must hold
	}{
		{
			file: "three_mistakes.yaml",
			keys: []string{"reconcile.parallelism", "pools[0].max_agents", "pools[0].agent.memory"},
			says: map[string]string{
				"pools[0].max_agents":   "must be between 1 and 10000 (got 0)",
				"reconcile.parallelism": "must be between 1 and 100 (got 0)",
				"pools[0].agent.memory": "512Mi or 2Gi",
			},
		},
		{
			file: "unknown_keys.yaml",
			keys: []string{"webhok", "pools[0].max-agents", "pools[0].agent.imag", "pools[0].docker.pul", "pools[0].colour",
				"webhook", "pools[0].agent.image"},
			says: map[string]string{
				"webhok":              `unknown key; did you mean "webhook"?`,
				"pools[0].max-agents": `did you mean "max_agents"?`,
				"pools[0].agent.imag": `did you mean "image"?`,
				"pools[0].docker.pul": `did you mean "pull"?`,
				"pools[0].colour":     "the keys here are name, azure_pool, provider",
				"webhook":             "unauthenticated webhook is refused",
			},
		},
		{
			file: "auth.yaml",
			keys: []string{"azuredevops.url", "azuredevops.entra", "webhook.header"},
			says: map[string]string{
				"azuredevops.url":   "must use https",
				"azuredevops.entra": "exactly one of token_env or entra",
				"webhook.header":    "exactly one of basic_auth or header",
			},
		},
		{
			file: "unset_env.yaml",
			keys: []string{"azuredevops.token_env", "webhook.header.name", "webhook.header.value_env"},
			says: map[string]string{
				"azuredevops.token_env":    "environment variable TEST_UNSET_TOKEN is not set",
				"webhook.header.value_env": "must be the name of an environment variable",
			},
		},
		{
			file: "pools.yaml",
			keys: []string{"pools[0].min_idle", "pools[0].startup_timeout", "pools[1].provider", "pools[1].name",
				"pools[2].name", "pools[2].azure_pool", "pools[3].name", "pools[3].agent_version", "pools[3].azure_pool"},
			says: map[string]string{
				"pools[0].min_idle":        "must not exceed max_agents (got 11, max_agents 10)",
				"pools[0].startup_timeout": "must be between 30s and 2h (got 0s): an agent needs tens of seconds",
				"pools[1].provider":        `did you mean "docker"?`,
				"pools[1].name":            "already the name of pools[0]",
				"pools[3].name":            "at most 40 characters",
				"pools[3].azure_pool": `"Default" is also the Azure DevOps pool of pools[0]; pools "linux" and "a-pool-name-that-is-much-too-long-to-prefix-agents" ` +
					"would each start an agent for every job queued there, two agents per job: give each its own Azure DevOps pool",
			},
		},
		{
			file: "providers.yaml",
			keys: []string{"pools[0].aci", "pools[0].docker.pull", "pools[1].aci.subscription_id",
				"pools[1].aci.resource_group", "pools[1].aci.location", "pools[1].aci.os_type",
				"pools[1].aci.subnet_ids[0]", "pools[2].kubernetes.token_secret"},
			says: map[string]string{
				"pools[0].aci":         "provider is docker",
				"pools[0].docker.pull": "must be one of always, missing, never",
				"pools[1].aci.os_type": `did you mean "Linux"?`,
			},
		},
		{
			file: "agent.yaml",
			keys: []string{"pools[0].agent.image", "pools[0].agent.cpu", "pools[0].agent.memory",
				"pools[0].agent.env.AZP_POOL", "pools[0].agent.env.AZP_TOKEN", "pools[0].agent.env.Db_Password"},
			says: map[string]string{
				"pools[0].agent.env.AZP_TOKEN":   "use azuredevops.token_env",
				"pools[0].agent.env.Db_Password": "secrets are never written in the file",
				"pools[0].agent.env.AZP_POOL":    "set by the autoscaler",
			},
		},
		{
			// A value that does not decode is reported once, not again as out of range.
			file: "types.yaml",
			keys: []string{"azuredevops.respect_parallel_jobs", "pools[0].max_agents", "pools[0].startup_timeout", "pools[0].agent.cpu"},
			says: map[string]string{
				"pools[0].max_agents":               "must be a whole number",
				"pools[0].startup_timeout":          "duration with a unit",
				"azuredevops.respect_parallel_jobs": "true or false",
				"pools[0].agent.cpu":                "must be a number",
			},
		},
		{
			file: "duplicate_key.yaml",
			keys: []string{"pools[0].name"},
			says: map[string]string{"pools[0].name": "written twice"},
		},
		{
			file: "empty.yaml",
			keys: []string{"azuredevops.url", "azuredevops", "webhook", "pools"},
		},
		{
			file: "two_documents.yaml",
			keys: []string{"(file)"},
			says: map[string]string{"(file)": "more than one YAML document"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", tt.file), fileEnv)
			if cfg != nil {
				t.Errorf("Load returned a config along with the error")
			}
			ps := problemsOf(t, err)
			if got := keysOf(ps); !slices.Equal(got, tt.keys) {
				t.Fatalf("problem keys:\n got %q\nwant %q\nerror:\n%v", got, tt.keys, err)
			}
			for key, phrase := range tt.says {
				i := slices.IndexFunc(ps, func(p Problem) bool { return p.Key == key })
				if !strings.Contains(ps[i].Message, phrase) {
					t.Errorf("%s: message %q does not say %q", key, ps[i].Message, phrase)
				}
			}
		})
	}
}

func TestProblemLines(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "three_mistakes.yaml"), fileEnv)
	want := strings.Join([]string{
		"reconcile.parallelism: must be between 1 and 100 (got 0): more concurrent calls per pool only meet the providers' and Azure DevOps' rate limits (line 7)",
		"pools[0].max_agents: must be between 1 and 10000 (got 0): more agents than that in one pool is a typo, and each costs a container (line 11)",
		"pools[0].agent.memory: must be a quantity such as 512Mi or 2Gi (units Ki, Mi, Gi, K, M, G, or plain bytes) (line 14)",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("Error():\n%v\nwant:\n%s", err, want)
	}

	// A missing key is shown at its section.
	_, err = Load(filepath.Join("testdata", "pools.yaml"), fileEnv)
	for _, p := range problemsOf(t, err) {
		if p.Key == "pools[2].azure_pool" && p.Line != 16 {
			t.Errorf("pools[2].azure_pool at line %d, want 16 (the pool's first line)", p.Line)
		}
	}
}

func TestLoadAppliesDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "minimal.yaml"), fileEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AzureDevOps.URL != "https://dev.azure.com/contoso" {
		t.Errorf("url = %q, want the trailing slash trimmed", cfg.AzureDevOps.URL)
	}
	if r := cfg.Reconcile; r.Interval != time.Minute || r.Parallelism != 8 || r.CallTimeout != 30*time.Second {
		t.Errorf("reconcile = %+v, want 1m, 8, 30s", r)
	}
	if a := cfg.AzureDevOps; a.MaxPages != 25 || a.PageSize != 200 {
		t.Errorf("azuredevops max_pages, page_size = %d, %d, want 25, 200", a.MaxPages, a.PageSize)
	}
	p := cfg.Pools[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"provider", p.Provider, "docker"},
		{"max_agents", p.MaxAgents, 10},
		{"min_idle", p.MinIdle, 0},
		{"startup_timeout", p.StartupTimeout, 5 * time.Minute},
		{"max_lifetime", p.MaxLifetime, 6 * time.Hour},
		{"failure_backoff", p.FailureBackoff, 5 * time.Minute},
		{"agent_version", p.AgentVersion, "4.275.0"},
		{"agent.work", p.Agent.Work, "_work"},
		{"docker present", p.Docker != nil, true},
		{"aci absent", p.ACI == nil, true},
		{"kubernetes absent", p.Kubernetes == nil, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if p.Docker != nil && (p.Docker.Network != "host" || p.Docker.Pull != "missing" || p.Docker.Host != "") {
		t.Errorf("docker = %+v, want network host, pull missing, host empty", *p.Docker)
	}
}

func TestExampleFileLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "agentscaler.example.yaml"), env(map[string]string{
		"AZP_TOKEN":                    "example-pat",
		"AGENTSCALER_WEBHOOK_PASSWORD": "example-password",
	}))
	if err != nil {
		t.Fatalf("the example file does not load:\n%v", err)
	}
	var names []string
	for _, p := range cfg.Pools {
		names = append(names, p.Name+"/"+p.Provider)
	}
	if want := []string{"linux/docker", "aci-linux/aci", "k8s/kubernetes"}; !slices.Equal(names, want) {
		t.Errorf("pools = %q, want %q", names, want)
	}
	aci, _ := cfg.Pool("aci-linux")
	if aci.ACI.OSType != "Linux" || aci.MaxLifetime != 6*time.Hour {
		t.Errorf("aci pool = %+v, want os_type Linux and the default max_lifetime", aci)
	}
	k8s, _ := cfg.Pool("k8s")
	if k8s.Kubernetes.Namespace != "agents" || k8s.MinIdle != 1 {
		t.Errorf("k8s pool = %+v", k8s)
	}

	// Without its variables the same file names both of them.
	_, err = Load(filepath.Join("..", "agentscaler.example.yaml"), env(nil))
	want := []string{"azuredevops.token_env", "webhook.basic_auth.password_env"}
	if got := keysOf(problemsOf(t, err)); !slices.Equal(got, want) {
		t.Errorf("without variables: keys %q, want %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), fileEnv)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error = %v, want one wrapping os.ErrNotExist", err)
	}
}

func TestLoadSyntaxError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("pools:\n  - name: a\n   bad indent: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, fileEnv)
	var verr *ValidationError
	if err == nil || errors.As(err, &verr) || !strings.Contains(err.Error(), "parse config") {
		t.Errorf("error = %v, want a parse error", err)
	}
}

func TestOrganizationURL(t *testing.T) {
	tests := []struct {
		url  string
		want string // phrase of the problem, "" when valid
	}{
		{"https://dev.azure.com/contoso", ""},
		{"https://dev.azure.com/contoso/", ""},
		{"https://contoso.visualstudio.com", ""},
		{"https://ado.contoso.com/tfs/DefaultCollection", ""},
		{"https://ado.contoso.com/DefaultCollection", ""},
		{"http://127.0.0.1:8080/contoso", ""},
		{"http://127.1.2.3/contoso", ""},
		{"http://[::1]:9000/contoso", ""},
		{"http://localhost:9000/", ""},
		{"", "required"},
		{"dev.azure.com/contoso", "absolute URL"},
		{"http://dev.azure.com/contoso", "must use https"},
		{"http://10.0.0.5/contoso", "only for loopback"},
		{"ftp://dev.azure.com/contoso", "must use https"},
		{"https://dev.azure.com", "missing the organization"},
		{"https://dev.azure.com/contoso/project", "path beyond the organization"},
		{"https://dev.azure.com/contoso/_apis/projects", "path beyond the organization"},
		{"https://contoso.visualstudio.com/project", "path beyond the organization"},
		{"https://ado.contoso.com/tfs/DefaultCollection/project", "path beyond the collection"},
		{"https://ado.contoso.com", "missing the collection"},
		{"https://dev.azure.com/contoso?api-version=7.1", "query"},
		{"https://user:s3cr3t-in-url@dev.azure.com/contoso", "must not carry credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			v := &validator{getenv: fileEnv}
			v.orgURL("azuredevops.url", tt.url)
			switch {
			case tt.want == "" && len(v.problems) > 0:
				t.Errorf("problems %v, want none", v.problems)
			case tt.want != "" && len(v.problems) != 1:
				t.Errorf("problems %v, want one saying %q", v.problems, tt.want)
			case tt.want != "" && !strings.Contains(v.problems[0].Message, tt.want):
				t.Errorf("message %q, want it to say %q", v.problems[0].Message, tt.want)
			}
			for _, p := range v.problems {
				if strings.Contains(p.Message, "s3cr3t") {
					t.Errorf("message repeats the URL's password: %q", p.Message)
				}
			}
		})
	}
}

func TestMemoryMB(t *testing.T) {
	tests := []struct {
		memory string
		want   int64
		bad    bool
	}{
		{"", 0, false},
		{"2Gi", 2048, false},
		{"512Mi", 512, false},
		{"1.5Gi", 1536, false},
		{"1048576Ki", 1024, false},
		{"1048576", 1, false},
		{"1048577", 2, false}, // rounded up: never less than asked
		{"1G", 954, false},    // 1e9 bytes = 953.67 MiB
		{"512M", 489, false},
		{"100k", 1, false},
		{"2GB", 0, true},
		{"-1Gi", 0, true},
		{"Gi", 0, true},
		{"lots", 0, true},
		{"99999999999999999999999Gi", 0, true},
	}
	for _, tt := range tests {
		got, err := Agent{Memory: tt.memory}.MemoryMB()
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("MemoryMB(%q) = %d, %v; want %d, error %v", tt.memory, got, err, tt.want, tt.bad)
		}
	}
}

func TestFromEnv(t *testing.T) {
	base := map[string]string{
		"AZP_URL":                      "https://dev.azure.com/contoso",
		"AZP_TOKEN":                    "env-pat-0d6b",
		"AZP_POOL":                     "Linux Agents (x64)",
		"AGENTSCALER_IMAGE":            "azp-agent:linux",
		"AGENTSCALER_WEBHOOK_PASSWORD": "env-hook-2f7c",
	}
	with := func(changes map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range changes {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}

	t.Run("defaults", func(t *testing.T) {
		cfg, err := FromEnv(env(base))
		if err != nil {
			t.Fatal(err)
		}
		a := cfg.AzureDevOps
		if a.URL != "https://dev.azure.com/contoso" || a.TokenEnv != "AZP_TOKEN" || a.Entra != nil {
			t.Errorf("azuredevops = %+v", a)
		}
		if w := cfg.Webhook; w.Header != nil || w.BasicAuth == nil || *w.BasicAuth != (BasicAuth{"azdo", "AGENTSCALER_WEBHOOK_PASSWORD"}) {
			t.Errorf("webhook = %+v, want basic auth azdo / AGENTSCALER_WEBHOOK_PASSWORD", w)
		}
		p, ok := cfg.Pool("linux-agents--x64")
		if !ok {
			t.Fatalf("pools = %+v, want one named linux-agents--x64", cfg.Pools)
		}
		if p.AzurePool != "Linux Agents (x64)" || p.Provider != "docker" || p.MaxAgents != 10 || p.Agent.Image != "azp-agent:linux" ||
			p.Docker == nil || p.Docker.Pull != "missing" || p.StartupTimeout != 5*time.Minute {
			t.Errorf("pool = %+v", p)
		}
	})

	t.Run("every variable", func(t *testing.T) {
		cfg, err := FromEnv(env(with(map[string]string{
			"AGENTSCALER_POOL_NAME":        "linux",
			"AGENTSCALER_PROVIDER":         "memory",
			"AGENTSCALER_IMAGE":            "",
			"AGENTSCALER_MAX_AGENTS":       "3",
			"AGENTSCALER_MIN_IDLE":         "1",
			"AGENTSCALER_CAPABILITIES":     "Agent.OS=Linux, docker ,java= 17,",
			"AGENTSCALER_WEBHOOK_PASSWORD": "",
			"AGENTSCALER_WEBHOOK_KEY":      "env-key-81aa",
		})))
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Pools[0]
		if p.Name != "linux" || p.Provider != "memory" || p.MaxAgents != 3 || p.MinIdle != 1 || p.Docker != nil {
			t.Errorf("pool = %+v", p)
		}
		wantCaps := map[string]string{"Agent.OS": "Linux", "docker": "", "java": "17"}
		if len(p.Capabilities) != len(wantCaps) {
			t.Errorf("capabilities = %v, want %v", p.Capabilities, wantCaps)
		}
		for k, v := range wantCaps {
			if got, ok := p.Capabilities[k]; !ok || got != v {
				t.Errorf("capabilities[%q] = %q, %v; want %q", k, got, ok, v)
			}
		}
		if h := cfg.Webhook.Header; cfg.Webhook.BasicAuth != nil || h == nil || *h != (Header{"X-Agentscaler-Key", "AGENTSCALER_WEBHOOK_KEY"}) {
			t.Errorf("webhook = %+v, want header X-Agentscaler-Key / AGENTSCALER_WEBHOOK_KEY", cfg.Webhook)
		}
	})

	t.Run("schedules", func(t *testing.T) {
		cfg, err := FromEnv(env(with(map[string]string{
			"AGENTSCALER_MAX_AGENTS": "5",
			"AGENTSCALER_SCHEDULES":  " 0 8 * * 1-5 = 3 ;0 19 * * 1-5=0;",
			"AGENTSCALER_TIMEZONE":   "Europe/Berlin",
		})))
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Pools[0]
		want := []Schedule{{"0 8 * * 1-5", 3}, {"0 19 * * 1-5", 0}}
		if !slices.Equal(p.Schedules, want) || p.Timezone != "Europe/Berlin" {
			t.Errorf("schedules %+v in %q; want %+v in Europe/Berlin", p.Schedules, p.Timezone, want)
		}
	})

	bad := []struct {
		name    string
		changes map[string]string
		keys    []string
	}{
		{"nothing set", map[string]string{"AZP_URL": "", "AZP_TOKEN": "", "AZP_POOL": "", "AGENTSCALER_IMAGE": "", "AGENTSCALER_WEBHOOK_PASSWORD": ""},
			[]string{"AGENTSCALER_WEBHOOK_PASSWORD", "AZP_URL", "AZP_TOKEN", "AZP_POOL", "AGENTSCALER_IMAGE"}},
		{"bad numbers", map[string]string{"AGENTSCALER_MAX_AGENTS": "ten", "AGENTSCALER_MIN_IDLE": "-"},
			[]string{"AGENTSCALER_MAX_AGENTS", "AGENTSCALER_MIN_IDLE"}},
		{"out of range", map[string]string{"AGENTSCALER_MAX_AGENTS": "0", "AGENTSCALER_MIN_IDLE": "-2"},
			[]string{"AGENTSCALER_MAX_AGENTS", "AGENTSCALER_MIN_IDLE"}},
		{"both webhook secrets", map[string]string{"AGENTSCALER_WEBHOOK_KEY": "k"}, []string{"AGENTSCALER_WEBHOOK_PASSWORD"}},
		{"underivable pool name", map[string]string{"AZP_POOL": "(( ))"}, []string{"AGENTSCALER_POOL_NAME"}},
		{"bad name override", map[string]string{"AGENTSCALER_POOL_NAME": "Linux"}, []string{"AGENTSCALER_POOL_NAME"}},
		{"bad provider", map[string]string{"AGENTSCALER_PROVIDER": "k8s"}, []string{"AGENTSCALER_PROVIDER"}},
		{"bad capabilities", map[string]string{"AGENTSCALER_CAPABILITIES": "docker,=x"}, []string{"AGENTSCALER_CAPABILITIES"}},
		{"http url", map[string]string{"AZP_URL": "http://dev.azure.com/contoso"}, []string{"AZP_URL"}},
		{"schedule entry without min_idle", map[string]string{"AGENTSCALER_SCHEDULES": "0 8 * * 1-5"}, []string{"AGENTSCALER_SCHEDULES[0]"}},
		{"schedule min_idle not a number", map[string]string{"AGENTSCALER_SCHEDULES": "@daily=1; 0 8 * * 1-5=three"}, []string{"AGENTSCALER_SCHEDULES[1].min_idle"}},
		{"schedule with a time zone prefix", map[string]string{"AGENTSCALER_SCHEDULES": "TZ=UTC 0 8 * * *=1"}, []string{"AGENTSCALER_SCHEDULES[0].cron"}},
		{"empty entries are not counted", map[string]string{"AGENTSCALER_SCHEDULES": ";;61 * * * *=1"}, []string{"AGENTSCALER_SCHEDULES[0].cron"}},
		{"a time zone beside schedules that do not read", map[string]string{"AGENTSCALER_SCHEDULES": "0 8 * * 1-5", "AGENTSCALER_TIMEZONE": "Europe/Berlin"}, []string{"AGENTSCALER_SCHEDULES[0]"}},
		{"bad schedule entries", map[string]string{"AGENTSCALER_SCHEDULES": "0 8 * * 1-5=3; 61 * * * *=1; @daily=99"},
			[]string{"AGENTSCALER_SCHEDULES[1].cron", "AGENTSCALER_SCHEDULES[2].min_idle"}},
		{"bad time zone", map[string]string{"AGENTSCALER_SCHEDULES": "@daily=1", "AGENTSCALER_TIMEZONE": "Mars/Olympus"}, []string{"AGENTSCALER_TIMEZONE"}},
		{"time zone without schedules", map[string]string{"AGENTSCALER_TIMEZONE": "UTC"}, []string{"AGENTSCALER_TIMEZONE"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromEnv(env(with(tt.changes)))
			if cfg != nil {
				t.Error("FromEnv returned a config along with the error")
			}
			if got := keysOf(problemsOf(t, err)); !slices.Equal(got, tt.keys) {
				t.Errorf("keys %q, want %q\n%v", got, tt.keys, err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	vars := map[string]string{
		"TEST_AZP_TOKEN":          "pat",
		"TEST_WEBHOOK_PASSWORD":   "pw",
		"AZP_URL":                 "https://dev.azure.com/fromenv",
		"AZP_TOKEN":               "pat",
		"AZP_POOL":                "EnvPool",
		"AGENTSCALER_IMAGE":       "img",
		"AGENTSCALER_WEBHOOK_KEY": "key",
	}
	minimal := filepath.Join("testdata", "minimal.yaml")

	cfg, err := Resolve(minimal, env(vars))
	if err != nil || cfg.Pools[0].Name != "linux" {
		t.Fatalf("Resolve(path) = %+v, %v; want the file", cfg, err)
	}

	vars["AGENTSCALER_CONFIG"] = minimal
	cfg, err = Resolve("", env(vars))
	if err != nil || cfg.Pools[0].Name != "linux" {
		t.Fatalf("Resolve with AGENTSCALER_CONFIG = %+v, %v; want the file", cfg, err)
	}

	vars["AGENTSCALER_CONFIG"] = filepath.Join("testdata", "empty.yaml")
	if _, err := Resolve(minimal, env(vars)); err != nil {
		t.Errorf("Resolve(path) with AGENTSCALER_CONFIG set: %v; want the path to win", err)
	}

	delete(vars, "AGENTSCALER_CONFIG")
	cfg, err = Resolve("", env(vars))
	if err != nil || cfg.Pools[0].Name != "envpool" || cfg.AzureDevOps.URL != "https://dev.azure.com/fromenv" {
		t.Fatalf("Resolve without a file = %+v, %v; want the environment", cfg, err)
	}
}

// TestSecretsNeverInErrors sets distinctive secret values and writes
// mistakes next to them: no message may carry a value.
func TestSecretsNeverInErrors(t *testing.T) {
	secrets := map[string]string{
		"AZP_TOKEN":                    "zzsecret-pat-a1b2c3",
		"AGENTSCALER_WEBHOOK_PASSWORD": "zzsecret-hook-d4e5f6",
		"AGENTSCALER_WEBHOOK_KEY":      "zzsecret-key-0719",
		"TEST_AZP_TOKEN":               "zzsecret-file-pat-77",
		"TEST_WEBHOOK_PASSWORD":        "zzsecret-file-hook-88",
	}
	var errs []error

	// Environment mode with every mistake the environment can make.
	_, err := FromEnv(env(map[string]string{
		"AZP_URL":                      "http://example.com/contoso",
		"AZP_TOKEN":                    secrets["AZP_TOKEN"],
		"AZP_POOL":                     "((",
		"AGENTSCALER_MAX_AGENTS":       "x",
		"AGENTSCALER_WEBHOOK_PASSWORD": secrets["AGENTSCALER_WEBHOOK_PASSWORD"],
		"AGENTSCALER_WEBHOOK_KEY":      secrets["AGENTSCALER_WEBHOOK_KEY"],
	}))
	errs = append(errs, err)

	// Files: secrets written inline, a PAT pasted where a variable name
	// belongs, and credentials in the URL.
	dir := t.TempDir()
	inline := filepath.Join(dir, "inline.yaml")
	pasted := "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst" // the shape of a PAT
	secrets["pasted"] = pasted
	secrets["url"] = "zzsecret-url-pw"
	secrets["agent.yaml AZP_TOKEN"] = "inline-token-value-4f1c"
	secrets["agent.yaml Db_Password"] = "inline-password-value-9b2e"
	file := "azuredevops:\n  url: https://me:zzsecret-url-pw@dev.azure.com/contoso\n  token_env: " + pasted + "\n" +
		"webhook:\n  basic_auth: {username: azdo, password_env: TEST_WEBHOOK_PASSWORD}\npools: []\n"
	if err := os.WriteFile(inline, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(inline, env(secrets))
	errs = append(errs, err)
	_, err = Load(filepath.Join("testdata", "agent.yaml"), env(secrets))
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		for name, value := range secrets {
			if strings.Contains(err.Error(), value) {
				t.Errorf("case %d: the error text carries the value of %s:\n%v", i, name, err)
			}
		}
	}
	// The problems still name what to fix.
	if !strings.Contains(errs[1].Error(), "azuredevops.token_env: names no set environment variable") {
		t.Errorf("pasted PAT: got\n%v", errs[1])
	}
}

func TestSuggest(t *testing.T) {
	keys := fieldsOf["config.Pool"]
	tests := map[string]string{
		"max_agent":  "max_agents",
		"MaxAgents":  "max_agents",
		"azure-pool": "azure_pool",
		"minidle":    "min_idle",
		"colour":     "",
		"x":          "",
	}
	for got, want := range tests {
		if s := suggest(got, keys); s != want {
			t.Errorf("suggest(%q) = %q, want %q", got, s, want)
		}
	}
}

// TestJobRequestPagingKeys: written values are kept, 0 is not replaced by
// the default, and out-of-range values name the key, the range and the
// default.
func TestJobRequestPagingKeys(t *testing.T) {
	load := func(t *testing.T, lines string) (*Config, error) {
		t.Helper()
		base, err := os.ReadFile(filepath.Join("testdata", "minimal.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		file := strings.Replace(string(base), "  token_env: TEST_AZP_TOKEN\n", "  token_env: TEST_AZP_TOKEN\n"+lines, 1)
		path := filepath.Join(t.TempDir(), "paging.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(path, fileEnv)
	}
	cfg, err := load(t, "  max_pages: 1000\n  page_size: 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AzureDevOps.MaxPages != 1000 || cfg.AzureDevOps.PageSize != 1 {
		t.Errorf("max_pages, page_size = %d, %d, want 1000, 1", cfg.AzureDevOps.MaxPages, cfg.AzureDevOps.PageSize)
	}
	_, err = load(t, "  max_pages: 0\n  page_size: 1001\n")
	ps := problemsOf(t, err)
	if got := keysOf(ps); !slices.Equal(got, []string{"azuredevops.max_pages", "azuredevops.page_size"}) {
		t.Fatalf("keys %q", got)
	}
	for i, want := range []string{"between 1 and 1000 (got 0); leave it out for 25", "between 1 and 1000 (got 1001); leave it out for 200"} {
		if !strings.Contains(ps[i].Message, want) {
			t.Errorf("%s: %q does not say %q", ps[i].Key, ps[i].Message, want)
		}
	}
}

// TestValidateBuiltInCode covers a configuration made in Go rather than
// read from a file: Validate applies no defaults, so zero values are reported.
func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{
		AzureDevOps: AzureDevOps{URL: "https://dev.azure.com/contoso", TokenEnv: "TEST_AZP_TOKEN"},
		Webhook:     Webhook{Header: &Header{Name: "X-Agentscaler-Key", ValueEnv: "TEST_WEBHOOK_KEY"}},
		Reconcile:   Reconcile{Interval: time.Minute, Parallelism: 1, CallTimeout: time.Second},
		Pools:       []Pool{{Name: "sim", AzurePool: "Default", Provider: "memory", MaxAgents: 2}},
	}
	err := c.Validate(fileEnv)
	want := []string{"azuredevops.max_pages", "azuredevops.page_size",
		"pools[0].startup_timeout", "pools[0].max_lifetime", "pools[0].failure_backoff", "pools[0].agent_version"}
	if got := keysOf(problemsOf(t, err)); !slices.Equal(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}

	applyDefaults(c, func(string) bool { return false })
	if c.Pools[0].MaxAgents != DefaultMaxAgents {
		t.Errorf("max_agents = %d after defaults with nothing written, want %d", c.Pools[0].MaxAgents, DefaultMaxAgents)
	}
	if err := c.Validate(fileEnv); err != nil {
		t.Errorf("after defaults: %v", err)
	}
}
