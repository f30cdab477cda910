package dockertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSharedIsOneEngine(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatalf("Shared returned two engines: %s and %s", a.Host, b.Host)
	}
	if a.dir != "" && !strings.HasPrefix(a.Host, "unix://"+a.dir+"/") {
		t.Errorf("Host %s is not under the engine's directory %s", a.Host, a.dir)
	}
	if a.dir != "" && len(a.socket) >= 108 {
		t.Errorf("socket path %s is %d bytes; unix sockets allow fewer than 108", a.socket, len(a.socket))
	}
	ctx, cancel := context.WithTimeout(t.Context(), apiTimeout)
	defer cancel()
	if a.dir != "" {
		if err := a.ping(ctx); err != nil {
			t.Errorf("the shared engine does not answer: %v", err)
		}
	}
}

// TestStopLeavesNothingBehind starts an engine of its own, leaves a
// container running in it, and checks that when the test using it ends no
// process, mount or file of it remains.
func TestStopLeavesNothingBehind(t *testing.T) {
	if os.Getenv(EnvHost) != "" {
		t.Skipf("%s is set: no engine is started here", EnvHost)
	}
	var e *Engine
	t.Run("engine", func(t *testing.T) {
		e = Start(t)
		const ref = "dockertest/waiter:1"
		e.WaiterImage(t, ref)
		e.WaiterImage(t, ref) // a second import of the same ref is a no-op
		p, err := docker.New(docker.Options{Host: e.Host, Network: "none", Pull: docker.PullNever})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		spec := providers.AgentSpec{Name: "left-r1", Pool: "left", Request: 1, Image: ref}
		if _, err := p.Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ins, err := p.List(ctx, "left")
			if err != nil {
				t.Fatal(err)
			}
			if len(ins) == 1 && ins[0].State == providers.StateRunning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the waiter did not run: %+v", ins)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(processesUnder(e.dir)) == 0 {
			t.Errorf("no process runs from %s while the engine is up; the check below would prove nothing", e.dir)
		}
		if m, _ := mountsUnder(e.dir); len(m) == 0 {
			t.Errorf("nothing is mounted under %s while a container runs; the check below would prove nothing", e.dir)
		}
	})
	if e == nil || t.Failed() {
		return
	}
	select {
	case <-e.exited:
	default:
		t.Errorf("dockerd (pid %d) still runs after its test ended", e.cmd.Process.Pid)
	}
	if pids := processesUnder(e.dir); len(pids) > 0 {
		t.Errorf("processes still run from %s: %v", e.dir, pids)
	}
	if m, err := mountsUnder(e.dir); err != nil || len(m) > 0 {
		t.Errorf("still mounted under %s: %v (%v)", e.dir, m, err)
	}
	if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists: %v", e.dir, err)
	}
}

func TestSweepRemovesOnlyDirsOfGoneOwners(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(owner string) string {
		dir, err := os.MkdirTemp(tempBase(), "dk")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, "data", "overlay2"), 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	leftover := mk(strconv.Itoa(gone.Process.Pid))
	live := mk(strconv.Itoa(os.Getpid()))
	unowned := mk("")
	sweep()
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of a gone test process is still there: %v", err)
	}
	for _, dir := range []string{live, unowned} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("sweep removed %s, which is in use or not ours: %v", dir, err)
		}
	}
}

func TestStartWithoutDockerdSaysHowToInstallIt(t *testing.T) {
	t.Setenv(EnvHost, "")
	saved := dockerdPaths
	dockerdPaths = []string{"/nonexistent/dockerd"}
	defer func() { dockerdPaths = saved }()
	_, err := start()
	if err == nil || !strings.Contains(err.Error(), "apt-get install docker.io") || !strings.Contains(err.Error(), EnvHost) {
		t.Errorf("start without dockerd: %v; want a message naming apt-get install docker.io and %s", err, EnvHost)
	}
}

func TestEnvHostStartsNothing(t *testing.T) {
	t.Setenv(EnvHost, "tcp://127.0.0.1:2375")
	e, err := start()
	if err != nil || e.Host != "tcp://127.0.0.1:2375" || e.cmd != nil {
		t.Fatalf("start with %s set = %+v, %v; want that host and no process", EnvHost, e, err)
	}
	if err := e.stop(); err != nil {
		t.Errorf("stop of a given engine: %v", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/dk1/data`:          "/tmp/dk1/data",
		`/tmp/dk1/with\040space`: "/tmp/dk1/with space",
		`/tmp/dk1/tab\011x`:      "/tmp/dk1/tab\tx",
		`/tmp/dk1/short\04`:      `/tmp/dk1/short\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
