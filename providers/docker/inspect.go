package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// What an image check (the preflight package, `agentscaler check-image`)
// needs of the engine: an image's configuration, its file system, and at
// most a short run of it. Containers made for these are never agent
// instances: they carry no agentscaler.io/ labels, so no reconcile ever
// lists or removes them, and they are removed before these calls return
// (ExportImage's when its stream is closed).

// Op names of those calls in providers.Error.
const (
	opInspectImage = "inspect_image"
	opExport       = "export"
	opRun          = "run"
)

// ImageConfig is what an image says about how its containers run.
type ImageConfig struct {
	ID           string
	OS           string // linux, windows
	Architecture string // amd64, arm64, as Go names them
	Variant      string // v7, v8 on ARM; often empty
	User         string // USER, as written: "", "1001:1001", "agent"
	Env          []string
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
}

// InspectImage returns the configuration of the image ref on the engine.
// It does not pull: call Prepull first.
func (p *Provider) InspectImage(ctx context.Context, ref string) (ImageConfig, error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	img, err := p.cli.ImageInspect(ctx, ref)
	if err != nil {
		return ImageConfig{}, p.fail(opInspectImage, ref, err, nil)
	}
	c := ImageConfig{ID: img.ID, OS: img.Os, Architecture: img.Architecture, Variant: img.Variant}
	if cfg := img.Config; cfg != nil {
		c.User, c.Env, c.Entrypoint, c.Cmd, c.WorkingDir = cfg.User, cfg.Env, cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir
	}
	return c, nil
}

// Platform returns the engine's operating system and architecture, as
// image platforms name them (linux, amd64).
func (p *Provider) Platform(ctx context.Context) (os, arch string, err error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	v, err := p.cli.ServerVersion(ctx)
	if err != nil {
		return "", "", p.fail("version", "engine", err, nil)
	}
	return v.Os, v.Arch, nil
}

// ExportImage returns the file system of the image ref as a tar stream, as
// docker export writes it: a container of the image is created, never
// started, exported, and removed when the stream is closed. Nothing in the
// image runs, so an image without a shell, or for another architecture,
// can be read too.
func (p *Provider) ExportImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	// A command of our own: an image with neither ENTRYPOINT nor CMD cannot
	// be created otherwise. It never runs.
	id, err := p.createUnlabelled(ctx, ref, []string{"/agentscaler-export-only"})
	if err != nil {
		return nil, p.fail(opExport, ref, err, nil)
	}
	rc, err := p.cli.ContainerExport(ctx, id)
	if err != nil {
		p.removeQuietly(id, ref)
		return nil, p.fail(opExport, ref, err, nil)
	}
	return &exportStream{ReadCloser: rc, remove: func() { p.removeQuietly(id, ref) }}, nil
}

type exportStream struct {
	io.ReadCloser
	remove func()
}

func (s *exportStream) Close() error {
	err := s.ReadCloser.Close()
	s.remove()
	return err
}

// maxRunOutput bounds the output RunImage keeps.
const maxRunOutput = 64 << 10

// RunResult is how a RunImage container ended.
type RunResult struct {
	ExitCode int
	Output   string // stdout and stderr, interleaved; at most 64 KiB
}

// RunImage runs a container of ref with args as its command, after the
// image's own ENTRYPOINT, without network, as the image's user, and waits
// until it exits or ctx ends (then it is killed). The container is removed
// before RunImage returns.
func (p *Provider) RunImage(ctx context.Context, ref string, args []string) (RunResult, error) {
	id, err := p.createUnlabelled(ctx, ref, args)
	if err != nil {
		return RunResult{}, p.fail(opRun, ref, err, nil)
	}
	defer p.removeQuietly(id, ref)
	// Waiting starts before the start, so a container that exits at once is
	// not missed.
	waitCh, errCh := p.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	sctx, cancel := p.call(ctx)
	err = p.cli.ContainerStart(sctx, id, container.StartOptions{})
	cancel()
	if err != nil {
		return RunResult{}, p.fail(opRun, ref, fmt.Errorf("start: %w", err), nil)
	}
	var res RunResult
	select {
	case w := <-waitCh:
		if w.Error != nil && w.Error.Message != "" {
			return RunResult{}, p.fail(opRun, ref, errors.New(w.Error.Message), nil)
		}
		res.ExitCode = int(w.StatusCode)
	case err := <-errCh:
		return RunResult{}, p.fail(opRun, ref, fmt.Errorf("wait: %w", err), nil)
	}
	lctx, cancel := p.call(ctx)
	defer cancel()
	rc, err := p.cli.ContainerLogs(lctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return RunResult{}, p.fail(opRun, ref, fmt.Errorf("logs: %w", err), nil)
	}
	defer rc.Close()
	var out bytes.Buffer
	w := &limitWriter{w: &out, n: maxRunOutput}
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil {
		return RunResult{}, p.fail(opRun, ref, fmt.Errorf("logs: %w", err), nil)
	}
	res.Output = out.String()
	return res, nil
}

// createUnlabelled creates a container of ref with args as its command,
// no network and no restart, pulling nothing.
func (p *Provider) createUnlabelled(ctx context.Context, ref string, args []string) (string, error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.cli.ContainerCreate(ctx,
		&container.Config{Image: ref, Cmd: args},
		&container.HostConfig{NetworkMode: "none", RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled}},
		nil, nil, "")
	if isNoSuchImage(err) || cerrdefs.IsNotFound(err) {
		return "", permanent("image_not_found", fmt.Errorf("image %s is not on the engine: %w", ref, err))
	}
	return resp.ID, err
}

// limitWriter keeps the first n bytes written and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.n -= k
		if _, err := l.w.Write(b[:k]); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
