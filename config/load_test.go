package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
