package main

import (
	"context"
	"fmt"
	"io"

	"github.com/agentscaler/agentscaler/internal/testagent"
)

// testAgentCommand runs the stand-in agent that the demo's containers run
// against the built-in emulator. It is left out of the usage text: it is no
// Azure Pipelines agent. The demo packages this very binary as the agent
// image, so one static build serves both sides.
const testAgentCommand = "test-agent"

// exitStatus is an error that only carries a process exit code: the command
// has already said what went wrong.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

func cmdTestAgent(ctx context.Context, stdout, stderr io.Writer, getenv func(string) string) error {
	if code := testagent.Main(ctx, getenv, stdout, stderr); code != 0 {
		return exitStatus(code)
	}
	return nil
}
