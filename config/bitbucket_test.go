package config

import "testing"

var bitbucketEnv = env(map[string]string{
	"BB_CLIENT_ID":     "consumer-key-19",
	"BB_CLIENT_SECRET": "consumer-secret-8f2e",
	"BB_TOKEN":         "bb-token-77aa",
})

const bbWorkspace = "{0f9a6c3e-1111-4222-8333-444455556666}"

func TestBitbucketSection(t *testing.T) {
	cfg, err := parse([]byte(`
bitbucket:
  oauth: {client_id_env: BB_CLIENT_ID, client_secret_env: BB_CLIENT_SECRET}
pools:
  - name: bb
    source: bitbucket
    min_idle: 1
    agent: {image: runner:test}
    bitbucket: {workspace: "`+bbWorkspace+`", labels: [docker-heavy]}
    docker: {docker_socket: true, container_logs: true, shared_dir: /tmp/runners}
`), bitbucketEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Bitbucket; b.URL != DefaultBitbucketURL || b.TokenURL != DefaultBitbucketTokenURL {
		t.Errorf("defaults: %+v", b)
	}
	p := cfg.Pools[0]
	if p.System() != "bitbucket" || p.Bitbucket.Interval != DefaultBitbucketInterval {
		t.Errorf("pool: %s, interval %v", p.System(), p.Bitbucket.Interval)
	}
	mounts, err := p.Docker.ParsedMounts()
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{{"/var/run/docker.sock", "/var/run/docker.sock", false}, {"/var/lib/docker/containers", "/var/lib/docker/containers", true}, {"/tmp/runners", "/tmp/runners", false}}
	if len(mounts) != len(want) {
		t.Fatalf("mounts %+v", mounts)
	}
	for i := range want {
		if mounts[i] != want[i] {
			t.Errorf("mount %d: %+v, want %+v", i, mounts[i], want[i])
		}
	}
	// No Azure DevOps settings are needed when no pool uses it.
	if cfg.AzureDevOps.URL != "" {
		t.Errorf("azuredevops.url = %q", cfg.AzureDevOps.URL)
	}
}

func TestBitbucketSocketOfAPrivateEngine(t *testing.T) {
	d := &Docker{Host: "unix:///run/private/docker.sock", DockerSocket: true}
	m := d.optionMounts()
	if len(m) != 1 || m[0].Source != "/run/private/docker.sock" || m[0].Target != DockerSocketPath {
		t.Errorf("mounts %+v", m)
	}
}

func TestBitbucketProblems(t *testing.T) {
	tests := []struct {
		name, file string
		says       map[string]string
	}{
		{"no auth", `
pools:
  - {name: bb, source: bitbucket, agent: {image: r}, bitbucket: {workspace: "` + bbWorkspace + `"}}
`, map[string]string{"bitbucket": "set one of bitbucket.oauth"}},
		{"two auths", `
bitbucket: {token_env: BB_TOKEN, app_password: {username: me, password_env: BB_TOKEN}}
pools:
  - {name: bb, source: bitbucket, agent: {image: r}, bitbucket: {workspace: "` + bbWorkspace + `"}}
`, map[string]string{"bitbucket": "only one of"}},
		{"secret in place of its variable", `
bitbucket: {oauth: {client_id_env: BB_CLIENT_ID, client_secret_env: consumer-secret-8f2e}}
pools:
  - {name: bb, source: bitbucket, agent: {image: r}, bitbucket: {workspace: "` + bbWorkspace + `"}}
`, map[string]string{"bitbucket.oauth.client_secret_env": "must be the name of an environment variable"}},
		{"no section", `
bitbucket: {token_env: BB_TOKEN}
pools:
  - {name: bb, source: bitbucket, agent: {image: r}}
`, map[string]string{"pools[0].bitbucket": "required with source: bitbucket"}},
		{"bad pool", `
bitbucket: {token_env: BB_TOKEN, url: "ftp://x"}
pools:
  - name: bb
    source: bitbucket
    azure_pool: Default
    max_agents: 150
    agent: {image: r, env: {RUNNER_UUID: x}}
    bitbucket: {workspace: my-team, repository: repo, labels: ["Big Box"], interval: 5s}
    docker: {host: "tcp://d:2376", docker_socket: true, shared_dir: "tmp", mounts: ["/x:/var/run/docker.sock"]}
`, map[string]string{
			"bitbucket.url":                  "http(s) URL",
			"pools[0].bitbucket.workspace":   "workspace's UUID",
			"pools[0].bitbucket.repository":  "repository's UUID",
			"pools[0].bitbucket.labels[0]":   "lowercase label",
			"pools[0].bitbucket.interval":    "between 10s and 30s (got 5s)",
			"pools[0].max_agents":            "at most 100",
			"pools[0].azure_pool":            "Azure DevOps setting",
			"pools[0].agent.env.RUNNER_UUID": "set by the autoscaler",
			"pools[0].docker.docker_socket":  "unix://",
			"pools[0].docker.shared_dir":     "absolute host path",
			"pools[0].docker.mounts":         "docker_socket, container_logs or shared_dir",
		}},
		{"bitbucket section on an Azure DevOps pool", `
azuredevops: {url: https://dev.azure.com/contoso, token_env: BB_TOKEN}
webhook: {header: {name: X-Key, value_env: BB_TOKEN}}
pools:
  - {name: ado, azure_pool: Default, agent: {image: r}, bitbucket: {workspace: "` + bbWorkspace + `"}}
`, map[string]string{"pools[0].bitbucket": "source is azuredevops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(tt.file), bitbucketEnv)
			saysProblems(t, err, tt.says, "consumer-secret-8f2e", "bb-token-77aa")
		})
	}
}
