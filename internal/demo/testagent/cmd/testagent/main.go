// Command testagent is the test agent of package testagent on its own: a
// stand-in for the Azure Pipelines agent that registers, takes one job and
// unregisters, configured by the agent container's environment (AZP_URL,
// AZP_TOKEN or AZP_TOKEN_FILE, AZP_POOL, AZP_AGENT_NAME, AZP_WORK). SIGTERM
// or an interrupt reports a running job canceled and unregisters before
// exiting. Build it static: CGO_ENABLED=0 go build.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentscaler/agentscaler/internal/demo/testagent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := testagent.Main(ctx, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
