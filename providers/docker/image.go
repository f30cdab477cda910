package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// pullCall is one pull in flight, shared by every caller that needs the
// image meanwhile.
type pullCall struct {
	done chan struct{}
	err  error
}

// progressEvery is how often a pull logs its progress.
const progressEvery = 10 * time.Second

// pull pulls ref, or joins the pull of ref already in flight. The pull runs
// on the provider's own bounded context: when ctx ends first, pull returns
// a retryable error and the pull goes on, so a later Create finds the image
// instead of starting over (agent images are large, create calls short).
func (p *Provider) pull(ctx context.Context, ref string) error {
	p.mu.Lock()
	c, ok := p.pulls[ref]
	if !ok {
		c = &pullCall{done: make(chan struct{})}
		p.pulls[ref] = c
		go func() {
			c.err = p.doPull(ref)
			p.mu.Lock()
			delete(p.pulls, ref)
			p.mu.Unlock()
			close(c.done)
		}()
	}
	p.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return retryable("pulling", 0, fmt.Errorf("image %s is still being pulled: %w", ref, ctx.Err()))
	}
}

// pullMessage is one line of the engine's pull progress stream.
type pullMessage struct {
	Status         string `json:"status"`
	ID             string `json:"id"`
	Error          string `json:"error"`
	ProgressDetail struct {
		Current int64 `json:"current"`
	} `json:"progressDetail"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

func (p *Provider) doPull(ref string) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.PullTimeout)
	defer cancel()
	auth, err := p.registryAuth(ref)
	if err != nil {
		return permanent("auth", err)
	}
	start := time.Now()
	log := p.log.With("image", ref)
	log.Info("pulling image", "policy", string(p.opts.Pull), "authenticated", auth != "")
	rc, err := p.cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return pullFailure(ref, err)
	}
	defer rc.Close()

	layers := map[string]string{}  // layer id -> last status
	received := map[string]int64{} // layer id -> bytes downloaded
	next := start.Add(progressEvery)
	dec := json.NewDecoder(rc)
	for {
		var m pullMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return pullFailure(ref, fmt.Errorf("reading the pull progress: %w", err))
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			m.Error = m.ErrorDetail.Message
		}
		if m.Error != "" {
			return pullFailure(ref, errors.New(m.Error))
		}
		if m.ID != "" && m.ProgressDetail.Current == 0 && !strings.HasPrefix(m.Status, "Pulling from") {
			layers[m.ID] = m.Status
		}
		if m.Status == "Downloading" {
			received[m.ID] = m.ProgressDetail.Current
		}
		if now := time.Now(); now.After(next) {
			next = now.Add(progressEvery)
			done := 0
			for _, st := range layers {
				if st == "Pull complete" || st == "Already exists" {
					done++
				}
			}
			var bytes int64
			for _, n := range received {
				bytes += n
			}
			log.Info("pulling image", "layers", len(layers), "layers_done", done, "downloaded_mib", bytes>>20, "elapsed", time.Since(start).Round(time.Second))
		}
	}
	log.Info("pulled image", "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// pullFailure classifies a failed pull by what the registry said: the
// engine reports registry errors as text, often behind a 500.
func pullFailure(ref string, err error) error {
	var f *failure
	switch {
	case errors.As(err, &f), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), client.IsErrConnectionFailed(err):
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	msg := strings.ToLower(err.Error())
	has := func(words ...string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(msg, w) })
	}
	switch {
	case cerrdefs.IsUnauthorized(err) || has("unauthorized", "authentication required", "access denied", "incorrect username or password", "no basic auth credentials"):
		return permanent("auth", fmt.Errorf("pull %s: the registry refused the credentials (%w); check docker.registry", ref, err))
	case has("toomanyrequests", "too many requests", "rate limit"):
		return retryable("throttled", time.Minute, fmt.Errorf("pull %s: %w", ref, err))
	case cerrdefs.IsNotFound(err) || has("manifest unknown", "not found", "does not exist", "no such"):
		return permanent("image_not_found", fmt.Errorf("pull %s: the registry does not have it (%w); check the image name and tag", ref, err))
	case cerrdefs.IsInvalidArgument(err):
		return permanent("invalid_image", fmt.Errorf("pull %s: %w", ref, err))
	}
	return retryable("pull", 0, fmt.Errorf("pull %s: %w", ref, err))
}

// Prepull makes sure the engine has ref, as the pull policy says: always
// pulls, missing pulls when the engine lacks it, never only checks that it
// is there. Creates meanwhile wait for the same pull instead of starting
// another. The caller bounds ctx; the pull itself is bounded by PullTimeout.
func (p *Provider) Prepull(ctx context.Context, ref string) error {
	if p.opts.Pull != PullAlways {
		ok, err := p.ImageExists(ctx, ref)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if p.opts.Pull == PullNever {
			return p.fail(opPull, ref, permanent("image_not_found", fmt.Errorf(
				"image %s is not on the engine and the pull policy is never; load it there, or set pull to missing or always", ref)), nil)
		}
	}
	if err := p.pull(ctx, ref); err != nil {
		return p.fail(opPull, ref, err, nil)
	}
	return nil
}

// ImageExists reports whether the engine has the image ref.
func (p *Provider) ImageExists(ctx context.Context, ref string) (bool, error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	_, err := p.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, p.fail("inspect", ref, err, nil)
}

// Image is the content of an image built from files alone, FROM scratch:
// a static binary and what it reads.
type Image struct {
	Files      map[string][]byte // absolute path in the image -> content; mode 0755
	Entrypoint []string
	User       string // user[:group] the entrypoint runs as; empty for root
}

// ImportImage creates the local image ref from img, unless the engine has
// ref already. It needs no registry: `agentscaler demo` and the tests
// package a static test agent with it.
func (p *Provider) ImportImage(ctx context.Context, ref string, img Image) error {
	if ok, err := p.ImageExists(ctx, ref); err != nil || ok {
		return err
	}
	if len(img.Entrypoint) == 0 {
		return p.fail(opImport, ref, permanent("invalid_image", errors.New("an image without an entrypoint runs nothing; set Entrypoint")), nil)
	}
	dirs, err := parentDirs(img.Files)
	if err != nil {
		return p.fail(opImport, ref, permanent("invalid_image", err), nil)
	}
	// The engine would create missing parents 0600 in a layer: write them.
	layer, err := filesTar(img.Files, 0o755, dirs)
	if err != nil {
		return p.fail(opImport, ref, permanent("invalid_image", err), nil)
	}
	entrypoint, err := json.Marshal(img.Entrypoint)
	if err != nil {
		return p.fail(opImport, ref, err, nil)
	}
	changes := []string{"ENTRYPOINT " + string(entrypoint)}
	if img.User != "" {
		changes = append(changes, "USER "+img.User)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.PullTimeout)
	defer cancel()
	rc, err := p.cli.ImageImport(ctx, image.ImportSource{Source: layer, SourceName: "-"}, ref, image.ImportOptions{Changes: changes})
	if err != nil {
		return p.fail(opImport, ref, err, nil)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m pullMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return p.fail(opImport, ref, fmt.Errorf("reading the import result: %w", err), nil)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			m.Error = m.ErrorDetail.Message
		}
		if m.Error != "" {
			return p.fail(opImport, ref, errors.New(m.Error), nil)
		}
	}
}

// filesTar returns a tar stream of files (absolute paths) with the given
// mode, owned by root, preceded by entries for dirs (mode 0755). Parents
// left out are created by the engine.
func filesTar(files map[string][]byte, mode int64, dirs []string) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path.Clean(d)[1:] + "/", Mode: 0o755, ModTime: now}); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		h := &tar.Header{Typeflag: tar.TypeReg, Name: path.Clean(name)[1:], Mode: mode, Size: int64(len(content)), ModTime: now}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// parentDirs returns the directories above the files, parents first. It
// refuses paths that are not absolute or that name the root.
func parentDirs(files map[string][]byte) ([]string, error) {
	dirs := map[string]bool{}
	for name := range files {
		if !path.IsAbs(name) || path.Clean(name) == "/" {
			return nil, fmt.Errorf("file name %q: give an absolute path such as /bin/agent", name)
		}
		for d := path.Dir(path.Clean(name)); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	return slices.Sorted(maps.Keys(dirs)), nil
}
