package kubetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// HelmVersion is the Helm release the chart tests run (infra/helm), built
// from the helm.sh/helm/v4 module at that version.
const HelmVersion = "v4.3.2"

const helmPackage = "helm.sh/helm/v4/cmd/helm"

// HelmCacheDir is where the helm binary of HelmVersion lives: beside the
// control plane's binaries, in helm-<HelmVersion> under the cache root.
func HelmCacheDir() (string, error) { return cacheSubdir("helm-" + HelmVersion) }

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
	return goInstall(ctx, dir, log, "-s -w -X helm.sh/helm/v4/internal/version.version="+HelmVersion, "", HelmVersion, helmPackage)
}

// goInstall runs `go install` of the packages at version, all of one
// module, outside this module: that module's own go.mod picks every
// dependency, and this repository's go.mod never requires it. The programs
// are installed into a temporary directory inside dir and renamed into dir
// when all are built.
func goInstall(ctx context.Context, dir string, log io.Writer, ldflags, tags, version string, pkgs ...string) error {
	goTool, err := lookGo()
	if err != nil {
		return err
	}
	out, err := os.MkdirTemp(dir, "out-")
	if err != nil {
		return fmt.Errorf("go install: %w", err)
	}
	defer os.RemoveAll(out)
	// GOFLAGS is cleared: -mod and the like do not apply to a package@version install.
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GOBIN="+out)
	args := []string{"install", "-trimpath", "-ldflags", ldflags}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	for _, p := range pkgs {
		args = append(args, p+"@"+version)
	}
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = out, env, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go install %s@%s: %w", strings.Join(pkgs, " "), version, err)
	}
	for _, p := range pkgs {
		name := path.Base(p)
		if err := os.Rename(filepath.Join(out, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("go install %s: %w", p, err)
		}
	}
	return nil
}
