package main

import (
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/providers/docker"
)

func TestDockerOptionsFromThePoolSection(t *testing.T) {
	env := func(name string) string {
		return map[string]string{"REG_USER": "ci-bot", "REG_PASS": "registry-pass-5f1e"}[name]
	}
	pool := config.Pool{Docker: &config.Docker{
		Host: "tcp://docker.example.com:2376", TLSCertPath: "/certs", Network: "agents", Pull: "always",
		Registry:  &config.DockerRegistry{UsernameEnv: "REG_USER", PasswordEnv: "REG_PASS"},
		Mounts:    []string{"/var/run/docker.sock:/var/run/docker.sock", "cache:/cache:ro"},
		Labels:    map[string]string{"com.example.team": "platform"},
		TokenFile: new(false), MTU: 1450,
	}}
	got, err := dockerOptions(pool, env)
	if err != nil {
		t.Fatal(err)
	}
	want := docker.Options{
		Host: "tcp://docker.example.com:2376", TLSCertPath: "/certs", Network: "agents", Pull: docker.PullAlways,
		Auth: &docker.Auth{Username: "ci-bot", Password: "registry-pass-5f1e"},
		Mounts: []docker.Mount{
			{Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"},
			{Source: "cache", Target: "/cache", ReadOnly: true},
		},
		Labels:    map[string]string{"com.example.team": "platform"},
		TokenFile: false, MTU: 1450,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dockerOptions =\n%+v\nwant\n%+v", got, want)
	}

	// Unless set to false, the token travels as a file.
	for _, d := range []*config.Docker{nil, {}, {TokenFile: new(true)}} {
		if got, err := dockerOptions(config.Pool{Docker: d}, env); err != nil || !got.TokenFile {
			t.Errorf("docker section %+v: TokenFile %v (%v), want true", d, got.TokenFile, err)
		}
	}

	pool.Docker.Registry = &config.DockerRegistry{ConfigFile: "/root/.docker/config.json"}
	got, err = dockerOptions(pool, env)
	if err != nil || got.DockerConfig != "/root/.docker/config.json" || got.Auth != nil {
		t.Errorf("with config_file: DockerConfig %q, Auth %v, %v; want the file and no username/password", got.DockerConfig, got.Auth, err)
	}
}

func TestDockerFactoryRefusesAMissingRegistryConfigFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "config.json")
	pool := config.Pool{Name: "linux", Provider: "docker", Agent: config.Agent{Image: "azp-agent:linux"},
		Docker: &config.Docker{Registry: &config.DockerRegistry{ConfigFile: missing}}}
	_, err := providerFactories["docker"](t.Context(), pool, providerEnv{getenv: func(string) string { return "" }, log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("factory with a missing config file: %v; want an error naming %s", err, missing)
	}
}

// TestDockerFactoryPrepulls builds a pool with prepull against a real
// engine and waits for the factory's background prepull to report.
func TestDockerFactoryPrepulls(t *testing.T) {
	e := dockertest.Start(t)
	const image = "agentscaler-test/waiter:prepull"
	e.WaiterImage(t, image)
	logs := &syncbuf.Buffer{}
	pool := config.Pool{Name: "linux", Provider: "docker", Agent: config.Agent{Image: image},
		Docker: &config.Docker{Host: e.Host, Network: "none", Pull: "missing", Prepull: true}}
	p, err := providerFactories["docker"](t.Context(), pool, providerEnv{getenv: func(string) string { return "" }, log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.(*docker.Provider).Close() })
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(logs.String(), "agent image ready") {
		if strings.Contains(logs.String(), "prepull failed") || time.Now().After(deadline) {
			t.Fatalf("the prepull did not report the image ready; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
