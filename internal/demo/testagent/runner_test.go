package testagent

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/demo/bbemu"
	"github.com/agentscaler/agentscaler/internal/testenv/syncbuf"
	"github.com/agentscaler/agentscaler/sources/bitbucket"
)

// TestRunnerMode: the stand-in runner takes step after step the emulator
// hands it, each in a clean working directory, and exits 0 once its runner
// is deleted, never printing its secret.
func TestRunnerMode(t *testing.T) {
	emu := bbemu.New(bbemu.Options{Token: "api-token"})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	base := srv.URL
	loc := bbemu.Location{Workspace: "{0f9a6c3e-1111-4222-8333-444455556666}"}
	uuid, id, secret := emu.AddRunner(loc, "bb-w1", []string{"self.hosted", "linux", "docker"})
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	env := map[string]string{"RUNNER_UUID": uuid, "OAUTH_CLIENT_ID": id, "OAUTH_CLIENT_SECRET_FILE": secretFile,
		"WORKING_DIRECTORY": work, "BITBUCKET_URL": base, "RUNNER_POLL_INTERVAL": "50ms"}
	var stdout, stderr syncbuf.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Main(ctx, func(k string) string { return env[k] }, &stdout, &stderr) }()

	// Bitbucket fails a step no online runner can take: queue once the
	// runner has polled.
	for emu.Runners()[0].Status != "ONLINE" {
		if ctx.Err() != nil {
			t.Fatalf("the runner never came online; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	steps := []string{emu.QueueStep([]string{"self.hosted", "docker"}, 200*time.Millisecond), emu.QueueStep([]string{"self.hosted"}, 100*time.Millisecond)}
	windows := emu.QueueStep([]string{"self.hosted", "windows"}, 0)
	for {
		finished := 0
		for _, s := range emu.Steps() {
			if !s.Done.IsZero() && !s.Failed {
				finished++
			}
		}
		if finished == len(steps) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("steps not done; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range emu.Steps() {
		if s.UUID == windows && (!s.Assigned.IsZero() || !s.Failed) {
			t.Errorf("the windows step, which no online runner can take, ran on %q or did not fail (failed: %v)", s.Runner, s.Failed)
		}
		if s.UUID != windows && s.Done.Sub(s.Assigned) < s.Runs {
			t.Errorf("step %s ran %s, want %s", s.UUID, s.Done.Sub(s.Assigned), s.Runs)
		}
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("the working directory keeps %d entries after the steps", len(left))
	}
	c, err := bitbucket.NewClient(bitbucket.Bearer("api-token"), bitbucket.Options{URL: base})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRunner(ctx, bitbucket.Location{Workspace: loc.Workspace}, uuid); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after its runner was deleted, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("the runner did not exit after it was deleted")
	}
	if out := stdout.String() + stderr.String(); strings.Contains(out, secret) {
		t.Errorf("the output shows the secret")
	}
}
