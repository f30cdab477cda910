package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadGitHub(t *testing.T, yaml string, env map[string]string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, func(k string) string { return env[k] })
	return err
}

const githubPools = `
pools:
  - name: gh
    source: github
    labels: [gpu, large]
    provider: memory
    agent: {image: runner:1}
`

func TestGitHubConfig(t *testing.T) {
	env := map[string]string{"GH_TOKEN": "t", "GH_HOOK": "s", "GH_KEY": "pem"}
	ok := `
github:
  org: acme
  repos: [acme/app, acme/lib]
  token_env: GH_TOKEN
  webhook_secret_env: GH_HOOK
` + githubPools
	if err := loadGitHub(t, ok, env); err != nil {
		t.Fatalf("valid: %v", err)
	}
	// A github pool needs no Azure DevOps settings, and the reverse: one
	// process serves a pool of each.
	both := ok + `  - name: ado
    azure_pool: Default
    provider: memory
    agent: {image: agent:1}
azuredevops: {url: https://dev.azure.com/acme, token_env: GH_TOKEN}
webhook: {header: {name: X-Key, value_env: GH_HOOK}}
`
	if err := loadGitHub(t, both, env); err != nil {
		t.Fatalf("a pool of each: %v", err)
	}
	// On Kubernetes a runner needs no token Secret, and must not get the
	// Azure DevOps one.
	onKube := strings.Replace(ok, "provider: memory", "provider: kubernetes\n    kubernetes: {namespace: runners}", 1)
	if err := loadGitHub(t, onKube, env); err != nil {
		t.Fatalf("a github pool on Kubernetes without token_secret: %v", err)
	}
	withToken := strings.Replace(onKube, "{namespace: runners}", "{namespace: runners, token_secret: azp-token}", 1)
	if err := loadGitHub(t, withToken, env); err == nil || !strings.Contains(err.Error(), "pools[0].kubernetes.token_secret") {
		t.Fatalf("a github pool on Kubernetes with the Azure DevOps token Secret: %v, want pools[0].kubernetes.token_secret refused", err)
	}
	withKey := strings.Replace(onKube, "{namespace: runners}", "{namespace: runners, token_key: pat}", 1)
	if err := loadGitHub(t, withKey, env); err == nil || !strings.Contains(err.Error(), "pools[0].kubernetes.token_key") {
		t.Fatalf("a github pool on Kubernetes with a token_key: %v, want it refused", err)
	}
	for name, c := range map[string]struct{ yaml, want string }{
		"no section":     {githubPools, "github: required"},
		"org and repo":   {"github: {org: a, repo: a/b, token_env: GH_TOKEN, webhook_secret_env: GH_HOOK}\n" + githubPools, "exactly one of org"},
		"bad repo":       {"github: {repo: ab, token_env: GH_TOKEN, webhook_secret_env: GH_HOOK}\n" + githubPools, "github.repo"},
		"bad repos":      {"github: {org: a, repos: [x], token_env: GH_TOKEN, webhook_secret_env: GH_HOOK}\n" + githubPools, "github.repos[0]"},
		"no auth":        {"github: {org: a, webhook_secret_env: GH_HOOK}\n" + githubPools, "token_env"},
		"both auths":     {"github: {org: a, token_env: GH_TOKEN, app: {id: 1, installation_id: 2, private_key_env: GH_KEY}, webhook_secret_env: GH_HOOK}\n" + githubPools, "github.app"},
		"app no key":     {"github: {org: a, app: {id: 1, installation_id: 2}, webhook_secret_env: GH_HOOK}\n" + githubPools, "private_key_env or private_key_file"},
		"app no ids":     {"github: {org: a, app: {private_key_env: GH_KEY}, webhook_secret_env: GH_HOOK}\n" + githubPools, "github.app.installation_id"},
		"unset secret":   {"github: {org: a, token_env: GH_TOKEN, webhook_secret_env: NOPE}\n" + githubPools, "github.webhook_secret_env"},
		"no secret":      {"github: {org: a, token_env: GH_TOKEN}\n" + githubPools, "github.webhook_secret_env"},
		"bad url":        {"github: {url: 'ftp://x', org: a, token_env: GH_TOKEN, webhook_secret_env: GH_HOOK}\n" + githubPools, "github.url"},
		"max runs":       {"github: {org: a, max_runs: 500, token_env: GH_TOKEN, webhook_secret_env: GH_HOOK}\n" + githubPools, "github.max_runs"},
		"label w/ comma": {"github: {org: a, token_env: GH_TOKEN, webhook_secret_env: GH_HOOK}\n" + strings.Replace(githubPools, "[gpu, large]", "['a,b']", 1), "labels[0]"},
		"bad source":     {strings.Replace(githubPools, "source: github", "source: gitlab", 1), "source"},
	} {
		err := loadGitHub(t, c.yaml, env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a problem mentioning %q", name, err, c.want)
		}
	}
}
