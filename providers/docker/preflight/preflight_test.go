package preflight_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/agentscaler/agentscaler/internal/testenv/debiantest"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/providers/docker"
	"github.com/agentscaler/agentscaler/providers/docker/preflight"
)

// Every test here checks images built in the test on one private dockerd.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// opTimeout bounds an import, a build or a check; generous, the machine is shared.
const opTimeout = 3 * time.Minute

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// provider is a Docker provider on the shared engine that never pulls:
// every image here is built locally.
func provider(t *testing.T) *docker.Provider {
	t.Helper()
	p, err := docker.New(docker.Options{Host: dockertest.Shared(t).Host, Pull: docker.PullNever, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// engineClient builds the test images; the checks themselves go through
// the provider.
func engineClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(dockertest.Shared(t).Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// file is one entry of a test tar: a regular file, or a directory when
// its name ends in /.
type file struct {
	name     string
	mode     int64
	uid, gid int
	body     string
}

func tarOf(t *testing.T, files []file) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// drain reads an engine progress stream to its end and fails on an error in it.
func drain(t *testing.T, what string, rc io.ReadCloser) {
	t.Helper()
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if m.Error != "" {
			t.Fatalf("%s: %s", what, m.Error)
		}
	}
}

// importImage makes ref from a root file system tar (gzipped or not), with
// Dockerfile changes (CMD, USER, ENV...) and a platform ("" for the engine's).
func importImage(t *testing.T, ref string, rootfs io.Reader, platform string, changes ...string) {
	t.Helper()
	rc, err := engineClient(t).ImageImport(ctxFor(t), image.ImportSource{Source: rootfs, SourceName: "-"}, ref,
		image.ImportOptions{Changes: changes, Platform: platform})
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	drain(t, "import "+ref, rc)
}

// buildImage builds ref with the classic builder from a Dockerfile and the
// files of its context; no RUN, so no network is needed.
func buildImage(t *testing.T, ref, dockerfile string, context []file) {
	t.Helper()
	ctxTar := tarOf(t, append([]file{{name: "Dockerfile", mode: 0o644, body: dockerfile}}, context...))
	resp, err := engineClient(t).ImageBuild(ctxFor(t), ctxTar, build.ImageBuildOptions{
		Tags: []string{ref}, Version: build.BuilderV1, Remove: true, ForceRemove: true, NetworkMode: "none"})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	drain(t, "build "+ref, resp.Body)
}

// debianImage imports the cached debootstrap bookworm (minbase) as ref,
// as it comes: no CMD, no USER, the engine's default PATH.
func debianImage(t *testing.T, ref string) {
	t.Helper()
	f, err := os.Open(debiantest.Tarball(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	importImage(t, ref, f, "")
}

func check(t *testing.T, ref string, opts preflight.Options) preflight.Report {
	t.Helper()
	rep, err := preflight.Check(ctxFor(t), provider(t), ref, opts)
	if err != nil {
		t.Fatalf("Check(%s): %v", ref, err)
	}
	var out strings.Builder
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", out.String())
	return rep
}

// expect compares the report with the outcome wanted for each check, and
// the detail of each with a fragment it must contain.
func expect(t *testing.T, rep preflight.Report, want map[string]bool, details map[string]string) {
	t.Helper()
	if len(rep.Results) != len(want) {
		t.Errorf("%d results, want %d: %+v", len(rep.Results), len(want), rep.Results)
	}
	for name, ok := range want {
		res, found := rep.Result(name)
		switch {
		case !found:
			t.Errorf("no %s check in the report", name)
		case res.OK != ok:
			t.Errorf("%s: OK=%v, want %v (detail %q)", name, res.OK, ok, res.Detail)
		case !res.OK && res.Fix == "":
			t.Errorf("%s failed without a fix", name)
		}
	}
	for name, frag := range details {
		if res, _ := rep.Result(name); !strings.Contains(res.Detail, frag) {
			t.Errorf("%s: detail %q, want it to say %q", name, res.Detail, frag)
		}
	}
}

// waiterBinary is a static executable to put in FROM scratch images.
func waiterBinary(t *testing.T) string { return string(dockertest.WaiterBinary(t)) }

func TestCheckImageScratch(t *testing.T) {
	const ref = "agentscaler-test/preflight-scratch:1"
	importImage(t, ref, tarOf(t, []file{{name: "app/", mode: 0o755}, {name: "app/waiter", mode: 0o755, body: waiterBinary(t)}}), "",
		`CMD ["/app/waiter"]`)
	rep := check(t, ref, preflight.Options{})
	expect(t, rep, map[string]bool{
		"platform": true, "glibc": false, "libicu": false, "agent": false, "start": true,
		"entrypoint": true, "shell": false, "PATH": true, "user": false, "work": true,
	}, map[string]string{
		"glibc": "no C library", "shell": "no sh nor bash", "user": "root", "agent": "/azp/agent lacks config.sh, run.sh, bin/Agent.Listener",
		"start": "/app/waiter", "platform": runtime.GOARCH,
	})
	if rep.Failed() != 5 {
		t.Errorf("Failed() = %d, want 5", rep.Failed())
	}
}

// TestCheckImageScratchMusl: a musl loader is told from no C library at
// all; an ENTRYPOINT in an image without sh is not run, and said so; the
// pool's capabilities must match the image's platform.
func TestCheckImageScratchMusl(t *testing.T) {
	const ref = "agentscaler-test/preflight-musl:1"
	importImage(t, ref, tarOf(t, []file{{name: "lib/", mode: 0o755}, {name: "lib/ld-musl-x86_64.so.1", mode: 0o755, body: "not really musl"}}), "",
		`ENTRYPOINT ["/lib/ld-musl-x86_64.so.1"]`, "USER 1000")
	other := map[string]string{"amd64": "ARM64"}[runtime.GOARCH]
	if other == "" {
		other = "X64"
	}
	rep := check(t, ref, preflight.Options{Capabilities: map[string]string{"agent.os": "Linux", "Agent.OSArchitecture": other}})
	expect(t, rep, map[string]bool{
		"platform": false, "glibc": false, "libicu": false, "agent": false, "start": true,
		"entrypoint": false, "shell": false, "PATH": true, "user": true, "work": false,
	}, map[string]string{
		"platform":   "linux/" + runtime.GOARCH + ", but the pool's capability Agent.OSArchitecture is " + other,
		"glibc":      "musl libc (/lib/ld-musl-x86_64.so.1)",
		"entrypoint": "not tested, the image has no sh", "shell": "no sh nor bash", "user": "uid 1000",
		"work": "cannot be created: uid 1000 cannot write / (owner 0:0, mode 0755)",
	})
}

func TestCheckImageDebian(t *testing.T) {
	const ref = "agentscaler-test/preflight-debian:1"
	debianImage(t, ref)
	rep := check(t, ref, preflight.Options{})
	expect(t, rep, map[string]bool{
		"platform": true, "glibc": true, "libicu": false, "agent": false, "start": false,
		"entrypoint": true, "shell": true, "PATH": true, "user": false, "work": true,
	}, map[string]string{
		"glibc": "libc.so.6", "shell": "/usr/bin/sh and /usr/bin/bash on PATH", "start": "no CMD nor ENTRYPOINT",
		"user": "root: the image sets no USER",
	})
}

// agentFiles is an agent laid out as the image contract says, with
// stand-ins for the agent's scripts.
func agentFiles(uid int) []file {
	own := func(f file) file { f.uid, f.gid = uid, uid; return f }
	return []file{
		own(file{name: "azp/", mode: 0o755}), own(file{name: "azp/agent/", mode: 0o755}), own(file{name: "azp/agent/bin/", mode: 0o755}),
		own(file{name: "azp/start.sh", mode: 0o755, body: "#!/usr/bin/env bash\nexec /azp/agent/run.sh --once \"$@\"\n"}),
		own(file{name: "azp/agent/config.sh", mode: 0o755, body: "#!/bin/bash\n"}),
		own(file{name: "azp/agent/run.sh", mode: 0o755, body: "#!/bin/bash\n"}),
		own(file{name: "azp/agent/bin/Agent.Listener", mode: 0o755, body: "#!/bin/bash\n"}),
	}
}

// TestCheckImageDebianAgent: an image that keeps the contract passes every
// check, an ENTRYPOINT that runs its arguments included.
func TestCheckImageDebianAgent(t *testing.T) {
	const base, ref = "agentscaler-test/preflight-debian:agent-base", "agentscaler-test/preflight-debian:agent"
	debianImage(t, base)
	ctx := append(agentFiles(1001), file{name: "entry.sh", mode: 0o755, body: "#!/bin/sh\necho entrypoint\nexec \"$@\"\n"})
	buildImage(t, ref, "FROM "+base+"\n"+
		"COPY --chown=1001:1001 azp /azp\nCOPY entry.sh /usr/local/bin/entry.sh\n"+
		"ENV DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1\n"+
		"USER 1001:1001\n"+
		`ENTRYPOINT ["/usr/local/bin/entry.sh"]`+"\n"+
		`CMD ["/azp/start.sh"]`+"\n", ctx)
	rep := check(t, ref, preflight.Options{Capabilities: map[string]string{"Agent.OS": "Linux"}})
	expect(t, rep, map[string]bool{
		"platform": true, "glibc": true, "libicu": true, "agent": true, "start": true,
		"entrypoint": true, "shell": true, "PATH": true, "user": true, "work": true,
	}, map[string]string{
		"start": "/usr/local/bin/entry.sh, run by /bin/sh", "entrypoint": "runs its arguments",
		"work": "/azp/agent/_work can be created by uid 1001 in /azp/agent (owner 1001:1001, mode 0755)",
	})
	var out strings.Builder
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "all 10 checks passed") || strings.Contains(out.String(), "✘") {
		t.Errorf("report of a passing image:\n%s", out.String())
	}
}

// TestCheckImageDebianBroken: an ENTRYPOINT that ignores its arguments, a
// tool directory only a .bashrc puts on PATH, and an agent folder the user
// cannot write are each found, and said with their fix.
func TestCheckImageDebianBroken(t *testing.T) {
	const base, ref = "agentscaler-test/preflight-debian:broken-base", "agentscaler-test/preflight-debian:broken"
	debianImage(t, base)
	ctx := append(agentFiles(0),
		file{name: "tools/", mode: 0o755}, file{name: "tools/mytool", mode: 0o755, body: "#!/bin/sh\n"},
		file{name: "bashrc", mode: 0o644, body: "# tools\nexport PATH=\"/opt/tools/bin:$PATH\"\n"},
		file{name: "profile", mode: 0o644, body: "export NVM_DIR=\"$HOME/.nvm\"\n[ -s \"$NVM_DIR/nvm.sh\" ] && . \"$NVM_DIR/nvm.sh\"\n"})
	buildImage(t, ref, "FROM "+base+"\n"+
		"COPY azp /azp\nCOPY tools /opt/tools/bin\nCOPY bashrc /root/.bashrc\nCOPY profile /etc/profile.d/nvm.sh\n"+
		"USER 1001:1001\n"+
		`ENTRYPOINT ["/bin/sh", "-c", "echo starting the agent; exit 3"]`+"\n", ctx)
	rep := check(t, ref, preflight.Options{Work: "/srv/work", Mounts: []string{"/var/run/docker.sock"}})
	expect(t, rep, map[string]bool{
		"platform": true, "glibc": true, "libicu": false, "agent": true, "start": true,
		"entrypoint": false, "shell": true, "PATH": false, "user": true, "work": false,
	}, map[string]string{
		"entrypoint": "does not run its arguments", "PATH": "/opt/tools/bin (PATH in /root/.bashrc)",
		"work": "/srv/work cannot be created: uid 1001 cannot write /srv (owner 0:0, mode 0755)",
	})
	if res, _ := rep.Result("PATH"); !strings.Contains(res.Detail, "what nvm.sh adds (sourced in /etc/profile.d/nvm.sh)") {
		t.Errorf("PATH: %q does not name the nvm.sh sourced at login", res.Detail)
	}
	if res, _ := rep.Result("entrypoint"); !strings.Contains(res.Detail, "exited 3") || !strings.Contains(res.Detail, "starting the agent") {
		t.Errorf("entrypoint: %q does not give the exit status and output", res.Detail)
	}
	// On a mount, the work folder is the mount's business.
	rep = check(t, ref, preflight.Options{Work: "/srv/work", Mounts: []string{"/srv"}})
	if res, _ := rep.Result("work"); !res.OK || !strings.Contains(res.Detail, "on the pool's mount at /srv") {
		t.Errorf("work on a mount: %+v", res)
	}
}

// TestCheckImageMissing: an image the engine lacks, with pull never, is an
// error that says so, not a report.
func TestCheckImageMissing(t *testing.T) {
	_, err := preflight.Check(ctxFor(t), provider(t), "agentscaler-test/preflight-absent:1", preflight.Options{})
	if err == nil || !strings.Contains(err.Error(), "pull policy is never") {
		t.Errorf("Check of a missing image: %v; want an error naming the pull policy", err)
	}
}
