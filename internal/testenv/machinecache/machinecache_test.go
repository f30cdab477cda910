package machinecache

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDir(t *testing.T) {
	t.Setenv("AGENTSCALER_X_CACHE", "/srv/x-cache")
	if dir, err := Dir("AGENTSCALER_X_CACHE", "x"); err != nil || dir != "/srv/x-cache" {
		t.Errorf("Dir() = %q, %v; want the directory AGENTSCALER_X_CACHE names", dir, err)
	}
	t.Setenv("AGENTSCALER_X_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/home/ci/.cache")
	if dir, err := Dir("AGENTSCALER_X_CACHE", "x"); err != nil || dir != filepath.Join("/home/ci/.cache/agentscaler/x") {
		t.Errorf("Dir() = %q, %v; want it under XDG_CACHE_HOME", dir, err)
	}
}

// TestLock checks that a second builder waits for the first, and gives up
// when its context ends.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".lock")
	var log strings.Builder
	unlock, err := Lock(context.Background(), path, "things", &log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path, "things", &log); err == nil {
		t.Fatal("a second lock was granted while the first was held")
	}
	if !strings.Contains(log.String(), "waiting for another process building the things") {
		t.Errorf("the waiting builder said nothing: %q", log.String())
	}
	unlock()
	unlock2, err := Lock(context.Background(), path, "things", &log)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
