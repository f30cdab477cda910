package config

import (
	"slices"
	"strings"
	"testing"
)

// dockerConfig is a valid file but for its pool's docker section.
func dockerConfig(section string) []byte {
	return []byte(`
azuredevops: {url: https://dev.azure.com/contoso, token_env: TEST_AZP_TOKEN}
webhook: {basic_auth: {username: azdo, password_env: TEST_WEBHOOK_PASSWORD}}
pools:
  - name: linux
    azure_pool: Default
    agent: {image: azp-agent:linux}
    docker:
` + section)
}

var dockerEnv = env(map[string]string{
	"TEST_AZP_TOKEN":        "pat-value-7c1d",
	"TEST_WEBHOOK_PASSWORD": "hook-password-3e8a",
	"TEST_REGISTRY_USER":    "ci-bot",
	"TEST_REGISTRY_PASS":    "registry-secret-91ab",
})

func TestDockerSection(t *testing.T) {
	cfg, err := parse(dockerConfig(`
      host: tcp://docker.example.com:2376
      tls_cert_path: /etc/agentscaler/docker-certs
      network: agents
      pull: always
      registry: {username_env: TEST_REGISTRY_USER, password_env: TEST_REGISTRY_PASS}
      mounts: [/var/run/docker.sock:/var/run/docker.sock, "cache:/cache:rw", "/etc/ssl/certs:/etc/ssl/certs:ro"]
      labels: {com.example.team: platform}
      token_file: true
      mtu: 1450
      prepull: true
`), dockerEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Pools[0].Docker
	if d.Host != "tcp://docker.example.com:2376" || d.TLSCertPath != "/etc/agentscaler/docker-certs" || d.Network != "agents" ||
		d.Pull != "always" || !d.SecretsAsFiles() || d.MTU != 1450 || !d.Prepull || d.Labels["com.example.team"] != "platform" {
		t.Errorf("docker = %+v", *d)
	}
	if d.Registry == nil || d.Registry.UsernameEnv != "TEST_REGISTRY_USER" || d.Registry.PasswordEnv != "TEST_REGISTRY_PASS" {
		t.Errorf("registry = %+v", d.Registry)
	}
	mounts, err := d.ParsedMounts()
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"},
		{Source: "cache", Target: "/cache"},
		{Source: "/etc/ssl/certs", Target: "/etc/ssl/certs", ReadOnly: true},
	}
	if !slices.Equal(mounts, want) {
		t.Errorf("mounts = %+v, want %+v", mounts, want)
	}
	if !mounts[0].Bind() || mounts[1].Bind() {
		t.Errorf("Bind() of %q and %q = %v, %v; want a host path and a volume", mounts[0].Source, mounts[1].Source, mounts[0].Bind(), mounts[1].Bind())
	}
}

func TestDockerDefaults(t *testing.T) {
	cfg, err := parse(dockerConfig("      {}\n"), dockerEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Pools[0].Docker
	if d.Network != "host" || d.Pull != "missing" || d.Host != "" || !d.SecretsAsFiles() || d.MTU != 0 || d.Prepull || d.Registry != nil || len(d.Mounts) != 0 {
		t.Errorf("docker = %+v, want network host, pull missing and the rest unset", *d)
	}
}

func TestDockerProblems(t *testing.T) {
	tests := []struct {
		name    string
		section string
		says    map[string]string // every problem's key -> a phrase its message holds
	}{
		{"mounts", `
      mounts: ["/data", "/data:", "/data:cache", ":/x", "/a:/b:rx", "bad name:/x", "/a:/", "/c:/same", "/d:/same/"]
`, map[string]string{
			"pools[0].docker.mounts[0]": "source:target",
			"pools[0].docker.mounts[1]": "the target is empty",
			"pools[0].docker.mounts[2]": "target must be an absolute path",
			"pools[0].docker.mounts[3]": "the source is empty",
			"pools[0].docker.mounts[4]": "must be ro or rw",
			"pools[0].docker.mounts[5]": "absolute host path or a volume name",
			"pools[0].docker.mounts[6]": "root directory",
			"pools[0].docker.mounts[8]": "as mounts[7] does",
		}},
		{"labels", `
      labels: {agentscaler.io/pool: other, AgentScaler.io/x: y, "": z, com.example/ok: fine}
`, map[string]string{
			"pools[0].docker.labels":                     "empty key",
			"pools[0].docker.labels.AgentScaler.io/x":    "reserved",
			"pools[0].docker.labels.agentscaler.io/pool": "use your own prefix",
		}},
		{"mtu low", "      mtu: 100\n", map[string]string{"pools[0].docker.mtu": "between 576 and 9000 (got 100)"}},
		{"mtu high", "      mtu: 9001\n", map[string]string{"pools[0].docker.mtu": "between 576 and 9000"}},
		{"username without password", "      registry: {username_env: TEST_REGISTRY_USER}\n",
			map[string]string{"pools[0].docker.registry.password_env": "required with username_env"}},
		{"password without username", "      registry: {password_env: TEST_REGISTRY_PASS}\n",
			map[string]string{"pools[0].docker.registry.username_env": "required with password_env"}},
		{"registry both ways", "      registry: {config_file: /root/.docker/config.json, username_env: TEST_REGISTRY_USER, password_env: TEST_REGISTRY_PASS}\n",
			map[string]string{"pools[0].docker.registry.config_file": "keep either config_file"}},
		{"registry empty", "      registry: {}\n", map[string]string{"pools[0].docker.registry": "set username_env and password_env, or config_file"}},
		{"registry variables unset", "      registry: {username_env: UNSET_USER, password_env: UNSET_PASS}\n", map[string]string{
			"pools[0].docker.registry.username_env": "UNSET_USER is not set",
			"pools[0].docker.registry.password_env": "UNSET_PASS is not set",
		}},
		{"registry value inline", "      registry: {username_env: ci-bot, password_env: TEST_REGISTRY_PASS}\n",
			map[string]string{"pools[0].docker.registry.username_env": "not the value itself"}},
		{"prepull never", "      {pull: never, prepull: true}\n", map[string]string{"pools[0].docker.prepull": "pull is never"}},
		{"network", "      network: container:other\n", map[string]string{"pools[0].docker.network": "host, none, bridge or the name of a user network"}},
		{"host ssh", "      host: ssh://me@build-host\n", map[string]string{"pools[0].docker.host": "ssh:// is not supported"}},
		{"host no scheme", "      host: /var/run/docker.sock\n", map[string]string{"pools[0].docker.host": "unix:///var/run/docker.sock"}},
		{"host scheme", "      host: http://docker:2375\n", map[string]string{"pools[0].docker.host": "unix://, tcp:// or npipe:// (got http://)"}},
		{"tls for a socket", "      {host: unix:///var/run/docker.sock, tls_cert_path: /certs}\n",
			map[string]string{"pools[0].docker.tls_cert_path": "tcp:// host only"}},
		{"tls without host", "      tls_cert_path: /certs\n", map[string]string{"pools[0].docker.tls_cert_path": "set host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(dockerConfig(tt.section), dockerEnv)
			ps := problemsOf(t, err)
			got := keysOf(ps)
			want := make([]string, 0, len(tt.says))
			for k := range tt.says {
				want = append(want, k)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("problem keys:\n got %q\nwant %q\nerror:\n%v", got, want, err)
			}
			for _, p := range ps {
				if !strings.Contains(p.Message, tt.says[p.Key]) {
					t.Errorf("%s: message %q does not say %q", p.Key, p.Message, tt.says[p.Key])
				}
				if strings.Contains(p.Message, "registry-secret-91ab") {
					t.Errorf("%s: message reveals the registry password", p.Key)
				}
			}
		})
	}
}

func TestParseMount(t *testing.T) {
	good := map[string]Mount{
		"/var/run/docker.sock:/var/run/docker.sock": {Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"},
		"/srv/cache:/cache:ro":                      {Source: "/srv/cache", Target: "/cache", ReadOnly: true},
		"work_1:/azp/_work:rw":                      {Source: "work_1", Target: "/azp/_work"},
	}
	for s, want := range good {
		if got, err := ParseMount(s); err != nil || got != want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "/a", "/a:/b:ro:x", "a b:/c", "/a:b", "/a:/b:RO"} {
		if m, err := ParseMount(s); err == nil {
			t.Errorf("ParseMount(%q) = %+v; want an error", s, m)
		}
	}
}
