//go:build !nodemo

package main

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

// agentImage is this very binary packaged FROM scratch as the demo's agent
// image: its hidden test-agent command stands in for the Azure Pipelines
// agent, and no registry is needed.
type agentImage struct {
	ref  string // agentscaler-test-agent:<content hash>
	path string
}

const agentImagePath = "/agentscaler"

// selfImage names the image after the executable's content, so a rebuilt
// binary gets a new image and an unchanged one is imported once.
func selfImage() (*agentImage, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable for the agent image: %w", err)
	}
	if f, err := elf.Open(exe); err == nil {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return nil, fmt.Errorf("%s is dynamically linked and cannot run in the demo's FROM scratch agent image: "+
					"build it static with `make build` (CGO_ENABLED=0) and run bin/agentscaler demo, or use --provider memory", exe)
			}
		}
	}
	f, err := os.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("read this executable for the agent image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read this executable for the agent image: %w", err)
	}
	return &agentImage{ref: "agentscaler-test-agent:" + hex.EncodeToString(h.Sum(nil))[:12], path: exe}, nil
}

// imageImporter is what the demo needs of the Docker provider beyond the
// Provider interface.
type imageImporter interface {
	ImageExists(ctx context.Context, ref string) (bool, error)
	ImportImage(ctx context.Context, ref string, img docker.Image) error
}

// importInto makes the image on the provider's engine, unless it is there.
// The first call is also where an unreachable engine shows, so its error
// says how to get one.
func (img *agentImage) importInto(ctx context.Context, prov providers.Provider, host string) error {
	imp, ok := prov.(imageImporter)
	if !ok {
		return fmt.Errorf("the demo's agent image needs the docker provider, not %T", prov)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	ok, err := imp.ImageExists(pctx, img.ref)
	cancel()
	if err != nil {
		if host == "" {
			host = "the default socket (unix:///var/run/docker.sock)"
		}
		return fmt.Errorf("no Docker engine answers at %s: %w\n"+
			"Get one: apt-get install docker.io and start dockerd (or set DOCKER_HOST to a running engine); "+
			"`make run` starts a private engine for the demo by itself; `agentscaler demo --provider memory` needs none", host, err)
	}
	if ok {
		return nil
	}
	bin, err := os.ReadFile(img.path)
	if err != nil {
		return fmt.Errorf("read this executable for the agent image: %w", err)
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = imp.ImportImage(ictx, img.ref, docker.Image{
		Files:      map[string][]byte{agentImagePath: bin},
		Entrypoint: []string{agentImagePath, testAgentCommand},
	})
	if err != nil {
		return fmt.Errorf("import the agent image %s: %w", img.ref, err)
	}
	return nil
}
