package images_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The GitHub runner image: an Ubuntu (glibc) base, the runner downloaded at
// build time at a pinned version, a numeric non-root user, a CMD running the
// start script and no ENTRYPOINT.
func TestRunnerDockerfileRequirements(t *testing.T) {
	ins := parseDockerfile(t, runnerDockerfile)
	if from, _ := last(ins, "FROM"); !strings.HasPrefix(from, "ubuntu:") {
		t.Errorf("FROM %s; want an Ubuntu LTS (glibc) base", from)
	}
	if v, ok := argDefault(ins, "RUNNER_VERSION"); !ok || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("ARG RUNNER_VERSION default %q; want a pinned version such as 2.329.0", v)
	}
	runs := strings.Join(runArgs(ins), " ")
	if !strings.Contains(runs, "github.com/actions/runner/releases/download/v${RUNNER_VERSION}/") || !strings.Contains(runs, "installdependencies.sh") {
		t.Errorf("the runner is not downloaded at RUNNER_VERSION and its dependencies installed at build time: %s", runs)
	}
	if user, _ := last(ins, "USER"); !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
		t.Errorf("USER %q; want a numeric non-root uid", user)
	}
	if _, ok := last(ins, "ENTRYPOINT"); ok {
		t.Error("an ENTRYPOINT; use CMD")
	}
	if cmd, _ := last(ins, "CMD"); !strings.Contains(cmd, "start.sh") {
		t.Errorf("CMD %q; want the start script", cmd)
	}
}

// TestRunnerStartScript runs start.sh beside a stand-in run.sh that records
// its arguments and the configuration it was given: from the variable or
// from the _FILE variant, the configuration reaches the runner through its
// environment only, no output shows it, and without one it stops.
func TestRunnerStartScript(t *testing.T) {
	bash := tool(t, "bash", "bash")
	const jit = "eyJzZWNyZXQiOiJqaXQtY29uZmlnIn0="
	for _, c := range []struct {
		name    string
		env     func(dir string) []string
		wantRun bool
	}{
		{"variable", func(string) []string { return []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + jit} }, true},
		{"file", func(dir string) []string {
			f := filepath.Join(dir, "jit")
			if err := os.WriteFile(f, []byte(jit), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"ACTIONS_RUNNER_INPUT_JITCONFIG_FILE=" + f}
		}, true},
		{"unreadable file", func(dir string) []string {
			return []string{"ACTIONS_RUNNER_INPUT_JITCONFIG_FILE=" + filepath.Join(dir, "missing")}
		}, false},
		{"none", func(string) []string { return nil }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			script, err := os.ReadFile("github/start.sh")
			if err != nil {
				t.Fatal(err)
			}
			record := filepath.Join(dir, "record")
			if err := os.WriteFile(filepath.Join(dir, "start.sh"), script, 0o755); err != nil {
				t.Fatal(err)
			}
			stub := "#!/usr/bin/env bash\nprintf 'args=%d\\nconfig=%s\\nfile=%s\\n' \"$#\" \"$ACTIONS_RUNNER_INPUT_JITCONFIG\" \"${ACTIONS_RUNNER_INPUT_JITCONFIG_FILE:-}\" > " + record + "\n"
			if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bash, filepath.Join(dir, "start.sh"))
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, c.env(dir)...)
			out, err := cmd.CombinedOutput()
			if strings.Contains(string(out), jit) {
				t.Errorf("the output shows the configuration:\n%s", out)
			}
			got, _ := os.ReadFile(record)
			if !c.wantRun {
				if err == nil || len(got) != 0 {
					t.Errorf("started the runner without a configuration (err %v):\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("start.sh: %v\n%s", err, out)
			}
			if want := "args=0\nconfig=" + jit + "\nfile=\n"; string(got) != want {
				t.Errorf("run.sh got %q; want no arguments and the configuration in its environment", got)
			}
		})
	}
}
