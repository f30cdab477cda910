package config

import (
	"fmt"
	"net/url"
	"strings"
)

// GitHub says which organization (or repository) owns the runners of the
// pools whose source is github, and how to authenticate to it.
type GitHub struct {
	// URL is the REST API's base: https://api.github.com when empty, or a
	// GitHub Enterprise Server's https://host/api/v3.
	URL string `yaml:"url"`
	// Org owns the runners (organization-level runners); or Repo,
	// owner/name, for repository-level ones. Exactly one.
	Org  string `yaml:"org"`
	Repo string `yaml:"repo"`
	// Repos are the repositories (owner/name) whose queued runs are listed
	// once per reconcile interval, for jobs whose webhook was lost.
	Repos []string `yaml:"repos"`
	// MaxRuns bounds the queued runs listed per repository (default 20).
	MaxRuns int `yaml:"max_runs"`
	// TokenEnv names the variable holding a fine-grained token; or App.
	TokenEnv string     `yaml:"token_env"`
	App      *GitHubApp `yaml:"app"`
	// RunnerGroupID is the runner group new runners join (default 1, the
	// organization's Default group).
	RunnerGroupID int64 `yaml:"runner_group_id"`
	// WebhookSecretEnv names the variable holding the webhook secret that
	// signs deliveries (X-Hub-Signature-256).
	WebhookSecretEnv string `yaml:"webhook_secret_env"`
}

// GitHubApp is a GitHub App installation: its id, the installation's id
// and the App's private key (PEM), from a variable or a file.
type GitHubApp struct {
	ID             int64  `yaml:"id"`
	InstallationID int64  `yaml:"installation_id"`
	PrivateKeyEnv  string `yaml:"private_key_env"`
	PrivateKeyFile string `yaml:"private_key_file"`
}

// maxGitHubLabels is GitHub's bound on a runner's custom labels.
const maxGitHubLabels = 100

func validGitHubRepo(s string) bool {
	owner, name, ok := strings.Cut(s, "/")
	return ok && owner != "" && name != "" && !strings.ContainsAny(s, " ?#%\\") && !strings.Contains(name, "/")
}

func (v *validator) github(g *GitHub) {
	if g == nil {
		v.add("github", "required when a pool's source is github: set org (or repo), token_env or app, and webhook_secret_env")
		return
	}
	if g.URL != "" {
		if u, err := url.Parse(g.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			v.add("github.url", "must be the REST API's base URL, such as https://api.github.com or https://github.example.com/api/v3")
		}
	}
	switch {
	case (g.Org == "") == (g.Repo == ""):
		v.add("github", "set exactly one of org (organization-level runners) or repo (owner/name, repository-level runners)")
	case g.Repo != "" && !validGitHubRepo(g.Repo):
		v.add("github.repo", "must be owner/name")
	}
	for i, r := range g.Repos {
		if !validGitHubRepo(r) {
			v.add(fmt.Sprintf("github.repos[%d]", i), "must be owner/name")
		}
	}
	if g.MaxRuns < 0 || g.MaxRuns > 100 {
		v.add("github.max_runs", "must be between 1 and 100 (got %d); leave it out for 20", g.MaxRuns)
	}
	if g.RunnerGroupID < 0 {
		v.add("github.runner_group_id", "must be a runner group id (1 is the Default group)")
	}
	switch {
	case g.TokenEnv == "" && g.App == nil:
		v.add("github", "set token_env (the variable holding a token) or app (a GitHub App installation)")
	case g.TokenEnv != "" && g.App != nil:
		v.add("github.app", "token_env is set as well; keep exactly one of token_env or app")
	case g.TokenEnv != "":
		v.env("github.token_env", g.TokenEnv, "a GitHub token")
	default:
		if g.App.ID <= 0 {
			v.add("github.app.id", "required: the GitHub App's id")
		}
		if g.App.InstallationID <= 0 {
			v.add("github.app.installation_id", "required: the App installation's id")
		}
		switch {
		case (g.App.PrivateKeyEnv == "") == (g.App.PrivateKeyFile == ""):
			v.add("github.app", "set exactly one of private_key_env or private_key_file (the App's PEM private key)")
		case g.App.PrivateKeyEnv != "":
			v.env("github.app.private_key_env", g.App.PrivateKeyEnv, "the App's PEM private key")
		}
	}
	v.env("github.webhook_secret_env", g.WebhookSecretEnv, "the webhook secret")
}

// githubPool checks a github pool's labels.
func (v *validator) githubPool(key string, p Pool) {
	if len(p.Labels) > maxGitHubLabels {
		v.add(key+".labels", "at most %d labels", maxGitHubLabels)
	}
	for i, l := range p.Labels {
		if strings.TrimSpace(l) == "" || strings.ContainsAny(l, ", \t\n") || len(l) > 100 {
			v.add(fmt.Sprintf("%s.labels[%d]", key, i), "a label is one word of at most 100 characters, without commas or spaces")
		}
	}
}
