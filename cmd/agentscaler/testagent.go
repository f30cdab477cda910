//go:build !nodemo

package main

import (
	"context"
	"io"

	"github.com/agentscaler/agentscaler/internal/demo/testagent"
)

// testAgentCommand runs the stand-in agent that the demo's containers run
// against the built-in emulator. It is left out of the usage text: it is no
// Azure Pipelines agent. The demo packages this very binary as the agent
// image, so one static build serves both sides.
const testAgentCommand = "test-agent"

func cmdTestAgent(ctx context.Context, stdout, stderr io.Writer, getenv func(string) string) error {
	if code := testagent.Main(ctx, getenv, stdout, stderr); code != 0 {
		return exitStatus(code)
	}
	return nil
}
