// Command kubebins builds and caches the Kubernetes control-plane binaries
// the Kubernetes tests run, the kubelet and containerd of their node, and
// the helm binary the chart tests run (see internal/testenv/kubetest), and
// prints where they are. `make test` runs it before `go test`, so that a
// cold build (minutes) never eats into go test's timeout.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A cold build on two busy cores takes minutes; an hour means it hangs.
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	bins, err := kubetest.Build(ctx, os.Stderr)
	check(err)
	kubelet, err := kubetest.BuildKubelet(ctx, os.Stderr)
	check(err)
	ctrd, err := kubetest.BuildContainerd(ctx, os.Stderr)
	check(err)
	helm, err := kubetest.BuildHelm(ctx, os.Stderr)
	check(err)
	for _, p := range []string{bins.APIServer, bins.ControllerManager, kubelet, ctrd.Daemon, ctrd.Shim, ctrd.CTR, helm} {
		fmt.Println(p)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubebins:", err)
		os.Exit(1)
	}
}
