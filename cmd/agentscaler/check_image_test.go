package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
)

// TestCheckImageCommand checks the waiter image (FROM scratch, a static
// binary alone) on a real engine, named by DOCKER_HOST: a table of ✔ and
// ✘ with a fix under each ✘, and exit status 1.
func TestCheckImageCommand(t *testing.T) {
	e := dockertest.Shared(t)
	const ref = "agentscaler-test/waiter:check-image"
	e.WaiterImage(t, ref)
	t.Setenv("DOCKER_HOST", e.Host)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"check-image", ref}, &stdout, &stderr, testEnv)
	if exitCode(err) != 1 {
		t.Fatalf("check-image of a FROM scratch image: %v (exit %d), want exit 1; stderr:\n%s", err, exitCode(err), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"image " + ref + " (sha256:",
		"✔  platform", "✘  glibc", "no C library", "✘  shell", "✔  user        USER 65534:65534",
		"✘  entrypoint", "not tested, the image has no sh",
		"fix: build FROM a glibc distribution",
		"6 of 10 checks failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n, fixes := strings.Count(out, "✘"), strings.Count(out, "fix: "); n != 6 || fixes != n {
		t.Errorf("%d ✘ and %d fixes, want 6 of each:\n%s", n, fixes, out)
	}
}

// TestCheckImagePool checks with a pool's Docker settings: its host and
// its pull policy (never, so an image the engine lacks is an error that
// names the policy), and its agent.image by default.
func TestCheckImagePool(t *testing.T) {
	e := dockertest.Shared(t)
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	conf := `azuredevops: {url: https://dev.azure.com/contoso, token_env: AZP_TOKEN}
webhook: {basic_auth: {username: azdo, password_env: HOOK_PASSWORD}}
pools:
  - name: linux
    azure_pool: Default
    agent: {image: agentscaler-test/absent:1}
    docker: {host: "` + e.Host + `", pull: never}
  - name: mem
    azure_pool: Other
    provider: memory
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"check-image", "--config", path, "--pool", "linux"}, &stdout, &stderr, testEnv)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "agentscaler-test/absent:1") || !strings.Contains(err.Error(), "pull policy is never") {
		t.Errorf("check-image --pool with a missing image: %v (exit %d); want an error naming the image and the pull policy", err, exitCode(err))
	}

	const ref = "agentscaler-test/waiter:check-pool"
	e.WaiterImage(t, ref)
	stdout.Reset()
	err = run(t.Context(), []string{"check-image", "--config", path, "--pool", "linux", ref}, &stdout, &stderr, testEnv)
	if exitCode(err) != 1 || !strings.Contains(stdout.String(), "image "+ref) {
		t.Errorf("check-image --pool linux %s: %v; output:\n%s", ref, err, stdout.String())
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"check-image"}, "name the image to check"},
		{[]string{"check-image", "--config", path, "img"}, "--config is read only with --pool"},
		{[]string{"check-image", "--config", path, "--pool", "nope"}, "no such pool in the configuration; it has linux, mem"},
		{[]string{"check-image", "--config", path, "--pool", "mem", "img"}, "the pool's provider is memory"},
		{[]string{"check-image", "a", "b"}, `unexpected argument "b"`},
	} {
		err := run(context.Background(), c.args, &stdout, &stderr, testEnv)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v (exit %d), want a usage error saying %q", c.args, err, exitCode(err), c.want)
		}
	}
}
