package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

func init() { providerFactories["docker"] = newDockerProvider }

// newDockerProvider builds the pool's Docker provider. With prepull, the
// agent image is pulled in the background: serving starts at once, and the
// first creates wait for that pull instead of starting their own.
func newDockerProvider(ctx context.Context, pool config.Pool, env providerEnv) (providers.Provider, error) {
	opts, err := dockerOptions(pool, env.getenv)
	if err != nil {
		return nil, err
	}
	opts.Logger = env.log
	p, err := docker.New(opts)
	if err != nil {
		return nil, err
	}
	if pool.Docker != nil && pool.Docker.Prepull {
		go prepull(ctx, p, pool.Agent.Image, env.log)
	}
	return p, nil
}

// dockerOptions maps the pool's docker section and agent to the provider's
// options; the registry credentials are read from the variables named.
func dockerOptions(pool config.Pool, getenv func(string) string) (docker.Options, error) {
	d := pool.Docker
	if d == nil {
		d = &config.Docker{}
	}
	mounts, err := d.ParsedMounts()
	if err != nil {
		return docker.Options{}, fmt.Errorf("docker.mounts: %w", err)
	}
	opts := docker.Options{
		Host:        d.Host,
		TLSCertPath: d.TLSCertPath,
		Network:     d.Network,
		Pull:        docker.PullPolicy(d.Pull),
		Labels:      d.Labels,
		TokenFile:   d.SecretsAsFiles(),
		MTU:         d.MTU,
	}
	for _, m := range mounts {
		opts.Mounts = append(opts.Mounts, docker.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	switch r := d.Registry; {
	case r == nil:
	case r.ConfigFile != "":
		opts.DockerConfig = r.ConfigFile
	default:
		opts.Auth = &docker.Auth{Username: getenv(r.UsernameEnv), Password: getenv(r.PasswordEnv)}
	}
	return opts, nil
}

func prepull(ctx context.Context, p *docker.Provider, image string, log *slog.Logger) {
	// The bound of a pull: agent images are large, registries sometimes slow.
	ctx, cancel := context.WithTimeout(ctx, docker.DefaultPullTimeout)
	defer cancel()
	start := time.Now()
	log.Info("prepulling the agent image", "image", image)
	if err := p.Prepull(ctx, image); err != nil {
		log.Warn("prepull failed; creates pull as the pull policy says", "image", image, "error", err)
		return
	}
	log.Info("agent image ready", "image", image, "elapsed", time.Since(start).Round(time.Millisecond))
}
