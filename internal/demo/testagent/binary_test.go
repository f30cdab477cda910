package testagent

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/adoemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
)

// buildStatic builds cmd/testagent with cgo off, as the agent image does,
// and checks the result is a static executable: no PT_INTERP, so it needs
// no dynamic loader and runs in a FROM scratch image.
func buildStatic(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the test agent: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "testagent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", bin, "./cmd/testagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the test agent is not an ELF executable: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("the test agent is dynamically linked (it has a PT_INTERP program header)")
		}
	}
	return bin
}

// process is the test agent binary running with exactly the given
// environment.
type process struct {
	cmd            *exec.Cmd
	done           chan struct{}
	stdout, stderr syncbuf.Buffer
}

func startBinary(t *testing.T, bin string, env map[string]string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin), done: make(chan struct{})}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		_ = p.cmd.Wait() // the exit code is read from ProcessState
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // an error means it has exited
		<-p.done
	})
	return p
}

func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(waitLimit):
		t.Fatalf("the test agent did not exit within %s; stdout:\n%s\nstderr:\n%s", waitLimit, p.stdout.String(), p.stderr.String())
		return 0
	}
}

func TestStaticBinary(t *testing.T) {
	bin := buildStatic(t)
	f := newFixture(t, adoemu.Options{})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testPAT+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(name string) map[string]string {
		e := f.env(name, "AZP_TOKEN_FILE", tokenFile)
		delete(e, "AZP_TOKEN") // the file alone carries the token
		return e
	}

	t.Run("one job", func(t *testing.T) {
		id := f.emu.QueueJob(testPool, adoemu.Job{Name: "build", Duration: 100 * time.Millisecond})
		p := startBinary(t, bin, env("linux-r1"))
		if code := p.wait(t); code != 0 {
			t.Fatalf("exit code %d; stderr %s", code, p.stderr.String())
		}
		if rq := f.request(id); rq.Agent != "linux-r1" || rq.Result != "succeeded" || rq.ReceiveTime.IsZero() {
			t.Errorf("job: %+v", rq)
		}
		wantLines(t, p.stdout.String(), "registered", "job received", "job finished", "unregistered")
		f.wantNoAgents()
	})

	t.Run("SIGTERM mid-job", func(t *testing.T) {
		id := f.emu.QueueJob(testPool, adoemu.Job{Duration: time.Hour})
		p := startBinary(t, bin, env("linux-r2"))
		waitFor(t, "the job to start", func() bool { return !f.request(id).ReceiveTime.IsZero() })
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 2 {
			t.Errorf("exit code %d after SIGTERM, want 2; stderr %s", code, p.stderr.String())
		}
		if rq := f.request(id); rq.Result != "canceled" {
			t.Errorf("job after SIGTERM: %+v, want canceled", rq)
		}
		f.wantNoAgents()
		if out := p.stdout.String() + p.stderr.String(); strings.Contains(out, testPAT) {
			t.Errorf("the output holds the token:\n%s", out)
		}
	})
}
