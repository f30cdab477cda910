// Command debianroot builds and caches the minimal Debian root file system
// the image check tests import (see internal/testenv/debiantest), and prints
// where it is. `make deps` runs it, so that debootstrap (a minute or more)
// never runs inside go test. Where debootstrap cannot run (not installed, not
// root) it says why and exits 0: those tests skip there.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/debiantest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	path, err := debiantest.Build(ctx, os.Stderr)
	if errors.Is(err, debiantest.ErrUnavailable) {
		fmt.Fprintf(os.Stderr, "debianroot: not built: %v; the tests that import it skip\n", err)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "debianroot:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
