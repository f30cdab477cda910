package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const pushSecret = "push-5ecret-do-not-log"

// pushFile is a valid file with a metrics section written as section
// ("" for none).
func pushFile(section string) []byte {
	if section == "" {
		return aciFile("")
	}
	return append(aciFile(""), []byte("metrics:\n  push: "+section+"\n")...)
}

func TestPushSettings(t *testing.T) {
	tests := []struct {
		name    string
		section string
		env     map[string]string
		want    *Push // nil: push mode off
	}{
		{"off", "", map[string]string{EnvPushUsername: "pusher", EnvPushPassword: pushSecret}, nil},
		{"file", "{url: \"https://pushgateway.example:9091/prefix\", username: pusher, password_env: PUSH_PASSWORD, job: agentscaler-staging, instance: fn-1, interval: 30s}",
			map[string]string{"PUSH_PASSWORD": pushSecret},
			&Push{URL: "https://pushgateway.example:9091/prefix", Username: "pusher", PasswordEnv: "PUSH_PASSWORD", Job: "agentscaler-staging", Instance: "fn-1", Interval: 30 * time.Second}},
		{"file, defaults", "{url: \"http://pushgateway:9091\"}", map[string]string{"WEBSITE_INSTANCE_ID": "a1b2c3"},
			&Push{URL: "http://pushgateway:9091", Job: "agentscaler", Instance: "a1b2c3", Interval: time.Second}},
		{"variables", "", map[string]string{
			EnvPushURL: " http://u:" + pushSecret + "@pushgateway:9091 ", EnvPushUsername: "pusher", EnvPushPassword: pushSecret, EnvPushInstance: "fn-2",
			"WEBSITE_INSTANCE_ID": "a1b2c3",
		}, &Push{URL: "http://u:" + pushSecret + "@pushgateway:9091", Username: "pusher", PasswordEnv: EnvPushPassword, Job: "agentscaler", Instance: "fn-2", Interval: time.Second}},
		{"lambda instance", "", map[string]string{EnvPushURL: "http://pushgateway:9091", "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/02/[$LATEST]0123abcd"},
			&Push{URL: "http://pushgateway:9091", Job: "agentscaler", Instance: "2026/01/02/[$LATEST]0123abcd", Interval: time.Second}},
		{"file and variables", "{job: ci, interval: 1m}", map[string]string{EnvPushURL: "http://pushgateway:9091", EnvPushInstance: "fn-3"},
			&Push{URL: "http://pushgateway:9091", Job: "ci", Instance: "fn-3", Interval: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(pushFile(tt.section), withEnv(tt.env))
			if err != nil {
				t.Fatalf("does not load:\n%v", err)
			}
			got := cfg.Metrics.Push
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("push = %+v, want push mode off", *got)
			case tt.want == nil:
				return
			case got == nil:
				t.Fatal("push mode is off")
			}
			g := *got
			g.from = nil
			if !reflect.DeepEqual(g, *tt.want) {
				t.Errorf("push =\n %+v\nwant\n %+v", g, *tt.want)
			}
		})
	}
}

// TestPushFromEnvMode: without a file the same variables turn push mode on.
func TestPushFromEnvMode(t *testing.T) {
	cfg, err := FromEnv(env(map[string]string{
		EnvURL: "https://dev.azure.com/contoso", EnvToken: "pat", EnvPool: "Default", EnvImage: "azp-agent:linux", EnvWebhookPassword: "hook",
		EnvPushURL: "http://pushgateway:9091", EnvPushInstance: "fn-1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Metrics.Push; p == nil || p.URL != "http://pushgateway:9091" || p.Instance != "fn-1" || p.Job != DefaultPushJob || p.Interval != DefaultPushInterval {
		t.Errorf("push = %+v", p)
	}
	_, err = FromEnv(env(map[string]string{
		EnvURL: "https://dev.azure.com/contoso", EnvToken: "pat", EnvPool: "Default", EnvImage: "azp-agent:linux", EnvWebhookPassword: "hook",
		EnvPushURL: "pushgateway:9091", EnvPushPassword: pushSecret,
	}))
	ps := problemsOf(t, err)
	if got := keysOf(ps); !slices.Equal(got, []string{EnvPushURL, EnvPushPassword}) {
		t.Errorf("problem keys %q, want the two variables:\n%v", got, err)
	}
}

func TestPushProblems(t *testing.T) {
	long := strings.Repeat("i", 257)
	tests := []struct {
		name    string
		section string
		env     map[string]string
		says    map[string]string // every problem's key -> a phrase its message must hold
	}{
		{"no url", "{instance: fn-1}", nil, map[string]string{"metrics.push.url": "required with push"}},
		{"not a url", "{url: \"pushgateway:9091/" + pushSecret + "\"}", nil, map[string]string{"metrics.push.url": "http://pushgateway:9091"}},
		{"not http", "", map[string]string{EnvPushURL: "ftp://u:" + pushSecret + "@pushgateway:9091"}, map[string]string{EnvPushURL: "not an absolute http(s) URL"}},
		{"query", "{url: \"http://pushgateway:9091/?job=x\"}", nil, map[string]string{"metrics.push.url": "must not have a query"}},
		{"credentials in the file", "{url: \"http://u:" + pushSecret + "@pushgateway:9091\"}", nil, map[string]string{"metrics.push.url": "must not carry credentials; set username, and password_env"}},
		{"url twice", "{url: \"http://pushgateway:9091\"}", map[string]string{EnvPushURL: "http://other:9091"}, map[string]string{"metrics.push.url": EnvPushURL + " is set as well"}},
		{"password variable alone", "", map[string]string{EnvPushURL: "http://pushgateway:9091", EnvPushPassword: pushSecret},
			map[string]string{EnvPushPassword: "is set but " + EnvPushUsername + " is empty"}},
		{"password_env alone", "{url: \"http://pushgateway:9091\", password_env: PUSH_PASSWORD}", map[string]string{"PUSH_PASSWORD": pushSecret},
			map[string]string{"metrics.push.password_env": "is set but username is empty"}},
		{"password pasted", "{url: \"http://pushgateway:9091\", username: pusher, password_env: \"" + pushSecret + "\"}", nil,
			map[string]string{"metrics.push.password_env": "must be the name of an environment variable"}},
		{"password unset", "{url: \"http://pushgateway:9091\", username: pusher, password_env: UNSET_PASSWORD}", nil,
			map[string]string{"metrics.push.password_env": "environment variable UNSET_PASSWORD is not set"}},
		{"username with colon", "{url: \"http://pushgateway:9091\", username: \"a:b\"}", nil, map[string]string{"metrics.push.username": "must not contain ':'"}},
		{"job", "{url: \"http://pushgateway:9091\", job: \"ci/cd\"}", nil, map[string]string{"metrics.push.job": "letters, digits"}},
		{"instance too long", "", map[string]string{EnvPushURL: "http://pushgateway:9091", EnvPushInstance: long}, map[string]string{EnvPushInstance: "at most 256 characters"}},
		{"interval too short", "{url: \"http://pushgateway:9091\", interval: 100ms}", nil, map[string]string{"metrics.push.interval": "must be between 1s and 1m (got 100ms)"}},
		{"interval zero", "{url: \"http://pushgateway:9091\", interval: 0s}", nil, map[string]string{"metrics.push.interval": "must be between 1s and 1m (got 0s)"}},
		{"interval too long", "{url: \"http://pushgateway:9091\", interval: 5m}", nil, map[string]string{"metrics.push.interval": "leaves the gateway behind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(pushFile(tt.section), withEnv(tt.env))
			saysProblems(t, err, tt.says, pushSecret, long)
		})
	}
}
