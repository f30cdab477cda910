// Package machinecache is where test environments keep what they build once
// per machine (the Kubernetes binaries of kubetest, the Debian root file
// system of debiantest): a directory per kind under the user's cache, and a
// lock so that concurrent test processes wait for one build instead of each
// starting their own.
package machinecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Dir is the cache directory of one kind of build: $env when set, else
// $XDG_CACHE_HOME/agentscaler/<name>, else ~/.cache/agentscaler/<name>.
func Dir(env, name string) (string, error) {
	if root := os.Getenv(env); root != "" {
		return root, nil
	}
	user, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("%s cache: set %s or HOME: %w", name, env, err)
	}
	return filepath.Join(user, "agentscaler", name), nil
}

// Lock takes an exclusive flock on path, polling so that ctx can end the
// wait: another process may hold it for a whole cold build. what names the
// build in errors and in the line written to log while waiting.
func Lock(ctx context.Context, path, what string, log io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s lock: %w", what, err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("%s lock %s: %w", what, path, err)
		}
		if !told {
			fmt.Fprintf(log, "waiting for another process building the %s (%s)\n", what, path)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s lock %s: %w", what, path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
