package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

// Bitbucket says how to reach Bitbucket Cloud and how to authenticate
// (docs/bitbucket.md): exactly one of oauth, app_password and token_env.
// Secrets are named by environment variable only.
type Bitbucket struct {
	URL      string `yaml:"url"`       // the API, https://api.bitbucket.org
	TokenURL string `yaml:"token_url"` // OAuth token endpoint, https://bitbucket.org/site/oauth2/access_token
	// OAuth is an OAuth consumer (client credentials).
	OAuth *BitbucketOAuth `yaml:"oauth"`
	// AppPassword is a user name and an app password.
	AppPassword *BitbucketAppPassword `yaml:"app_password"`
	// TokenEnv names the variable holding a bearer token (a workspace or
	// repository access token, or an API token).
	TokenEnv string `yaml:"token_env"`
}

// BitbucketOAuth names the variables holding an OAuth consumer's key and secret.
type BitbucketOAuth struct {
	ClientIDEnv     string `yaml:"client_id_env"`
	ClientSecretEnv string `yaml:"client_secret_env"`
}

// BitbucketAppPassword is a user name and the variable holding its app password.
type BitbucketAppPassword struct {
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
}

// BitbucketPool is a Bitbucket pool's runners: where they live, their
// labels and how often the pool is looked at.
type BitbucketPool struct {
	Workspace  string `yaml:"workspace"`  // the workspace UUID
	Repository string `yaml:"repository"` // a repository UUID, for repository runners
	// Labels are the runners' own labels, next to self.hosted and linux.
	Labels []string `yaml:"labels"`
	// Interval is the pool's reconcile period: the runners' state is the
	// only signal, so it is short (10s to 30s).
	Interval time.Duration `yaml:"interval"`
}

// Bitbucket defaults.
const (
	DefaultBitbucketURL      = bitbucket.DefaultURL
	DefaultBitbucketTokenURL = bitbucket.TokenURL
	DefaultBitbucketInterval = 15 * time.Second
	// MaxBitbucketRunners is Bitbucket's limit of runners per workspace.
	MaxBitbucketRunners = 100
)

var bitbucketIntervalLimit = limit[time.Duration]{10 * time.Second, 30 * time.Second,
	"the runners' state is a Bitbucket pool's only signal, so a longer period leaves a busy runner unreplaced that long, and a shorter one spends Bitbucket's rate limit"}

func (b *Bitbucket) defaults() {
	b.URL = strings.TrimRight(strings.TrimSpace(b.URL), "/")
	if b.URL == "" {
		b.URL = DefaultBitbucketURL
	}
	if b.TokenURL == "" {
		b.TokenURL = DefaultBitbucketTokenURL
	}
}

func (v *validator) bitbucket(b Bitbucket) {
	for key, u := range map[string]string{"bitbucket.url": b.URL, "bitbucket.token_url": b.TokenURL} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil {
			v.add(key, "must be an http(s) URL without credentials, such as %s", map[string]string{"bitbucket.url": DefaultBitbucketURL, "bitbucket.token_url": DefaultBitbucketTokenURL}[key])
		}
	}
	n := 0
	if b.OAuth != nil {
		n++
		v.env("bitbucket.oauth.client_id_env", b.OAuth.ClientIDEnv, "the OAuth consumer key")
		v.env("bitbucket.oauth.client_secret_env", b.OAuth.ClientSecretEnv, "the OAuth consumer secret")
	}
	if b.AppPassword != nil {
		n++
		if b.AppPassword.Username == "" {
			v.add("bitbucket.app_password.username", "required: the Bitbucket user the app password belongs to")
		}
		v.env("bitbucket.app_password.password_env", b.AppPassword.PasswordEnv, "the app password")
	}
	if b.TokenEnv != "" {
		n++
		v.env("bitbucket.token_env", b.TokenEnv, "a Bitbucket access token")
	}
	switch {
	case n == 0:
		v.add("bitbucket", "a pool uses source: bitbucket; set one of bitbucket.oauth (client_id_env, client_secret_env), bitbucket.app_password (username, password_env) or bitbucket.token_env")
	case n > 1:
		v.add("bitbucket", "set only one of oauth, app_password and token_env")
	}
}

func (v *validator) bitbucketPool(key string, p Pool) {
	b := p.Bitbucket
	if b == nil {
		v.add(key+".bitbucket", "required with source: bitbucket: the runners' workspace (its UUID) and labels")
		return
	}
	k := key + ".bitbucket."
	if !guidRE.MatchString(strings.Trim(b.Workspace, "{}")) {
		v.add(k+"workspace", "must be the workspace's UUID, such as {0f9a6c3e-1111-4222-8333-444455556666} (Workspace settings, or the API), not its slug (got %q)", b.Workspace)
	}
	if b.Repository != "" && !guidRE.MatchString(strings.Trim(b.Repository, "{}")) {
		v.add(k+"repository", "must be the repository's UUID for repository runners, or left out for workspace runners (got %q)", b.Repository)
	}
	for i, l := range b.Labels {
		if l == "" || len(l) > 50 || strings.ContainsAny(l, " \t,") || strings.ToLower(l) != l {
			v.add(fmt.Sprintf("%slabels[%d]", k, i), "must be a lowercase label without spaces or commas, at most 50 characters, as runs-on names it (got %q)", l)
		}
	}
	checkLimit(v, k+"interval", b.Interval, bitbucketIntervalLimit)
	if p.MaxAgents > MaxBitbucketRunners {
		v.add(key+".max_agents", "must be at most %d with source: bitbucket: Bitbucket holds at most %d runners per workspace", MaxBitbucketRunners, MaxBitbucketRunners)
	}
	if p.AzurePool != "" {
		v.add(key+".azure_pool", "is an Azure DevOps setting; a bitbucket pool names bitbucket.workspace instead")
	}
	for name := range p.Agent.Env {
		if slices.Contains(bitbucket.ReservedEnv, strings.ToUpper(name)) {
			v.add(key+".agent.env."+name, "is set by the autoscaler for every runner; remove it")
		}
	}
}
