// Package debiantest gives tests a real Debian root file system: a minimal
// bookworm (debootstrap --variant=minbase) from the mirror this machine's
// apt uses, as a gzipped tar that `docker import` turns into an image.
// debootstrap needs root and a minute or more, so the tarball is built once
// per machine into the cache (machinecache, "debian"); `make deps` builds it
// (tools/debianroot) so that tests find it ready.
package debiantest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/machinecache"
)

// Suite and Variant are what debootstrap installs.
const (
	Suite   = "bookworm"
	Variant = "minbase"
)

// EnvCache overrides the cache directory; EnvMirror the Debian mirror.
const (
	EnvCache  = "AGENTSCALER_DEBIAN_CACHE"
	EnvMirror = "AGENTSCALER_DEBIAN_MIRROR"
)

// DefaultMirror serves when neither EnvMirror nor apt's sources name one.
const DefaultMirror = "http://deb.debian.org/debian"

// buildTimeout bounds debootstrap on a slow mirror and a busy machine.
const buildTimeout = 20 * time.Minute

// ErrUnavailable says debootstrap cannot run here at all; its message says why.
var ErrUnavailable = errors.New("debootstrap cannot run")

// Path is where the tarball of this machine's architecture is cached.
func Path() (string, error) {
	dir, err := machinecache.Dir(EnvCache, "debian")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%s.tar.gz", Suite, Variant, debianArch())), nil
}

// Tarball returns the cached tarball, building it first when it is missing.
// When debootstrap cannot run here the test is skipped, saying why; with CI
// set it fails instead, as `make deps` installs it there.
func Tarball(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	path, err := Build(ctx, testWriter{t})
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
		t.Skipf("no Debian image to test with: %v", err)
	}
	if err != nil {
		t.Fatalf("debiantest: %v", err)
	}
	return path
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Build returns the cached tarball, or runs debootstrap and caches its
// result. A lock makes concurrent callers wait for one build. Progress goes
// to log. The error wraps ErrUnavailable when debootstrap is not installed
// or this process is not root.
func Build(ctx context.Context, log io.Writer) (string, error) {
	out, err := Path()
	if err != nil {
		return "", err
	}
	if regular(out) {
		return out, nil
	}
	bin, err := debootstrap()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("debian cache: %w", err)
	}
	unlock, err := machinecache.Lock(ctx, filepath.Join(dir, ".lock"), "Debian root file system", log)
	if err != nil {
		return "", err
	}
	defer unlock()
	if regular(out) { // built by whoever held the lock before us
		return out, nil
	}
	mirror, err := Mirror()
	if err != nil {
		return "", err
	}
	start := time.Now()
	fmt.Fprintf(log, "debiantest: debootstrap --variant=%s %s from %s into %s (a minute or more, once per machine)\n", Variant, Suite, mirror, out)
	if err := build(ctx, bin, mirror, out, log); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "debiantest: built %s in %v\n", out, time.Since(start).Round(time.Second))
	return out, nil
}

func regular(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// debootstrap finds the program and checks that it can run: it needs root
// to create device nodes and change owners.
func debootstrap() (string, error) {
	bin := ""
	for _, name := range []string{"debootstrap", "/usr/sbin/debootstrap"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return "", fmt.Errorf("%w: it is not installed; install it with `apt-get install debootstrap` or `make deps`", ErrUnavailable)
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: it needs root (to create device nodes and set owners), and this process runs as uid %d; run `make deps` or the tests as root", ErrUnavailable, os.Geteuid())
	}
	return bin, nil
}

// build runs debootstrap into a temporary directory next to out, packs the
// result without the downloaded packages, and renames the tarball into place.
func build(ctx context.Context, bin, mirror, out string, log io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Dir(out), "root-")
	if err != nil {
		return fmt.Errorf("debian cache: %w", err)
	}
	root := filepath.Join(tmp, "root")
	defer removeUnmounted(tmp, log)
	cmd := exec.CommandContext(ctx, bin, "--variant="+Variant, "--arch="+debianArch(), Suite, root, mirror)
	cmd.Stdout, cmd.Stderr = log, log
	// TERM, not KILL, when ctx ends: debootstrap unmounts /proc and /sys of
	// the new root on its way out.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap --variant=%s %s %s %s: %w (its output is above; set %s to another mirror if this one fails)",
			Variant, Suite, root, mirror, err, EnvMirror)
	}
	for _, junk := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"} {
		files, _ := filepath.Glob(filepath.Join(root, junk))
		for _, f := range files {
			if err := os.Remove(f); err != nil {
				return fmt.Errorf("debian root: %w", err)
			}
		}
	}
	part := out + ".part"
	tar := exec.CommandContext(ctx, "tar", "--numeric-owner", "--exclude=./dev/*", "-C", root, "-czf", part, ".")
	if msg, err := tar.CombinedOutput(); err != nil {
		os.Remove(part)
		return fmt.Errorf("tar of the Debian root %s: %w: %s", root, err, msg)
	}
	return os.Rename(part, out)
}

// removeUnmounted removes dir unless something is still mounted below it
// (debootstrap killed before it could unmount /proc of the new root): then
// it leaves dir alone, rather than reach through the mount.
func removeUnmounted(dir string, log io.Writer) {
	if m := mountsBelow(dir); len(m) > 0 {
		fmt.Fprintf(log, "debiantest: leaving %s in place: %s still mounted there; unmount, then remove it\n", dir, strings.Join(m, ", "))
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(log, "debiantest: removing %s: %v\n", dir, err)
	}
}

func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"(mount table unreadable: " + err.Error() + ")"}
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// debianArch is this machine's architecture as Debian names it.
func debianArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

// Mirror is the Debian mirror to bootstrap from: $AGENTSCALER_DEBIAN_MIRROR,
// else the first one apt's sources (/etc/apt/sources.list and
// sources.list.d, one-line or deb822) list for Suite, else DefaultMirror.
func Mirror() (string, error) {
	if m := os.Getenv(EnvMirror); m != "" {
		return m, nil
	}
	files := []string{"/etc/apt/sources.list"}
	for _, pattern := range []string{"*.list", "*.sources"} {
		more, _ := filepath.Glob(filepath.Join("/etc/apt/sources.list.d", pattern))
		files = append(files, more...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return "", fmt.Errorf("apt sources: %w", err)
		}
		if m := mirrorIn(string(data), strings.HasSuffix(f, ".sources")); m != "" {
			return m, nil
		}
	}
	return DefaultMirror, nil
}

// mirrorIn returns the first URI of a deb entry for Suite in an apt sources
// file: deb822 stanzas (Types, URIs, Suites) or one-line entries.
func mirrorIn(text string, deb822 bool) string {
	if !deb822 {
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 1 && strings.HasPrefix(f[1], "[") { // deb [options] uri suite
				end := slices.IndexFunc(f[1:], func(s string) bool { return strings.HasSuffix(s, "]") })
				if end < 0 {
					continue
				}
				f = append(f[:1], f[end+2:]...)
			}
			if len(f) >= 3 && f[0] == "deb" && f[2] == Suite {
				return f[1]
			}
		}
		return ""
	}
	for stanza := range strings.SplitSeq(text, "\n\n") {
		fields := map[string][]string{}
		for line := range strings.Lines(stanza) {
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
			}
		}
		if slices.Contains(fields["types"], "deb") && slices.Contains(fields["suites"], Suite) && len(fields["uris"]) > 0 &&
			!slices.Contains(fields["enabled"], "no") {
			return fields["uris"][0]
		}
	}
	return ""
}
