package dockertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/providers/docker"
)

// The waiter's contract (testdata/waiter): it prints "uid=<n>", then one
// line "file <NAME> sha256=<hex>" (or "error=...") for every variable
// <NAME> ending in _FILE, then "waiting"; it exits with the code written,
// as a number and a newline, into ExitFile.
const (
	ExitFile   = "/exit-code"
	WaiterPath = "/waiter"
	// WaiterUser is the unprivileged user the waiter image runs as, so
	// tests see what a non-root agent can read.
	WaiterUser = "65534:65534"
)

// buildTimeout bounds compiling a test program on a busy machine.
const buildTimeout = 5 * time.Minute

var waiter struct {
	once sync.Once
	bin  []byte
	err  error
}

// WaiterBinary returns the waiter, compiled once per test process as a
// static Linux binary.
func WaiterBinary(t testing.TB) []byte {
	t.Helper()
	waiter.once.Do(func() { waiter.bin, waiter.err = buildWaiter() })
	if waiter.err != nil {
		t.Fatalf("dockertest: build the waiter: %v", waiter.err)
	}
	return waiter.bin
}

func buildWaiter() ([]byte, error) {
	_, self, _, _ := runtime.Caller(0)
	return BuildStatic(filepath.Join(filepath.Dir(self), "testdata", "waiter"))
}

// BuildStatic compiles the main package in the directory src as a static
// Linux binary for this machine's architecture, for an image FROM scratch,
// and returns it.
func BuildStatic(src string) ([]byte, error) {
	out, err := os.MkdirTemp("", "static-build")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(out, filepath.Base(src))
	// go test puts its own go first in PATH.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, &buildError{err: err, output: string(msg)}
	}
	return os.ReadFile(bin)
}

type buildError struct {
	err    error
	output string
}

func (e *buildError) Error() string { return e.err.Error() + ":\n" + e.output }

// WaiterImage makes sure the engine has ref, an image FROM scratch holding
// only the waiter, run as WaiterUser.
func (e *Engine) WaiterImage(t testing.TB, ref string) {
	t.Helper()
	bin := WaiterBinary(t)
	p, err := docker.New(docker.Options{Host: e.Host})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	err = p.ImportImage(ctx, ref, docker.Image{
		Files:      map[string][]byte{WaiterPath: bin},
		Entrypoint: []string{WaiterPath},
		User:       WaiterUser,
	})
	if err != nil {
		t.Fatalf("dockertest: import the waiter as %s: %v", ref, err)
	}
}
