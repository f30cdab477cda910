package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/machinecache"
)

// Version is the Kubernetes release the control plane is built from. It
// matches the client-go v0.37.2 the provider is built on.
const Version = "v1.37.2"

// stagingVersion is the version every k8s.io staging module of Version is
// published at.
const stagingVersion = "v0.37.2"

// Binaries are the control-plane programs, built and cached by Build.
type Binaries struct {
	APIServer         string
	ControllerManager string
}

var programs = []string{"kube-apiserver", "kube-controller-manager"}

func binariesIn(dir string) Binaries {
	return Binaries{
		APIServer:         filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
	}
}

func (b Binaries) exist() bool { return regularFiles(b.APIServer, b.ControllerManager) }

func regularFiles(paths ...string) bool {
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// CacheDir is where the binaries of Version live: the cache root with
// Version appended, so a version bump never runs stale binaries.
func CacheDir() (string, error) { return cacheSubdir(Version) }

// cacheSubdir is the directory name under the cache root of everything
// kubetest builds.
func cacheSubdir(name string) (string, error) {
	root, err := machinecache.Dir("AGENTSCALER_KUBE_CACHE", "kube")
	if err != nil {
		return "", err
	}
	return filepath.Join(root, name), nil
}

// Cached returns the binaries when they are already built.
func Cached() (Binaries, bool) {
	dir, err := CacheDir()
	if err != nil {
		return Binaries{}, false
	}
	b := binariesIn(dir)
	return b, b.exist()
}

// Build returns the cached binaries, building them first when they are
// missing. The build runs in a throwaway module in the cache directory (so
// this repository's go.mod never requires k8s.io/kubernetes), once per
// machine (see buildOnce). The go command's output goes to log.
func Build(ctx context.Context, log io.Writer) (Binaries, error) {
	dir, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	bins := binariesIn(dir)
	err = buildOnce(ctx, dir, "kube-apiserver and kube-controller-manager "+Version, bins.exist, log, func() error {
		return build(ctx, dir, log, programs...)
	})
	return bins, err
}

// KubeletBinary is where the kubelet of Version lives: beside the control
// plane's binaries in CacheDir.
func KubeletBinary() (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubelet"), nil
}

// CachedKubelet returns the kubelet when it is already built.
func CachedKubelet() (string, bool) {
	bin, err := KubeletBinary()
	return bin, err == nil && regularFiles(bin)
}

// BuildKubelet returns the cached kubelet, building it first when it is
// missing: from the same throwaway module and k8s.io/kubernetes version as
// the control plane (see Build), once per machine. It is a build of its own
// so that machines that ran the control plane before need only the kubelet.
func BuildKubelet(ctx context.Context, log io.Writer) (string, error) {
	bin, err := KubeletBinary()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(bin)
	err = buildOnce(ctx, dir, "kubelet "+Version, func() bool { return regularFiles(bin) }, log, func() error {
		return build(ctx, dir, log, "kubelet")
	})
	return bin, err
}

// buildOnce runs build, which writes into dir, unless built reports that
// dir holds its result already. A lock file in dir makes concurrent callers,
// in this process or another, wait for one build; build must rename each
// file into place only when it is complete. what names the result in the
// messages written to log, and dir/build-<what>.json records how long it
// took.
func buildOnce(ctx context.Context, dir, what string, built func() bool, log io.Writer, build func() error) error {
	if built() {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("kube binaries cache: %w", err)
	}
	unlock, err := machinecache.Lock(ctx, filepath.Join(dir, ".lock"), "kube binaries", log)
	if err != nil {
		return err
	}
	defer unlock()
	if built() { // built by whoever held the lock before us
		return nil
	}
	start := time.Now()
	fmt.Fprintf(log, "kubetest: building %s into %s (cold build: minutes, once per machine)\n", what, dir)
	if err := build(); err != nil {
		return err
	}
	took := time.Since(start).Round(time.Second)
	fmt.Fprintf(log, "kubetest: built %s in %v\n", what, took)
	rec, _ := json.Marshal(map[string]any{"what": what, "seconds": took.Seconds(), "built": time.Now().UTC()})
	record := "build-" + strings.ReplaceAll(strings.Fields(what)[0], string(filepath.Separator), "_") + ".json"
	_ = os.WriteFile(filepath.Join(dir, record), append(rec, '\n'), 0o644) // informative only
	return nil
}

// build compiles the programs of k8s.io/kubernetes/cmd into a temporary
// directory inside dir and renames them into place.
func build(ctx context.Context, dir string, log io.Writer, programs ...string) error {
	goTool, err := lookGo()
	if err != nil {
		return err
	}
	mod := filepath.Join(dir, "module")
	if err := os.RemoveAll(mod); err != nil {
		return fmt.Errorf("kube binaries module: %w", err)
	}
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return fmt.Errorf("kube binaries module: %w", err)
	}
	env := append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	staging, err := stagingModules(ctx, goTool, mod, env)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), throwawayGoMod(staging), 0o644); err != nil {
		return fmt.Errorf("kube binaries module: %w", err)
	}
	out, err := os.MkdirTemp(dir, "out-")
	if err != nil {
		return fmt.Errorf("kube binaries: %w", err)
	}
	defer os.RemoveAll(out)
	args := []string{"build", "-trimpath", "-ldflags", versionLDFlags(), "-o", out + string(filepath.Separator)}
	for _, p := range programs {
		args = append(args, "k8s.io/kubernetes/cmd/"+p)
	}
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = mod, env, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build of %s %s in %s: %w", strings.Join(programs, " and "), Version, mod, err)
	}
	for _, p := range programs {
		if err := os.Rename(filepath.Join(out, p), filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("kube binaries: %w", err)
		}
	}
	return nil
}

func lookGo() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building the Kubernetes test tools needs the go command on PATH: %w", err)
	}
	return goTool, nil
}

// stagingRE matches a replace line of k8s.io/kubernetes's go.mod that points
// a staging module into the repository: "k8s.io/api => ./staging/src/k8s.io/api".
var stagingRE = regexp.MustCompile(`^\s*(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/`)

// stagingModules reads k8s.io/kubernetes's go.mod from the module cache
// (downloading it through the proxy if needed) and returns the staging
// modules it replaces with its own directories. Those replaces do not apply
// to a module that requires k8s.io/kubernetes, so the throwaway module must
// repeat them with the published versions.
func stagingModules(ctx context.Context, goTool, dir string, env []string) ([]string, error) {
	cmd := exec.CommandContext(ctx, goTool, "mod", "download", "-json", "k8s.io/kubernetes@"+Version)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w: %s", Version, err, strings.TrimSpace(stderr.String()))
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(raw, &info); err != nil || info.GoMod == "" {
		return nil, fmt.Errorf("go mod download k8s.io/kubernetes@%s: no go.mod in %q", Version, raw)
	}
	f, err := os.Open(info.GoMod)
	if err != nil {
		return nil, fmt.Errorf("k8s.io/kubernetes go.mod: %w", err)
	}
	defer f.Close()
	var mods []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := stagingRE.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("k8s.io/kubernetes go.mod: %w", err)
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("k8s.io/kubernetes@%s go.mod (%s) replaces no staging module; its layout changed", Version, info.GoMod)
	}
	return mods, nil
}

func throwawayGoMod(staging []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Generated by internal/testenv/kubetest: builds the Kubernetes %s control plane for tests.\n", Version)
	fmt.Fprintf(&b, "module agentscaler.local/kubebins\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", Version)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, stagingVersion)
	}
	b.WriteString(")\n")
	return b.Bytes()
}

// versionLDFlags stamps the version the programs report (and derive their
// API compatibility version from); without it they call themselves v0.0.0.
func versionLDFlags() string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(Version, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	const pkg = "k8s.io/component-base/version."
	return strings.Join([]string{
		"-s", "-w",
		"-X", pkg + "gitVersion=" + Version,
		"-X", pkg + "gitMajor=" + major,
		"-X", pkg + "gitMinor=" + minor,
		"-X", pkg + "gitTreeState=clean",
		"-X", pkg + "buildDate=1970-01-01T00:00:00Z",
	}, " ")
}
