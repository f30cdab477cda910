package kubetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/agentscaler/agentscaler/internal/testenv/machinecache"
)

// HelmVersion is the Helm release the chart tests run (infra/helm), built
// from the helm.sh/helm/v4 module at that version.
const HelmVersion = "v4.3.2"

const helmPackage = "helm.sh/helm/v4/cmd/helm"

// HelmCacheDir is where the helm binary of HelmVersion lives: beside the
// control plane's binaries, in helm-<HelmVersion> under the cache root.
func HelmCacheDir() (string, error) {
	root, err := machinecache.Dir("AGENTSCALER_KUBE_CACHE", "kube")
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "helm-"+HelmVersion), nil
}

// CachedHelm returns the helm binary when it is already built.
func CachedHelm() (string, bool) {
	dir, err := HelmCacheDir()
	if err != nil {
		return "", false
	}
	bin := filepath.Join(dir, "helm")
	return bin, regularFiles(bin)
}

// BuildHelm returns the cached helm binary, building it first when it is
// missing, once per machine like Build. It is `go install` of
// helm.sh/helm/v4/cmd/helm@HelmVersion, outside this module: Helm's own
// go.mod picks every dependency, and this repository's go.mod never
// requires Helm. The go command's output goes to log.
func BuildHelm(ctx context.Context, log io.Writer) (string, error) {
	dir, err := HelmCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "helm")
	err = buildOnce(ctx, dir, "helm "+HelmVersion, func() bool { return regularFiles(bin) }, log, func() error {
		return buildHelm(ctx, dir, log)
	})
	return bin, err
}

func buildHelm(ctx context.Context, dir string, log io.Writer) error {
	goTool, err := lookGo()
	if err != nil {
		return err
	}
	out, err := os.MkdirTemp(dir, "out-")
	if err != nil {
		return fmt.Errorf("helm build: %w", err)
	}
	defer os.RemoveAll(out)
	// GOFLAGS is cleared: -mod and the like do not apply to a package@version install.
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GOBIN="+out)
	cmd := exec.CommandContext(ctx, goTool, "install", "-trimpath",
		"-ldflags", "-s -w -X helm.sh/helm/v4/internal/version.version="+HelmVersion,
		helmPackage+"@"+HelmVersion)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = out, env, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go install %s@%s: %w", helmPackage, HelmVersion, err)
	}
	if err := os.Rename(filepath.Join(out, "helm"), filepath.Join(dir, "helm")); err != nil {
		return fmt.Errorf("helm build: %w", err)
	}
	return nil
}
