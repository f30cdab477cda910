package images_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentscaler/agentscaler/internal/testenv/debiantest"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
)

const bbSecret = "bb-oauth-secret-9f3e"

// TestBitbucketSecretEnv runs secret-env.sh before a stand-in runner that
// prints what it got: the secret from the file when one is named (and the
// _FILE variable gone), the variable as it is otherwise; an unreadable file
// or no command stops it without printing the secret.
func TestBitbucketSecretEnv(t *testing.T) {
	sh := tool(t, "sh", "dash")
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(bbSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	runner := []string{"sh", "-c", `printf '%s|%s' "${OAUTH_CLIENT_SECRET:-none}" "${OAUTH_CLIENT_SECRET_FILE:-unset}"`}
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string // the runner's output; "" when it must not run
	}{
		{"file", []string{"OAUTH_CLIENT_SECRET_FILE=" + file}, runner, bbSecret + "|unset"},
		{"variable", []string{"OAUTH_CLIENT_SECRET=" + bbSecret}, runner, bbSecret + "|unset"},
		{"neither", nil, runner, "none|unset"},
		{"unreadable file", []string{"OAUTH_CLIENT_SECRET_FILE=" + filepath.Join(dir, "missing")}, runner, ""},
		{"empty file", []string{"OAUTH_CLIENT_SECRET_FILE=" + empty}, runner, ""},
		{"no command", []string{"OAUTH_CLIENT_SECRET_FILE=" + file}, nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(sh, append([]string{"bitbucket/secret-env.sh"}, c.args...)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, c.env...)
			out, err := cmd.CombinedOutput()
			switch {
			case c.want != "" && (err != nil || string(out) != c.want):
				t.Errorf("got %q (%v), want %q", out, err, c.want)
			case c.want == "" && err == nil:
				t.Errorf("ran: %q; want a non-zero exit", out)
			case c.want == "" && strings.Contains(string(out), bbSecret):
				t.Errorf("the secret is in the output: %q", out)
			}
		})
	}
}

// TestBitbucketRunnerImage builds the image with build.sh on a real engine,
// FROM a stand-in runner image (Debian, with an ENTRYPOINT and a CMD of its
// own that print the secret the runner would read), and runs it as the
// Docker provider does with token_file: the secret file mounted, its path in
// OAUTH_CLIENT_SECRET_FILE. The runner's own command runs and reads
// OAUTH_CLIENT_SECRET; the container's configuration never holds it.
func TestBitbucketRunnerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images on a Docker engine")
	}
	docker := tool(t, "docker", "docker.io")
	sh := tool(t, "sh", "dash")
	tool(t, "jq", "jq")
	tarball := debiantest.Tarball(t)
	t.Setenv("DOCKER_HOST", dockertest.Start(t).Host) // for docker and build.sh alike
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	must(run(t, ".", docker, "import", tarball, "bb-stand-in-base:test"))
	standIn := t.TempDir()
	if err := os.WriteFile(filepath.Join(standIn, "Dockerfile"), []byte(`FROM bb-stand-in-base:test
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo \"runner read ${OAUTH_CLIENT_SECRET:-nothing}, file ${OAUTH_CLIENT_SECRET_FILE:-unset}\""]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	must(run(t, ".", docker, "build", "--network", "none", "-t", "bb-stand-in:test", standIn))

	if out, err := run(t, ".", sh, "bitbucket/build.sh", "bb-stand-in:test", "-t", "bb-runner:test"); err == nil {
		t.Errorf("build.sh with the tag after the image ran: %s", out)
	}
	must(run(t, ".", sh, "bitbucket/build.sh", "-t", "bb-runner:test", "bb-stand-in:test"))

	secrets := t.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "OAUTH_CLIENT_SECRET"), []byte(bbSecret), 0o644); err != nil {
		t.Fatal(err)
	}
	out := must(run(t, ".", docker, "run", "--name", "bb-runner-test", "--network", "none", "-v", secrets+":/run/agentscaler:ro",
		"-e", "OAUTH_CLIENT_SECRET_FILE=/run/agentscaler/OAUTH_CLIENT_SECRET", "bb-runner:test"))
	if want := "runner read " + bbSecret + ", file unset"; strings.TrimSpace(out) != want {
		t.Errorf("the runner printed %q, want %q", strings.TrimSpace(out), want)
	}
	if inspect := must(run(t, ".", docker, "inspect", "bb-runner-test")); strings.Contains(inspect, bbSecret) {
		t.Error("docker inspect shows the secret")
	}
	must(run(t, ".", docker, "rm", "bb-runner-test"))
}
