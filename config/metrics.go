package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Metrics holds the metrics settings beyond the /api/metrics route, which is
// always served.
type Metrics struct {
	Push *Push `yaml:"push"` // push mode: off when left out and AGENTSCALER_PUSHGATEWAY_URL is unset
}

// Push is push mode: after reconciles the whole registry is pushed to a
// Prometheus Pushgateway, for hosts no scraper reaches. Every key can come
// from its variable instead (EnvPushURL, ...), in any configuration mode,
// since a serverless host sets them next to its other settings; a key set
// in both places is refused.
type Push struct {
	URL string `yaml:"url"` // the gateway's base URL, such as http://pushgateway:9091
	// Username and the password in the variable PasswordEnv names are sent
	// as basic auth (a gateway behind an authenticating proxy or its
	// --web.config.file).
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	Job         string `yaml:"job"` // the group's job label (agentscaler)
	// Instance is the group's instance label; left out, the host's id for
	// the instance (WEBSITE_INSTANCE_ID, AWS_LAMBDA_LOG_STREAM_NAME) or the
	// host name.
	Instance string `yaml:"instance"`
	// Interval is how long serve waits after a reconcile before it pushes,
	// so that reconciles within it share one push.
	Interval time.Duration `yaml:"interval"`

	from map[string]string // key -> the variable it was read from
}

// Push mode's variables, read in every configuration mode.
const (
	EnvPushURL      = "AGENTSCALER_PUSHGATEWAY_URL"
	EnvPushUsername = "AGENTSCALER_PUSHGATEWAY_USERNAME"
	EnvPushPassword = "AGENTSCALER_PUSHGATEWAY_PASSWORD"
	EnvPushInstance = "AGENTSCALER_PUSHGATEWAY_INSTANCE"
)

// PushEnv lists push mode's variables: settings read for their own values,
// unlike the secrets *_env keys name.
var PushEnv = []string{EnvPushURL, EnvPushUsername, EnvPushPassword, EnvPushInstance}

// hostInstanceEnv are the variables in which hosts name the instance, in
// the order they are tried: Azure Functions and App Service, AWS Lambda.
var hostInstanceEnv = []string{"WEBSITE_INSTANCE_ID", "AWS_LAMBDA_LOG_STREAM_NAME"}

var (
	pushJobRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)
	// A Lambda log stream name, the longest instance a host gives, is
	// about 60 characters.
	maxPushInstance = 256
	maxPushJob      = 128
	maxPushUsername = 256
)

// key is the key of a push setting as the user wrote it: the variable it
// came from, or its key in the file.
func (p *Push) key(name string) string {
	if v, ok := p.from[name]; ok {
		return v
	}
	return "metrics.push." + name
}

// pushFromEnv reads push mode's variables into c, creating the section when
// AGENTSCALER_PUSHGATEWAY_URL is set, and names the instance when nothing
// does. Without a URL anywhere push mode is off and the other variables are
// ignored, as they always were.
func pushFromEnv(c *Config, getenv func(string) string) []Problem {
	if u := strings.TrimSpace(getenv(EnvPushURL)); u != "" && c.Metrics.Push == nil {
		c.Metrics.Push = &Push{}
	}
	p := c.Metrics.Push
	if p == nil {
		return nil
	}
	var problems []Problem
	for _, f := range []struct {
		env, name string
		dst       *string
		value     string
	}{
		{EnvPushURL, "url", &p.URL, strings.TrimSpace(getenv(EnvPushURL))},
		{EnvPushUsername, "username", &p.Username, getenv(EnvPushUsername)},
		{EnvPushPassword, "password_env", &p.PasswordEnv, EnvPushPassword},
		{EnvPushInstance, "instance", &p.Instance, strings.TrimSpace(getenv(EnvPushInstance))},
	} {
		if getenv(f.env) == "" {
			continue
		}
		if *f.dst != "" {
			problems = append(problems, Problem{Key: "metrics.push." + f.name,
				Message: fmt.Sprintf("%s is set as well; keep one of the two", f.env)})
			continue
		}
		*f.dst = f.value
		if p.from == nil {
			p.from = map[string]string{}
		}
		p.from[f.name] = f.env
	}
	if p.Instance == "" {
		p.Instance = hostInstance(getenv)
	}
	return problems
}

// hostInstance is the name the host gives this instance, else the host
// name (a pod's name in Kubernetes), else "".
func hostInstance(getenv func(string) string) string {
	for _, k := range hostInstanceEnv {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	h, _ := os.Hostname()
	return h
}

// pushIntervalLimit bounds metrics.push.interval.
var pushIntervalLimit = limit[time.Duration]{time.Second, time.Minute,
	"a shorter wait pushes each pool's pass on its own and loads the gateway; a longer one leaves the gateway behind the default reconcile timer"}

// push validates push mode. Messages never repeat the URL, the user name
// or the instance: a URL may carry a password, and the others may come
// from variables that hold something else by mistake.
func (v *validator) push(p *Push) {
	v.pushURL(p)
	switch {
	case len(p.Username) > maxPushUsername:
		v.add(p.key("username"), "must be at most %d characters (got %d)", maxPushUsername, len(p.Username))
	case strings.Contains(p.Username, ":"):
		v.add(p.key("username"), "must not contain ':' (basic auth separates user and password with it)")
	}
	if p.PasswordEnv != "" {
		if p.Username == "" {
			user := "username"
			if p.from["password_env"] != "" {
				user = EnvPushUsername
			}
			v.add(p.key("password_env"), "is set but %s is empty; set both for basic auth", user)
		}
		v.env(p.key("password_env"), p.PasswordEnv, "the Pushgateway password")
	}
	if p.Job == "" || len(p.Job) > maxPushJob || !pushJobRE.MatchString(p.Job) {
		v.add(p.key("job"), "must be 1 to %d letters, digits, '_', '.', ':' or '-', starting with a letter or digit (got %q); leave it out for %s", maxPushJob, p.Job, DefaultPushJob)
	}
	switch {
	case p.Instance == "":
		v.add(p.key("instance"), "the host name is unknown; set instance (or %s) to a name for this instance", EnvPushInstance)
	case len(p.Instance) > maxPushInstance:
		v.add(p.key("instance"), "must be at most %d characters (got %d): it names this instance's group on the gateway", maxPushInstance, len(p.Instance))
	}
	checkLimit(v, p.key("interval"), p.Interval, pushIntervalLimit)
}

func (v *validator) pushURL(p *Push) {
	key := p.key("url")
	if p.URL == "" {
		v.add(key, "required with push: the Pushgateway's base URL, like http://pushgateway:9091")
		return
	}
	u, err := url.Parse(p.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		v.add(key, "is not an absolute http(s) URL; set it to the Pushgateway's base URL, like http://pushgateway:9091")
	case u.RawQuery != "" || u.Fragment != "":
		v.add(key, "must not have a query or fragment; give the Pushgateway's base URL, like http://pushgateway:9091")
	case u.User != nil && p.from["url"] == "":
		// In its variable a URL may carry credentials, as it always could;
		// in the file it may not, since secrets are never written there.
		v.add(key, "must not carry credentials; set username, and password_env to the variable holding the password")
	}
}
