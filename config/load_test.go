package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// writeTemp writes body to a file in a fresh directory and returns its path.
func writeTemp(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// base is a valid file; a test appends a reconcile section or pool keys.
func base(reconcile, pool string) string {
	return `azuredevops: {url: https://dev.azure.com/contoso, token_env: TEST_AZP_TOKEN}
webhook:
  basic_auth: {username: azdo, password_env: TEST_WEBHOOK_PASSWORD}
reconcile: {` + reconcile + `}
pools:
  - name: linux
    azure_pool: Default
    agent: {image: azp-agent:linux}
` + pool
}

// aliasBomb is nine levels of nine aliases: 387 million values once
// expanded, from a few hundred bytes.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("a: &a [x, x, x, x, x, x, x, x, x]\n")
	for c := 'b'; c <= 'i'; c++ {
		prev := string(c - 1)
		fmt.Fprintf(&b, "%c: &%c [%s]\n", c, c, strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", "))
	}
	return b.String()
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestAliasBombRefusedCheaply(t *testing.T) {
	bomb := aliasBomb()
	path := writeTemp(t, bomb)
	var err error
	bytes := allocated(func() { _, err = Load(path, fileEnv) })
	t.Logf("%d-byte alias bomb: %d bytes allocated", len(bomb), bytes)
	// Reading, parsing and listing the problems of a few hundred bytes;
	// expanding even one level would be megabytes.
	if bytes > 1<<20 {
		t.Errorf("loading the alias bomb allocated %d bytes, want under 1 MiB", bytes)
	}
	ps := problemsOf(t, err)
	if len(ps) != 9+8*9 { // nine anchors, 72 aliases
		t.Errorf("%d problems, want one per anchor and alias:\n%v", len(ps), err)
	}
	if p := ps[1]; p.Key != "b" || p.Line != 2 || !strings.Contains(p.Message, "no need for YAML anchors, aliases or merge keys") {
		t.Errorf("second problem = %+v, want key b on line 2 saying a configuration has no need for aliases", p)
	}
}

func TestAnchorsAndMergeKeysRefused(t *testing.T) {
	path := writeTemp(t, `azuredevops: {url: https://dev.azure.com/contoso, token_env: TEST_AZP_TOKEN}
webhook:
  basic_auth: {username: azdo, password_env: TEST_WEBHOOK_PASSWORD}
pools:
  - &base
    name: linux
    azure_pool: Default
    agent: {image: azp-agent:linux}
  - <<: *base
    name: linux-big
`)
	_, err := Load(path, fileEnv)
	ps := problemsOf(t, err)
	want := []Problem{
		{Key: "pools[0]", Line: 5, Message: "defines the anchor &base; " + noReferences},
		{Key: "pools[1]", Line: 9, Message: "has a merge key (<<); " + noReferences},
		{Key: "pools[1]", Line: 9, Message: "is the alias *base; " + noReferences},
	}
	if !slices.Equal(ps, want) {
		t.Errorf("problems:\n%v\nwant:\n%v", err, &ValidationError{Problems: want})
	}
}

// TestManyEntries: a list or mapping is bounded before the YAML decoder,
// whose duplicate-key check compares every pair of keys, sees it.
func TestManyEntries(t *testing.T) {
	var caps strings.Builder
	caps.WriteString("    capabilities:\n")
	for i := range 50_000 {
		fmt.Fprintf(&caps, "      c%d: v\n", i)
	}
	_, err := Load(writeTemp(t, base("", caps.String())), fileEnv)
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Key != "pools[0].capabilities" || ps[0].Line != 10 ||
		!strings.Contains(ps[0].Message, "holds 50000 entries; at most 1000 are accepted") {
		t.Errorf("50,000 capabilities:\n%v", err)
	}

	// A key written twice is still found, and named, without the decoder.
	_, err = Load(filepath.Join("testdata", "duplicate_key.yaml"), fileEnv)
	if got := problemsOf(t, err); len(got) != 1 || got[0].String() != "pools[0].name: is written twice in the same section (first at line 7); keep one (line 9)" {
		t.Errorf("duplicate key: %v", err)
	}
}

func TestFileSizeBounded(t *testing.T) {
	// /dev/zero never ends: only the bound stops the read.
	_, err := Load("/dev/zero", fileEnv)
	if err == nil || !strings.Contains(err.Error(), "/dev/zero holds more; a configuration file is at most 1048576 bytes (1 MiB)") {
		t.Errorf("/dev/zero: %v, want the size bound", err)
	}

	path := writeTemp(t, "# "+strings.Repeat("x", MaxFileBytes)+"\n")
	_, err = Load(path, fileEnv)
	if err == nil || !strings.Contains(err.Error(), "holds 1048579 bytes; a configuration file is at most 1048576 bytes") {
		t.Errorf("a file over 1 MiB: %v, want its size and the bound", err)
	}
}

// mkfifo makes a FIFO in a fresh directory.
func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentscaler.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

func TestLoadFIFO(t *testing.T) {
	t.Run("nobody writes: cancelled", func(t *testing.T) {
		path := mkfifo(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := LoadContext(ctx, path, fileEnv)
			done <- err
		}()
		// Whether the cancel comes before or during the read, nothing but
		// the cancel can end it: no process ever writes.
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
	})

	t.Run("writer after reader", func(t *testing.T) {
		path := mkfifo(t)
		done := make(chan error, 1)
		go func() {
			_, err := LoadContext(t.Context(), path, fileEnv)
			done <- err
		}()
		// Blocks until the loader has the FIFO open for reading.
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		body, err := os.ReadFile(filepath.Join("testdata", "minimal.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if err := <-done; err != nil {
			t.Errorf("loading a FIFO a writer fills: %v", err)
		}
	})
}
