package docker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/testenv/dockertest"
	"github.com/agentscaler/agentscaler/providers"
	"github.com/agentscaler/agentscaler/providers/docker"
)

// Every test here runs against a real engine: one private dockerd for the
// package, and the waiter image standing in for the agent.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// waiterRef is the local image holding the waiter.
const waiterRef = "agentscaler-test/waiter:1"

// opTimeout bounds one call in a test; generous, the machine is shared.
const opTimeout = 2 * time.Minute

// engine returns the shared engine's address, with the waiter image on it.
func engine(t *testing.T) string {
	t.Helper()
	e := dockertest.Shared(t)
	e.WaiterImage(t, waiterRef)
	return e.Host
}

// newProvider returns a provider on the shared engine, closed when the
// test ends. Options.Host is filled in.
func newProvider(t *testing.T, opts docker.Options) *docker.Provider {
	t.Helper()
	opts.Host = engine(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := docker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// engineClient is a plain engine client for what the tests check or do
// behind the provider's back.
func engineClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.WithHost(engine(t)), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// uniquePool returns a pool name no other test uses, on this engine or a
// shared one.
func uniquePool(t *testing.T, prefix string) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// spec is a waiter instance for request 1 of a fresh pool.
func spec(t *testing.T, prefix string) providers.AgentSpec {
	pool := uniquePool(t, prefix)
	return providers.AgentSpec{
		Name: ci.Requests.JobName(pool, 1), Pool: pool, Request: 1,
		Image: waiterRef,
		Env:   map[string]string{"AZP_URL": "https://dev.azure.com/contoso", "AZP_POOL": "Default"},
	}
}

// create creates the instance and deletes it when the test ends.
func create(t *testing.T, p *docker.Provider, s providers.AgentSpec) providers.Instance {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := p.Delete(ctx, s.Name); err != nil {
			t.Errorf("cleanup: Delete(%s): %v", s.Name, err)
		}
	})
	in, err := p.Create(ctxFor(t), s)
	if err != nil {
		t.Fatalf("Create(%s): %v", s.Name, err)
	}
	return in
}

// finish makes the waiter in the container exit with code, by writing the
// exit file into it.
func finish(t *testing.T, cli *client.Client, name string, code int) {
	t.Helper()
	archive, err := tarOf(map[string]string{strings.TrimPrefix(dockertest.ExitFile, "/"): strconv.Itoa(code) + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.CopyToContainer(ctxFor(t), name, "/", archive, container.CopyToContainerOptions{}); err != nil {
		t.Fatalf("write %s into %s: %v", dockertest.ExitFile, name, err)
	}
}

// waiterReport polls the container's output until the waiter has printed
// its report, and returns it.
func waiterReport(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for {
		rc, err := cli.ContainerLogs(ctxFor(t), name, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			t.Fatalf("logs of %s: %v", name, err)
		}
		var out, errOut bytes.Buffer
		_, err = stdcopy.StdCopy(&out, &errOut, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("logs of %s: %v", name, err)
		}
		if strings.Contains(out.String(), "waiting\n") {
			return out.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not report within %v; stdout %q, stderr %q", name, opTimeout, out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitState polls List until the instance reaches want.
func awaitState(t *testing.T, p *docker.Provider, pool, name string, want providers.State) providers.Instance {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for {
		ins, err := p.List(ctxFor(t), pool)
		if err != nil {
			t.Fatalf("List(%s): %v", pool, err)
		}
		for _, in := range ins {
			if in.Name == name && in.State == want {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s within %v: %+v", name, want, opTimeout, ins)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
