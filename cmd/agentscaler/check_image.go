package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/config"
	"github.com/agentscaler/agentscaler/providers/docker"
	"github.com/agentscaler/agentscaler/providers/docker/preflight"
)

// checkImageTimeout bounds a whole check: a pull (DefaultPullTimeout) and
// reading the image's file system.
const checkImageTimeout = docker.DefaultPullTimeout + 10*time.Minute

// cmdCheckImage checks an image against the agent image requirements on a
// Docker engine (providers/docker/preflight) and prints the results; the
// exit status is 1 when any check fails.
func cmdCheckImage(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	var c common
	fs := newFlags("check-image", "Check that IMAGE can serve as an agent image (docs/images.md), on a Docker engine: glibc, libicu,\n"+
		"the agent and its start script, ENTRYPOINT, sh and bash on PATH, a non-root user, a writable work folder,\n"+
		"the platform. Prints ✔ or ✘ per check and the fix for each ✘; exits 1 when any check fails.\n\n"+
		"  agentscaler check-image IMAGE               on the engine of DOCKER_HOST, pulling IMAGE when missing\n"+
		"  agentscaler check-image --pool NAME [IMAGE] with the pool's Docker settings (host, pull, registry,\n"+
		"                                              mounts, work, capabilities); IMAGE defaults to its agent.image", stderr, &c)
	pool := fs.String("pool", "", "check with this pool's Docker provider settings (needs the configuration)")
	timeout := fs.Duration("timeout", checkImageTimeout, "deadline for the whole check, pull included")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Flags may follow the image too.
	var image string
	if fs.NArg() > 0 {
		image = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	opts := docker.Options{Logger: log}
	var popts preflight.Options
	switch {
	case *pool != "":
		cfg, err := config.ResolveContext(ctx, c.config, getenv)
		if err != nil {
			return err
		}
		p, ok := cfg.Pool(*pool)
		if !ok {
			return usageError{fmt.Sprintf("--pool %s: no such pool in the configuration; it has %s", *pool, poolNames(cfg))}
		}
		if p.Provider != "docker" {
			return usageError{fmt.Sprintf("--pool %s: the pool's provider is %s, and check-image checks images on a Docker engine; "+
				"run `agentscaler check-image IMAGE` against a Docker engine of the image's platform instead", p.Name, p.Provider)}
		}
		if image == "" {
			image = p.Agent.Image
		}
		if opts, err = dockerOptions(p, getenv); err != nil {
			return err
		}
		opts.Logger = log
		popts = preflight.Options{Capabilities: p.Capabilities, Work: p.Agent.Work}
		for _, m := range opts.Mounts {
			popts.Mounts = append(popts.Mounts, m.Target)
		}
	case c.config != "":
		return usageError{"check-image: --config is read only with --pool NAME, to check with that pool's settings"}
	case image == "":
		fs.Usage()
		return usageError{"check-image: name the image to check, or a pool with --pool NAME"}
	}
	eng, err := docker.New(opts)
	if err != nil {
		return err
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := preflight.Check(ctx, eng, image, popts)
	if err != nil {
		return fmt.Errorf("check-image %s: %w", image, err)
	}
	if err := rep.Write(stdout); err != nil {
		return err
	}
	if rep.Failed() > 0 {
		return exitStatus(1)
	}
	return nil
}

func poolNames(cfg *config.Config) string {
	names := make([]string, len(cfg.Pools))
	for i, p := range cfg.Pools {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
