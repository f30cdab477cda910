package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/standby"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key     string // as a user writes it: pools[1].max_agents, or a variable name in environment mode
	Message string // what is wrong and how to fix it; never a secret value
	Line    int    // line in the file, 0 when unknown or not from a file
}

func (p Problem) String() string {
	s := p.Key + ": " + p.Message
	if p.Line > 0 {
		s += fmt.Sprintf(" (line %d)", p.Line)
	}
	return s
}

// ValidationError holds every problem found in a configuration.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Validate checks a configuration whose defaults are already applied (Load
// and FromEnv do both). getenv resolves the variables *_env keys name; nil
// means os.Getenv. It returns nil or a *ValidationError.
func (c *Config) Validate(getenv func(string) string) error {
	if ps := c.validate(orEnv(getenv)); len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// Uses reports whether a pool serves the CI system source.
func (c *Config) Uses(source string) bool {
	return slices.ContainsFunc(c.Pools, func(p Pool) bool { return p.System() == source })
}

// Pool returns the pool with the given name.
func (c *Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}

// Names and values the rules below accept.
var (
	// A pool name prefixes instance names, <pool>-r<requestId>: 40 characters
	// leave room for any request id within the 63 of a DNS label.
	poolNameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	maxPoolName   = 40
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerNameRE  = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	guidRE        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	versionRE     = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	dnsLabelRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	dnsSubdomRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
	providerNames = []string{"docker", "aci", "kubernetes", "memory"}
	sourceNames   = []string{ci.AzureDevOps, ci.Bitbucket, ci.GitHub}
	pullPolicies  = []string{"always", "missing", "never"}
	osTypes       = []string{"Linux", "Windows"}
	secretEnvKeys = []string{"TOKEN", "SECRET", "PASSWORD"}
	// maxJobRequestPaging bounds max_pages and page_size: 1,000 pages of
	// 1,000 requests is a million requests per pool and reconcile.
	maxJobRequestPaging = 1000
)

// A variable name is repeated in a message only in the conventional shape
// (upper case, digits, _, not overlong): what a *_env key holds may be the
// secret itself, pasted where its variable's name belongs, and a short
// secret is no longer than a name.
var echoEnvNameRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,63}$`)

type validator struct {
	getenv   func(string) string
	problems []Problem
}

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(getenv func(string) string) []Problem {
	v := &validator{getenv: getenv}
	if len(c.Pools) == 0 || c.Uses(ci.AzureDevOps) {
		v.azureDevOps(c.AzureDevOps)
		v.webhook(c.Webhook)
	}
	if c.Uses(ci.Bitbucket) {
		v.bitbucket(c.Bitbucket)
	}
	if c.Uses(ci.GitHub) {
		v.github(c.GitHub)
	}
	v.reconcile(c.Reconcile)
	if c.Metrics.Push != nil {
		v.push(c.Metrics.Push)
	}
	if len(c.Pools) == 0 {
		v.add("pools", "at least one pool is required; add a pool under pools: with name, azure_pool, provider and agent.image")
	}
	firstUse := map[string]int{}
	azureUse := map[string]int{}
	for i, p := range c.Pools {
		key := fmt.Sprintf("pools[%d]", i)
		v.pool(key, p)
		// Each pool starts an agent for every job it can serve, so two on
		// one Azure DevOps pool (whose names ignore case) start two per job.
		if azure := strings.ToLower(strings.TrimSpace(p.AzurePool)); azure != "" && p.System() == ci.AzureDevOps {
			if j, dup := azureUse[azure]; dup {
				v.add(key+".azure_pool", "%q is also the Azure DevOps pool of pools[%d]; pools %q and %q would each start an agent for every job queued there, two agents per job: give each its own Azure DevOps pool, or make them one pool",
					p.AzurePool, j, c.Pools[j].Name, p.Name)
			} else {
				azureUse[azure] = i
			}
		}
		if p.Name == "" {
			continue
		}
		if j, dup := firstUse[p.Name]; dup {
			v.add(key+".name", "%q is already the name of pools[%d]; pool names must be unique", p.Name, j)
		} else {
			firstUse[p.Name] = i
		}
	}
	v.tokenSecretNames(c.Pools)
	return v.problems
}

// instanceName splits a name like an instance's, <pool>-<letter><digits>,
// into its pool.
var instanceName = regexp.MustCompile(`^(.+)-[a-z][0-9]+$`)

// tokenSecretNames refuses a token Secret named like an instance of a
// kubernetes pool in its namespace: the provider writes each instance's
// own Secret under the instance's name, and would overwrite the token.
func (v *validator) tokenSecretNames(pools []Pool) {
	for i, p := range pools {
		if p.Provider != "kubernetes" || p.Kubernetes == nil || p.Kubernetes.TokenSecret == "" {
			continue
		}
		m := instanceName.FindStringSubmatch(p.Kubernetes.TokenSecret)
		if m == nil {
			continue
		}
		for _, q := range pools {
			if q.Name == m[1] && q.Provider == "kubernetes" && q.Kubernetes != nil && q.Kubernetes.Namespace == p.Kubernetes.Namespace {
				v.add(fmt.Sprintf("pools[%d].kubernetes.token_secret", i), "%q is named like an agent of pool %s in namespace %s, whose Secrets the provider writes; rename the Secret",
					p.Kubernetes.TokenSecret, q.Name, q.Kubernetes.Namespace)
			}
		}
	}
}

// env checks that key names a variable that is set, without ever reading
// the value into a message.
func (v *validator) env(key, name, holds string) {
	switch {
	case name == "":
		v.add(key, "required: name the environment variable that holds %s", holds)
	case !envNameRE.MatchString(name):
		v.add(key, "must be the name of an environment variable (letters, digits, _) that holds %s, not the value itself", holds)
	case v.getenv(name) != "":
	case !echoEnvNameRE.MatchString(name):
		v.add(key, "names no set environment variable; if this is %s itself, move it into a variable and name that variable here", holds)
	default:
		v.add(key, "environment variable %s is not set or is empty; export it with %s", name, holds)
	}
}

func (v *validator) azureDevOps(a AzureDevOps) {
	v.orgURL("azuredevops.url", a.URL)
	if a.MaxPages < 1 || a.MaxPages > maxJobRequestPaging {
		v.add("azuredevops.max_pages", "must be between 1 and %d (got %d); leave it out for %d", maxJobRequestPaging, a.MaxPages, DefaultMaxPages)
	}
	if a.PageSize < 1 || a.PageSize > maxJobRequestPaging {
		v.add("azuredevops.page_size", "must be between 1 and %d (got %d); leave it out for %d", maxJobRequestPaging, a.PageSize, DefaultPageSize)
	}
	switch {
	case a.TokenEnv == "" && a.Entra == nil:
		v.add("azuredevops", "set token_env (the variable holding a PAT) or entra (an Entra ID identity)")
	case a.TokenEnv != "" && a.Entra != nil:
		v.add("azuredevops.entra", "token_env is set as well; keep exactly one of token_env or entra")
	case a.TokenEnv != "":
		v.env("azuredevops.token_env", a.TokenEnv, "a personal access token")
	default:
		v.azureIdentity("azuredevops.entra.", a.Entra)
	}
}

// orgURL accepts an organization or collection URL and nothing longer:
// https://dev.azure.com/org, https://org.visualstudio.com, or an Azure DevOps
// Server collection such as https://server/tfs/DefaultCollection. Messages
// never repeat the URL: it may carry credentials.
func (v *validator) orgURL(key, raw string) {
	if raw == "" {
		v.add(key, "required: the organization URL, such as https://dev.azure.com/contoso")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		v.add(key, "must be an absolute URL such as https://dev.azure.com/contoso")
		return
	}
	if u.User != nil {
		v.add(key, "must not carry credentials; put the token in the variable token_env names")
		return
	}
	host := strings.ToLower(u.Hostname())
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback:
	case u.Scheme == "http":
		v.add(key, "must use https; http is accepted only for loopback hosts (127.0.0.1, ::1, localhost), for local emulators")
		return
	default:
		v.add(key, "must use https, such as https://dev.azure.com/contoso")
		return
	}
	if u.RawQuery != "" || u.Fragment != "" {
		v.add(key, "must not have a query or fragment; give the organization URL only")
		return
	}
	var segs []string
	if p := strings.Trim(u.Path, "/"); p != "" {
		segs = strings.Split(p, "/")
	}
	for _, s := range segs {
		if strings.HasPrefix(s, "_") || s == "" {
			v.add(key, "has a path beyond the organization (%q); give the organization URL only, such as https://dev.azure.com/contoso", u.Path)
			return
		}
	}
	switch {
	case host == "dev.azure.com" && len(segs) == 0:
		v.add(key, "is missing the organization: https://dev.azure.com/<organization>")
	case host == "dev.azure.com" && len(segs) > 1:
		v.add(key, "has a path beyond the organization (%q); use https://dev.azure.com/%s", u.Path, segs[0])
	case strings.HasSuffix(host, ".visualstudio.com") && len(segs) > 0:
		v.add(key, "has a path beyond the organization (%q); use https://%s", u.Path, host)
	case host == "dev.azure.com" || strings.HasSuffix(host, ".visualstudio.com"):
	case len(segs) > 2:
		v.add(key, "has a path beyond the collection (%q); use the collection URL, such as https://server/tfs/DefaultCollection", u.Path)
	case len(segs) == 0 && !loopback:
		v.add(key, "is missing the collection: use the collection URL, such as https://server/tfs/DefaultCollection")
	}
}

func (v *validator) webhook(w Webhook) {
	switch {
	case w.BasicAuth == nil && w.Header == nil:
		v.add("webhook", "an unauthenticated webhook is refused; set basic_auth {username, password_env} or header {name, value_env}")
	case w.BasicAuth != nil && w.Header != nil:
		v.add("webhook.header", "basic_auth is set as well; keep exactly one of basic_auth or header")
	case w.BasicAuth != nil:
		if w.BasicAuth.Username == "" {
			v.add("webhook.basic_auth.username", "required: the user name entered in the Azure DevOps service hook")
		} else if strings.Contains(w.BasicAuth.Username, ":") {
			v.add("webhook.basic_auth.username", "must not contain ':' (basic auth separates user and password with it)")
		}
		v.env("webhook.basic_auth.password_env", w.BasicAuth.PasswordEnv, "the webhook password")
	default:
		if w.Header.Name == "" {
			v.add("webhook.header.name", "required: the header name, such as X-Agentscaler-Key")
		} else if !headerNameRE.MatchString(w.Header.Name) {
			v.add("webhook.header.name", "must be a valid HTTP header name (letters, digits, '-'), such as X-Agentscaler-Key")
		}
		v.env("webhook.header.value_env", w.Header.ValueEnv, "the shared header value")
	}
}

// limit is the sane range of a duration or number, and why: outside it a
// value is a slip (1ns for 1m, a count in the millions) that the service
// would run with, spinning through the Azure DevOps rate limit or failing
// every create.
type limit[T int | time.Duration] struct {
	min, max T
	why      string
}

// The limits, all in one place.
var (
	intervalLimit = limit[time.Duration]{time.Second, time.Hour,
		"a shorter timer spends the Azure DevOps rate limit on polling; a longer one leaves a job whose service hook was lost waiting that long"}
	callTimeoutLimit = limit[time.Duration]{time.Second, 10 * time.Minute,
		"a call to Azure DevOps or a provider that takes longer is hung, and a shorter deadline fails calls that are merely slow"}
	parallelismLimit = limit[int]{1, 100,
		"more concurrent calls per pool only meet the providers' and Azure DevOps' rate limits"}
	maxAgentsLimit = limit[int]{1, 10000,
		"more agents than that in one pool is a typo, and each costs a container"}
	startupTimeoutLimit = limit[time.Duration]{30 * time.Second, 2 * time.Hour,
		"an agent needs tens of seconds to start and register, and even a large Windows image is pulled well within two hours"}
	maxLifetimeLimit = limit[time.Duration]{time.Minute, 30 * 24 * time.Hour,
		"a shorter lifetime recycles warm agents faster than they start; a longer one keeps an agent of an old image for over a month"}
	failureBackoffLimit = limit[time.Duration]{10 * time.Second, 24 * time.Hour,
		"a shorter back-off recreates a broken agent in a loop; a longer one keeps failed instances, and their cost, for days"}
)

// Agent resources: 0 leaves the provider's default. The floors are
// Docker's smallest CPU share and about what the agent needs to start; the
// ceilings exceed any machine an agent runs on, and keep nano-CPUs and
// bytes within 64 bits.
const (
	minCPU      = 0.01
	maxCPU      = 1024
	minMemoryMB = 128
	maxMemoryMB = 4 << 20 // 4 TiB
)

func checkLimit[T int | time.Duration](v *validator, key string, got T, l limit[T]) {
	if got < l.min || got > l.max {
		v.add(key, "must be between %s and %s (got %s): %s", show(l.min), show(l.max), show(got), l.why)
	}
}

// show writes a limit or value as a user writes it: 1h rather than 1h0m0s.
func show(x any) string {
	if d, ok := x.(time.Duration); ok {
		return ShortDuration(d)
	}
	return fmt.Sprint(x)
}

// ShortDuration writes d as a user writes it in a configuration: without
// the zero units time.Duration.String keeps ("1m", not "1m0s").
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (v *validator) reconcile(r Reconcile) {
	checkLimit(v, "reconcile.interval", r.Interval, intervalLimit)
	checkLimit(v, "reconcile.parallelism", r.Parallelism, parallelismLimit)
	checkLimit(v, "reconcile.call_timeout", r.CallTimeout, callTimeoutLimit)
}

func (v *validator) pool(key string, p Pool) {
	v.policy(key, p)
	v.oneOf(key+".source", p.System(), sourceNames)
	if p.AzurePool == "" && p.System() == ci.AzureDevOps {
		v.add(key+".azure_pool", "required: the name of the Azure DevOps agent pool")
	}
	if p.System() == ci.Bitbucket {
		v.bitbucketPool(key, p)
	}
	if p.System() != ci.Bitbucket && p.Bitbucket != nil {
		v.add(key+".bitbucket", "is set, but source is %s; remove it or set source: bitbucket", p.System())
	}
	if p.System() == ci.GitHub {
		v.githubPool(key, p)
	}
	v.oneOf(key+".provider", p.Provider, providerNames)
	v.agent(key+".agent", p.Agent, p.Provider)
	v.providerSections(key, p)
}

// ValidatePolicy checks what decides a pool's capacity (name, max_agents,
// min_idle, the timeouts, agent_version, capabilities) by the rules Validate
// applies to each pool, for a pool built outside a file: simulate's.
func ValidatePolicy(p Pool) error {
	v := &validator{getenv: orEnv(nil)}
	v.policy("pool", p)
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

// policy checks the pool's capacity settings.
func (v *validator) policy(key string, p Pool) {
	switch {
	case p.Name == "":
		v.add(key+".name", "required: a short lowercase name such as linux; it prefixes agent names")
	case len(p.Name) > maxPoolName:
		v.add(key+".name", "must be at most %d characters (got %d), so agent names stay within 63", maxPoolName, len(p.Name))
	case !poolNameRE.MatchString(p.Name):
		v.add(key+".name", "must be lowercase letters, digits and '-', starting and ending with a letter or digit (got %q)", p.Name)
	}
	checkLimit(v, key+".max_agents", p.MaxAgents, maxAgentsLimit)
	if p.MinIdle < 0 {
		v.add(key+".min_idle", "must be 0 or more (got %d)", p.MinIdle)
	} else if p.MinIdle > p.MaxAgents && p.MaxAgents >= 1 {
		v.add(key+".min_idle", "must not exceed max_agents (got %d, max_agents %d)", p.MinIdle, p.MaxAgents)
	}
	v.schedules(key, p)
	checkLimit(v, key+".startup_timeout", p.StartupTimeout, startupTimeoutLimit)
	checkLimit(v, key+".max_lifetime", p.MaxLifetime, maxLifetimeLimit)
	checkLimit(v, key+".failure_backoff", p.FailureBackoff, failureBackoffLimit)
	if !versionRE.MatchString(p.AgentVersion) {
		v.add(key+".agent_version", "must be a version such as %s (got %q)", DefaultAgentVersion, p.AgentVersion)
	}
	if len(p.Capabilities) > MaxEntries {
		v.add(key+".capabilities", "holds %d capabilities; at most %d are accepted: list those job demands ask for", len(p.Capabilities), MaxEntries)
	}
	for name := range p.Capabilities {
		if strings.TrimSpace(name) == "" {
			v.add(key+".capabilities", "a capability has an empty name")
		}
	}
}

// maxSchedules bounds a pool's standby schedule: a working week of shifts
// takes a handful of entries, and each is evaluated at every pass.
const maxSchedules = 50

// unsetMinIdle marks a schedule entry written without min_idle (see
// applyDefaults), so that validation asks for it rather than keeping no
// warm agent without a word.
const unsetMinIdle = math.MinInt

// schedules checks a pool's standby schedule: its time zone, each cron
// expression, and each entry's min_idle, 0 to max_agents.
func (v *validator) schedules(key string, p Pool) {
	if len(p.Schedules) == 0 {
		if p.Timezone != "" {
			v.add(key+".timezone", `is set, but the pool has no schedules; remove it, or add schedules such as [{cron: "0 8 * * 1-5", min_idle: 3}, {cron: "0 19 * * 1-5", min_idle: 0}]`)
		}
		return
	}
	if len(p.Schedules) > maxSchedules {
		v.add(key+".schedules", "holds %d entries; at most %d are accepted: a working week of shifts takes a handful, one per change of min_idle", len(p.Schedules), maxSchedules)
		return
	}
	loc, err := standby.Location(p.Timezone)
	if err != nil {
		v.add(key+".timezone", "%v", err)
		loc = time.UTC
	}
	first := map[string]int{}
	for j, e := range p.Schedules {
		k := fmt.Sprintf("%s.schedules[%d]", key, j)
		if _, err := standby.Parse(e.Cron, loc); err != nil {
			v.add(k+".cron", "%q: %v", e.Cron, err)
		} else if norm := strings.Join(strings.Fields(e.Cron), " "); first[norm] > 0 {
			v.add(k+".cron", "%q is also the expression of schedules[%d], and the later entry wins when both fire; keep one", e.Cron, first[norm]-1)
		} else {
			first[norm] = j + 1
		}
		switch {
		case e.MinIdle == unsetMinIdle:
			v.add(k+".min_idle", "required: the warm agents to keep from when cron fires, 0 to max_agents (%d)", p.MaxAgents)
		case e.MinIdle < 0 || e.MinIdle > p.MaxAgents:
			v.add(k+".min_idle", "must be between 0 and max_agents, %d (got %d)", p.MaxAgents, e.MinIdle)
		}
	}
}

func (v *validator) agent(key string, a Agent, provider string) {
	if a.Image == "" && provider != "memory" {
		v.add(key+".image", "required: the agent image, such as azp-agent:linux")
	}
	// Written this way round, NaN (.nan in YAML) is refused too.
	if !(a.CPU == 0 || a.CPU >= minCPU && a.CPU <= maxCPU) {
		v.add(key+".cpu", "must be 0 (the provider's default) or between %g and %d cores (got %g)", minCPU, maxCPU, a.CPU)
	}
	if mb, err := a.MemoryMB(); err != nil {
		v.add(key+".memory", "must be a quantity such as 512Mi or 2Gi (units Ki, Mi, Gi, K, M, G, or plain bytes)")
	} else if mb != 0 && (mb < minMemoryMB || mb > maxMemoryMB) {
		v.add(key+".memory", "must be between %dMi and %dTi (got %s): the agent alone needs about 100 MiB, and no machine it runs on has more", minMemoryMB, maxMemoryMB>>20, a.Memory)
	}
	if len(a.Env) > MaxEntries {
		v.add(key+".env", "holds %d variables; at most %d are accepted", len(a.Env), MaxEntries)
	}
	for _, name := range sortedKeys(a.Env) {
		upper := strings.ToUpper(name)
		switch {
		case !envNameRE.MatchString(name):
			v.add(key+".env."+name, "is not a valid environment variable name (letters, digits, _)")
		case slices.ContainsFunc(secretEnvKeys, func(s string) bool { return strings.Contains(upper, s) }) || upper == "AZP_CLIENTSECRET":
			v.add(key+".env."+name, "looks like a secret, and secrets are never written in the file; use azuredevops.token_env for the agent token, or give the agent the secret through its provider")
		case slices.Contains(providers.ReservedEnv, upper):
			v.add(key+".env."+name, "is set by the autoscaler for every agent; remove it (use azure_pool, agent.work or azuredevops.url)")
		}
	}
}

func (v *validator) providerSections(key string, p Pool) {
	for _, s := range []struct {
		name string
		set  bool
	}{{"docker", p.Docker != nil}, {"aci", p.ACI != nil}, {"kubernetes", p.Kubernetes != nil}} {
		if s.set && s.name != p.Provider && slices.Contains(providerNames, p.Provider) {
			v.add(key+"."+s.name, "is set, but provider is %s; remove it or set provider: %s", p.Provider, s.name)
		}
	}
	switch {
	case p.Provider == "docker" && p.Docker != nil:
		v.docker(key+".docker.", p.Docker)
	case p.Provider == "aci" && p.ACI != nil:
		v.aci(key+".aci.", p.ACI)
		if strings.Contains(p.Name, "--") {
			v.add(key+".name", "must not hold two hyphens in a row with provider aci: container group names may not; use a single '-'")
		}
	case p.Provider == "kubernetes" && p.Kubernetes != nil:
		v.kubernetes(key+".kubernetes.", p.Kubernetes, p.System())
	}
}

// oneOf checks an enumerated value and suggests the closest allowed one.
func (v *validator) oneOf(key, got string, allowed []string) {
	if slices.Contains(allowed, got) {
		return
	}
	msg := fmt.Sprintf("must be one of %s (got %q)", strings.Join(allowed, ", "), got)
	if s := suggest(got, allowed); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	v.add(key, "%s", msg)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// suggest returns the candidate closest to got, if it is close enough to be
// a typo: equal but for case, '-' or '_', or within a small edit distance.
func suggest(got string, candidates []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", max(2, len(got)/3)+1
	for _, c := range candidates {
		if norm(c) == norm(got) {
			return c
		}
		if d := editDistance(strings.ToLower(got), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
